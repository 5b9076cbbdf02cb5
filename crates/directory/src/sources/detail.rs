//! FreeRADIUS `detail` accounting files, read whole ([`DetailRows`]) or
//! followed as they grow by [`Tail`](super::Tail) as every followed format is.
//!
//! ```text
//! Mon Nov 16 21:00:04 2026
//!     Acct-Status-Type = Start
//!     User-Name = "u0001234@isp.example"
//!     Acct-Session-Id = "8A3C0001"
//!     Framed-IP-Address = 198.51.100.23
//!     Delegated-IPv6-Prefix = 2001:db8:1200:3400::/56
//!     NAS-IP-Address = 192.0.2.1
//!     Event-Timestamp = "Nov 16 2026 21:00:00 JST"
//!     Acct-Delay-Time = 0
//!     Timestamp = 1794830404
//!
//! ```
//!
//! - A record is a date line followed by `Attribute = value` lines
//!   (indented with a tab; shown with spaces above), ended by a blank line. Attribute names are matched
//!   without regard to case; values may be quoted (FreeRADIUS escapes,
//!   octal included). Unknown attributes are ignored; a line that is not
//!   `name = value` makes the record "bad attribute line".
//! - `Acct-Status-Type` `Start`, `Interim-Update` (or `Alive`) and `Stop`
//!   (or 1, 3, 2) become [`SessionEvent`]s; `Accounting-On` /
//!   `Accounting-Off` (7, 8) become [`BindingEvent::NasReset`]. Other
//!   status types are skipped ("unsupported Acct-Status-Type").
//! - Session: `User-Name` (a [`SubjectKind::Login`]), `Acct-Session-Id`,
//!   prefixes from `Framed-IP-Address` (/32; the special values
//!   255.255.255.254, 255.255.255.255 and 0.0.0.0 are not assignments and
//!   are left out), `Framed-IPv6-Address` (/128), `Framed-IPv6-Prefix`
//!   and `Delegated-IPv6-Prefix`, `Acct-Session-Time`, `Class` (as hex).
//! - NAS: `NAS-IP-Address`, else `NAS-IPv6-Address`, else
//!   `NAS-Identifier`, else the packet's source (`Packet-Src-IP-Address`,
//!   `Packet-Src-IPv6-Address`, `Client-IP-Address`).
//! - Time: `Event-Timestamp` (the event's own time, RFC 2869), if its zone
//!   is `UTC`/`GMT`/`JST`/`KST` or numeric, or it is Unix seconds or RFC
//!   3339; else the time the server received the request minus
//!   `Acct-Delay-Time` (RFC 2866): `Timestamp` (Unix seconds), else the
//!   record's date line, taken as UTC (FreeRADIUS writes it in the
//!   server's local time: run it in UTC, or rely on `Timestamp`).

use std::fs::File;
use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Duration, Utc};
use ipnet::{IpNet, Ipv6Net};

use crate::sources::lines::LineReader;
use crate::sources::{hex, skip, time, unquote};
use crate::types::{BindingEvent, BindingRow, SessionEvent, SessionPhase, Subject, SubjectKind};

/// Most prefixes kept of one record.
const MAX_PREFIXES: usize = 16;

/// The rows of a FreeRADIUS `detail` file.
pub struct DetailRows<R> {
    lines: LineReader<R>,
    buf: Vec<u8>,
    rec: Record,
    in_record: bool,
    pending: Option<BindingRow>,
    done: bool,
}

#[derive(Clone, Copy)]
enum PrefixKind {
    V4,
    V6,
    V6Prefix,
}

#[derive(Default)]
struct Record {
    line: u64,
    date: Option<DateTime<Utc>>,
    status: Option<String>,
    user: Option<String>,
    session_id: Option<String>,
    prefixes: Vec<(PrefixKind, String)>,
    nas_ip: Option<String>,
    nas_ipv6: Option<String>,
    nas_id: Option<String>,
    source: Option<String>,
    event_timestamp: Option<String>,
    timestamp: Option<String>,
    session_time: Option<String>,
    delay: Option<String>,
    class: Option<String>,
    error: Option<&'static str>,
}

impl Record {
    fn reset(&mut self, line: u64) {
        *self = Record {
            line,
            prefixes: std::mem::take(&mut self.prefixes),
            ..Record::default()
        };
        self.prefixes.clear();
    }

