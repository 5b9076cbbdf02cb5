//! Collecting names and compiling them into a [`Snapshot`].

use kanki_indicators::AllowKind;

use crate::hash::{Keys, MAX_NAME_LEN, Prepared, label_bit};
use crate::snapshot::{
    F_ALLOW_EXACT, F_ALLOW_SUFFIX, F_LISTED, Header, MAX_IDS_PER_NAME, Snapshot, slot,
};

/// What one `add_*` call said.
const KIND_LISTED: u8 = 0;
const KIND_EXACT: u8 = 1;
const KIND_SUFFIX: u8 = 2;

/// One `add_*` call, 24 bytes. `key` is the name's first eight bytes
/// big-endian, so most sort comparisons are one integer compare and never
/// touch the arena.
#[derive(Clone, Copy)]
struct Item {
    key: u64,
    id: i64,
    off: u32,
    len: u8,
    kind: u8,
}

/// Collects listed names and allowlist entries, then [`build`](Self::build)s
/// a [`Snapshot`].
///
/// Names are expected normalized (lowercase ASCII, no trailing dot, as
/// `kanki_indicators::normalize` makes them); the builder still lowercases and
/// strips one trailing dot. A name that is empty, longer than 253 bytes or not
/// ASCII cannot be a DNS query name in presentation form and is refused
/// (counted by [`rejected`](Self::rejected)). The names passed to all calls
/// together may take at most 4 GiB.
#[derive(Default)]
pub struct SnapshotBuilder {
    arena: Vec<u8>,
    items: Vec<Item>,
    rejected: usize,
    seed: Option<u64>,
    /// Tests shrink the table to force long probe sequences.
    #[cfg(test)]
    homes: Option<usize>,
}

impl SnapshotBuilder {
    pub fn new() -> SnapshotBuilder {
        SnapshotBuilder::default()
    }

    /// A builder with room for `n` calls of about 24 name bytes each.
    pub fn with_capacity(n: usize) -> SnapshotBuilder {
        SnapshotBuilder {
            arena: Vec::with_capacity(n * 24),
            items: Vec::with_capacity(n),
            ..SnapshotBuilder::default()
        }
    }

    /// Fixes the table's hash seed (otherwise random per build), for
    /// reproducible files in tests.
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.seed = Some(seed);
        self
    }

    /// A listed DNS name and one indicator id that lists it. The same name
    /// may be added many times with different ids; duplicate ids are merged.
    /// A name keeps at most [`MAX_IDS_PER_NAME`] ids (the lowest).
    pub fn add_listed(&mut self, name: &str, indicator: i64) {
        self.push(name, KIND_LISTED, indicator);
    }

    /// An allowlist entry: `Exact` covers only `name`, `Suffix` covers `name`
    /// and every name below it. `entry` is the store's allowlist entry id;
    /// when one (kind, name) pair is added more than once, the lowest id is
    /// kept.
    pub fn add_allow(&mut self, kind: AllowKind, name: &str, entry: i64) {
        let kind = match kind {
            AllowKind::Exact => KIND_EXACT,
            AllowKind::Suffix => KIND_SUFFIX,
        };
        self.push(name, kind, entry);
    }

    /// How many names were refused (empty, over 253 bytes, not ASCII, or
    /// ending in two dots).
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    fn push(&mut self, name: &str, kind: u8, id: i64) {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        // A name still ending in a dot has an empty last label: not a name.
        if name.is_empty() || name.len() > MAX_NAME_LEN || !name.is_ascii() || name.ends_with(b".")
        {
            self.rejected += 1;
            return;
        }
        let off = u32::try_from(self.arena.len())
            .ok()
            .filter(|o| o.checked_add(name.len() as u32).is_some())
            .expect("SnapshotBuilder: more than 4 GiB of names");
        let start = self.arena.len();
        self.arena.extend_from_slice(name);
        self.arena[start..].make_ascii_lowercase();
        let mut key = [0u8; 8];
        let n = name.len().min(8);
        key[..n].copy_from_slice(&self.arena[start..start + n]);
        self.items.push(Item {
            key: u64::from_be_bytes(key),
            id,
            off,
            len: name.len() as u8,
            kind,
        });
    }

    /// Compiles the snapshot. `generation` is the caller's version number for
    /// it (the store's change counter, say), reported by
    /// [`Snapshot::generation`] and kept by [`Snapshot::save`].
    pub fn build(self, generation: u64) -> Snapshot {
        #[cfg(test)]
        let self_homes = self.homes;
        let SnapshotBuilder {
            arena,
            mut items,
            seed,
            ..
        } = self;
        let name = |it: &Item| &arena[it.off as usize..it.off as usize + it.len as usize];
        items.sort_unstable_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then_with(|| name(a).cmp(name(b)))
                .then(a.kind.cmp(&b.kind))
                .then(a.id.cmp(&b.id))
        });

        let seed = seed.unwrap_or_else(random_seed);
        let keys = Keys::new(seed);
        // Upper bound: every item its own record of header+name, one id.
        let mut data: Vec<u64> =
            Vec::with_capacity(items.len() * 2 + arena.len().div_ceil(8) + items.len());
        // (hash, record offset, flags) per record, placed in the table once
        // the count is known.
        let mut entries: Vec<(u64, u32, u32)> = Vec::new();
        let (mut listed, mut allows) = (0, 0);
        let mut labels = 0u64;

        let mut i = 0;
        while i < items.len() {
            let first = items[i];
            let nm = name(&first);
            let mut j = i;
            while j < items.len() && items[j].key == first.key && name(&items[j]) == nm {
                j += 1;
            }
            let group = &items[i..j];
            i = j;

            // Sorted by kind then id: listed ids come first, ascending, and the
            // first exact/suffix item has the lowest entry id.
            let mut flags = 0;
            let mut nids = 0;
            let mut last_id = None;
            let mut exact = None;
            let mut suffix = None;
            let at = data.len();
            data.extend(name_words(nm)); // header written below
            for it in group {
                match it.kind {
                    KIND_LISTED => {
                        if last_id != Some(it.id) && nids < MAX_IDS_PER_NAME {
                            data.push(it.id as u64);
                            nids += 1;
                            last_id = Some(it.id);
                        }
                    }
                    KIND_EXACT => {
                        exact.get_or_insert(it.id);
                    }
                    _ => {
                        suffix.get_or_insert(it.id);
                    }
                }
            }
            if nids > 0 {
                flags |= F_LISTED;
                listed += 1;
            }
            if let Some(id) = exact {
                flags |= F_ALLOW_EXACT;
                data.push(id as u64);
                allows += 1;
            }
            if let Some(id) = suffix {
                flags |= F_ALLOW_SUFFIX;
                data.push(id as u64);
                allows += 1;
            }
            let header = Header {
                len: nm.len(),
                flags,
                nids,
            };
            let head: &mut [u8] = bytemuck::cast_slice_mut(&mut data[at..at + 1]);
            head[..4].copy_from_slice(&header.encode().to_ne_bytes());
            let at32 = u32::try_from(at).expect("snapshot over 32 GiB");
            let prepared = Prepared::new(nm).expect("builder admits valid names only");
            labels |= label_bit(prepared.labels());
            entries.push((prepared.full_hash(&keys), at32, flags));
        }
        data.shrink_to_fit();

        #[cfg(not(test))]
        let homes = slot::homes(entries.len());
        #[cfg(test)]
        let homes = self_homes.unwrap_or(slot::homes(entries.len()));
        let slots = place(homes, &mut entries);
        crate::pages::use_huge_pages(&data, true);
        crate::pages::use_huge_pages(&slots, true);
        Snapshot {
            generation,
            seed,
            keys,
            data,
            slots,
            homes,
            labels,
            records: entries.len(),
            listed,
            allows,
        }
    }
}

