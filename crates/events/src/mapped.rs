//! Sinkhole and taken-down C&C logs: CSV (read by header) or JSON (one
//! object a line, or an array), whose columns or keys a configured
//! [`SinkholeMapping`] names. Every record is an `infected-system` event
//! (`malicious-code`) unless the mapping says otherwise.

use std::io::BufRead;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::csv_records::{CsvRecords, Next};
use crate::{Event, EventsError, Item, Items, MAX_RECORD, Notes, Skipped, parse_time};

/// Which column (CSV) or key (JSON) holds what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkholeMapping {
    /// The mapping's name, given as `kanki ingest --mapping NAME`; also the
    /// events' `feed.name`.
    pub name: String,
    /// `feed.provider`: who ran the sinkhole or took the server down.
    pub provider: String,
    /// The infected machine's address.
    pub address: String,
    /// Its source port (needed behind carrier-grade NAT).
    #[serde(default)]
    pub port: Option<String>,
    /// When it connected.
    pub time: String,
    /// `auto` (RFC 3339, `YYYY-MM-DD HH:MM:SS` UTC, or unix seconds) or a
    /// strftime pattern of a UTC time.
    #[serde(default = "auto")]
    pub time_format: String,
    /// The malware family, from this column...
    #[serde(default)]
    pub family: Option<String>,
    /// ...or the same for every record.
    #[serde(default)]
    pub family_value: Option<String>,
    #[serde(default)]
    pub destination_address: Option<String>,
    #[serde(default)]
    pub destination_port: Option<String>,
    #[serde(default = "infected_system")]
    pub class: String,
    #[serde(default = "malicious_code")]
    pub taxonomy: String,
}

fn auto() -> String {
    "auto".into()
}
fn infected_system() -> String {
    "infected-system".into()
}
fn malicious_code() -> String {
    "malicious-code".into()
}

/// CSV or JSON, as the input turns out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappedFormat {
    Csv,
    Json,
}

/// Time format of a mapping, resolved.
#[derive(Clone, Debug)]
pub enum TimeFormat {
    Auto,
    Pattern(String),
}

impl TimeFormat {
    fn of(s: &str) -> TimeFormat {
        if s == "auto" {
            TimeFormat::Auto
        } else {
            TimeFormat::Pattern(s.to_string())
        }
    }

    fn parse(&self, v: &str) -> Option<DateTime<Utc>> {
        match self {
            TimeFormat::Auto => parse_time(v),
            TimeFormat::Pattern(p) => NaiveDateTime::parse_from_str(v.trim(), p)
                .ok()
                .map(|t| t.and_utc()),
        }
    }
}

/// Parses a sinkhole log through `mapping`.
pub fn parse_mapped(
    mapping: SinkholeMapping,
    mut input: Box<dyn BufRead + Send>,
) -> Result<(Notes, Items), EventsError> {
    let first = loop {
        let buf = input.fill_buf()?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    };
    let notes = Notes::default();
    match first {
        None => Ok((notes, Box::new(std::iter::empty()))),
        Some(b'{') | Some(b'[') => Ok((notes, json(mapping, input)?)),
        Some(_) => Ok((notes, csv(mapping, input)?)),
    }
}

/// Looks a field up by name (a CSV column or a JSON key).
trait Record {
    fn get(&self, name: &str) -> Option<String>;
}

fn event_of(m: &SinkholeMapping, tf: &TimeFormat, r: &dyn Record, raw: Vec<u8>, line: u64) -> Item {
    let skip = |reason: String| Item::Skipped(Skipped { line, reason });
    let Some(addr) = r.get(&m.address) else {
        return skip(format!("no {} (the address)", m.address));
    };
    let Ok(ip) = addr.trim().parse::<IpAddr>() else {
        return skip(format!("{} {addr:?} is not an address", m.address));
    };
    let Some(t) = r.get(&m.time).and_then(|v| tf.parse(&v)) else {
        return skip(format!("{} is missing or not a time", m.time));
    };
    let mut e = Event::new(ip, t, &m.taxonomy, &m.class, &m.name, &m.provider);
    let port = |col: &Option<String>| {
        col.as_ref()
            .and_then(|c| r.get(c))
            .and_then(|v| v.trim().parse().ok())
    };
    e.source_port = port(&m.port);
    e.destination_port = port(&m.destination_port);
    e.destination_ip = m
        .destination_address
        .as_ref()
        .and_then(|c| r.get(c))
        .and_then(|v| v.trim().parse().ok());
    e.malware = m
        .family
        .as_ref()
        .and_then(|c| r.get(c))
        .or_else(|| m.family_value.clone())
        .map(|f| f.trim().to_lowercase())
        .filter(|f| !f.is_empty());
    e.raw = raw;
    Item::Event(Box::new(e))
}

struct CsvRow<'a> {
    header: &'a [String],
    records: &'a CsvRecords,
}

