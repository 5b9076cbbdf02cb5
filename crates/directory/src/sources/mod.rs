//! Readers of the binding records an ISP has: who held which address (and,
//! behind carrier-grade NAT, which port block) when.
//!
//! | format | module | reads | yields |
//! | --- | --- | --- | --- |
//! | `static` | [`static_csv`] | CSV `subscriber,prefix,from,to` | [`Binding`]s of subscriber ids |
//! | `kea` | [`kea`] | ISC Kea memfile lease CSV, v4 and v6 | [`Binding`]s of client ids / hardware addresses |
//! | `dhcpd` | [`dhcpd`] | ISC dhcpd `dhcpd.leases`, v4 and v6 | [`Binding`]s of client ids / hardware addresses |
//! | `detail` | [`detail`] | FreeRADIUS `detail` accounting files | [`SessionEvent`]s and NAS resets |
//! | `cgnat` | [`cgnat`] | CGNAT port-block CSV, Juniper and Cisco port-block syslog | [`Binding`]s with port ranges |
//!
//! Every reader takes any [`BufRead`], streams (memory does not grow with
//! the input: a line longer than 1 MiB is skipped, not kept), and yields
//! one [`BindingRow`] per record: an event, or a [`Skipped`] line with a
//! short, stable reason and its 1-based line number. A malformed record
//! never stops a reader; only an I/O error does (the input broke off), and
//! it is the last item. Times are UTC. `docs/bindings.md` describes each
//! format, with examples, and what is skipped.
//!
//! Each [`Binding`] carries a `key` that identifies the record within its
//! origin, so that reading the same file twice is idempotent and a later
//! record with the same key (a lease released early, a static assignment
//! that got its end date, a port block released) supersedes the earlier
//! one.
//!
//! [`Binding`]: crate::types::Binding
//! [`SessionEvent`]: crate::types::SessionEvent
//! [`Skipped`]: crate::types::Skipped

use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use crate::types::{BindingOrigin, BindingRow, Skipped, Subject, SubjectKind};

pub mod cgnat;
pub mod detail;
pub mod dhcpd;
pub mod kea;
pub mod static_csv;
pub mod tail;

mod fields;
mod lines;
mod time;

pub use cgnat::CgnatRows;
pub use detail::DetailRows;
pub use dhcpd::DhcpdRows;
pub use kea::KeaRows;
pub use static_csv::StaticRows;
pub use tail::{Tail, TailPosition, TailRead};

/// Reads `input` as a file of `origin`'s format.
///
/// [`BindingOrigin::Radius`] has no file format (its records come from the
/// accounting server): reading it yields a single
/// [`io::ErrorKind::InvalidInput`] error.
pub fn read<R: BufRead>(origin: BindingOrigin, input: R) -> Rows<R> {
    Rows(match origin {
        BindingOrigin::Static => Inner::Static(StaticRows::new(input)),
        BindingOrigin::Kea => Inner::Kea(KeaRows::new(input)),
        BindingOrigin::Dhcpd => Inner::Dhcpd(DhcpdRows::new(input)),
        BindingOrigin::Detail => Inner::Detail(DetailRows::new(input)),
        BindingOrigin::Cgnat => Inner::Cgnat(CgnatRows::new(input)),
        BindingOrigin::Radius => Inner::Unsupported(Some(origin)),
    })
}

/// The rows of one input, whatever its format: see [`read`].
pub struct Rows<R>(Inner<R>);

// One per input: the size of the largest reader does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner<R> {
    Static(StaticRows<R>),
    Kea(KeaRows<R>),
    Dhcpd(DhcpdRows<R>),
    Detail(DetailRows<R>),
    Cgnat(CgnatRows<R>),
    /// An origin without a file format: yields one error.
    Unsupported(Option<BindingOrigin>),
}

impl<R: BufRead> Iterator for Rows<R> {
    type Item = io::Result<BindingRow>;

    fn next(&mut self) -> Option<io::Result<BindingRow>> {
        match &mut self.0 {
            Inner::Static(r) => r.next(),
            Inner::Kea(r) => r.next(),
            Inner::Dhcpd(r) => r.next(),
            Inner::Detail(r) => r.next(),
            Inner::Cgnat(r) => r.next(),
            Inner::Unsupported(origin) => origin.take().map(|o| {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{o} bindings come from the accounting server, not from a file"),
                ))
            }),
        }
    }
}

/// A skipped line.
pub(crate) fn skip(line: u64, reason: &str) -> BindingRow {
    BindingRow::Skip(Skipped {
        line,
        reason: reason.to_string(),
    })
}

/// The row of a line that gave a binding, or a skip with the reason it
/// did not.
pub(crate) fn row_of(line: u64, binding: Result<crate::types::Binding, &str>) -> BindingRow {
    match binding {
        Ok(b) => BindingRow::Event {
            line,
            event: crate::types::BindingEvent::Binding(b),
        },
        Err(reason) => skip(line, reason),
    }
}

