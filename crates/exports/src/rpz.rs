//! The RPZ export: a complete response policy zone
//! (draft-vixie-dnsop-dns-rpz) that BIND, Unbound, PowerDNS and Knot load
//! as a zone file or over AXFR.
//!
//! ```text
//! ; kanki response policy zone (draft-vixie-dnsop-dns-rpz)
//! $TTL 300
//! $ORIGIN rpz.kanki.
//! rpz.kanki. IN SOA localhost. hostmaster.localhost. 1 300 60 604800 60
//! rpz.kanki. IN NS localhost.
//! bad.example CNAME .
//! *.bad.example CNAME .
//! good.bad.example CNAME rpz-passthru.
//! *.good.bad.example CNAME rpz-passthru.
//! 32.1.2.0.192.rpz-ip CNAME .
//! 32.zz.db8.2001.rpz-ip CNAME .
//! ```
//!
//! Trigger owner names are written relative to `$ORIGIN` (the apex records
//! absolute), one record a line, every record with the zone's `$TTL`.

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::str::FromStr;

use crate::BUFFER_SIZE;
use crate::list::{
    DnsList, Entry, ExportStats, IpTrigger, Reach, SkipReason, for_each_ip, for_each_name,
    is_host_name,
};

/// What a resolver does with a query that hits a trigger: the policy
/// actions of draft-vixie-dnsop-dns-rpz section 3. The configuration
/// spelling ([`FromStr`], [`fmt::Display`], serde) is given with each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RpzAction {
    /// `nxdomain`: the name does not exist (`CNAME .`).
    #[default]
    Nxdomain,
    /// `nodata`: the name exists but has no data of the type asked for
    /// (`CNAME *.`).
    Nodata,
    /// `passthru`: answer normally, and log the hit (`CNAME rpz-passthru.`).
    Passthru,
    /// `drop`: send no answer at all (`CNAME rpz-drop.`).
    Drop,
    /// `cname:TARGET`: answer with a CNAME to a walled garden, e.g.
    /// `cname:warning.kanki.`. A target starting with `*.`
    /// (`cname:*.garden.example.`) keeps the query name: the resolver
    /// answers `bad.example` with `bad.example.garden.example.`, so the
    /// garden can tell which name was blocked. Always stored absolute
    /// (with its trailing dot) and lowercase.
    Cname(String),
    /// `local:ADDR[,ADDR...]`: answer with these addresses (`A` for IPv4,
    /// `AAAA` for IPv6), e.g. the warning page's server; queries for other
    /// types get no data.
    Local(Vec<IpAddr>),
}

impl RpzAction {
    /// The record data of the action, as lines to write after an owner
    /// name (` CNAME .\n`).
    fn rdata_lines(&self) -> Vec<Vec<u8>> {
        self.rdata()
            .into_iter()
            .map(|r| {
                match r {
                    RpzRdata::Cname(t) => format!(" CNAME {t}\n"),
                    RpzRdata::A(a) => format!(" A {a}\n"),
                    RpzRdata::Aaaa(a) => format!(" AAAA {a}\n"),
                }
                .into_bytes()
            })
            .collect()
    }

    /// Checks a hand-built action the way [`FromStr`] does.
    fn check(&self) -> Result<(), String> {
        match self {
            RpzAction::Cname(t) => check_cname_target(t).map(|_| ()),
            RpzAction::Local(addrs) if addrs.is_empty() => {
                Err("the local action needs at least one address".into())
            }
            _ => Ok(()),
        }
    }
}

fn check_cname_target(target: &str) -> Result<String, String> {
    let t = target.trim();
    let rest = t.strip_prefix("*.").unwrap_or(t);
    if rest.is_empty() || rest == "." {
        return Err(format!(
            "CNAME target {target:?} is the root: use the nxdomain or nodata action"
        ));
    }
    let checked = check_domain(rest).map_err(|e| format!("CNAME target {target:?}: {e}"))?;
    Ok(if t.starts_with("*.") {
        format!("*.{checked}")
    } else {
        checked
    })
}

