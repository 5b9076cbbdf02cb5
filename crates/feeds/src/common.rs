//! Helpers every format shares: reading numbered lines, splitting CSV
//! records, mapping CSV headers to columns, parsing dates and tags, and
//! turning a raw value into a record or a skip.

use std::collections::VecDeque;
use std::io::{self, BufRead};

use chrono::{DateTime, NaiveDate, Utc};
use kanki_indicators::{Kind, Normalized, normalize_any, normalize_as};
use memchr::memchr;

use crate::{FeedError, FeedRecord, Format, Row, Skip};

/// What the parsers yield internally: a row, or the error that ends the input.
pub(crate) type RowResult = Result<Row, FeedError>;

/// Longest line kept; a longer one is skipped (its bytes are read and dropped)
/// so that a file without newlines cannot make a parser hold it all.
pub(crate) const MAX_LINE: usize = 1 << 20;

pub(crate) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn skip(line: u64, reason: impl Into<String>) -> Row {
    Row::Skip(Skip {
        line,
        reason: reason.into(),
    })
}

/// Normalizes `raw` as `kind`, or as whatever it looks like when `kind` is
/// `None`; a failure becomes the skip reason of the normalizer.
pub(crate) fn normalize(kind: Option<Kind>, raw: &str) -> Result<Normalized, &'static str> {
    match kind {
        Some(k) => normalize_as(k, raw),
        None => normalize_any(raw),
    }
    .map_err(|e| e.reason())
}

/// A record for `raw`, or the skip saying why there is none.
pub(crate) fn record_or_skip(line: u64, kind: Option<Kind>, raw: &str) -> Result<FeedRecord, Skip> {
    normalize(kind, raw)
        .map(|n| FeedRecord::new(line, n))
        .map_err(|reason| Skip {
            line,
            reason: reason.into(),
        })
}

// ---------------------------------------------------------------------------
// Lines

/// Reads an input line by line, counting lines from 1, with a pushback
/// queue for lines a CSV record borrowed and gave back.
pub(crate) struct LineReader {
    inner: Box<dyn BufRead + Send>,
    /// Number of the last line read from `inner`.
    line: u64,
    pushback: VecDeque<(u64, Vec<u8>, bool)>,
}

impl LineReader {
    /// `first_line` is the number of the first line `inner` will give (more
    /// than 1 when a caller already consumed some blank lines while sniffing).
    pub(crate) fn new(inner: Box<dyn BufRead + Send>, first_line: u64) -> Self {
        LineReader {
            inner,
            line: first_line.saturating_sub(1),
            pushback: VecDeque::new(),
        }
    }

    /// Reads the next line into `buf` (cleared first) without its line end.
    /// Returns the line's number and whether it was cut at [`MAX_LINE`], or
    /// `None` at the end of the input.
    pub(crate) fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<(u64, bool)>> {
        buf.clear();
        if let Some((no, bytes, long)) = self.pushback.pop_front() {
            buf.extend_from_slice(&bytes);
            return Ok(Some((no, long)));
        }
        let mut read_any = false;
        let mut too_long = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let (chunk, used, done) = match memchr(b'\n', avail) {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            if buf.len() + chunk.len() <= MAX_LINE {
                buf.extend_from_slice(chunk);
            } else {
                too_long = true;
            }
            self.inner.consume(used);
            if done {
                break;
            }
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        self.line += 1;
        if too_long {
            buf.clear();
        }
        Ok(Some((self.line, too_long)))
    }

    /// Gives lines back, to be read again before anything new. `lines` are
    /// in input order.
    pub(crate) fn unread(&mut self, lines: Vec<(u64, Vec<u8>)>) {
        for (no, bytes) in lines.into_iter().rev() {
            self.pushback.push_front((no, bytes, false));
        }
    }
}

/// A format read one line at a time (openphish, plain, hosts, rpz).
pub(crate) trait LineFormat: Send {
    /// Handles one line (already known to be UTF-8, without its line end),
    /// pushing any rows it makes.
    fn line(&mut self, no: u64, text: &str, out: &mut VecDeque<Row>);
    /// A line that cannot be read as text (not UTF-8, too long). A format
    /// with a record spread over lines drops that record instead, so that
    /// rows stay in line order.
    fn unreadable(&mut self, no: u64, reason: &'static str, out: &mut VecDeque<Row>) {
        out.push_back(skip(no, reason));
    }
    /// Called once at the end of the input.
    fn finish(&mut self, _out: &mut VecDeque<Row>) {}
}

/// Drives a [`LineFormat`] over an input.
pub(crate) struct LineRows<P> {
    reader: LineReader,
    buf: Vec<u8>,
    format: P,
    pending: VecDeque<Row>,
    done: bool,
}

impl<P: LineFormat> LineRows<P> {
    pub(crate) fn new(input: Box<dyn BufRead + Send>, format: P) -> Self {
        LineRows {
            reader: LineReader::new(input, 1),
            buf: Vec::new(),
            format,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

impl<P: LineFormat> Iterator for LineRows<P> {
    type Item = RowResult;

    fn next(&mut self) -> Option<RowResult> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                return Some(Ok(row));
            }
            if self.done {
                return None;
            }
            match self.reader.read_line(&mut self.buf) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(FeedError::from_io(e)));
                }
                Ok(None) => {
                    self.done = true;
                    self.format.finish(&mut self.pending);
                }
                Ok(Some((no, true))) => {
                    self.format
                        .unreadable(no, "line too long", &mut self.pending)
                }
                Ok(Some((no, false))) => match std::str::from_utf8(&self.buf) {
                    Ok(text) => self.format.line(no, text, &mut self.pending),
                    Err(_) => self
                        .format
                        .unreadable(no, "not valid UTF-8", &mut self.pending),
                },
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CSV

/// The fields of one CSV record, unescaped, in one reused buffer.
///
/// The record is checked for UTF-8 once, as a whole, after splitting (the
/// buffer moves into `text` without a copy); fields are then slices of it.
/// Only a record that is not UTF-8 has its fields checked one by one.
#[derive(Default)]
pub(crate) struct Fields {
    data: Vec<u8>,
    text: String,
    utf8: bool,
    ends: Vec<usize>,
}

impl Fields {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(start..end)
    }

