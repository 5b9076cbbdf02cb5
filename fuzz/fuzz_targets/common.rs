//! What every parser target checks besides "does not panic".

use kanki_feeds::{Format, Row, parse_bytes};
use kanki_indicators::normalize_as;

/// Parses `data` (through `open_input`, so gzip and zip are reached too)
/// and checks the rows: 1-based, non-decreasing line numbers, non-empty
/// skip reasons, and indicator values that are already normalized.
pub fn check(format: Format, data: &[u8]) {
    let Ok(rows) = parse_bytes(format, data) else {
        return;
    };
    let mut last = 0;
    for row in &rows {
        let line = match row {
            Row::Record(r) => {
                let again = normalize_as(r.indicator.kind, &r.indicator.value)
                    .unwrap_or_else(|e| panic!("{:?} does not normalize again: {e}", r.indicator));
                assert_eq!(again, r.indicator, "normalizing twice changed the value");
                r.line
            }
            Row::Skip(s) => {
                assert!(!s.reason.is_empty());
                s.line
            }
        };
        assert!(line >= 1 && line >= last, "line {line} after {last}");
        last = line;
    }
}
