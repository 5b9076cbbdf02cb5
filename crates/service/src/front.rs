//! State the DNS front and the warning page share inside `kanki serve`:
//! proceed-once passes, and the walled garden.
//!
//! The warning page writes both (a subscriber chooses to proceed; an
//! operator or the removal loop puts a subscriber in the garden); the DNS
//! front reads them on its policy path. Reads are lock-free or behind a
//! lock taken only on a policy hit, never on a plain forwarded query.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use kanki_store::Store;

use crate::ServiceError;

/// The prefix a client address stands for: an IPv4 address itself, an
/// IPv6 address its /56 (what an ISP delegates to one subscriber, whose
/// devices pick addresses from it and change them at will). Passes, form
/// tokens and report limits are kept per prefix: a subscriber's pass holds
/// on all their addresses, and a limit cannot be escaped by moving to
/// another address of the same /56.
pub fn client_prefix(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(a) & !((1u128 << 72) - 1)).into()),
        },
    }
}

/// The most clients (prefixes) holding passes at once. Past it, expired
/// passes are dropped; when all are live, a new client gets no pass (the
/// warning stays: the safe side) rather than the map growing without end.
pub const MAX_PASS_CLIENTS: usize = 100_000;

/// Proceed-once passes: after "proceed" on the warning page, that client
/// (its [`client_prefix`]) reaches that name (and its subdomains) unwarned
/// until the pass expires. Kept in memory only: a restart asks again,
/// which errs on the safe side.
pub struct Passes {
    ttl: Duration,
    by_client: Mutex<HashMap<IpAddr, Vec<Pass>>>,
    /// Clients in `by_client`, kept beside it so that the DNS front's
    /// check on each policy hit takes no lock while nobody holds a pass
    /// (the usual case): a pass granted at that moment is seen on the next
    /// query, and until then the warning stays (the safe side).
    clients: AtomicUsize,
}

/// A name (lower case) and when its pass ends.
type Pass = (Box<str>, Instant);

impl Passes {
    pub fn new(ttl: Duration) -> Passes {
        Passes {
            ttl,
            by_client: Mutex::new(HashMap::new()),
            clients: AtomicUsize::new(0),
        }
    }

    /// How long a pass lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Grants `client` a pass for `name` (a lower-case name without the
    /// trailing dot) from `now`; false when the map is full of live passes
    /// of other clients (see [`MAX_PASS_CLIENTS`]).
    pub fn grant(&self, client: IpAddr, name: &str, now: Instant) -> bool {
        /// Names one client holds passes for at once.
        const PER_CLIENT: usize = 64;
        let until = now + self.ttl;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let client = client_prefix(client);
        let mut map = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_PASS_CLIENTS && !map.contains_key(&client) {
            map.retain(|_, passes| {
                passes.retain(|(_, until)| *until > now);
                !passes.is_empty()
            });
            if map.len() >= MAX_PASS_CLIENTS {
                self.clients.store(map.len(), Relaxed);
                return false;
            }
        }
        let passes = map.entry(client).or_default();
        passes.retain(|(n, u)| *u > now && **n != *name);
        if passes.len() >= PER_CLIENT {
            // The oldest gives way.
            passes.remove(0);
        }
        passes.push((name.into(), until));
        self.clients.store(map.len(), Relaxed);
        true
    }

    /// Whether `client` holds a pass, now, for `name` or a parent of it.
    pub fn allows(&self, client: IpAddr, name: &str, now: Instant) -> bool {
        if self.clients.load(Relaxed) == 0 {
            return false;
        }
        let map = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        let Some(passes) = map.get(&client_prefix(client)) else {
            return false;
        };
        let name = name.trim_end_matches('.');
        passes
            .iter()
            .any(|(n, until)| *until > now && is_within(name, n))
    }

    /// Drops expired passes; returns how many are left.
    pub fn purge(&self, now: Instant) -> usize {
        let mut map = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, passes| {
            passes.retain(|(_, until)| *until > now);
            !passes.is_empty()
        });
        self.clients.store(map.len(), Relaxed);
        map.values().map(Vec::len).sum()
    }
}

/// The walled garden: subscribers whose every name, except the allowlisted
/// countermeasure and security-vendor sites, resolves to the warning
/// address. The set is swapped whole when someone enters or leaves.
pub struct Garden {
    inside: ArcSwap<HashSet<String>>,
    /// The store's garden generation `inside` was loaded at.
    generation: AtomicU64,
    /// Names (and their subdomains) reachable from inside, lower case.
    allow: Arc<[String]>,
}

