//! The JSON forms of the abuse.ch feeds, walked one record at a time.
//!
//! Two shapes are read: the full dump, an object whose keys are the source's
//! ids and whose values are arrays of records (`{"123": [{...}], ...}`), and
//! the API answer, `{"query_status": "ok", "<list>": [{...}, ...]}`. A bare
//! top-level array of records is accepted too. The structure is walked by
//! hand so that each record keeps the line it starts on; each record itself
//! is read with `serde_json`. The input streams through a window that holds
//! about one record: a record longer than [`MAX_LINE`] refuses the input.

use std::io::{self, BufRead};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::common::{MAX_LINE, RowResult, skip};
use crate::{FeedError, Row};

/// One JSON format.
pub(crate) trait JsonFormat: Send + 'static {
    /// The API answer's key for its list of records (`urls`, `data`).
    const LIST_KEY: &'static str;
    /// The source's name, for messages.
    const NAME: &'static str;
    /// Turns one record into a row; `id` is the dump's key for it, if any.
    fn row(id: Option<&str>, line: u64, v: &Value) -> Row;
}

enum State {
    /// Inside the top-level object, before a key or a comma.
    Object,
    /// Inside an array of records; `top` for a top-level array.
    Array {
        id: Option<String>,
        top: bool,
    },
    End,
}

pub(crate) struct JsonRows<F> {
    input: Box<dyn BufRead + Send>,
    /// Whether `input` is used up.
    eof: bool,
    /// While set, the window keeps what is read (to go back to it).
    hold: bool,
    /// A window of the input: bytes before `pos` are read, and dropped
    /// when more is needed.
    buf: Vec<u8>,
    pos: usize,
    /// Line number at byte `counted`.
    line: u64,
    counted: usize,
    state: State,
    done: bool,
    format: PhantomData<F>,
}

/// Why a value could not be read.
enum Fail {
    /// Not JSON, found on this line.
    Invalid(u64),
    /// A read error, or a value longer than [`MAX_LINE`].
    Input(FeedError),
}

impl<F: JsonFormat> JsonRows<F> {
    /// `input` starts with `{` or `[` on line `first_line`. An API answer
    /// whose `query_status` says the query failed is an error.
    pub(crate) fn new(input: Box<dyn BufRead + Send>, first_line: u64) -> Result<Self, FeedError> {
        let mut rows = JsonRows {
            input,
            eof: false,
            hold: false,
            buf: Vec::new(),
            pos: 0,
            line: first_line,
            counted: 0,
            state: State::End,
            done: false,
            format: PhantomData,
        };
        let top_array = rows.peek().map_err(FeedError::from_io)? == Some(b'[');
        rows.pos = 1;
        rows.state = if top_array {
            State::Array {
                id: None,
                top: true,
            }
        } else {
            State::Object
        };
        if !top_array
            && let Some(status) = rows.query_status()?
            && !matches!(status.as_str(), "ok" | "no_results")
        {
            return Err(FeedError::Invalid(format!(
                "{} answered query_status {status:?}",
                F::NAME
            )));
        }
        Ok(rows)
    }

    /// The value of `query_status` if it is the first key (as the APIs write it).
    fn query_status(&mut self) -> Result<Option<String>, FeedError> {
        let start = self.pos;
        // The window keeps what is read meanwhile: `start` stays valid.
        self.hold = true;
        let mut status = || -> Result<Option<String>, FeedError> {
            let io = FeedError::from_io;
            self.skip_ws().map_err(io)?;
            let Ok(key) = self.value::<String>() else {
                return Ok(None);
            };
            self.skip_ws().map_err(io)?;
            if key != "query_status" || self.peek().map_err(io)? != Some(b':') {
                return Ok(None);
            }
            self.pos += 1;
            self.skip_ws().map_err(io)?;
            match self.value::<String>() {
                Ok(v) => Ok(Some(v)),
                Err(Fail::Input(e)) => Err(e),
                Err(Fail::Invalid(_)) => Ok(None),
            }
        };
        let status = status();
        self.hold = false;
        self.pos = start;
        status
    }

