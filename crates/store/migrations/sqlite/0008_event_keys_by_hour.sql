-- kanki schema, version 8: event idempotency keys led by the hour of
-- time.source (see kanki_events::Event::key), so a batch's keys sit near
-- each other in the key index. Keys written before are rewritten to the
-- same form, so a replay of an earlier file is still recognized. (`||`
-- makes text of blobs, byte for byte: cast back.)
UPDATE events SET key = CAST(
    unhex(printf('%08X', min(max(time_source / 3600, 0), 4294967295))) || substr(key, 1, 12)
    AS BLOB);
