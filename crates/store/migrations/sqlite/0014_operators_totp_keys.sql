-- kanki schema, version 14: the last TOTP time step (Unix time / 30) each
-- operator signed in with, so that an accepted code cannot be used again;
-- and the installation's keys (the pseudonym key: subscribers are named to
-- analysts by a keyed HMAC of their id).

ALTER TABLE operators ADD COLUMN totp_last_step INTEGER;

CREATE TABLE installation_keys (
    name TEXT PRIMARY KEY,
    key  BLOB NOT NULL
);
