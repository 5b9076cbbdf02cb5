//! The DNS-level list, the checks every name and address goes through, and
//! the walk over names that leaves out the ones a listed parent covers.
//! Every DNS-level writer goes through [`for_each_name`] and
//! [`for_each_ip`], so the rules live here once.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::{HashSet, HashSetExt};

/// What the DNS-level formats list.
///
/// * `names`: names already filtered by the policy rule (allowlist,
///   compromised-site marks), **sorted, deduplicated, lowercase, without a
///   trailing dot** ([`DnsList::new`] makes them so). The writers leave out
///   and count any name that breaks the rules, and catch a duplicate only
///   when it follows its twin (or, in the formats that cover subdomains,
///   anywhere).
/// * `ips`: IP triggers, addresses or CIDR blocks (`192.0.2.1`,
///   `198.51.100.0/24`, `2001:db8::/32`), written where a format has IP
///   triggers (`rpz-ip` in RPZ, lines in `plain`). Host bits are cleared
///   and IPv4-mapped IPv6 addresses become IPv4 ([`IpTrigger::parse`]).
/// * `exceptions`: allowlisted names under a listed name (`good.bad.example`
///   allowlisted under a listed `bad.example`). Only the formats whose
///   entries reach subdomains need them: RPZ with wildcards writes them as
///   `rpz-passthru.`, Unbound as `always_transparent` zones, and Squid,
///   which cannot express one, writes the covering name for itself only.
///   An exception also wins over the same name in `names`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsList {
    pub names: Vec<String>,
    pub ips: Vec<String>,
    pub exceptions: Vec<String>,
}

impl DnsList {
    /// A list from names and addresses in any order and case: names are
    /// lowercased and lose a trailing dot, then both are sorted and
    /// deduplicated. Without exceptions; see [`DnsList::with_exceptions`].
    pub fn new<N, I>(
        names: impl IntoIterator<Item = N>,
        ips: impl IntoIterator<Item = I>,
    ) -> DnsList
    where
        N: Into<String>,
        I: Into<String>,
    {
        let mut ips: Vec<String> = ips.into_iter().map(Into::into).collect();
        ips.sort_unstable();
        ips.dedup();
        DnsList {
            names: tidy_names(names),
            ips,
            exceptions: Vec::new(),
        }
    }

    /// Sets the allowlist exceptions (tidied like the names).
    pub fn with_exceptions<N: Into<String>>(
        mut self,
        exceptions: impl IntoIterator<Item = N>,
    ) -> DnsList {
        self.exceptions = tidy_names(exceptions);
        self
    }

    /// Whether the list has neither names nor addresses.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ips.is_empty()
    }
}

fn tidy_names<N: Into<String>>(names: impl IntoIterator<Item = N>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .map(|n| {
            let mut n: String = n.into();
            if n.ends_with('.') {
                n.pop();
            }
            n.make_ascii_lowercase();
            n
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Why a name or address was left out of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Not a lowercase host name: a character outside `a-z 0-9 - _`
    /// (escaping it would write a name no resolver is asked for as a
    /// host), an empty label or one over 63 bytes, a name over 253 bytes,
    /// a numeric last label.
    InvalidName,
    /// A single label (`com`, `localhost`): listing it would block a whole
    /// top-level domain.
    SingleLabel,
    /// The same name or address again.
    Duplicate,
    /// Under the RPZ origin the owner name would be longer than DNS allows
    /// (255 bytes on the wire).
    TooLongForZone,
    /// Ends in a label RPZ reserves for other triggers (`rpz-ip`,
    /// `rpz-nsip`, `rpz-nsdname`, `rpz-client-ip`): written as a QNAME
    /// trigger, it would become an IP or name-server trigger.
    ReservedRpzLabel,
    /// Not an IP address or CIDR block, or a block of prefix length 0.
    InvalidIp,
    /// An IP trigger given to a format that has none (hosts, Squid, Unbound).
    NoIpTriggers,
    /// Not a host name (a `_`, or a label starting or ending with `-`),
    /// where the format needs one: BIND refuses to load a primary zone
    /// with an address record on such an owner (`check-names`), so the RPZ
    /// `local:` action leaves it out rather than lose the whole zone.
    NotHostName,
}

impl SkipReason {
    /// A short, stable label for counting.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::InvalidName => "not a lowercase host name",
            SkipReason::SingleLabel => "single-label name",
            SkipReason::Duplicate => "duplicate",
            SkipReason::TooLongForZone => "too long under the zone origin",
            SkipReason::ReservedRpzLabel => "reserved RPZ label",
            SkipReason::InvalidIp => "invalid IP address or block",
            SkipReason::NoIpTriggers => "IP trigger in a format without IP triggers",
            SkipReason::NotHostName => "not a host name, which an address record needs",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many examples of skipped entries [`ExportStats`] keeps.
pub(crate) const MAX_SKIPPED_EXAMPLES: usize = 10;

/// What a DNS-level writer wrote and left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Names written (once each, however many lines a name takes).
    pub names: u64,
    /// IP triggers written.
    pub ips: u64,
    /// Allowlist exceptions written (RPZ passthru, Unbound transparent).
    pub exceptions: u64,
    /// Names left out because a listed parent's entry already covers them.
    pub covered: u64,
    /// Names left out because they are also exceptions (the allowlist wins).
    pub excepted: u64,
    /// Names and addresses left out, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first few of those, with their reasons.
    pub skipped_examples: Vec<(String, SkipReason)>,
}

impl ExportStats {
    /// All names and addresses skipped, whatever the reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub(crate) fn skip(&mut self, what: &str, reason: SkipReason) {
        *self.skipped.entry(reason).or_default() += 1;
        if self.skipped_examples.len() < MAX_SKIPPED_EXAMPLES {
            self.skipped_examples.push((what.to_string(), reason));
        }
    }
}

/// Checks that `name` is a lowercase host name of at least two labels.
pub(crate) fn check_name(name: &str) -> Option<SkipReason> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 253 {
        return Some(SkipReason::InvalidName);
    }
    let mut labels = 1;
    let mut label_len = 0;
    let mut numeric = true;
    for &c in b {
        match c {
            b'.' => {
                if label_len == 0 {
                    return Some(SkipReason::InvalidName);
                }
                labels += 1;
                label_len = 0;
                numeric = true;
            }
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                label_len += 1;
                numeric &= c.is_ascii_digit();
                if label_len > 63 {
                    return Some(SkipReason::InvalidName);
                }
            }
            _ => return Some(SkipReason::InvalidName),
        }
    }
    if label_len == 0 || numeric {
        return Some(SkipReason::InvalidName);
    }
    if labels < 2 {
        return Some(SkipReason::SingleLabel);
    }
    None
}

