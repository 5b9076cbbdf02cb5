//! The record formats: every indicator given, with its fields, as CSV or
//! JSON. They take the records as an iterator (owned or borrowed), so a
//! caller can stream them from the store without holding the whole list.

use std::borrow::Borrow;
use std::io::{self, BufWriter, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use kanki_indicators::Indicator;

use crate::BUFFER_SIZE;

/// The CSV columns, in order. `tags` and `sources` (the sources' names)
/// hold several values joined by `;`; times are RFC 3339 UTC to the
/// second; an absent value is an empty field.
pub const CSV_HEADER: [&str; 14] = [
    "id",
    "kind",
    "value",
    "host",
    "category",
    "status",
    "status_reason",
    "confidence",
    "first_seen",
    "last_seen",
    "expires_at",
    "tlp",
    "tags",
    "sources",
];

/// Writes the indicators as CSV with a header row of [`CSV_HEADER`].
/// Fields are quoted as RFC 4180 says (where they hold a comma, a quote or
/// a line break, quotes doubled); records end in `\n`. Returns the number
/// of records written.
pub fn write_csv<W, I>(w: W, indicators: I) -> io::Result<u64>
where
    W: Write,
    I: IntoIterator,
    I::Item: Borrow<Indicator>,
{
    let mut out = csv::WriterBuilder::new()
        .buffer_capacity(BUFFER_SIZE)
        .from_writer(w);
    out.write_record(CSV_HEADER)?;
    let mut n = 0;
    let mut tags = String::new();
    let mut sources = String::new();
    let mut id = String::new();
    for ind in indicators {
        let ind = ind.borrow();
        join_into(&mut tags, ind.tags.iter().map(String::as_str));
        join_into(&mut sources, ind.sources.iter().map(|s| s.source.as_str()));
        id.clear();
        id.push_str(&ind.id.to_string());
        let confidence = ind.confidence.to_string();
        out.write_record([
            id.as_str(),
            ind.kind.as_str(),
            &ind.value,
            ind.host.as_deref().unwrap_or(""),
            ind.category.as_str(),
            ind.status.as_str(),
            ind.status_reason.as_deref().unwrap_or(""),
            &confidence,
            &time(&ind.first_seen),
            &time(&ind.last_seen),
            &ind.expires_at.as_ref().map(time).unwrap_or_default(),
            ind.tlp.as_str(),
            &tags,
            &sources,
        ])?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

fn join_into<'a>(buf: &mut String, parts: impl Iterator<Item = &'a str>) {
    buf.clear();
    for (i, p) in parts.enumerate() {
        if i > 0 {
            buf.push(';');
        }
        buf.push_str(p);
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Writes the indicators as one JSON array of [`Indicator`] objects (the
/// serde form the API also serves), one object a line, streaming: each
/// record is serialized straight into the output. Returns the number of
/// records written.
pub fn write_json<W, I>(w: W, indicators: I) -> io::Result<u64>
where
    W: Write,
    I: IntoIterator,
    I::Item: Borrow<Indicator>,
{
    let mut w = BufWriter::with_capacity(BUFFER_SIZE, w);
    w.write_all(b"[")?;
    let mut n = 0u64;
    for ind in indicators {
        w.write_all(if n == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut w, ind.borrow())?;
        n += 1;
    }
    w.write_all(b"\n]\n")?;
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use kanki_indicators::{Category, Kind, SourceRef, Status, Tlp};

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, h, 0, 0).unwrap()
    }

    fn source(name: &str) -> SourceRef {
        SourceRef {
            source: name.into(),
            source_id: None,
            reference_url: None,
            reporter: None,
            category: Category::MalwareDistribution,
            confidence: 80,
            first_seen: at(1),
            last_seen: at(2),
            expires_at: None,
        }
    }

    fn sample() -> Vec<Indicator> {
        vec![
            Indicator {
                id: 1,
                kind: Kind::Url,
                value: "http://bad.example/a,b\"c".into(),
                host: Some("bad.example".into()),
                category: Category::MalwareDistribution,
                confidence: 90,
                status: Status::Active,
                status_reason: None,
                first_seen: at(1),
                last_seen: at(2),
                expires_at: Some(at(3)),
                tags: vec!["emotet".into(), "doc".into()],
                tlp: Tlp::Clear,
                sources: vec![source("urlhaus"), source("operator")],
                evidence: vec![],
            },
            Indicator {
                id: 2,
                kind: Kind::Ip,
                value: "192.0.2.0/24".into(),
                host: None,
                category: Category::C2,
                confidence: 50,
                status: Status::Allowlisted,
                status_reason: Some("allowlist: suffix example.net\nby operator".into()),
                first_seen: at(4),
                last_seen: at(5),
                expires_at: None,
                tags: vec![],
                tlp: Tlp::AmberStrict,
                sources: vec![source("threatfox")],
                evidence: vec![],
            },
        ]
    }

    #[test]
    fn csv_with_header_and_quoting() {
        let mut out = Vec::new();
        assert_eq!(write_csv(&mut out, sample().iter()).unwrap(), 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id,kind,value,host,category,status,status_reason,confidence,first_seen,last_seen,expires_at,tlp,tags,sources\n\
             1,url,\"http://bad.example/a,b\"\"c\",bad.example,malware-distribution,active,,90,\
             2024-05-01T01:00:00Z,2024-05-01T02:00:00Z,2024-05-01T03:00:00Z,clear,emotet;doc,urlhaus;operator\n\
             2,ip,192.0.2.0/24,,c2,allowlisted,\"allowlist: suffix example.net\nby operator\",50,\
             2024-05-01T04:00:00Z,2024-05-01T05:00:00Z,,amber+strict,,threatfox\n"
        );
        let mut out = Vec::new();
        assert_eq!(write_csv(&mut out, Vec::<Indicator>::new()).unwrap(), 0);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn json_array_streams_and_round_trips() {
        let records = sample();
        let mut out = Vec::new();
        // Owned records, as from a store cursor.
        assert_eq!(write_json(&mut out, records.clone()).unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("[\n{\"id\":1,\"kind\":\"url\","), "{text}");
        assert_eq!(text.lines().count(), 4);
        assert!(text.ends_with("}\n]\n"));
        let back: Vec<Indicator> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, records);

        let mut out = Vec::new();
        assert_eq!(
            write_json(&mut out, Vec::<Indicator>::new().iter()).unwrap(),
            0
        );
        assert_eq!(out, b"[\n]\n");
        let empty: Vec<Indicator> = serde_json::from_slice(&out).unwrap();
        assert!(empty.is_empty());
    }
}
