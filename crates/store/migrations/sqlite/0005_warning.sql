-- kanki schema, version 5: the warning page's hit counts, the operators'
-- queue of false-positive reports, and the walled garden.

-- Hits of the warning page, per indicator per day (UTC). Nothing about the
-- client: no address, no subscriber (data minimization; see DESIGN.md).
CREATE TABLE warning_hits (
    indicator_id INTEGER NOT NULL,
    day          TEXT NOT NULL,                  -- YYYY-MM-DD, UTC
    hits         INTEGER NOT NULL DEFAULT 0,     -- page views
    proceeds     INTEGER NOT NULL DEFAULT 0,     -- "proceed once" taken
    PRIMARY KEY (indicator_id, day)
) WITHOUT ROWID;

-- "This site is not malicious", from the warning page: the operators' queue.
CREATE TABLE false_positive_reports (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,                 -- the name the browser asked for
    matched       TEXT,                          -- the listed name that matched it
    indicator_ids TEXT NOT NULL,                 -- JSON array
    url           TEXT NOT NULL,                 -- what was asked for, http://name/path
    note          TEXT NOT NULL,                 -- the reporter's words
    contact       TEXT,                          -- given by the reporter, if they chose to
    language      TEXT NOT NULL,
    reported_at   INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open',  -- open | reviewed
    outcome       TEXT,                          -- false-positive | confirmed
    review_note   TEXT,
    reviewed_by   TEXT,
    reviewed_at   INTEGER
);
CREATE INDEX false_positive_reports_open ON false_positive_reports(id) WHERE status = 'open';

-- Subscribers in the walled garden now. Entering and leaving are written to
-- the audit log (with the ground) in the same transaction; this table holds
-- only the current state.
CREATE TABLE garden (
    subscriber_id      TEXT PRIMARY KEY REFERENCES subscribers(id) ON DELETE CASCADE,
    ground             TEXT NOT NULL,
    reason             TEXT NOT NULL,            -- the operator's, for the record
    notice             TEXT,                     -- shown to the subscriber
    entered_at         INTEGER NOT NULL,
    entered_by         TEXT NOT NULL,
    leave_requested_at INTEGER,                  -- "I have cleaned my machine"
    leave_request_note TEXT
);

INSERT INTO meta (key, value) VALUES ('garden_generation', '0');
