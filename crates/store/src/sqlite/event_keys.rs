//! Idempotency keys, kept in blocks: a row per (hour, segment) holding the
//! keys of that segment's events of that hour (schema 10), instead of a row
//! and a B-tree entry per key. Storing a batch wrote its 32,768 keys one by
//! one into an index larger than the page cache, and each commit wrote back
//! thousands of its pages; a block is one row.
//!
//! A key is unique because the writer checks it, under the write lock,
//! against the keys of its hour: the blocks of the hours a batch falls in
//! are read into memory once ([`StoredKeys`]) and brought up to date at
//! each batch with the blocks written since (segments are numbered in
//! commit order, so "since" is "with a higher segment"). A purge clears the
//! memory, here and, through a counter in `meta`, in other processes.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use kanki_events::{EventKey, KeyHasher, hash_set_items_within};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Result;
use crate::event_segment::decode_fields;

/// A key after its hour: 12 bytes of the record's SHA-256.
type Tail = [u8; 12];

/// Bytes per key in a block: its tail, then its index in the segment
/// (big-endian).
const ENTRY: usize = 14;

fn hour_of(k: &EventKey) -> u32 {
    u32::from_be_bytes([k[0], k[1], k[2], k[3]])
}

fn tail_of(k: &EventKey) -> Tail {
    let mut t = [0u8; 12];
    t.copy_from_slice(&k[4..]);
    t
}

fn key_of(hour: u32, tail: &[u8]) -> EventKey {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&hour.to_be_bytes());
    k[4..].copy_from_slice(tail);
    k
}

/// The tails of a block, with each one's index in its segment.
fn entries(block: &[u8]) -> impl Iterator<Item = (&[u8], u16)> {
    block
        .chunks_exact(ENTRY)
        .map(|e| (&e[..12], u16::from_be_bytes([e[12], e[13]])))
}

/// A set of tails, hashed by their own bytes.
type TailSet = HashSet<Tail, BuildHasherDefault<KeyHasher>>;

struct HourKeys {
    /// The highest segment whose blocks of this hour are in `tails`.
    through: i64,
    tails: TailSet,
    /// Too many to hold: `tails` is empty, and the hour's blocks are read
    /// for each segment stored.
    read_each_time: bool,
}

/// The stored keys of the hours recent batches fell in, as the writer
/// knows them. Used only under the write lock, inside its transaction; a
/// transaction that does not commit must [`clear`](Self::clear) it, since
/// it holds the keys that transaction wrote.
pub(crate) struct StoredKeys {
    hours: HashMap<u32, HourKeys>,
    /// Tails the held sets have room for (their capacities), at most
    /// `held_most`.
    held: usize,
    held_most: usize,
    /// `meta.event_key_purges` when the hours were read.
    purges: Option<String>,
}

impl StoredKeys {
    /// Holding tails in at most `bytes` (a hash set's slots, a tail and a
    /// control byte each; see [`hash_set_items_within`];
    /// `SqliteOptions::held_keys_bytes`). Past it the hours not in the
    /// batch at hand are let go, and an hour that alone would pass it is
    /// not held: its keys are checked by reading its blocks (slower, but an
    /// hour of that many records is rare, and the memory stays bounded
    /// whatever the input).
    pub(crate) fn within(bytes: usize) -> StoredKeys {
        StoredKeys::holding(hash_set_items_within(bytes, size_of::<Tail>()))
    }

