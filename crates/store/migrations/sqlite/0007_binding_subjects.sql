-- kanki schema, version 7: the subjects bindings name, numbered, and each
-- binding's prefix packed. Rebuilding the binding index at start reads
-- ten million rows: with a subject number and a packed prefix per row it
-- decodes, parses and hashes no text (see crates/service/src/directory.rs).

CREATE TABLE binding_subjects (
    id    INTEGER PRIMARY KEY,
    kind  TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (kind, value)
);

INSERT INTO binding_subjects (kind, value)
    SELECT DISTINCT subject_kind, subject FROM bindings;

-- binding_subjects.id; written with subject_kind and subject, which stay for
-- the queries that read a binding whole.
ALTER TABLE bindings ADD COLUMN subject_id INTEGER;
-- The prefix's address bytes (4 or 16) then its length; NULL on rows written
-- before this version, which the scan reads from `prefix` instead.
ALTER TABLE bindings ADD COLUMN net BLOB;

UPDATE bindings SET subject_id =
    (SELECT s.id FROM binding_subjects s WHERE s.kind = bindings.subject_kind AND s.value = bindings.subject);