impl Garden {
    pub fn new(allow: impl IntoIterator<Item = String>) -> Garden {
        Garden {
            inside: ArcSwap::from_pointee(HashSet::new()),
            generation: AtomicU64::new(0),
            allow: allow
                .into_iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Replaces the set of subscribers inside.
    pub fn set(&self, inside: HashSet<String>) {
        self.inside.store(Arc::new(inside));
    }

    /// Loads the set from the store.
    pub fn reload(&self, store: &Store) -> Result<(), ServiceError> {
        let w = store.warning();
        // The generation first: a change made while reading is then seen
        // again next time rather than missed.
        let g = w.garden_generation()?;
        self.set(w.garden()?.into_iter().map(|m| m.subscriber).collect());
        self.generation.store(g, Relaxed);
        Ok(())
    }

    /// Reloads when the store's garden changed (through any process);
    /// returns whether it did.
    pub fn refresh(&self, store: &Store) -> Result<bool, ServiceError> {
        if store.warning().garden_generation()? == self.generation.load(Relaxed) {
            return Ok(false);
        }
        self.reload(store)?;
        Ok(true)
    }

    pub fn contains(&self, subscriber: &str) -> bool {
        self.inside.load().contains(subscriber)
    }

    pub fn len(&self) -> usize {
        self.inside.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.inside.load().is_empty()
    }

    /// Whether `name` (or a parent of it) is reachable from inside.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.allow.iter().any(|a| is_within(name, a))
    }
}

/// Whether `name` is `parent` or a subdomain of it (no trailing dots).
fn is_within(name: &str, parent: &str) -> bool {
    let (n, p) = (name.as_bytes(), parent.as_bytes());
    n.len() >= p.len()
        && n[n.len() - p.len()..].eq_ignore_ascii_case(p)
        && (n.len() == p.len() || n[n.len() - p.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_covers_the_name_and_its_subdomains_for_its_client_until_it_expires() {
        let p = Passes::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        p.grant(a, "Bad.Example.", t0);
        assert!(p.allows(a, "bad.example", t0));
        assert!(p.allows(a, "www.bad.example.", t0));
        assert!(!p.allows(a, "notbad.example", t0));
        assert!(!p.allows(b, "bad.example", t0));
        assert!(!p.allows(a, "bad.example", t0 + Duration::from_secs(601)));
        assert_eq!(p.purge(t0 + Duration::from_secs(601)), 0);
    }

    #[test]
    fn a_pass_holds_for_the_clients_ipv6_56_and_the_map_is_bounded() {
        let p = Passes::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p.grant(ip("2001:db8:1:ab00::1"), "bad.example", t0));
        // Another address of the same /56 (a privacy address, another
        // device of the household): the same pass.
        assert!(p.allows(ip("2001:db8:1:abff:1234::9"), "bad.example", t0));
        // The next /56: another subscriber.
        assert!(!p.allows(ip("2001:db8:1:ac00::1"), "bad.example", t0));
        assert_eq!(
            client_prefix(ip("::ffff:192.0.2.1")),
            ip("192.0.2.1"),
            "a mapped IPv4 address is that address"
        );
        assert_eq!(client_prefix(ip("192.0.2.1")), ip("192.0.2.1"));

        // Full of live passes: a new client is refused, not added.
        for i in 1..MAX_PASS_CLIENTS as u32 {
            assert!(p.grant(IpAddr::V4(i.into()), "bad.example", t0));
        }
        assert!(!p.grant(ip("2001:db8:2::1"), "bad.example", t0));
        // A client holding one still renews; once they expire, room again.
        assert!(p.grant(IpAddr::V4(1.into()), "other.example", t0));
        let later = t0 + Duration::from_secs(601);
        assert!(p.grant(ip("2001:db8:2::1"), "bad.example", later));
        assert_eq!(p.purge(later), 1);
    }

    #[test]
    fn the_garden_lets_through_only_its_allowlist() {
        let g = Garden::new(["clean.example.jp".to_string()]);
        g.set(HashSet::from(["S1".to_string()]));
        assert!(g.contains("S1") && !g.contains("S2"));
        assert!(g.allows_name("www.clean.example.jp."));
        assert!(!g.allows_name("unclean.example.jp"));
    }
}