    /// The raw bytes of field `i`.
    pub(crate) fn bytes(&self, i: usize) -> Option<&[u8]> {
        let r = self.range(i)?;
        Some(if self.utf8 {
            &self.text.as_bytes()[r]
        } else {
            &self.data[r]
        })
    }

    /// Field `i`, trimmed, if present, non-empty and UTF-8.
    pub(crate) fn get(&self, i: Option<usize>) -> Option<&str> {
        let r = self.range(i?)?;
        let s = if self.utf8 {
            // Field bounds sit next to ASCII delimiters: always char boundaries.
            self.text.get(r)?
        } else {
            std::str::from_utf8(&self.data[r]).ok()?
        };
        let s = s.trim_ascii();
        (!s.is_empty()).then_some(s)
    }

    fn clear(&mut self) {
        if self.utf8 {
            self.data = std::mem::take(&mut self.text).into_bytes();
            self.utf8 = false;
        }
        self.data.clear();
        self.ends.clear();
    }

    fn end_field(&mut self) {
        self.ends.push(self.data.len());
    }

    /// Checks the whole record for UTF-8 once.
    fn finish(&mut self, split: Split) -> Split {
        match String::from_utf8(std::mem::take(&mut self.data)) {
            Ok(text) => {
                self.text = text;
                self.utf8 = true;
            }
            Err(e) => self.data = e.into_bytes(),
        }
        split
    }
}

/// How a record split ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Split {
    Done,
    /// Complete, but with text after a closing quote (`"a"b,`).
    Junk,
    /// Inside quotes: a quoted field goes on on the next line.
    Open,
}

/// Splits one CSV record into `out`. Fields may be quoted (`""` is a quote
/// inside quotes) and may be preceded by blanks, which covers ThreatFox's
/// `", "` separators. Text after a closing quote is kept, as the `csv` crate
/// does, and reported as [`Split::Junk`].
pub(crate) fn split_record(rec: &[u8], out: &mut Fields) -> Split {
    out.clear();
    let n = rec.len();
    let mut i = 0;
    let mut junk = false;
    loop {
        let mut j = i;
        while j < n && (rec[j] == b' ' || rec[j] == b'\t') {
            j += 1;
        }
        if j < n && rec[j] == b'"' {
            let mut k = j + 1;
            loop {
                let Some(q) = memchr(b'"', &rec[k..]) else {
                    return out.finish(Split::Open);
                };
                out.data.extend_from_slice(&rec[k..k + q]);
                k += q + 1;
                if k < n && rec[k] == b'"' {
                    out.data.push(b'"');
                    k += 1;
                } else {
                    break;
                }
            }
            // Usually a comma follows the closing quote at once.
            let end = if rec.get(k) == Some(&b',') {
                k
            } else {
                memchr(b',', &rec[k..]).map_or(n, |c| k + c)
            };
            let after = rec[k..end].trim_ascii();
            junk |= !after.is_empty();
            out.data.extend_from_slice(after);
            out.end_field();
            if end == n {
                return out.finish(if junk { Split::Junk } else { Split::Done });
            }
            i = end + 1;
        } else {
            match memchr(b',', &rec[i..]) {
                Some(c) => {
                    out.data.extend_from_slice(&rec[i..i + c]);
                    out.end_field();
                    i += c + 1;
                }
                None => {
                    out.data.extend_from_slice(&rec[i..]);
                    out.end_field();
                    return out.finish(if junk { Split::Junk } else { Split::Done });
                }
            }
        }
    }
}

