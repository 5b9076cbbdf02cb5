-- kanki schema, version 26: the cases opened per 5 minutes are counted by
-- the code that opens cases, not by a trigger. A trigger on the insert
-- made every insert of a case keep a statement journal (SQLite rolls back
-- a statement's trigger writes if the statement fails), which cost a
-- day's report a third of its case inserts.
DROP TRIGGER case_counts_opened;
