-- kanki schema, version 21: the feeds whose events each case holds (the
-- events' feed.name), for the case queue's filter by feed. The migration's
-- second step (Rust: sqlite/removal.rs) fills it from the stored events.
CREATE TABLE case_feeds (
    feed    TEXT NOT NULL,
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    PRIMARY KEY (feed, case_id)
) WITHOUT ROWID;
CREATE INDEX case_feeds_case ON case_feeds (case_id);
