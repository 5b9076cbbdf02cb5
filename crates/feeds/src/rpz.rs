//! RPZ zone files (draft-vixie-dnsop-dns-rpz): QNAME and IP triggers with
//! their actions.
//!
//! The zone-file reader is written by hand on purpose: a general zone
//! parser (hickory's, for one) rejects the whole file on its first bad
//! line, while a feed reader must count that line and go on. It covers what
//! RPZ files use: `$ORIGIN`, `$TTL`, relative and absolute owner names,
//! `@`, an omitted owner (a line starting with a blank), TTL and class in
//! either order, records spread over lines in parentheses (the SOA), quoted
//! strings, and `;` comments.
//!
//! What each record becomes:
//! * a QNAME trigger: a domain record tagged with its action (`rpz:nxdomain`
//!   for `CNAME .`, `rpz:nodata` for `CNAME *.`, `rpz:drop`, `rpz:tcp-only`,
//!   `rpz:cname` for a redirect, `rpz:local-data` for A/AAAA/TXT/... data);
//!   `*.name` becomes `name` tagged `rpz:wildcard`;
//! * an `rpz-ip` trigger: an IP record (`32.4.3.2.1.rpz-ip` is 1.2.3.4,
//!   `zz` stands for the `::` of an IPv6 address);
//! * `rpz-passthru.` triggers (allow rules) and `rpz-nsdname`, `rpz-nsip`,
//!   `rpz-client-ip` triggers: skipped, with a reason naming them;
//! * records at the apex (SOA, NS) and DNSSEC records: nothing, not counted.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

use kanki_indicators::Kind;

use crate::Row;
use crate::common::{LineFormat, record_or_skip, skip};

/// Lines a parenthesized record may span before it is given up.
const MAX_RECORD_LINES: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Nxdomain,
    Nodata,
    Passthru,
    Drop,
    TcpOnly,
    Cname,
    LocalData,
}

impl Action {
    fn tag(self) -> &'static str {
        match self {
            Action::Nxdomain => "rpz:nxdomain",
            Action::Nodata => "rpz:nodata",
            Action::Passthru => "rpz:passthru",
            Action::Drop => "rpz:drop",
            Action::TcpOnly => "rpz:tcp-only",
            Action::Cname => "rpz:cname",
            Action::LocalData => "rpz:local-data",
        }
    }
}

/// A record being read, possibly over several lines.
struct Pending {
    line: u64,
    owner_omitted: bool,
    tokens: Vec<String>,
    depth: u32,
    lines: usize,
}

#[derive(Default)]
pub(crate) struct Rpz {
    /// Current `$ORIGIN`, absolute, lowercase, with its trailing dot.
    origin: Option<String>,
    first_origin: Option<String>,
    /// Owner of the first SOA: the zone apex.
    soa_owner: Option<String>,
    last_owner: Option<String>,
    pending: Option<Pending>,
    /// The last trigger and action, so that several records for one trigger
    /// (an A and an AAAA of local data) make one row.
    last_trigger: Option<(String, Action)>,
}

impl LineFormat for Rpz {
    fn line(&mut self, no: u64, text: &str, out: &mut VecDeque<Row>) {
        let mut p = self.pending.take().unwrap_or_else(|| Pending {
            line: no,
            owner_omitted: text.starts_with([' ', '\t']),
            tokens: Vec::new(),
            depth: 0,
            lines: 0,
        });
        p.lines += 1;
        if let Err(reason) = tokenize(text, &mut p.tokens, &mut p.depth) {
            out.push_back(skip(p.line, reason));
            return;
        }
        if p.depth > 0 {
            if p.lines >= MAX_RECORD_LINES {
                out.push_back(skip(p.line, "unbalanced parentheses"));
            } else {
                self.pending = Some(p);
            }
            return;
        }
        if let Some(row) = self.record(&p) {
            out.push_back(row);
        }
    }