/// Whether a name that passed [`check_name`] is also a host name in the
/// strict sense of RFC 952/1123 as BIND's `check-names` reads it: no `_`,
/// no label starting or ending with `-`.
pub(crate) fn is_host_name(name: &str) -> bool {
    !name.contains('_')
        && name
            .split('.')
            .all(|l| !l.starts_with('-') && !l.ends_with('-'))
}

/// The proper ancestors of a name that have two labels or more (the only
/// ones that can be listed), nearest first: `a.b.c.example` gives
/// `b.c.example`, then `c.example`.
pub(crate) fn parents(name: &str) -> impl Iterator<Item = &str> {
    let mut rest = name;
    std::iter::from_fn(move || {
        let dot = rest.find('.')?;
        let parent = &rest[dot + 1..];
        if !parent.contains('.') {
            return None;
        }
        rest = parent;
        Some(parent)
    })
}

/// How far a format's entry for a name reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The name only (hosts, plain, RPZ without wildcards).
    Exact,
    /// The name and every name below it; an exception entry nested below
    /// carves its subtree back out (RPZ with wildcards, Unbound).
    Subtree,
    /// The name and every name below it, with no way to carve out an
    /// exception: a name with an exception below it is written for itself
    /// only (Squid).
    SubtreeNoExceptions,
}

/// One entry [`for_each_name`] asks a writer to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A listed name. `subtree` is false when the entry must not reach
    /// below the name (always false for [`Reach::Exact`]).
    Name { subtree: bool },
    /// An allowlisted name under a listed one ([`Reach::Subtree`] only).
    Exception,
}

