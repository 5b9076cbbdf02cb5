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

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

use hashbrown::HashTable;

use super::wire::{Query, ResponseFacts};

/// Longest a response is kept, whatever its TTLs say.
const MAX_TTL: u32 = 86_400;
const SHARDS: usize = 16;
/// The longest key: a name (255 bytes in wire form at most), its type,
/// and the flags byte.
const KEY_MAX: usize = 255 + 3;

/// A cache key, built on the stack for each lookup (a lookup allocates
/// nothing): the question name lower case in wire form, the type (2
/// bytes), and one byte of flags: 0 no EDNS, 1 EDNS, 2 EDNS with DO; plus
/// 4 when the query set AD (the upstream then says whether the answer is
/// authentic).
struct Key {
    bytes: [u8; KEY_MAX],
    len: usize,
}

impl Key {
    fn of(q: &Query<'_>) -> Key {
        let mut bytes = [0u8; KEY_MAX];
        // A parsed question name is at most 255 bytes (wire::parse_query).
        let n = q.qname.len().min(255);
        for (to, &from) in bytes[..n].iter_mut().zip(q.qname) {
            *to = from.to_ascii_lowercase();
        }
        bytes[n..n + 2].copy_from_slice(&q.qtype.to_be_bytes());
        bytes[n + 2] =
            q.edns.map_or(0, |e| 1 + u8::from(e.dnssec_ok)) | (u8::from(q.authentic_data()) << 2);
        Key { bytes, len: n + 3 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Whether answers to `q` may be served from, and kept in, the cache.
pub fn cacheable(q: &Query<'_>) -> bool {
    q.recursion_desired() && !q.checking_disabled()
}

struct Entry {
    /// The key's hash, for removal.
    hash: u64,
    key: Box<[u8]>,
    bytes: Box<[u8]>,
    ttl_offsets: Box<[u16]>,
    stored: Instant,
    ttl: u32,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored).as_secs() as u32 >= self.ttl
    }
}

/// Entries in shards, each a hash table behind its own lock. A key is
/// hashed once: the hash picks the shard (from bits the table does not use
/// for its buckets) and is then the table's.
pub struct Cache {
    per_shard: usize,
    shards: Vec<Mutex<HashTable<Entry>>>,
    hasher: foldhash::fast::RandomState,
}

impl Cache {
    /// A cache of at most `entries` responses (0: caches nothing).
    pub fn new(entries: usize) -> Cache {
        Cache {
            per_shard: entries.div_ceil(SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<HashTable<Entry>> {
        &self.shards[(hash >> 40) as usize % SHARDS]
    }

    /// Writes the cached answer to `q` (from `packet`) into `out`, aged,
    /// with the query's id and the question's case; false on a miss or an
    /// expired entry (`out` is then cleared).
    pub fn get(&self, packet: &[u8], q: &Query<'_>, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        if self.per_shard == 0 || !cacheable(q) {
            return false;
        }
        let k = Key::of(q);
        let hash = self.hasher.hash_one(k.as_bytes());
        let map = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = map.find(hash, |e| *e.key == *k.as_bytes()) else {
            return false;
        };
        let age = now.saturating_duration_since(e.stored).as_secs() as u32;
        if age >= e.ttl {
            return false;
        }
        out.extend_from_slice(&e.bytes);
        for &at in e.ttl_offsets.iter() {
            let at = at as usize;
            let ttl = u32::from_be_bytes(out[at..at + 4].try_into().expect("4 bytes"));
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
        drop(map);
        out[..2].copy_from_slice(&q.id.to_be_bytes());
        // The question as asked (case, for 0x20-style checks).
        out[12..12 + q.qname.len()].copy_from_slice(&packet[12..12 + q.qname.len()]);
        true
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
        let k = Key::of(q);
        let hash = self.hasher.hash_one(k.as_bytes());
        let mut map = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        let entry = Entry {
            hash,
            key: k.as_bytes().into(),
            bytes: response.into(),
            ttl_offsets: facts.ttl_offsets.clone().into(),
            stored: now,
            ttl,
        };
        if let Ok(mut old) = map.find_entry(hash, |e| *e.key == *k.as_bytes()) {
            *old.get_mut() = entry;
            return;
        }
        if map.len() >= self.per_shard {
            // Full: drop an expired entry if the first few hold one, else
            // any (the table's order is as good as random).
            let victim = map
                .iter()
                .take(8)
                .find(|e| e.expired(now))
                .or_else(|| map.iter().next())
                .map(|e| (e.hash, e.key.clone()));
            if let Some((h, key)) = victim
                && let Ok(v) = map.find_entry(h, |e| e.key == key)
            {
                v.remove();
            }
        }
        map.insert_unique(hash, entry, |e| e.hash);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::front::wire::{parse_query, response_facts};

    /// A query: id, flags (RD 0x0100, AD 0x0020, CD 0x0010), name, type A,
    /// and an OPT record when `edns` is `Some(dnssec_ok)`.
    fn query(id: u16, flags: u16, name: &str, edns: Option<bool>) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        if let Some(d) = edns {
            p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, if d { 0x80 } else { 0 }, 0, 0, 0]);
        }
        p
    }

    /// The answer to `q`: one A record with TTL 300.
    fn answer(q: &[u8]) -> Vec<u8> {
        let parsed = parse_query(q).unwrap();
        let mut a = q[..parsed.question_end].to_vec();
        a[2] |= 0x80;
        a[7] = 1;
        a[11] = 0;
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        a
    }

    #[test]
    fn a_hit_is_written_aged_with_the_askers_id_and_case_and_flags_are_in_the_key() {
        let cache = Cache::new(100);
        let t0 = Instant::now();
        let asked = query(1, 0x0100, "www.Example.com", None);
        let q = parse_query(&asked).unwrap();
        let a = answer(&asked);
        cache.put(&q, &a, &response_facts(&a, &q).unwrap(), t0);
        assert_eq!(cache.len(), 1);

        // Another client, another id and case, ten seconds later.
        let again = query(77, 0x0100, "WWW.example.COM", None);
        let q2 = parse_query(&again).unwrap();
        let mut out = vec![9; 3];
        assert!(cache.get(&again, &q2, t0 + Duration::from_secs(10), &mut out));
        assert_eq!(out.len(), a.len());
        assert_eq!(&out[..2], &77u16.to_be_bytes());
        assert_eq!(&out[12..q2.question_end], &again[12..q2.question_end]);
        let ttl = u32::from_be_bytes(out[out.len() - 10..out.len() - 6].try_into().unwrap());
        assert_eq!(ttl, 290);

        // Expired; and queries that differ in EDNS, DO, AD, CD or RD miss.
        assert!(!cache.get(&again, &q2, t0 + Duration::from_secs(300), &mut out));
        assert!(out.is_empty());
        for (flags, edns) in [
            (0x0100, Some(false)),
            (0x0100, Some(true)),
            (0x0120, None),
            (0x0110, None),
            (0x0000, None),
        ] {
            let other = query(5, flags, "www.example.com", edns);
            let q3 = parse_query(&other).unwrap();
            assert!(
                !cache.get(&other, &q3, t0, &mut out),
                "flags {flags:#06x} edns {edns:?}"
            );
        }
        // A CD or RD=0 query's answer is not kept.
        let cd = query(6, 0x0110, "cd.example", None);
        let qcd = parse_query(&cd).unwrap();
        let acd = answer(&cd);
        cache.put(&qcd, &acd, &response_facts(&acd, &qcd).unwrap(), t0);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_cache_stays_within_its_size_and_replaces_an_entry_in_place() {
        let cache = Cache::new(SHARDS * 2);
        let t0 = Instant::now();
        for i in 0..1000 {
            let p = query(i, 0x0100, &format!("n{i}.example"), None);
            let q = parse_query(&p).unwrap();
            let a = answer(&p);
            cache.put(&q, &a, &response_facts(&a, &q).unwrap(), t0);
            assert!(cache.len() <= SHARDS * 2);
        }
        // The last one put is there; putting it again keeps one copy.
        let p = query(1, 0x0100, "n999.example", None);
        let q = parse_query(&p).unwrap();
        let a = answer(&p);
        let before = cache.len();
        cache.put(&q, &a, &response_facts(&a, &q).unwrap(), t0);
        assert_eq!(cache.len(), before);
        assert!(cache.get(&p, &q, t0, &mut Vec::new()));
    }
}