/// Lines of an input as text: non-UTF-8 and over-long lines become skips.
pub(crate) struct TextLines<R> {
    lines: lines::LineReader<R>,
    text: String,
    done: bool,
}

impl<R: BufRead> TextLines<R> {
    pub(crate) fn new(input: R) -> Self {
        TextLines {
            lines: lines::LineReader::new(input),
            text: String::new(),
            done: false,
        }
    }

    /// The next line: `Ok(Some(Ok(no)))` with its text in
    /// [`TextLines::text`], `Ok(Some(Err(skip)))` for a line that is not
    /// text, `Ok(None)` at the end. After an error, always `Ok(None)`.
    pub(crate) fn next(&mut self) -> io::Result<Option<Result<u64, BindingRow>>> {
        if self.done {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.text).into_bytes();
        let info = match self.lines.read_line(&mut buf) {
            Ok(Some(info)) => info,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        if info.too_long {
            return Ok(Some(Err(skip(info.no, "line too long"))));
        }
        match String::from_utf8(buf) {
            Ok(text) => {
                self.text = text;
                Ok(Some(Ok(info.no)))
            }
            Err(e) => {
                // Keep the buffer's capacity for the next line.
                let mut bytes = e.into_bytes();
                bytes.clear();
                self.text = String::from_utf8(bytes).unwrap_or_default();
                Ok(Some(Err(skip(info.no, "not valid UTF-8"))))
            }
        }
    }

    /// Like [`TextLines::next`], passing over blank lines and `#`
    /// comments (the line formats' common prelude).
    pub(crate) fn next_content(&mut self) -> io::Result<Option<Result<u64, BindingRow>>> {
        loop {
            match self.next()? {
                Some(Ok(_))
                    if {
                        let t = self.text.trim();
                        t.is_empty() || t.starts_with('#')
                    } =>
                {
                    continue;
                }
                other => return Ok(other),
            }
        }
    }

    /// The text of the last line read.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// An address (a /32 or /128) or a CIDR prefix whose host bits are zero.
/// A prefix with host bits set (`192.0.2.5/24`) is refused rather than
/// masked: it is as likely to mean the address as the network, and
/// guessing would tie a whole network to one holder.
pub(crate) fn parse_prefix(s: &str) -> Result<IpNet, &'static str> {
    if s.contains('/') {
        let net: IpNet = s.parse().map_err(|_| "bad prefix")?;
        if net.trunc() != net {
            return Err("host bits set");
        }
        Ok(net)
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| "bad prefix")
    }
}

/// Where a CSV format is in reading its header.
pub(crate) enum HeaderState<C> {
    /// No header line seen yet.
    Missing,
    Ready(C),
    /// The header lacked a required column: every line after it is
    /// skipped as "no header" (until a good header line comes).
    Bad,
}

/// Reads the body of a quoted string (the bytes after its opening `"`),
/// as dhcpd and FreeRADIUS write them: `\"`, `\\`, `\n`, `\r`, `\t` and
/// three-digit octal escapes. The text and how many bytes it used, closing
/// quote included; `None` if the quote is not closed.
pub(crate) fn unquote(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((out, i + 1)),
            b'\\' if i + 1 < b.len() => {
                let e = b[i + 1];
                if (b'0'..=b'7').contains(&e) {
                    let mut v: u32 = 0;
                    let mut n = 0;
                    while n < 3 && i + 1 + n < b.len() && (b'0'..=b'7').contains(&b[i + 1 + n]) {
                        v = v * 8 + u32::from(b[i + 1 + n] - b'0');
                        n += 1;
                    }
                    out.push((v & 0xff) as u8);
                    i += 1 + n;
                    continue;
                }
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    other => other,
                });
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// Lowercase hex of `bytes`, without separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// What `Subject::new(SubjectKind::ClientId, s)` gives, a byte at a time
/// (this is on the hot path of the lease readers).
pub(crate) fn client_id(s: &str) -> Option<Subject> {
    let mut value = String::with_capacity(s.len());
    for b in s.trim().bytes() {
        match b {
            b':' | b'-' | b'.' => {}
            b'0'..=b'9' | b'a'..=b'f' => value.push(b as char),
            b'A'..=b'F' => value.push(b.to_ascii_lowercase() as char),
            _ => return None,
        }
    }
    (!value.is_empty()).then_some(Subject {
        kind: SubjectKind::ClientId,
        value,
    })
}

/// What `Subject::new(SubjectKind::HwAddr, s)` gives, a byte at a time.
pub(crate) fn hw_addr(s: &str) -> Option<Subject> {
    let mut value = String::with_capacity(17);
    let mut n = 0;
    for b in s.trim().bytes() {
        let d = match b {
            b':' | b'-' | b'.' => continue,
            b'0'..=b'9' | b'a'..=b'f' => b,
            b'A'..=b'F' => b.to_ascii_lowercase(),
            _ => return None,
        };
        if n == 12 {
            return None;
        }
        if n > 0 && n % 2 == 0 {
            value.push(':');
        }
        value.push(d as char);
        n += 1;
    }
    (n == 12).then_some(Subject {
        kind: SubjectKind::HwAddr,
        value,
    })
}