    fn unreadable(&mut self, no: u64, reason: &'static str, out: &mut VecDeque<Row>) {
        // Inside parentheses, the bad line breaks the record it belongs to.
        let line = self.pending.take().map_or(no, |p| p.line);
        out.push_back(skip(line, reason));
    }

    fn finish(&mut self, out: &mut VecDeque<Row>) {
        if let Some(p) = self.pending.take() {
            out.push_back(skip(p.line, "unbalanced parentheses"));
        }
    }
}

/// Splits a line into tokens, following parentheses and dropping the comment.
fn tokenize(text: &str, tokens: &mut Vec<String>, depth: &mut u32) -> Result<(), &'static str> {
    let mut cur = String::new();
    let mut chars = text.chars();
    let flush = |cur: &mut String, tokens: &mut Vec<String>| {
        if !cur.is_empty() {
            tokens.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ';' => break,
            '(' => {
                flush(&mut cur, tokens);
                *depth += 1;
            }
            ')' => {
                flush(&mut cur, tokens);
                *depth = depth.checked_sub(1).ok_or("unbalanced parentheses")?;
            }
            '"' => {
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string"),
                        Some('"') => break,
                        Some('\\') => {
                            cur.push('\\');
                            cur.extend(chars.next());
                        }
                        Some(c) => cur.push(c),
                    }
                }
                // An empty string is still a token.
                tokens.push(std::mem::take(&mut cur));
            }
            '\\' => {
                cur.push('\\');
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => flush(&mut cur, tokens),
            c => cur.push(c),
        }
    }
    flush(&mut cur, tokens);
    Ok(())
}

fn is_ttl(t: &str) -> bool {
    t.starts_with(|c: char| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || "smhdwSMHDW".contains(c))
}

fn is_class(t: &str) -> bool {
    ["IN", "CH", "HS", "CS"]
        .iter()
        .any(|c| t.eq_ignore_ascii_case(c))
}

impl Rpz {
    /// A name made absolute: lowercase, with its trailing dot.
    fn absolute(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        if name == "@" {
            return self.origin.clone();
        }
        if name.ends_with('.') && !name.ends_with("\\.") {
            return Some(name);
        }
        Some(match self.origin.as_deref() {
            Some(".") | None => format!("{name}."),
            Some(origin) => format!("{name}.{origin}"),
        })
    }

    fn apex(&self) -> Option<&str> {
        self.soa_owner.as_deref().or(self.first_origin.as_deref())
    }

