//! abuse.ch URLhaus: the CSV dumps and the JSON dump and API answer.
//!
//! The CSV is read by its header (`# id,dateadded,url,url_status,
//! last_online,threat,tags,urlhaus_link,reporter`), never by position:
//! older dumps lack `last_online`, and columns may come and go again.

use std::io::BufRead;

use kanki_indicators::{Category, Kind};
use serde_json::Value;

use crate::common::{
    self, CategoryMemo, CsvFormat, CsvRows, Fields, Header, RowResult, parse_date, push_tags,
};
use crate::json::{self, JsonFormat, JsonRows};
use crate::{FeedError, Format, Row};

pub(crate) fn parse(
    mut input: Box<dyn BufRead + Send>,
) -> Result<Box<dyn Iterator<Item = RowResult> + Send>, FeedError> {
    let (is_json, blank_lines) = common::sniff_json(&mut input).map_err(FeedError::from_io)?;
    if is_json {
        return Ok(Box::new(JsonRows::<Urlhaus>::new(input, 1 + blank_lines)?));
    }
    Ok(Box::new(CsvRows::<Urlhaus>::open(input, 1 + blank_lines)?))
}

/// The fields of one URLhaus entry, wherever it came from.
#[derive(Default)]
struct Entry<'a> {
    id: Option<&'a str>,
    url: Option<&'a str>,
    dateadded: Option<&'a str>,
    url_status: Option<&'a str>,
    last_online: Option<&'a str>,
    category: Option<Category>,
    urlhaus_link: Option<&'a str>,
    reporter: Option<&'a str>,
}

impl Entry<'_> {
    /// The record, with `tags` already filled in; `missing` is the reason
    /// when there is no URL.
    fn into_row(self, line: u64, tags: Vec<String>, missing: &str) -> Row {
        let Some(url) = self.url else {
            return common::skip(line, missing);
        };
        let mut rec = match common::record_or_skip(line, Some(Kind::Url), url) {
            Ok(r) => r,
            Err(s) => return Row::Skip(s),
        };
        rec.source_id = self.id.map(str::to_string);
        rec.first_seen = self.dateadded.and_then(parse_date);
        rec.last_seen = self.last_online.and_then(parse_date);
        rec.online = match self.url_status {
            Some(s) if s.eq_ignore_ascii_case("online") => Some(true),
            Some(s) if s.eq_ignore_ascii_case("offline") => Some(false),
            _ => None,
        };
        rec.category = self.category;
        rec.reference_url = self.urlhaus_link.map(str::to_string);
        rec.reporter = self.reporter.map(str::to_string);
        rec.tags = tags;
        Row::Record(rec)
    }
}

pub(crate) struct Urlhaus;

pub(crate) struct Cols {
    id: Option<usize>,
    dateadded: Option<usize>,
    url: usize,
    url_status: Option<usize>,
    last_online: Option<usize>,
    threat: Option<usize>,
    tags: Option<usize>,
    urlhaus_link: Option<usize>,
    reporter: Option<usize>,
    categories: CategoryMemo,
}

impl CsvFormat for Urlhaus {
    type Cols = Cols;
    const FORMAT: Format = Format::Urlhaus;
    const EXPECTED: &'static str = "a `url` column";

    fn columns(h: &Header) -> Option<Cols> {
        Some(Cols {
            id: h.index(&["id"]),
            dateadded: h.index(&["dateadded", "date_added"]),
            url: h.index(&["url"])?,
            url_status: h.index(&["url_status"]),
            last_online: h.index(&["last_online"]),
            threat: h.index(&["threat"]),
            tags: h.index(&["tags"]),
            urlhaus_link: h.index(&["urlhaus_link"]),
            reporter: h.index(&["reporter"]),
            categories: CategoryMemo::default(),
        })
    }

    fn is_header(cols: &Cols, f: &Fields) -> bool {
        f.get(Some(cols.url)) == Some("url")
    }

    fn row(c: &mut Cols, line: u64, f: &Fields) -> Row {
        let url = f.get(Some(c.url));
        if url.is_none()
            && f.bytes(c.url)
                .is_some_and(|b| std::str::from_utf8(b).is_err())
        {
            return common::skip(line, "not valid UTF-8");
        }
        let mut tags = Vec::new();
        if let Some(t) = f.get(c.tags) {
            push_tags(&mut tags, t);
        }
        Entry {
            id: f.get(c.id),
            url,
            dateadded: f.get(c.dateadded),
            url_status: f.get(c.url_status),
            last_online: f.get(c.last_online),
            category: f.get(c.threat).map(|t| c.categories.get(t)),
            urlhaus_link: f.get(c.urlhaus_link),
            reporter: f.get(c.reporter),
        }
        .into_row(line, tags, "missing url column value")
    }
}

