-- kanki schema, version 11: events' idempotency keys are made with BLAKE3
-- instead of SHA-256 (see kanki_events::Event::key). Nothing changes in the
-- tables; the migration's second step (Rust) makes every stored event's key
-- again from its feed name and raw record, writes it into the segment's
-- fields and writes the key blocks again, so that a report ingested before
-- is still recognized when it comes again.
SELECT 1;
