//! The JSON forms of the abuse.ch feeds, walked one record at a time.
//!
//! Two shapes are read: the full dump, an object whose keys are the source's
//! ids and whose values are arrays of records (`{"123": [{...}], ...}`), and
//! the API answer, `{"query_status": "ok", "<list>": [{...}, ...]}`. A bare
//! top-level array of records is accepted too. The structure is walked by
//! hand so that each record keeps the line it starts on; each record itself
//! is read with `serde_json`.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::common::{RowResult, skip};
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
    buf: Vec<u8>,
    pos: usize,
    /// Line number at byte `counted`.
    line: u64,
    counted: usize,
    state: State,
    done: bool,
    format: PhantomData<F>,
}

impl<F: JsonFormat> JsonRows<F> {
    /// `buf` starts with `{` or `[` on line `first_line`. An API answer
    /// whose `query_status` says the query failed is an error.
    pub(crate) fn new(buf: Vec<u8>, first_line: u64) -> Result<Self, FeedError> {
        let top_array = buf.first() == Some(&b'[');
        let mut rows = JsonRows {
            buf,
            pos: 1,
            line: first_line,
            counted: 0,
            state: if top_array {
                State::Array {
                    id: None,
                    top: true,
                }
            } else {
                State::Object
            },
            done: false,
            format: PhantomData,
        };
        if !top_array
            && let Some(status) = rows.query_status()
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
    fn query_status(&mut self) -> Option<String> {
        let start = self.pos;
        let status = (|| {
            self.skip_ws();
            let key: String = self.value().ok()?;
            (key == "query_status").then_some(())?;
            self.skip_ws();
            self.eat(b':').then_some(())?;
            self.skip_ws();
            self.value::<String>().ok()
        })();
        self.pos = start;
        status
    }

    fn skip_ws(&mut self) {
        while self.pos < self.buf.len() && self.buf[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
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

    /// Reads one JSON value at the current position; on error, the line of the error.
    fn value<T: DeserializeOwned>(&mut self) -> Result<T, u64> {
        let mut it = serde_json::Deserializer::from_slice(&self.buf[self.pos..]).into_iter::<T>();
        match it.next() {
            Some(Ok(v)) => {
                self.pos += it.byte_offset();
                Ok(v)
            }
            Some(Err(e)) => {
                let here = self.line_at(self.pos);
                Err(here + (e.line() as u64).saturating_sub(1))
            }
            None => Err(self.line_at(self.buf.len())),
        }
    }

    fn invalid(&mut self, line: u64) -> Option<RowResult> {
        self.done = true;
        Some(Ok(skip(line, "invalid JSON")))
    }
}

impl<F: JsonFormat> Iterator for JsonRows<F> {
    type Item = RowResult;

    fn next(&mut self) -> Option<RowResult> {
        while !self.done {
            self.skip_ws();
            let line = self.line_at(self.pos);
            // Taken out so that the arms may use `self`; each puts back the next state.
            match std::mem::replace(&mut self.state, State::End) {
                State::End => {
                    self.done = true;
                    if self.pos < self.buf.len() {
                        return self.invalid(line);
                    }
                }
                State::Object => match self.peek() {
                    Some(b'}') => self.pos += 1,
                    Some(b',') => {
                        self.pos += 1;
                        self.state = State::Object;
                    }
                    Some(b'"') => {
                        let key: String = match self.value() {
                            Ok(k) => k,
                            Err(line) => return self.invalid(line),
                        };
                        self.skip_ws();
                        if !self.eat(b':') {
                            let line = self.line_at(self.pos);
                            return self.invalid(line);
                        }
                        self.skip_ws();
                        let id = (key != F::LIST_KEY).then_some(key);
                        self.state = State::Object;
                        match self.peek() {
                            Some(b'[') => {
                                self.pos += 1;
                                self.state = State::Array { id, top: false };
                            }
                            // A dump keyed by id with one record, not a list.
                            Some(b'{') => {
                                let line = self.line_at(self.pos);
                                return Some(Ok(match self.value::<Value>() {
                                    Ok(v) => F::row(id.as_deref(), line, &v),
                                    Err(line) => return self.invalid(line),
                                }));
                            }
                            // `query_status` and other metadata.
                            _ => {
                                if let Err(line) = self.value::<serde::de::IgnoredAny>() {
                                    return self.invalid(line);
                                }
                            }
                        }
                    }
                    _ => return self.invalid(line),
                },
                State::Array { id, top } => match self.peek() {
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
                            Err(line) => return self.invalid(line),
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
