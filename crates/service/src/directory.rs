//! The subscriber directory as the front ends use it: the compiled binding
//! index with the subscribers behind its subjects, consent, attribution
//! under a legal ground (always audited), and the retention purge.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use kanki_audit::{AuditEntry, Ground};
use kanki_directory::{BindingIndex, BindingRef, Candidate, IndexBuilder, Subject, SubjectKind};
use kanki_store::{Store, StoredBinding};
use serde::Serialize;

use crate::{Kanki, ServiceError};

/// The binding index with the subscribers behind its holder numbers, as of
/// one directory generation, and the bindings changed since laid over it.
/// Immutable: a change makes a new `Compiled` sharing the index. A holder
/// number is the number the store gives a subject (see
/// `DirectoryBackend::binding_subjects`), in the index and the overlay alike.
pub struct Compiled {
    pub generation: u64,
    base: Arc<Base>,
    overlay: Arc<Overlay>,
    /// The last entry of the store's change log laid over the index.
    seq: i64,
}

/// The compiled index and the subscribers behind its holder numbers.
struct Base {
    index: BindingIndex,
    /// Holder number → subscriber id, where an identifier maps it.
    subscriber_of: Vec<Option<Arc<str>>>,
    /// Holder numbers naming an inside (private) address behind CGNAT
    /// (asked of each candidate of each lookup: foldhash, not SipHash).
    inside_address: foldhash::HashMap<u32, IpAddr>,
}

/// The bindings changed since the index was built, each as it is now: a
/// lookup takes a binding from here rather than from the index (a Stop
/// ends in the overlay a session the index still holds open). Folded into
/// the index by the next rebuild.
///
/// In two levels, so that a look costs what it lays over rather than all
/// that was laid since the build (a busy feed lays hundreds of thousands
/// of bindings between rebuilds): `recent`, copied by each look that
/// changes it, and `settled`, shared by the looks and folded anew only
/// when `recent` has grown past a share of it. A binding or a prefix in
/// `recent` is as it is now; `settled` answers for the others. A fold is
/// made on a thread of its own and swapped in by a later look (see
/// [`Fold`]), so that no look waits for the copy of `settled`.
#[derive(Clone, Default)]
struct Overlay {
    settled: Arc<Level>,
    recent: Arc<Level>,
    /// The prefix lengths present in either level, IPv4 and IPv6, longest
    /// first.
    lens: [Vec<u8>; 2],
    /// The prefixes of both levels, for the question every DNS query asks
    /// first: may the overlay cover this address at all? Most addresses
    /// are not in it, and the filter answers that from a table that stays
    /// in cache where the prefix tables do not.
    filter: PrefixFilter,
}

/// One level of the [`Overlay`].
#[derive(Clone, Default, PartialEq)]
struct Level {
    bindings: foldhash::HashMap<i64, BindingRef>,
    /// The changed bindings of each prefix, and who holds it now.
    by_prefix: foldhash::HashMap<ipnet::IpNet, Touched>,
    /// The subjects of the changed bindings: their subscriber, and the
    /// inside address a CGNAT subject names.
    subscriber_of: foldhash::HashMap<u32, Option<Arc<str>>>,
    inside_address: foldhash::HashMap<u32, IpAddr>,
}

/// `recent` is folded into `settled` once it holds more bindings than
/// this, and more than a quarter of `settled`'s: the fold copies
/// `settled`, so growing the share keeps its cost per change bounded.
/// (16 in unit tests, so that they fold.)
const FOLD_AT_LEAST: usize = if cfg!(test) { 16 } else { 65_536 };

/// A fold of an overlay's `recent` level into its `settled` one, under way
/// on a thread of its own: a look copies neither, and a later look swaps
/// the result in (see [`Overlay::settle`]).
struct Fold {
    /// The settled level it folds into: an overlay with another (a rebuild
    /// was swapped in since) drops the result.
    into: Arc<Level>,
    /// The recent level when the fold began.
    snapshot: Arc<Level>,
    folded: std::thread::JoinHandle<Level>,
}

/// A prefix the overlay holds changes of.
#[derive(Clone, Default, PartialEq)]
struct Touched {
    /// The ids of its changed bindings: most prefixes have one or two, kept
    /// inline, so that a look's copy of the overlay allocates nothing per
    /// prefix (a busy feed's overlay holds hundreds of thousands).
    ids: smallvec::SmallVec<[i64; 2]>,
    /// Who holds it now, decided when its changes were laid over: the DNS
    /// front's question for an address a change touched, answered with
    /// one probe instead of the index's and the overlay's full lists.
    now: Option<HeldNow>,
}

/// [`holder_now`](kanki_directory::holder_now) of every address of one
/// prefix, the same from `from` up to (not including) `until`. Kept only
/// where the prefix's own bindings decide it (one of them is held, and the
/// index has no longer prefix that could hold part of it), so that a change
/// to a wider prefix cannot alter it; a change to the prefix itself
/// decides again.
#[derive(Clone, Copy, PartialEq)]
struct HeldNow {
    from: i64,
    until: i64,
    holder: Option<u32>,
}

/// What the overlay says of an address for the DNS front's question.
enum NowLookup {
    /// No change touched it: the index answers.
    Untouched,
    /// Decided, with the holder (if one is alone).
    Held(Option<u32>),
    /// Touched, but not decided in advance: the full lists answer.
    Full,
}

/// A blocked Bloom filter of prefixes (address bits and length): one
/// 64-bit word per prefix, two bits in it. No false negatives; about 1 %
/// false positives at the 16 bits a prefix it keeps (it doubles as it
/// fills). Written here since it is a few lines and keyed by prefixes
/// rather than hashed values.
#[derive(Clone)]
struct PrefixFilter {
    words: Vec<u64>,
    /// `64 - log2(words.len())`: the hash's top bits pick the word.
    shift: u32,
    seed: u64,
    len: usize,
}

impl Default for PrefixFilter {
    fn default() -> Self {
        PrefixFilter {
            words: vec![0; 64],
            shift: 64 - 6,
            seed: rand_seed(),
            len: 0,
        }
    }
}

impl PrefixFilter {
    /// `addr` (unmapped) truncated to `len` bits, and `len`: a prefix's key.
    #[inline]
    fn key(addr: IpAddr, len: u8) -> (u128, u8) {
        let bits = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a).checked_shr(32 - u32::from(len)).unwrap_or(0)),
            IpAddr::V6(a) => u128::from(a).checked_shr(128 - u32::from(len)).unwrap_or(0),
        };
        (bits, len + if addr.is_ipv6() { 128 } else { 0 })
    }

    #[inline]
    fn hash(&self, (bits, len): (u128, u8)) -> u64 {
        // Multiply-fold (as foldhash does); the seed is random per process,
        // so chosen addresses cannot aim at one word.
        let fold = |a: u64, b: u64| {
            let m = u128::from(a) * u128::from(b);
            (m as u64) ^ ((m >> 64) as u64)
        };
        let h = fold(
            bits as u64 ^ self.seed,
            0x9e37_79b9_7f4a_7c15 ^ u64::from(len),
        );
        fold(h ^ (bits >> 64) as u64, 0xd6e8_feb8_6659_fd93 ^ self.seed)
    }

    #[inline]
    fn mask(h: u64) -> u64 {
        (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63))
    }

    /// Puts `net` in, first doubling the words (and putting `all`, the
    /// `count` prefixes put so far, in again) when it is full.
    fn insert<'a>(
        &mut self,
        net: ipnet::IpNet,
        count: usize,
        all: impl Iterator<Item = &'a ipnet::IpNet>,
    ) {
        if (self.len + 1) * 16 > self.words.len() * 64 {
            let words = (self.words.len() * 2).max((count + 1).div_ceil(4).next_power_of_two());
            self.words = vec![0; words];
            self.shift = 64 - words.trailing_zeros();
            self.len = 0;
            for n in all {
                self.put(*n);
            }
        }
        self.put(net);
    }

    fn put(&mut self, net: ipnet::IpNet) {
        let h = self.hash(Self::key(net.addr(), net.prefix_len()));
        self.words[(h >> self.shift) as usize] |= Self::mask(h);
        self.len += 1;
    }

    /// Whether the prefix of `len` bits holding `addr` may have been put.
    #[inline]
    fn may_hold(&self, addr: IpAddr, len: u8) -> bool {
        let h = self.hash(Self::key(addr, len));
        let m = Self::mask(h);
        self.words[(h >> self.shift) as usize] & m == m
    }
}

