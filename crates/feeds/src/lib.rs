//! Parsers for the external list formats kanki imports.
//!
//! Every parser is tolerant: a row it cannot use becomes a [`Row::Skip`]
//! with its line number and a short reason, and parsing goes on. Only an
//! input that cannot be read at all (an I/O error, a broken archive, a CSV
//! with no header line to map its columns) is an [`FeedError`].
//!
//! Inputs may be plain, gzip or zip; [`open_input`] detects which by the
//! first bytes.
//!
//! Each format lives in its own module; what they share (numbered lines,
//! CSV records and headers, dates, tags) is in `common`. Rows stream: CSV
//! and line formats hold one line at a time, whatever the input's size.
//! JSON inputs stream through a window of about one record: records are
//! found by walking the document over that byte slice, the only form for
//! which `serde_json` reports where a value ends (and so which line each
//! record is on).

use std::fmt;
use std::io::{BufRead, Cursor, Read};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use kanki_indicators::{Category, Normalized};

mod common;
mod hosts;
mod input;
mod json;
mod lines;
mod phishtank;
mod rpz;
pub mod synth;
mod threatfox;
mod urlhaus;

pub use input::{InputLimits, open_input};

/// A list format kanki can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// abuse.ch URLhaus: CSV (read by its header line) or JSON.
    Urlhaus,
    /// abuse.ch ThreatFox: CSV (`", "` separators, `"None"` nulls) or JSON.
    Threatfox,
    /// PhishTank CSV.
    Phishtank,
    /// OpenPhish: one URL a line.
    Openphish,
    /// One domain, URL or IP address a line, `#` comments.
    Plain,
    /// A hosts file (`0.0.0.0 name [name...]`).
    Hosts,
    /// An RPZ zone file: QNAME and IP triggers with their actions.
    Rpz,
}

impl Format {
    pub const ALL: &'static [Format] = &[
        Format::Urlhaus,
        Format::Threatfox,
        Format::Phishtank,
        Format::Openphish,
        Format::Plain,
        Format::Hosts,
        Format::Rpz,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Urlhaus => "urlhaus",
            Format::Threatfox => "threatfox",
            Format::Phishtank => "phishtank",
            Format::Openphish => "openphish",
            Format::Plain => "plain",
            Format::Hosts => "hosts",
            Format::Rpz => "rpz",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown feed format {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// One usable row of a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    /// 1-based line number in the (decompressed) input where the row starts.
    pub line: u64,
    /// The normalized indicator value.
    pub indicator: Normalized,
    /// The category the feed gives, if any; the importer falls back to the
    /// source's configured default.
    pub category: Option<Category>,
    /// The source's own identifier for the row (URLhaus id, ThreatFox ioc_id, ...).
    pub source_id: Option<String>,
    /// A page about the row at the source (urlhaus_link, phish_detail_url, ...).
    pub reference_url: Option<String>,
    pub reporter: Option<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// 0–100.
    pub confidence: Option<u8>,
    pub tags: Vec<String>,
    /// Liveness the source reports (URLhaus `url_status`, PhishTank `online`).
    pub online: Option<bool>,
}

impl FeedRecord {
    /// A record with only its value; the rest empty.
    pub fn new(line: u64, indicator: Normalized) -> Self {
        FeedRecord {
            line,
            indicator,
            category: None,
            source_id: None,
            reference_url: None,
            reporter: None,
            first_seen: None,
            last_seen: None,
            confidence: None,
            tags: Vec::new(),
            online: None,
        }
    }

    /// About what the record holds in memory: itself and its strings,
    /// each rounded as an allocator does.
    pub fn size_in_memory(&self) -> usize {
        let s = |v: &str| v.len().next_multiple_of(16);
        let o = |v: &Option<String>| v.as_deref().map_or(0, s);
        std::mem::size_of::<FeedRecord>()
            + s(&self.indicator.value)
            + o(&self.indicator.host)
            + o(&self.source_id)
            + o(&self.reference_url)
            + o(&self.reporter)
            + self
                .tags
                .iter()
                .map(|t| size_of::<String>() + s(t))
                .sum::<usize>()
    }
}

/// A row that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub line: u64,
    /// A short, stable reason used to group skipped rows in the import
    /// summary, e.g. `invalid URL`, `unsupported ioc_type md5_hash`.
    pub reason: String,
}

