//! Synthetic bindings for benchmarks and tests: subscribers' sessions over
//! a period, back to back on each prefix, as a broadband access network
//! produces them.

use chrono::{DateTime, TimeZone, Utc};

use crate::index::BindingRef;

/// A small, fast, reproducible generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The start of the synthetic period.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap()
}

/// The prefix of slot `i`: two thirds IPv4 /32 in 10.0.0.0/8 and
/// 100.64.0.0/10, one third IPv6 /56 in 2001:db8::/32.
pub fn prefix(i: u64) -> ipnet::IpNet {
    if i % 3 == 2 {
        let j = i / 3;
        let a = std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | ((j as u128) << 72));
        ipnet::IpNet::V6(ipnet::Ipv6Net::new(a, 56).expect("56 <= 128"))
    } else {
        let j = i - i / 3;
        let a = std::net::Ipv4Addr::from(0x0a00_0000u32 + j as u32);
        ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, 32).expect("32 <= 32"))
    }
}

/// `n` sessions lasting 1 hour to 30 days (log-uniform), back to back with
/// short gaps on `n / 20` prefixes, spread over `days` days from
/// [`epoch`]; the last session of a prefix may still be open. Holders are
/// drawn from `holders` subscribers, ids are 1..=n.
pub fn sessions(n: usize, days: u32, holders: u32, seed: u64) -> Vec<BindingRef> {
    let mut rng = Rng::new(seed);
    let start = epoch().timestamp();
    let end = start + days as i64 * 86400;
    let prefixes = (n / 20).max(1) as u64;
    let mut out = Vec::with_capacity(n);
    let mut p = 0u64;
    let mut t = start + rng.below(86400) as i64;
    while out.len() < n {
        // ln(1 h) .. ln(30 d): log-uniform duration.
        let (lo, hi) = ((3600f64).ln(), (30.0 * 86400f64).ln());
        let dur = (lo + (hi - lo) * (rng.below(1 << 20) as f64 / (1u64 << 20) as f64)).exp() as i64;
        let open = t + dur > end;
        out.push(BindingRef {
            id: out.len() as i64 + 1,
            prefix: prefix(p % prefixes),
            ports: None,
            from: t,
            to: (!open).then_some(t + dur),
            holder: rng.below(holders as u64) as u32,
        });
        t += dur + rng.below(600) as i64;
        if open || t >= end {
            p += 1;
            t = start + rng.below(86400) as i64;
        }
    }
    out
}
