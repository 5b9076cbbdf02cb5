//! ISC dhcpd's lease database, `dhcpd.leases` (DHCPv4 and DHCPv6).
//!
//! dhcpd appends a whole `lease` (v4) or `ia-na` / `ia-ta` / `ia-pd` (v6)
//! block each time a lease changes, and rewrites the file about once an
//! hour. Every block is one interval, so renewals give one binding each.
//!
//! ```text
//! lease 192.0.2.10 {
//!   starts 1 2026/11/16 03:00:00;
//!   ends 1 2026/11/16 15:00:00;
//!   binding state active;
//!   hardware ethernet 00:16:3e:12:34:56;
//!   uid "\001\000\026>\0224V";
//! }
//! ia-pd "\001\000\000\000\000\001\000\001..." {
//!   cltt 1 2026/11/16 03:00:00;
//!   iaprefix 2001:db8:8000::/56 {
//!     binding state active;
//!     preferred-life 1800;
//!     max-life 3600;
//!     ends 1 2026/11/16 04:00:00;
//!   }
//! }
//! ```
//!
//! - Times are `W YYYY/MM/DD HH:MM:SS` (UTC), `epoch N` (the `local`
//!   `db-time-format`), or `never` (`to` is `None`).
//! - v4 `lease` blocks: held from `starts` to `ends`; key `address@starts`
//!   (a release rewrites the block with the same `starts` and an earlier
//!   `ends`, which supersedes the first). Subject: the `uid` (client
//!   identifier, quoted with octal escapes or colon-separated hex) as a
//!   [`SubjectKind::ClientId`], else `hardware ethernet` as a
//!   [`SubjectKind::HwAddr`]. Binding states `active` and `bootp` become
//!   bindings; `free`, `expired` and `released` blocks that still name a
//!   client are past intervals and become bindings too (dhcpd sets `ends`
//!   to the time the lease ended); `abandoned` is skipped ("abandoned
//!   lease"); other states (`backup`, `reserved`, `reset`) and free blocks
//!   without a client are pool bookkeeping, ignored silently.
//! - v6 blocks: the IA's id is the 4-byte IAID followed by the client's
//!   DUID; the subject is the DUID (a `ClientId`). Each `iaaddr` (/128) or
//!   `iaprefix` (delegated prefix) in `binding state active` is held from
//!   the IA's `cltt` (else `ends - max-life`) to `ends`; key
//!   `prefix@start`. Other v6 states are ignored: their `ends` is when
//!   dhcpd forgets the lease, not when the client stopped holding it.
//! - `server-duid`, `authoring-byte-order`, `host`, `group`, `class`,
//!   `subclass` and `failover peer` statements and blocks, and comments,
//!   are not leases and are ignored. Any other top-level statement or
//!   block is skipped ("unknown statement", "unknown block"). A block cut
//!   off (by the end of the file, or by a new top-level `lease`/`ia-*`
//!   block inside it) is skipped ("unterminated block").

use std::collections::VecDeque;
use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::sources::lines::LineReader;
use crate::sources::{Key, hex, hw_addr, skip, time, unquote};
use crate::types::{Binding, BindingEvent, BindingOrigin, BindingRow, Subject, SubjectKind};

/// Most tokens kept of one statement; the rest are dropped.
const MAX_STATEMENT: usize = 64;
/// Deepest block nesting tracked frame by frame.
const MAX_DEPTH: usize = 32;
/// Most addresses kept of one IA block.
const MAX_IA_ADDRESSES: usize = 256;

/// Words that begin a top-level statement: seen at the start of a
/// statement inside a lease block, they mean that block was cut off.
const TOP_LEVEL: [&str; 8] = [
    "lease",
    "ia-na",
    "ia-ta",
    "ia-pd",
    "server-duid",
    "authoring-byte-order",
    "failover",
    "host",
];

/// The rows of a `dhcpd.leases` file.
pub struct DhcpdRows<R> {
    lines: LineReader<R>,
    buf: Vec<u8>,
    parser: Parser,
    done: bool,
}

