//! Client scoping: `rpz-client-ip` triggers so that a resolver applies
//! the policy only to subscribers who consented.
//!
//! RPZ has no trigger meaning "only these clients", and a client-ip
//! trigger in the policy zone itself would rewrite every query of that
//! client. So a client-scope zone holds the opposite: `rpz-passthru.`
//! client-ip triggers covering the subscriber address blocks *less* the
//! consenting addresses (the complement written as the fewest CIDR
//! blocks). Listed before the policy zones in the resolver, its passthru
//! ends policy processing for everyone else; a consenting subscriber
//! matches nothing in it and reaches the policy zones.
//!
//! Limits (docs/resolvers.md): the addresses must be the subscribers'
//! for as long as the resolver holds the zone, so this follows static
//! assignments; a dynamic pool changes hands faster than zone transfers
//! and resolver caches follow, and the consenting subscriber's address
//! would have to be re-derived on every lease. For dynamic addresses the
//! kanki DNS front, which asks the subscriber directory per query, is the
//! answer. A consenting address behind CGNAT shares its consent with
//! everyone on that address.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use kanki_exports::{IpTrigger, rpz_ip_owner};

/// Where consent comes from: the consenting subscribers' statically
/// assigned addresses or blocks. `kanki serve` reads them from the
/// subscriber directory; [`ConsentFile`] reads a plain file instead (for
/// an ISP whose static assignments live elsewhere).
pub trait ConsentSource: Send + Sync {
    /// The consenting addresses and blocks now.
    fn consenting(&self) -> io::Result<Vec<IpTrigger>>;
    /// A value that changes whenever [`consenting`](Self::consenting)
    /// would answer differently (a modification time, a generation).
    fn version(&self) -> u64;
}

/// Consenting addresses in a file: one address or CIDR block a line, `#`
/// comments. Lines that are neither are ignored (and logged).
pub struct ConsentFile {
    pub path: PathBuf,
}

impl ConsentSource for ConsentFile {
    fn consenting(&self) -> io::Result<Vec<IpTrigger>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(parse_consent(
            &text,
            |line| tracing::warn!(file = %self.path.display(), line, "not an address or block; ignored"),
        ))
    }

    fn version(&self) -> u64 {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64 ^ 1)
    }
}

/// The addresses and blocks of a consent file's text (see
/// [`ConsentFile`]); `ignored` hears the number of each line that is
/// neither (1-based).
pub fn parse_consent(text: &str, mut ignored: impl FnMut(usize)) -> Vec<IpTrigger> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match IpTrigger::parse(line) {
            Some(t) => out.push(t),
            None => ignored(i + 1),
        }
    }
    out
}

/// Nobody has consented.
pub struct NoConsent;

impl ConsentSource for NoConsent {
    fn consenting(&self) -> io::Result<Vec<IpTrigger>> {
        Ok(Vec::new())
    }
    fn version(&self) -> u64 {
        0
    }
}

/// An address block as bits in a u128 (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    v4: bool,
    bits: u128,
    len: u8,
}

impl Block {
    fn of(t: &IpTrigger) -> Block {
        match t.addr {
            IpAddr::V4(a) => Block {
                v4: true,
                bits: u128::from(u32::from(a)),
                len: t.prefix,
            },
            IpAddr::V6(a) => Block {
                v4: false,
                bits: u128::from(a),
                len: t.prefix,
            },
        }
    }

    fn width(self) -> u8 {
        if self.v4 { 32 } else { 128 }
    }

    /// Whether `self` contains `o`.
    fn contains(self, o: Block) -> bool {
        if self.v4 != o.v4 || o.len < self.len {
            return false;
        }
        let shift = u32::from(self.width() - self.len);
        self.len == 0 || (self.bits >> shift) == (o.bits >> shift)
    }

    fn halves(self) -> [Block; 2] {
        let bit = 1u128 << (self.width() - self.len - 1);
        [
            Block {
                len: self.len + 1,
                ..self
            },
            Block {
                len: self.len + 1,
                bits: self.bits | bit,
                ..self
            },
        ]
    }

    fn trigger(self) -> IpTrigger {
        let addr = if self.v4 {
            IpAddr::V4((self.bits as u32).into())
        } else {
            IpAddr::V6(self.bits.into())
        };
        IpTrigger {
            addr,
            prefix: self.len,
        }
    }
}

/// The blocks of `pools` not covered by any of `holes`, as the fewest CIDR
/// blocks (none of prefix length 0).
pub fn complement(pools: &[IpTrigger], holes: &[IpTrigger]) -> Vec<IpTrigger> {
    fn walk(b: Block, holes: &[Block], out: &mut Vec<Block>) {
        if holes.iter().any(|h| h.contains(b)) {
            return;
        }
        let inside: Vec<Block> = holes.iter().copied().filter(|h| b.contains(*h)).collect();
        if inside.is_empty() && b.len > 0 {
            out.push(b);
            return;
        }
        for half in b.halves() {
            walk(half, &inside, out);
        }
    }
    let holes: Vec<Block> = holes.iter().map(Block::of).collect();
    let mut out = Vec::new();
    for p in pools {
        walk(Block::of(p), &holes, &mut out);
    }
    out.sort_by_key(|b| (!b.v4, b.bits, b.len));
    out.dedup();
    out.into_iter().map(Block::trigger).collect()
}

/// The owner of an `rpz-client-ip` trigger, relative to the origin:
/// `24.0.2.0.192.rpz-client-ip`.
pub fn client_ip_owner(t: &IpTrigger) -> String {
    let ip = rpz_ip_owner(t);
    format!("{}rpz-client-ip", ip.strip_suffix("rpz-ip").unwrap_or(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> IpTrigger {
        IpTrigger::parse(s).unwrap()
    }

    fn strs(v: Vec<IpTrigger>) -> Vec<String> {
        v.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn pools_less_consenting_addresses() {
        assert_eq!(
            strs(complement(&[t("192.0.2.0/24")], &[])),
            ["192.0.2.0/24"]
        );
        assert_eq!(
            strs(complement(&[t("192.0.2.0/30")], &[t("192.0.2.1")])),
            ["192.0.2.0", "192.0.2.2/31"]
        );
        let out = complement(&[t("192.0.2.0/24")], &[t("192.0.2.77"), t("198.51.100.1")]);
        assert_eq!(out.len(), 8);
        assert!(
            out.iter()
                .all(|b| !Block::of(b).contains(Block::of(&t("192.0.2.77"))))
        );
        assert!(complement(&[t("192.0.2.0/24")], &[t("192.0.0.0/16")]).is_empty());
        assert_eq!(
            strs(complement(&[t("2001:db8::/126")], &[t("2001:db8::3")])),
            ["2001:db8::/127", "2001:db8::2"]
        );
        assert_eq!(
            client_ip_owner(&t("192.0.2.0/24")),
            "24.0.2.0.192.rpz-client-ip"
        );
        assert_eq!(
            client_ip_owner(&t("2001:db8::1")),
            "128.1.zz.db8.2001.rpz-client-ip"
        );
    }

    #[test]
    fn consent_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = ConsentFile {
            path: dir.path().join("consent.txt"),
        };
        assert!(f.consenting().unwrap().is_empty());
        std::fs::write(
            &f.path,
            "# consenting\n192.0.2.7\n\nnonsense\n2001:db8::/64 # office\n",
        )
        .unwrap();
        assert_eq!(
            strs(f.consenting().unwrap()),
            ["192.0.2.7", "2001:db8::/64"]
        );
        assert_ne!(f.version(), 0);
    }
}