    fn directive(&mut self, p: &Pending) -> Option<Row> {
        let t = &p.tokens;
        match t[0].to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let Some(name) = t.get(1) else {
                    return Some(skip(p.line, "malformed $ORIGIN"));
                };
                let origin = self.absolute(name)?;
                self.first_origin.get_or_insert_with(|| origin.clone());
                self.origin = Some(origin);
                None
            }
            "$TTL" => match t.get(1) {
                Some(ttl) if is_ttl(ttl) => None,
                _ => Some(skip(p.line, "malformed $TTL")),
            },
            "$INCLUDE" => Some(skip(p.line, "$INCLUDE not followed")),
            "$GENERATE" => Some(skip(p.line, "$GENERATE not supported")),
            _ => Some(skip(p.line, "unknown directive")),
        }
    }

    fn record(&mut self, p: &Pending) -> Option<Row> {
        if p.tokens.is_empty() {
            return None;
        }
        if !p.owner_omitted && p.tokens[0].starts_with('$') {
            return self.directive(p);
        }
        let (owner, rest) = if p.owner_omitted {
            match &self.last_owner {
                Some(o) => (o.clone(), &p.tokens[..]),
                None => return Some(skip(p.line, "record without owner name")),
            }
        } else {
            match self.absolute(&p.tokens[0]) {
                Some(o) => (o, &p.tokens[1..]),
                None => return Some(skip(p.line, "@ without $ORIGIN")),
            }
        };
        self.last_owner = Some(owner.clone());

        // [ttl] [class] type rdata..., ttl and class in either order.
        let mut i = 0;
        while i < rest.len().min(2) && (is_ttl(&rest[i]) || is_class(&rest[i])) {
            i += 1;
        }
        let Some(rtype) = rest.get(i) else {
            return Some(skip(p.line, "missing record type"));
        };
        let rtype = rtype.to_ascii_uppercase();
        if !rtype.starts_with(|c: char| c.is_ascii_alphabetic())
            || !rtype.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Some(skip(p.line, "malformed zone record"));
        }
        let rdata = &rest[i + 1..];

        if rtype == "SOA" && self.soa_owner.is_none() {
            self.soa_owner = Some(owner.clone());
        }
        // The trigger: the owner relative to the apex.
        let rel = match self.apex() {
            Some(apex) if owner == apex => return None,
            Some(".") | None => owner.trim_end_matches('.'),
            Some(apex) => match owner.strip_suffix(apex).and_then(|r| r.strip_suffix('.')) {
                Some(r) if !r.is_empty() => r,
                _ => return Some(skip(p.line, "owner name outside the zone")),
            },
        }
        .to_string();

        let action = match rtype.as_str() {
            "RRSIG" | "NSEC" | "NSEC3" | "NSEC3PARAM" | "DNSKEY" | "DS" | "CDS" | "CDNSKEY"
            | "ZONEMD" => return None,
            "SOA" | "NS" => return Some(skip(p.line, "SOA or NS record below the zone apex")),
            "CNAME" => {
                let Some(target) = rdata.first() else {
                    return Some(skip(p.line, "malformed zone record"));
                };
                let t = target.to_ascii_lowercase();
                match t.trim_end_matches('.') {
                    _ if t == "." => Action::Nxdomain,
                    _ if t == "*." => Action::Nodata,
                    "rpz-passthru" => Action::Passthru,
                    "rpz-drop" => Action::Drop,
                    "rpz-tcp-only" => Action::TcpOnly,
                    // The older spelling of passthru: a CNAME to the trigger itself.
                    _ if self.absolute(&t).as_deref() == Some(owner.as_str()) => Action::Passthru,
                    _ => Action::Cname,
                }
            }
            _ => Action::LocalData,
        };
        if self.last_trigger.as_ref() == Some(&(rel.clone(), action)) {
            return None;
        }
        self.last_trigger = Some((rel.clone(), action));

        let last_label = rel.rsplit('.').next().unwrap_or_default();
        match last_label {
            "rpz-nsdname" | "rpz-nsip" | "rpz-client-ip" => {
                return Some(skip(p.line, format!("{last_label} trigger")));
            }
            _ if action == Action::Passthru => return Some(skip(p.line, "rpz passthru trigger")),
            _ => {}
        }
        let (kind, value, wildcard) = if last_label == "rpz-ip" {
            let Some(ip) = rel.strip_suffix("rpz-ip").and_then(decode_rpz_ip) else {
                return Some(skip(p.line, "invalid rpz-ip trigger"));
            };
            (Kind::Ip, ip, false)
        } else if rel == "*" {
            return Some(skip(p.line, "wildcard trigger for the whole zone"));
        } else if let Some(name) = rel.strip_prefix("*.") {
            (Kind::Domain, name.to_string(), true)
        } else {
            (Kind::Domain, rel, false)
        };
        Some(match record_or_skip(p.line, Some(kind), &value) {
            Ok(mut rec) => {
                if wildcard {
                    rec.tags.push("rpz:wildcard".into());
                }
                rec.tags.push(action.tag().into());
                Row::Record(rec)
            }
            Err(s) => Row::Skip(s),
        })
    }
}

