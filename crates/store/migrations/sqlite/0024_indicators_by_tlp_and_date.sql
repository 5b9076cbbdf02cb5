-- kanki schema, version 24: the list searched by TLP marking (walked in id
-- order within a marking) and by the date an indicator was first seen.
CREATE INDEX indicators_tlp_id ON indicators (tlp, id);
CREATE INDEX indicators_first_seen ON indicators (first_seen);
