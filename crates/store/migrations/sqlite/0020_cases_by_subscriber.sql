-- A subscriber's cases, closed ones too (the partial unique index of
-- open cases serves only queries that exclude closed cases).
CREATE INDEX cases_subscriber ON cases(subscriber, id);