impl JsonFormat for Urlhaus {
    const LIST_KEY: &'static str = "urls";
    const NAME: &'static str = "URLhaus";

    fn row(id: Option<&str>, line: u64, v: &Value) -> Row {
        if !v.is_object() {
            return common::skip(line, "JSON entry is not an object");
        }
        let get = |k: &str| json::text(v, k).filter(|s| !s.trim().is_empty());
        let (own_id, url, added, status, last, threat, link, reporter) = (
            get("id"),
            get("url"),
            get("dateadded").or_else(|| get("date_added")),
            get("url_status"),
            get("last_online"),
            get("threat"),
            get("urlhaus_link").or_else(|| get("urlhaus_reference")),
            get("reporter"),
        );
        Entry {
            id: own_id.as_deref().or(id),
            url: url.as_deref(),
            dateadded: added.as_deref(),
            url_status: status.as_deref(),
            last_online: last.as_deref(),
            category: threat.as_deref().map(Category::from_feed_label),
            urlhaus_link: link.as_deref(),
            reporter: reporter.as_deref(),
        }
        .into_row(line, json::tags(v, "tags"), "missing url value")
    }
}

#[cfg(test)]
mod tests {
    use kanki_indicators::Category;

    use crate::tests::{example, records, skips};
    use crate::{FeedError, Format, Row, parse_bytes};

    #[test]
    fn csv_example() {
        let rows = parse_bytes(Format::Urlhaus, &example("urlhaus.csv")).unwrap();
        let recs = records(&rows);
        assert!(recs.len() >= 18, "{}", recs.len());
        let first = recs[0];
        assert_eq!(first.line, 10);
        assert_eq!(first.indicator.value, "http://198.51.100.23:44512/i");
        assert_eq!(first.source_id.as_deref(), Some("3296120"));
        assert_eq!(first.category, Some(Category::MalwareDistribution));
        assert_eq!(first.online, Some(true));
        assert_eq!(first.tags, ["32-bit", "elf", "mips", "Mozi"]);
        assert_eq!(
            first.reference_url.as_deref(),
            Some("https://urlhaus.abuse.ch/url/3296120/")
        );
        assert_eq!(first.reporter.as_deref(), Some("geenensp"));
        assert_eq!(
            first.first_seen.unwrap().to_rfc3339(),
            "2024-11-20T10:11:05+00:00"
        );
        assert!(first.last_seen.is_some());
        let offline = recs.iter().find(|r| r.online == Some(false)).unwrap();
        assert_eq!(offline.last_seen, None);
        let s = skips(&rows);
        assert!(s.contains(&(18, "invalid URL".to_string())), "{s:?}");
        assert!(
            s.contains(&(21, "unsupported URL scheme".to_string())),
            "{s:?}"
        );
    }

    #[test]
    fn old_header_without_last_online() {
        let rows = parse_bytes(Format::Urlhaus, &example("urlhaus-old.csv")).unwrap();
        let recs = records(&rows);
        assert!(recs.len() >= 4);
        assert!(
            recs.iter()
                .all(|r| r.last_seen.is_none() && r.first_seen.is_some())
        );
        assert_eq!(recs[0].category, Some(Category::MalwareDistribution));
    }

    #[test]
    fn columns_by_header_not_position() {
        let csv = "# reporter,url,id,threat,dateadded\n\
                   \"alice\",\"http://Bad.Example/x\",\"7\",\"malware_download\",\"bad date\"\n";
        let rows = parse_bytes(Format::Urlhaus, csv.as_bytes()).unwrap();
        let r = records(&rows)[0];
        assert_eq!(r.indicator.value, "http://bad.example/x");
        assert_eq!(r.reporter.as_deref(), Some("alice"));
        assert_eq!(r.source_id.as_deref(), Some("7"));
        // An unparseable date leaves the date empty; the row stays.
        assert_eq!(r.first_seen, None);
        assert_eq!(r.line, 2);
    }

