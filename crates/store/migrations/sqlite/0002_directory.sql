-- kanki schema, version 2: the subscriber directory (subscribers, consent,
-- the identifiers network records name them by, address bindings over time)
-- and the audit log.

CREATE TABLE subscribers (
    id             TEXT PRIMARY KEY,
    email          TEXT,
    postal_address TEXT,
    language       TEXT NOT NULL DEFAULT 'ja',   -- ja | en
    plan           TEXT,
    consent        INTEGER NOT NULL DEFAULT 0,   -- the current state
    consent_at     INTEGER,                      -- when it last changed
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Consent history: every grant and revocation, never rewritten.
CREATE TABLE consent_events (
    id            INTEGER PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    granted       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    channel       TEXT NOT NULL,                 -- web, phone, contract, import, api, ...
    actor         TEXT NOT NULL
);
CREATE INDEX consent_events_subscriber ON consent_events(subscriber_id);

-- The names network records use for a subscriber: login names, DHCP client
-- ids, hardware addresses (and the subscriber id itself).
CREATE TABLE subscriber_identifiers (
    kind          TEXT NOT NULL,
    value         TEXT NOT NULL,
    subscriber_id TEXT NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;

-- Who (as a network record names them) held which prefix (and port block)
-- when. `origin` + `key` make a replayed record idempotent.
CREATE TABLE bindings (
    id           INTEGER PRIMARY KEY,
    origin       TEXT NOT NULL,
    key          TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject      TEXT NOT NULL,
    prefix       TEXT NOT NULL,                  -- CIDR, e.g. 192.0.2.7/32, 2001:db8:1:100::/56
    port_first   INTEGER,
    port_last    INTEGER,
    from_ts      INTEGER NOT NULL,
    to_ts        INTEGER,                        -- NULL: still held
    reporter     TEXT,                           -- NAS, DHCP server
    detail       TEXT,                           -- JSON: Class, session time, ...
    updated_at   INTEGER NOT NULL,
    UNIQUE (origin, key)
);
-- Open RADIUS sessions by NAS, for Accounting-On/Off (small: open rows only).
CREATE INDEX bindings_open ON bindings(reporter) WHERE to_ts IS NULL;

-- Append-only, hash-chained (see the audit crate). Updates are refused;
-- only the retention purge deletes, and it records itself.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,                     -- RFC 3339, microseconds (hashed as written)
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    ground    TEXT,
    purpose   TEXT NOT NULL,
    input     TEXT NOT NULL,
    result    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- Small facts: the directory's generation, the audit chain's anchor.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('directory_generation', '0');
INSERT INTO meta (key, value) VALUES ('audit_anchor', '0000000000000000000000000000000000000000000000000000000000000000');
