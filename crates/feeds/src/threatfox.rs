//! abuse.ch ThreatFox: the CSV export (`", "` between quoted fields,
//! `"None"` for null) and the JSON export and API answer.
//!
//! Only network indicators are kept: `url`, `domain`, `ip:port` (the
//! address, with the port as a `port:N` tag) and `ip`. Hashes and other
//! types are skipped as `unsupported ioc_type <type>`.

use std::io::BufRead;

use kanki_indicators::{Category, Kind};
use serde_json::Value;

use crate::common::{
    self, CategoryMemo, CsvFormat, CsvRows, Fields, Header, RowResult, non_null, parse_confidence,
    parse_date, push_tag, push_tags,
};
use crate::json::{self, JsonFormat, JsonRows};
use crate::{FeedError, Format, Row};

pub(crate) fn parse(
    mut input: Box<dyn BufRead + Send>,
) -> Result<Box<dyn Iterator<Item = RowResult> + Send>, FeedError> {
    let (is_json, blank_lines) = common::sniff_json(&mut input).map_err(FeedError::from_io)?;
    if is_json {
        return Ok(Box::new(JsonRows::<Threatfox>::new(
            input,
            1 + blank_lines,
        )?));
    }
    Ok(Box::new(CsvRows::<Threatfox>::open(
        input,
        1 + blank_lines,
    )?))
}

/// The fields of one ThreatFox IOC, wherever it came from; `None` for null.
#[derive(Default)]
struct Ioc<'a> {
    id: Option<&'a str>,
    value: Option<&'a str>,
    ioc_type: Option<&'a str>,
    category: Option<Category>,
    malware: Option<&'a str>,
    malware_printable: Option<&'a str>,
    first_seen: Option<&'a str>,
    last_seen: Option<&'a str>,
    confidence: Option<&'a str>,
    reference: Option<&'a str>,
    reporter: Option<&'a str>,
}

impl Ioc<'_> {
    /// The record; `tags` are the IOC's own tags.
    fn into_row(self, line: u64, tags: Vec<String>) -> Row {
        let Some(value) = self.value else {
            return common::skip(line, "missing ioc_value");
        };
        let ioc_type = self.ioc_type.unwrap_or("").to_ascii_lowercase();
        let mut port = None;
        let (kind, raw) = match ioc_type.as_str() {
            "url" => (Kind::Url, value),
            "domain" | "hostname" => (Kind::Domain, value),
            "ip" => (Kind::Ip, value),
            "ip:port" => match split_port(value) {
                Some((ip, p)) => {
                    port = Some(p);
                    (Kind::Ip, ip)
                }
                None => return common::skip(line, "invalid ip:port"),
            },
            "" => return common::skip(line, "missing ioc_type"),
            other => return common::skip(line, format!("unsupported ioc_type {other}")),
        };
        let mut rec = match common::record_or_skip(line, Some(kind), raw) {
            Ok(r) => r,
            Err(s) => return Row::Skip(s),
        };
        rec.source_id = self.id.map(str::to_string);
        rec.category = self.category;
        rec.first_seen = self.first_seen.and_then(parse_date);
        rec.last_seen = self.last_seen.and_then(parse_date);
        rec.confidence = self.confidence.and_then(parse_confidence);
        rec.reference_url = self.reference.map(str::to_string);
        rec.reporter = self.reporter.map(str::to_string);
        let mut all = Vec::with_capacity(tags.len() + 3);
        if let Some(m) = self.malware {
            push_tag(&mut all, &format!("malware:{m}"));
        }
        if let Some(m) = self.malware_printable {
            push_tag(&mut all, m);
        }
        if let Some(p) = port {
            push_tag(&mut all, &format!("port:{p}"));
        }
        for t in &tags {
            push_tag(&mut all, t);
        }
        rec.tags = all;
        Row::Record(rec)
    }
}

/// Splits `198.51.100.7:8080` or `[2001:db8::1]:443` into address and port.
fn split_port(v: &str) -> Option<(&str, u16)> {
    let (addr, port) = v.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let addr = match addr.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None => addr,
    };
    Some((addr, port))
}