impl FromStr for RpzAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "nxdomain" => return Ok(RpzAction::Nxdomain),
            "nodata" => return Ok(RpzAction::Nodata),
            "passthru" => return Ok(RpzAction::Passthru),
            "drop" => return Ok(RpzAction::Drop),
            _ => {}
        }
        if let Some(target) = lower.strip_prefix("cname:") {
            return check_cname_target(target).map(RpzAction::Cname);
        }
        if let Some(addrs) = lower.strip_prefix("local:") {
            let addrs = addrs
                .split(',')
                .map(|a| {
                    a.trim()
                        .parse::<IpAddr>()
                        .map_err(|_| format!("invalid address {:?} in RPZ action {s:?}", a.trim()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(RpzAction::Local(addrs));
        }
        Err(format!(
            "invalid RPZ action {s:?}: use nxdomain, nodata, passthru, drop, \
             cname:NAME (cname:*.NAME keeps the query name) or local:ADDRESS[,ADDRESS]"
        ))
    }
}

impl fmt::Display for RpzAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpzAction::Nxdomain => f.write_str("nxdomain"),
            RpzAction::Nodata => f.write_str("nodata"),
            RpzAction::Passthru => f.write_str("passthru"),
            RpzAction::Drop => f.write_str("drop"),
            RpzAction::Cname(t) => write!(f, "cname:{t}"),
            RpzAction::Local(addrs) => {
                f.write_str("local:")?;
                for (i, a) in addrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{a}")?;
                }
                Ok(())
            }
        }
    }
}

impl serde::Serialize for RpzAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RpzAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The zone around the triggers. Names may be given with or without their
/// trailing dot; they are written absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpzOptions {
    /// The zone's name, e.g. `rpz.kanki`; resolvers name it in their
    /// `response-policy` (BIND) or `rpz:` (Unbound) clause.
    pub origin: String,
    /// SOA serial; must grow with every change for secondaries to follow.
    pub serial: u32,
    /// TTL of every record (`$TTL`), in seconds.
    pub ttl: u32,
    /// SOA primary name server.
    pub soa_mname: String,
    /// SOA responsible mailbox, as a name (`hostmaster.example.org.`) or an
    /// address (`hostmaster@example.org`).
    pub soa_rname: String,
    /// SOA timers, in seconds.
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    /// The apex NS record's target. A response policy zone is never
    /// queried through its NS; `localhost.` is the custom.
    pub ns: String,
    /// What a resolver does with a listed name or address.
    pub action: RpzAction,
    /// Also write `*.name` for every listed name, so that its subdomains
    /// match too (and leave out names under a listed name, which the
    /// wildcard covers).
    pub wildcards: bool,
}

impl Default for RpzOptions {
    /// The defaults of `kanki config default`.
    fn default() -> Self {
        RpzOptions {
            origin: "rpz.kanki".into(),
            serial: 1,
            ttl: 300,
            soa_mname: "localhost.".into(),
            soa_rname: "hostmaster.localhost.".into(),
            refresh: 300,
            retry: 60,
            expire: 604_800,
            minimum: 60,
            ns: "localhost.".into(),
            action: RpzAction::Nxdomain,
            wildcards: true,
        }
    }
}

/// Owner names reserved for the other trigger types: a QNAME trigger
/// ending in one of these would be read as an IP or name-server trigger.
const RESERVED_RPZ_LABELS: &[&str] = &["rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"];

/// The apex of a zone as [`write_rpz`] writes it: [`RpzOptions`]' names
/// checked, lowercase and absolute (`rpz.kanki.`). `rname` is in
/// presentation form: a dot in a mailbox's local part is escaped
/// (`dns\\.admin.example.org.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpzApex {
    pub origin: String,
    pub mname: String,
    pub rname: String,
    pub ns: String,
}

impl RpzOptions {
    /// Checks the options (names, action) and returns the apex names, or
    /// says what is wrong.
    pub fn apex(&self) -> Result<RpzApex, String> {
        let origin = check_domain(&self.origin).map_err(|e| format!("RPZ origin: {e}"))?;
        let mname = check_domain(&self.soa_mname).map_err(|e| format!("SOA mname: {e}"))?;
        let rname = check_mailbox(&self.soa_rname).map_err(|e| format!("SOA rname: {e}"))?;
        let ns = check_domain(&self.ns).map_err(|e| format!("NS: {e}"))?;
        self.action.check()?;
        Ok(RpzApex {
            origin,
            mname,
            rname,
            ns,
        })
    }
}

