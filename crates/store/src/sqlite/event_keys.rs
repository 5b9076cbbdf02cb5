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

use kanki_events::{EventKey, KeyHasher};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Result;
use crate::event_segment::decode_fields;

/// A key after its hour: 12 bytes of the record's SHA-256.
type Tail = [u8; 12];

/// Bytes per key in a block: its tail, then its index in the segment
/// (big-endian).
const ENTRY: usize = 14;

/// Keys held in memory at most (about 20 bytes each); past it the hours
/// not in the batch at hand are let go.
const HELD_MAX: usize = 4 << 20;

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
}

/// The stored keys of the hours recent batches fell in, as the writer
/// knows them. Used only under the write lock, inside its transaction; a
/// transaction that does not commit must [`clear`](Self::clear) it, since
/// it holds the keys that transaction wrote.
#[derive(Default)]
pub(crate) struct StoredKeys {
    hours: HashMap<u32, HourKeys>,
    held: usize,
    /// `meta.event_key_purges` when the hours were read.
    purges: Option<String>,
}

impl StoredKeys {
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
        let mut hours: Vec<u32> = keys.iter().map(|k| hour_of(k)).collect();
        hours.sort_unstable();
        hours.dedup();
        if self.held > HELD_MAX {
            self.hours.retain(|h, _| hours.binary_search(h).is_ok());
            self.held = self.hours.values().map(|h| h.tails.len()).sum();
        }
        for &h in &hours {
            self.refresh(c, h)?;
        }
        let mut new = Vec::with_capacity(keys.len());
        let mut fresh = Vec::with_capacity(keys.len());
        for (i, &k) in keys.iter().enumerate() {
            let Some(known) = self.hours.get_mut(&hour_of(k)) else {
                unreachable!("every hour of the segment was refreshed");
            };
            let is_new = known.tails.insert(tail_of(k));
            if is_new {
                self.held += 1;
                fresh.push((i, k));
            }
            new.push(is_new);
        }
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
        });
        let mut stmt = c.prepare_cached(
            "SELECT segment, keys FROM event_key_blocks WHERE hour = ?1 AND segment > ?2",
        )?;
        let mut rows = stmt.query(params![hour, known.through])?;
        while let Some(r) = rows.next()? {
            let segment: i64 = r.get(0)?;
            if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(1)? {
                for (tail, _) in entries(b) {
                    if known.tails.insert(tail.try_into().unwrap_or_default()) {
                        self.held += 1;
                    }
                }
            }
            known.through = known.through.max(segment);
        }
        Ok(())
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