/// How far a quoted field may run over line ends before the record is
/// given up as broken and its following lines are read again on their own.
const MAX_RECORD_LINES: usize = 50;

/// What [`CsvReader::next`] found.
pub(crate) enum CsvEvent {
    /// A line starting with `#`; its text is [`CsvReader::comment`].
    Comment,
    /// A record starting at this line; its fields are [`CsvReader::fields`].
    Record(u64),
    /// A line that could not be read as a record.
    Skip(Row),
}

/// Reads CSV records, with `#` comment lines and blank lines between them.
pub(crate) struct CsvReader {
    lines: LineReader,
    record: Vec<u8>,
    extra: Vec<u8>,
    fields: Fields,
}

impl CsvReader {
    pub(crate) fn new(input: Box<dyn BufRead + Send>, first_line: u64) -> Self {
        CsvReader {
            lines: LineReader::new(input, first_line),
            record: Vec::new(),
            extra: Vec::new(),
            fields: Fields::default(),
        }
    }

    pub(crate) fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The text of the last comment line, without its leading `#`s.
    pub(crate) fn comment(&self) -> &[u8] {
        let t = self.record.trim_ascii_start();
        let start = t.iter().position(|&b| b != b'#').unwrap_or(t.len());
        t[start..].trim_ascii()
    }

    pub(crate) fn next(&mut self) -> io::Result<Option<CsvEvent>> {
        loop {
            let Some((no, too_long)) = self.lines.read_line(&mut self.record)? else {
                return Ok(None);
            };
            if too_long {
                return Ok(Some(CsvEvent::Skip(skip(no, "line too long"))));
            }
            let t = self.record.trim_ascii();
            if t.is_empty() {
                continue;
            }
            if t[0] == b'#' {
                return Ok(Some(CsvEvent::Comment));
            }
            if split_record(&self.record, &mut self.fields) != Split::Open {
                return Ok(Some(CsvEvent::Record(no)));
            }
            return self.continue_record(no).map(Some);
        }
    }

    /// A quoted field runs past the end of line `no`: reads on until it
    /// closes cleanly, or gives up and puts the borrowed lines back.
    fn continue_record(&mut self, no: u64) -> io::Result<CsvEvent> {
        let mut borrowed: Vec<(u64, Vec<u8>)> = Vec::new();
        while borrowed.len() < MAX_RECORD_LINES {
            let Some((next_no, too_long)) = self.lines.read_line(&mut self.extra)? else {
                break;
            };
            if too_long {
                // Give it back as it was: cut, to be skipped on its own.
                self.lines.pushback.push_front((next_no, Vec::new(), true));
                break;
            }
            borrowed.push((next_no, self.extra.clone()));
            if self.record.len() + self.extra.len() >= MAX_LINE {
                break;
            }
            self.record.push(b'\n');
            self.record.extend_from_slice(&self.extra);
            match split_record(&self.record, &mut self.fields) {
                Split::Done => return Ok(CsvEvent::Record(no)),
                // The quote that closed the field was the opening quote of
                // a later record: the field was never closed.
                Split::Junk => break,
                Split::Open => {}
            }
        }
        // Unread in front of a cut line pushed back above, if any.
        self.lines.unread(borrowed);
        Ok(CsvEvent::Skip(skip(no, "unterminated quoted field")))
    }
}

/// The column names of a CSV header, lowercased.
pub(crate) struct Header {
    names: Vec<String>,
}

impl Header {
    pub(crate) fn from_fields(f: &Fields) -> Header {
        let names = (0..f.len())
            .map(|i| {
                let b = f.bytes(i).unwrap_or_default();
                let s = String::from_utf8_lossy(b);
                s.trim()
                    .trim_start_matches('#')
                    .trim()
                    .trim_matches('"')
                    .to_ascii_lowercase()
            })
            .collect();
        Header { names }
    }

