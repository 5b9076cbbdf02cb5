-- kanki schema, version 6: the notice reference of a subscriber the removal
-- loop put in the walled garden. Acknowledging that notice on the
-- countermeasure site lets them out.
ALTER TABLE garden ADD COLUMN reference TEXT;
