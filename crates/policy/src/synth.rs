//! Deterministic synthetic domain names and query mixes, for benchmarks
//! (`cargo bench -p kanki-policy`, `kanki bench`) and tests.
//!
//! The names imitate what blocklists hold: registered domains under a skewed
//! mix of TLDs (`.com` most, then cheap and country TLDs, some two-level like
//! `co.jp`), made of words, word pairs, words with digits, pronounceable
//! syllables and DGA-like random strings, about half with one or two
//! subdomain labels. They average about 20 bytes. Everything is driven by a
//! seeded xorshift generator, so a seed always gives the same names.

use std::collections::HashSet;

/// xorshift64* (Vigna): small, fast, deterministic; not for cryptography.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> XorShift64 {
        // splitmix64 of the seed, so that nearby seeds start far apart and 0
        // is fine.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift64((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() as u128) * (n as u128)) >> 64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "secure", "login", "account", "update", "verify", "bank", "pay", "mail", "cloud", "drive",
    "docs", "shop", "store", "online", "service", "support", "help", "app", "web", "portal", "my",
    "free", "best", "top", "cdn", "static", "download", "files", "office", "soft", "id", "auth",
    "sign", "check", "wallet", "crypto", "coin", "trade", "bit", "money", "post", "track",
    "delivery", "parcel", "news", "media", "video", "stream", "game", "play", "win", "bonus",
    "promo", "deal", "sale", "gift", "prize", "lucky", "info", "data", "host", "server", "api",
    "dev", "admin", "panel", "user", "client", "home", "tech", "digital", "smart", "global",
    "world", "asia", "japan", "tokyo", "osaka", "hotel", "travel", "flight", "health", "care",
    "pharma", "life", "love", "chat", "social", "photo", "image", "green", "blue", "star", "sun",
    "city", "team", "link", "hub", "zone", "box", "lab", "point", "net",
];

const SUBDOMAINS: &[&str] = &[
    "www", "www", "www", "m", "mail", "cdn", "static", "login", "secure", "api", "app", "dl",
    "files", "img", "update", "portal", "webmail", "accounts", "auth", "my", "shop", "blog", "ns1",
    "en", "jp",
];

const SYLLABLES: &[&str] = &[
    "ka", "ki", "ku", "ke", "ko", "sa", "shi", "su", "se", "so", "ta", "chi", "tsu", "te", "to",
    "na", "ni", "nu", "ne", "no", "ma", "mi", "mu", "me", "mo", "ra", "ri", "ru", "re", "ro", "lo",
    "la", "li", "ba", "bo", "da", "do", "ga", "go", "za", "zo", "va", "vi", "tor", "lex", "mar",
];

/// (TLD, weight): `.com` dominates, as in every blocklist.
const TLDS: &[(&str, usize)] = &[
    ("com", 300),
    ("net", 60),
    ("org", 40),
    ("ru", 40),
    ("xyz", 30),
    ("top", 30),
    ("info", 25),
    ("cn", 20),
    ("online", 15),
    ("site", 15),
    ("io", 10),
    ("jp", 10),
    ("co.jp", 10),
    ("ne.jp", 3),
    ("de", 10),
    ("com.br", 10),
    ("co.uk", 10),
    ("fr", 8),
    ("in", 8),
    ("icu", 8),
    ("shop", 8),
    ("club", 6),
    ("live", 6),
    ("tk", 6),
    ("cc", 6),
    ("me", 6),
    ("us", 6),
    ("biz", 6),
    ("vip", 6),
    ("app", 6),
    ("it", 5),
    ("nl", 5),
    ("pl", 5),
    ("vn", 5),
    ("com.cn", 5),
    ("ml", 4),
    ("pw", 4),
    ("store", 4),
    ("kr", 4),
    ("ua", 4),
    ("id", 4),
    ("su", 2),
];

/// An endless stream of plausible domain names (duplicates possible).
#[derive(Clone, Debug)]
pub struct DomainGen {
    rng: XorShift64,
    tld_total: usize,
}

impl DomainGen {
    pub fn new(seed: u64) -> DomainGen {
        DomainGen {
            rng: XorShift64::new(seed),
            tld_total: TLDS.iter().map(|t| t.1).sum(),
        }
    }

    /// The next name, lowercase ASCII, no trailing dot.
    pub fn next_name(&mut self) -> String {
        let mut s = String::with_capacity(40);
        let r = self.rng.below(100);
        if r < 40 {
            s.push_str(self.rng.pick(SUBDOMAINS));
            s.push('.');
        } else if r < 55 {
            self.label(&mut s);
            s.push('.');
        } else if r < 67 {
            s.push_str(self.rng.pick(SUBDOMAINS));
            s.push('.');
            self.label(&mut s);
            s.push('.');
        }
        self.label(&mut s);
        s.push('.');
        let mut w = self.rng.below(self.tld_total);
        for &(tld, weight) in TLDS {
            if w < weight {
                s.push_str(tld);
                break;
            }
            w -= weight;
        }
        s
    }

