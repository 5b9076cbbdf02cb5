-- kanki schema, version 26: cheaper case writes for the ingest.
--
-- The cases opened per 5 minutes are counted by the code that opens
-- cases, not by a trigger. A trigger on the insert made every insert of a
-- case keep a statement journal (SQLite rolls back a statement's trigger
-- writes if the statement fails), which cost a day's report a third of
-- its case inserts.
DROP TRIGGER case_counts_opened;

-- The feeds of cases without a foreign key or an index by case: cases are
-- never deleted, and the queue reads the table by feed alone; each of a
-- day's hundreds of thousands of pairs paid for a lookup of its case and
-- a second index.
CREATE TABLE case_feeds_by_feed (
    feed    TEXT NOT NULL,
    case_id INTEGER NOT NULL,
    PRIMARY KEY (feed, case_id)
) WITHOUT ROWID;
INSERT INTO case_feeds_by_feed (feed, case_id) SELECT feed, case_id FROM case_feeds;
DROP TABLE case_feeds;
ALTER TABLE case_feeds_by_feed RENAME TO case_feeds;