    /// Holding at most `held_most` tails in all.
    fn holding(held_most: usize) -> StoredKeys {
        StoredKeys {
            hours: HashMap::new(),
            held: 0,
            held_most,
            purges: None,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.hours.clear();
        self.held = 0;
        self.purges = None;
    }

    /// Stores the keys of a segment's events (`keys[i]` is event `i`'s) and
    /// says, for each, whether it is new: not stored before, and not
    /// earlier in `keys`. Only the new ones are written.
    pub(crate) fn insert_segment(
        &mut self,
        c: &Connection,
        segment: i64,
        keys: &[&EventKey],
    ) -> Result<Vec<bool>> {
        let purges = purge_count(c)?;
        if self.purges.as_ref() != Some(&purges) {
            self.clear();
            self.purges = Some(purges);
        }
        let mut of_hour: Vec<u32> = keys.iter().map(|k| hour_of(k)).collect();
        of_hour.sort_unstable();
        // Each hour of the segment, with how many of its keys fall in it.
        let counts: Vec<(u32, usize)> = of_hour
            .chunk_by(|a, b| a == b)
            .map(|run| (run[0], run.len()))
            .collect();
        let hours: Vec<u32> = counts.iter().map(|&(h, _)| h).collect();
        if self.held > self.held_most / 2 {
            self.hours.retain(|h, _| hours.binary_search(h).is_ok());
            self.held = self.hours.values().map(|h| h.tails.capacity()).sum();
        }
        for &(h, more) in &counts {
            self.refresh(c, h)?;
            // Room for the segment's keys of the hour, or read each time.
            if let Some(known) = self.hours.get_mut(&h) {
                make_room(known, &mut self.held, self.held_most, more);
            }
        }
        let mut new = Vec::with_capacity(keys.len());
        // The tails of this segment in the hours read each time, new within
        // the segment, with where they are in `keys`.
        let mut unheld: HashMap<u32, HashMap<Tail, usize, BuildHasherDefault<KeyHasher>>> =
            HashMap::new();
        for (i, &k) in keys.iter().enumerate() {
            let Some(known) = self.hours.get_mut(&hour_of(k)) else {
                unreachable!("every hour of the segment was refreshed");
            };
            let tail = tail_of(k);
            let is_new = if known.read_each_time {
                let seen = unheld.entry(hour_of(k)).or_default();
                match seen.entry(tail) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(i);
                        true
                    }
                    std::collections::hash_map::Entry::Occupied(_) => false,
                }
            } else {
                known.tails.insert(tail)
            };
            new.push(is_new);
        }
        // The hours not held: their stored tails, read block by block.
        for (hour, mut seen) in unheld {
            keys_of_hour(c, hour, &mut |k| {
                if let Some(i) = seen.remove(&tail_of(&k)) {
                    new[i] = false;
                }
            })?;
        }
        let fresh = keys
            .iter()
            .enumerate()
            .filter(|&(i, _)| new[i])
            .map(|(i, &k)| (i, k));
        insert_blocks(c, segment, fresh)?;
        for h in hours {
            if let Some(known) = self.hours.get_mut(&h) {
                known.through = known.through.max(segment);
            }
        }
        Ok(new)
    }

    /// Adds the blocks of `hour` written since it was read.
    fn refresh(&mut self, c: &Connection, hour: u32) -> Result<()> {
        let known = self.hours.entry(hour).or_insert_with(|| HourKeys {
            through: 0,
            tails: TailSet::default(),
            read_each_time: false,
        });
        if known.read_each_time {
            return Ok(());
        }
        let mut stmt = c.prepare_cached(
            "SELECT segment, keys FROM event_key_blocks WHERE hour = ?1 AND segment > ?2",
        )?;
        let mut rows = stmt.query(params![hour, known.through])?;
        while let Some(r) = rows.next()? {
            let segment: i64 = r.get(0)?;
            if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(1)? {
                make_room(known, &mut self.held, self.held_most, b.len() / ENTRY);
                if known.read_each_time {
                    return Ok(());
                }
                for (tail, _) in entries(b) {
                    known.tails.insert(tail.try_into().unwrap_or_default());
                }
            }
            known.through = known.through.max(segment);
        }
        Ok(())
    }
}

/// Makes room in `known` for `more` tails, unless its set would then pass
/// what `held_most` leaves: then the hour is let go (read each time).
fn make_room(known: &mut HourKeys, held: &mut usize, held_most: usize, more: usize) {
    let (len, cap) = (known.tails.len(), known.tails.capacity());
    if known.read_each_time || len + more <= cap {
        return;
    }
    if *held - cap + capacity_for(len + more) <= held_most {
        known.tails.reserve(more);
        *held = *held - cap + known.tails.capacity();
    } else {
        *held -= cap;
        known.tails = TailSet::default();
        known.read_each_time = true;
    }
}

/// The capacity a `HashSet` takes to hold `items`: its slots are a power
/// of two (at least 4) filled to 7/8 (3 of 4, 7 of 8 below 16).
fn capacity_for(items: usize) -> usize {
    match items {
        0 => 0,
        1..=3 => 3,
        4..=7 => 7,
        n => (n * 8).div_ceil(7).next_power_of_two() / 8 * 7,
    }
}

fn purge_count(c: &Connection) -> Result<String> {
    Ok(
        c.prepare_cached("SELECT value FROM meta WHERE key = 'event_key_purges'")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or_default(),
    )
}

/// Every stored key of `hour`.
pub(crate) fn keys_of_hour(c: &Connection, hour: u32, f: &mut dyn FnMut(EventKey)) -> Result<()> {
    let mut stmt = c.prepare_cached("SELECT keys FROM event_key_blocks WHERE hour = ?1")?;
    let mut rows = stmt.query([hour])?;
    while let Some(r) = rows.next()? {
        if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(0)? {
            for (tail, _) in entries(b) {
                f(key_of(hour, tail));
            }
        }
    }
    Ok(())
}

/// For each key, whether it is stored.
pub(crate) fn known(c: &Connection, keys: &[EventKey]) -> Result<Vec<bool>> {
    let mut hours: Vec<u32> = keys.iter().map(hour_of).collect();
    hours.sort_unstable();
    hours.dedup();
    let mut stored: HashSet<EventKey> = HashSet::new();
    let wanted: HashSet<&EventKey> = keys.iter().collect();
    for h in hours {
        keys_of_hour(c, h, &mut |k| {
            if wanted.contains(&k) {
                stored.insert(k);
            }
        })?;
    }
    Ok(keys.iter().map(|k| stored.contains(k)).collect())
}