    /// A registered-domain-like label.
    fn label(&mut self, s: &mut String) {
        let rng = &mut self.rng;
        match rng.below(100) {
            0..35 => {
                s.push_str(rng.pick(WORDS));
                s.push_str(rng.pick(WORDS));
            }
            35..50 => {
                s.push_str(rng.pick(WORDS));
                s.push('-');
                s.push_str(rng.pick(WORDS));
            }
            50..65 => {
                s.push_str(rng.pick(WORDS));
                let digits = 1 + rng.below(4);
                for _ in 0..digits {
                    s.push(char::from(b'0' + rng.below(10) as u8));
                }
            }
            65..85 => {
                for _ in 0..3 + rng.below(3) {
                    s.push_str(rng.pick(SYLLABLES));
                }
            }
            _ => {
                // DGA-style.
                const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
                for _ in 0..10 + rng.below(11) {
                    s.push(char::from(ALNUM[rng.below(ALNUM.len())]));
                }
            }
        }
    }
}

/// `n` distinct names, always the same for the same seed.
pub fn domains(n: usize, seed: u64) -> Vec<String> {
    let mut gen_ = DomainGen::new(seed);
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let name = gen_.next_name();
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    out
}

/// `n` query names for a snapshot listing `listed`: half (at random) are a
/// listed name under 1–3 extra labels (`a.b.bad.example` for `bad.example`),
/// so they match a parent; half are names of which neither they nor any
/// parent is listed. Deterministic for a seed.
pub fn queries(listed: &[String], n: usize, seed: u64) -> Vec<String> {
    let set: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let mut rng = XorShift64::new(seed);
    // Another stream than the listed names', so most of these are new names.
    let mut other = DomainGen::new(seed.rotate_left(17) ^ 0xa5a5_5a5a_0f0f_f0f0);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if !listed.is_empty() && rng.chance(50) {
            let mut q = String::with_capacity(48);
            for _ in 0..1 + rng.below(3) {
                extra_label(&mut rng, &mut q);
                q.push('.');
            }
            q.push_str(&listed[rng.below(listed.len())]);
            out.push(q);
        } else {
            // Draw until the name is not covered by a listing: retrying only
            // this half keeps the mix at one half.
            loop {
                let mut q = String::with_capacity(48);
                if rng.chance(30) {
                    extra_label(&mut rng, &mut q);
                    q.push('.');
                }
                q.push_str(&other.next_name());
                let hit = std::iter::once(q.as_str())
                    .chain(q.match_indices('.').map(|(i, _)| &q[i + 1..]))
                    .any(|s| set.contains(s));
                if !hit {
                    out.push(q);
                    break;
                }
            }
        }
    }
    out
}

/// Query names packed back to back in one buffer. A DNS server looks up a
/// name that sits in a packet it has just read, hot in cache; a benchmark
/// walking a `Vec<String>` would instead pay a cache miss per query to fetch
/// the name itself and measure the allocator's layout, not the snapshot.
#[derive(Clone, Debug, Default)]
pub struct QueryBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl QueryBatch {
    pub fn new<S: AsRef<str>>(names: &[S]) -> QueryBatch {
        let mut b = QueryBatch::default();
        for n in names {
            b.bytes.extend_from_slice(n.as_ref().as_bytes());
            b.ends.push(b.bytes.len());
        }
        b
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let q = &self.bytes[start..end];
            start = end;
            q
        })
    }
}

fn extra_label(rng: &mut XorShift64, q: &mut String) {
    if rng.chance(60) {
        q.push_str(rng.pick(SUBDOMAINS));
    } else {
        const HEX: &[u8] = b"0123456789abcdef";
        for _ in 0..4 + rng.below(5) {
            q.push(char::from(HEX[rng.below(16)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_distinct_and_about_twenty_bytes() {
        let a = domains(20_000, 1);
        assert_eq!(a, domains(20_000, 1));
        assert_ne!(a, domains(20_000, 2));
        let set: HashSet<&String> = a.iter().collect();
        assert_eq!(set.len(), a.len());
        let avg = a.iter().map(String::len).sum::<usize>() as f64 / a.len() as f64;
        assert!((16.0..24.0).contains(&avg), "average length {avg}");
        assert!(a.iter().all(|d| d.is_ascii() && !d.ends_with('.')));
    }

    #[test]
    fn queries_are_half_listed() {
        let listed = domains(5_000, 3);
        let q = queries(&listed, 10_000, 4);
        assert_eq!(q, queries(&listed, 10_000, 4));
        let set: HashSet<&str> = listed.iter().map(String::as_str).collect();
        let matching = q
            .iter()
            .filter(|q| q.match_indices('.').any(|(i, _)| set.contains(&q[i + 1..])))
            .count();
        assert!((4_800..5_200).contains(&matching), "{matching}");
        let batch = QueryBatch::new(&q);
        assert_eq!(batch.len(), q.len());
        assert!(batch.iter().eq(q.iter().map(|s| s.as_bytes())));
    }
}