impl Record for CsvRow<'_> {
    fn get(&self, name: &str) -> Option<String> {
        let i = self.header.iter().position(|h| h == name)?;
        if i >= self.records.fields() {
            return None;
        }
        let v = String::from_utf8_lossy(self.records.field(i));
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    }
}

fn csv(m: SinkholeMapping, input: Box<dyn BufRead + Send>) -> Result<Items, EventsError> {
    let mut records = CsvRecords::new(input);
    if records.next_record()? == Next::TooLong {
        return Err(EventsError::Input(format!(
            "the header is longer than {MAX_RECORD} bytes"
        )));
    }
    let header: Vec<String> = (0..records.fields())
        .map(|i| {
            String::from_utf8_lossy(records.field(i))
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    for need in [&m.address, &m.time] {
        if !header.contains(need) {
            return Err(EventsError::Input(format!(
                "the header has no column {need:?} (mapping {})",
                m.name
            )));
        }
    }
    let header_raw = records.raw().to_vec();
    let tf = TimeFormat::of(&m.time_format);
    let mut line = 1;
    Ok(Box::new(std::iter::from_fn(move || {
        loop {
            let next = match records.next_record() {
                Err(e) => return Some(Err(e.into())),
                Ok(n) => n,
            };
            line += 1;
            match next {
                Next::End => return None,
                Next::TooLong => return Some(Ok(skipped(line, &crate::too_long()))),
                Next::Record => {}
            }
            if records.fields() == 1 && records.field(0).is_empty() {
                continue;
            }
            let mut raw = header_raw.clone();
            raw.push(b'\n');
            raw.extend_from_slice(records.raw());
            let row = CsvRow {
                header: &header,
                records: &records,
            };
            return Some(Ok(event_of(&m, &tf, &row, raw, line)));
        }
    })))
}

impl Record for serde_json::Map<String, serde_json::Value> {
    fn get(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

fn json(m: SinkholeMapping, mut input: Box<dyn BufRead + Send>) -> Result<Items, EventsError> {
    let tf = TimeFormat::of(&m.time_format);
    let first = input
        .fill_buf()?
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    if first == Some(b'[') {
        return Ok(json_array(m, tf, input));
    }
    let mut lines = crate::lines(input);
    let mut line = 0;
    Ok(Box::new(std::iter::from_fn(move || {
        loop {
            let text = match lines.next()? {
                Ok(Some(t)) => t,
                Ok(None) => {
                    line += 1;
                    return Some(Ok(Item::Skipped(Skipped {
                        line,
                        reason: crate::too_long(),
                    })));
                }
                Err(e) => return Some(Err(e.into())),
            };
            line += 1;
            if text.trim().is_empty() {
                continue;
            }
            return Some(Ok(match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => json_item(&m, &tf, v, line),
                Err(e) => Item::Skipped(Skipped {
                    line,
                    reason: format!("not JSON: {e}"),
                }),
            }));
        }
    })))
}

/// A JSON array, read one element at a time (each at most
/// [`crate::MAX_RECORD`] bytes), numbered from 1. Anything that is not an
/// element ends it with a skip saying why.
fn json_array(m: SinkholeMapping, tf: TimeFormat, mut input: Box<dyn BufRead + Send>) -> Items {
    use serde::Deserialize;
    let mut index = 0u64;
    let mut opened = false;
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        // Past blanks, the opening bracket and commas, to the next element.
        loop {
            let buf = match input.fill_buf() {
                Ok(b) => b,
                Err(e) => {
                    done = true;
                    return Some(Err(e.into()));
                }
            };
            let Some(i) = buf.iter().position(|b| !b.is_ascii_whitespace()) else {
                if buf.is_empty() {
                    done = true;
                    return opened.then(|| Ok(skipped(index + 1, "the JSON array is not closed")));
                }
                let n = buf.len();
                input.consume(n);
                continue;
            };
            match buf[i] {
                b'[' if !opened => opened = true,
                b',' if opened => {}
                b']' if opened => {
                    done = true;
                    return None;
                }
                _ => break,
            }
            input.consume(i + 1);
        }
        index += 1;
        let mut limited = std::io::Read::take(&mut input, crate::MAX_RECORD as u64);
        let value = serde_json::Value::deserialize(&mut serde_json::Deserializer::from_reader(
            &mut limited,
        ));
        Some(Ok(match value {
            Ok(v) => json_item(&m, &tf, v, index),
            Err(_) if limited.limit() == 0 => {
                done = true;
                skipped(index, &crate::too_long())
            }
            Err(e) => {
                done = true;
                skipped(index, &format!("not a JSON array of objects: {e}"))
            }
        }))
    }))
}

fn skipped(line: u64, reason: &str) -> Item {
    Item::Skipped(Skipped {
        line,
        reason: reason.to_string(),
    })
}