    /// Reads more of the input into the window: at least as much as is
    /// unread in it (so that a long value is parsed a few times, not once
    /// a block). False at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        // Drop what is read, counting its lines first.
        if self.pos > 0 && !self.hold {
            self.line_at(self.pos);
            self.buf.drain(..self.pos);
            self.counted -= self.pos;
            self.pos = 0;
        }
        let want = (self.buf.len() - self.pos).max(64 * 1024);
        let mut got = 0;
        while got < want {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                self.eof = true;
                break;
            }
            let n = chunk.len();
            self.buf.extend_from_slice(chunk);
            self.input.consume(n);
            got += n;
        }
        Ok(got > 0)
    }

    fn skip_ws(&mut self) -> io::Result<()> {
        loop {
            while self.pos < self.buf.len() && self.buf[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.pos < self.buf.len() || !self.fill()? {
                return Ok(());
            }
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.pos >= self.buf.len() {
            self.fill()?;
        }
        Ok(self.buf.get(self.pos).copied())
    }

    /// The line of byte `pos` (which only moves forward).
    fn line_at(&mut self, pos: usize) -> u64 {
        let pos = pos.min(self.buf.len());
        if pos > self.counted {
            self.line += memchr::memchr_iter(b'\n', &self.buf[self.counted..pos]).count() as u64;
            self.counted = pos;
        }
        self.line
    }

    /// Reads one JSON value at the current position, reading more of the
    /// input while the value goes on, up to [`MAX_LINE`] bytes.
    fn value<T: DeserializeOwned>(&mut self) -> Result<T, Fail> {
        loop {
            let mut it =
                serde_json::Deserializer::from_slice(&self.buf[self.pos..]).into_iter::<T>();
            let got = it.next();
            let offset = it.byte_offset();
            // A value that ends where the window ends may go on (a number).
            let more = match &got {
                Some(Ok(_)) => self.pos + offset == self.buf.len() && !self.eof,
                Some(Err(e)) => e.is_eof() && !self.eof,
                None => !self.eof,
            };
            let long = match &got {
                Some(Ok(_)) => offset > MAX_LINE,
                _ => more && self.buf.len() - self.pos > MAX_LINE,
            };
            if long {
                return Err(Fail::Input(FeedError::Refused(format!(
                    "a JSON record (from line {}) is longer than {MAX_LINE} bytes",
                    self.line_at(self.pos)
                ))));
            }
            if more {
                match self.fill() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return Err(Fail::Input(FeedError::from_io(e))),
                }
            }
            return match got {
                Some(Ok(v)) => {
                    self.pos += offset;
                    Ok(v)
                }
                Some(Err(e)) => {
                    let here = self.line_at(self.pos);
                    Err(Fail::Invalid(here + (e.line() as u64).saturating_sub(1)))
                }
                None => Err(Fail::Invalid(self.line_at(self.buf.len()))),
            };
        }
    }

    /// Ends the rows with what went wrong.
    fn fail(&mut self, f: Fail) -> Option<RowResult> {
        self.done = true;
        Some(match f {
            Fail::Invalid(line) => Ok(skip(line, "invalid JSON")),
            Fail::Input(e) => Err(e),
        })
    }

    fn invalid(&mut self, line: u64) -> Option<RowResult> {
        self.fail(Fail::Invalid(line))
    }

    fn io(&mut self, e: io::Error) -> Option<RowResult> {
        self.fail(Fail::Input(FeedError::from_io(e)))
    }
}

impl<F: JsonFormat> Iterator for JsonRows<F> {
    type Item = RowResult;