/// What a parser yields for each data row.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Record(FeedRecord),
    Skip(Skip),
}

/// An input that cannot be parsed at all.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read input: {0}")]
    Io(#[from] std::io::Error),
    #[error("broken archive: {0}")]
    Archive(String),
    /// A bound of [`InputLimits`] crossed: a compression bomb, a file too large.
    #[error("input refused: {0}")]
    Refused(String),
    #[error("{format} input has no header line naming its columns (expected one with {expected})")]
    NoHeader {
        format: Format,
        expected: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

impl FeedError {
    /// An I/O error, or the archive error it carries (see [`open_input`]).
    pub(crate) fn from_io(e: std::io::Error) -> FeedError {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<input::InputError>())
        {
            let inner = e.into_inner().expect("checked");
            return match inner.downcast::<input::InputError>() {
                Ok(i) => (*i).into(),
                Err(other) => FeedError::Io(std::io::Error::other(other)),
            };
        }
        FeedError::Io(e)
    }
}

/// Parses a (decompressed) input in the given format. Rows come out in input order.
///
/// An error met after parsing started (a read error or a corrupt archive
/// in the middle of the input) cannot be an `Err` here: it becomes a last
/// [`Row::Skip`] with the reason `input error: ...`, and the rows end. An
/// importer that must not treat a truncated input as complete should use
/// [`parse_fallible`], which yields that error as an `Err`.
pub fn parse(
    format: Format,
    input: Box<dyn BufRead + Send>,
) -> Result<Box<dyn Iterator<Item = Row> + Send>, FeedError> {
    let mut last_line = 0;
    let rows = parse_fallible(format, input)?;
    Ok(Box::new(rows.map(move |r| match r {
        Ok(row) => {
            last_line = match &row {
                Row::Record(r) => r.line,
                Row::Skip(s) => s.line,
            };
            row
        }
        Err(e) => Row::Skip(Skip {
            line: last_line + 1,
            reason: format!("input error: {e}"),
        }),
    })))
}

/// Like [`parse`], but an error met after parsing started is yielded as
/// an `Err` (after which the iterator ends).
pub fn parse_fallible(
    format: Format,
    mut input: Box<dyn BufRead + Send>,
) -> Result<Box<dyn Iterator<Item = Result<Row, FeedError>> + Send>, FeedError> {
    skip_bom(&mut input).map_err(FeedError::from_io)?;
    Ok(match format {
        Format::Urlhaus => urlhaus::parse(input)?,
        Format::Threatfox => threatfox::parse(input)?,
        Format::Phishtank => Box::new(common::CsvRows::<phishtank::Phishtank>::open(input, 1)?),
        Format::Openphish => Box::new(common::LineRows::new(input, lines::Openphish)),
        Format::Plain => Box::new(common::LineRows::new(input, lines::Plain)),
        Format::Hosts => Box::new(common::LineRows::new(input, hosts::Hosts)),
        Format::Rpz => Box::new(common::LineRows::new(input, rpz::Rpz::default())),
    })
}

/// [`open_input`] then [`parse`]: a raw, possibly compressed input.
pub fn parse_reader(
    format: Format,
    input: Box<dyn Read + Send>,
) -> Result<Box<dyn Iterator<Item = Row> + Send>, FeedError> {
    parse(format, open_input(input, &InputLimits::default())?)
}

/// Parses bytes already in memory (plain, gzip or zip) and collects the
/// rows; for tests, fuzzing and small inputs.
pub fn parse_bytes(format: Format, bytes: &[u8]) -> Result<Vec<Row>, FeedError> {
    let input = open_input(
        Box::new(Cursor::new(bytes.to_vec())),
        &InputLimits::default(),
    )?;
    parse_fallible(format, input)?.collect()
}

/// Drops a UTF-8 byte order mark at the start of the input.
fn skip_bom(input: &mut Box<dyn BufRead + Send>) -> std::io::Result<()> {
    if input.fill_buf()?.starts_with(common::UTF8_BOM) {
        input.consume(common::UTF8_BOM.len());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    /// A sample file from `examples/feeds/`. The crate's directory is read
    /// when the test runs (cargo sets it), so a test binary built from
    /// another checkout of the repository still finds this one's files.
    pub(crate) fn example(name: &str) -> Vec<u8> {
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let path = format!("{dir}/../../examples/feeds/{name}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub(crate) fn records(rows: &[Row]) -> Vec<&FeedRecord> {
        rows.iter()
            .filter_map(|r| match r {
                Row::Record(r) => Some(r),
                Row::Skip(_) => None,
            })
            .collect()
    }

    pub(crate) fn skips(rows: &[Row]) -> Vec<(u64, String)> {
        rows.iter()
            .filter_map(|r| match r {
                Row::Skip(s) => Some((s.line, s.reason.clone())),
                Row::Record(_) => None,
            })
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn every_example_parses() {
        for (format, file) in [
            (Format::Urlhaus, "urlhaus.csv"),
            (Format::Urlhaus, "urlhaus-old.csv"),
            (Format::Urlhaus, "urlhaus.json"),
            (Format::Threatfox, "threatfox.csv"),
            (Format::Threatfox, "threatfox.json"),
            (Format::Phishtank, "phishtank.csv"),
            (Format::Openphish, "openphish.txt"),
            (Format::Plain, "plain.txt"),
            (Format::Hosts, "hosts.txt"),
            (Format::Rpz, "rpz.zone"),
        ] {
            let rows = parse_bytes(format, &example(file)).unwrap();
            assert!(records(&rows).len() >= 3, "{file}");
        }
    }

    #[test]
    fn gzip_zip_and_plain_give_the_same_rows() {
        let csv = example("urlhaus.csv");
        let plain = parse_bytes(Format::Urlhaus, &csv).unwrap();
        assert_eq!(parse_bytes(Format::Urlhaus, &gzip(&csv)).unwrap(), plain);
        assert_eq!(
            parse_bytes(Format::Urlhaus, &zip(&[("csv.txt", &csv)])).unwrap(),
            plain
        );
        let rows = parse_reader(Format::Urlhaus, Box::new(Cursor::new(gzip(&csv))))
            .unwrap()
            .collect::<Vec<_>>();
        assert_eq!(rows, plain);
    }

    #[test]
    fn zip_entries_are_one_stream_with_line_numbers_across_them() {
        let z = zip(&[
            ("a.txt", b"a.example\nb.example"),
            ("b.txt", b"\xEF\xBB\xBFc.example\n"),
        ]);
        let rows = parse_bytes(Format::Plain, &z).unwrap();
        let got: Vec<(u64, &str)> = records(&rows)
            .iter()
            .map(|r| (r.line, r.indicator.value.as_str()))
            .collect();
        assert_eq!(got, [(1, "a.example"), (2, "b.example"), (3, "c.example")]);
    }

    #[test]
    fn bom_before_a_header() {
        let mut csv = b"\xEF\xBB\xBF".to_vec();
        csv.extend(b"phish_id,url\n1,http://a.example/\n");
        let rows = parse_bytes(Format::Phishtank, &csv).unwrap();
        assert_eq!(records(&rows).len(), 1);
        let mut json = b"\xEF\xBB\xBF\n".to_vec();
        json.extend(br#"{"1":[{"url":"http://a.example/"}]}"#);
        let rows = parse_bytes(Format::Urlhaus, &json).unwrap();
        assert_eq!(records(&rows)[0].line, 2);
    }

    #[test]
    fn corrupt_gzip_mid_stream() {
        let mut data = Vec::new();
        for i in 0..20_000 {
            data.extend(format!("host{i}.example\n").bytes());
        }
        let mut g = gzip(&data);
        g.truncate(g.len() - 40);
        // The fallible form ends with the error ...
        let input = open_input(Box::new(Cursor::new(g.clone())), &InputLimits::default()).unwrap();
        let last = parse_fallible(Format::Plain, input)
            .unwrap()
            .last()
            .unwrap();
        assert!(matches!(last, Err(FeedError::Archive(_))), "{last:?}");
        // ... the plain form with a skip saying so.
        let last = parse_reader(Format::Plain, Box::new(Cursor::new(g)))
            .unwrap()
            .last()
            .unwrap();
        match last {
            Row::Skip(s) => assert!(s.reason.starts_with("input error: broken archive"), "{s:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn format_names() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), *f);
        }
        assert!("csv".parse::<Format>().is_err());
    }
}
