//! PhishTank's CSV (`phish_id,url,phish_detail_url,submission_time,
//! verified,verification_time,online,target`), read by its header line.

use kanki_indicators::{Category, Kind};

use crate::common::{self, CsvFormat, Fields, Header, parse_date};
use crate::{Format, Row};

pub(crate) struct Phishtank;

pub(crate) struct Cols {
    id: Option<usize>,
    url: usize,
    detail: Option<usize>,
    submitted: Option<usize>,
    verification_time: Option<usize>,
    online: Option<usize>,
    target: Option<usize>,
}

impl CsvFormat for Phishtank {
    type Cols = Cols;
    const FORMAT: Format = Format::Phishtank;
    const EXPECTED: &'static str = "a `url` column";

    fn columns(h: &Header) -> Option<Cols> {
        Some(Cols {
            id: h.index(&["phish_id"]),
            url: h.index(&["url"])?,
            detail: h.index(&["phish_detail_url"]),
            submitted: h.index(&["submission_time"]),
            verification_time: h.index(&["verification_time"]),
            online: h.index(&["online"]),
            target: h.index(&["target"]),
        })
    }

    fn is_header(cols: &Cols, f: &Fields) -> bool {
        f.get(Some(cols.url)) == Some("url")
    }

    fn row(c: &Cols, line: u64, f: &Fields) -> Row {
        let Some(url) = f.get(Some(c.url)) else {
            let invalid = f
                .bytes(c.url)
                .is_some_and(|b| std::str::from_utf8(b).is_err());
            let reason = if invalid {
                "not valid UTF-8"
            } else {
                "missing url column value"
            };
            return common::skip(line, reason);
        };
        let mut rec = match common::record_or_skip(line, Some(Kind::Url), url) {
            Ok(r) => r,
            Err(s) => return Row::Skip(s),
        };
        rec.category = Some(Category::Phishing);
        rec.source_id = f.get(c.id).map(str::to_string);
        rec.reference_url = f.get(c.detail).map(str::to_string);
        rec.first_seen = f.get(c.submitted).and_then(parse_date);
        rec.last_seen = f.get(c.verification_time).and_then(parse_date);
        rec.online = f
            .get(c.online)
            .and_then(|o| match o.to_ascii_lowercase().as_str() {
                "yes" | "true" | "1" => Some(true),
                "no" | "false" | "0" => Some(false),
                _ => None,
            });
        if let Some(t) = f.get(c.target).filter(|t| !t.eq_ignore_ascii_case("other")) {
            rec.tags.push(format!("target:{t}"));
        }
        Row::Record(rec)
    }
}

#[cfg(test)]
mod tests {
    use kanki_indicators::Category;

    use crate::tests::{example, records, skips};
    use crate::{FeedError, Format, parse_bytes};

    #[test]
    fn example_file() {
        let rows = parse_bytes(Format::Phishtank, &example("phishtank.csv")).unwrap();
        let recs = records(&rows);
        assert!(recs.len() >= 5);
        let r = recs[0];
        assert_eq!(r.line, 2);
        assert_eq!(r.category, Some(Category::Phishing));
        assert_eq!(r.source_id.as_deref(), Some("8512345"));
        assert_eq!(
            r.reference_url.as_deref(),
            Some("http://www.phishtank.com/phish_detail.php?phish_id=8512345")
        );
        assert_eq!(
            r.first_seen.unwrap().to_rfc3339(),
            "2024-11-20T10:11:05+00:00"
        );
        assert_eq!(r.online, Some(true));
        assert_eq!(r.tags, ["target:PayPal"]);
        assert!(recs.iter().any(|r| r.tags.is_empty()));
        assert!(!skips(&rows).is_empty());
    }

    #[test]
    fn needs_a_url_column() {
        let e =
            parse_bytes(Format::Phishtank, b"phish_id,link\n1,http://a.example/\n").unwrap_err();
        assert!(matches!(e, FeedError::NoHeader { .. }));
    }

    #[test]
    fn reordered_columns() {
        let csv = "target,url,phish_id\nExample Bank,http://bank.example.test/login,5\n";
        let rows = parse_bytes(Format::Phishtank, csv.as_bytes()).unwrap();
        let r = records(&rows)[0];
        assert_eq!(r.indicator.value, "http://bank.example.test/login");
        assert_eq!(r.tags, ["target:Example Bank"]);
    }
}