    fn next(&mut self) -> Option<RowResult> {
        while !self.done {
            if let Err(e) = self.skip_ws() {
                return self.io(e);
            }
            let line = self.line_at(self.pos);
            let peek = match self.peek() {
                Ok(p) => p,
                Err(e) => return self.io(e),
            };
            // Taken out so that the arms may use `self`; each puts back the next state.
            match std::mem::replace(&mut self.state, State::End) {
                State::End => {
                    self.done = true;
                    if peek.is_some() {
                        return self.invalid(line);
                    }
                }
                State::Object => match peek {
                    Some(b'}') => self.pos += 1,
                    Some(b',') => {
                        self.pos += 1;
                        self.state = State::Object;
                    }
                    Some(b'"') => {
                        let key: String = match self.value() {
                            Ok(k) => k,
                            Err(f) => return self.fail(f),
                        };
                        if let Err(e) = self.skip_ws() {
                            return self.io(e);
                        }
                        if self.buf.get(self.pos) != Some(&b':') {
                            let line = self.line_at(self.pos);
                            return self.invalid(line);
                        }
                        self.pos += 1;
                        if let Err(e) = self.skip_ws() {
                            return self.io(e);
                        }
                        let id = (key != F::LIST_KEY).then_some(key);
                        self.state = State::Object;
                        match self.buf.get(self.pos) {
                            Some(b'[') => {
                                self.pos += 1;
                                self.state = State::Array { id, top: false };
                            }
                            // A dump keyed by id with one record, not a list.
                            Some(b'{') => {
                                let line = self.line_at(self.pos);
                                return Some(Ok(match self.value::<Value>() {
                                    Ok(v) => F::row(id.as_deref(), line, &v),
                                    Err(f) => return self.fail(f),
                                }));
                            }
                            // `query_status` and other metadata.
                            _ => {
                                if let Err(f) = self.value::<serde::de::IgnoredAny>() {
                                    return self.fail(f);
                                }
                            }
                        }
                    }
                    _ => return self.invalid(line),
                },
                State::Array { id, top } => match peek {
                    Some(b']') => {
                        self.pos += 1;
                        if !top {
                            self.state = State::Object;
                        }
                    }
                    Some(b',') => {
                        self.pos += 1;
                        self.state = State::Array { id, top };
                    }
                    Some(_) => {
                        let row = match self.value::<Value>() {
                            Ok(v) => F::row(id.as_deref(), line, &v),
                            Err(f) => return self.fail(f),
                        };
                        self.state = State::Array { id, top };
                        return Some(Ok(row));
                    }
                    None => return self.invalid(line),
                },
            }
        }
        None
    }
}

/// A JSON field as text: strings as they are, numbers and booleans written
/// out, null and anything else `None`.
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first of several keys that is present as text.
pub(crate) fn text_of(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| text(v, k))
}

/// Tags given as an array of strings, a comma-separated string, or null.
pub(crate) fn tags(v: &Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    match v.get(key) {
        Some(Value::Array(items)) => {
            for t in items.iter().filter_map(Value::as_str) {
                crate::common::push_tag(&mut out, t);
            }
        }
        Some(Value::String(s)) => crate::common::push_tags(&mut out, s),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Cursor};

    use crate::tests::example;
    use crate::{FeedError, Format, Row, parse_bytes, parse_fallible};

    fn rows_through(format: Format, bytes: &[u8], block: usize) -> Vec<Result<Row, FeedError>> {
        let input = BufReader::with_capacity(block, Cursor::new(bytes.to_vec()));
        parse_fallible(format, Box::new(input)).unwrap().collect()
    }

    #[test]
    fn records_read_through_small_blocks_are_the_records_read_whole() {
        for (format, file) in [
            (Format::Urlhaus, "urlhaus.json"),
            (Format::Threatfox, "threatfox.json"),
        ] {
            let bytes = example(file);
            let whole = parse_bytes(format, &bytes).unwrap();
            for block in [1, 7, 4096] {
                let streamed: Vec<Row> = rows_through(format, &bytes, block)
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(streamed, whole, "{file} in blocks of {block}");
            }
        }
        // A number at a block's end goes on in the next block.
        let api = br#"{"query_status":"ok","count":12345,"urls":[{"url":"http://a.example/"}]}"#;
        let rows = rows_through(Format::Urlhaus, api, 31);
        assert_eq!(rows.len(), 1, "{rows:?}");
    }

    #[test]
    fn a_record_longer_than_the_bound_refuses_the_input_after_the_records_before_it() {
        let mut json = br#"[{"url":"http://a.example/"},{"url":"http://"#.to_vec();
        json.extend(std::iter::repeat_n(b'a', crate::common::MAX_LINE + 10));
        json.extend(br#".example/"}]"#);
        let rows = rows_through(Format::Urlhaus, &json, 64 * 1024);
        assert!(matches!(rows[0], Ok(Row::Record(_))), "{:?}", rows[0]);
        match &rows[1] {
            Err(FeedError::Refused(m)) => assert!(m.contains("longer than"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(rows.len(), 2);
    }
}
