-- kanki schema, version 25: the audit log searched by a text its purpose
-- contains, through a trigram index of the purposes (FTS5, case as
-- written), kept by triggers as records are appended and purged.
CREATE VIRTUAL TABLE audit_purposes USING fts5(
    purpose,
    content = 'audit_log',
    content_rowid = 'seq',
    tokenize = 'trigram case_sensitive 1'
);
INSERT INTO audit_purposes (audit_purposes) VALUES ('rebuild');
CREATE TRIGGER audit_purposes_append AFTER INSERT ON audit_log
BEGIN
    INSERT INTO audit_purposes (rowid, purpose) VALUES (new.seq, new.purpose);
END;
CREATE TRIGGER audit_purposes_purge AFTER DELETE ON audit_log
BEGIN
    INSERT INTO audit_purposes (audit_purposes, rowid, purpose) VALUES ('delete', old.seq, old.purpose);
END;
