-- kanki schema, version 12: operators, their API tokens and browser
-- sessions. Secrets are stored only as hashes: a password as an argon2id
-- PHC string, a token's or a session cookie's 256-bit secret as SHA-256.

CREATE TABLE operators (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,                 -- local | ldap | machine
    roles         INTEGER NOT NULL,              -- bit mask, see kanki_operators::Role
    disabled      INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT,
    totp_secret   BLOB,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,              -- the token's public part
    name          TEXT NOT NULL,
    operator_id   INTEGER NOT NULL REFERENCES operators(id),
    scope         INTEGER NOT NULL,              -- roles bit mask, within the owner's
    expires_at    INTEGER,
    sources       TEXT NOT NULL,                 -- JSON array of prefixes; [] = anywhere
    secret_hash   BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);

CREATE TABLE operator_sessions (
    secret_hash   BLOB PRIMARY KEY,
    operator_id   INTEGER NOT NULL REFERENCES operators(id),
    csrf          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
) WITHOUT ROWID;