/// Decodes the labels of an `rpz-ip` trigger before `rpz-ip` (`32.4.3.2.1.`
/// is 1.2.3.4/32; `128.zz.1.db8.2001.` is 2001:db8:1::/128) into `addr/len`.
fn decode_rpz_ip(labels: &str) -> Option<String> {
    let labels = labels.strip_suffix('.')?;
    let mut parts = labels.split('.');
    let len_label = parts.next()?;
    if len_label.is_empty() || len_label.len() > 3 || !len_label.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let len: u8 = len_label.parse().ok()?;
    let mut addr: Vec<&str> = parts.collect();
    addr.reverse();
    let decimal = |p: &&str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    if addr.len() == 4 && addr.iter().all(decimal) {
        let v4: Ipv4Addr = addr.join(".").parse().ok()?;
        return (1..=32).contains(&len).then(|| format!("{v4}/{len}"));
    }
    let hex = |p: &&str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_hexdigit());
    let text = match addr.iter().position(|p| *p == "zz") {
        Some(z) => {
            let (head, tail) = (&addr[..z], &addr[z + 1..]);
            if head.len() + tail.len() > 7 || !head.iter().chain(tail).all(hex) {
                return None;
            }
            format!("{}::{}", head.join(":"), tail.join(":"))
        }
        None if addr.len() == 8 && addr.iter().all(hex) => addr.join(":"),
        None => return None,
    };
    let v6: Ipv6Addr = text.parse().ok()?;
    (1..=128).contains(&len).then(|| format!("{v6}/{len}"))
}

#[cfg(test)]
mod tests {
    use kanki_indicators::Kind;

    use super::decode_rpz_ip;
    use crate::tests::{example, records, skips};
    use crate::{Format, Row, parse_bytes};

    /// (line, value, tags) of each record.
    type Triggers = Vec<(u64, String, Vec<String>)>;

    fn triggers(zone: &str) -> (Triggers, Vec<(u64, String)>) {
        let rows = parse_bytes(Format::Rpz, zone.as_bytes()).unwrap();
        let recs = records(&rows)
            .iter()
            .map(|r| (r.line, r.indicator.value.clone(), r.tags.clone()))
            .collect();
        (recs, skips(&rows))
    }

