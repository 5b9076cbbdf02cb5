//! Static assignments: a CSV file the ISP keeps of the addresses and
//! prefixes it assigned to subscribers for good.
//!
//! ```text
//! subscriber,prefix,from,to
//! S-000123,198.51.100.17,2024-04-01,
//! S-000124,2001:db8:4400::/48,2024-04-01T00:00:00+09:00,2026-03-31 15:00:00
//! ```
//!
//! - Columns are found by name (any order, any case, other columns
//!   ignored); `subscriber`, `prefix` and `from` are required, `to` is
//!   optional. Lines starting with `#` and blank lines are ignored; a
//!   repeated header line is read as a header again.
//! - `prefix` is an address (a /32 or /128) or a CIDR prefix; a prefix
//!   with host bits set (`192.0.2.5/24`) is skipped ("host bits set"),
//!   not masked.
//! - `from` and `to` are RFC 3339, `YYYY-MM-DD` or `YYYY-MM-DD
//!   HH:MM[:SS]`; a time without a zone is UTC. An empty `to` means still
//!   assigned.
//! - Each row is a [`Binding`] of a [`SubjectKind::Subscriber`], origin
//!   [`BindingOrigin::Static`], keyed `subscriber|prefix@from` (Unix
//!   seconds): re-importing the file after filling in a `to` supersedes
//!   the open assignment instead of adding a second one.

use std::io::{self, BufRead};

use crate::sources::fields::{Fields, Header};
use crate::sources::{HeaderState, Key, TextLines, parse_prefix, row_of, skip, time};
use crate::types::{Binding, BindingOrigin, BindingRow, Subject, SubjectKind};

/// The rows of a static-assignment CSV file.
pub struct StaticRows<R> {
    lines: TextLines<R>,
    fields: Fields,
    header: HeaderState<Cols>,
}

struct Cols {
    subscriber: usize,
    prefix: usize,
    from: usize,
    to: Option<usize>,
}

impl Cols {
    fn find(h: &Header) -> Result<Cols, &'static str> {
        Ok(Cols {
            subscriber: h.index("subscriber").ok_or("missing column subscriber")?,
            prefix: h.index("prefix").ok_or("missing column prefix")?,
            from: h.index("from").ok_or("missing column from")?,
            to: h.index("to"),
        })
    }
}

impl<R: BufRead> StaticRows<R> {
    pub fn new(input: R) -> Self {
        StaticRows {
            lines: TextLines::new(input),
            fields: Fields::default(),
            header: HeaderState::Missing,
        }
    }

    fn next_row(&mut self) -> io::Result<Option<BindingRow>> {
        loop {
            let no = match self.lines.next_content()? {
                None => return Ok(None),
                Some(Err(skipped)) => return Ok(Some(skipped)),
                Some(Ok(no)) => no,
            };
            let line = self.lines.text();
            if let Err(reason) = self.fields.split(line, true) {
                return Ok(Some(skip(no, reason)));
            }
            let repeated_header = match &self.header {
                HeaderState::Ready(c) => self
                    .fields
                    .get(line, c.subscriber)
                    .is_some_and(|v| v.eq_ignore_ascii_case("subscriber")),
                _ => true,
            };
            if repeated_header {
                let h = Header::new(&self.fields, line);
                match Cols::find(&h) {
                    Ok(cols) => {
                        self.header = HeaderState::Ready(cols);
                        continue;
                    }
                    Err(reason) => {
                        if matches!(self.header, HeaderState::Missing) {
                            self.header = HeaderState::Bad;
                            return Ok(Some(skip(no, reason)));
                        }
                    }
                }
            }
            let HeaderState::Ready(cols) = &self.header else {
                return Ok(Some(skip(no, "no header")));
            };
            return Ok(Some(row(cols, &self.fields, line, no)));
        }
    }
}

fn row(c: &Cols, f: &Fields, line: &str, no: u64) -> BindingRow {
    let binding = (|| {
        let subject = f
            .get(line, c.subscriber)
            .and_then(|v| Subject::new(SubjectKind::Subscriber, v))
            .ok_or("missing subscriber")?;
        let prefix = parse_prefix(f.get(line, c.prefix).ok_or("missing prefix")?)?;
        let from =
            time::parse_datetime(f.get(line, c.from).ok_or("missing from")?).ok_or("bad from")?;
        let to = match f.opt(line, c.to) {
            None => None,
            Some(v) => Some(time::parse_datetime(v).ok_or("bad to")?),
        };
        if to.is_some_and(|to| to < from) {
            return Err("to before from");
        }
        let key = Key::new()
            .str(&subject.value)
            .ch('|')
            .net(prefix)
            .ch('@')
            .int(from.timestamp())
            .finish();
        Ok(Binding {
            subject,
            prefix,
            ports: None,
            from,
            to,
            origin: BindingOrigin::Static,
            key,
            reporter: None,
        })
    })();
    row_of(no, binding)
}

impl<R: BufRead> Iterator for StaticRows<R> {
    type Item = io::Result<BindingRow>;

    fn next(&mut self) -> Option<io::Result<BindingRow>> {
        self.next_row().transpose()
    }
}
