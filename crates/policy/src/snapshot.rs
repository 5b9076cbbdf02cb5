//! The snapshot itself: layout, lookup and iteration.
//!
//! # Layout
//!
//! Two flat arrays of `u64` words, nothing else on the heap:
//!
//! * `data` holds one *record* per distinct name (listed, allowlisted, or
//!   both), in ascending byte order of the names:
//!
//!   ```text
//!   [header u32][name bytes][zero padding to a word][listed ids: nids words]
//!   [allow-exact entry id, if flagged][allow-suffix entry id, if flagged]
//!   header = name_len (8 bits) | flags << 8 (3 bits) | nids << 11 (21 bits)
//!   ```
//!
//!   Keeping a name and its ids in one record means a hit costs one cache miss
//!   past the table, not one each for a name arena, an offset array and an id
//!   array; the indicator ids are word-aligned so `Verdict::Listed` can lend
//!   them as a plain `&[i64]`.
//!
//! * `slots` is an open-addressing hash table with linear probing: each slot
//!   is `0` (empty) or `(tag << 32) | record offset in words`, where the tag's
//!   top 29 bits come from the name's hash and its low 3 bits are the record's
//!   flags. A probe compares the tag before touching the record, so a miss
//!   almost never reads a name (a false tag match is 1 in 2^29).
//!
//! Why not `HashMap<Box<str>, Vec<i64>>`: that costs a heap allocation per name
//! and per id list plus ~40 bytes of pointers, lengths and capacities per entry
//! before any data, about twice the 64 bytes per domain budget; it also cannot
//! be written and read back as a few flat arrays. An immutable table is also
//! simple to hand-write: no deletion, no resizing.

use crate::hash::{Prepared, reduce};

/// Record flag: the name is listed (has at least one indicator id).
pub(crate) const F_LISTED: u32 = 1;
/// Record flag: an exact allowlist entry on this name.
pub(crate) const F_ALLOW_EXACT: u32 = 2;
/// Record flag: a suffix allowlist entry on this name.
pub(crate) const F_ALLOW_SUFFIX: u32 = 4;
pub(crate) const F_ALL: u32 = 7;

/// Largest number of indicator ids kept for one name (the header's 21 bits).
pub const MAX_IDS_PER_NAME: usize = (1 << 21) - 1;

/// Tags keep the hash's low 32 bits minus the three flag bits; the slot index
/// comes from the high bits (see [`reduce`]), so the two are independent.
#[inline(always)]
pub(crate) fn tag_of(h: u64) -> u32 {
    (h as u32) & !F_ALL
}

/// A record's header: the first four bytes of its first word in memory
/// order (not "the low half", which would differ by endianness).
#[inline(always)]
pub(crate) fn header_of(word: u64) -> Header {
    let b = word.to_ne_bytes();
    Header::decode(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The header fields of one record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub len: usize,
    pub flags: u32,
    pub nids: usize,
}

impl Header {
    #[inline(always)]
    pub fn decode(h: u32) -> Header {
        Header {
            len: (h & 0xff) as usize,
            flags: (h >> 8) & F_ALL,
            nids: (h >> 11) as usize,
        }
    }

    pub fn encode(self) -> u32 {
        debug_assert!(self.len <= 0xff && self.flags <= F_ALL && self.nids <= MAX_IDS_PER_NAME);
        self.len as u32 | (self.flags << 8) | ((self.nids as u32) << 11)
    }

    /// Words taken by the header and name.
    #[inline(always)]
    pub fn name_words(self) -> usize {
        (4 + self.len).div_ceil(8)
    }

    /// Words taken by the whole record.
    pub fn words(self) -> usize {
        self.name_words() + self.nids + (self.flags >> 1).count_ones() as usize
    }
}

/// The answer to "is this name listed, and why".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Neither the name nor any parent is listed, and no allowlist entry
    /// covers it.
    NotListed,
    /// The name or a parent is listed.
    Listed {
        /// The most specific listed name that matches (the query itself or the
        /// closest parent).
        matched: &'a str,
        /// Indicator ids that list `matched`, ascending, no duplicates.
        indicators: &'a [i64],
    },
    /// An allowlist entry covers the name: an exact entry on the name itself,
    /// or a suffix entry on it or a parent. The allowlist always wins.
    Allowed {
        /// Store id of the allowlist entry (the most specific that covers;
        /// on the query name itself an exact entry before a suffix one).
        allow_entry: i64,
        /// The name of that allowlist entry.
        matched_allow: &'a str,
        /// The most specific listed name the allowlist overrides, if any.
        listed: Option<&'a str>,
    },
}

impl Verdict<'_> {
    /// True for [`Verdict::Listed`]: the name should be blocked.
    pub fn is_listed(&self) -> bool {
        matches!(self, Verdict::Listed { .. })
    }
}

/// The compiled, immutable policy: see the crate documentation.
///
/// Build one with [`crate::SnapshotBuilder`], or read one back with
/// [`Snapshot::load`].
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) generation: u64,
    pub(crate) seed: u64,
    pub(crate) data: Vec<u64>,
    pub(crate) slots: Vec<u64>,
    pub(crate) records: usize,
    pub(crate) listed: usize,
    pub(crate) allows: usize,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("listed_names", &self.listed)
            .field("allow_entries", &self.allows)
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

/// A record found in the table.
#[derive(Clone, Copy)]
struct Hit {
    at: usize,
    flags: u32,
}

impl Snapshot {
    /// A snapshot with nothing listed and nothing allowed.
    pub fn empty(generation: u64) -> Snapshot {
        crate::SnapshotBuilder::new().build(generation)
    }

