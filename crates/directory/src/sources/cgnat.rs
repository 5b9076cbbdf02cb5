//! Carrier-grade NAT port-block allocations: a CSV export, or the NAT
//! device's syslog.
//!
//! The format is chosen by the first line that is not blank or a `#`
//! comment: a CSV header naming `public_address` makes the file CSV;
//! anything else is read as syslog.
//!
//! # CSV
//!
//! ```text
//! subscriber,private_address,public_address,first_port,last_port,from,to
//! S-000123,100.64.12.34,203.0.113.7,1024,1535,2026-11-16T03:00:00Z,2026-11-16T09:12:44Z
//! ,100.64.12.35,203.0.113.7,1536,2047,2026-11-16T03:00:02Z,
//! ```
//!
//! Columns by name, as for static assignments: `public_address`,
//! `first_port`, `last_port`, `from` required; `to` optional (empty: still
//! allocated); `subscriber` and/or `private_address`. The subject is the
//! subscriber id ([`SubjectKind::Subscriber`]) when the row names one,
//! else the inside address ([`SubjectKind::InsideAddress`]), which the
//! directory resolves through that address's own bindings. Key:
//! `subject|public:first-last@from`.
//!
//! # Syslog
//!
//! One message per line, as a syslog collector writes them. Two message
//! shapes are recognized anywhere in the line:
//!
//! - Juniper (MS-MPC / MS-MIC services cards, Junos Address Aware):
//!   `JSERVICES_NAT_PORT_BLOCK_ALLOC: <inside> -> <public>:<first>-<last>`
//!   (and `..._RELEASE`, and `..._ACTIVE`, the interim re-log of a block
//!   still allocated), optionally followed by a `0x...` value, which is
//!   not used.
//! - Cisco IOS XR CGN syslog: bracketed records
//!   `[UserbasedA <L4> <inside> <vrf> <inside-ipv6> <public> <port>
//!   <first> <last> <dst> <dst-port>]` (`-` for fields that do not apply;
//!   several records may share a line); `UserbasedA` allocates,
//!   `UserbasedW` withdraws. For DS-Lite the inside IPv6 (the B4 address)
//!   is the subject, else the inside IPv4 address. Other record types
//!   (session-based logging, port exhaustion) are skipped ("unsupported
//!   Cisco record").
//!
//! The time of a line is the first timestamp with a year: the line's own
//! syslog timestamp when it is RFC 3339 (RFC 5424, rsyslog's
//! `RSYSLOG_FileFormat`; a missing zone is UTC) or Cisco's `YYYY Mon DD
//! HH:MM:SS`, else a `YYYY-MM-DD HH:MM:SS` inside the message (the
//! Juniper services card's own clock), taken as UTC. A line with only a
//! BSD timestamp (`Nov 16 12:00:00`, no year) is skipped ("time without
//! year"): configure the collector to write RFC 3339 timestamps. The word
//! after a line-start timestamp is the reporting device.
//!
//! An allocation opens an interval at once (a [`Binding`] with `to:
//! None`); its release closes it (the same key again, with `to`). A block
//! allocated again while open for another inside address is closed at
//! that moment (a block has one holder at a time). An interim `ACTIVE`
//! for a block not open opens it (its start is then a lower bound). A
//! release with no open allocation in the same input (it was in an earlier
//! file) is skipped ("release without allocation"): import rotated logs
//! in one stream, oldest first. Key:
//! `device|inside|public:first-last@from`. Memory grows with the number of
//! blocks open at once, not with the input.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use memchr::memmem;

use crate::sources::fields::{Fields, Header};
use crate::sources::{HeaderState, Key, TextLines, row_of, skip, time};
use crate::types::{
    Binding, BindingEvent, BindingOrigin, BindingRow, PortRange, Subject, SubjectKind,
};

/// Distinct reporting devices remembered by name; later ones share one
/// slot (pairing then relies on the block alone).
const MAX_DEVICES: usize = 4096;

/// The rows of a CGNAT port-block file, CSV or syslog.
pub struct CgnatRows<R> {
    lines: TextLines<R>,
    fields: Fields,
    mode: Mode,
    out: VecDeque<BindingRow>,
}

enum Mode {
    Unknown,
    Csv(HeaderState<Cols>),
    Syslog(Box<Blocks>),
}

struct Cols {
    subscriber: Option<usize>,
    private: Option<usize>,
    public: usize,
    first: usize,
    last: usize,
    from: usize,
    to: Option<usize>,
}

