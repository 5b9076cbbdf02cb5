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
//! * `slots` is an open-addressing hash table of one `u64` per slot (see
//!   [`slot`]): the record's offset, its flags, a 21-bit tag from the name's
//!   hash and the distance from its home slot. Two slots per record (load
//!   factor 0.5), records kept in (home slot, tag) order (ordered linear
//!   probing, the layout Robin Hood hashing converges to), so that a probe for
//!   an absent name stops after a slot or two, and compares tags rather than
//!   names: a record is read only on a tag match.
//!
//! # Lookup
//!
//! Every suffix of the query on a label boundary (`a.b.bad.example`,
//! `b.bad.example`, `bad.example`, `example`) is one exact-match probe; the
//! hashes of all of them come from one pass over the name (see `hash`). The
//! probes are split in steps so that their memory accesses overlap: hash all
//! suffixes and prefetch their home slots, then walk the slots and prefetch
//! the candidate records, then compare names and build the verdict.
//! [`Snapshot::lookup_many`] runs each step for eight names at a time.
//!
//! Why not `HashMap<Box<str>, Vec<i64>>`: that costs a heap allocation per name
//! and per id list plus ~40 bytes of pointers, lengths and capacities per entry
//! before any data, about twice the 64 bytes per domain budget; it also cannot
//! be written and read back as a few flat arrays, and it hashes each suffix
//! from scratch. An immutable table is also simple to hand-write: no
//! deletion, no resizing. At 1,000,000 names of ~20 bytes this layout takes
//! about 48 bytes per name: ~32 of record, 16 of table.

use crate::hash::{Keys, Prepared};

/// Record flag: the name is listed (has at least one indicator id).
pub(crate) const F_LISTED: u32 = 1;
/// Record flag: an exact allowlist entry on this name.
pub(crate) const F_ALLOW_EXACT: u32 = 2;
/// Record flag: a suffix allowlist entry on this name.
pub(crate) const F_ALLOW_SUFFIX: u32 = 4;
pub(crate) const F_ALL: u32 = 7;

/// Largest number of indicator ids kept for one name (the header's 21 bits).
pub const MAX_IDS_PER_NAME: usize = (1 << 21) - 1;

/// Table slots: `0` for empty, or packed fields. Bits 0..32: the record's
/// offset in words. 32..35: the record's flags (so a slot is never 0 when
/// occupied: a record always has a flag). 35..43: distance from the home
/// slot, saturated at [`slot::DISP_MAX`]. 43..64: tag, the hash's low 21 bits
/// (the home slot comes from the high bits, see [`crate::hash::reduce`], so
/// the two are independent).
pub(crate) mod slot {
    use crate::hash::reduce;

    /// Largest storable distance from the home slot; a record further away
    /// is stored with this, meaning "home unknown, somewhere before".
    pub const DISP_MAX: usize = 255;

    #[inline(always)]
    pub fn tag_of(h: u64) -> u64 {
        h & 0x1f_ffff
    }

    #[inline(always)]
    pub fn home(h: u64, homes: usize) -> usize {
        reduce(h, homes)
    }

    pub fn pack(at: u32, flags: u32, disp: usize, h: u64) -> u64 {
        at as u64 | (flags as u64) << 32 | (disp.min(DISP_MAX) as u64) << 35 | tag_of(h) << 43
    }

    #[inline(always)]
    pub fn at(s: u64) -> usize {
        s as u32 as usize
    }

    #[inline(always)]
    pub fn flags(s: u64) -> u32 {
        (s >> 32) as u32 & 7
    }

    #[inline(always)]
    pub fn disp(s: u64) -> usize {
        (s >> 35) as usize & DISP_MAX
    }

    #[inline(always)]
    pub fn tag(s: u64) -> u64 {
        s >> 43
    }

    /// The order of records in the table: by home slot, then tag.
    #[inline(always)]
    pub fn key(home: usize, tag: u64) -> u64 {
        (home as u64) << 21 | tag
    }

    /// The key of the record in slot `s` at position `pos`; for a saturated
    /// displacement, where the home is unknown, 0 (a lower bound).
    #[inline(always)]
    pub fn key_at(s: u64, pos: usize) -> u64 {
        let d = disp(s);
        if d == DISP_MAX {
            0
        } else {
            key(pos - d, tag(s))
        }
    }

