//! The directory's vocabulary.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How a network record names a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectKind {
    /// The subscriber's own id (static assignments, CGNAT block files).
    Subscriber,
    /// A RADIUS `User-Name` (login name).
    Login,
    /// A DHCP client identifier (option 61; DHCPv6 DUID), lowercase hex
    /// without separators.
    ClientId,
    /// A hardware (MAC) address, lowercase `aa:bb:cc:dd:ee:ff`.
    HwAddr,
    /// An inside (private) address behind carrier-grade NAT, as a NAT
    /// device's port-block log names it: not a subscriber id, but resolved
    /// to one through the bindings of that inside address.
    InsideAddress,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 5] = [
        SubjectKind::Subscriber,
        SubjectKind::Login,
        SubjectKind::ClientId,
        SubjectKind::HwAddr,
        SubjectKind::InsideAddress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Subscriber => "subscriber",
            SubjectKind::Login => "login",
            SubjectKind::ClientId => "client-id",
            SubjectKind::HwAddr => "hw-addr",
            SubjectKind::InsideAddress => "inside-address",
        }
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubjectKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SubjectKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown identifier kind {s:?} \
                     (subscriber, login, client-id, hw-addr, inside-address)"
                )
            })
    }
}

/// An identifier as a network record gives it, normalized (see
/// [`Subject::new`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    pub kind: SubjectKind,
    pub value: String,
}

impl Subject {
    /// Normalizes the value: login names and subscriber ids are kept as
    /// given but trimmed; client ids become lowercase hex without `:`/`-`
    /// separators; hardware addresses become lowercase colon-separated
    /// octets; inside addresses become the canonical text of the IP
    /// address. `None` for an empty or malformed value.
    pub fn new(kind: SubjectKind, value: &str) -> Option<Subject> {
        let v = value.trim();
        if v.is_empty() {
            return None;
        }
        let value = match kind {
            SubjectKind::Subscriber | SubjectKind::Login => v.to_string(),
            SubjectKind::ClientId => {
                let hex: String = v
                    .chars()
                    .filter(|c| !matches!(c, ':' | '-' | '.'))
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                hex
            }
            SubjectKind::HwAddr => {
                let hex: String = v
                    .chars()
                    .filter(|c| !matches!(c, ':' | '-' | '.'))
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                hex.as_bytes()
                    .chunks(2)
                    .map(|c| std::str::from_utf8(c).expect("ascii"))
                    .collect::<Vec<_>>()
                    .join(":")
            }
            SubjectKind::InsideAddress => v.parse::<IpAddr>().ok()?.to_string(),
        };
        Some(Subject { kind, value })
    }

    pub fn subscriber(id: &str) -> Option<Subject> {
        Subject::new(SubjectKind::Subscriber, id)
    }

    pub fn login(name: &str) -> Option<Subject> {
        Subject::new(SubjectKind::Login, name)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// Where a binding came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindingOrigin {
    /// kanki's RADIUS accounting server.
    Radius,
    /// A FreeRADIUS `detail` accounting file.
    Detail,
    /// An ISC Kea lease file (CSV, v4 or v6).
    Kea,
    /// An ISC dhcpd `dhcpd.leases` file.
    Dhcpd,
    /// A static assignment file.
    Static,
    /// A carrier-grade NAT port-block log (CSV or syslog).
    Cgnat,
}

impl BindingOrigin {
    pub const ALL: [BindingOrigin; 6] = [
        BindingOrigin::Radius,
        BindingOrigin::Detail,
        BindingOrigin::Kea,
        BindingOrigin::Dhcpd,
        BindingOrigin::Static,
        BindingOrigin::Cgnat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BindingOrigin::Radius => "radius",
            BindingOrigin::Detail => "detail",
            BindingOrigin::Kea => "kea",
            BindingOrigin::Dhcpd => "dhcpd",
            BindingOrigin::Static => "static",
            BindingOrigin::Cgnat => "cgnat",
        }
    }
}

impl fmt::Display for BindingOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BindingOrigin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BindingOrigin::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown binding format {s:?} (static, kea, dhcpd, detail, cgnat)")
            })
    }
}

