-- kanki schema, version 9: events kept in segments, one per stored batch
-- (see crates/store/src/event_segment.rs), instead of a row per event with
-- four index entries. Only the idempotency keys are rows. Events stored
-- before are moved into segments by the migration's second step (Rust:
-- sqlite/migrate_events.rs), which then drops `events` and `event_raw`.

CREATE TABLE event_segments (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: event ids stay unique
    ingest            INTEGER NOT NULL,
    events            INTEGER NOT NULL,
    first_observation INTEGER NOT NULL,
    last_observation  INTEGER NOT NULL,
    fields            BLOB NOT NULL,   -- the events' fields and cases, deflated
    raw               BLOB NOT NULL    -- the raw records, deflated
);
CREATE INDEX event_segments_observed ON event_segments (last_observation);

-- An event's id: its segment in the high bits, its place in the batch in
-- the low 16.
CREATE TABLE event_keys (
    key   BLOB PRIMARY KEY,
    event INTEGER NOT NULL
) WITHOUT ROWID;

-- Unattributed events per segment and reason, for the outcome figures.
CREATE TABLE segment_unattributed (
    segment INTEGER NOT NULL REFERENCES event_segments (id) ON DELETE CASCADE,
    reason  TEXT NOT NULL,
    events  INTEGER NOT NULL,
    PRIMARY KEY (segment, reason)
) WITHOUT ROWID;

-- The newest segment with events of the case; each segment names the
-- case's one before.
ALTER TABLE cases ADD COLUMN last_segment INTEGER;