    /// Number of home slots for `n` records: load factor 0.5, where a probe
    /// for an absent name looks at two slots on average.
    pub fn homes(n: usize) -> usize {
        2 * n + 1
    }
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
    /// Derived from `seed`; inline, not on the heap.
    pub(crate) keys: Keys,
    pub(crate) data: Vec<u64>,
    /// The table: `homes` home slots, then overflow, then at least one empty
    /// slot, so that no probe wraps around or runs off the end.
    pub(crate) slots: Vec<u64>,
    /// Number of home slots: [`slot::homes`] of the record count.
    pub(crate) homes: usize,
    /// Label counts of the names held, as [`crate::hash::label_bit`]s: a
    /// lookup skips the suffixes no name could match, such as the bare TLD.
    pub(crate) labels: u64,
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
const STAGED: usize = 8;

/// What the probes of one query found so far: the most specific listed
/// name and the most specific covering allowlist entry. Suffixes may be added
/// in any order.
#[derive(Default)]
struct Matches {
    /// The listed record and its name length.
    listed: Option<(Hit, usize)>,
    /// The allowing record, the kind of entry, and its rank: twice the name
    /// length, plus one for an exact entry (which is then on the whole name
    /// and comes before a suffix entry there).
    allow: Option<(Hit, u32, usize)>,
}

impl Matches {
    /// Records the probe result of a suffix of `len` bytes (`whole`: the name
    /// itself).
    #[inline(always)]
    fn add(&mut self, len: usize, whole: bool, hit: Option<Hit>) {
        let Some(hit) = hit else { return };
        if hit.flags & F_LISTED != 0 && self.listed.is_none_or(|l| l.1 < len) {
            self.listed = Some((hit, len));
        }
        let allow = if whole && hit.flags & F_ALLOW_EXACT != 0 {
            Some((F_ALLOW_EXACT, 2 * len + 1))
        } else if hit.flags & F_ALLOW_SUFFIX != 0 {
            Some((F_ALLOW_SUFFIX, 2 * len))
        } else {
            None
        };
        let better = allow.filter(|&(_, rank)| self.allow.is_none_or(|a| a.2 < rank));
        if let Some((kind, rank)) = better {
            self.allow = Some((hit, kind, rank));
        }
    }
}

/// Asks the CPU to start fetching the cache line holding `x`, without
/// waiting for it. Unlike a load, a prefetch retires at once, so a long run of
/// them does not stall the pipeline and all their misses overlap.
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and has no effect
    // the program can observe. It needs SSE, which every x86_64 CPU has
    // (the target's baseline); the call is `unsafe` only because of that
    // target-feature rule.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// Byte equality for short strings without a call to `memcmp`: names are
/// 1 to 253 bytes, mostly under 32, where the call costs more than the
/// comparison. Overlapping 8-byte loads cover any length of 8 and over.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let load = |s: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 < n {
        if load(a, i) != load(b, i) {
            return false;
        }
        i += 8;
    }
    load(a, n - 8) == load(b, n - 8)
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
    homes: [usize; STAGED],
    lens: [u8; STAGED],
    /// After `resolve`: the slot with a matching tag, or 0.
    slot: [u64; STAGED],
    /// After `resolve`: bit i set if `slot[i]` is not 0.
    found: u32,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            q: Prepared::empty(),
            n: 0,
            hashes: [0; STAGED],
            homes: [0; STAGED],
            lens: [0; STAGED],
            slot: [0; STAGED],
            found: 0,
        }
    }

    /// Hashes every suffix and prefetches its home slot: the fetches of all
    /// suffixes (and, in a batch, of all names) are in flight together, and
    /// the CPU goes on with other work while they are.
    #[inline(always)]
    fn start(&mut self, s: &Snapshot, qname: &[u8]) {
        self.n = 0;
        if !self.q.set(qname) {
            return;
        }
        let slots = &s.slots[..];
        let mut n = 0;
        let Pending {
            q,
            hashes,
            homes,
            lens,
            ..
        } = self;
        q.for_each_suffix(&s.keys, s.labels, |m, h| {
            if n < STAGED {
                let home = slot::home(h, s.homes);
                hashes[n] = h;
                homes[n] = home;
                lens[n] = m as u8; // m <= MAX_NAME_LEN < 256
                prefetch(&slots[home]);
            }
            n += 1;
        });
        self.n = n;
    }

    /// Walks each probe to the slot whose tag matches (almost always the
    /// home slot or the next) and prefetches its record.
    #[inline(always)]
    fn resolve(&mut self, s: &Snapshot) {
        if self.n > STAGED {
            return;
        }
        self.found = 0;
        for i in 0..self.n {
            let sl = s.find_slot(self.homes[i], slot::tag_of(self.hashes[i]));
            self.slot[i] = sl;
            if sl != 0 {
                self.found |= 1 << i;
                // A record is about 40 bytes: its first line, and the next
                // one when it straddles two.
                let at = slot::at(sl);
                prefetch(&s.data[at]);
                if let Some(w) = s.data.get(at + 4) {
                    prefetch(w);
                }
            }
        }
    }

    /// Checks the candidates' names and makes the verdict.
    #[inline(always)]
    fn finish<'a>(&self, s: &'a Snapshot) -> Verdict<'a> {
        let q = &self.q;
        let mut m = Matches::default();
        if self.n > STAGED {
            // More than STAGED labels: legal but rare, so no staging.
            q.for_each_suffix(&s.keys, s.labels, |len, h| {
                m.add(len, len == q.len(), s.probe(h, q.suffix(len)));
            });
        }
        let mut found = if self.n > STAGED { 0 } else { self.found };
        while found != 0 {
            let i = found.trailing_zeros() as usize;
            found &= found - 1;
            let sl = self.slot[i];
            let len = self.lens[i] as usize;
            let at = slot::at(sl);
            let hit = if same_bytes(s.name_bytes(at), q.suffix(len)) {
                Some(Hit {
                    at,
                    flags: slot::flags(sl),
                })
            } else {
                // A tag matched another name (1 in 2^21 for each slot of
                // the same home): probe on properly.
                s.probe(self.hashes[i], q.suffix(len))
            };
            m.add(len, len == q.len(), hit);
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

    #[inline(always)]
    fn verdict(&self, m: Matches) -> Verdict<'_> {
        match m {
            Matches {
                allow: Some((a, kind, _)),
                listed,
            } => Verdict::Allowed {
                allow_entry: self.allow_id(a, kind),
                matched_allow: self.name_at(a.at),
                listed: listed.map(|l| self.name_at(l.0.at)),
            },
            Matches {
                allow: None,
                listed: Some((l, _)),
            } => Verdict::Listed {
                matched: self.name_at(l.at),
                indicators: self.ids_at(l.at),
            },
            _ => Verdict::NotListed,
        }
    }

    /// The first slot from `home` on whose tag is `tag` and whose home is
    /// `home` (or unknown), or 0.
    ///
    /// The table keeps the records sorted by (home slot, tag) (ordered linear
    /// probing, as Robin Hood hashing ends up): a probe walks from the home
    /// slot over the records of earlier homes that spilled into it and stops
    /// at the first empty slot or the first record that sorts after the one
    /// sought. An absent name costs a slot or two, in the same cache line,
    /// rather than the whole cluster.
    #[inline(always)]
    fn find_slot(&self, home: usize, tag: u64) -> u64 {
        let slots = &self.slots[..];
        let target = slot::key(home, tag);
        let mut pos = home;
        loop {
            let s = slots[pos];
            if s == 0 {
                return 0;
            }
            // Records are in (home, tag) order: one comparison says found,
            // go on, or stop.
            let key = slot::key_at(s, pos);
            if key >= target {
                return if key == target { s } else { 0 };
            }
            if slot::disp(s) == slot::DISP_MAX && slot::tag(s) == tag {
                // Too far from its home to say where that is: a candidate
                // all the same (the name decides).
                return s;
            }
            pos += 1;
        }
    }

    /// Finds the record of one (lowercased) name with hash `h`.
    fn probe(&self, h: u64, name: &[u8]) -> Option<Hit> {
        let slots = &self.slots[..];
        let home = slot::home(h, self.homes);
        let tag = slot::tag_of(h);
        let target = slot::key(home, tag);
        let mut pos = home;
        loop {
            let s = slots[pos];
            if s == 0 {
                return None;
            }
            let key = slot::key_at(s, pos);
            if key > target {
                return None;
            }
            let candidate =
                key == target || (slot::disp(s) == slot::DISP_MAX && slot::tag(s) == tag);
            if candidate && same_bytes(self.name_bytes(slot::at(s)), name) {
                return Some(Hit {
                    at: slot::at(s),
                    flags: slot::flags(s),
                });
            }
            pos += 1;
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
        let name = self.name_bytes(at);
        debug_assert!(name.is_ascii());
        // SAFETY: every record name is ASCII, hence UTF-8: the builder
        // refuses other names and `load` refuses a file with any other name
        // byte; records are never modified afterwards. (`from_utf8` here
        // cost a tenth of a lookup.)
        unsafe { std::str::from_utf8_unchecked(name) }
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

    /// Heap bytes held by the snapshot (its two arrays' capacities).
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