    #[test]
    fn ip_triggers() {
        assert_eq!(decode_rpz_ip("32.4.3.2.1.").unwrap(), "1.2.3.4/32");
        assert_eq!(decode_rpz_ip("24.0.2.0.192.").unwrap(), "192.0.2.0/24");
        assert_eq!(
            decode_rpz_ip("128.zz.1.db8.2001.").unwrap(),
            "2001:db8:1::/128"
        );
        assert_eq!(decode_rpz_ip("48.zz.db8.2001.").unwrap(), "2001:db8::/48");
        assert_eq!(
            decode_rpz_ip("128.1.0.0.0.0.0.db8.2001.").unwrap(),
            "2001:db8::1/128"
        );
        assert_eq!(decode_rpz_ip("64.zz.").unwrap(), "::/64");
        for bad in [
            "33.4.3.2.1.",
            "0.4.3.2.1.",
            "32.4.3.2.",
            "129.zz.1.",
            "32.zz.zz.1.",
            "x.1.2.3.4.",
            ".",
        ] {
            assert_eq!(decode_rpz_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn example_zone() {
        let rows = parse_bytes(Format::Rpz, &example("rpz.zone")).unwrap();
        let recs = records(&rows);
        let find = |v: &str| {
            recs.iter()
                .find(|r| r.indicator.value == v)
                .unwrap_or_else(|| panic!("{v} missing"))
        };
        assert_eq!(find("malware-drop.example").tags, ["rpz:nxdomain"]);
        assert_eq!(
            find("phish-login.test").tags,
            ["rpz:wildcard", "rpz:nodata"]
        );
        assert_eq!(find("c2.botnet.invalid").tags, ["rpz:drop"]);
        assert_eq!(find("redirect-me.example").tags, ["rpz:cname"]);
        assert_eq!(find("local-data.example").tags, ["rpz:local-data"]);
        assert_eq!(find("slow.example").tags, ["rpz:tcp-only"]);
        let ip = find("192.0.2.0/24");
        assert_eq!(ip.indicator.kind, Kind::Ip);
        assert_eq!(find("198.51.100.7").tags, ["rpz:nxdomain"]);
        assert_eq!(find("2001:db8:1::/48").indicator.kind, Kind::Ip);
        // A and AAAA local data for one name make one row.
        assert_eq!(
            recs.iter()
                .filter(|r| r.indicator.value == "local-data.example")
                .count(),
            1
        );
        let s = skips(&rows);
        for reason in [
            "rpz passthru trigger",
            "rpz-nsdname trigger",
            "rpz-nsip trigger",
            "rpz-client-ip trigger",
        ] {
            assert!(s.iter().any(|(_, r)| r == reason), "{reason}: {s:?}");
        }
        // SOA and NS at the apex are neither records nor skips.
        assert!(s.iter().all(|(_, r)| !r.contains("SOA")), "{s:?}");
    }

    #[test]
    fn names_origins_and_owners() {
        let zone = "$TTL 300\n\
            $ORIGIN rpz.example.test.\n\
            @ IN SOA ns.example.test. admin.example.test. (\n  1 ; serial\n  3600 600 86400 60 )\n\
            @ NS ns.example.test.\n\
            rel.example CNAME .\n\
            abs.example.rpz.example.test. 60 IN CNAME .\n\
            \tIN A 192.0.2.1\n\
            outside.example. CNAME .\n\
            $ORIGIN sub.example.rpz.example.test.\n\
            www CNAME .\n\
            bad CNAME\n\
            weird.example IN 300\n";
        let (recs, skips) = triggers(zone);
        let names: Vec<(u64, &str)> = recs.iter().map(|r| (r.0, r.1.as_str())).collect();
        assert_eq!(
            names,
            [
                (7, "rel.example"),
                (8, "abs.example"),
                (9, "abs.example"),
                (12, "www.sub.example")
            ]
        );
        assert_eq!(recs[2].2, ["rpz:local-data"]);
        assert_eq!(
            skips,
            [
                (10, "owner name outside the zone".to_string()),
                (13, "malformed zone record".to_string()),
                (14, "missing record type".to_string()),
            ]
        );
    }

    #[test]
    fn broken_lines_do_not_stop_the_zone() {
        let zone = "$ORIGIN rpz.test.\nok1.example CNAME .\nbad\"quote CNAME .\n) CNAME .\n$INCLUDE other.zone\nok2.example CNAME .\nopen.example TXT ( \"never closed\"\n";
        let (recs, skips) = triggers(zone);
        assert_eq!(recs.len(), 2);
        assert_eq!(
            skips,
            [
                (3, "unterminated quoted string".to_string()),
                (4, "unbalanced parentheses".to_string()),
                (5, "$INCLUDE not followed".to_string()),
                (7, "unbalanced parentheses".to_string()),
            ]
        );
    }

    #[test]
    fn a_bad_line_inside_parentheses_breaks_its_record() {
        let zone = b"$ORIGIN rpz.test.\na.example TXT ( \"x\"\n\xff\n)\nb.example CNAME .\n";
        let rows = parse_bytes(Format::Rpz, zone).unwrap();
        assert_eq!(
            skips(&rows),
            [
                (2, "not valid UTF-8".to_string()),
                (4, "unbalanced parentheses".to_string())
            ]
        );
        assert_eq!(records(&rows)[0].line, 5);
    }

    #[test]
    fn no_origin_uses_absolute_names() {
        let (recs, _) = triggers("evil.example. CNAME .\n");
        assert_eq!(recs[0].1, "evil.example");
        let rows = parse_bytes(Format::Rpz, b"").unwrap();
        assert!(rows.is_empty());
        assert!(!matches!(rows.first(), Some(Row::Skip(_))));
    }
}