impl Cols {
    fn find(h: &Header) -> Result<Cols, &'static str> {
        let cols = Cols {
            subscriber: h.index("subscriber"),
            private: h.index("private_address"),
            public: h
                .index("public_address")
                .ok_or("missing column public_address")?,
            first: h.index("first_port").ok_or("missing column first_port")?,
            last: h.index("last_port").ok_or("missing column last_port")?,
            from: h.index("from").ok_or("missing column from")?,
            to: h.index("to"),
        };
        if cols.subscriber.is_none() && cols.private.is_none() {
            return Err("missing column subscriber");
        }
        Ok(cols)
    }
}

impl<R: BufRead> CgnatRows<R> {
    pub fn new(input: R) -> Self {
        CgnatRows {
            lines: TextLines::new(input),
            fields: Fields::default(),
            mode: Mode::Unknown,
            out: VecDeque::new(),
        }
    }

    fn step(&mut self) -> io::Result<Option<BindingRow>> {
        loop {
            if let Some(row) = self.out.pop_front() {
                return Ok(Some(row));
            }
            let no = match self.lines.next_content()? {
                None => return Ok(None),
                Some(Err(skipped)) => return Ok(Some(skipped)),
                Some(Ok(no)) => no,
            };
            let line = self.lines.text();
            let t = line.trim();
            if let Mode::Unknown = self.mode {
                let is_csv = self.fields.split(line, true).is_ok()
                    && Header::new(&self.fields, line)
                        .index("public_address")
                        .is_some();
                self.mode = if is_csv {
                    Mode::Csv(HeaderState::Missing)
                } else {
                    Mode::Syslog(Box::default())
                };
            }
            match &mut self.mode {
                Mode::Unknown => unreachable!("decided above"),
                Mode::Syslog(blocks) => blocks.line(no, t, &mut self.out),
                Mode::Csv(header) => {
                    if let Err(reason) = self.fields.split(line, true) {
                        return Ok(Some(skip(no, reason)));
                    }
                    let is_header = match header {
                        HeaderState::Ready(c) => self
                            .fields
                            .get(line, c.public)
                            .is_some_and(|v| v.eq_ignore_ascii_case("public_address")),
                        _ => true,
                    };
                    if is_header {
                        match Cols::find(&Header::new(&self.fields, line)) {
                            Ok(cols) => {
                                *header = HeaderState::Ready(cols);
                                continue;
                            }
                            Err(reason) => {
                                if matches!(header, HeaderState::Missing) {
                                    *header = HeaderState::Bad;
                                    return Ok(Some(skip(no, reason)));
                                }
                            }
                        }
                    }
                    let HeaderState::Ready(cols) = header else {
                        return Ok(Some(skip(no, "no header")));
                    };
                    return Ok(Some(row_of(no, csv_row(cols, &self.fields, line))));
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for CgnatRows<R> {
    type Item = io::Result<BindingRow>;

    fn next(&mut self) -> Option<io::Result<BindingRow>> {
        self.step().transpose()
    }
}

fn port(v: Option<&str>) -> Result<u16, &'static str> {
    v.ok_or("missing port")?.parse().map_err(|_| "bad port")
}

fn csv_row(c: &Cols, f: &Fields, line: &str) -> Result<Binding, &'static str> {
    let subject = if let Some(s) = f.opt(line, c.subscriber) {
        Subject::new(SubjectKind::Subscriber, s).ok_or("missing subscriber")?
    } else if let Some(a) = f.opt(line, c.private) {
        Subject::new(SubjectKind::InsideAddress, a).ok_or("bad private_address")?
    } else {
        return Err("missing subscriber");
    };
    let public: IpAddr = f
        .get(line, c.public)
        .ok_or("missing public_address")?
        .parse()
        .map_err(|_| "bad public_address")?;
    let ports = PortRange::new(port(f.get(line, c.first))?, port(f.get(line, c.last))?)
        .ok_or("bad port range")?;
    let from =
        time::parse_datetime(f.get(line, c.from).ok_or("missing from")?).ok_or("bad from")?;
    let to = match f.opt(line, c.to) {
        None => None,
        Some(v) => Some(time::parse_datetime(v).ok_or("bad to")?),
    };
    if to.is_some_and(|to| to < from) {
        return Err("to before from");
    }
    let prefix = IpNet::from(public);
    Ok(Binding {
        key: Key::new()
            .str(&subject.value)
            .ch('|')
            .ip(public)
            .ch(':')
            .ports(ports)
            .ch('@')
            .int(from.timestamp())
            .finish(),
        subject,
        prefix,
        ports: Some(ports),
        from,
        to,
        origin: BindingOrigin::Cgnat,
        reporter: None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Allocate,
    /// An interim re-log of a block still allocated.
    Active,
    Release,
}

struct BlockEvent {
    action: Action,
    inside: IpAddr,
    public: IpAddr,
    ports: PortRange,
}

/// One port block on one device.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct BlockId {
    device: u32,
    public: IpAddr,
    first: u16,
    last: u16,
}

struct Open {
    inside: IpAddr,
    from: DateTime<Utc>,
}

/// The syslog reader's state: the blocks allocated and not yet released.
#[derive(Default)]
struct Blocks {
    open: HashMap<BlockId, Open>,
    devices: HashMap<String, u32>,
}

impl Blocks {
    fn device_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.devices.get(name) {
            return id;
        }
        if self.devices.len() >= MAX_DEVICES {
            return u32::MAX;
        }
        let id = self.devices.len() as u32;
        self.devices.insert(name.to_string(), id);
        id
    }

    fn line(&mut self, no: u64, line: &str, out: &mut VecDeque<BindingRow>) {
        let (at, device) = match line_time(line) {
            Ok(v) => v,
            Err(reason) => {
                // Say why the time is missing only for lines that are
                // port-block messages at all.
                let reason = match messages(line) {
                    Err(r) => r,
                    Ok(_) => reason,
                };
                out.push_back(skip(no, reason));
                return;
            }
        };
        let (events, unsupported) = match messages(line) {
            Ok(v) => v,
            Err(reason) => {
                out.push_back(skip(no, reason));
                return;
            }
        };
        if events.is_empty() && unsupported {
            out.push_back(skip(no, "unsupported Cisco record"));
            return;
        }
        let device = device.unwrap_or("-");
        let device_id = self.device_id(device);
        for ev in events {
            match ev {
                Ok(ev) => self.event(no, at, device, device_id, ev, out),
                Err(reason) => out.push_back(skip(no, reason)),
            }
        }
    }

    fn event(
        &mut self,
        no: u64,
        at: DateTime<Utc>,
        device: &str,
        device_id: u32,
        ev: BlockEvent,
        out: &mut VecDeque<BindingRow>,
    ) {
        let id = BlockId {
            device: device_id,
            public: ev.public,
            first: ev.ports.first,
            last: ev.ports.last,
        };
        let row = |inside: IpAddr, from: DateTime<Utc>, to: Option<DateTime<Utc>>| {
            let subject = Subject {
                kind: SubjectKind::InsideAddress,
                value: Key::new().ip(inside).finish(),
            };
            BindingRow::Event {
                line: no,
                event: BindingEvent::Binding(Binding {
                    key: Key::new()
                        .str(device)
                        .ch('|')
                        .str(&subject.value)
                        .ch('|')
                        .ip(ev.public)
                        .ch(':')
                        .ports(ev.ports)
                        .ch('@')
                        .int(from.timestamp())
                        .finish(),
                    subject,
                    prefix: IpNet::from(ev.public),
                    ports: Some(ev.ports),
                    from,
                    to,
                    origin: BindingOrigin::Cgnat,
                    reporter: (device != "-").then(|| device.to_string()),
                }),
            }
        };
        match ev.action {
            Action::Allocate | Action::Active => {
                if let Some(o) = self.open.get(&id) {
                    if o.inside == ev.inside {
                        return;
                    }
                    // The block has a new holder: the old one's ended.
                    out.push_back(row(o.inside, o.from, Some(at.max(o.from))));
                }
                self.open.insert(
                    id,
                    Open {
                        inside: ev.inside,
                        from: at,
                    },
                );
                out.push_back(row(ev.inside, at, None));
            }
            Action::Release => match self.open.get(&id) {
                Some(o) if o.inside == ev.inside => {
                    if at < o.from {
                        out.push_back(skip(no, "release before allocation"));
                        return;
                    }
                    let from = o.from;
                    self.open.remove(&id);
                    out.push_back(row(ev.inside, from, Some(at)));
                }
                _ => out.push_back(skip(no, "release without allocation")),
            },
        }
    }
}

/// A line's time and reporting device.
fn line_time(line: &str) -> Result<(DateTime<Utc>, Option<&str>), &'static str> {
    // `<PRI>` and the RFC 5424 version.
    let mut rest = line;
    if let Some((pri, r)) = rest.strip_prefix('<').and_then(|r| r.split_once('>'))
        && !pri.is_empty()
        && pri.len() <= 3
        && pri.bytes().all(|b| b.is_ascii_digit())
    {
        rest = r.strip_prefix("1 ").unwrap_or(r);
    }
    let (stamp, after) = match time::syslog_stamp(rest) {
        Some((stamp, after)) => (stamp, Some(after)),
        None => (None, None),
    };
    let device = after
        .and_then(|a| a.split_ascii_whitespace().next())
        .filter(|d| *d != "-" && !d.ends_with(':') && !d.starts_with('['));
    match stamp.or_else(|| time::embedded_datetime(line)) {
        Some(at) => Ok((at, device)),
        None if after.is_some() => Err("time without year"),
        None => Err("bad time"),
    }
}

type Parsed = (Vec<Result<BlockEvent, &'static str>>, bool);

/// The port-block records of a line, and whether it had records of a kind
/// not read.
fn messages(line: &str) -> Result<Parsed, &'static str> {
    const JUNIPER: &str = "JSERVICES_NAT_PORT_BLOCK_";
    if let Some(at) = memmem::find(line.as_bytes(), JUNIPER.as_bytes()) {
        let rest = &line[at + JUNIPER.len()..];
        let (kind, rest) = rest.split_once(':').ok_or("bad Juniper message")?;
        let action = match kind {
            "ALLOC" => Action::Allocate,
            "RELEASE" => Action::Release,
            "ACTIVE" => Action::Active,
            _ => return Err("unsupported Juniper message"),
        };
        return Ok((vec![juniper(action, rest)], false));
    }
    if !line.contains("[Userbased")
        && !line.contains("[Sessionbased")
        && !line.contains("[Portblockrunout")
    {
        return Err("not a port-block message");
    }
    let mut events = Vec::new();
    let mut unsupported = false;
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let Some(len) = rest[open..].find(']') else {
            events.push(Err("bad Cisco record"));
            break;
        };
        let record = &rest[open + 1..open + len];
        rest = &rest[open + len + 1..];
        let f: Vec<&str> = record.split_ascii_whitespace().collect();
        let action = match f.first() {
            Some(&"UserbasedA") => Action::Allocate,
            Some(&"UserbasedW") => Action::Release,
            Some(name) if name.starts_with("Sessionbased") || *name == "Portblockrunout" => {
                unsupported = true;
                continue;
            }
            // Structured data or other bracketed text.
            _ => continue,
        };
        events.push(cisco(action, &f));
    }
    Ok((events, unsupported))
}

fn ip(v: &str, bad: &'static str) -> Result<IpAddr, &'static str> {
    v.parse().map_err(|_| bad)
}

/// `<inside> -> <public>:<first>-<last> [0x...]`
fn juniper(action: Action, rest: &str) -> Result<BlockEvent, &'static str> {
    let mut words = rest.split_ascii_whitespace();
    let (inside, arrow, target) = (words.next(), words.next(), words.next());
    let (Some(inside), Some("->"), Some(target)) = (inside, arrow, target) else {
        return Err("bad Juniper message");
    };
    let (public, ports) = target.rsplit_once(':').ok_or("bad Juniper message")?;
    let public = public.trim_start_matches('[').trim_end_matches(']');
    let (first, last) = ports.split_once('-').ok_or("bad port range")?;
    Ok(BlockEvent {
        action,
        inside: ip(inside, "bad inside address")?,
        public: ip(public, "bad public address")?,
        ports: PortRange::new(
            first.parse().map_err(|_| "bad port")?,
            last.parse().map_err(|_| "bad port")?,
        )
        .ok_or("bad port range")?,
    })
}

/// `[EventName L4 inside vrf inside-ipv6 public port first last dst dst-port]`
fn cisco(action: Action, f: &[&str]) -> Result<BlockEvent, &'static str> {
    if f.len() != 11 {
        return Err("bad Cisco record");
    }
    let inside = if f[4] != "-" { f[4] } else { f[2] };
    Ok(BlockEvent {
        action,
        inside: ip(inside, "bad inside address")?,
        public: ip(f[5], "bad public address")?,
        ports: PortRange::new(
            f[7].parse().map_err(|_| "bad port")?,
            f[8].parse().map_err(|_| "bad port")?,
        )
        .ok_or("bad port range")?,
    })
}
