//! What every binding-source target checks besides "does not panic".

use std::io::BufReader;

use kanki_directory::sources;
use kanki_directory::{BindingEvent, BindingOrigin, BindingRow, Subject};

/// Reads `data` as `origin`'s format twice (whole, and through a 3-byte
/// buffer, so that every line straddles buffer refills) and checks that
/// both readings agree and that every row is well formed: 1-based,
/// non-decreasing line numbers, non-empty skip reasons, normalized
/// subjects and prefixes, intervals that do not end before they start.
pub fn check(origin: BindingOrigin, data: &[u8]) {
    let whole: Vec<BindingRow> = sources::read(origin, data)
        .map(|r| r.expect("a slice does not fail"))
        .collect();
    let small: Vec<BindingRow> = sources::read(origin, BufReader::with_capacity(3, data))
        .map(|r| r.expect("a slice does not fail"))
        .collect();
    assert_eq!(whole, small, "the buffer size changed the rows");

    let mut last = 0;
    for row in &whole {
        let line = match row {
            BindingRow::Skip(s) => {
                assert!(!s.reason.is_empty());
                s.line
            }
            BindingRow::Event { line, event } => {
                match event {
                    BindingEvent::Binding(b) => {
                        assert_eq!(b.origin, origin);
                        normalized(&b.subject);
                        assert_eq!(b.prefix, b.prefix.trunc(), "{b:?}");
                        assert!(b.to.is_none_or(|to| to >= b.from), "{b:?}");
                        assert!(b.ports.is_none_or(|p| p.first <= p.last));
                        assert!(!b.key.is_empty());
                    }
                    BindingEvent::Session(s) => {
                        normalized(&s.subject);
                        assert!(!s.nas.is_empty() && !s.session_id.is_empty());
                        assert!(s.prefixes.iter().all(|p| *p == p.trunc()));
                    }
                    BindingEvent::NasReset { nas, .. } => assert!(!nas.is_empty()),
                }
                *line
            }
        };
        assert!(line >= 1 && line >= last, "line {line} after {last}");
        last = line;
    }
}

fn normalized(s: &Subject) {
    assert_eq!(
        Subject::new(s.kind, &s.value).as_ref(),
        Some(s),
        "subject not normalized"
    );
}
