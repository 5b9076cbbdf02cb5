//! The allowlist: names that are never listed, whatever a source says.
//!
//! Entries are exact names (`www.example.com` only), suffixes
//! (`example.com` and every name under it) or the registered domains of a
//! top-sites file (each taken as an exact name plus its `www.` name, so a
//! popular site is never blocked by accident while its user-content
//! subdomains can still be listed). Exact entries may also be IP addresses.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::normalize::{normalize_domain, normalize_ip};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllowKind {
    /// Only this name (or address).
    Exact,
    /// This name and every name below it.
    Suffix,
}

impl AllowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowKind::Exact => "exact",
            AllowKind::Suffix => "suffix",
        }
    }
}

impl std::str::FromStr for AllowKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(AllowKind::Exact),
            "suffix" => Ok(AllowKind::Suffix),
            other => Err(format!("unknown allowlist kind {other:?} (exact, suffix)")),
        }
    }
}

/// One allowlist entry with the reason an operator gave for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowEntry {
    pub kind: AllowKind,
    /// A normalized DNS name, or an IP address for exact entries.
    pub name: String,
    pub reason: String,
    /// Where the entry came from: `operator`, `config`, `top-sites`.
    pub origin: String,
}

impl AllowEntry {
    /// Builds an entry, normalizing the name.
    pub fn new(
        kind: AllowKind,
        name: &str,
        reason: impl Into<String>,
        origin: impl Into<String>,
    ) -> Result<Self, crate::NormalizeError> {
        let name = match normalize_ip(name) {
            Ok(ip) if kind == AllowKind::Exact => ip,
            _ => normalize_domain(name)?,
        };
        Ok(AllowEntry {
            kind,
            name,
            reason: reason.into(),
            origin: origin.into(),
        })
    }
}

/// Why a value is allowlisted, in words shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowMatch<'a> {
    pub entry: &'a AllowEntry,
}

impl fmt::Display for AllowMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.entry;
        write!(
            f,
            "allowlisted by {} entry {} ({}): {}",
            e.kind.as_str(),
            e.name,
            e.origin,
            e.reason
        )
    }
}

/// A set of allowlist entries, indexed for matching.
#[derive(Debug, Default, Clone)]
pub struct Allowlist {
    entries: Vec<AllowEntry>,
    exact: HashMap<String, usize>,
    suffix: HashMap<String, usize>,
}

impl Allowlist {
    pub fn new(entries: impl IntoIterator<Item = AllowEntry>) -> Self {
        let mut list = Allowlist::default();
        for e in entries {
            list.insert(e);
        }
        list
    }

    pub fn insert(&mut self, entry: AllowEntry) {
        let index = self.entries.len();
        match entry.kind {
            AllowKind::Exact => self.exact.entry(entry.name.clone()).or_insert(index),
            AllowKind::Suffix => self.suffix.entry(entry.name.clone()).or_insert(index),
        };
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry that covers a normalized host name or address, if any.
    /// An exact entry for the name itself wins over a suffix entry.
    pub fn check(&self, host: &str) -> Option<AllowMatch<'_>> {
        if let Some(&i) = self.exact.get(host) {
            return Some(AllowMatch {
                entry: &self.entries[i],
            });
        }
        let mut name = host;
        loop {
            if let Some(&i) = self.suffix.get(name) {
                return Some(AllowMatch {
                    entry: &self.entries[i],
                });
            }
            match name.split_once('.') {
                Some((_, parent)) => name = parent,
                None => return None,
            }
        }
    }

    /// Reads a top-sites file: Tranco's `rank,domain` CSV or one domain a
    /// line; `#` starts a comment. Each domain becomes an exact entry for
    /// itself and its `www.` name. Returns the entries and the number of
    /// lines that were not a valid domain.
    pub fn parse_top_sites(text: &str, origin: &str) -> (Vec<AllowEntry>, usize) {
        let mut entries = Vec::new();
        let mut bad = 0;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (rank, domain) = match line.split_once(',') {
                Some((r, d)) => (Some(r.trim()), d.trim()),
                None => (None, line),
            };
            let reason = match rank {
                Some(r) => format!("top site, rank {r}"),
                None => "top site".to_string(),
            };
            match normalize_domain(domain) {
                Ok(d) => {
                    let www = if d.starts_with("www.") {
                        None
                    } else {
                        Some(format!("www.{d}"))
                    };
                    for name in std::iter::once(d).chain(www) {
                        entries.push(AllowEntry {
                            kind: AllowKind::Exact,
                            name,
                            reason: reason.clone(),
                            origin: origin.to_string(),
                        });
                    }
                }
                Err(_) => bad += 1,
            }
        }
        (entries, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Allowlist {
        Allowlist::new([
            AllowEntry::new(
                AllowKind::Exact,
                "WWW.Example.com.",
                "our portal",
                "operator",
            )
            .unwrap(),
            AllowEntry::new(AllowKind::Suffix, "isp.example", "our own zone", "config").unwrap(),
            AllowEntry::new(AllowKind::Exact, "192.0.2.53", "our resolver", "config").unwrap(),
        ])
    }

    #[test]
    fn exact_and_suffix() {
        let l = list();
        assert!(l.check("www.example.com").is_some());
        assert!(l.check("example.com").is_none());
        assert!(l.check("evil.www.example.com").is_none());
        assert!(l.check("isp.example").is_some());
        assert!(l.check("mail.isp.example").is_some());
        assert!(l.check("notisp.example").is_none());
        assert!(l.check("192.0.2.53").is_some());
        let m = l.check("a.isp.example").unwrap();
        assert_eq!(
            m.to_string(),
            "allowlisted by suffix entry isp.example (config): our own zone"
        );
    }

    #[test]
    fn top_sites() {
        let (entries, bad) = Allowlist::parse_top_sites(
            "1,google.com\n2,www.Facebook.com\n# c\n3,not a name\n",
            "top-sites",
        );
        assert_eq!(bad, 1);
        let l = Allowlist::new(entries);
        assert!(l.check("google.com").is_some());
        assert!(l.check("www.google.com").is_some());
        assert!(l.check("sites.google.com").is_none());
        assert!(l.check("www.facebook.com").is_some());
        assert_eq!(
            l.check("google.com").unwrap().entry.reason,
            "top site, rank 1"
        );
    }
}
