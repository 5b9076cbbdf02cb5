-- The dashboard counts what happened in each hour or day of a window:
-- cases opened and resolved, notices sent and acknowledged.
CREATE INDEX cases_opened_at ON cases(opened_at);
CREATE INDEX cases_resolved_at ON cases(resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX notices_sent_at ON notices(sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX notices_acknowledged_at ON notices(acknowledged_at) WHERE acknowledged_at IS NOT NULL;