    fn attribute(&mut self, text: &str) {
        let Some((name, value)) = text.split_once('=') else {
            self.error.get_or_insert("bad attribute line");
            return;
        };
        let name = name.trim();
        let raw = value.trim();
        let value = if let Some(body) = raw.strip_prefix('"') {
            match unquote(body.as_bytes()) {
                Some((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
                None => {
                    self.error.get_or_insert("bad attribute line");
                    return;
                }
            }
        } else {
            raw.to_string()
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "acct-status-type" => &mut self.status,
            "user-name" => &mut self.user,
            "acct-session-id" => &mut self.session_id,
            "nas-ip-address" => &mut self.nas_ip,
            "nas-ipv6-address" => &mut self.nas_ipv6,
            "nas-identifier" => &mut self.nas_id,
            "packet-src-ip-address" | "packet-src-ipv6-address" | "client-ip-address" => {
                &mut self.source
            }
            "event-timestamp" => &mut self.event_timestamp,
            "timestamp" => &mut self.timestamp,
            "acct-session-time" => &mut self.session_time,
            "acct-delay-time" => &mut self.delay,
            "class" => {
                if self.class.is_none() {
                    self.class = Some(if raw.starts_with('"') {
                        hex(value.as_bytes())
                    } else {
                        value
                    });
                }
                return;
            }
            "framed-ip-address" => return self.prefix(PrefixKind::V4, value),
            "framed-ipv6-address" => return self.prefix(PrefixKind::V6, value),
            "framed-ipv6-prefix" | "delegated-ipv6-prefix" => {
                return self.prefix(PrefixKind::V6Prefix, value);
            }
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    fn prefix(&mut self, kind: PrefixKind, value: String) {
        if self.prefixes.len() < MAX_PREFIXES {
            self.prefixes.push((kind, value));
        }
    }

    /// The event this record describes.
    fn event(&self) -> Result<BindingEvent, &'static str> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let status = self
            .status
            .as_deref()
            .ok_or("missing Acct-Status-Type")?
            .trim()
            .to_ascii_lowercase();
        let phase = match status.as_str() {
            "start" | "1" => Some(SessionPhase::Start),
            "stop" | "2" => Some(SessionPhase::Stop),
            "interim-update" | "alive" | "3" => Some(SessionPhase::Interim),
            "accounting-on" | "accounting-off" | "7" | "8" => None,
            _ => return Err("unsupported Acct-Status-Type"),
        };
        let at = self.time()?;
        let nas = self.nas()?;
        let Some(phase) = phase else {
            return Ok(BindingEvent::NasReset { nas, at });
        };
        let session_id = self
            .session_id
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or("missing Acct-Session-Id")?
            .to_string();
        let subject = self
            .user
            .as_deref()
            .and_then(|u| Subject::new(SubjectKind::Login, u))
            .ok_or("missing User-Name")?;
        let mut prefixes = Vec::with_capacity(self.prefixes.len());
        for (kind, v) in &self.prefixes {
            if let Some(p) = parse_prefix(*kind, v)?
                && !prefixes.contains(&p)
            {
                prefixes.push(p);
            }
        }
        let session_time = match &self.session_time {
            None => None,
            Some(v) => Some(v.parse().map_err(|_| "bad Acct-Session-Time")?),
        };
        let class = match &self.class {
            None => None,
            Some(v) => Some(class_hex(v).ok_or("bad Class")?),
        };
        Ok(BindingEvent::Session(SessionEvent {
            phase,
            nas,
            session_id,
            subject,
            prefixes,
            at,
            session_time,
            class,
        }))
    }

    fn time(&self) -> Result<DateTime<Utc>, &'static str> {
        if let Some(at) = self.event_timestamp.as_deref().and_then(time::radius_date) {
            return Ok(at);
        }
        let delay: i64 = match &self.delay {
            None => 0,
            Some(v) => v.parse::<u32>().map_err(|_| "bad Acct-Delay-Time")?.into(),
        };
        let received = match &self.timestamp {
            Some(v) => time::unix(v.parse().map_err(|_| "bad time")?).ok_or("bad time")?,
            None => self.date.ok_or(if self.event_timestamp.is_some() {
                "bad time"
            } else {
                "missing time"
            })?,
        };
        received
            .checked_sub_signed(Duration::seconds(delay))
            .ok_or("bad time")
    }

    fn nas(&self) -> Result<String, &'static str> {
        if let Some(v) = &self.nas_ip {
            return Ok(v
                .parse::<Ipv4Addr>()
                .map_err(|_| "bad NAS-IP-Address")?
                .to_string());
        }
        if let Some(v) = &self.nas_ipv6 {
            return Ok(v
                .parse::<Ipv6Addr>()
                .map_err(|_| "bad NAS-IPv6-Address")?
                .to_string());
        }
        if let Some(v) = self
            .nas_id
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return Ok(v.to_string());
        }
        if let Some(Ok(ip)) = self.source.as_deref().map(str::parse::<IpAddr>) {
            return Ok(ip.to_string());
        }
        Err("missing NAS")
    }
}