    /// Reads a comment line such as `# id,dateadded,url,...` as a header.
    pub(crate) fn from_comment(text: &[u8]) -> Option<Header> {
        let mut f = Fields::default();
        (split_record(text, &mut f) != Split::Open).then(|| Header::from_fields(&f))
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The position of the first column with one of these names.
    pub(crate) fn index(&self, names: &[&str]) -> Option<usize> {
        self.names.iter().position(|n| names.contains(&n.as_str()))
    }
}

/// A CSV format read by its header line.
pub(crate) trait CsvFormat: Send + 'static {
    /// Column positions, found from a header.
    type Cols: Send;
    const FORMAT: Format;
    /// The required columns, for the error when the header lacks them.
    const EXPECTED: &'static str;
    /// Maps a header, or `None` if a required column is missing.
    fn columns(h: &Header) -> Option<Self::Cols>;
    /// Whether this record is the header line itself, repeated (as when
    /// several files are concatenated).
    fn is_header(cols: &Self::Cols, f: &Fields) -> bool;
    /// Turns one record into a row.
    fn row(cols: &Self::Cols, line: u64, f: &Fields) -> Row;
}

/// Drives a [`CsvFormat`] over an input.
pub(crate) struct CsvRows<F: CsvFormat> {
    reader: CsvReader,
    cols: F::Cols,
    width: usize,
    done: bool,
}

impl<F: CsvFormat> CsvRows<F> {
    /// Reads up to and including the header. Rows found before it cannot be
    /// mapped, so a header must come before any data row.
    pub(crate) fn open(input: Box<dyn BufRead + Send>, first_line: u64) -> Result<Self, FeedError> {
        let mut reader = CsvReader::new(input, first_line);
        let no_header = || FeedError::NoHeader {
            format: F::FORMAT,
            expected: F::EXPECTED,
        };
        loop {
            let header = match reader.next().map_err(FeedError::from_io)? {
                None | Some(CsvEvent::Skip(_)) => return Err(no_header()),
                // A comment that is not the header is just a comment.
                Some(CsvEvent::Comment) => match Header::from_comment(reader.comment()) {
                    Some(h) if F::columns(&h).is_some() => h,
                    _ => continue,
                },
                // The first record is the header, or there is none.
                Some(CsvEvent::Record(_)) => Header::from_fields(reader.fields()),
            };
            let cols = F::columns(&header).ok_or_else(no_header)?;
            return Ok(CsvRows {
                reader,
                cols,
                width: header.len(),
                done: false,
            });
        }
    }
}

impl<F: CsvFormat> Iterator for CsvRows<F> {
    type Item = RowResult;