/// IPv4, or the IPv4 address an IPv4-mapped IPv6 address carries.
fn unmapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.recent.bindings.is_empty() && self.settled.bindings.is_empty()
    }

    /// Changed bindings held (one changed in both levels counts twice: a
    /// bound, not a count).
    fn len(&self) -> usize {
        self.recent.bindings.len() + self.settled.bindings.len()
    }

    /// `key` in one map of the levels: `recent`'s entry, else `settled`'s.
    fn find<'a, K: Eq + std::hash::Hash + 'a, V: 'a>(
        &'a self,
        map: impl Fn(&'a Level) -> &'a foldhash::HashMap<K, V>,
        key: &K,
    ) -> Option<&'a V> {
        map(&self.recent)
            .get(key)
            .or_else(|| map(&self.settled).get(key))
    }

    /// A changed binding as it is now.
    fn binding(&self, id: i64) -> Option<&BindingRef> {
        self.find(|l| &l.bindings, &id)
    }

    fn touched(&self, net: &ipnet::IpNet) -> Option<&Touched> {
        self.find(|l| &l.by_prefix, net)
    }

    /// The changed bindings of `net`, each once.
    fn of_prefix(&self, net: ipnet::IpNet) -> impl Iterator<Item = &BindingRef> {
        let recent: &[i64] = self.recent.by_prefix.get(&net).map_or(&[], |t| &t.ids);
        // A binding of `recent`'s list may be in `settled`'s too (a fold
        // swapped in keeps in `recent` the prefixes changed since it began).
        let settled = self
            .settled
            .by_prefix
            .get(&net)
            .into_iter()
            .flat_map(|t| &t.ids)
            .filter(move |id| !recent.contains(id));
        recent
            .iter()
            .chain(settled)
            .filter_map(|&id| self.binding(id))
    }

    fn subscriber_of(&self, h: u32) -> Option<&Option<Arc<str>>> {
        self.find(|l| &l.subscriber_of, &h)
    }

    fn inside_address(&self, h: u32) -> Option<&IpAddr> {
        self.find(|l| &l.inside_address, &h)
    }

    fn has_inside_addresses(&self) -> bool {
        !self.recent.inside_address.is_empty() || !self.settled.inside_address.is_empty()
    }

    /// The changed bindings whose prefix contains `addr`.
    fn covering(&self, addr: IpAddr) -> impl Iterator<Item = &BindingRef> {
        let addr = unmapped(addr);
        let lens = &self.lens[usize::from(addr.is_ipv6())];
        lens.iter()
            .filter_map(move |&len| Some(ipnet::IpNet::new(addr, len).ok()?.trunc()))
            .flat_map(|net| self.of_prefix(net))
    }

    /// Whether `recent` has grown past its share (see [`FOLD_AT_LEAST`]).
    fn fold_due(&self) -> bool {
        let recent = self.recent.bindings.len();
        recent > FOLD_AT_LEAST && recent > self.settled.bindings.len() / 4
    }

    /// Folds `recent` into a new `settled` here and now, if due.
    fn fold_if_due(&mut self) {
        if self.fold_due() {
            self.settled = Arc::new(Overlay::folded(&self.settled, &self.recent));
            self.recent = Arc::default();
        }
    }

    /// `settled` with `recent` laid over it: what a fold makes.
    fn folded(settled: &Level, recent: &Level) -> Level {
        let mut out = settled.clone();
        out.bindings
            .extend(recent.bindings.iter().map(|(&id, b)| (id, b.clone())));
        for (net, t) in &recent.by_prefix {
            let e = out.by_prefix.entry(*net).or_default();
            for &id in &t.ids {
                if !e.ids.contains(&id) {
                    e.ids.push(id);
                }
            }
            // Decided when it was last laid over: the newer answer.
            e.now = t.now;
        }
        out.subscriber_of
            .extend(recent.subscriber_of.iter().map(|(&h, s)| (h, s.clone())));
        out.inside_address.extend(&recent.inside_address);
        out
    }

    /// Swaps in `folded`, made from `into` and `snapshot` (the two levels
    /// when the fold began), if `into` is still this overlay's settled
    /// level; `recent` then keeps only what was laid since the snapshot
    /// (an entry as it was then is in `folded`). Whether it was swapped in.
    fn settle(&mut self, into: &Arc<Level>, snapshot: &Level, folded: Arc<Level>) -> bool {
        if !Arc::ptr_eq(&self.settled, into) {
            return false;
        }
        self.settled = folded;
        fn changed_since<K: Eq + std::hash::Hash, V: PartialEq>(
            now: &mut foldhash::HashMap<K, V>,
            then: &foldhash::HashMap<K, V>,
        ) {
            now.retain(|k, v| then.get(k) != Some(v));
        }
        let r = Arc::make_mut(&mut self.recent);
        changed_since(&mut r.bindings, &snapshot.bindings);
        changed_since(&mut r.by_prefix, &snapshot.by_prefix);
        changed_since(&mut r.subscriber_of, &snapshot.subscriber_of);
        changed_since(&mut r.inside_address, &snapshot.inside_address);
        true
    }

    /// Whether the overlay may cover `addr`: `false` means it does not,
    /// for a probe of the Bloom filter per prefix length present.
    #[inline]
    fn may_cover(&self, addr: IpAddr) -> bool {
        let addr = unmapped(addr);
        self.lens[usize::from(addr.is_ipv6())]
            .iter()
            .any(|&len| self.filter.may_hold(addr, len))
    }

    /// The DNS front's question (who holds `addr` at `now`) as far as
    /// the overlay answers it: the most specific prefix it holds changes
    /// of decides, where that prefix was decided in advance. Each prefix
    /// length present costs a probe of the Bloom filter, which stays in
    /// cache, and only an address it may hold probes the prefix table.
    #[inline]
    fn held_now(&self, addr: IpAddr, now: i64) -> NowLookup {
        let addr = unmapped(addr);
        for &len in &self.lens[usize::from(addr.is_ipv6())] {
            if !self.filter.may_hold(addr, len) {
                continue;
            }
            let Ok(net) = ipnet::IpNet::new(addr, len) else {
                continue;
            };
            if let Some(t) = self.touched(&net.trunc()) {
                return match t.now {
                    Some(h) if h.from <= now && now < h.until => NowLookup::Held(h.holder),
                    _ => NowLookup::Full,
                };
            }
        }
        NowLookup::Untouched
    }

    /// Lays one change over the others.
    fn put(&mut self, c: kanki_store::BindingChange) {
        let b = BindingRef {
            id: c.binding.id,
            prefix: c.binding.prefix,
            ports: c.binding.ports,
            from: c.binding.from,
            to: c.binding.to,
            holder: c.binding.subject,
        };
        if Arc::make_mut(&mut self.recent)
            .bindings
            .insert(b.id, b.clone())
            .is_none()
        {
            if self.touched(&b.prefix).is_none() {
                let (recent, settled) = (&self.recent.by_prefix, &self.settled.by_prefix);
                self.filter.insert(
                    b.prefix,
                    recent.len() + settled.len(),
                    recent.keys().chain(settled.keys()),
                );
            }
            // Listed already when a fold swapped in since took the binding
            // out of `recent` but kept its prefix there.
            let ids = &mut Arc::make_mut(&mut self.recent)
                .by_prefix
                .entry(b.prefix)
                .or_default()
                .ids;
            if !ids.contains(&b.id) {
                ids.push(b.id);
            }
            let lens = &mut self.lens[usize::from(b.prefix.addr().is_ipv6())];
            if !lens.contains(&b.prefix.prefix_len()) {
                lens.push(b.prefix.prefix_len());
                lens.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
        if c.kind == SubjectKind::InsideAddress
            && let Ok(addr) = c.value.parse::<IpAddr>()
        {
            Arc::make_mut(&mut self.recent)
                .inside_address
                .insert(b.holder, addr);
        }
        Arc::make_mut(&mut self.recent)
            .subscriber_of
            .insert(b.holder, c.subscriber.map(Arc::from));
    }
}

impl Compiled {
    /// Reads every binding and subject from the store and compiles them,
    /// with the changes made meanwhile laid over them.
    pub fn load(store: &Store, now: DateTime<Utc>) -> Result<Compiled, ServiceError> {
        // The change log's head first: a change made while the bindings
        // are read is laid over them again (the same binding as it is).
        Compiled::compile(store, now)?.caught_up(store, now, OVERLAY_MOST)
    }

    /// This index with the changes made since its read began laid over it
    /// and folded here (a catch-up is a fold's worth at once); as it is
    /// when there were none, or too many for an overlay (then what was
    /// read is what there is, and the caller decides).
    fn caught_up(
        self,
        store: &Store,
        now: DateTime<Utc>,
        overlay_most: usize,
    ) -> Result<Compiled, ServiceError> {
        Ok(
            match self.with_changes(store, now, overlay_most, &mut |_, _| {})? {
                Changes::Laid(mut next, _) => {
                    Arc::make_mut(&mut next.overlay).fold_if_due();
                    next
                }
                Changes::None | Changes::Stale => self,
            },
        )
    }

    /// The index compiled from the store with nothing laid over it yet,
    /// remembering the change log's head read before the bindings (a
    /// rebuild's first half).
    fn compile(store: &Store, now: DateTime<Utc>) -> Result<Compiled, ServiceError> {
        let seq = store.directory().binding_change_head()?;
        let generation = store.directory().directory_generation()?;
        let base = Base::load(store, now)?;
        Ok(Compiled {
            generation,
            base: Arc::new(base),
            overlay: Arc::default(),
            seq,
        })
    }

    /// The bindings of one address around one moment, read from the
    /// store's index of prefixes (with, behind CGNAT, those of the inside
    /// addresses they name), compiled: what [`Kanki::who`] needs to answer
    /// one lookup, in milliseconds, without compiling the directory.
    pub fn for_address(
        store: &Store,
        addr: IpAddr,
        at: DateTime<Utc>,
        skew: u32,
    ) -> Result<Compiled, ServiceError> {
        let d = store.directory();
        let (from, to) = (
            at.timestamp() - i64::from(skew),
            at.timestamp() + i64::from(skew),
        );
        let mut found: Vec<kanki_store::BindingScan> = Vec::new();
        d.bindings_covering(unmapped(addr), from, to, &mut |b| found.push(b))?;
        let (mut subscriber_of, mut inside_address) = (Vec::new(), Default::default());
        let mut subscribers = HashMap::new();
        let mut seen = 0;
        // One step behind CGNAT, as `Found::lookup` follows it.
        for round in 0..2 {
            let mut fresh: Vec<u32> = found[seen..].iter().map(|b| b.subject).collect();
            seen = found.len();
            fresh.sort_unstable();
            fresh.dedup();
            let mut inside = Vec::new();
            d.subjects_numbered(&fresh, &mut |s| {
                if s.kind == SubjectKind::InsideAddress
                    && let Ok(a) = s.value.parse::<IpAddr>()
                {
                    inside.push(a);
                }
                name_subject(&mut subscriber_of, &mut inside_address, &mut subscribers, s);
            })?;
            if round == 0 {
                for a in inside {
                    d.bindings_covering(unmapped(a), from, to, &mut |b| found.push(b))?;
                }
            }
        }
        let mut builder = IndexBuilder::with_capacity(found.len());
        for b in &found {
            builder.add(&BindingRef {
                id: b.id,
                prefix: b.prefix,
                ports: b.ports,
                from: b.from,
                to: b.to,
                holder: b.subject,
            });
        }
        let base = Base {
            index: builder.build(Utc::now().timestamp(), rand_seed()),
            subscriber_of,
            inside_address,
        };
        Ok(Compiled {
            generation: 0,
            base: Arc::new(base),
            overlay: Arc::default(),
            seq: 0,
        })
    }

    pub fn empty() -> Compiled {
        Compiled {
            generation: 0,
            base: Arc::new(Base {
                index: BindingIndex::empty(),
                subscriber_of: Vec::new(),
                inside_address: Default::default(),
            }),
            overlay: Arc::default(),
            seq: 0,
        }
    }

    /// This compiled index with the changes after its last laid over it.
    /// `overlap` is told of each new binding that holds an address another
    /// holder holds too. Each change is laid over as it is read (a bulk
    /// import's millions are never held at once); the overlay's size is
    /// counted in distinct bindings (a session's Start, Interims and Stop
    /// are one), and past `overlay_most` the answer is [`Changes::Stale`].
    fn with_changes(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        overlay_most: usize,
        overlap: &mut dyn FnMut(&BindingRef, &[Candidate]),
    ) -> Result<Changes, ServiceError> {
        let mut overlay: Option<Overlay> = None;
        let mut after = self.seq;
        let mut n = 0;
        let now = now.timestamp();
        let mut held = Vec::new();
        let mut touched = foldhash::HashSet::default();
        loop {
            // Cloned only once there is something to lay over it.
            let mut read_one = |c: kanki_store::BindingChange| {
                let o = overlay.get_or_insert_with(|| (*self.overlay).clone());
                n += 1;
                touched.insert(c.binding.prefix);
                self.lay_one(o, c, now, &mut held, overlap);
            };
            let read =
                store
                    .directory()
                    .binding_changes_since(after, CHANGES_PER_READ, &mut read_one)?;
            if read.missed || overlay.as_ref().is_some_and(|o| o.len() > overlay_most) {
                return Ok(Changes::Stale);
            }
            after = read.last;
            if !read.more {
                break;
            }
        }
        if after == self.seq {
            return Ok(Changes::None);
        }
        if let Some(o) = overlay.as_mut() {
            for net in touched {
                let decided = self.decide_now(o, net, now, &mut held);
                if let Some(t) = Arc::make_mut(&mut o.recent).by_prefix.get_mut(&net) {
                    t.now = decided;
                }
            }
        }
        let overlay = overlay.map_or_else(|| self.overlay.clone(), Arc::new);
        Ok(Changes::Laid(
            Compiled {
                generation: self.generation,
                base: self.base.clone(),
                overlay,
                seq: after,
            },
            n,
        ))
    }

    /// Lays change `c` over `overlay`, telling `overlap` when its binding
    /// starts on an address another holder still holds.
    fn lay_one(
        &self,
        overlay: &mut Overlay,
        c: kanki_store::BindingChange,
        now: i64,
        held: &mut Vec<Candidate>,
        overlap: &mut dyn FnMut(&BindingRef, &[Candidate]),
    ) {
        let (id, prefix, ports) = (c.binding.id, c.binding.prefix, c.binding.ports);
        let fresh = ports.is_none() && overlay.binding(id).is_none();
        if fresh {
            held.clear();
            self.who_at_over(overlay, prefix.addr(), None, now, 0, held);
        }
        overlay.put(c);
        let Some(b) = overlay.binding(id) else {
            unreachable!("the binding was just laid over");
        };
        if fresh
            && b.prefix.prefix_len() == b.prefix.max_prefix_len()
            && b.from <= now
            && b.to.is_none_or(|t| now < t)
            && !held.iter().any(|x| x.binding.id == id)
        {
            let others: Vec<Candidate> = held
                .iter()
                .filter(|x| {
                    x.binding.prefix == b.prefix
                        && x.binding.holder != b.holder
                        && x.binding.to.is_none_or(|t| now < t)
                })
                .cloned()
                .collect();
            if !others.is_empty() {
                overlap(b, &others);
            }
        }
    }

    /// Who holds every address of `net` at `now` and until when, where
    /// `net`'s own bindings decide it (see [`HeldNow`]); `None` where the
    /// full lists must answer each time.
    fn decide_now(
        &self,
        overlay: &Overlay,
        net: ipnet::IpNet,
        now: i64,
        cands: &mut Vec<Candidate>,
    ) -> Option<HeldNow> {
        let len = net.prefix_len();
        // A longer prefix in the index could hold part of `net`.
        if self
            .base
            .index
            .longest_prefix_len(net.addr().is_ipv4())
            .is_some_and(|l| l > len)
        {
            return None;
        }
        cands.clear();
        self.who_at_over(overlay, net.addr(), None, now, 0, cands);
        // A longer prefix of the overlay holding `net.addr()` may not hold
        // the others: it answers for its own addresses (probed first).
        cands.retain(|c| c.binding.prefix.prefix_len() <= len);
        let holds = |b: &BindingRef| b.from <= now && b.to.is_none_or(|t| now < t);
        let own = |c: &&Candidate| c.binding.prefix == net && holds(&c.binding);
        if !cands.iter().any(|c| own(&c)) {
            return None;
        }
        // Until one of its bindings held now ends, or another one starts.
        let ends = cands.iter().filter(own).filter_map(|c| c.binding.to);
        let starts = overlay.of_prefix(net).map(|b| b.from).filter(|&f| f > now);
        let until = ends
            .chain(starts)
            .chain(self.base.index.next_start(net, now))
            .min()
            .unwrap_or(i64::MAX);
        Some(HeldNow {
            from: now,
            until,
            holder: kanki_directory::holder_now(cands, now),
        })
    }

    /// Number of bindings in the compiled index.
    pub fn bindings(&self) -> usize {
        self.base.index.len()
    }

    /// Number of bindings changed since the index was built, laid over it.
    pub fn changed_since_built(&self) -> usize {
        self.overlay.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.base.index.memory_bytes()
    }

    /// The subscriber whose identifier holder number `h` is, if any.
    fn subscriber_of(&self, h: u32) -> Option<&str> {
        match self.overlay.subscriber_of(h) {
            Some(s) => s.as_deref(),
            None => self.base.subscriber_of.get(h as usize)?.as_deref(),
        }
    }

    /// The inside address holder number `h` names, behind CGNAT.
    fn inside_address(&self, h: u32) -> Option<IpAddr> {
        self.overlay
            .inside_address(h)
            .or_else(|| self.base.inside_address.get(&h))
            .copied()
    }

    fn has_inside_addresses(&self) -> bool {
        !self.base.inside_address.is_empty() || self.overlay.has_inside_addresses()
    }

    /// [`BindingIndex::who_at`], with the changed bindings as they are now.
    pub fn who_at(
        &self,
        addr: IpAddr,
        port: Option<u16>,
        t: i64,
        skew: u32,
        out: &mut Vec<Candidate>,
    ) {
        self.who_at_over(&self.overlay, addr, port, t, skew, out)
    }

    fn who_at_over(
        &self,
        overlay: &Overlay,
        addr: IpAddr,
        port: Option<u16>,
        t: i64,
        skew: u32,
        out: &mut Vec<Candidate>,
    ) {
        let first = out.len();
        self.base.index.who_at(addr, port, t, skew, out);
        // No changed binding's prefix holds `addr` (the filter's answer,
        // from cache): the index's candidates stand as they are.
        if overlay.is_empty() || !overlay.may_cover(addr) {
            return;
        }
        let mut i = first;
        while i < out.len() {
            if overlay.binding(out[i].binding.id).is_some() {
                out.remove(i);
            } else {
                i += 1;
            }
        }
        let before = out.len();
        let skew = i64::from(skew);
        for b in overlay.covering(addr) {
            let to = b.to.unwrap_or(i64::MAX).max(b.from);
            if b.from - skew > t || to.saturating_add(skew) < t {
                continue;
            }
            if let (Some(p), Some(r)) = (port, b.ports)
                && !(r.first <= p && p <= r.last)
            {
                continue;
            }
            let near = t < b.from + skew || (b.to.is_some() && t + skew > to);
            out.push(Candidate {
                binding: b.clone(),
                near_boundary: near,
            });
        }
        if out.len() > before {
            // Most specific prefix first, then by start, as the index gives them.
            out[first..].sort_by_key(|c| {
                (
                    std::cmp::Reverse(c.binding.prefix.prefix_len()),
                    c.binding.from,
                )
            });
        }
    }

    /// The holder of `addr` now, as [`kanki_directory::holder_now`] decides.
    #[inline]
    pub fn holder_now(&self, addr: IpAddr, now: i64) -> Option<u32> {
        if self.overlay.is_empty() {
            return self.base.index.who_now(addr, now);
        }
        match self.overlay.held_now(addr, now) {
            NowLookup::Untouched => self.base.index.who_now(addr, now),
            NowLookup::Held(h) => h,
            NowLookup::Full => self.holder_now_full(addr, now),
        }
    }

    #[cold]
    fn holder_now_full(&self, addr: IpAddr, now: i64) -> Option<u32> {
        let mut cands = Vec::new();
        self.who_at(addr, None, now, 0, &mut cands);
        kanki_directory::holder_now(&cands, now)
    }

    /// The subscriber holding `addr` now, if one does (see
    /// [`holder_now`](Self::holder_now)). For the DNS front's consent
    /// check, which is covered by the subscriber's consent and not written
    /// to the audit log (see `../shared/DESIGN.md`).
    #[inline]
    pub fn subscriber_now(&self, addr: IpAddr, now: i64) -> Option<&str> {
        self.subscriber_of(self.holder_now(addr, now)?)
    }
}

/// What [`Compiled::with_changes`] found.
enum Changes {
    None,
    /// The compiled index with them laid over it, and how many there were.
    Laid(Compiled, usize),
    /// They cannot be followed (the log was trimmed past them, or there are
    /// more than an overlay should hold): rebuild.
    Stale,
}

/// At most this many changes are read from the log at once.
const CHANGES_PER_READ: u32 = 50_000;
/// An overlay holding more changed bindings than this is folded into the
/// index by a rebuild rather than grown (a bulk import), unless the
/// directory is given another bound (`directory.overlay_most`).
pub const OVERLAY_MOST: usize = 2_000_000;

/// Numbers one subject: its subscriber (one `Arc` per subscriber, shared by
/// their identifiers) and the inside address it names.
fn name_subject(
    subscriber_of: &mut Vec<Option<Arc<str>>>,
    inside_address: &mut foldhash::HashMap<u32, IpAddr>,
    subscribers: &mut HashMap<String, Arc<str>>,
    s: kanki_store::SubjectEntry<'_>,
) {
    if s.kind == SubjectKind::InsideAddress
        && let Ok(addr) = s.value.parse::<IpAddr>()
    {
        inside_address.insert(s.number, addr);
    }
    let Some(id) = s.subscriber else { return };
    let n = s.number as usize;
    if subscriber_of.len() <= n {
        subscriber_of.resize(n + 1, None);
    }
    let shared = match subscribers.get(id) {
        Some(a) => a.clone(),
        None => {
            let a: Arc<str> = Arc::from(id);
            subscribers.insert(id.to_string(), a.clone());
            a
        }
    };
    subscriber_of[n] = Some(shared);
}

impl Base {
    /// Reads every binding and subject from the store and compiles them.
    /// The bindings are read and sorted in id ranges on as many threads as
    /// there are cores (10M rows must load in seconds at start), then
    /// merged.
    fn load(store: &Store, now: DateTime<Utc>) -> Result<Base, ServiceError> {
        let started = std::time::Instant::now();
        let d = store.directory();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        let ranges: Vec<RangeInclusive<i64>> = match d.binding_id_span()? {
            None => Vec::new(),
            Some((first, last)) => {
                let step = ((last - first) / threads + 1).max(1);
                (0..threads)
                    .map(|k| first.saturating_add(k * step))
                    .take_while(|&a| a <= last)
                    .map(|a| a..=a.saturating_add(step - 1).min(last))
                    .collect()
            }
        };
        let parts = std::thread::scope(|scope| {
            let running: Vec<_> = ranges
                .into_iter()
                .map(|ids| scope.spawn(move || read_sorted(store, ids)))
                .collect();
            running
                .into_iter()
                .map(|t| t.join().expect("a load thread panicked"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let read = started.elapsed();

        // After the bindings, so that every subject they name is listed.
        let mut subscriber_of: Vec<Option<Arc<str>>> = Vec::new();
        let mut inside_address = foldhash::HashMap::default();
        let mut subscribers: HashMap<String, Arc<str>> = HashMap::new();
        d.binding_subjects(&mut |s| {
            name_subject(&mut subscriber_of, &mut inside_address, &mut subscribers, s)
        })?;
        let subjects_read = started.elapsed();
        let merged = IndexBuilder::merge(parts);
        let merged_at = started.elapsed();
        let index = merged.build(now.timestamp(), rand_seed());
        tracing::debug!(
            bindings = index.len(),
            read_sorted_s = read.as_secs_f64(),
            subjects_s = (subjects_read - read).as_secs_f64(),
            merged_s = (merged_at - subjects_read).as_secs_f64(),
            built_s = (started.elapsed() - merged_at).as_secs_f64(),
            "directory index compiled"
        );
        Ok(Base {
            index,
            subscriber_of,
            inside_address,
        })
    }
}

/// Lowers the calling thread's scheduling priority (nice 10); threads it
/// starts inherit it. On Linux the nice value is a thread's own, so the
/// rest of the process keeps its priority.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; a failure leaves
    // the priority as it was, which is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// One load thread's share: the bindings with ids in `ids`, sorted.
fn read_sorted(store: &Store, ids: RangeInclusive<i64>) -> Result<IndexBuilder, ServiceError> {
    // Ids are dense, so the range is about the row count: reserved once
    // rather than grown (and copied) in steps; capped, as a range thinned by
    // retention may hold far fewer.
    let mut builder = IndexBuilder::with_capacity(
        (ids.end().saturating_sub(*ids.start()) as usize)
            .saturating_add(1)
            .min(1 << 26),
    );
    store.directory().scan_bindings(ids, &mut |row| {
        builder.add(&BindingRef {
            id: row.id,
            prefix: row.prefix,
            ports: row.ports,
            from: row.from,
            to: row.to,
            holder: row.subject,
        });
    })?;
    builder.sort();
    Ok(builder)
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x006b_616e_6b69_u64)
}

/// The directory a running kanki keeps: the compiled index with the
/// bindings changed since laid over it, and the set of consenting
/// subscribers, each swapped whole when it changes.
pub struct Directory {
    compiled: ArcSwap<Compiled>,
    /// Consenting subscribers, hashed with foldhash (the DNS front asks on
    /// every query; the ids are the operator's, not a client's).
    consent: ArcSwap<HashSet<String, foldhash::fast::RandomState>>,
    consent_generation: std::sync::atomic::AtomicU64,
    /// When the index was last rebuilt.
    built: std::sync::Mutex<std::time::Instant>,
    /// Held while changes are laid over the index, so that two followers
    /// (the refresher, a rebuild catching up) do not drop each other's.
    following: std::sync::Mutex<()>,
    /// The change log could not be followed: rebuild at the next refresh.
    stale: std::sync::atomic::AtomicBool,
    /// The index in use lacks changes it could not take (more than
    /// `overlay_most`): the refresher waits for the rebuild.
    behind: std::sync::atomic::AtomicBool,
    events: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// The most changed bindings laid over the index (see `OVERLAY_MOST`).
    overlay_most: usize,
    /// The overlay's fold under way, if one is (locked with `following`).
    fold: std::sync::Mutex<Option<Fold>>,
}

impl Directory {
    pub fn load(store: &Store, now: DateTime<Utc>) -> Result<Directory, ServiceError> {
        Directory::load_with(store, now, OVERLAY_MOST)
    }

    /// [`Directory::load`], laying at most `overlay_most` changed bindings
    /// over the index (`directory.overlay_most`).
    pub fn load_with(
        store: &Store,
        now: DateTime<Utc>,
        overlay_most: usize,
    ) -> Result<Directory, ServiceError> {
        let d = Directory {
            overlay_most,
            compiled: ArcSwap::from_pointee(Compiled::empty()),
            consent: ArcSwap::from_pointee(HashSet::default()),
            consent_generation: Default::default(),
            built: std::sync::Mutex::new(std::time::Instant::now()),
            following: Default::default(),
            stale: Default::default(),
            behind: Default::default(),
            events: Default::default(),
            fold: Default::default(),
        };
        d.reload_consent(store)?;
        d.compiled.store(Arc::new(Compiled::load(store, now)?));
        Ok(d)
    }

    pub fn compiled(&self) -> Arc<Compiled> {
        self.compiled.load_full()
    }

    /// Counts `n` directory events of a kind (`overlap`,
    /// `stop_without_start`, a follower's skip reason...), for the metrics.
    pub fn count(&self, event: &str, n: u64) {
        if n > 0 {
            let mut e = self.events.lock().unwrap_or_else(|p| p.into_inner());
            *e.entry(event.to_string()).or_default() += n;
        }
    }

    /// Every event counted so far, by kind.
    pub fn events(&self) -> Vec<(String, u64)> {
        let e = self.events.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Lays the bindings changed since the last look over the index (any
    /// process's changes: the store's change log). Cheap when nothing
    /// changed; `kanki serve` calls it every `refresh_every`. Returns the
    /// number of changes read.
    pub fn follow_changes(&self, store: &Store, now: DateTime<Utc>) -> Result<usize, ServiceError> {
        let _one = self.following.lock().unwrap_or_else(|p| p.into_inner());
        if self.behind.load(std::sync::atomic::Ordering::Relaxed) {
            // Past the overlay's bound: not read again each look; the
            // rebuild due at once takes them.
            return Ok(0);
        }
        let current = self.compiled.load_full();
        Ok(self.lay_over(&current, store, now)?.unwrap_or(0))
    }

    /// Swaps in `c` (the index in use, or a rebuilt one) with the changes
    /// after its last laid over it, the follower's lock held; the number
    /// of changes. When they are too many to lay over (`None`), a rebuild
    /// is asked for, and `c` is swapped in as it is only if the index in
    /// use lacks changes too (is `behind`): over one that holds them all
    /// it would hide them until the next rebuild.
    fn lay_over(
        &self,
        c: &Arc<Compiled>,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>, ServiceError> {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let mut overlaps = 0;
        let mut first = None;
        let changed = c.with_changes(store, now, self.overlay_most, &mut |b, others| {
            overlaps += 1;
            first.get_or_insert_with(|| {
                (
                    b.prefix,
                    b.id,
                    others.iter().map(|o| o.binding.id).collect::<Vec<_>>(),
                )
            });
        });
        // One line per look, however many (a NAS that lost its Stops
        // would otherwise fill the log).
        if let Some((prefix, binding, still_open)) = first {
            tracing::warn!(
                overlaps,
                %prefix,
                binding,
                ?still_open,
                "bindings start on addresses other holders still hold; the newest start decides who holds each now"
            );
        }
        self.count("overlap", overlaps);
        let changed = changed?;
        tracing::debug!(
            changes = match &changed {
                Changes::Laid(_, n) => *n,
                _ => 0,
            },
            stale = matches!(changed, Changes::Stale),
            overlay = match &changed {
                Changes::Laid(next, _) => next.changed_since_built(),
                _ => c.changed_since_built(),
            },
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            "binding changes laid over the index"
        );
        let in_use = Arc::ptr_eq(c, &self.compiled.load());
        match changed {
            Changes::Laid(mut next, n) => {
                self.fold_beside(&mut next);
                self.compiled.store(Arc::new(next));
                self.behind.store(false, Relaxed);
                Ok(Some(n))
            }
            Changes::None => {
                if !in_use {
                    self.compiled.store(c.clone());
                }
                self.behind.store(false, Relaxed);
                Ok(Some(0))
            }
            Changes::Stale => {
                if in_use || self.behind.load(Relaxed) {
                    if !in_use {
                        self.compiled.store(c.clone());
                    }
                    self.behind.store(true, Relaxed);
                    self.count("changes wait for a rebuild", 1);
                }
                self.stale.store(true, Relaxed);
                Ok(None)
            }
        }
    }

    /// Swaps a finished fold into `next`'s overlay, and starts one when
    /// its recent level is due (see [`Fold`]). Called by a look, with the
    /// follower's lock held; `next`'s overlay is its own.
    fn fold_beside(&self, next: &mut Compiled) {
        let mut fold = self.fold.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fold.take_if(|f| f.folded.is_finished()) {
            let folded = f
                .folded
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if Arc::make_mut(&mut next.overlay).settle(&f.into, &f.snapshot, Arc::new(folded)) {
                self.count("overlay folded", 1);
            }
        }
        if fold.is_some() || !next.overlay.fold_due() {
            return;
        }
        let (into, snapshot) = (next.overlay.settled.clone(), next.overlay.recent.clone());
        let (i, r) = (into.clone(), snapshot.clone());
        match std::thread::Builder::new()
            .name("directory-fold".into())
            .spawn(move || Overlay::folded(&i, &r))
        {
            Ok(folded) => {
                *fold = Some(Fold {
                    into,
                    snapshot,
                    folded,
                })
            }
            // No thread to be had: folded here, as the look's own work.
            Err(_) => Arc::make_mut(&mut next.overlay).fold_if_due(),
        }
    }

    /// Waits for the fold under way to finish (tests: a look after this
    /// one swaps it in).
    #[cfg(test)]
    fn wait_for_fold(&self) {
        while self
            .fold
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|f| !f.folded.is_finished())
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Picks up changes made through the store: consent at once when it
    /// changed, and the changed bindings, laid over the index. Cheap;
    /// `kanki serve` calls it every `refresh_every`, on its own task, so a
    /// rebuild running meanwhile delays nothing.
    pub fn refresh(&self, store: &Store, now: DateTime<Utc>) -> Result<(), ServiceError> {
        use std::sync::atomic::Ordering::Relaxed;
        if store.directory().consent_generation()? != self.consent_generation.load(Relaxed) {
            self.reload_consent(store)?;
        }
        self.follow_changes(store, now)?;
        Ok(())
    }

    /// Rebuilds the index when bindings changed and the last rebuild is at
    /// least `rebuild_every` old (a busy RADIUS feed changes bindings all
    /// the time; rebuilding ten million of them takes seconds), or at once
    /// when the changes could not be followed. Returns whether it did.
    pub fn rebuild_if_due(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        rebuild_every: std::time::Duration,
    ) -> Result<bool, ServiceError> {
        let stale = self.stale.load(std::sync::atomic::Ordering::Relaxed);
        if !stale && store.directory().directory_generation()? == self.compiled.load().generation {
            return Ok(false);
        }
        {
            let built = self.built.lock().unwrap_or_else(|p| p.into_inner());
            if !stale && built.elapsed() < rebuild_every {
                return Ok(false);
            }
        }
        self.rebuild(store, now)?;
        Ok(true)
    }

    /// Compiles the index anew from the store (the followers keep laying
    /// changes over the old one meanwhile), then swaps it in with the
    /// changes made since its read began laid over it.
    pub fn rebuild(&self, store: &Store, now: DateTime<Utc>) -> Result<(), ServiceError> {
        let started = std::time::Instant::now();
        // Compiled on threads of their own at a lower priority: on a busy
        // machine the rebuild (seconds of CPU on every core) must not
        // starve the refresher, which is what brings a change to the front
        // meanwhile, nor the RADIUS listener.
        let fresh = std::thread::scope(|s| {
            s.spawn(|| {
                lower_this_threads_priority();
                // Most of the changes made during the read, laid over it
                // while the refresher goes on over the index in use; only
                // those made since are laid under its lock (below), so
                // that a look never waits for the whole catch-up. (Their
                // overlaps were told when the refresher laid them; too
                // many for an overlay, the locked pass finds so too, and
                // decides.)
                Compiled::compile(store, now)?.caught_up(store, now, self.overlay_most)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        let laid = self.swap_rebuilt(fresh, store, now);
        tracing::debug!(
            took_s = started.elapsed().as_secs_f64(),
            "directory index rebuilt"
        );
        laid
    }

    /// The second half of [`rebuild`](Self::rebuild): `fresh`, compiled
    /// from the store, swapped in with the changes made since its read
    /// began laid over it. When they are too many for an overlay, the index
    /// in use stays (the refresher has laid them over it), unless it is
    /// stale too, and another rebuild is due at once: a rebuild never hides
    /// a change the front already answers by.
    fn swap_rebuilt(
        &self,
        fresh: Compiled,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let _one = self.following.lock().unwrap_or_else(|p| p.into_inner());
        self.stale
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.lay_over(&Arc::new(fresh), store, now)?;
        self.count("index rebuilt", 1);
        *self.built.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        Ok(())
    }

    pub fn reload_consent(&self, store: &Store) -> Result<(), ServiceError> {
        let d = store.directory();
        // The generation first: a change made while reading is then seen
        // again next time rather than missed.
        let g = d.consent_generation()?;
        self.consent
            .store(Arc::new(d.consenting()?.into_iter().collect()));
        self.consent_generation
            .store(g, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Number of subscribers who consent now.
    pub fn consenting_count(&self) -> usize {
        self.consent.load().len()
    }

    /// Whether the subscriber consents now.
    pub fn consents(&self, subscriber: &str) -> bool {
        self.consent.load().contains(subscriber)
    }

    /// Calls `f` with the subscriber behind `addr` now, if exactly one
    /// holds it, and whether they consent. Allocates nothing and takes no
    /// lock: the DNS front asks this for every query.
    #[inline]
    pub fn with_subscriber_now<R>(
        &self,
        addr: IpAddr,
        now: i64,
        f: impl FnOnce(&str, bool) -> R,
    ) -> Option<R> {
        let compiled = self.compiled.load();
        let subscriber = compiled.subscriber_now(addr, now)?;
        Some(f(subscriber, self.consent.load().contains(subscriber)))
    }

    /// The consenting subscriber behind `addr` now, if there is one: the
    /// question the DNS front asks for each query.
    pub fn consenting_subscriber_now(&self, addr: IpAddr, now: i64) -> Option<String> {
        let c = self.compiled.load();
        let s = c.subscriber_now(addr, now)?;
        self.consents(s).then(|| s.to_string())
    }
}

/// An attribution request: who held `address` (and `port`) at `at`.
#[derive(Clone, Debug, Serialize)]
pub struct WhoQuery {
    pub address: IpAddr,
    pub port: Option<u16>,
    pub at: DateTime<Utc>,
    pub ground: Ground,
    pub purpose: String,
    pub actor: String,
    /// What the ground rests on (checked: see [`Kanki::who`]).
    pub cites: Cites,
}

/// What an attribution cites for its ground: an emergency evacuation
/// serves a case or an event; a legitimate business act names its
/// program (OP25B, IP53B, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Cites {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
}

/// How sure an attribution is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// One holder; the moment is well inside a binding of exactly this
    /// address (a /32 or /128, or the CGNAT port block of the given port).
    Exact,
    /// One holder; well inside a binding of a wider prefix (a delegated
    /// IPv6 prefix, a shared address without the port).
    InsideSession,
    /// One holder, but the moment is within the clock-skew tolerance of a
    /// binding's start or end.
    NearBoundary,
    /// Several holders are possible: all are listed.
    Ambiguous,
    /// No binding covers the address at that moment.
    None,
}

impl Confidence {
    /// The name it is serialized with.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Exact => "exact",
            Confidence::InsideSession => "inside-session",
            Confidence::NearBoundary => "near-boundary",
            Confidence::Ambiguous => "ambiguous",
            Confidence::None => "none",
        }
    }
}

/// One possible holder.
#[derive(Clone, Debug, Serialize)]
pub struct Holder {
    /// The subscriber, when an identifier maps the subject to one.
    pub subscriber: Option<String>,
    /// As the network record names them.
    pub subject: Subject,
    pub near_boundary: bool,
    pub binding: StoredBinding,
    /// When the binding names an inside (private) address behind CGNAT:
    /// the bindings of that address at the same moment, through which the
    /// subscriber was found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub through: Vec<StoredBinding>,
}

/// The answer to a [`WhoQuery`], as audited.
#[derive(Clone, Debug, Serialize)]
pub struct Attribution {
    pub confidence: Confidence,
    /// The one subscriber, unless ambiguous or unknown.
    pub subscriber: Option<String>,
    pub holders: Vec<Holder>,
    /// Sequence number of the audit record of this lookup.
    pub audit_seq: i64,
}

impl Kanki {
    /// Who held an address at a moment. Refused without a purpose; the
    /// lookup and its answer, with the bindings read from the store as
    /// evidence, are written to the audit log before the answer is
    /// returned, and no answer is returned if that write fails.
    ///
    /// The ground is checked, not only named: an emergency evacuation must
    /// cite a case or an event that exists; a legitimate business act names
    /// its program; consent holds only for a subscriber who consented at the
    /// moment asked about (otherwise the lookup is recorded as refused and
    /// nobody is named).
    pub fn who(&self, c: &Compiled, q: &WhoQuery) -> Result<Attribution, ServiceError> {
        check_asked(&q.actor, &q.purpose)?;
        self.check_cites(q.ground, &q.cites)?;
        let skew = self.clock_skew();
        let found = Found::lookup(c, q.address, q.port, q.at, skew);
        let mut ids: Vec<i64> = found.binding_ids().collect();
        ids.sort_unstable();
        ids.dedup();
        let stored: HashMap<i64, StoredBinding> = self
            .store
            .directory()
            .bindings_by_id(&ids)?
            .into_iter()
            .map(|b| (b.id, b))
            .collect();
        let (mut answer, mut entry) = found.answer(c, q, skew, &stored);
        if q.ground == Ground::Consent {
            let consented = match &answer.subscriber {
                Some(id) => self.consented_at(id, q.at)?,
                None => false,
            };
            if !consented {
                let why = "consent is the ground only for a subscriber who consented at the moment asked about";
                entry.result = serde_json::json!({ "refused": why }).to_string();
                self.store.directory().audit_append(&entry)?;
                return Err(ServiceError::Invalid(format!("refused: {why}")));
            }
        }
        answer.audit_seq = self.store.directory().audit_append(&entry)?.seq;
        Ok(answer)
    }

    /// [`who`](Self::who), answered from the store's index of prefixes
    /// (the bindings of this one address), without compiling the
    /// directory: for a process that asks once (`kanki who`).
    pub fn who_in_store(&self, q: &WhoQuery) -> Result<Attribution, ServiceError> {
        check_asked(&q.actor, &q.purpose)?;
        let c = Compiled::for_address(&self.store, q.address, q.at, self.clock_skew())?;
        self.who(&c, q)
    }

    /// Whether a subscriber's consent held at `at`, by its history of
    /// grants and revocations.
    pub fn consented_at(&self, subscriber: &str, at: DateTime<Utc>) -> Result<bool, ServiceError> {
        let Some(s) = self.store.directory().get_subscriber(subscriber)? else {
            return Ok(false);
        };
        let mut history = s.consent_history.clone();
        history.sort_by_key(|e| e.at);
        Ok(match history.iter().rev().find(|e| e.at <= at) {
            Some(e) => e.granted,
            // No recorded change before then: the consent it was
            // registered with, if that was before the moment.
            None => s.consent && s.consent_at.is_some_and(|t| t <= at),
        })
    }

    /// What a ground must cite, checked against the store.
    pub fn check_cites(&self, ground: Ground, cites: &Cites) -> Result<(), ServiceError> {
        match ground {
            Ground::EmergencyEvacuation => {
                let removal = self.store.removal();
                match (cites.case, cites.event) {
                    (None, None) => Err(ServiceError::Invalid(
                        "an emergency evacuation cites the case or the event it serves (case or event)".into(),
                    )),
                    (Some(id), _) if removal.get_case(id)?.is_none() => {
                        Err(ServiceError::Invalid(format!("no case {id} to cite")))
                    }
                    (_, Some(id)) if removal.get_event(id)?.is_none() => {
                        Err(ServiceError::Invalid(format!("no event {id} to cite")))
                    }
                    _ => Ok(()),
                }
            }
            Ground::LegitimateBusiness => {
                if cites.program.as_deref().is_none_or(|p| p.trim().is_empty()) {
                    return Err(ServiceError::Invalid(
                        "a legitimate business act names its program (program: OP25B, IP53B, ...)"
                            .into(),
                    ));
                }
                Ok(())
            }
            Ground::Consent => Ok(()),
        }
    }

    /// Many lookups made for one purpose under one ground (an ingest
    /// attributes hundreds of thousands of events a second): each judged
    /// as [`who`](Self::who) judges, from the index alone (no evidence is
    /// read back from the store), and all listed, each with its answer and
    /// the ids of the bindings it rests on, in one audit record. The record
    /// is returned, not written: the caller appends it in the transaction
    /// that keeps anything of the answers (the removal store does so with
    /// the events, [`kanki_store::EventBatch::audits`]), so that an answer
    /// is never kept without its record, and an ingest's writes do not
    /// wait on a separate audit transaction per batch.
    pub fn who_bulk(
        &self,
        c: &Compiled,
        asked: &BulkAsk,
        lookups: &[Lookup],
    ) -> Result<BulkAttribution, ServiceError> {
        check_asked(&asked.actor, &asked.purpose)?;
        let skew = self.clock_skew();
        let answers: Vec<BulkAnswer> = lookups
            .iter()
            .map(|l| {
                let found = Found::lookup(c, l.address, l.port, l.at, skew);
                let subs = found.subscribers(c);
                let (confidence, first) =
                    judge(found.cands.iter().zip(subs.iter().copied()), l.port);
                BulkAnswer {
                    confidence,
                    subscriber: first.map(str::to_string),
                    bindings: found.cands.iter().map(|x| x.binding.id).collect(),
                }
            })
            .collect();
        // Each lookup and each answer is a row under named columns, the
        // time in seconds since 1970 (UTC): a record lists a batch's tens
        // of thousands of lookups, and objects with RFC 3339 times made it
        // three times the size, to build and to hash.
        #[derive(Serialize)]
        struct Input {
            columns: [&'static str; 3],
            lookups: Vec<(IpAddr, Option<u16>, i64)>,
            clock_skew_secs: u32,
        }
        #[derive(Serialize)]
        struct Output<'a> {
            columns: [&'static str; 3],
            answers: Vec<(&'static str, Option<&'a str>, &'a [i64])>,
        }
        let input = Input {
            columns: ["address", "port", "at"],
            lookups: lookups
                .iter()
                .map(|l| (l.address, l.port, l.at.timestamp()))
                .collect(),
            clock_skew_secs: skew,
        };
        let output = Output {
            columns: ["confidence", "subscriber", "bindings"],
            answers: answers
                .iter()
                .map(|a| {
                    (
                        a.confidence.as_str(),
                        a.subscriber.as_deref(),
                        &a.bindings[..],
                    )
                })
                .collect(),
        };
        let entry = AuditEntry {
            at: Utc::now(),
            actor: asked.actor.clone(),
            action: "who-bulk".into(),
            ground: Some(asked.ground),
            purpose: asked.purpose.clone(),
            input: serde_json::to_string(&input).unwrap_or_default(),
            result: serde_json::to_string(&output).unwrap_or_default(),
        };
        Ok(BulkAttribution {
            answers,
            record: entry,
        })
    }

    fn clock_skew(&self) -> u32 {
        self.config
            .directory
            .clock_skew
            .as_secs()
            .min(u32::MAX as u64) as u32
    }

    /// Removes bindings and audit records past their retention, recording
    /// the purge in the audit log.
    /// Verifies the whole audit chain, one record at a time (memory stays
    /// flat whatever the log's size), and holds it to `checkpoints` (signed
    /// heads, see [`kanki_audit::checkpoint`]).
    pub fn verify_audit(
        &self,
        checkpoints: &[kanki_audit::checkpoint::Checkpoint],
    ) -> Result<Result<kanki_audit::Verified, kanki_audit::Broken>, ServiceError> {
        self.verify_audit_with(checkpoints, &mut |_| {})
    }

    /// [`verify_audit`](Self::verify_audit), telling `progress` the number
    /// of the record reached every [`AUDIT_PROGRESS_EVERY`] records.
    pub fn verify_audit_with(
        &self,
        checkpoints: &[kanki_audit::checkpoint::Checkpoint],
        progress: &mut dyn FnMut(i64),
    ) -> Result<Result<kanki_audit::Verified, kanki_audit::Broken>, ServiceError> {
        let d = self.store.directory();
        let mut v = kanki_audit::Verifier::new(&d.audit_anchor()?);
        for c in checkpoints {
            v.expect(c.seq, &c.hash);
        }
        let mut n = 0u64;
        d.audit_records(&kanki_store::AuditFilter::default(), &mut |r| {
            n += 1;
            if n.is_multiple_of(AUDIT_PROGRESS_EVERY) {
                progress(r.seq);
            }
            v.push(&r)
        })?;
        Ok(v.finish())
    }

    /// The chain's head now: the last record's sequence number and hash
    /// (for an empty log, the number before the next record and the
    /// anchor). What a checkpoint signs.
    pub fn audit_head(&self) -> Result<(i64, String), ServiceError> {
        let d = self.store.directory();
        let mut head = None;
        let newest = kanki_store::AuditFilter {
            limit: Some(1),
            ..Default::default()
        };
        d.audit_records(&newest, &mut |r| head = Some((r.seq, r.hash)))?;
        match head {
            Some(h) => Ok(h),
            None => Ok((0, d.audit_anchor()?)),
        }
    }

    pub fn purge_expired(
        &self,
        now: DateTime<Utc>,
        actor: &str,
    ) -> Result<kanki_store::PurgeCounts, ServiceError> {
        let d = &self.config.directory;
        let age = |h: kanki_config::HumanDuration| {
            now - chrono::Duration::seconds(h.as_secs().min(i64::MAX as u64 / 2) as i64)
        };
        let bindings_before = age(d.bindings_retention);
        let audit_before = age(self.config.audit.retention);
        let record = AuditEntry {
            at: now,
            actor: actor.into(),
            action: "purge".into(),
            ground: None,
            purpose: "retention: remove bindings and audit records past their configured periods"
                .into(),
            input: serde_json::json!({
                "bindings_ended_before": bindings_before,
                "audit_before": audit_before,
            })
            .to_string(),
            result: String::new(),
        };
        Ok(self
            .store
            .directory()
            .purge(bindings_before, audit_before, record)?)
    }
}

/// Refuses a lookup nobody answers for.
fn check_asked(actor: &str, purpose: &str) -> Result<(), ServiceError> {
    if purpose.trim().is_empty() {
        return Err(ServiceError::Invalid(
            "an attribution needs a purpose (and a ground): say why it is made".into(),
        ));
    }
    if actor.trim().is_empty() {
        return Err(ServiceError::Invalid(
            "an attribution needs an actor".into(),
        ));
    }
    Ok(())
}

/// Who asks many lookups at once, under which ground and why.
#[derive(Clone, Debug)]
pub struct BulkAsk {
    pub actor: String,
    pub ground: Ground,
    pub purpose: String,
}

/// One lookup of a bulk attribution: `address` (and `port`) at `at`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Lookup {
    pub address: IpAddr,
    pub port: Option<u16>,
    pub at: DateTime<Utc>,
}

/// The answer to one [`Lookup`].
#[derive(Clone, Debug, Serialize)]
pub struct BulkAnswer {
    pub confidence: Confidence,
    /// The one subscriber, unless ambiguous or unknown.
    pub subscriber: Option<String>,
    /// The bindings the answer rests on.
    pub bindings: Vec<i64>,
}

/// The answers of [`Kanki::who_bulk`], in the order asked, and the audit
/// record listing them all, to be appended by the caller.
#[derive(Clone, Debug)]
pub struct BulkAttribution {
    pub answers: Vec<BulkAnswer>,
    pub record: AuditEntry,
}

/// How sure the candidates make an answer, and the one subscriber if there
/// is one: each candidate with the subscriber it resolves to.
fn judge<'c>(
    cands: impl Iterator<Item = (&'c kanki_directory::Candidate, Option<&'c str>)> + Clone,
    port: Option<u16>,
) -> (Confidence, Option<&'c str>) {
    // Holders are told apart by subscriber, else by subject. Only whether
    // they are all one matters; most lookups have one candidate.
    fn holder<'c>((c, s): (&kanki_directory::Candidate, Option<&'c str>)) -> Result<&'c str, u32> {
        s.ok_or(c.binding.holder)
    }
    let mut all = cands.clone();
    let Some((c, first)) = all.next() else {
        return (Confidence::None, None);
    };
    let one = holder((c, first));
    let one_holder = all.all(|x| holder(x) == one);
    let confidence = match one_holder {
        true if cands.clone().all(|(c, _)| c.near_boundary) => Confidence::NearBoundary,
        true => {
            let exact = cands.clone().any(|(c, _)| {
                let b = &c.binding;
                !c.near_boundary
                    && match (b.ports, port) {
                        (Some(_), Some(_)) => true,
                        (Some(_), None) => false,
                        (None, _) => b.prefix.prefix_len() == b.prefix.max_prefix_len(),
                    }
            });
            if exact {
                Confidence::Exact
            } else {
                Confidence::InsideSession
            }
        }
        false => Confidence::Ambiguous,
    };
    match confidence {
        Confidence::Ambiguous | Confidence::None => (confidence, None),
        _ => (confidence, first),
    }
}

/// The bindings one query matched in the index, before the store is read.
struct Found {
    cands: Vec<kanki_directory::Candidate>,
    /// For a candidate naming an inside (private) address behind CGNAT:
    /// the bindings of that address at the same moment.
    inside: foldhash::HashMap<usize, Vec<kanki_directory::Candidate>>,
}

impl Found {
    fn lookup(
        c: &Compiled,
        address: IpAddr,
        port: Option<u16>,
        at: DateTime<Utc>,
        skew: u32,
    ) -> Found {
        let mut cands = Vec::new();
        c.who_at(address, port, at.timestamp(), skew, &mut cands);
        // A CGNAT log that names the inside address: who held that address
        // then (one step; an inside address behind another NAT is not
        // followed further).
        let mut inside = foldhash::HashMap::default();
        let cgnat = c.has_inside_addresses();
        for (i, cand) in cands.iter().enumerate().filter(|_| cgnat) {
            if let Some(addr) = c.inside_address(cand.binding.holder) {
                let mut inner = Vec::new();
                c.who_at(addr, None, at.timestamp(), skew, &mut inner);
                inside.insert(i, inner);
            }
        }
        Found { cands, inside }
    }

    fn binding_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.cands
            .iter()
            .chain(self.inside.values().flatten())
            .map(|c| c.binding.id)
    }

    /// Each candidate's subscriber: its subject's, or, for an inside
    /// address, the one subscriber who held that address then.
    fn subscribers<'c>(&self, c: &'c Compiled) -> Vec<Option<&'c str>> {
        self.cands
            .iter()
            .enumerate()
            .map(|(i, cand)| {
                let own = c.subscriber_of(cand.binding.holder);
                let Some(inner) = self.inside.get(&i) else {
                    return own;
                };
                let subs: HashSet<Option<&str>> = inner
                    .iter()
                    .map(|x| c.subscriber_of(x.binding.holder))
                    .collect();
                if subs.len() == 1 {
                    subs.into_iter().next().flatten()
                } else {
                    own
                }
            })
            .collect()
    }

    /// The answer and its audit record (whose sequence number the caller
    /// fills in once it is written). A binding purged since the index was
    /// built is not evidence any more: its candidate is dropped.
    fn answer(
        self,
        c: &Compiled,
        q: &WhoQuery,
        skew: u32,
        stored: &HashMap<i64, StoredBinding>,
    ) -> (Attribution, AuditEntry) {
        let subs = self.subscribers(c);
        let kept: Vec<(
            &kanki_directory::Candidate,
            Option<&str>,
            &StoredBinding,
            Vec<StoredBinding>,
        )> = self
            .cands
            .iter()
            .zip(subs)
            .enumerate()
            .filter_map(|(i, (cand, sub))| {
                let through = self.inside.get(&i).map_or(Vec::new(), |inner| {
                    inner
                        .iter()
                        .filter_map(|x| stored.get(&x.binding.id).cloned())
                        .collect()
                });
                Some((cand, sub, stored.get(&cand.binding.id)?, through))
            })
            .collect();
        let (confidence, subscriber) = judge(kept.iter().map(|k| (k.0, k.1)), q.port);
        let subscriber = subscriber.map(str::to_string);
        let holders: Vec<Holder> = kept
            .into_iter()
            .map(|(cand, sub, binding, through)| Holder {
                subscriber: sub.map(str::to_string),
                subject: binding.binding.subject.clone(),
                near_boundary: cand.near_boundary,
                binding: binding.clone(),
                through,
            })
            .collect();
        let input = serde_json::json!({
            "address": q.address,
            "port": q.port,
            "at": q.at,
            "clock_skew_secs": skew,
            "cites": q.cites,
        });
        let result = serde_json::json!({
            "confidence": confidence,
            "subscriber": subscriber,
            "candidates": holders.iter().map(|h| serde_json::json!({
                "subscriber": h.subscriber,
                "subject": h.subject.to_string(),
                "binding": h.binding.id,
            })).collect::<Vec<_>>(),
        });
        let entry = AuditEntry {
            at: Utc::now(),
            actor: q.actor.clone(),
            action: "who".into(),
            ground: Some(q.ground),
            purpose: q.purpose.clone(),
            input: input.to_string(),
            result: result.to_string(),
        };
        let answer = Attribution {
            confidence,
            subscriber,
            holders,
            audit_seq: 0,
        };
        (answer, entry)
    }
}

/// How often [`Kanki::verify_audit_with`] reports its progress, in records.
pub const AUDIT_PROGRESS_EVERY: u64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use kanki_directory::{Binding, BindingEvent, BindingOrigin};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn store_in(dir: &std::path::Path) -> Store {
        Store::open_sqlite(
            &dir.join("kanki.sqlite3"),
            &kanki_store::SqliteOptions::default(),
        )
        .unwrap()
    }

    /// Random bindings on a few addresses and the wider prefixes holding
    /// them, changed after the index was built: the index with the changes
    /// laid over answers as an index compiled afresh, for `who_at` and
    /// `holder_now` (before the look, and after it, where the overlay's
    /// answers decided in advance apply).
    #[test]
    fn changes_laid_over_answer_as_a_fresh_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let mut rng = kanki_directory::synth::Rng::new(3);
        let binding = |i: u64, rng: &mut kanki_directory::synth::Rng| {
            let from = rng.below(10_000) as i64;
            BindingEvent::Binding(Binding {
                subject: Subject::login(&format!("u{}", rng.below(6))).unwrap(),
                // Addresses, and now and then a wider prefix holding four.
                prefix: match rng.below(6) {
                    0 => format!("192.0.2.{}/30", 4 * rng.below(2)),
                    _ => format!("192.0.2.{}/32", rng.below(8)),
                }
                .parse()
                .unwrap(),
                ports: None,
                from: at(from),
                to: (rng.below(3) != 0).then(|| at(from + rng.below(3_000) as i64)),
                origin: BindingOrigin::Static,
                key: format!("k{i}"),
                reporter: None,
            })
        };
        let first: Vec<BindingEvent> = (0..200).map(|i| binding(i, &mut rng)).collect();
        let d = store.directory();
        d.apply_bindings(BindingOrigin::Static, &first, at(0))
            .unwrap();
        let directory = Directory::load(&store, at(5_000)).unwrap();
        // New bindings, and old ones changed (the same keys again).
        // Rounds of new bindings and old ones changed (the same keys
        // again), checked after each: the overlay's recent level is folded
        // into its settled one at some looks and not at others.
        let mut folds = 0;
        for round in 0..8 {
            let more: Vec<BindingEvent> = (0..40)
                .map(|_| {
                    let k = rng.below(300 + round * 20);
                    binding(k, &mut rng)
                })
                .collect();
            d.apply_bindings(BindingOrigin::Static, &more, at(0))
                .unwrap();
            let settled = Arc::as_ptr(&directory.compiled().overlay.settled);
            // A fold started by the look before is swapped in by this one
            // when it has finished: at some looks, and not at others.
            if round % 3 != 0 {
                directory.wait_for_fold();
            }
            directory.follow_changes(&store, at(5_000)).unwrap();
            let laid = directory.compiled();
            folds += usize::from(!std::ptr::eq(settled, Arc::as_ptr(&laid.overlay.settled)));
            assert!(laid.changed_since_built() > 0);
            let fresh = Compiled::load(&store, at(5_000)).unwrap();
            for _ in 0..1_000 {
                let addr: IpAddr = format!("192.0.2.{}", rng.below(9)).parse().unwrap();
                let t = at(rng.below(14_000) as i64).timestamp();
                let skew = rng.below(3) as u32 * 100;
                let ids = |c: &Compiled| {
                    let mut out = Vec::new();
                    c.who_at(addr, None, t, skew, &mut out);
                    let mut v: Vec<(i64, i64, Option<i64>, bool)> = out
                        .iter()
                        .map(|x| (x.binding.id, x.binding.from, x.binding.to, x.near_boundary))
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(ids(&laid), ids(&fresh), "who_at {addr} at {t} skew {skew}");
                assert_eq!(
                    laid.subscriber_now(addr, t).map(str::to_string),
                    fresh.subscriber_now(addr, t).map(str::to_string)
                );
                assert_eq!(
                    laid.holder_now(addr, t),
                    fresh.holder_now(addr, t),
                    "holder_now {addr} at {t} (round {round})"
                );
            }
        }
        assert!((1..8).contains(&folds), "{folds} folds in 8 looks");
    }

    /// A change stored while a rebuild reads the store reaches the front
    /// at the next look and stays there when the rebuild is swapped in,
    /// even when the changes made meanwhile are more than an overlay takes
    /// counted with repeats (each binding changed several times).
    #[test]
    fn a_change_made_during_a_rebuild_is_not_hidden_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let binding = |key: &str, who: &str, addr: &str, from: i64, to: Option<i64>| {
            BindingEvent::Binding(Binding {
                subject: Subject::login(who).unwrap(),
                prefix: format!("{addr}/32").parse().unwrap(),
                ports: None,
                from: at(from),
                to: to.map(at),
                origin: BindingOrigin::Static,
                key: key.into(),
                reporter: None,
            })
        };
        let d = store.directory();
        let old: Vec<BindingEvent> = (0..50)
            .map(|i| binding(&format!("old{i}"), "u", &format!("192.0.2.{i}"), 0, None))
            .collect();
        d.apply_bindings(BindingOrigin::Static, &old, at(0))
            .unwrap();
        // At most 10 changed bindings laid over the index.
        let directory = Directory::load_with(&store, at(100), 10).unwrap();
        let probe: IpAddr = "198.51.100.1".parse().unwrap();
        let held = |d: &Directory| {
            d.compiled()
                .holder_now(probe, at(100).timestamp())
                .is_some()
        };

        // A rebuild reads the store...
        let fresh = Compiled::compile(&store, at(100)).unwrap();
        // ...while the probe starts, and five bindings change three times
        // each (16 changes, 6 bindings).
        d.apply_bindings(
            BindingOrigin::Static,
            &[binding("probe", "p", "198.51.100.1", 50, None)],
            at(0),
        )
        .unwrap();
        for round in 0..3 {
            let changed: Vec<BindingEvent> = (0..5)
                .map(|i| {
                    binding(
                        &format!("old{i}"),
                        "u",
                        &format!("192.0.2.{i}"),
                        0,
                        Some(1000 + round),
                    )
                })
                .collect();
            d.apply_bindings(BindingOrigin::Static, &changed, at(0))
                .unwrap();
        }
        directory.follow_changes(&store, at(100)).unwrap();
        assert!(
            held(&directory),
            "the refresher laid the probe over the index"
        );
        directory.swap_rebuilt(fresh, &store, at(100)).unwrap();
        assert!(held(&directory), "the rebuild kept the probe");

        // More changed bindings than an overlay takes: the front keeps what
        // it has until a rebuild folds them in, which is due at once.
        let many: Vec<BindingEvent> = (0..20)
            .map(|i| binding(&format!("new{i}"), "v", &format!("203.0.113.{i}"), 50, None))
            .collect();
        d.apply_bindings(BindingOrigin::Static, &many, at(0))
            .unwrap();
        directory.follow_changes(&store, at(100)).unwrap();
        assert!(held(&directory));
        assert!(
            directory
                .rebuild_if_due(&store, at(100), std::time::Duration::from_secs(3600))
                .unwrap(),
            "a rebuild is due at once"
        );
        let c = directory.compiled();
        assert!(held(&directory));
        assert!(
            c.holder_now("203.0.113.7".parse().unwrap(), at(100).timestamp())
                .is_some()
        );
    }
}
