-- The removal loop: harmonized events (with their raw records, compressed
-- in blocks), ingest runs, cases per (subscriber, threat) with their
-- history, notices, and escalation requests.

CREATE TABLE ingests (
    id          INTEGER PRIMARY KEY,
    format      TEXT NOT NULL,
    origin      TEXT NOT NULL,
    report_type TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    status      TEXT NOT NULL,            -- running, completed, failed
    summary     TEXT                      -- JSON: counts and reasons
);

-- Raw records of a batch, each length-prefixed, deflate-compressed together.
CREATE TABLE event_raw (
    id      INTEGER PRIMARY KEY,
    records INTEGER NOT NULL,
    data    BLOB NOT NULL
);

CREATE TABLE events (
    id               INTEGER PRIMARY KEY,
    key              BLOB NOT NULL UNIQUE,   -- idempotency key: a replay adds nothing
    source_ip        TEXT NOT NULL,
    source_port      INTEGER,
    destination_ip   TEXT,
    destination_port INTEGER,
    time_source      INTEGER NOT NULL,
    time_observation INTEGER NOT NULL,
    taxonomy         TEXT NOT NULL,
    class            TEXT NOT NULL,
    identifier       TEXT,
    malware          TEXT,
    feed_name        TEXT NOT NULL,
    feed_provider    TEXT NOT NULL,
    transport        TEXT,
    application      TEXT,
    raw_block        INTEGER NOT NULL REFERENCES event_raw (id) ON DELETE CASCADE,
    raw_index        INTEGER NOT NULL,
    ingest           INTEGER NOT NULL,
    subscriber       TEXT,                   -- the attribution, when made
    confidence       TEXT,
    audit_seq        INTEGER,                -- the audit record of the attribution
    unattributed     TEXT,                   -- why not, otherwise
    case_id          INTEGER
);
CREATE INDEX events_case ON events (case_id) WHERE case_id IS NOT NULL;
CREATE INDEX events_time ON events (time_observation);

CREATE TABLE cases (
    id              INTEGER PRIMARY KEY,
    subscriber      TEXT NOT NULL,
    threat          TEXT NOT NULL,           -- malware family, else identifier, else class
    class           TEXT NOT NULL,           -- classification.type
    severity        TEXT NOT NULL,
    state           TEXT NOT NULL,
    held            INTEGER NOT NULL DEFAULT 0,
    hold_reason     TEXT,
    opened_at       INTEGER NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    notices         INTEGER NOT NULL DEFAULT 0,
    unacknowledged  INTEGER NOT NULL DEFAULT 0,  -- notices since the last acknowledgement
    last_notice_at  INTEGER,
    acknowledged_at INTEGER,
    quiet_at        INTEGER,
    resolved_at     INTEGER,
    escalated_at    INTEGER,
    reinfections    INTEGER NOT NULL DEFAULT 0,
    closed_at       INTEGER,
    close_reason    TEXT,
    updated_at      INTEGER NOT NULL
);
-- One case per (subscriber, threat) until an operator closes it.
CREATE UNIQUE INDEX cases_open ON cases (subscriber, threat) WHERE state <> 'closed';
CREATE INDEX cases_state ON cases (state);

CREATE TABLE case_log (
    id      INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    state   TEXT NOT NULL,                   -- the state after it
    reason  TEXT
);
CREATE INDEX case_log_case ON case_log (case_id);

CREATE TABLE notices (
    id              INTEGER PRIMARY KEY,
    reference       TEXT NOT NULL UNIQUE,    -- what the subscriber gives on the countermeasure site
    case_id         INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    subscriber      TEXT NOT NULL,
    channel         TEXT NOT NULL,           -- mail, letter
    language        TEXT NOT NULL,
    recipient       TEXT,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,           -- queued, sent, failed, bounced, exported
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    acknowledged_at INTEGER
);
CREATE INDEX notices_case ON notices (case_id);
CREATE INDEX notices_status ON notices (status);

CREATE TABLE escalations (
    id           INTEGER PRIMARY KEY,
    case_id      INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    subscriber   TEXT NOT NULL,
    kind         TEXT NOT NULL,              -- walled-garden, letter, call-list
    status       TEXT NOT NULL,              -- requested, active, done, cancelled
    requested_at INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    reason       TEXT NOT NULL
);
CREATE UNIQUE INDEX escalations_open ON escalations (case_id, kind) WHERE status IN ('requested', 'active');
