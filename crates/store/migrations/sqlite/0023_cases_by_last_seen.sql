-- kanki schema, version 23: the case queue ordered by the latest event
-- (most recently seen first), paged by (last seen, id).
CREATE INDEX cases_last_seen ON cases (last_seen, id);
