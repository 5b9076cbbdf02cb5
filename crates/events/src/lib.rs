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
pub use event::{Event, EventKey, KeyPrefix};
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

/// Reads whole lines, tolerating bytes that are not UTF-8 (replaced).
pub(crate) fn lines(
    input: Box<dyn BufRead + Send>,
) -> impl Iterator<Item = std::io::Result<String>> {
    let mut input = input;
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                Some(Ok(String::from_utf8(buf).unwrap_or_else(|e| {
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                })))
            }
            Err(e) => Some(Err(e)),
        }
    })
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