/// What an entry of a response policy zone is; with [`for_each_rpz_entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RpzEntryKind {
    /// A listed name: a QNAME trigger with the zone's action (and its `*.`
    /// twin when [`RpzOptions::wildcards`]).
    Name,
    /// An allowlisted name under a listed one: `rpz-passthru.` (and its
    /// `*.` twin when [`RpzOptions::wildcards`]).
    Exception,
    /// An `rpz-ip` trigger with the zone's action; the owner is
    /// [`rpz_ip_owner`]'s.
    Ip,
}

/// One record's data for an action: what follows the owner name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RpzRdata {
    /// A CNAME to this absolute name (`.`, `*.`, `rpz-passthru.`,
    /// `*.garden.example.`, ...).
    Cname(String),
    A(std::net::Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
}

impl RpzAction {
    /// The records an entry with this action has, in the order
    /// [`write_rpz`] writes them.
    pub fn rdata(&self) -> Vec<RpzRdata> {
        let cname = |t: &str| vec![RpzRdata::Cname(absolute(t))];
        match self {
            RpzAction::Nxdomain => cname("."),
            RpzAction::Nodata => cname("*."),
            RpzAction::Passthru => cname("rpz-passthru."),
            RpzAction::Drop => cname("rpz-drop."),
            RpzAction::Cname(t) => cname(t),
            RpzAction::Local(addrs) => addrs
                .iter()
                .map(|a| match a {
                    IpAddr::V4(a) => RpzRdata::A(*a),
                    IpAddr::V6(a) => RpzRdata::Aaaa(*a),
                })
                .collect(),
        }
    }
}

/// Calls `emit` with every entry of the zone [`write_rpz`] would write for
/// `list`, in the same order (names, exceptions, IP triggers), with its
/// owner name relative to the origin and without the `*.` wildcard twin:
/// the zone's content for those who build it in another form than text
/// (the RPZ primary). Leaves out and counts what `write_rpz` leaves out.
/// Invalid options fail with [`io::ErrorKind::InvalidInput`] before the
/// first call.
pub fn for_each_rpz_entry(
    list: &DnsList,
    opts: &RpzOptions,
    mut emit: impl FnMut(&str, RpzEntryKind) -> io::Result<()>,
) -> io::Result<ExportStats> {
    let apex = opts
        .apex()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stats = ExportStats::default();
    // Owner text without its trailing dot, plus the origin's: at most 253
    // bytes (255 on the wire).
    let room = 253usize.saturating_sub(apex.origin.len());
    let wildcard_len = if opts.wildcards { 2 } else { 0 };
    let address_records = matches!(opts.action, RpzAction::Local(_));
    let extra = |name: &str, exception: bool| {
        let last = name.rsplit('.').next().unwrap_or(name);
        if RESERVED_RPZ_LABELS.contains(&last) {
            Some(SkipReason::ReservedRpzLabel)
        } else if name.len() + wildcard_len > room {
            Some(SkipReason::TooLongForZone)
        } else if address_records && !exception && !is_host_name(name) {
            Some(SkipReason::NotHostName)
        } else {
            None
        }
    };
    let reach = if opts.wildcards {
        Reach::Subtree
    } else {
        Reach::Exact
    };
    for_each_name(list, reach, &mut stats, extra, |name, entry| match entry {
        Entry::Name { .. } => emit(name, RpzEntryKind::Name),
        Entry::Exception => emit(name, RpzEntryKind::Exception),
    })?;
    for_each_ip(list, &mut stats, |t| {
        emit(&rpz_ip_owner(&t), RpzEntryKind::Ip)
    })?;
    Ok(stats)
}

