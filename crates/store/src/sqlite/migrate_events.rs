//! Schema 9's second step: events stored a row each (schema 3 to 8) move
//! into segments, a segment per stored batch (`event_raw` block), keeping
//! their keys, attributions and cases; then the old tables go.

use std::collections::HashMap;
use std::io::Read;

use kanki_events::{Event, EventKey};
use rusqlite::{Connection, params};

use super::event_keys::insert_blocks;
use super::from_ts;
use crate::event_segment::{
    SEGMENT_EVENTS, SegmentCase, SegmentEvent, decode_fields, decode_raw, encode_fields,
    encode_raw, event_id, record_parts,
};
use crate::removal::{EventAttribution, StoredEvent};
use crate::{Result, StoreError};

/// A block of schema 3's raw records: each length-prefixed, deflated together.
fn unpack_block(block: &[u8]) -> Vec<Vec<u8>> {
    let mut data = Vec::new();
    if flate2::read::DeflateDecoder::new(block)
        .read_to_end(&mut data)
        .is_err()
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(len) = data.get(at..at + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(rec) = data.get(at + 4..at + 4 + len) else {
            break;
        };
        out.push(rec.to_vec());
        at += 4 + len;
    }
    out
}

struct OldEvent {
    index: usize,
    key: EventKey,
    /// Its id and raw record unset.
    stored: StoredEvent,
    ingest: i64,
}

pub(crate) fn events_into_segments(c: &Connection) -> Result<()> {
    // In id order, which is block order (a batch wrote its block, then its
    // events): one pass over the table, a block's events at a time (there
    // is no index on raw_block).
    let mut stmt = c.prepare(
        "SELECT raw_index, key, source_ip, source_port, destination_ip, destination_port,
                time_source, time_observation, taxonomy, class, identifier, malware,
                feed_name, feed_provider, transport, application, subscriber, confidence,
                audit_seq, unattributed, case_id, ingest, raw_block
         FROM events ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut moving = Moving::default();
    let mut block: Option<(i64, Vec<OldEvent>)> = None;
    while let Some(r) = rows.next()? {
        let (e, of) = old_event(r)?;
        match &mut block {
            Some((b, events)) if *b == of => events.push(e),
            _ => {
                if let Some((b, events)) = block.take() {
                    moving.segment(c, b, events)?;
                }
                block = Some((of, vec![e]));
            }
        }
    }
    if let Some((b, events)) = block.take() {
        moving.segment(c, b, events)?;
    }
    drop(rows);
    drop(stmt);
    let mut set = c.prepare("UPDATE cases SET last_segment = ?2 WHERE id = ?1")?;
    for (case, segment) in &moving.last_segment {
        set.execute([case, segment])?;
    }
    c.execute_batch("DROP TABLE events; DROP TABLE event_raw;")?;
    if moving.events > 0 {
        tracing::info!(
            events = moving.events,
            segments = moving.segment,
            "moved stored events into segments"
        );
    }
    Ok(())
}

fn old_event(r: &rusqlite::Row) -> rusqlite::Result<(OldEvent, i64)> {
    let ip = |s: Option<String>| s.and_then(|s| s.parse().ok());
    let key: Vec<u8> = r.get(1)?;
    let subscriber: Option<String> = r.get(16)?;
    let e = OldEvent {
        index: r.get::<_, i64>(0)? as usize,
        key: key.as_slice().try_into().unwrap_or_default(),
        stored: StoredEvent {
            id: 0,
            raw: String::new(),
            event: Event {
                source_ip: ip(r.get(2)?).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                source_port: r.get(3)?,
                destination_ip: ip(r.get(4)?),
                destination_port: r.get(5)?,
                time_source: from_ts(r.get(6)?),
                time_observation: from_ts(r.get(7)?),
                taxonomy: r.get(8)?,
                class: r.get(9)?,
                identifier: r.get(10)?,
                malware: r.get(11)?,
                feed_name: r.get(12)?,
                feed_provider: r.get(13)?,
                transport: r.get(14)?,
                application: r.get(15)?,
                extra: Default::default(),
                raw: Vec::new(),
                raw_head: None,
                remark: None,
            },
            attribution: match subscriber {
                Some(subscriber) => Some(EventAttribution {
                    subscriber,
                    confidence: r.get::<_, Option<String>>(17)?.unwrap_or_default(),
                    audit_seq: r.get::<_, Option<i64>>(18)?.unwrap_or_default(),
                }),
                None => None,
            },
            unattributed: r.get(19)?,
            case_id: r.get(20)?,
        },
        ingest: r.get(21)?,
    };
    Ok((e, r.get(22)?))
}

/// The segments written so far, and each case's newest.
#[derive(Default)]
struct Moving {
    segment: i64,
    events: u64,
    last_segment: HashMap<i64, i64>,
}

impl Moving {
    /// Writes one old block's events as the next segment.
    fn segment(&mut self, c: &Connection, block: i64, mut old: Vec<OldEvent>) -> Result<()> {
        old.sort_by_key(|e| e.index);
        let data: Vec<u8> =
            c.query_row("SELECT data FROM event_raw WHERE id = ?1", [block], |r| {
                r.get(0)
            })?;
        let records = unpack_block(&data);
        let last_segment = &mut self.last_segment;
        let Some(last) = old.last() else {
            return Ok(());
        };
        if last.index >= SEGMENT_EVENTS {
            return Err(StoreError::Backend(format!(
                "event block {block} holds more than {SEGMENT_EVENTS} events"
            )));
        }
        self.segment += 1;
        let segment = self.segment;
        let raws: Vec<&[u8]> = (0..=last.index)
            .map(|i| records.get(i).map_or(&[][..], Vec::as_slice))
            .collect();
        let mut cases: Vec<SegmentCase> = Vec::new();
        let mut case_index: HashMap<i64, usize> = HashMap::new();
        for id in old.iter().filter_map(|e| e.stored.case_id) {
            case_index.entry(id).or_insert_with(|| {
                cases.push(SegmentCase {
                    id,
                    previous: last_segment.insert(id, segment),
                });
                cases.len() - 1
            });
        }
        let written: Vec<SegmentEvent> = old
            .iter()
            .map(|e| written_again(e.index, &e.key, &e.stored, &case_index))
            .collect();
        let observed = old
            .iter()
            .map(|e| e.stored.event.time_observation.timestamp());
        c.execute(
            "INSERT INTO event_segments (id, ingest, events, first_observation, last_observation, fields, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                segment,
                old[0].ingest,
                old.len() as i64,
                observed.clone().min(),
                observed.max(),
                encode_fields(&cases, &written),
                encode_raw(raws.iter().map(|r| record_parts(r))),
            ],
        )?;
        let mut key = c.prepare_cached("INSERT INTO event_keys (key, event) VALUES (?1, ?2)")?;
        let mut reasons: HashMap<&str, i64> = HashMap::new();
        for e in &old {
            key.execute(params![&e.key[..], event_id(segment, e.index)])?;
            if let Some(r) = &e.stored.unattributed {
                *reasons.entry(r).or_default() += 1;
            }
        }
        for (reason, n) in reasons {
            c.execute(
                "INSERT INTO segment_unattributed (segment, reason, events) VALUES (?1, ?2, ?3)",
                params![segment, reason, n],
            )?;
        }
        self.events += old.len() as u64;
        Ok(())
    }
}