    /// Looks a query name up.
    ///
    /// Case-insensitive (ASCII), a trailing dot is accepted, and parents
    /// match: `a.b.bad.example` is listed when `bad.example` is, but
    /// `notbad.example` is not (matching is on label boundaries). The empty
    /// name, the root and names over 253 bytes are never listed. Allocates
    /// nothing.
    #[inline]
    pub fn lookup(&self, qname: &[u8]) -> Verdict<'_> {
        let Some(q) = Prepared::new(qname) else {
            return Verdict::NotListed;
        };
        let mut listed: Option<Hit> = None;
        let mut allow: Option<(Hit, u32)> = None;
        // Suffixes come shortest first, so every later hit is more specific
        // than an earlier one and simply replaces it. Each probe depends only
        // on the running hash, not on the previous probe's result, so the
        // CPU overlaps the table misses of one name's suffixes.
        q.for_each_suffix(self.seed, |start, h| {
            if let Some(hit) = self.find(h, &q.buf[start..q.len]) {
                if hit.flags & F_LISTED != 0 {
                    listed = Some(hit);
                }
                if start == 0 && hit.flags & F_ALLOW_EXACT != 0 {
                    allow = Some((hit, F_ALLOW_EXACT));
                } else if hit.flags & F_ALLOW_SUFFIX != 0 {
                    allow = Some((hit, F_ALLOW_SUFFIX));
                }
            }
        });
        match (allow, listed) {
            (Some((a, kind)), listed) => Verdict::Allowed {
                allow_entry: self.allow_id(a, kind),
                matched_allow: self.name_at(a.at),
                listed: listed.map(|l| self.name_at(l.at)),
            },
            (None, Some(l)) => Verdict::Listed {
                matched: self.name_at(l.at),
                indicators: self.ids_at(l.at),
            },
            (None, None) => Verdict::NotListed,
        }
    }

    /// Probes the table for one (lowercased) name with hash `h`.
    #[inline(always)]
    fn find(&self, h: u64, name: &[u8]) -> Option<Hit> {
        let slots = &self.slots[..];
        let tag = tag_of(h);
        let mut pos = reduce(h, slots.len());
        loop {
            let s = slots[pos];
            if s == 0 {
                return None;
            }
            let stag = (s >> 32) as u32;
            if stag & !F_ALL == tag {
                let at = s as u32 as usize;
                if self.name_bytes(at) == name {
                    return Some(Hit {
                        at,
                        flags: stag & F_ALL,
                    });
                }
            }
            pos += 1;
            if pos == slots.len() {
                pos = 0;
            }
        }
    }

    #[inline(always)]
    fn header(&self, at: usize) -> Header {
        header_of(self.data[at])
    }

    #[inline(always)]
    fn name_bytes(&self, at: usize) -> &[u8] {
        let len = self.header(at).len;
        let bytes: &[u8] = bytemuck::cast_slice(&self.data[at..]);
        &bytes[4..4 + len]
    }

    #[inline(always)]
    fn name_at(&self, at: usize) -> &str {
        // Build and load admit ASCII names only, so this cannot fail.
        std::str::from_utf8(self.name_bytes(at)).expect("snapshot names are ASCII")
    }

    #[inline(always)]
    fn ids_at(&self, at: usize) -> &[i64] {
        let h = self.header(at);
        let start = at + h.name_words();
        bytemuck::cast_slice(&self.data[start..start + h.nids])
    }

    fn allow_id(&self, hit: Hit, kind: u32) -> i64 {
        let h = self.header(hit.at);
        let mut i = hit.at + h.name_words() + h.nids;
        if kind == F_ALLOW_SUFFIX && h.flags & F_ALLOW_EXACT != 0 {
            i += 1;
        }
        self.data[i] as i64
    }

    /// The generation number given to [`crate::SnapshotBuilder::build`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of distinct listed names.
    pub fn listed_names(&self) -> usize {
        self.listed
    }

    /// Number of allowlist rules: distinct (kind, name) pairs.
    pub fn allow_entries(&self) -> usize {
        self.allows
    }

    /// Heap bytes held by the snapshot (the two arrays' capacities).
    pub fn memory_bytes(&self) -> usize {
        (self.data.capacity() + self.slots.capacity()) * 8
    }

    /// Listed names with their indicator ids, ascending by name (bytewise).
    pub fn iter_listed(&self) -> impl Iterator<Item = (&str, &[i64])> + '_ {
        self.records()
            .filter(move |&at| self.header(at).flags & F_LISTED != 0)
            .map(move |at| (self.name_at(at), self.ids_at(at)))
    }

    /// Allowlist rules: (kind, name, entry id), ascending by name, exact
    /// before suffix on the same name.
    pub fn iter_allow(
        &self,
    ) -> impl Iterator<Item = (kanki_indicators::AllowKind, &str, i64)> + '_ {
        use kanki_indicators::AllowKind;
        self.records().flat_map(move |at| {
            let h = self.header(at);
            let name = self.name_at(at);
            let hit = Hit { at, flags: h.flags };
            let exact = (h.flags & F_ALLOW_EXACT != 0)
                .then(|| (AllowKind::Exact, name, self.allow_id(hit, F_ALLOW_EXACT)));
            let suffix = (h.flags & F_ALLOW_SUFFIX != 0)
                .then(|| (AllowKind::Suffix, name, self.allow_id(hit, F_ALLOW_SUFFIX)));
            exact.into_iter().chain(suffix)
        })
    }

    /// Word offsets of all records, in order.
    fn records(&self) -> impl Iterator<Item = usize> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < self.data.len()).then(|| {
                let here = at;
                at += self.header(here).words();
                here
            })
        })
    }
}
