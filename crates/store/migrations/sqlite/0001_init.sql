-- kanki schema, version 1: indicators, their sources and evidence, the
-- allowlist, host marks, the change journal and the import log.

CREATE TABLE sources (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    list_url_hosts INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL
);

CREATE TABLE indicators (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    value         TEXT NOT NULL UNIQUE,
    host          TEXT,
    category      TEXT NOT NULL,
    confidence    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT,
    tlp           TEXT NOT NULL,
    tags          TEXT NOT NULL,          -- JSON array
    first_seen    INTEGER NOT NULL,       -- unix seconds
    last_seen     INTEGER NOT NULL,
    expires_at    INTEGER,                -- NULL: never
    updated_at    INTEGER NOT NULL
);
CREATE INDEX indicators_status_expiry ON indicators(status, expires_at);

-- What each source said about an indicator. No index on source_id: the
-- import reads a source's rows once per run with a scan, and every index
-- costs a B-tree insert per row of a million-row import.
CREATE TABLE indicator_sources (
    indicator_id  INTEGER NOT NULL REFERENCES indicators(id) ON DELETE CASCADE,
    source_id     INTEGER NOT NULL REFERENCES sources(id),
    source_ref    TEXT,
    reference_url TEXT,
    reporter      TEXT,
    category      TEXT NOT NULL,
    confidence    INTEGER NOT NULL,
    tlp           TEXT NOT NULL,
    tags          TEXT NOT NULL,
    online        INTEGER,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    expires_at    INTEGER,
    fingerprint   INTEGER NOT NULL,       -- of the fields above but the expiry
    PRIMARY KEY (indicator_id, source_id)
) WITHOUT ROWID;

CREATE TABLE evidence (
    id           INTEGER PRIMARY KEY,
    indicator_id INTEGER NOT NULL REFERENCES indicators(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    uri          TEXT NOT NULL,
    sha256       TEXT,
    note         TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX evidence_indicator ON evidence(indicator_id);

CREATE TABLE allowlist (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,             -- exact | suffix
    name       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    origin     TEXT NOT NULL,             -- operator | config | top-sites
    created_at INTEGER NOT NULL,
    UNIQUE (kind, name, origin)
);

-- Hosts that are real sites carrying malicious URLs: their URLs stay
-- listed, but the whole host is kept off the DNS-level list.
CREATE TABLE host_marks (
    host       TEXT PRIMARY KEY,
    mark       TEXT NOT NULL,             -- compromised
    reason     TEXT NOT NULL,
    origin     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Every change to what is listed, in order; its last seq is the list's
-- generation, which the policy refresher watches.
CREATE TABLE changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    indicator_id INTEGER,
    op           TEXT NOT NULL,
    detail       TEXT
);

CREATE TABLE imports (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    format      TEXT NOT NULL,
    origin      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    status      TEXT NOT NULL,            -- running | completed | failed | interrupted
    owner       TEXT NOT NULL,            -- host:pid of the process running it
    rows_read   INTEGER NOT NULL DEFAULT 0,
    added       INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    summary     TEXT                      -- JSON, when finished
);