/// Schema 11's second step: every stored event's idempotency key made
/// again, as [`Event::key`] now makes it, from its feed name, its time and
/// its raw record; the segments' fields written with the new keys, and the
/// key blocks written again. A segment that cannot be read is left as it
/// is, without keys (as schema 10 left it).
pub(crate) fn rekey_events(c: &Connection) -> Result<()> {
    c.execute("DELETE FROM event_key_blocks", [])?;
    let segments: Vec<i64> = c
        .prepare("SELECT id FROM event_segments ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut read = c.prepare("SELECT fields, raw FROM event_segments WHERE id = ?1")?;
    let mut update = c.prepare("UPDATE event_segments SET fields = ?2 WHERE id = ?1")?;
    let (mut prefix, mut events) = (None, 0u64);
    for (n, &segment) in segments.iter().enumerate() {
        let (fields, raw): (Vec<u8>, Vec<u8>) =
            read.query_row([segment], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let (Some(mut f), Some(records)) = (decode_fields(segment, &fields), decode_raw(&raw))
        else {
            tracing::warn!(
                segment,
                "event segment cannot be read: its keys are not made again"
            );
            continue;
        };
        for (index, key, stored) in &mut f.events {
            let raw = records.get(*index).cloned().unwrap_or_default();
            let e = Event {
                raw,
                ..stored.event.clone()
            };
            *key = e.key_with(&mut prefix);
        }
        let case_index: HashMap<i64, usize> =
            f.cases.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        let written: Vec<SegmentEvent> = f
            .events
            .iter()
            .map(|(index, key, s)| written_again(*index, key, s, &case_index))
            .collect();
        update.execute(params![segment, encode_fields(&f.cases, &written)])?;
        insert_blocks(c, segment, f.events.iter().map(|(i, k, _)| (*i, k)))?;
        events += f.events.len() as u64;
        if (n + 1) % 1000 == 0 {
            tracing::info!(
                segments = n + 1,
                of = segments.len(),
                events,
                "store migration 11: event keys made again"
            );
        }
    }
    Ok(())
}

/// An event read back, as a segment writes it again: its attribution with
/// the audit record it had, its case by its place among the segment's.
fn written_again<'a>(
    index: usize,
    key: &'a EventKey,
    s: &'a StoredEvent,
    case_index: &HashMap<i64, usize>,
) -> SegmentEvent<'a> {
    SegmentEvent {
        index,
        key,
        event: &s.event,
        attribution: s.attribution.as_ref(),
        audit_seq: s.attribution.as_ref().map_or(0, |a| a.audit_seq),
        unattributed: s.unattributed.as_deref(),
        case: s.case_id.and_then(|id| case_index.get(&id).copied()),
    }
}