pub(crate) struct Threatfox;

pub(crate) struct Cols {
    id: Option<usize>,
    value: usize,
    ioc_type: usize,
    threat_type: Option<usize>,
    malware: Option<usize>,
    malware_printable: Option<usize>,
    first_seen: Option<usize>,
    last_seen: Option<usize>,
    confidence: Option<usize>,
    reference: Option<usize>,
    tags: Option<usize>,
    reporter: Option<usize>,
    categories: CategoryMemo,
}

impl CsvFormat for Threatfox {
    type Cols = Cols;
    const FORMAT: Format = Format::Threatfox;
    const EXPECTED: &'static str = "`ioc_value` and `ioc_type` columns";

    fn columns(h: &Header) -> Option<Cols> {
        Some(Cols {
            id: h.index(&["ioc_id", "id"]),
            value: h.index(&["ioc_value", "ioc"])?,
            ioc_type: h.index(&["ioc_type"])?,
            threat_type: h.index(&["threat_type"]),
            malware: h.index(&["fk_malware", "malware"]),
            malware_printable: h.index(&["malware_printable"]),
            first_seen: h.index(&["first_seen_utc", "first_seen"]),
            last_seen: h.index(&["last_seen_utc", "last_seen"]),
            confidence: h.index(&["confidence_level", "confidence"]),
            reference: h.index(&["reference"]),
            tags: h.index(&["tags"]),
            reporter: h.index(&["reporter"]),
            categories: CategoryMemo::default(),
        })
    }

    fn is_header(cols: &Cols, f: &Fields) -> bool {
        f.get(Some(cols.ioc_type)) == Some("ioc_type")
    }

    fn row(c: &mut Cols, line: u64, f: &Fields) -> Row {
        let get = |i: Option<usize>| non_null(f.get(i));
        if get(Some(c.value)).is_none()
            && f.bytes(c.value)
                .is_some_and(|b| std::str::from_utf8(b).is_err())
        {
            return common::skip(line, "not valid UTF-8");
        }
        let mut tags = Vec::new();
        if let Some(t) = get(c.tags) {
            push_tags(&mut tags, t);
        }
        Ioc {
            id: get(c.id),
            value: get(Some(c.value)),
            ioc_type: get(Some(c.ioc_type)),
            category: get(c.threat_type).map(|t| c.categories.get(t)),
            malware: get(c.malware),
            malware_printable: get(c.malware_printable),
            first_seen: get(c.first_seen),
            last_seen: get(c.last_seen),
            confidence: get(c.confidence),
            reference: get(c.reference),
            reporter: get(c.reporter),
        }
        .into_row(line, tags)
    }
}

impl JsonFormat for Threatfox {
    const LIST_KEY: &'static str = "data";
    const NAME: &'static str = "ThreatFox";

    fn row(id: Option<&str>, line: u64, v: &Value) -> Row {
        if !v.is_object() {
            return common::skip(line, "JSON entry is not an object");
        }
        let get = |keys: &[&str]| json::text_of(v, keys);
        let fields = [
            get(&["id", "ioc_id"]),
            get(&["ioc_value", "ioc"]),
            get(&["ioc_type"]),
            get(&["threat_type"]),
            get(&["malware", "fk_malware"]),
            get(&["malware_printable"]),
            get(&["first_seen_utc", "first_seen"]),
            get(&["last_seen_utc", "last_seen"]),
            get(&["confidence_level", "confidence"]),
            get(&["reference"]),
            get(&["reporter"]),
        ];
        let f = |i: usize| non_null(fields[i].as_deref());
        Ioc {
            id: f(0).or(id),
            value: f(1),
            ioc_type: f(2),
            category: f(3).map(Category::from_feed_label),
            malware: f(4),
            malware_printable: f(5),
            first_seen: f(6),
            last_seen: f(7),
            confidence: f(8),
            reference: f(9),
            reporter: f(10),
        }
        .into_row(line, json::tags(v, "tags"))
    }
}

