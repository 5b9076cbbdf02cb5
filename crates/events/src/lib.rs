//! Harmonized security events ("this source did that at that time") and
//! the parsers that make them from sensors and reports.
//!
//! An [`Event`] carries IntelMQ's harmonized field names (`source.ip`,
//! `time.source`, `classification.type`, `malware.name`, ...) so that a
//! record reads the same whichever feed it came from, and keeps its raw
//! record for evidence. Parsers are tolerant: a bad record is
//! [`Item::Skipped`] with its line and reason, never fatal; what a parser
//! cannot map (an unknown column) is reported through [`Notes`], never
//! dropped in silence.

mod cowrie;
mod csv_records;
mod event;
mod mapped;
pub mod shadowserver;
pub mod synth;
mod xarf;

use std::io::BufRead;
use std::str::FromStr;

pub use cowrie::parse_cowrie;
pub use event::{Event, EventKey, KeyHasher, KeyPrefix, hash_set_items_within};
pub use mapped::{MappedFormat, SinkholeMapping, TimeFormat, parse_mapped};
pub use xarf::parse_xarf;

/// What a parser yields.
#[derive(Debug)]
pub enum Item {
    Event(Box<Event>),
    Skipped(Skipped),
}

/// A record that was not turned into an event, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Line (or record) number in the input, from 1.
    pub line: u64,
    pub reason: String,
}

/// What a parser noticed about its input as a whole: the report type it
/// read it as, and columns it had no mapping for (kept under `extra.`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Notes {
    pub report_type: Option<String>,
    pub unknown_columns: Vec<String>,
}

/// Why an input cannot be read at all (as opposed to a bad record in it).
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Input(String),
}

/// The input formats `kanki ingest --format` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Shadowserver CSV reports, read by header; the report type from the
    /// file name or given.
    Shadowserver,
    /// Cowrie's JSON log (one object a line), grouped per session.
    Cowrie,
    /// Sinkhole or taken-down C&C logs (CSV or JSON lines) through a
    /// configured mapping.
    Sinkhole,
    /// X-ARF v4 abuse reports: the JSON report, alone or in a mail.
    Xarf,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Shadowserver,
        Format::Cowrie,
        Format::Sinkhole,
        Format::Xarf,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Shadowserver => "shadowserver",
            Format::Cowrie => "cowrie",
            Format::Sinkhole => "sinkhole",
            Format::Xarf => "xarf",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("unknown event format {s:?}: one of shadowserver, cowrie, sinkhole, xarf")
            })
    }
}

/// A stream of parsed items and, once read, the notes about the input.
pub type Items = Box<dyn Iterator<Item = Result<Item, EventsError>> + Send>;

/// Longest line or record kept; a longer one is read to its end, dropped and
/// counted as skipped, so that an input without line ends cannot make a
/// parser hold it all.
pub const MAX_RECORD: usize = 1 << 20;

/// The reason a record longer than [`MAX_RECORD`] is skipped.
pub(crate) fn too_long() -> String {
    format!("record longer than {MAX_RECORD} bytes")
}

/// Reads whole lines, tolerating bytes that are not UTF-8 (replaced): each
/// line, or `None` for a line longer than [`MAX_RECORD`].
pub(crate) fn lines(
    input: Box<dyn BufRead + Send>,
) -> impl Iterator<Item = std::io::Result<Option<String>>> {
    let mut input = input;
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        let mut long = false;
        let mut any = false;
        loop {
            let avail = match input.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if avail.is_empty() {
                if !any {
                    return None;
                }
                break;
            }
            any = true;
            let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            if buf.len() + chunk.len() <= MAX_RECORD {
                buf.extend_from_slice(chunk);
            } else {
                long = true;
                buf = Vec::new();
            }
            input.consume(used);
            if done {
                break;
            }
        }
        if long {
            return Some(Ok(None));
        }
        while buf.last().is_some_and(|b| *b == b'\r') {
            buf.pop();
        }
        Some(Ok(Some(String::from_utf8(buf).unwrap_or_else(|e| {
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }))))
    })
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`), optionally followed by `Z`,
/// `+00` or `+00:00`: how Shadowserver writes every timestamp, read
/// without chrono's format machinery (a report has a million of them).
fn plain_utc(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let b = s.as_bytes();
    let rest = b.get(19..)?;
    if !matches!(rest, b"" | b"Z" | b"+00" | b"+00:00")
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
    Some(date.and_time(time).and_utc())
}

/// Parses a timestamp as reports write them: RFC 3339, `YYYY-MM-DD
/// HH:MM:SS` (UTC, as Shadowserver writes it; an optional `Z` or `+00`),
/// or unix seconds.
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(t) = plain_utc(s) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let bare = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00"))
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s)
        .trim_end();
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(bare, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 12 {
        return Utc.timestamp_opt(s.parse().ok()?, 0).single();
    }
    None
}

#[cfg(test)]
mod time_tests {
    use super::parse_time;

    #[test]
    fn shadowserver_times_read_as_chrono_reads_them() {
        for s in [
            "2024-05-01 10:00:00",
            "2024-05-01T23:59:59Z",
            "2024-02-29 00:00:01+00",
            "2024-12-31 12:34:56+00:00",
        ] {
            let bare = &s[..19].replace('T', " ");
            let expected = chrono::NaiveDateTime::parse_from_str(bare, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc();
            assert_eq!(parse_time(s), Some(expected), "{s}");
        }
        // Not a date, or not this form: the other parsers decide.
        assert_eq!(parse_time("2023-02-29 00:00:00"), None);
        assert_eq!(parse_time("2024-05-01 25:00:00"), None);
        assert_eq!(
            parse_time("2024-05-01 10:00:00.5").map(|t| t.timestamp_subsec_millis()),
            Some(500)
        );
        assert_eq!(
            parse_time("1714557600").map(|t| t.timestamp()),
            Some(1_714_557_600)
        );
        assert_eq!(parse_time("2024-05-01 1O:00:00"), None);
    }
}
