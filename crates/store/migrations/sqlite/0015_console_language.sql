-- The language an operator chose for the console ('ja' or 'en'); NULL:
-- not chosen yet (the browser's Accept-Language decides).
ALTER TABLE operators ADD COLUMN console_language TEXT;
