-- The dashboard's charts read counts per 5 minutes, kept by triggers as
-- cases and notices change, rather than counting the rows of a window (a
-- month of a large ISP's cases is a million rows to count): cases opened
-- and resolved by severity, notices sent, bounced and acknowledged by
-- channel. Filled from what the tables hold now.
CREATE TABLE case_counts (
    bucket   INTEGER NOT NULL,            -- Unix seconds, a multiple of 300
    severity TEXT NOT NULL,
    opened   INTEGER NOT NULL DEFAULT 0,
    resolved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, severity)
) WITHOUT ROWID;

INSERT INTO case_counts (bucket, severity, opened)
    SELECT opened_at / 300 * 300, severity, count(*) FROM cases WHERE true GROUP BY 1, 2;
INSERT INTO case_counts (bucket, severity, resolved)
    SELECT resolved_at / 300 * 300, severity, count(*) FROM cases WHERE resolved_at IS NOT NULL GROUP BY 1, 2
    ON CONFLICT (bucket, severity) DO UPDATE SET resolved = resolved + excluded.resolved;

CREATE TRIGGER case_counts_opened AFTER INSERT ON cases
BEGIN
    INSERT INTO case_counts (bucket, severity, opened) VALUES (new.opened_at / 300 * 300, new.severity, 1)
        ON CONFLICT (bucket, severity) DO UPDATE SET opened = opened + 1;
END;

-- A resolution (again, after a reinfection, counts again).
CREATE TRIGGER case_counts_resolved AFTER UPDATE OF resolved_at ON cases
    WHEN new.resolved_at IS NOT NULL AND new.resolved_at IS NOT old.resolved_at
BEGIN
    INSERT INTO case_counts (bucket, severity, resolved) VALUES (new.resolved_at / 300 * 300, new.severity, 1)
        ON CONFLICT (bucket, severity) DO UPDATE SET resolved = resolved + 1;
END;

CREATE TABLE notice_counts (
    bucket       INTEGER NOT NULL,        -- Unix seconds, a multiple of 300
    channel      TEXT NOT NULL,
    sent         INTEGER NOT NULL DEFAULT 0,
    bounced      INTEGER NOT NULL DEFAULT 0,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, channel)
) WITHOUT ROWID;

INSERT INTO notice_counts (bucket, channel, sent)
    SELECT sent_at / 300 * 300, channel, count(*) FROM notices WHERE sent_at IS NOT NULL GROUP BY 1, 2;
INSERT INTO notice_counts (bucket, channel, bounced)
    SELECT sent_at / 300 * 300, channel, count(*) FROM notices WHERE status = 'bounced' AND sent_at IS NOT NULL GROUP BY 1, 2
    ON CONFLICT (bucket, channel) DO UPDATE SET bounced = bounced + excluded.bounced;
INSERT INTO notice_counts (bucket, channel, acknowledged)
    SELECT acknowledged_at / 300 * 300, channel, count(*) FROM notices WHERE acknowledged_at IS NOT NULL GROUP BY 1, 2
    ON CONFLICT (bucket, channel) DO UPDATE SET acknowledged = acknowledged + excluded.acknowledged;

CREATE TRIGGER notice_counts_sent_new AFTER INSERT ON notices
    WHEN new.sent_at IS NOT NULL
BEGIN
    INSERT INTO notice_counts (bucket, channel, sent) VALUES (new.sent_at / 300 * 300, new.channel, 1)
        ON CONFLICT (bucket, channel) DO UPDATE SET sent = sent + 1;
END;

CREATE TRIGGER notice_counts_sent AFTER UPDATE OF sent_at ON notices
    WHEN new.sent_at IS NOT NULL AND old.sent_at IS NULL
BEGIN
    INSERT INTO notice_counts (bucket, channel, sent) VALUES (new.sent_at / 300 * 300, new.channel, 1)
        ON CONFLICT (bucket, channel) DO UPDATE SET sent = sent + 1;
END;

-- A bounce, in the bucket of the sending it answers.
CREATE TRIGGER notice_counts_bounced AFTER UPDATE OF status ON notices
    WHEN new.status = 'bounced' AND old.status IS NOT 'bounced'
BEGIN
    INSERT INTO notice_counts (bucket, channel, bounced)
        VALUES (coalesce(new.sent_at, CAST(strftime('%s', 'now') AS INTEGER)) / 300 * 300, new.channel, 1)
        ON CONFLICT (bucket, channel) DO UPDATE SET bounced = bounced + 1;
END;

CREATE TRIGGER notice_counts_acknowledged AFTER UPDATE OF acknowledged_at ON notices
    WHEN new.acknowledged_at IS NOT NULL AND old.acknowledged_at IS NULL
BEGIN
    INSERT INTO notice_counts (bucket, channel, acknowledged) VALUES (new.acknowledged_at / 300 * 300, new.channel, 1)
        ON CONFLICT (bucket, channel) DO UPDATE SET acknowledged = acknowledged + 1;
END;

-- The list searched by status in id order (a page of the active ones
-- without sorting them all), and the audit log by time.
CREATE INDEX indicators_status_id ON indicators(status, id);
CREATE INDEX audit_log_at ON audit_log(at);