/// Builds a record key (or an address's text) without going through the
/// formatting machinery: every row gets one, so this is on the hot path.
pub(crate) struct Key(String);

impl Key {
    pub(crate) fn new() -> Key {
        Key(String::with_capacity(48))
    }

    pub(crate) fn str(mut self, s: &str) -> Key {
        self.0.push_str(s);
        self
    }

    pub(crate) fn ch(mut self, c: char) -> Key {
        self.0.push(c);
        self
    }

    /// An address as its `Display` writes it (IPv4 written by hand).
    pub(crate) fn ip(mut self, a: IpAddr) -> Key {
        match a {
            IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.0.push('.');
                    }
                    self = self.int(i64::from(o));
                }
                self
            }
            IpAddr::V6(v6) => self.ipv6(v6),
        }
    }

    /// An IPv6 address as `Display` writes it (RFC 5952: lowercase, no
    /// leading zeros, the longest run of two or more zero groups, the first
    /// of equal runs, as `::`; IPv4-mapped addresses as `::ffff:a.b.c.d`).
    fn ipv6(mut self, a: Ipv6Addr) -> Key {
        if let Some(v4) = a.to_ipv4_mapped() {
            self.0.push_str("::ffff:");
            return self.ip(IpAddr::V4(v4));
        }
        let g = a.segments();
        // The longest run of zero groups (at least two long).
        let (mut best, mut best_len, mut i) = (0, 0, 0);
        while i < 8 {
            if g[i] == 0 {
                let start = i;
                while i < 8 && g[i] == 0 {
                    i += 1;
                }
                if i - start > best_len {
                    (best, best_len) = (start, i - start);
                }
            } else {
                i += 1;
            }
        }
        if best_len < 2 {
            best_len = 0;
            best = 8;
        }
        let mut i = 0;
        while i < 8 {
            if i == best {
                self.0.push_str("::");
                i += best_len;
                continue;
            }
            if i > 0 && i != best + best_len {
                self.0.push(':');
            }
            self = self.hex16(g[i]);
            i += 1;
        }
        self
    }

    fn hex16(mut self, v: u16) -> Key {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let d = (v >> shift) & 15;
            if d != 0 || started || shift == 0 {
                started = true;
                self.0.push(HEX[usize::from(d)] as char);
            }
        }
        self
    }

    /// A prefix as `IpNet`'s `Display` writes it: `address/length`.
    pub(crate) fn net(self, n: IpNet) -> Key {
        self.ip(n.addr()).ch('/').int(i64::from(n.prefix_len()))
    }

    /// A port range as `first-last`.
    pub(crate) fn ports(self, p: crate::types::PortRange) -> Key {
        self.int(i64::from(p.first)).ch('-').int(i64::from(p.last))
    }

    pub(crate) fn int(mut self, v: i64) -> Key {
        if v < 0 {
            self.0.push('-');
        }
        let mut n = v.unsigned_abs();
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.0
            .push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
        self
    }

    pub(crate) fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_write_what_display_writes() {
        let mut addrs: Vec<String> = [
            "0.0.0.0",
            "192.0.2.10",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "::",
            "::1",
            "1::",
            "1:0:0:1:0:0:0:1",
            "1:0:0:1:0:0:1:1",
            "1:0:1:0:1:0:1:0",
            "::192.0.2.1",
            "fe80::1:0:0:0",
        ]
        .map(String::from)
        .to_vec();
        // Every pattern of zero and non-zero groups.
        for bits in 0u32..256 {
            let g: Vec<String> = (0..8)
                .map(|i| {
                    if bits >> i & 1 == 1 {
                        format!("{:x}", 0x1f0 * (i + 1))
                    } else {
                        "0".into()
                    }
                })
                .collect();
            addrs.push(g.join(":"));
        }
        for a in &addrs {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(Key::new().ip(ip).finish(), ip.to_string());
            let net = IpNet::from(ip);
            assert_eq!(Key::new().net(net).finish(), net.to_string());
        }
        for v in [0, 7, 10, 65535, 1_794_798_000, -5, i64::MIN, i64::MAX] {
            assert_eq!(Key::new().int(v).finish(), v.to_string());
        }
        let p = crate::types::PortRange::new(1024, 1535).unwrap();
        assert_eq!(Key::new().ports(p).finish(), p.to_string());
    }

    #[test]
    fn fast_identifiers_match_subject_new() {
        for s in [
            "",
            " ",
            "01:AA:bb:CC:00:11:22",
            "aabb.cc00.1122",
            "AA-BB-CC-00-11-22",
            "zz",
            "0",
            ":",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee",
            " 00:16:3e:5a:10:01 ",
            "é1",
            "00:16:3e:5a:10:0g",
        ] {
            assert_eq!(
                client_id(s),
                Subject::new(SubjectKind::ClientId, s),
                "{s:?}"
            );
            assert_eq!(hw_addr(s), Subject::new(SubjectKind::HwAddr, s), "{s:?}");
        }
    }
}