    fn next(&mut self) -> Option<RowResult> {
        loop {
            if self.done {
                return None;
            }
            let event = match self.reader.next() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(FeedError::from_io(e)));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(e)) => e,
            };
            match event {
                CsvEvent::Skip(row) => return Some(Ok(row)),
                CsvEvent::Comment => {
                    // A header in a later comment (concatenated dumps of
                    // different vintages) re-maps the columns.
                    if let Some(h) = Header::from_comment(self.reader.comment())
                        && let Some(cols) = F::columns(&h)
                    {
                        self.cols = cols;
                        self.width = h.len();
                    }
                }
                CsvEvent::Record(no) => {
                    let f = self.reader.fields();
                    if F::is_header(&self.cols, f) {
                        let h = Header::from_fields(f);
                        if let Some(cols) = F::columns(&h) {
                            self.cols = cols;
                            self.width = h.len();
                        }
                        continue;
                    }
                    if f.len() != self.width {
                        return Some(Ok(skip(no, "wrong number of fields")));
                    }
                    return Some(Ok(F::row(&self.cols, no, f)));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Values

/// Parses the date forms the feeds use: `2024-11-20 10:11:05` (UTC),
/// `2024-11-20T10:11:05+00:00`, with optional fractional seconds, `Z`,
/// ` UTC` or a numeric offset; a bare date is midnight UTC. Anything else
/// is `None`.
pub(crate) fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = b.get(r)?;
        if d.iter().all(u8::is_ascii_digit) {
            Some(d.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')))
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    if b.len() == 10 {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if !matches!(b[10], b' ' | b'T' | b't') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (h, m) = (num(11..13)?, num(14..16)?);
    let mut i = 16;
    let mut sec = 0;
    if b.get(i) == Some(&b':') {
        sec = num(17..19)?;
        i = 19;
    }
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        for _ in (i - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let t = date.and_hms_nano_opt(h, m, sec.min(59), nanos)?.and_utc();
    let rest = std::str::from_utf8(&b[i..]).ok()?.trim();
    let offset_secs: i64 = match rest {
        "" | "Z" | "z" | "UTC" | "GMT" | "+00:00" | "+0000" => return Some(t),
        _ => {
            let r = rest.as_bytes();
            let sign = match r[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: Vec<u8> = r[1..].iter().copied().filter(|&c| c != b':').collect();
            if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = |a: usize| i64::from(digits[a] - b'0') * 10 + i64::from(digits[a + 1] - b'0');
            sign * (v(0) * 3600 + v(2) * 60)
        }
    };
    t.checked_sub_signed(chrono::TimeDelta::seconds(offset_secs))
}

/// Adds the comma-separated tags in `list` (trimmed, without empties,
/// `None` or repeats).
pub(crate) fn push_tags(tags: &mut Vec<String>, list: &str) {
    for t in list.split(',') {
        push_tag(tags, t);
    }
}

/// Adds one tag unless it is empty, `None` or already there.
pub(crate) fn push_tag(tags: &mut Vec<String>, tag: &str) {
    let t = tag.trim();
    if t.is_empty() || t == "None" || tags.iter().any(|x| x == t) {
        return;
    }
    tags.push(t.to_string());
}

/// `None` for the null spellings feeds use (`None`, `null`, `n/a`) and empties.
pub(crate) fn non_null(v: Option<&str>) -> Option<&str> {
    v.map(str::trim)
        .filter(|s| !s.is_empty() && !matches!(*s, "None" | "null" | "NULL" | "n/a" | "N/A"))
}

/// A 0–100 confidence from a number or numeric text.
pub(crate) fn parse_confidence(s: &str) -> Option<u8> {
    let v: f64 = s.trim().trim_end_matches('%').parse().ok()?;
    v.is_finite().then(|| v.clamp(0.0, 100.0).round() as u8)
}

/// Consumes leading blanks (and line ends) and says whether the input then
/// starts with JSON (`{` or `[`), and how many line ends were consumed.
pub(crate) fn sniff_json(input: &mut dyn BufRead) -> io::Result<(bool, u64)> {
    let mut lines = 0;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((false, lines));
        }
        let blanks = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        lines += memchr::memchr_iter(b'\n', &buf[..blanks]).count() as u64;
        if blanks < buf.len() {
            let first = buf[blanks];
            input.consume(blanks);
            return Ok((first == b'{' || first == b'[', lines));
        }
        let n = buf.len();
        input.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Option<Vec<String>> {
        let mut f = Fields::default();
        (split_record(s.as_bytes(), &mut f) != Split::Open).then(|| {
            (0..f.len())
                .map(|i| String::from_utf8(f.bytes(i).unwrap().to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn csv_splitting() {
        assert_eq!(split("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(split(r#""a","b ""q""",c"#).unwrap(), ["a", r#"b "q""#, "c"]);
        assert_eq!(split(r#""x", "None", "y""#).unwrap(), ["x", "None", "y"]);
        assert_eq!(split(r#""a,b",c,"#).unwrap(), ["a,b", "c", ""]);
        assert_eq!(split(r#""a"junk,b"#).unwrap(), ["ajunk", "b"]);
        assert!(split(r#""a,b"#).is_none());
        assert_eq!(split("").unwrap(), [""]);
    }

    #[test]
    fn dates() {
        let d = |s| parse_date(s).map(|d| d.to_rfc3339());
        assert_eq!(
            d("2024-11-20 10:11:05").unwrap(),
            "2024-11-20T10:11:05+00:00"
        );
        assert_eq!(
            d("2024-11-20T10:11:05+00:00").unwrap(),
            "2024-11-20T10:11:05+00:00"
        );
        assert_eq!(
            d("2024-11-20T10:11:05+09:00").unwrap(),
            "2024-11-20T01:11:05+00:00"
        );
        assert_eq!(
            d("2024-11-20 10:11:05 UTC").unwrap(),
            "2024-11-20T10:11:05+00:00"
        );
        assert_eq!(
            d("2024-11-20T10:11:05.250Z").unwrap(),
            "2024-11-20T10:11:05.250+00:00"
        );
        assert_eq!(d("2024-11-20").unwrap(), "2024-11-20T00:00:00+00:00");
        for bad in [
            "",
            "None",
            "2024-13-01 00:00:00",
            "2024-11-20 25:00:00",
            "20241120",
            "2024-11-20 10:11:05 PST",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn tags() {
        let mut t = Vec::new();
        push_tags(&mut t, "elf, mips,,Mozi,elf,None");
        assert_eq!(t, ["elf", "mips", "Mozi"]);
    }

    #[test]
    fn confidence() {
        assert_eq!(parse_confidence("75"), Some(75));
        assert_eq!(parse_confidence("150"), Some(100));
        assert_eq!(parse_confidence("x"), None);
        assert_eq!(parse_confidence("NaN"), None);
    }
}
