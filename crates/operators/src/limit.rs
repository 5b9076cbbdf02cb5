//! Rate limits on failed sign-ins, per account and per source address.
//!
//! Password hashing is slow on purpose, and a guessed password is a
//! breach: after `per_account` failures for one name, or `per_source`
//! from one address (an IPv6 address counts by its /64), within `window`,
//! further attempts are refused without checking the password until the
//! window has passed. Memory stays bounded: at most `MAX_KEYS` names and
//! addresses are remembered, the oldest forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
pub struct SignInLimits {
    pub per_account: u32,
    pub per_source: u32,
    pub window: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_account: 5,
            per_source: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Source(IpAddr),
}

struct Failures {
    first: Instant,
    count: u32,
}

/// Failed sign-ins remembered per account and per source.
pub struct SignInLimiter {
    limits: SignInLimits,
    failures: Mutex<HashMap<Key, Failures>>,
}

/// The source address as counted: IPv6 by its /64 (one subscriber line).
fn source_key(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl SignInLimiter {
    pub fn new(limits: SignInLimits) -> SignInLimiter {
        SignInLimiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn over(&self, map: &HashMap<Key, Failures>, key: &Key, max: u32, now: Instant) -> bool {
        map.get(key)
            .is_some_and(|f| now.duration_since(f.first) < self.limits.window && f.count >= max)
    }

    /// Whether an attempt for `account` from `source` may be checked now.
    pub fn allowed(&self, account: &str, source: IpAddr) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        !self.over(
            &map,
            &Key::Account(account.to_ascii_lowercase()),
            self.limits.per_account,
            now,
        ) && !self.over(
            &map,
            &Key::Source(source_key(source)),
            self.limits.per_source,
            now,
        )
    }

    /// Counts a failed attempt.
    pub fn failed(&self, account: &str, source: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_KEYS {
            let window = self.limits.window;
            map.retain(|_, f| now.duration_since(f.first) < window);
            if map.len() >= MAX_KEYS {
                // Still full within one window: forget the oldest half.
                let mut firsts: Vec<Instant> = map.values().map(|f| f.first).collect();
                firsts.sort_unstable();
                let cut = firsts[firsts.len() / 2];
                map.retain(|_, f| f.first > cut);
            }
        }
        for key in [
            Key::Account(account.to_ascii_lowercase()),
            Key::Source(source_key(source)),
        ] {
            let f = map.entry(key).or_insert(Failures {
                first: now,
                count: 0,
            });
            if now.duration_since(f.first) >= self.limits.window {
                *f = Failures {
                    first: now,
                    count: 0,
                };
            }
            f.count += 1;
        }
    }

    /// Forgets an account's failures after a successful sign-in.
    pub fn succeeded(&self, account: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Key::Account(account.to_ascii_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_limited_per_account_and_per_source() {
        let l = SignInLimiter::new(SignInLimits {
            per_account: 3,
            per_source: 5,
            window: Duration::from_secs(3600),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.allowed("alice", a));
            l.failed("alice", a);
        }
        // Alice is locked from everywhere; others from a are not yet.
        assert!(!l.allowed("Alice", b));
        assert!(l.allowed("bob", a));
        l.failed("bob", a);
        l.failed("carol", a);
        // Five failures from a: a is locked for everyone.
        assert!(!l.allowed("dave", a));
        assert!(l.allowed("dave", b));
        // A whole IPv6 /64 counts as one source.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for i in 0..5 {
            l.failed(&format!("u{i}"), v6(&format!("2001:db8::{i}")));
        }
        assert!(!l.allowed("x", v6("2001:db8::ffff")));
        assert!(l.allowed("x", v6("2001:db8:0:1::1")));
        l.succeeded("bob");
    }
}