fn parse_prefix(kind: PrefixKind, v: &str) -> Result<Option<IpNet>, &'static str> {
    match kind {
        PrefixKind::V4 => {
            let a: Ipv4Addr = v.parse().map_err(|_| "bad address")?;
            // 255.255.255.254: the NAS picks; 255.255.255.255: the user
            // picks (RFC 2865); neither is an address held.
            if a.is_unspecified() || a.is_broadcast() || a == Ipv4Addr::new(255, 255, 255, 254) {
                return Ok(None);
            }
            Ok(Some(IpNet::from(IpAddr::V4(a))))
        }
        PrefixKind::V6 => {
            let a: Ipv6Addr = v.parse().map_err(|_| "bad address")?;
            Ok(Some(IpNet::from(IpAddr::V6(a))))
        }
        PrefixKind::V6Prefix => {
            let n: Ipv6Net = v.parse().map_err(|_| "bad prefix")?;
            if n.trunc() != n {
                return Err("host bits set");
            }
            Ok(Some(IpNet::V6(n)))
        }
    }
}

/// `Class` as lowercase hex: FreeRADIUS prints octets as `0x...`.
fn class_hex(v: &str) -> Option<String> {
    let h = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    (h.len().is_multiple_of(2) && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| h.to_ascii_lowercase())
}

impl<R: BufRead> DetailRows<R> {
    /// Reads a whole file: a last record without its closing blank line is
    /// read too.
    pub fn new(input: R) -> Self {
        DetailRows {
            lines: LineReader::new(input),
            buf: Vec::new(),
            rec: Record::default(),
            in_record: false,
            pending: None,
            done: false,
        }
    }

    fn finish_record(&mut self) -> BindingRow {
        self.in_record = false;
        match self.rec.event() {
            Ok(event) => BindingRow::Event {
                line: self.rec.line,
                event,
            },
            Err(reason) => skip(self.rec.line, reason),
        }
    }

    fn step(&mut self) -> io::Result<Option<BindingRow>> {
        loop {
            if let Some(row) = self.pending.take() {
                return Ok(Some(row));
            }
            if self.done {
                return Ok(None);
            }
            let info = match self.lines.read_line(&mut self.buf) {
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
                Ok(Some(info)) => info,
                // The end: a last record without its blank line is read.
                Ok(None) => {
                    self.done = true;
                    if self.in_record {
                        return Ok(Some(self.finish_record()));
                    }
                    return Ok(None);
                }
            };
            let blank = !info.too_long && self.buf.iter().all(u8::is_ascii_whitespace);
            if blank {
                if self.in_record {
                    return Ok(Some(self.finish_record()));
                }
                continue;
            }
            let indented = matches!(self.buf.first(), Some(b' ' | b'\t'));
            let mut finished = None;
            if !indented || !self.in_record {
                if self.in_record {
                    // A new record without a blank line before it.
                    finished = Some(self.finish_record());
                }
                self.rec.reset(info.no);
                self.in_record = true;
            }
            if info.too_long {
                self.rec.error.get_or_insert("line too long");
            } else {
                let text = String::from_utf8_lossy(&self.buf);
                if indented {
                    self.rec.attribute(text.trim());
                } else {
                    self.rec.date = time::ctime(&text);
                }
            }
            if let Some(row) = finished {
                return Ok(Some(row));
            }
        }
    }
}

impl<R: BufRead> Iterator for DetailRows<R> {
    type Item = io::Result<BindingRow>;

    fn next(&mut self) -> Option<io::Result<BindingRow>> {
        self.step().transpose()
    }
}

pub(crate) fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Whether an open file has been deleted (its inode number may already
/// belong to a new file at the same path).
pub(crate) fn unlinked(file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().is_ok_and(|m| m.nlink() == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        false
    }
}