impl<R: BufRead> DhcpdRows<R> {
    pub fn new(input: R) -> Self {
        DhcpdRows {
            lines: LineReader::new(input),
            buf: Vec::new(),
            parser: Parser::default(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for DhcpdRows<R> {
    type Item = io::Result<BindingRow>;

    fn next(&mut self) -> Option<io::Result<BindingRow>> {
        loop {
            if let Some(row) = self.parser.out.pop_front() {
                return Some(Ok(row));
            }
            if self.done {
                return None;
            }
            match self.lines.read_line(&mut self.buf) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(None) => {
                    self.done = true;
                    self.parser.finish();
                }
                Ok(Some(info)) if info.too_long => {
                    self.parser.out.push_back(skip(info.no, "line too long"));
                }
                Ok(Some(info)) => self.parser.line(info.no, &self.buf),
            }
        }
    }
}

#[derive(Debug)]
enum Tok {
    Open,
    Close,
    Semi,
    Word(String),
    Str(Vec<u8>),
    /// A string without its closing quote.
    Bad,
}

struct Token {
    tok: Tok,
    line: u64,
}

impl Token {
    fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// A time as a statement gives it: `Some(None)` is `never`.
type When = Option<Option<DateTime<Utc>>>;

#[derive(Default)]
struct LeaseV4 {
    address: Option<Ipv4Addr>,
    starts: When,
    ends: When,
    state: Option<String>,
    uid: Option<Subject>,
    hw: Option<Subject>,
    error: Option<&'static str>,
}

struct IaSub {
    line: u64,
    prefix: Option<IpNet>,
    state: Option<String>,
    max_life: Option<u32>,
    ends: When,
    error: Option<&'static str>,
}

#[derive(Default)]
struct Ia {
    duid: Option<Subject>,
    cltt: When,
    subs: Vec<IaSub>,
    error: Option<&'static str>,
}

enum Frame {
    Lease(Box<LeaseV4>),
    Ia(Box<Ia>),
    Sub(Box<IaSub>),
    /// A block that is not read (`host`, `failover peer`, `on expiry`, ...).
    Ignore,
}

#[derive(Default)]
struct Parser {
    /// Open blocks, outermost first, with the line each began on.
    stack: Vec<(Frame, u64)>,
    /// Blocks opened beyond [`MAX_DEPTH`], not tracked one by one.
    extra_depth: usize,
    stmt: Vec<Token>,
    stmt_line: u64,
    out: VecDeque<BindingRow>,
}

fn set_err(slot: &mut Option<&'static str>, reason: &'static str) {
    slot.get_or_insert(reason);
}

impl Parser {
    fn line(&mut self, no: u64, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => i += 1,
                b'#' => break,
                b'{' => {
                    self.token(Tok::Open, no);
                    i += 1;
                }
                b'}' => {
                    self.token(Tok::Close, no);
                    i += 1;
                }
                b';' => {
                    self.token(Tok::Semi, no);
                    i += 1;
                }
                b'"' => match unquote(&bytes[i + 1..]) {
                    Some((text, used)) => {
                        self.token(Tok::Str(text), no);
                        i += 1 + used;
                    }
                    None => {
                        self.token(Tok::Bad, no);
                        break;
                    }
                },
                _ => {
                    let start = i;
                    while i < bytes.len()
                        && !matches!(
                            bytes[i],
                            b' ' | b'\t'
                                | b'\r'
                                | b'\x0b'
                                | b'\x0c'
                                | b'{'
                                | b'}'
                                | b';'
                                | b'"'
                                | b'#'
                        )
                    {
                        i += 1;
                    }
                    let w = String::from_utf8_lossy(&bytes[start..i]).into_owned();
                    self.token(Tok::Word(w), no);
                }
            }
        }
    }

    fn token(&mut self, tok: Tok, line: u64) {
        match tok {
            Tok::Semi => {
                self.statement();
            }
            Tok::Open => {
                self.open(line);
            }
            Tok::Close => {
                if !self.stmt.is_empty() {
                    // dhcpd always ends a statement with `;`, but a
                    // missing one costs nothing to forgive.
                    self.statement();
                }
                self.close(line);
            }
            tok => {
                if self.stmt.is_empty() {
                    self.stmt_line = line;
                    if let Tok::Word(w) = &tok
                        && TOP_LEVEL.contains(&w.as_str())
                        && self.inside_lease()
                    {
                        self.cut_off();
                    }
                }
                if self.stmt.len() < MAX_STATEMENT {
                    self.stmt.push(Token { tok, line });
                }
            }
        }
    }

    /// Whether the outermost open block is one that holds leases.
    fn inside_lease(&self) -> bool {
        matches!(
            self.stack.first(),
            Some((Frame::Lease(_) | Frame::Ia(_), _))
        )
    }

    /// The outermost block was cut off: it is skipped and reading goes on
    /// at the top level.
    fn cut_off(&mut self) {
        if let Some((_, line)) = self.stack.first() {
            self.out.push_back(skip(*line, "unterminated block"));
        }
        self.stack.clear();
        self.extra_depth = 0;
    }

    fn finish(&mut self) {
        if !self.stack.is_empty() {
            // A statement left open is part of the block cut off.
            self.cut_off();
        } else if !self.stmt.is_empty() {
            self.out
                .push_back(skip(self.stmt_line, "unterminated statement"));
        }
        self.stmt.clear();
    }

    /// A statement ended by `;`.
    fn statement(&mut self) {
        let stmt = std::mem::take(&mut self.stmt);
        if stmt.is_empty() {
            return;
        }
        if self.extra_depth > 0 {
            self.stmt = recycle(stmt);
            return;
        }
        let head = stmt[0].word().unwrap_or("");
        match self.stack.last_mut() {
            None => {
                if !matches!(head, "server-duid" | "authoring-byte-order") {
                    self.out
                        .push_back(skip(self.stmt_line, "unknown statement"));
                }
            }
            Some((Frame::Lease(l), _)) => lease_statement(l, &stmt),
            Some((Frame::Ia(ia), _)) => {
                if head == "cltt" {
                    match when(&stmt[1..]) {
                        Some(w) => ia.cltt = Some(w),
                        None => set_err(&mut ia.error, "bad time"),
                    }
                }
            }
            Some((Frame::Sub(sub), _)) => sub_statement(sub, &stmt),
            Some((Frame::Ignore, _)) => {}
        }
        self.stmt = recycle(stmt);
    }

    /// `{`: the statement so far is the block's header.
    fn open(&mut self, line: u64) {
        let header = std::mem::take(&mut self.stmt);
        let start = header.first().map_or(line, |t| t.line);
        if self.extra_depth > 0 || self.stack.len() >= MAX_DEPTH {
            self.extra_depth += 1;
            self.stmt = recycle(header);
            return;
        }
        let head = header.first().and_then(Token::word).unwrap_or("");
        let frame = match self.stack.last() {
            None => match head {
                "lease" => {
                    let mut l = LeaseV4::default();
                    match header
                        .get(1)
                        .and_then(Token::word)
                        .map(str::parse::<Ipv4Addr>)
                    {
                        Some(Ok(a)) if header.len() == 2 => l.address = Some(a),
                        _ => l.error = Some("bad address"),
                    }
                    Frame::Lease(Box::new(l))
                }
                "ia-na" | "ia-ta" | "ia-pd" => {
                    let mut ia = Ia::default();
                    match header.get(1).and_then(ia_duid) {
                        Some(d) if header.len() == 2 => ia.duid = Some(d),
                        _ => ia.error = Some("bad ia id"),
                    }
                    Frame::Ia(Box::new(ia))
                }
                "host" | "group" | "class" | "subclass" | "failover" => Frame::Ignore,
                _ => {
                    self.out.push_back(skip(start, "unknown block"));
                    Frame::Ignore
                }
            },
            Some((Frame::Ia(_), _)) if matches!(head, "iaaddr" | "iaprefix") => {
                let prefix = header.get(1).and_then(Token::word).and_then(|w| {
                    if head == "iaaddr" {
                        w.parse::<Ipv6Addr>()
                            .ok()
                            .map(|a| IpNet::from(IpAddr::V6(a)))
                    } else {
                        w.parse::<ipnet::Ipv6Net>()
                            .ok()
                            .filter(|n| n.trunc() == *n)
                            .map(IpNet::V6)
                    }
                });
                Frame::Sub(Box::new(IaSub {
                    line: start,
                    error: (prefix.is_none() || header.len() != 2).then_some("bad address"),
                    prefix,
                    state: None,
                    max_life: None,
                    ends: None,
                }))
            }
            _ => Frame::Ignore,
        };
        self.stack.push((frame, start));
        self.stmt = recycle(header);
    }

    /// `}`.
    fn close(&mut self, line: u64) {
        if self.extra_depth > 0 {
            self.extra_depth -= 1;
            return;
        }
        let Some((frame, start)) = self.stack.pop() else {
            self.out.push_back(skip(line, "unexpected }"));
            return;
        };
        match frame {
            Frame::Lease(l) => {
                if let Some(row) = lease_row(&l, start) {
                    self.out.push_back(row);
                }
            }
            Frame::Ia(ia) => {
                if let Some(e) = ia.error {
                    self.out.push_back(skip(start, e));
                } else {
                    for sub in &ia.subs {
                        if let Some(row) = sub_row(&ia, sub) {
                            self.out.push_back(row);
                        }
                    }
                }
            }
            Frame::Sub(sub) => {
                if let Some((Frame::Ia(ia), _)) = self.stack.last_mut() {
                    if ia.subs.len() < MAX_IA_ADDRESSES {
                        ia.subs.push(*sub);
                    } else {
                        set_err(&mut ia.error, "too many addresses");
                    }
                }
            }
            Frame::Ignore => {}
        }
    }
}

/// Empties a statement's token list, keeping its allocation.
fn recycle(mut v: Vec<Token>) -> Vec<Token> {
    v.clear();
    v
}

/// A client identifier as dhcpd writes it: a quoted string (octal escapes
/// for unprintable bytes) or colon-separated hex bytes.
fn id_bytes(t: &Token) -> Option<Vec<u8>> {
    match &t.tok {
        Tok::Str(b) => (!b.is_empty()).then(|| b.clone()),
        Tok::Word(w) => {
            let mut out = Vec::new();
            for part in w.split(':') {
                if part.is_empty() || part.len() > 2 {
                    return None;
                }
                out.push(u8::from_str_radix(part, 16).ok()?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// The DUID of an IA id (its first four bytes are the IAID).
fn ia_duid(t: &Token) -> Option<Subject> {
    let b = id_bytes(t)?;
    if b.len() <= 4 {
        return None;
    }
    Subject::new(SubjectKind::ClientId, &hex(&b[4..]))
}

/// `starts`/`ends`/`cltt` values: `W YYYY/MM/DD HH:MM:SS`, `epoch N`, or
/// `never`.
fn when(args: &[Token]) -> When {
    let words: Vec<&str> = args.iter().map(|t| t.word()).collect::<Option<_>>()?;
    match words.as_slice() {
        ["never"] => Some(None),
        ["epoch", n] => Some(Some(time::unix(n.parse().ok()?)?)),
        [_, date, clock] | [date, clock] => Some(Some(time::dhcpd_date_time(date, clock)?)),
        _ => None,
    }
}

fn lease_statement(l: &mut LeaseV4, stmt: &[Token]) {
    let words: Vec<Option<&str>> = stmt.iter().map(Token::word).collect();
    match words.as_slice() {
        [Some("starts"), ..] => match when(&stmt[1..]) {
            Some(w) => l.starts = Some(w),
            None => set_err(&mut l.error, "bad time"),
        },
        [Some("ends"), ..] => match when(&stmt[1..]) {
            Some(w) => l.ends = Some(w),
            None => set_err(&mut l.error, "bad time"),
        },
        [Some("binding"), Some("state"), Some(s)] => l.state = Some(s.to_string()),
        [Some("hardware"), Some("ethernet"), Some(mac)] => match hw_addr(mac) {
            Some(s) => l.hw = Some(s),
            None => set_err(&mut l.error, "bad hardware address"),
        },
        [Some("uid"), _] => {
            match id_bytes(&stmt[1]).and_then(|b| Subject::new(SubjectKind::ClientId, &hex(&b))) {
                Some(s) => l.uid = Some(s),
                None => set_err(&mut l.error, "bad uid"),
            }
        }
        [Some("uid"), ..] => set_err(&mut l.error, "bad uid"),
        _ => {}
    }
}

fn sub_statement(sub: &mut IaSub, stmt: &[Token]) {
    let words: Vec<Option<&str>> = stmt.iter().map(Token::word).collect();
    match words.as_slice() {
        [Some("ends"), ..] => match when(&stmt[1..]) {
            Some(w) => sub.ends = Some(w),
            None => set_err(&mut sub.error, "bad time"),
        },
        [Some("binding"), Some("state"), Some(s)] => sub.state = Some(s.to_string()),
        [Some("max-life"), Some(n)] => match n.parse() {
            Ok(v) => sub.max_life = Some(v),
            Err(_) => set_err(&mut sub.error, "bad max-life"),
        },
        _ => {}
    }
}

fn binding_row(
    line: u64,
    subject: Subject,
    prefix: IpNet,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> BindingRow {
    BindingRow::Event {
        line,
        event: BindingEvent::Binding(Binding {
            key: Key::new()
                .net(prefix)
                .ch('@')
                .int(from.timestamp())
                .finish(),
            subject,
            prefix,
            ports: None,
            from,
            to,
            origin: BindingOrigin::Dhcpd,
            reporter: None,
        }),
    }
}

fn lease_row(l: &LeaseV4, line: u64) -> Option<BindingRow> {
    if let Some(e) = l.error {
        return Some(skip(line, e));
    }
    let client = l.uid.clone().or_else(|| l.hw.clone());
    match l.state.as_deref().unwrap_or("active") {
        "active" | "bootp" => {}
        "free" | "expired" | "released" if client.is_some() => {}
        "abandoned" => return Some(skip(line, "abandoned lease")),
        _ => return None,
    }
    let r = (|| {
        let address = l.address.ok_or("bad address")?;
        let from = l.starts.ok_or("missing starts")?.ok_or("bad time")?;
        let to = l.ends.ok_or("missing ends")?;
        let subject = client.ok_or("missing client id")?;
        if to.is_some_and(|to| to < from) {
            return Err("ends before starts");
        }
        Ok(binding_row(
            line,
            subject,
            IpNet::from(IpAddr::V4(address)),
            from,
            to,
        ))
    })();
    Some(r.unwrap_or_else(|reason| skip(line, reason)))
}

fn sub_row(ia: &Ia, sub: &IaSub) -> Option<BindingRow> {
    if let Some(e) = sub.error {
        return Some(skip(sub.line, e));
    }
    match sub.state.as_deref().unwrap_or("active") {
        "active" => {}
        "abandoned" => return Some(skip(sub.line, "abandoned lease")),
        _ => return None,
    }
    let r = (|| {
        let prefix = sub.prefix.ok_or("bad address")?;
        let subject = ia.duid.clone().ok_or("bad ia id")?;
        let to = sub.ends.ok_or("missing ends")?;
        let from = match (ia.cltt, to, sub.max_life) {
            (Some(Some(cltt)), _, _) => cltt,
            (_, Some(end), Some(life)) => end
                .checked_sub_signed(chrono::Duration::seconds(i64::from(life)))
                .ok_or("bad time")?,
            _ => return Err("missing cltt"),
        };
        if to.is_some_and(|to| to < from) {
            return Err("ends before starts");
        }
        Ok(binding_row(sub.line, subject, prefix, from, to))
    })();
    Some(r.unwrap_or_else(|reason| skip(sub.line, reason)))
}
