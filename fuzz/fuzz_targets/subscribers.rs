#![no_main]
//! The subscriber CSV reader: any input gives a header error or rows, each
//! a record with a non-empty id and a known language, or a skipped line
//! with a reason; line numbers never go backwards.

use kanki_directory::{SubscriberRow, read_subscribers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rows) = read_subscribers(data) else {
        return;
    };
    let mut last = 0;
    for row in rows {
        match row {
            Ok(SubscriberRow::Record(r)) => {
                assert!(!r.id.is_empty());
                assert!(r.language == "ja" || r.language == "en");
            }
            Ok(SubscriberRow::Skip(s)) => {
                assert!(!s.reason.is_empty());
                assert!(s.line >= last, "line {} after {last}", s.line);
                last = s.line;
            }
            Err(_) => break,
        }
    }
});
