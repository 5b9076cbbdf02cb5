-- kanki schema, version 12: bindings found by address without compiling
-- the index, and the log of binding changes that running processes follow.
--
-- Each binding's prefix as integers: `net_len` is the prefix length, plus
-- 200 for IPv4 (so the families never meet), and `net_hi`, `net_lo` the
-- network address's upper and lower 64 bits (IPv4: 0 and the address),
-- stored as signed 64-bit integers. "Who held 192.0.2.7" is one index probe
-- per prefix length present (see crates/store/src/sqlite/directory.rs). The
-- columns are filled, and their index made, by the migration's second step.
ALTER TABLE bindings ADD COLUMN net_len INTEGER;
ALTER TABLE bindings ADD COLUMN net_hi INTEGER;
ALTER TABLE bindings ADD COLUMN net_lo INTEGER;

-- One row per binding written or changed, in commit order: a process holding
-- the compiled index reads the changes after the last it saw and lays them
-- over the index until its next rebuild. AUTOINCREMENT: a number is never
-- given twice, even after the oldest rows are trimmed.
CREATE TABLE binding_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    binding_id INTEGER NOT NULL,
    at         INTEGER NOT NULL
);