/// Lays the table out: records sorted by home slot and tag, each in the first free
/// slot at or after its home (the order Robin Hood hashing converges to, got
/// here directly since the table is built once). Nothing wraps around: the
/// table is as long as the last record placed needs, plus one empty slot.
fn place(homes: usize, entries: &mut [(u64, u32, u32)]) -> Vec<u64> {
    entries.sort_unstable_by_key(|e| slot::key(slot::home(e.0, homes), slot::tag_of(e.0)));
    let mut slots = vec![0u64; homes + 1];
    let mut next = 0;
    for &(h, at, flags) in entries.iter() {
        let home = slot::home(h, homes);
        let pos = next.max(home);
        if pos + 1 >= slots.len() {
            slots.resize(pos + 2, 0);
        }
        slots[pos] = slot::pack(at, flags, pos - home, h);
        next = pos + 1;
    }
    slots.shrink_to_fit();
    slots
}

/// The record's first words: room for the header (zero) and the name bytes,
/// zero-padded to a word.
fn name_words(name: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let words = (4 + name.len()).div_ceil(8);
    (0..words).map(move |w| {
        let mut b = [0u8; 8];
        for (k, byte) in b.iter_mut().enumerate() {
            let pos = w * 8 + k;
            if pos >= 4 {
                *byte = name.get(pos - 4).copied().unwrap_or(0);
            }
        }
        u64::from_ne_bytes(b)
    })
}

/// A per-build seed, so that nobody who controls feed contents can aim names
/// at one slot. std's `RandomState` is randomly keyed per process and per
/// instance, which is enough here; no `rand` needed.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6b616e6b69);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    /// With a single home slot every name lands in one long run, so probes
    /// go past the largest storable displacement and lookups must still be
    /// exact: hits, parents, misses, allowlist.
    #[test]
    fn long_probe_sequences() {
        for homes in [1, 2, 7] {
            let names = crate::synth::domains(700, homes as u64);
            let mut b = SnapshotBuilder::new();
            b.homes = Some(homes);
            for (i, n) in names.iter().enumerate() {
                if i % 10 == 0 {
                    b.add_allow(AllowKind::Exact, n, i as i64);
                } else {
                    b.add_listed(n, i as i64);
                }
            }
            let s = b.build(1);
            assert!(
                s.slots
                    .iter()
                    .any(|&x| x != 0 && slot::disp(x) == slot::DISP_MAX)
            );
            for (i, n) in names.iter().enumerate() {
                let v = s.lookup(format!("x.{n}").as_bytes());
                if i % 10 == 0 {
                    assert_eq!(
                        s.lookup(n.as_bytes()),
                        Verdict::Allowed {
                            allow_entry: i as i64,
                            matched_allow: n,
                            listed: None,
                        }
                    );
                    // Unless a parent of it is listed too.
                    assert!(!v.is_listed() || names.iter().any(|p| n.ends_with(&format!(".{p}"))));
                } else {
                    assert!(
                        matches!(v, Verdict::Listed { matched, .. } if matched == n || n.ends_with(&format!(".{matched}"))),
                        "{n}: {v:?}"
                    );
                }
                assert_eq!(s.lookup(format!("{n}x").as_bytes()), Verdict::NotListed);
            }
        }
    }
}