fn json_item(m: &SinkholeMapping, tf: &TimeFormat, v: serde_json::Value, line: u64) -> Item {
    let raw = v.to_string().into_bytes();
    match v {
        serde_json::Value::Object(o) => event_of(m, tf, &o, raw, line),
        _ => Item::Skipped(Skipped {
            line,
            reason: "not a JSON object".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> SinkholeMapping {
        toml_like(
            r#"{"name":"takedown","provider":"JPCERT/CC","address":"ip","port":"sport","time":"ts","family":"bot"}"#,
        )
    }

    fn toml_like(json: &str) -> SinkholeMapping {
        serde_json::from_str(json).unwrap()
    }

    fn items(m: SinkholeMapping, text: &str) -> Vec<Item> {
        let (_, it) =
            parse_mapped(m, Box::new(std::io::Cursor::new(text.as_bytes().to_vec()))).unwrap();
        it.map(Result::unwrap).collect()
    }

    #[test]
    fn csv_and_json_map_the_same() {
        let csv = "ts,ip,sport,bot\n2024-05-01 10:00:00,192.0.2.9,40000,Emotet\nx,192.0.2.9,1,a\n";
        let json = "{\"ts\":\"2024-05-01T10:00:00Z\",\"ip\":\"192.0.2.9\",\"sport\":40000,\"bot\":\"Emotet\"}\n[oops\n";
        for (text, bad_line) in [(csv, 3), (json, 2)] {
            let it = items(mapping(), text);
            let Item::Event(e) = &it[0] else {
                panic!("{:?}", it[0])
            };
            assert_eq!(e.source_ip.to_string(), "192.0.2.9");
            assert_eq!(e.source_port, Some(40000));
            assert_eq!(e.malware.as_deref(), Some("emotet"));
            assert_eq!(e.class, "infected-system");
            assert_eq!(e.time_source.to_rfc3339(), "2024-05-01T10:00:00+00:00");
            let Item::Skipped(s) = &it[1] else { panic!() };
            assert_eq!(s.line, bad_line);
        }
    }

    #[test]
    fn a_time_pattern_and_a_missing_column() {
        let mut m = mapping();
        m.time_format = "%d/%m/%Y %H:%M".into();
        let it = items(m.clone(), "ts,ip\n01/05/2024 10:00,192.0.2.1\n");
        let Item::Event(e) = &it[0] else { panic!() };
        assert_eq!(e.time_source.to_rfc3339(), "2024-05-01T10:00:00+00:00");
        let r = parse_mapped(m, Box::new(std::io::Cursor::new(b"when,ip\n".to_vec())));
        assert!(matches!(r, Err(EventsError::Input(_))));
    }

    #[test]
    fn a_json_array_is_read_an_element_at_a_time_and_a_long_one_ends_it() {
        let m = mapping();
        let mut text = br#"  [ {"ip":"192.0.2.1","ts":"2024-05-01 10:00:00","bot":"Mirai"},
            {"ip":"192.0.2.2","ts":"2024-05-01 10:00:01"}, 7, {"ip":""#
            .to_vec();
        text.extend(std::iter::repeat_n(b'1', crate::MAX_RECORD));
        text.extend(br#""}]"#);
        let (_, items) = parse_mapped(m, Box::new(std::io::Cursor::new(text))).unwrap();
        let items: Vec<Item> = items.map(Result::unwrap).collect();
        assert_eq!(items.len(), 4, "{items:?}");
        assert!(matches!(&items[0], Item::Event(e) if e.malware.as_deref() == Some("mirai")));
        assert!(matches!(&items[1], Item::Event(e) if e.source_ip.to_string() == "192.0.2.2"));
        assert!(
            matches!(&items[2], Item::Skipped(s) if s.line == 3 && s.reason == "not a JSON object")
        );
        assert!(
            matches!(&items[3], Item::Skipped(s) if s.line == 4 && s.reason.contains("longer than")),
            "{:?}",
            items[3]
        );
    }

    #[test]
    fn a_json_line_longer_than_the_bound_is_skipped_and_the_next_read() {
        let m = mapping();
        let mut text = br#"{"ip":"192.0.2.1","ts":"2024-05-01 10:00:00","x":""#.to_vec();
        text.extend(std::iter::repeat_n(b'a', crate::MAX_RECORD));
        text.extend(b"\"}\n{\"ip\":\"192.0.2.3\",\"ts\":\"2024-05-01 10:00:00\"}\n");
        let (_, items) = parse_mapped(m, Box::new(std::io::Cursor::new(text))).unwrap();
        let items: Vec<Item> = items.map(Result::unwrap).collect();
        assert!(
            matches!(&items[0], Item::Skipped(s) if s.line == 1 && s.reason.contains("longer than"))
        );
        assert!(matches!(&items[1], Item::Event(e) if e.source_ip.to_string() == "192.0.2.3"));
    }
}