/// Calls `emit` for every name of `list` the format should write, in list
/// order, then for every exception it needs; counts the rest in `stats`.
/// `extra` adds a format's own checks to [`check_name`]; its second
/// argument says whether the name is an exception.
pub(crate) fn for_each_name<'a>(
    list: &'a DnsList,
    reach: Reach,
    stats: &mut ExportStats,
    extra: impl Fn(&str, bool) -> Option<SkipReason>,
    mut emit: impl FnMut(&'a str, Entry) -> io::Result<()>,
) -> io::Result<()> {
    let check_exception = |name: &str| check_name(name).or_else(|| extra(name, true));
    let check = |name: &str| check_name(name).or_else(|| extra(name, false));

    let mut exceptions: HashSet<&str> = HashSet::with_capacity(list.exceptions.len());
    for e in &list.exceptions {
        match check_exception(e) {
            Some(reason) => stats.skip(e, reason),
            None => {
                exceptions.insert(e.as_str());
            }
        }
    }
    let is_exception = |name: &str| !exceptions.is_empty() && exceptions.contains(name);

    if reach == Reach::Exact {
        let mut prev: Option<&str> = None;
        for name in &list.names {
            if prev == Some(name.as_str()) {
                stats.skip(name, SkipReason::Duplicate);
                continue;
            }
            prev = Some(name);
            if let Some(reason) = check(name) {
                stats.skip(name, reason);
            } else if is_exception(name) {
                stats.excepted += 1;
            } else {
                emit(name, Entry::Name { subtree: false })?;
                stats.names += 1;
            }
        }
        return Ok(());
    }

    // The formats that reach subdomains need every listed name first.
    let mut valid: Vec<&str> = Vec::with_capacity(list.names.len());
    let mut listed: HashSet<&str> = HashSet::with_capacity(list.names.len());
    for name in &list.names {
        if let Some(reason) = check(name) {
            stats.skip(name, reason);
        } else if is_exception(name) {
            stats.excepted += 1;
        } else if !listed.insert(name.as_str()) {
            stats.skip(name, SkipReason::Duplicate);
        } else {
            valid.push(name);
        }
    }
    // Names with an exception somewhere below them.
    let mut fenced: HashSet<&str> = HashSet::new();
    if reach == Reach::SubtreeNoExceptions {
        for e in &exceptions {
            fenced.extend(parents(e));
        }
    }
    // Whether the nearest listed-or-excepted ancestor is a listed name whose
    // entry reaches `name`.
    let covered = |name: &str| {
        for parent in parents(name) {
            if is_exception(parent) {
                return false;
            }
            if listed.contains(parent) {
                if reach == Reach::SubtreeNoExceptions && fenced.contains(parent) {
                    continue;
                }
                return true;
            }
        }
        false
    };

    for name in valid {
        if covered(name) {
            stats.covered += 1;
            continue;
        }
        let subtree = !(reach == Reach::SubtreeNoExceptions && fenced.contains(name));
        emit(name, Entry::Name { subtree })?;
        stats.names += 1;
    }
    if reach == Reach::Subtree {
        for e in &list.exceptions {
            if exceptions.contains(e.as_str()) && covered(e) {
                emit(e, Entry::Exception)?;
                stats.exceptions += 1;
            }
        }
    }
    Ok(())
}

/// An IP trigger in canonical form: host bits cleared, IPv4-mapped IPv6
/// written as IPv4, prefix length 1 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpTrigger {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpTrigger {
    /// Parses `192.0.2.1`, `198.51.100.0/24`, `2001:db8::/32`, `[::1]`.
    /// `None` for anything else, for an over-long prefix, and for a prefix
    /// length of 0 (which would match every address).
    pub fn parse(s: &str) -> Option<IpTrigger> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let p: u8 = p.parse().ok()?;
                (a, Some(p))
            }
            None => (s, None),
        };
        let addr: IpAddr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr)
            .parse()
            .ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (addr, prefix),
            },
            v4 => (v4, prefix),
        };
        if prefix == 0 {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX << (32 - u32::from(prefix));
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX << (128 - u32::from(prefix));
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Some(IpTrigger { addr, prefix })
    }

    /// Whether the trigger is a single address.
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

/// `192.0.2.1` for a single address, `198.51.100.0/24` for a block.
impl fmt::Display for IpTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// Calls `emit` for every valid IP trigger of `list`, in list order,
/// leaving out and counting invalid ones and repeats of the one before.
pub(crate) fn for_each_ip(
    list: &DnsList,
    stats: &mut ExportStats,
    mut emit: impl FnMut(IpTrigger) -> io::Result<()>,
) -> io::Result<()> {
    let mut prev = None;
    for raw in &list.ips {
        let Some(t) = IpTrigger::parse(raw) else {
            stats.skip(raw, SkipReason::InvalidIp);
            continue;
        };
        if prev == Some(t) {
            stats.skip(raw, SkipReason::Duplicate);
            continue;
        }
        prev = Some(t);
        emit(t)?;
        stats.ips += 1;
    }
    Ok(())
}

