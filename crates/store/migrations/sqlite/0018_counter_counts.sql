-- The running server's counters (DNS queries, policy hits, warning pages,
-- proceed-once, RADIUS requests) per 5-minute bucket, for the dashboard's
-- charts: what a restart would otherwise lose. Kept 35 days.
CREATE TABLE counter_counts (
    bucket  INTEGER NOT NULL,   -- Unix seconds, a multiple of 300
    counter TEXT NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (bucket, counter)
) WITHOUT ROWID;