/// Removes the keys of the segments `segments` (their events are purged):
/// a replay of a purged event stores it again. Tells every writer's
/// memory of stored keys to let go.
pub(crate) fn purge(c: &Connection, segments: &[i64]) -> Result<()> {
    let mut delete = c.prepare_cached("DELETE FROM event_key_blocks WHERE segment = ?1")?;
    for s in segments {
        delete.execute([s])?;
    }
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('event_key_purges', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        [],
    )?;
    Ok(())
}

/// Writes a segment's key blocks: its events' keys, with their indexes in
/// the segment, a block per hour.
pub(crate) fn insert_blocks<'a>(
    c: &Connection,
    segment: i64,
    keys: impl IntoIterator<Item = (usize, &'a EventKey)>,
) -> Result<()> {
    let mut blocks: HashMap<u32, Vec<u8>> = HashMap::new();
    for (index, key) in keys {
        let block = blocks.entry(hour_of(key)).or_default();
        block.extend_from_slice(&key[4..]);
        block.extend_from_slice(&(index as u16).to_be_bytes());
    }
    let mut insert =
        c.prepare_cached("INSERT INTO event_key_blocks (hour, segment, keys) VALUES (?1, ?2, ?3)")?;
    for (hour, block) in blocks {
        insert.execute(params![hour, segment, block])?;
    }
    Ok(())
}

/// Schema 10's second step: the keys of the stored segments (each
/// segment's fields list its events' keys) into blocks; then `event_keys`
/// goes.
pub(crate) fn keys_into_blocks(c: &Connection) -> Result<()> {
    let mut segments = c.prepare("SELECT id, fields FROM event_segments ORDER BY id")?;
    let mut rows = segments.query([])?;
    while let Some(r) = rows.next()? {
        let segment: i64 = r.get(0)?;
        let fields: Vec<u8> = r.get(1)?;
        let Some(f) = decode_fields(segment, &fields) else {
            tracing::warn!(
                segment,
                "event segment cannot be read: its keys are not kept"
            );
            continue;
        };
        insert_blocks(c, segment, f.events.iter().map(|(i, k, _)| (*i, k)))?;
    }
    c.execute_batch("DROP TABLE event_keys")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE event_key_blocks (hour INTEGER NOT NULL, segment INTEGER NOT NULL,
                 keys BLOB NOT NULL, PRIMARY KEY (hour, segment)) WITHOUT ROWID;",
        )
        .unwrap();
        c
    }

    /// Segments of keys over a few hours, many of them replays: a writer
    /// holding a few hundred tails (whose busy hours it reads each time)
    /// says the same of every key as one holding them all, and as a set of
    /// every key stored.
    #[test]
    fn a_writer_under_its_memory_bound_finds_the_same_replays() {
        let (small_db, large_db) = (db(), db());
        let mut small = StoredKeys::holding(300);
        let mut large = StoredKeys::holding(usize::MAX / 4);
        let mut stored: std::collections::HashSet<EventKey> = Default::default();
        let mut rng = kanki_directory::synth::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = |n: u64| rng.below(n);
        for segment in 1..=40 {
            // A busy hour (up to 2,000 distinct keys) and a quiet one.
            let keys: Vec<EventKey> = (0..200)
                .map(|_| {
                    let hour = if next(4) == 0 { 7 } else { 8 };
                    let n = if hour == 7 { next(50) } else { next(2_000) };
                    key_of(hour, &n.to_be_bytes()[..8].repeat(2)[..12])
                })
                .collect();
            let refs: Vec<&EventKey> = keys.iter().collect();
            let want: Vec<bool> = {
                let mut seen = stored.clone();
                keys.iter().map(|k| seen.insert(*k)).collect()
            };
            stored.extend(keys.iter().copied());
            assert_eq!(
                small.insert_segment(&small_db, segment, &refs).unwrap(),
                want,
                "segment {segment}"
            );
            assert_eq!(
                large.insert_segment(&large_db, segment, &refs).unwrap(),
                want,
                "segment {segment}"
            );
            assert!(small.held <= 300, "{} held", small.held);
        }
        assert!(small.hours.values().any(|h| h.read_each_time));
        assert!(!large.hours.values().any(|h| h.read_each_time));
    }

    #[test]
    fn capacity_for_is_what_a_set_takes() {
        for n in [0, 1, 3, 4, 7, 8, 14, 15, 100, 1_000, 100_000] {
            let mut s = TailSet::default();
            s.reserve(n);
            assert_eq!(capacity_for(n), s.capacity(), "{n} items");
        }
    }
}