#[cfg(test)]
mod tests {
    use kanki_indicators::{Category, Kind};

    use super::split_port;
    use crate::tests::{example, records, skips};
    use crate::{Format, parse_bytes};

    #[test]
    fn csv_example() {
        let rows = parse_bytes(Format::Threatfox, &example("threatfox.csv")).unwrap();
        let recs = records(&rows);
        let url = recs.iter().find(|r| r.indicator.kind == Kind::Url).unwrap();
        assert_eq!(url.source_id.as_deref(), Some("1370453"));
        assert_eq!(url.category, Some(Category::MalwareDistribution));
        assert_eq!(url.confidence, Some(100));
        assert_eq!(url.reference_url, None);
        assert!(url.tags.contains(&"malware:win.xworm".to_string()));
        assert!(url.tags.contains(&"XWorm".to_string()));
        assert!(url.first_seen.is_some());
        assert_eq!(url.last_seen, None);

        let ip = recs.iter().find(|r| r.indicator.kind == Kind::Ip).unwrap();
        assert_eq!(ip.indicator.value, "198.51.100.7");
        assert!(ip.tags.contains(&"port:8080".to_string()));
        assert_eq!(ip.category, Some(Category::C2));
        assert!(ip.reference_url.is_some());

        assert!(recs.iter().any(|r| r.indicator.kind == Kind::Domain));
        let s = skips(&rows);
        assert!(
            s.iter().any(|(_, r)| r == "unsupported ioc_type md5_hash"),
            "{s:?}"
        );
        assert!(
            s.iter()
                .any(|(_, r)| r == "unsupported ioc_type sha256_hash")
        );
    }

    #[test]
    fn csv_reordered_columns() {
        let csv =
            "# \"ioc_type\", \"ioc_value\", \"ioc_id\"\n\"domain\", \"Evil.Example\", \"9\"\n";
        let rows = parse_bytes(Format::Threatfox, csv.as_bytes()).unwrap();
        let r = records(&rows)[0];
        assert_eq!(r.indicator.value, "evil.example");
        assert_eq!(r.source_id.as_deref(), Some("9"));
        assert_eq!(r.line, 2);
    }

    #[test]
    fn json_export_and_api() {
        let rows = parse_bytes(Format::Threatfox, &example("threatfox.json")).unwrap();
        let recs = records(&rows);
        assert!(recs.len() >= 3);
        let first = recs[0];
        assert_eq!(first.source_id.as_deref(), Some("1370453"));
        assert!(first.tags.contains(&"xworm".to_string()));
        assert!(first.tags.contains(&"malware:win.xworm".to_string()));
        assert!(
            skips(&rows)
                .iter()
                .any(|(_, r)| r.starts_with("unsupported ioc_type"))
        );

        let api = r#"{"query_status":"ok","data":[{"id":"41","ioc":"203.0.113.9:443","ioc_type":"ip:port",
            "threat_type":"botnet_cc","malware":"win.cobalt_strike","malware_printable":"Cobalt Strike",
            "confidence_level":75,"first_seen":"2024-11-20 10:00:13 UTC","reference":null,"tags":["cs","beacon"]}]}"#;
        let rows = parse_bytes(Format::Threatfox, api.as_bytes()).unwrap();
        let r = records(&rows)[0];
        assert_eq!(r.indicator.value, "203.0.113.9");
        assert_eq!(r.confidence, Some(75));
        assert_eq!(r.source_id.as_deref(), Some("41"));
        assert!(r.first_seen.is_some());
        assert_eq!(r.reference_url, None);
        assert!(r.tags.contains(&"beacon".to_string()));
        assert!(r.tags.contains(&"port:443".to_string()));
    }

    #[test]
    fn ports() {
        assert_eq!(
            split_port("198.51.100.7:8080"),
            Some(("198.51.100.7", 8080))
        );
        assert_eq!(split_port("[2001:db8::1]:443"), Some(("2001:db8::1", 443)));
        assert_eq!(split_port("198.51.100.7"), None);
        assert_eq!(split_port("198.51.100.7:99999"), None);
    }
}