    #[test]
    fn plain_header_line_and_extra_columns() {
        let csv = "id,dateadded,url,new_column\n1,2024-01-02 03:04:05,http://a.example/,zzz\n";
        let rows = parse_bytes(Format::Urlhaus, csv.as_bytes()).unwrap();
        assert_eq!(records(&rows)[0].indicator.value, "http://a.example/");
    }

    #[test]
    fn bad_rows_are_counted_not_fatal() {
        let csv = "# id,url,tags\n\
                   \"1\",\"http://a.example/\",\"x\"\n\
                   \"2\",\"http://b.example/\"\n\
                   \"3\",\"\",\"\"\n\
                   \"4\",\"http://c.example/\",\"unterminated\n\
                   \"5\",\"http://d.example/\",\"\"\n";
        let rows = parse_bytes(Format::Urlhaus, csv.as_bytes()).unwrap();
        assert_eq!(
            skips(&rows),
            [
                (3, "wrong number of fields".to_string()),
                (4, "missing url column value".to_string()),
                (5, "unterminated quoted field".to_string()),
            ]
        );
        let lines: Vec<u64> = records(&rows).iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 6]);
    }

    #[test]
    fn multi_line_quoted_field_keeps_its_start_line() {
        let csv = "id,url,tags\n1,\"http://a.example/\",\"a,\nb\"\n2,http://b.example/,\n";
        let rows = parse_bytes(Format::Urlhaus, csv.as_bytes()).unwrap();
        let recs = records(&rows);
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].line, recs[1].line), (2, 4));
        assert_eq!(recs[0].tags, ["a", "b"]);
    }

    #[test]
    fn no_header_is_an_error() {
        for input in ["", "# just a comment\n", "\"1\",\"http://a.example/\"\n"] {
            let e = parse_bytes(Format::Urlhaus, input.as_bytes()).unwrap_err();
            assert!(matches!(e, FeedError::NoHeader { .. }), "{input:?}: {e}");
        }
    }

    #[test]
    fn repeated_header_remaps() {
        let csv = "# id,url\n\"1\",\"http://a.example/\"\n# url,id\n\"http://b.example/\",\"2\"\nurl,id\n";
        let rows = parse_bytes(Format::Urlhaus, csv.as_bytes()).unwrap();
        let recs = records(&rows);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].source_id.as_deref(), Some("2"));
        assert!(skips(&rows).is_empty());
    }

    #[test]
    fn json_dump_and_api() {
        let rows = parse_bytes(Format::Urlhaus, &example("urlhaus.json")).unwrap();
        let recs = records(&rows);
        assert!(recs.len() >= 4);
        let r = recs[0];
        assert_eq!(r.source_id.as_deref(), Some("3296120"));
        assert_eq!(r.line, 3);
        assert_eq!(r.online, Some(true));
        assert_eq!(r.tags, ["elf", "Mozi"]);
        assert!(recs.iter().any(|r| r.tags.is_empty()));
        assert!(!skips(&rows).is_empty());

        let api = r#"{"query_status":"ok","urls":[
            {"id":"12","url":"http://api.example/a","url_status":"offline","threat":"malware_download",
             "tags":null,"date_added":"2024-11-20 10:11:05 UTC","urlhaus_reference":"https://urlhaus.abuse.ch/url/12/"}]}"#;
        let rows = parse_bytes(Format::Urlhaus, api.as_bytes()).unwrap();
        let r = records(&rows)[0];
        assert_eq!(r.line, 2);
        assert_eq!(r.source_id.as_deref(), Some("12"));
        assert_eq!(r.online, Some(false));
        assert!(r.first_seen.is_some());
        assert!(r.reference_url.is_some());

        let failed = r#"{"query_status":"invalid_url"}"#;
        assert!(parse_bytes(Format::Urlhaus, failed.as_bytes()).is_err());
        let none = r#"{"query_status":"no_results"}"#;
        assert!(
            parse_bytes(Format::Urlhaus, none.as_bytes())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn broken_json_stops_with_a_skip() {
        let j = "{\"1\": [{\"url\": \"http://a.example/\"}],\n\"2\": [{\"url\": ";
        let rows = parse_bytes(Format::Urlhaus, j.as_bytes()).unwrap();
        assert_eq!(records(&rows).len(), 1);
        assert_eq!(skips(&rows), [(2, "invalid JSON".to_string())]);
        assert!(matches!(&rows[1], Row::Skip(_)));
    }
}
