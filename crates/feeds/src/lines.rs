//! One value a line: OpenPhish (URLs) and plain lists (domains, URLs or
//! IP addresses, kind detected per line).

use std::collections::VecDeque;

use kanki_indicators::{Category, Kind};

use crate::Row;
use crate::common::{LineFormat, record_or_skip};

/// The value on a line: without a `#` comment (a whole-line one, or one
/// after a blank: `evil.example # reported 2024-11-20`; a `#` inside a URL,
/// as in `http://a.example/#x`, is kept), trimmed, `None` when nothing is left.
pub(crate) fn value_of(line: &str) -> Option<&str> {
    let t = line.trim();
    if t.starts_with('#') {
        return None;
    }
    let t = match t.find([' ', '\t']) {
        Some(_) => {
            let cut = t
                .match_indices('#')
                .find(|(i, _)| t[..*i].ends_with([' ', '\t']))
                .map_or(t.len(), |(i, _)| i);
            t[..cut].trim_end()
        }
        None => t,
    };
    (!t.is_empty()).then_some(t)
}

/// OpenPhish: one phishing URL a line.
pub(crate) struct Openphish;

impl LineFormat for Openphish {
    fn line(&mut self, no: u64, text: &str, out: &mut VecDeque<Row>) {
        let Some(v) = value_of(text) else { return };
        out.push_back(match record_or_skip(no, Some(Kind::Url), v) {
            Ok(mut rec) => {
                rec.category = Some(Category::Phishing);
                Row::Record(rec)
            }
            Err(s) => Row::Skip(s),
        });
    }
}

/// A plain list: one domain, URL or IP address (or CIDR block) a line.
pub(crate) struct Plain;

impl LineFormat for Plain {
    fn line(&mut self, no: u64, text: &str, out: &mut VecDeque<Row>) {
        let Some(v) = value_of(text) else { return };
        out.push_back(match record_or_skip(no, None, v) {
            Ok(rec) => Row::Record(rec),
            Err(s) => Row::Skip(s),
        });
    }
}

#[cfg(test)]
mod tests {
    use kanki_indicators::{Category, Kind};

    use super::value_of;
    use crate::tests::{example, records, skips};
    use crate::{Format, parse_bytes};

    #[test]
    fn comments() {
        assert_eq!(value_of("  # all comment"), None);
        assert_eq!(value_of(""), None);
        assert_eq!(value_of("evil.example # why"), Some("evil.example"));
        assert_eq!(value_of("evil.example\t#why"), Some("evil.example"));
        assert_eq!(
            value_of("http://a.example/#frag"),
            Some("http://a.example/#frag")
        );
        assert_eq!(
            value_of("http://a.example/#x  # c"),
            Some("http://a.example/#x")
        );
    }

    #[test]
    fn openphish_example() {
        let rows = parse_bytes(Format::Openphish, &example("openphish.txt")).unwrap();
        let recs = records(&rows);
        assert!(recs.len() >= 5);
        assert!(recs.iter().all(|r| r.category == Some(Category::Phishing)));
        assert!(recs.iter().all(|r| r.indicator.kind == Kind::Url));
        assert_eq!(recs[0].line, 1);
        assert!(!skips(&rows).is_empty());
    }

    #[test]
    fn plain_example() {
        let rows = parse_bytes(Format::Plain, &example("plain.txt")).unwrap();
        let recs = records(&rows);
        for kind in [Kind::Url, Kind::Domain, Kind::Ip] {
            assert!(recs.iter().any(|r| r.indicator.kind == kind), "{kind}");
        }
        let d = recs
            .iter()
            .find(|r| r.indicator.value == "tracker.example")
            .unwrap();
        assert_eq!(d.indicator.kind, Kind::Domain);
        assert!(recs.iter().any(|r| r.indicator.value == "198.51.100.0/24"));
        let s = skips(&rows);
        assert!(s.iter().any(|(_, r)| r == "invalid domain"), "{s:?}");
    }

    #[test]
    fn bom_crlf_and_line_numbers() {
        let rows = parse_bytes(
            Format::Plain,
            b"\xEF\xBB\xBFa.example\r\n\r\n# c\r\nnot valid!\r\nb.example",
        )
        .unwrap();
        let recs = records(&rows);
        assert_eq!(recs[0].indicator.value, "a.example");
        assert_eq!(recs[1].line, 5);
        assert_eq!(skips(&rows), [(4, "invalid domain".to_string())]);
    }

    #[test]
    fn invalid_utf8_and_long_lines_are_skipped() {
        let mut input = b"a.example\n\xff\xfe.example\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', crate::common::MAX_LINE + 10));
        input.extend(b"\nb.example\n");
        let rows = parse_bytes(Format::Plain, &input).unwrap();
        assert_eq!(records(&rows).len(), 2);
        assert_eq!(
            skips(&rows),
            [
                (2, "not valid UTF-8".to_string()),
                (3, "line too long".to_string())
            ]
        );
    }
}
