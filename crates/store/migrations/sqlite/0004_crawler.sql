-- kanki schema, version 4: the crawler's evidence. A crawl of one seed
-- (under one or more profiles) keeps its whole report as JSON, and one row
-- per node for the questions asked of many crawls (where was this URL or
-- this hash seen). crawl_sites tracks URLs the crawler re-checks: listed
-- URLs for liveness, compromised entrance sites until they are clean.

CREATE TABLE crawls (
    id          INTEGER PRIMARY KEY,
    seed        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    verdict     TEXT NOT NULL,
    profiles    TEXT NOT NULL,            -- JSON array
    cloaking    INTEGER NOT NULL,         -- 1: the profiles saw different things
    origin      TEXT NOT NULL,            -- cli | schedule | recheck
    report      TEXT NOT NULL             -- JSON: trees, nodes, cloaking signals
);
CREATE INDEX crawls_seed ON crawls(seed, started_at);

CREATE TABLE crawl_nodes (
    crawl_id  INTEGER NOT NULL REFERENCES crawls(id) ON DELETE CASCADE,
    profile   TEXT NOT NULL,
    node      INTEGER NOT NULL,
    parent    INTEGER,
    edge      TEXT NOT NULL,
    url       TEXT NOT NULL,
    address   TEXT,
    status    INTEGER,
    sha256    TEXT,
    size      INTEGER,
    magic     TEXT,
    verdict   TEXT NOT NULL,
    reasons   TEXT NOT NULL,              -- JSON array
    PRIMARY KEY (crawl_id, profile, node)
) WITHOUT ROWID;
CREATE INDEX crawl_nodes_url ON crawl_nodes(url);
CREATE INDEX crawl_nodes_sha256 ON crawl_nodes(sha256);

CREATE TABLE crawl_sites (
    url           TEXT PRIMARY KEY,
    role          TEXT NOT NULL,          -- listed | entrance
    liveness      TEXT NOT NULL,          -- online | offline | unknown
    verdict       TEXT,
    first_seen    INTEGER NOT NULL,
    last_checked  INTEGER,
    last_online   INTEGER,
    last_crawl_id INTEGER,
    notice_at     INTEGER,                -- when a notice was queued
    clean_at      INTEGER                 -- when a re-crawl found it clean
);

-- Notices to the administrators of compromised entrance sites, with their
-- delivery: outbox (written as .eml only), held (no recipient found: an
-- operator's), queued (for SMTP, next_attempt_at), sent, bounced, failed.
CREATE TABLE crawl_notices (
    id              INTEGER PRIMARY KEY,
    site            TEXT NOT NULL,
    crawl_id        INTEGER NOT NULL,
    language        TEXT NOT NULL,
    recipient       TEXT,
    contacts        TEXT NOT NULL,        -- JSON: found (address, source), tried
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    eml_path        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    sent_at         INTEGER,
    last_error      TEXT
);
CREATE INDEX crawl_notices_due ON crawl_notices(status, next_attempt_at);