/// Writes `list` as a complete response policy zone; see the module
/// documentation for what it looks like. Names too long to fit under the
/// origin, names ending in a reserved RPZ label and, for the `local:`
/// action, names that are not host names ([`SkipReason::NotHostName`])
/// are left out and counted. Invalid options fail with [`io::ErrorKind::InvalidInput`]
/// before anything is written.
pub fn write_rpz<W: Write>(w: W, list: &DnsList, opts: &RpzOptions) -> io::Result<ExportStats> {
    let RpzApex {
        origin,
        mname,
        rname,
        ns,
    } = opts
        .apex()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;

    let mut w = BufWriter::with_capacity(BUFFER_SIZE, w);
    writeln!(
        w,
        "; kanki response policy zone (draft-vixie-dnsop-dns-rpz)"
    )?;
    writeln!(w, "$TTL {}", opts.ttl)?;
    writeln!(w, "$ORIGIN {origin}")?;
    writeln!(
        w,
        "{origin} IN SOA {mname} {rname} {} {} {} {} {}",
        opts.serial, opts.refresh, opts.retry, opts.expire, opts.minimum
    )?;
    writeln!(w, "{origin} IN NS {ns}")?;

    let action = opts.action.rdata_lines();
    let passthru = RpzAction::Passthru.rdata_lines();
    let stats = for_each_rpz_entry(list, opts, |owner, kind| {
        let rdata = match kind {
            RpzEntryKind::Name | RpzEntryKind::Ip => &action,
            RpzEntryKind::Exception => &passthru,
        };
        for line in rdata {
            w.write_all(owner.as_bytes())?;
            w.write_all(line)?;
        }
        if opts.wildcards && kind != RpzEntryKind::Ip {
            for line in rdata {
                w.write_all(b"*.")?;
                w.write_all(owner.as_bytes())?;
                w.write_all(line)?;
            }
        }
        Ok(())
    })?;
    w.flush()?;
    Ok(stats)
}

/// The owner name of an IP trigger, relative to the zone origin, in the
/// canonical form of draft-vixie-dnsop-dns-rpz section 4.2 as BIND writes
/// it: the prefix length, then the address reversed —
/// `32.1.2.0.192.rpz-ip` for `192.0.2.1`, `24.0.2.0.192.rpz-ip` for
/// `192.0.2.0/24`; IPv6 words in hexadecimal without leading zeros, with
/// `zz` for the run of zero words RFC 5952 would write as `::` (the
/// longest run of two or more, the first of equal runs in address order):
/// `128.1.zz.db8.2001.rpz-ip` for `2001:db8::1`.
pub fn rpz_ip_owner(t: &IpTrigger) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(48);
    let _ = write!(s, "{}", t.prefix);
    match t.addr {
        IpAddr::V4(a) => {
            for o in a.octets().iter().rev() {
                let _ = write!(s, ".{o}");
            }
        }
        IpAddr::V6(a) => {
            let w = a.segments();
            let (mut run_start, mut run_len) = (0, 0);
            let mut i = 0;
            while i < 8 {
                if w[i] != 0 {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < 8 && w[i] == 0 {
                    i += 1;
                }
                if i - start >= 2 && i - start > run_len {
                    (run_start, run_len) = (start, i - start);
                }
            }
            for i in (0..8).rev() {
                if run_len > 0 && (run_start..run_start + run_len).contains(&i) {
                    if i == run_start + run_len - 1 {
                        s.push_str(".zz");
                    }
                } else {
                    let _ = write!(s, ".{:x}", w[i]);
                }
            }
        }
    }
    s.push_str(".rpz-ip");
    s
}

/// `name` with a trailing dot.
pub(crate) fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Checks a zone-level name (origin, SOA and NS names, CNAME targets):
/// labels of letters, digits, `-` and `_`, at least one label. Returns it
/// absolute and lowercase.
pub(crate) fn check_domain(name: &str) -> Result<String, String> {
    let n = name.trim();
    let bare = n.strip_suffix('.').unwrap_or(n);
    if bare.is_empty() {
        return Err(format!("{name:?} is empty or the root"));
    }
    if bare.len() > 253 {
        return Err(format!("{name:?} is longer than 253 bytes"));
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} has an empty or over-long label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "{name:?} has a character other than letters, digits, '-' and '_'"
            ));
        }
    }
    Ok(format!("{}.", bare.to_ascii_lowercase()))
}

