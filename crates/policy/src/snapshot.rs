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

use crate::hash::{Keys, Prepared, reduce};

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

/// Filter bits per record: 10 bits, three of them set per name in one 64-bit
/// block, let through about 2.5% of absent names, for 1.25 bytes a record.
const FILTER_BITS: usize = 10;

/// Number of filter blocks for `records` names.
pub(crate) fn filter_len(records: usize) -> usize {
    (records * FILTER_BITS).div_ceil(64).max(1)
}

/// The block and the three bits a hash sets in (or needs from) the filter.
/// The block comes from the hash's low half, the bits from its high half,
/// so the two are independent.
#[inline(always)]
pub(crate) fn filter_probe(h: u64, blocks: usize) -> (usize, u64) {
    let block = reduce(h.rotate_left(32), blocks);
    let mask = (1u64 << ((h >> 40) & 63)) | (1u64 << ((h >> 46) & 63)) | (1u64 << ((h >> 52) & 63));
    (block, mask)
}

/// Builds the filter from every record's hash.
pub(crate) fn build_filter(records: usize, hashes: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut filter = vec![0u64; filter_len(records)];
    for h in hashes {
        let (block, mask) = filter_probe(h, filter.len());
        filter[block] |= mask;
    }
    filter
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
    /// Derived from `seed`; inline, not on the heap.
    pub(crate) keys: Keys,
    pub(crate) data: Vec<u64>,
    pub(crate) slots: Vec<u64>,
    /// Blocked Bloom filter over the records' hashes (see [`filter_probe`]);
    /// not saved, rebuilt on load from the hashes validation computes anyway.
    pub(crate) filter: Vec<u64>,
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

/// Suffixes whose probes are issued together; names with more labels (rare:
/// most have 2 to 5) take an unstaged path.
const STAGED: usize = 16;

/// What the probes of one query found so far.
#[derive(Default)]
struct Matches {
    listed: Option<Hit>,
    allow: Option<(Hit, u32)>,
}

impl Matches {
    /// Records the probe result of one suffix (`whole`: the name itself);
    /// called from the shortest suffix to the whole name.
    #[inline(always)]
    fn add(&mut self, whole: bool, hit: Option<Hit>) {
        if let Some(hit) = hit {
            if hit.flags & F_LISTED != 0 {
                self.listed = Some(hit);
            }
            if whole && hit.flags & F_ALLOW_EXACT != 0 {
                self.allow = Some((hit, F_ALLOW_EXACT));
            } else if hit.flags & F_ALLOW_SUFFIX != 0 {
                self.allow = Some((hit, F_ALLOW_SUFFIX));
            }
        }
    }
}

/// Names looked up together by [`Snapshot::lookup_many`].
const BATCH: usize = 8;

/// One lookup in flight, split into steps so that a batch of lookups can run
/// each step for all of them before the next: [`start`](Self::start) hashes
/// the suffixes and issues their table loads, [`resolve`](Self::resolve)
/// finds the candidate records and issues their loads,
/// [`finish`](Self::finish) checks the names and gives the verdict.
struct Pending {
    q: Prepared,
    /// Number of suffixes; over [`STAGED`], `finish` does it all unstaged.
    n: usize,
    hashes: [u64; STAGED],
    lens: [u8; STAGED],
    /// After `start`: the suffix's home slot, 0 if the filter ruled it out.
    /// After `resolve`: the slot with a matching tag, or 0.
    slot: [u64; STAGED],
    /// After `resolve`: the first word of the candidate's record.
    head: [u64; STAGED],
}

impl Pending {
    fn new() -> Pending {
        Pending {
            q: Prepared::empty(),
            n: 0,
            hashes: [0; STAGED],
            lens: [0; STAGED],
            slot: [0; STAGED],
            head: [0; STAGED],
        }
    }

    /// Hashes every suffix and tests it against the filter; for those that
    /// pass, loads the home slot. The loads do not depend on each other, so
    /// they overlap. The filter is small enough to stay in cache, unlike the
    /// table, so most suffixes (`com`, the extra labels of a query, names not
    /// listed at all) are ruled out without a trip to memory.
    #[inline(always)]
    fn start(&mut self, s: &Snapshot, qname: &[u8]) {
        self.n = 0;
        if !self.q.set(qname) {
            return;
        }
        let (filter, slots) = (&s.filter[..], &s.slots[..]);
        let mut n = 0;
        let Pending {
            q,
            hashes,
            lens,
            slot,
            ..
        } = self;
        q.for_each_suffix(&s.keys, |m, h| {
            if n < STAGED {
                let (block, mask) = filter_probe(h, filter.len());
                hashes[n] = h;
                lens[n] = m as u8; // m <= MAX_NAME_LEN < 256
                slot[n] = if filter[block] & mask == mask {
                    slots[reduce(h, slots.len())]
                } else {
                    0
                };
            }
            n += 1;
        });
        self.n = n;
    }

    /// Walks each probe to the slot whose tag matches (almost always the
    /// home slot or the next) and loads the first word of its record.
    #[inline(always)]
    fn resolve(&mut self, s: &Snapshot) {
        if self.n > STAGED {
            return;
        }
        let slots = &s.slots[..];
        for i in 0..self.n {
            let mut sl = self.slot[i];
            if sl == 0 {
                continue;
            }
            let tag = tag_of(self.hashes[i]);
            let mut pos = reduce(self.hashes[i], slots.len());
            while sl != 0 && ((sl >> 32) as u32) & !F_ALL != tag {
                pos += 1;
                if pos == slots.len() {
                    pos = 0;
                }
                sl = slots[pos];
            }
            self.slot[i] = sl;
            if sl != 0 {
                self.head[i] = s.data[sl as u32 as usize];
            }
        }
    }

    /// Checks the candidates' names and makes the verdict. Suffixes come
    /// shortest first, so every later hit is more specific than an earlier
    /// one and replaces it.
    #[inline(always)]
    fn finish<'a>(&self, s: &'a Snapshot) -> Verdict<'a> {
        let q = &self.q;
        let mut m = Matches::default();
        if self.n > STAGED {
            // More than STAGED labels: legal but rare, so no staging.
            q.for_each_suffix(&s.keys, |len, h| {
                m.add(len == q.len(), s.probe(h, q.suffix(len)));
            });
        }
        for i in 0..self.n.min(STAGED) {
            let sl = self.slot[i];
            if sl == 0 {
                continue;
            }
            let len = self.lens[i] as usize;
            let at = sl as u32 as usize;
            let hit = if header_of(self.head[i]).len == len && s.name_bytes(at) == q.suffix(len) {
                Some(Hit {
                    at,
                    flags: ((sl >> 32) as u32) & F_ALL,
                })
            } else {
                // A tag matched another name (1 in 2^29): probe on properly.
                s.probe(self.hashes[i], q.suffix(len))
            };
            m.add(len == q.len(), hit);
        }
        s.verdict(m)
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
        let mut p = Pending::new();
        p.start(self, qname);
        p.resolve(self);
        p.finish(self)
    }

    /// Looks up many names, calling `f` with each verdict in order; the same
    /// answers as [`lookup`](Self::lookup), faster.
    ///
    /// A single lookup spends most of its time waiting for memory: the table
    /// slot of each suffix, then the record of a hit, one after the other.
    /// Here the names are taken eight at a time and each step is run for all
    /// eight before the next, so the memory accesses of eight names are in
    /// flight together. A DNS front that reads packets in batches (as with
    /// `recvmmsg`) uses this.
    pub fn lookup_many<'a, 'q>(
        &'a self,
        qnames: impl IntoIterator<Item = &'q [u8]>,
        mut f: impl FnMut(Verdict<'a>),
    ) {
        let mut batch: [Pending; BATCH] = std::array::from_fn(|_| Pending::new());
        let mut names = qnames.into_iter();
        loop {
            let mut n = 0;
            for (p, q) in batch.iter_mut().zip(names.by_ref()) {
                p.start(self, q);
                n += 1;
            }
            for p in &mut batch[..n] {
                p.resolve(self);
            }
            for p in &batch[..n] {
                f(p.finish(self));
            }
            if n < BATCH {
                return;
            }
        }
    }

    fn verdict(&self, m: Matches) -> Verdict<'_> {
        match m {
            Matches {
                allow: Some((a, kind)),
                listed,
            } => Verdict::Allowed {
                allow_entry: self.allow_id(a, kind),
                matched_allow: self.name_at(a.at),
                listed: listed.map(|l| self.name_at(l.at)),
            },
            Matches {
                allow: None,
                listed: Some(l),
            } => Verdict::Listed {
                matched: self.name_at(l.at),
                indicators: self.ids_at(l.at),
            },
            _ => Verdict::NotListed,
        }
    }

    /// Finds the record of one (lowercased) name with hash `h`.
    #[inline(always)]
    fn probe(&self, h: u64, name: &[u8]) -> Option<Hit> {
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

    /// Heap bytes held by the snapshot (its three arrays' capacities).
    pub fn memory_bytes(&self) -> usize {
        (self.data.capacity() + self.slots.capacity() + self.filter.capacity()) * 8
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
