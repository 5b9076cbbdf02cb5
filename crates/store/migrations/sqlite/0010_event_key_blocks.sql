-- kanki schema, version 10: idempotency keys kept in blocks, a row per
-- (hour, segment) with the keys of that segment's events of that hour (see
-- crates/store/src/sqlite/event_keys.rs), instead of a row per key. The
-- migration's second step (Rust) fills the blocks from the segments, which
-- list their events' keys, and drops `event_keys`.

CREATE TABLE event_key_blocks (
    hour    INTEGER NOT NULL,  -- hours since 1970 of time.source: a key's first 4 bytes
    segment INTEGER NOT NULL,
    keys    BLOB NOT NULL,     -- per event: the key's other 12 bytes, then its index in the segment (2 bytes, big-endian)
    PRIMARY KEY (hour, segment)
) WITHOUT ROWID;
