-- A subscriber's page lists the bindings of their identifiers over time,
-- newest first: the identifiers by subscriber, the bindings by subject and
-- start.
CREATE INDEX subscriber_identifiers_by_subscriber ON subscriber_identifiers(subscriber_id);
CREATE INDEX bindings_by_subject ON bindings(subject_id, from_ts);