/// Counts the IP triggers of `list` as skipped, for a format without any.
pub(crate) fn skip_ips(list: &DnsList, stats: &mut ExportStats) {
    for raw in &list.ips {
        stats.skip(raw, SkipReason::NoIpTriggers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("bad.example"), None);
        assert_eq!(check_name("_dmarc.x-y.example"), None);
        assert_eq!(check_name("xn--r8jz45g.jp"), None);
        assert_eq!(check_name("example"), Some(SkipReason::SingleLabel));
        for bad in [
            "",
            "Bad.example",
            "bad.example.",
            ".bad.example",
            "a..example",
            "*.bad.example",
            "bad example.com",
            "b\"ad.example",
            "bad;x.example",
            "1.2.3.4",
            "bäd.example",
        ] {
            assert_eq!(check_name(bad), Some(SkipReason::InvalidName), "{bad:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert_eq!(check_name(&long_label), Some(SkipReason::InvalidName));
        let ok_label = format!("{}.example", "a".repeat(63));
        assert_eq!(check_name(&ok_label), None);
        let long_name = format!("{}example", "abcdefghi.".repeat(25));
        assert_eq!(long_name.len(), 257);
        assert_eq!(check_name(&long_name), Some(SkipReason::InvalidName));
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("a-b.example"));
        assert!(is_host_name("0a.example"));
        assert!(!is_host_name("_dmarc.example"));
        assert!(!is_host_name("-a.example"));
        assert!(!is_host_name("a-.example"));
    }

    #[test]
    fn parents_nearest_first() {
        let p: Vec<_> = parents("a.b.c.example").collect();
        assert_eq!(p, ["b.c.example", "c.example"]);
        assert_eq!(parents("b.example").count(), 0);
        assert_eq!(parents("example").count(), 0);
    }

    #[test]
    fn ip_triggers_are_canonical() {
        let t = |s: &str| IpTrigger::parse(s).map(|t| t.to_string());
        assert_eq!(t("192.0.2.1").as_deref(), Some("192.0.2.1"));
        assert_eq!(t("192.0.2.1/32").as_deref(), Some("192.0.2.1"));
        assert_eq!(t("192.0.2.77/24").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(t("2001:db8::1/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(t("[2001:db8::1]").as_deref(), Some("2001:db8::1"));
        assert_eq!(t("::ffff:192.0.2.9").as_deref(), Some("192.0.2.9"));
        assert_eq!(t("::ffff:192.0.2.9/120").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(t("0.0.0.0/0"), None);
        assert_eq!(t("::/0"), None);
        assert_eq!(t("::ffff:0.0.0.0/96"), None);
        assert_eq!(t("192.0.2.1/33"), None);
        assert_eq!(t("192.0.2.1/x"), None);
        assert_eq!(t("bad.example"), None);
    }

    fn walk(list: &DnsList, reach: Reach) -> (Vec<String>, ExportStats) {
        let mut out = Vec::new();
        let mut stats = ExportStats::default();
        for_each_name(
            list,
            reach,
            &mut stats,
            |_, _| None,
            |name, entry| {
                out.push(match entry {
                    Entry::Name { subtree: true } => format!(".{name}"),
                    Entry::Name { subtree: false } => name.to_string(),
                    Entry::Exception => format!("!{name}"),
                });
                Ok(())
            },
        )
        .unwrap();
        (out, stats)
    }

    #[test]
    fn walk_leaves_out_covered_names_and_places_exceptions() {
        let list = DnsList::new(
            [
                "bad.example",
                "a.bad.example",
                "x.good.bad.example",
                "evil.test",
                "Evil.test.",
                "sub.other.test",
                "com",
                "in valid.test",
            ],
            Vec::<String>::new(),
        )
        .with_exceptions(["good.bad.example", "fine.unlisted.test", "evil.test"]);

        let (exact, stats) = walk(&list, Reach::Exact);
        assert_eq!(
            exact,
            [
                "a.bad.example",
                "bad.example",
                "sub.other.test",
                "x.good.bad.example"
            ]
        );
        assert_eq!(stats.excepted, 1);
        assert_eq!(stats.skipped[&SkipReason::SingleLabel], 1);
        assert_eq!(stats.skipped[&SkipReason::InvalidName], 1);

        let (subtree, stats) = walk(&list, Reach::Subtree);
        assert_eq!(
            subtree,
            [
                ".bad.example",
                ".sub.other.test",
                ".x.good.bad.example",
                "!good.bad.example"
            ]
        );
        assert_eq!((stats.names, stats.covered, stats.exceptions), (3, 1, 1));

        let (squid, stats) = walk(&list, Reach::SubtreeNoExceptions);
        assert_eq!(
            squid,
            [
                ".a.bad.example",
                "bad.example",
                ".sub.other.test",
                ".x.good.bad.example"
            ]
        );
        assert_eq!((stats.names, stats.covered, stats.exceptions), (4, 0, 0));
    }

    #[test]
    fn walk_counts_duplicates() {
        let list = DnsList {
            names: vec!["b.example".into(), "a.example".into(), "b.example".into()],
            ..DnsList::default()
        };
        let (_, stats) = walk(&list, Reach::Subtree);
        assert_eq!(stats.skipped[&SkipReason::Duplicate], 1);
        let sorted = DnsList {
            names: vec!["a.example".into(), "a.example".into()],
            ..DnsList::default()
        };
        let (out, stats) = walk(&sorted, Reach::Exact);
        assert_eq!(out, ["a.example"]);
        assert_eq!(stats.skipped[&SkipReason::Duplicate], 1);
        assert_eq!(
            stats.skipped_examples,
            [("a.example".to_string(), SkipReason::Duplicate)]
        );
    }
}
