-- kanki schema, version 22: who made each change to the list (an
-- operator, `expiry`, `allowlist`, an import's origin), and an
-- indicator's changes read by indicator for its history. Changes made
-- before keep no actor.
ALTER TABLE changes ADD COLUMN actor TEXT;
CREATE INDEX changes_indicator ON changes (indicator_id, seq) WHERE indicator_id IS NOT NULL;