/// An inclusive range of ports (a CGNAT port block).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// `None` when `first > last`.
    pub fn new(first: u16, last: u16) -> Option<PortRange> {
        (first <= last).then_some(PortRange { first, last })
    }

    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A known interval during which a subject held an address prefix (and,
/// behind CGNAT, a port block on it): a DHCP lease, a static assignment, a
/// CGNAT block allocation, a RADIUS session once known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub subject: Subject,
    /// The address or prefix held: a /32 or /128 for one address, a
    /// delegated prefix such as a /56, the public address for CGNAT.
    pub prefix: IpNet,
    /// The port block on `prefix`, for CGNAT; `None`: all ports.
    pub ports: Option<PortRange>,
    pub from: DateTime<Utc>,
    /// `None`: still held.
    pub to: Option<DateTime<Utc>>,
    pub origin: BindingOrigin,
    /// The record's own key within its origin, which makes a replay of the
    /// same record idempotent: a lease's address + start, a RADIUS
    /// `NAS:Acct-Session-Id`, a file line's content.
    pub key: String,
    /// The device that reported it (NAS address, DHCP server), if known.
    pub reporter: Option<String>,
}

/// What a RADIUS accounting request (from the server or a `detail` file)
/// says about a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionPhase {
    Start,
    Interim,
    Stop,
}

/// One accounting record of a session: the subject (User-Name) held the
/// prefixes (Framed-IP-Address, Framed-IPv6-Prefix, Delegated-IPv6-Prefix)
/// as of `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub phase: SessionPhase,
    /// The NAS that reported it: NAS-IP-Address, NAS-IPv6-Address or
    /// NAS-Identifier, else the packet's source address.
    pub nas: String,
    /// Acct-Session-Id.
    pub session_id: String,
    pub subject: Subject,
    pub prefixes: Vec<IpNet>,
    /// Event-Timestamp, else the time of receipt.
    pub at: DateTime<Utc>,
    /// Acct-Session-Time: seconds since the session began, which dates the
    /// start of a session whose Start record was lost.
    pub session_time: Option<u32>,
    /// The Class attribute, hex-encoded, kept as evidence.
    pub class: Option<String>,
}

/// A record read from any binding source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindingEvent {
    /// A known interval.
    Binding(Binding),
    /// A session record: opens, refreshes or closes a session.
    Session(SessionEvent),
    /// Accounting-On or Accounting-Off: the NAS restarted, so every session
    /// it had open ended at `at`.
    NasReset { nas: String, at: DateTime<Utc> },
}

/// A line a reader could not use, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number (of the record's first line).
    pub line: u64,
    /// A short, stable reason, e.g. `"bad address"`.
    pub reason: String,
}

/// One item read from a binding source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingRow {
    Event { line: u64, event: BindingEvent },
    Skip(Skipped),
}

/// The address family and width of a prefix, for display.
pub fn single_address(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_normalize() {
        assert_eq!(
            Subject::new(SubjectKind::HwAddr, "AA-BB-CC-00-11-22")
                .unwrap()
                .value,
            "aa:bb:cc:00:11:22"
        );
        assert_eq!(
            Subject::new(SubjectKind::HwAddr, "aabb.cc00.1122")
                .unwrap()
                .value,
            "aa:bb:cc:00:11:22"
        );
        assert!(Subject::new(SubjectKind::HwAddr, "aa:bb").is_none());
        assert_eq!(
            Subject::new(SubjectKind::ClientId, "01:AA:bb:CC:00:11:22")
                .unwrap()
                .value,
            "01aabbcc001122"
        );
        assert!(Subject::new(SubjectKind::ClientId, "zz").is_none());
        assert_eq!(Subject::login(" user@isp ").unwrap().value, "user@isp");
        assert!(Subject::login("  ").is_none());
        assert_eq!(
            Subject::new(SubjectKind::InsideAddress, "2001:DB8::0:1")
                .unwrap()
                .value,
            "2001:db8::1"
        );
        assert!(Subject::new(SubjectKind::InsideAddress, "100.64.0.300").is_none());
        assert_eq!(
            "inside-address".parse::<SubjectKind>(),
            Ok(SubjectKind::InsideAddress)
        );
    }

    #[test]
    fn port_ranges() {
        let r = PortRange::new(1024, 2047).unwrap();
        assert!(r.contains(1024) && r.contains(2047) && !r.contains(2048));
        assert!(PortRange::new(5, 4).is_none());
    }
}