/// Checks the SOA mailbox: a name, or `local@domain` (a dot in the local
/// part is escaped, as RFC 1035 section 8 asks).
fn check_mailbox(mailbox: &str) -> Result<String, String> {
    let m = mailbox.trim();
    match m.split_once('@') {
        None => check_domain(m),
        Some((local, domain)) => {
            if local.is_empty()
                || !local
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
            {
                return Err(format!("{mailbox:?} has an unusable local part"));
            }
            let domain = check_domain(domain)?;
            Ok(format!("{}.{domain}", local.replace('.', "\\.")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(list: &DnsList, opts: &RpzOptions) -> (String, ExportStats) {
        let mut out = Vec::new();
        let stats = write_rpz(&mut out, list, opts).unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    fn owner(s: &str) -> String {
        rpz_ip_owner(&IpTrigger::parse(s).unwrap())
    }

    #[test]
    fn ip_owner_names() {
        assert_eq!(owner("192.0.2.1"), "32.1.2.0.192.rpz-ip");
        assert_eq!(owner("192.0.2.0/24"), "24.0.2.0.192.rpz-ip");
        assert_eq!(owner("10.0.0.0/8"), "8.0.0.0.10.rpz-ip");
        assert_eq!(owner("2001:db8::1"), "128.1.zz.db8.2001.rpz-ip");
        assert_eq!(owner("2001:db8::/32"), "32.zz.db8.2001.rpz-ip");
        assert_eq!(owner("::1"), "128.1.zz.rpz-ip");
        assert_eq!(owner("::/1"), "1.zz.rpz-ip");
        assert_eq!(owner("8000::/1"), "1.zz.8000.rpz-ip");
        // No run of two zero words: nothing to shorten.
        assert_eq!(
            owner("2001:db8:0:1:2:3:4:5"),
            "128.5.4.3.2.1.0.db8.2001.rpz-ip"
        );
        // Equal runs: RFC 5952 shortens the first in address order, which
        // is the last written.
        assert_eq!(
            owner("2001:db8:0:0:1:0:0:1"),
            "128.1.0.0.1.zz.db8.2001.rpz-ip"
        );
        // The longer run wins wherever it is.
        assert_eq!(owner("2001:0:0:1:0:0:0:1"), "128.1.zz.1.0.0.2001.rpz-ip");
        assert_eq!(owner("::fffe:0:0/95"), "95.0.0.fffe.zz.rpz-ip");
        assert_eq!(
            owner("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"),
            "128.ffff.eeee.dddd.cccc.bbbb.aaaa.db8.2001.rpz-ip"
        );
    }

    #[test]
    fn zone_with_wildcards_exceptions_and_ip_triggers() {
        let list = DnsList::new(
            [
                "bad.example",
                "www.bad.example",
                "x.good.bad.example",
                "evil.test",
            ],
            ["192.0.2.1", "198.51.100.0/24", "2001:db8::/32", "nonsense"],
        )
        .with_exceptions(["good.bad.example"]);
        let (zone, stats) = export(&list, &RpzOptions::default());
        assert_eq!(
            zone,
            "; kanki response policy zone (draft-vixie-dnsop-dns-rpz)\n\
             $TTL 300\n\
             $ORIGIN rpz.kanki.\n\
             rpz.kanki. IN SOA localhost. hostmaster.localhost. 1 300 60 604800 60\n\
             rpz.kanki. IN NS localhost.\n\
             bad.example CNAME .\n\
             *.bad.example CNAME .\n\
             evil.test CNAME .\n\
             *.evil.test CNAME .\n\
             x.good.bad.example CNAME .\n\
             *.x.good.bad.example CNAME .\n\
             good.bad.example CNAME rpz-passthru.\n\
             *.good.bad.example CNAME rpz-passthru.\n\
             32.1.2.0.192.rpz-ip CNAME .\n\
             24.0.100.51.198.rpz-ip CNAME .\n\
             32.zz.db8.2001.rpz-ip CNAME .\n"
        );
        assert_eq!(
            (stats.names, stats.covered, stats.exceptions, stats.ips),
            (3, 1, 1, 3)
        );
        assert_eq!(stats.skipped[&SkipReason::InvalidIp], 1);
    }

    #[test]
    fn zone_without_wildcards_writes_every_name() {
        let list = DnsList::new(["bad.example", "www.bad.example"], Vec::<String>::new())
            .with_exceptions(["good.bad.example"]);
        let opts = RpzOptions {
            origin: "Policy.Example.".into(),
            serial: 2024010101,
            ttl: 60,
            soa_rname: "dns.admin@example.org".into(),
            ns: "ns1.example.org".into(),
            action: "cname:*.garden.example".parse().unwrap(),
            wildcards: false,
            ..RpzOptions::default()
        };
        let (zone, stats) = export(&list, &opts);
        assert_eq!(
            zone,
            "; kanki response policy zone (draft-vixie-dnsop-dns-rpz)\n\
             $TTL 60\n\
             $ORIGIN policy.example.\n\
             policy.example. IN SOA localhost. dns\\.admin.example.org. 2024010101 300 60 604800 60\n\
             policy.example. IN NS ns1.example.org.\n\
             bad.example CNAME *.garden.example.\n\
             www.bad.example CNAME *.garden.example.\n"
        );
        assert_eq!((stats.names, stats.covered, stats.exceptions), (2, 0, 0));
    }

    #[test]
    fn every_action() {
        let list = DnsList::new(["bad.example"], ["192.0.2.1"]);
        let cases = [
            ("nxdomain", " CNAME .\n"),
            ("nodata", " CNAME *.\n"),
            ("passthru", " CNAME rpz-passthru.\n"),
            ("drop", " CNAME rpz-drop.\n"),
            ("cname:warning.kanki", " CNAME warning.kanki.\n"),
            ("CNAME:*.Garden.Example.", " CNAME *.garden.example.\n"),
        ];
        for (spelling, rdata) in cases {
            let action: RpzAction = spelling.parse().unwrap();
            let opts = RpzOptions {
                action,
                wildcards: false,
                ..RpzOptions::default()
            };
            let (zone, _) = export(&list, &opts);
            let body: Vec<&str> = zone.lines().skip(5).collect();
            assert_eq!(
                body,
                [
                    format!("bad.example{}", rdata.trim_end()),
                    format!("32.1.2.0.192.rpz-ip{}", rdata.trim_end())
                ],
                "{spelling}"
            );
        }
        let opts = RpzOptions {
            action: "local:192.0.2.80, 2001:db8::80".parse().unwrap(),
            ..RpzOptions::default()
        };
        let list = DnsList::new(["bad.example", "_srv.bad.example"], Vec::<String>::new())
            .with_exceptions(["_ok.bad.example"]);
        let (zone, stats) = export(&list, &opts);
        assert_eq!(stats.skipped[&SkipReason::NotHostName], 1);
        assert!(zone.ends_with(
            "_ok.bad.example CNAME rpz-passthru.\n*._ok.bad.example CNAME rpz-passthru.\n"
        ));
        let zone = zone.trim_end_matches(
            "_ok.bad.example CNAME rpz-passthru.\n*._ok.bad.example CNAME rpz-passthru.\n",
        );
        assert!(zone.ends_with(
            "bad.example A 192.0.2.80\n\
             bad.example AAAA 2001:db8::80\n\
             *.bad.example A 192.0.2.80\n\
             *.bad.example AAAA 2001:db8::80\n"
        ));
    }

    #[test]
    fn action_spellings() {
        for s in [
            "nxdomain",
            "nodata",
            "passthru",
            "drop",
            "cname:warning.kanki.",
            "cname:*.garden.example.",
            "local:192.0.2.1,2001:db8::1",
        ] {
            let a: RpzAction = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<RpzAction>(&json).unwrap(), a);
        }
        assert_eq!(
            "NXDOMAIN".parse::<RpzAction>().unwrap(),
            RpzAction::Nxdomain
        );
        for bad in [
            "block",
            "cname:",
            "cname:.",
            "cname:*.",
            "cname:bad name.example",
            "cname:a..b",
            "local:",
            "local:not-an-ip",
        ] {
            assert!(bad.parse::<RpzAction>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_options_and_skips_unfit_names() {
        let list = DnsList::new(["bad.example"], Vec::<String>::new());
        for opts in [
            RpzOptions {
                origin: "".into(),
                ..RpzOptions::default()
            },
            RpzOptions {
                soa_mname: "has space.example".into(),
                ..RpzOptions::default()
            },
            RpzOptions {
                action: RpzAction::Local(vec![]),
                ..RpzOptions::default()
            },
            RpzOptions {
                action: RpzAction::Cname(".".into()),
                ..RpzOptions::default()
            },
        ] {
            let e = write_rpz(Vec::new(), &list, &opts).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }

        let long = format!("{}.example", vec!["a".repeat(60); 4].join("."));
        assert!(long.len() <= 253 && long.len() > 253 - "rpz.kanki.".len());
        let list = DnsList::new(
            [
                "32.1.2.0.192.rpz-ip",
                "x.rpz-nsdname",
                long.as_str(),
                "ok.example",
            ],
            Vec::<String>::new(),
        );
        let (zone, stats) = export(&list, &RpzOptions::default());
        assert!(zone.ends_with("\nok.example CNAME .\n*.ok.example CNAME .\n"));
        assert_eq!(stats.skipped[&SkipReason::ReservedRpzLabel], 2);
        assert_eq!(stats.skipped[&SkipReason::TooLongForZone], 1);
    }
}
