//! The response cache: upstream answers by (name, type, EDNS, DO, AD), served
//! until their smallest TTL runs out, with every TTL aged on the way out.
//!
//! Only ordinary queries (RD set, CD clear) are answered from the cache or
//! fill it: an answer to a CD query is data the upstream did not
//! validate, and an answer to an RD=0 query is whatever the upstream
//! happened to hold (a referral, a partial chain). Either, served to the
//! next client that asks normally, would put unvalidated data or a
//! referral in front of everyone. Such queries are always forwarded.
//!
//! Only forwarded answers are cached. A policy answer depends on who asks
//! (consent, passes, the garden), so it is written fresh for each query and
//! never stored here: one subscriber's warning is never served to another.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

use super::wire::{Query, ResponseFacts};

/// Longest a response is kept, whatever its TTLs say.
const MAX_TTL: u32 = 86_400;
const SHARDS: usize = 16;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The question name, lower case, wire form.
    name: Box<[u8]>,
    qtype: u16,
    /// 0: no EDNS; 1: EDNS; 2: EDNS with DO; plus 4 when the query set
    /// AD (the upstream then says whether the answer is authentic).
    edns: u8,
}

/// Whether answers to `q` may be served from, and kept in, the cache.
pub fn cacheable(q: &Query<'_>) -> bool {
    q.recursion_desired() && !q.checking_disabled()
}

struct Entry {
    bytes: Box<[u8]>,
    ttl_offsets: Box<[u16]>,
    stored: Instant,
    ttl: u32,
}

pub struct Cache {
    per_shard: usize,
    shards: Vec<Mutex<HashMap<Key, Entry, foldhash::fast::RandomState>>>,
    hasher: foldhash::fast::RandomState,
}

fn key_of(q: &Query<'_>) -> Key {
    Key {
        name: q.qname.to_ascii_lowercase().into(),
        qtype: q.qtype,
        edns: q.edns.map_or(0, |e| 1 + u8::from(e.dnssec_ok)) | (u8::from(q.authentic_data()) << 2),
    }
}

impl Cache {
    /// A cache of at most `entries` responses (0: caches nothing).
    pub fn new(entries: usize) -> Cache {
        let hasher = foldhash::fast::RandomState::default();
        Cache {
            per_shard: entries.div_ceil(SHARDS),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            hasher,
        }
    }

    fn shard(&self, k: &Key) -> &Mutex<HashMap<Key, Entry, foldhash::fast::RandomState>> {
        &self.shards[self.hasher.hash_one(k) as usize % SHARDS]
    }

    /// The cached answer to `q` (from `packet`), aged, with the query's id
    /// and the question's case; `None` on a miss or an expired entry.
    pub fn get(&self, packet: &[u8], q: &Query<'_>, now: Instant) -> Option<Vec<u8>> {
        if self.per_shard == 0 || !cacheable(q) {
            return None;
        }
        let k = key_of(q);
        let shard = self.shard(&k);
        let map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.get(&k)?;
        let age = now.saturating_duration_since(e.stored).as_secs() as u32;
        if age >= e.ttl {
            return None;
        }
        let mut out = e.bytes.to_vec();
        for &at in e.ttl_offsets.iter() {
            let at = at as usize;
            let ttl = u32::from_be_bytes(out[at..at + 4].try_into().expect("4 bytes"));
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
        drop(map);
        out[..2].copy_from_slice(&q.id.to_be_bytes());
        // The question as asked (case, for 0x20-style checks).
        out[12..12 + q.qname.len()].copy_from_slice(&packet[12..12 + q.qname.len()]);
        Some(out)
    }

    /// Keeps `response` to `q` if it can be: an ordinary query's complete
    /// NOERROR or NXDOMAIN answer with at least one record to take a TTL
    /// from.
    pub fn put(&self, q: &Query<'_>, response: &[u8], facts: &ResponseFacts, now: Instant) {
        if self.per_shard == 0 || !cacheable(q) || facts.truncated || !matches!(facts.rcode, 0 | 3)
        {
            return;
        }
        let Some(ttl) = facts.min_ttl.map(|t| t.min(MAX_TTL)).filter(|&t| t > 0) else {
            return;
        };
        let k = key_of(q);
        let shard = self.shard(&k);
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.per_shard && !map.contains_key(&k) {
            // Full: drop an expired entry if the first few hold one, else
            // any (the map's order is as good as random).
            let victim = map
                .iter()
                .take(8)
                .find(|(_, e)| now.saturating_duration_since(e.stored).as_secs() as u32 >= e.ttl)
                .or_else(|| map.iter().next())
                .map(|(k, _)| k.clone());
            if let Some(v) = victim {
                map.remove(&v);
            }
        }
        map.insert(
            k,
            Entry {
                bytes: response.into(),
                ttl_offsets: facts.ttl_offsets.clone().into(),
                stored: now,
                ttl,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
