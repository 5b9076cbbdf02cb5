//! Event segments: the events of one stored batch kept as two compressed
//! values, their fields and their raw records, instead of a row (and four
//! index entries) per event. Ingest writes a segment per batch; an event is
//! found again by its id, `segment << 16 | index in the batch`.
//!
//! The raw records of a batch are encoded and compressed without the
//! writer's lock held, before the batch is known to be new; the fields are
//! encoded inside the transaction, once the idempotency keys tell which
//! events are new and the cases they belong to are numbered, and so are
//! not compressed: their strings are written once each instead (version
//! 2; version 1 deflated them, and is still read). Version 3 adds each
//! event's harmonized fields that kanki does not type (`source.asn`,
//! `source.geolocation.cc`, `source.reverse_dns`, ...; version 2 did not
//! keep them, and reads with none). A segment also lists,
//! for each case with events in it, the case's previous segment: a case's
//! events are read newest first by following that chain, with no row per
//! event.
//!
//! The encoding is kanki's own (varints, length-prefixed bytes, deflate):
//! it is read only by this module, and a general serializer would add a
//! dependency and a per-field cost to the ingest's hottest loop. It starts
//! with a version.

use std::io::{Read, Write};
use std::net::IpAddr;

use chrono::{DateTime, TimeZone, Utc};
use kanki_events::{Event, EventKey};

use crate::removal::{EventAttribution, StoredEvent};

/// Events in one segment at most: the index is the low 16 bits of an id.
pub(crate) const SEGMENT_EVENTS: usize = 1 << 16;

const VERSION: u8 = 1;

/// An event's id from its segment and its index in the segment's batch.
pub(crate) fn event_id(segment: i64, index: usize) -> i64 {
    (segment << 16) | index as i64
}

/// The segment and index an event id names.
pub(crate) fn split_event_id(id: i64) -> (i64, usize) {
    (id >> 16, (id & 0xffff) as usize)
}

/// A case with events in a segment, and its segment before this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentCase {
    pub id: i64,
    pub previous: Option<i64>,
}

/// One event of a segment, as written.
pub(crate) struct SegmentEvent<'a> {
    pub index: usize,
    pub key: &'a EventKey,
    pub event: &'a Event,
    pub attribution: Option<&'a EventAttribution>,
    /// The audit record of the attribution, as stored.
    pub audit_seq: i64,
    pub unattributed: Option<&'a str>,
    /// Index into the segment's cases.
    pub case: Option<usize>,
}

/// A raw record as the part kept once per distinct value (its first line,
/// without the line end) and the rest.
pub(crate) type RawParts<'a> = (Option<&'a [u8]>, &'a [u8]);

/// An event's raw record in parts: its first line when held shared.
pub(crate) fn raw_parts(e: &Event) -> RawParts<'_> {
    match &e.raw_head {
        Some(h) => (Some(h), &e.raw),
        None => record_parts(&e.raw),
    }
}

/// A whole record in parts: a first line long enough to be worth keeping
/// once (a CSV report's header) and the rest.
pub(crate) fn record_parts(r: &[u8]) -> RawParts<'_> {
    match r.iter().position(|&b| b == b'\n') {
        Some(n) if n >= 32 => (Some(&r[..n]), &r[n + 1..]),
        _ => (None, r),
    }
}

/// The raw records of a batch, in batch order.
pub(crate) fn encode_raw<'a, I>(records: I) -> Vec<u8>
where
    I: IntoIterator<Item = RawParts<'a>>,
    I::IntoIter: Clone,
{
    let records = records.into_iter();
    let mut heads: Vec<&[u8]> = Vec::new();
    // Sized once: a segment's body is megabytes, and growing it copied
    // them again.
    let size = records.clone().map(|(_, rest)| rest.len() + 6).sum();
    let mut body = Vec::with_capacity(size);
    let mut n = 0u64;
    // The same head is mostly the same allocation: told by its address
    // before its bytes are compared.
    let same = |x: &[u8], h: &[u8]| (x.as_ptr() == h.as_ptr() && x.len() == h.len()) || x == h;
    for (head, rest) in records {
        n += 1;
        let head = head.map(|h| match heads.iter().position(|x| same(x, h)) {
            Some(i) => i,
            None => {
                heads.push(h);
                heads.len() - 1
            }
        });
        put_uint(&mut body, head.map_or(0, |i| i as u64 + 1));
        put_bytes(&mut body, rest);
    }
    let mut start = Vec::with_capacity(heads.iter().map(|h| h.len() + 10).sum::<usize>() + 20);
    start.push(VERSION);
    put_uint(&mut start, heads.len() as u64);
    for h in &heads {
        put_bytes(&mut start, h);
    }
    put_uint(&mut start, n);
    // Compressed in two parts: the body is not copied behind its start.
    deflate(&[&start, &body])
}

/// Each raw record of a batch whose index `wanted` keeps, given to `f`
/// with its index (every record is read, only those kept are copied).
fn each_raw(
    data: &[u8],
    wanted: impl Fn(usize) -> bool,
    mut f: impl FnMut(usize, Vec<u8>),
) -> Option<()> {
    let plain = inflate(data)?;
    let mut r = Reader(&plain);
    if r.byte()? != VERSION {
        return None;
    }
    let heads: Vec<&[u8]> = (0..r.uint()?).map(|_| r.bytes()).collect::<Option<_>>()?;
    let n = r.uint()? as usize;
    for i in 0..n {
        let head = r.uint()?;
        let rest = r.bytes()?;
        if !wanted(i) {
            continue;
        }
        f(
            i,
            match head {
                0 => rest.to_vec(),
                h => {
                    let h = heads.get(h as usize - 1)?;
                    let mut v = Vec::with_capacity(h.len() + 1 + rest.len());
                    v.extend_from_slice(h);
                    v.push(b'\n');
                    v.extend_from_slice(rest);
                    v
                }
            },
        );
    }
    Some(())
}

/// The raw records whose index `wanted` says, by index (a segment holds
/// up to 65,536 records, a page shows a few).
pub(crate) fn decode_raw_of(
    data: &[u8],
    wanted: impl Fn(usize) -> bool,
) -> Option<std::collections::HashMap<usize, Vec<u8>>> {
    let mut out = std::collections::HashMap::new();
    each_raw(data, wanted, |i, v| {
        out.insert(i, v);
    })?;
    Some(out)
}

/// The raw records of a batch, by index.
pub(crate) fn decode_raw(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    each_raw(data, |_| true, |_, v| out.push(v))?;
    Some(out)
}

/// The first byte of fields written by version 2 or later, uncompressed:
/// no raw deflate stream (version 1, compressed) starts with it, as its
/// block type bits would be the reserved `11`. The version follows it.
const FIELDS_V2: u8 = 0xff;

/// The version of the fields written now: 3, with the harmonized fields.
const FIELDS_VERSION: u8 = 3;

/// The strings of a segment's fields, each written once (a feed's names and
/// classes repeat in every event, a subscriber in each of its events) and
/// named by index. Writing them so instead of compressing the fields took
/// the store stage's deflate out of the writer's transaction.
#[derive(Default)]
struct StringTable<'a> {
    strings: Vec<&'a str>,
    index: foldhash::HashMap<&'a str, u32>,
    /// Per field: the last string and its index (events of one input mostly
    /// repeat their neighbour's).
    last: [Option<(&'a str, u32)>; HARMONIZED_VALUE + 1],
}

impl<'a> StringTable<'a> {
    fn put(&mut self, b: &mut Vec<u8>, field: usize, s: &'a str) {
        let i = self.index_of(field, s);
        put_uint(b, u64::from(i));
    }

    fn put_opt(&mut self, b: &mut Vec<u8>, field: usize, s: Option<&'a str>) {
        match s {
            Some(s) => {
                let i = self.index_of(field, s);
                put_uint(b, u64::from(i) + 1)
            }
            None => b.push(0),
        }
    }

    fn index_of(&mut self, field: usize, s: &'a str) -> u32 {
        if let Some((last, i)) = self.last[field]
            && last == s
        {
            return i;
        }
        let next = self.strings.len() as u32;
        let i = *self.index.entry(s).or_insert(next);
        if i == next {
            self.strings.push(s);
        }
        self.last[field] = Some((s, i));
        i
    }
}

/// The string fields' slots in [`StringTable::last`] past the typed ones: a
/// harmonized field's name, and its value.
const HARMONIZED_NAME: usize = 11;
const HARMONIZED_VALUE: usize = 12;

/// The fields of a segment's events (those stored: a duplicate's index is
/// absent), with the segment's cases.
pub(crate) fn encode_fields(cases: &[SegmentCase], events: &[SegmentEvent<'_>]) -> Vec<u8> {
    let mut t = StringTable::default();
    let mut b = Vec::with_capacity(16 + cases.len() * 6 + events.len() * 48);
    put_uint(&mut b, cases.len() as u64);
    for c in cases {
        put_uint(&mut b, c.id as u64);
        put_uint(&mut b, c.previous.map_or(0, |p| p as u64 + 1));
    }
    put_uint(&mut b, events.len() as u64);
    for w in events {
        let e = w.event;
        put_uint(&mut b, w.index as u64);
        b.extend_from_slice(w.key);
        put_ip(&mut b, Some(e.source_ip));
        put_opt_uint(&mut b, e.source_port.map(u64::from));
        put_ip(&mut b, e.destination_ip);
        put_opt_uint(&mut b, e.destination_port.map(u64::from));
        put_int(&mut b, e.time_source.timestamp());
        put_int(&mut b, e.time_observation.timestamp());
        t.put(&mut b, 0, &e.taxonomy);
        t.put(&mut b, 1, &e.class);
        t.put_opt(&mut b, 2, e.identifier.as_deref());
        t.put_opt(&mut b, 3, e.malware.as_deref());
        t.put(&mut b, 4, &e.feed_name);
        t.put(&mut b, 5, &e.feed_provider);
        t.put_opt(&mut b, 6, e.transport.as_deref());
        t.put_opt(&mut b, 7, e.application.as_deref());
        match w.attribution {
            Some(a) => {
                b.push(1);
                t.put(&mut b, 8, &a.subscriber);
                t.put(&mut b, 9, &a.confidence);
                put_int(&mut b, w.audit_seq);
            }
            None => b.push(0),
        }
        t.put_opt(&mut b, 10, w.unattributed);
        put_opt_uint(&mut b, w.case.map(|c| c as u64));
        let harmonized = e.harmonized_extra();
        put_uint(&mut b, harmonized.clone().count() as u64);
        for (name, value) in harmonized {
            t.put(&mut b, HARMONIZED_NAME, name);
            t.put(&mut b, HARMONIZED_VALUE, value);
        }
    }
    let strings: usize = t.strings.iter().map(|s| s.len() + 2).sum();
    let mut out = Vec::with_capacity(8 + strings + b.len());
    out.extend_from_slice(&[FIELDS_V2, FIELDS_VERSION]);
    put_uint(&mut out, t.strings.len() as u64);
    for s in &t.strings {
        put_str(&mut out, s);
    }
    out.extend_from_slice(&b);
    out
}

/// A segment's fields, read back.
pub(crate) struct Fields {
    pub cases: Vec<SegmentCase>,
    /// Each event with its index in the batch and its key; `raw` empty.
    pub events: Vec<(usize, EventKey, StoredEvent)>,
}

/// How the fields' strings are written: in place (version 1, compressed
/// whole), or as indexes into a table at the start (version 2).
enum Strings<'a> {
    InPlace,
    Table(Vec<&'a [u8]>),
}

impl<'a> Strings<'a> {
    /// A string's bytes, unread: an event that is not wanted costs no
    /// allocation.
    fn slice(&self, r: &mut Reader<'a>) -> Option<&'a [u8]> {
        match self {
            Strings::InPlace => r.bytes(),
            Strings::Table(t) => t.get(r.uint()? as usize).copied(),
        }
    }

    fn opt_slice(&self, r: &mut Reader<'a>) -> Option<Option<&'a [u8]>> {
        match self {
            Strings::InPlace => match r.uint()? {
                0 => Some(None),
                n => Some(Some(r.take(n as usize - 1)?)),
            },
            Strings::Table(t) => match r.uint()? {
                0 => Some(None),
                i => Some(Some(t.get(i as usize - 1)?)),
            },
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads a segment's fields, of any version; `segment` makes the events'
/// ids and case ids.
pub(crate) fn decode_fields(segment: i64, data: &[u8]) -> Option<Fields> {
    decode_fields_of(segment, data, |_, _| true)
}

/// Reads a segment's cases and those of its events that `keep` wants (by
/// index in the batch and case id). The others are read past, not built:
/// a case's page wants one event among tens of thousands.
pub(crate) fn decode_fields_of(
    segment: i64,
    data: &[u8],
    keep: impl Fn(usize, Option<i64>) -> bool,
) -> Option<Fields> {
    let inflated;
    let (mut r, strings, harmonized) = match data {
        [FIELDS_V2, version @ (2 | 3), rest @ ..] => {
            let mut r = Reader(rest);
            let n = r.uint()? as usize;
            let table = (0..n).map(|_| r.bytes()).collect::<Option<Vec<_>>>()?;
            (r, Strings::Table(table), *version >= 3)
        }
        [FIELDS_V2, ..] => return None,
        _ => {
            inflated = inflate(data)?;
            let mut r = Reader(&inflated);
            if r.byte()? != VERSION {
                return None;
            }
            (r, Strings::InPlace, false)
        }
    };
    let cases: Vec<SegmentCase> = (0..r.uint()?)
        .map(|_| {
            Some(SegmentCase {
                id: r.uint()? as i64,
                previous: r.uint()?.checked_sub(1).map(|p| p as i64),
            })
        })
        .collect::<Option<_>>()?;
    let n = r.uint()? as usize;
    let mut events = Vec::with_capacity(n.min(SEGMENT_EVENTS));
    let mut extra_read = Vec::new();
    for _ in 0..n {
        let index = r.uint()? as usize;
        let key: EventKey = r.take(16)?.try_into().ok()?;
        let source_ip = r.ip()??;
        let source_port = r.opt_port()?;
        let destination_ip = r.ip()?;
        let destination_port = r.opt_port()?;
        let time_source = r.int()?;
        let time_observation = r.int()?;
        let taxonomy = strings.slice(&mut r)?;
        let class = strings.slice(&mut r)?;
        let identifier = strings.opt_slice(&mut r)?;
        let malware = strings.opt_slice(&mut r)?;
        let feed_name = strings.slice(&mut r)?;
        let feed_provider = strings.slice(&mut r)?;
        let transport = strings.opt_slice(&mut r)?;
        let application = strings.opt_slice(&mut r)?;
        let attribution = match r.byte()? {
            0 => None,
            _ => Some((strings.slice(&mut r)?, strings.slice(&mut r)?, r.int()?)),
        };
        let unattributed = strings.opt_slice(&mut r)?;
        let case_id = match r.uint()? {
            0 => None,
            c => Some(cases.get(c as usize - 1)?.id),
        };
        extra_read.clear();
        if harmonized {
            for _ in 0..r.uint()? {
                extra_read.push((strings.slice(&mut r)?, strings.slice(&mut r)?));
            }
        }
        if !keep(index, case_id) {
            continue;
        }
        let event = Event {
            source_ip,
            source_port,
            destination_ip,
            destination_port,
            time_source: time(time_source),
            time_observation: time(time_observation),
            taxonomy: text(taxonomy),
            class: text(class),
            identifier: identifier.map(text),
            malware: malware.map(text),
            feed_name: text(feed_name),
            feed_provider: text(feed_provider),
            transport: transport.map(text),
            application: application.map(text),
            extra: extra_read
                .iter()
                .map(|&(k, v)| (text(k), text(v)))
                .collect(),
            raw: Vec::new(),
            raw_head: None,
            remark: None,
        };
        events.push((
            index,
            key,
            StoredEvent {
                id: event_id(segment, index),
                event,
                raw: String::new(),
                attribution: attribution.map(|(subscriber, confidence, audit_seq)| {
                    EventAttribution {
                        subscriber: text(subscriber),
                        confidence: text(confidence),
                        audit_seq,
                    }
                }),
                unattributed: unattributed.map(text),
                case_id,
            },
        ));
    }
    Some(Fields { cases, events })
}

fn time(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap_or_default()
}

/// Deflates `parts` as one stream.
fn deflate(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut z = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(len / 4),
        flate2::Compression::fast(),
    );
    for p in parts {
        // Writing to a Vec cannot fail.
        let _ = z.write_all(p);
    }
    z.finish().unwrap_or_default()
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::with_capacity(data.len() * 4);
    flate2::read::DeflateDecoder::new(data)
        .read_to_end(&mut plain)
        .ok()?;
    Some(plain)
}

fn put_uint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// Zigzag: small negative numbers stay short.
fn put_int(b: &mut Vec<u8>, v: i64) {
    put_uint(b, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_opt_uint(b: &mut Vec<u8>, v: Option<u64>) {
    put_uint(b, v.map_or(0, |v| v + 1));
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_uint(b, v.len() as u64);
    b.extend_from_slice(v);
}

fn put_str(b: &mut Vec<u8>, v: &str) {
    put_bytes(b, v.as_bytes());
}

fn put_ip(b: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        None => b.push(0),
        Some(IpAddr::V4(a)) => {
            b.push(4);
            b.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            b.push(6);
            b.extend_from_slice(&a.octets());
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(v)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn uint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn int(&mut self) -> Option<i64> {
        let u = self.uint()?;
        Some((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.uint()? as usize;
        self.take(n)
    }

    fn opt_port(&mut self) -> Option<Option<u16>> {
        match self.uint()? {
            0 => Some(None),
            n => Some(Some(u16::try_from(n - 1).ok()?)),
        }
    }

    /// `Some(None)` for no address.
    fn ip(&mut self) -> Option<Option<IpAddr>> {
        match self.byte()? {
            0 => Some(None),
            4 => Some(Some(IpAddr::from(<[u8; 4]>::try_from(self.take(4)?).ok()?))),
            6 => Some(Some(IpAddr::from(
                <[u8; 16]>::try_from(self.take(16)?).ok()?,
            ))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn event(i: u8) -> Event {
        let mut e = Event::new(
            IpAddr::from([192, 0, 2, i]),
            Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap(),
            "malicious-code",
            "infected-system",
            "event4_sinkhole",
            "Shadowserver",
        );
        e.source_port = Some(40_000 + i as u16);
        e.destination_ip = Some("2001:db8::1".parse().unwrap());
        e.malware = Some("mirai".into());
        e.raw = format!(
            "\"timestamp\",\"ip\",\"port\",\"asn\",\"geo\",\"region\",\"city\"\n\"2023\",\"192.0.2.{i}\""
        )
        .into_bytes();
        e
    }

    #[test]
    fn a_segment_reads_back_what_was_written_with_its_header_kept_once() {
        let mut events: Vec<Event> = (0..5).map(event).collect();
        // Harmonized fields are kept; a report's own columns are not.
        for (i, e) in events.iter_mut().enumerate() {
            e.extra
                .insert("source.asn".into(), format!("6450{}", i % 2));
            e.extra.insert("source.geolocation.cc".into(), "JP".into());
            e.extra
                .insert("source.reverse_dns".into(), format!("host{i}.example.jp"));
            e.extra.insert("extra.password".into(), "vizxv".into());
        }
        let mut cowrie = event(9);
        cowrie.raw = b"{\"eventid\":\"cowrie.session.connect\"}".to_vec();
        // The same header held once for all rows, as the Shadowserver
        // parser gives it.
        let head: std::sync::Arc<[u8]> =
            std::sync::Arc::from(&b"\"timestamp\",\"ip\",\"port\",\"asn\",\"geo\""[..]);
        let shared: Vec<Event> = (0..3)
            .map(|i| {
                let mut e = event(i);
                e.raw = format!("\"2023\",\"192.0.2.{i}\"").into_bytes();
                e.raw_head = Some(head.clone());
                e
            })
            .collect();
        let all = events.iter().chain([&cowrie]).chain(&shared);
        let encoded = encode_raw(all.map(raw_parts));
        let raw = decode_raw(&encoded).unwrap();
        assert_eq!(raw.len(), 9);
        // Some of them only, each the same.
        let some = decode_raw_of(&encoded, |i| i == 3 || i == 8).unwrap();
        assert_eq!(some.len(), 2);
        assert_eq!(some[&3], raw[3]);
        assert_eq!(some[&8], raw[8]);
        assert_eq!(raw[3], events[3].raw);
        assert_eq!(raw[5], cowrie.raw);
        assert_eq!(
            String::from_utf8_lossy(&raw[8]),
            "\"timestamp\",\"ip\",\"port\",\"asn\",\"geo\"\n\"2023\",\"192.0.2.2\""
        );
        assert_eq!(raw[8], *shared[2].raw_record());

        let keys: Vec<EventKey> = events.iter().map(Event::key).collect();
        let a = EventAttribution {
            subscriber: "S1".into(),
            confidence: "inside-session".into(),
            audit_seq: 77,
        };
        // Index 1 was a duplicate: not written.
        let written: Vec<SegmentEvent> = [0usize, 2, 3]
            .iter()
            .map(|&i| SegmentEvent {
                index: i,
                key: &keys[i],
                event: &events[i],
                attribution: (i != 3).then_some(&a),
                audit_seq: a.audit_seq,
                unattributed: (i == 3).then_some("no binding"),
                case: (i != 3).then_some(i / 2),
            })
            .collect();
        let cases = [
            SegmentCase {
                id: 5,
                previous: None,
            },
            SegmentCase {
                id: 9,
                previous: Some(3),
            },
        ];
        let f = decode_fields(7, &encode_fields(&cases, &written)).unwrap();
        assert_eq!(f.cases, cases);
        let idx: Vec<usize> = f.events.iter().map(|e| e.0).collect();
        assert_eq!(idx, [0, 2, 3]);
        let (_, key, e) = &f.events[1];
        assert_eq!(*key, keys[2]);
        assert_eq!(e.id, event_id(7, 2));
        assert_eq!(split_event_id(e.id), (7, 2));
        assert_eq!(e.case_id, Some(9));
        assert_eq!(e.attribution.as_ref(), Some(&a));
        let mut want = events[2].clone();
        want.raw.clear();
        want.extra.remove("extra.password");
        assert_eq!(e.event.extra["source.reverse_dns"], "host2.example.jp");
        assert_eq!(f.events[0].2.event.extra["source.asn"], "64500");
        want.time_observation = time(want.time_observation.timestamp());
        assert_eq!(
            serde_json::to_value(&e.event).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        assert_eq!(f.events[2].2.unattributed.as_deref(), Some("no binding"));
        assert_eq!(f.events[2].2.case_id, None);
        // One case's events alone: the same events, the others read past,
        // the segment's cases whole.
        let data = encode_fields(&cases, &written);
        let of_case_9 = decode_fields_of(7, &data, |_, case| case == Some(9)).unwrap();
        assert_eq!(of_case_9.cases, cases);
        assert_eq!(of_case_9.events.len(), 1);
        assert_eq!(of_case_9.events[0].0, 2);
        assert_eq!(
            serde_json::to_value(&of_case_9.events[0].2).unwrap(),
            serde_json::to_value(e).unwrap()
        );
        let by_index = decode_fields_of(7, &data, |i, _| i == 3).unwrap();
        assert_eq!(by_index.events.len(), 1);
        assert_eq!(by_index.events[0].2.case_id, None);
        assert!(decode_fields_of(7, &data[..data.len() - 1], |_, _| false).is_none());
    }

    /// Fields an earlier version wrote (`hex`) for [`event`] 0 (attributed
    /// to S1 under audit record 77, in case 5 whose previous segment is 3)
    /// and [`event`] 2 (unattributed), read back.
    fn read_old_fields(hex: &str) -> Fields {
        let data: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let f = decode_fields(4, &data).unwrap();
        assert_eq!(
            f.cases,
            [SegmentCase {
                id: 5,
                previous: Some(3)
            }]
        );
        let idx: Vec<usize> = f.events.iter().map(|e| e.0).collect();
        assert_eq!(idx, [0, 2]);
        for (i, key, stored) in &f.events {
            let want = event(*i as u8);
            // Keys as they were then (SHA-256 until version 2): the hour is
            // the same.
            assert_eq!(key[..4], want.key()[..4]);
            assert_eq!(stored.event.source_ip, want.source_ip);
            assert_eq!(stored.event.source_port, want.source_port);
            assert_eq!(stored.event.time_source, want.time_source);
            assert_eq!(stored.event.malware.as_deref(), Some("mirai"));
            assert_eq!(stored.event.feed_name, "event4_sinkhole");
            // No harmonized fields were kept then.
            assert!(stored.event.extra.is_empty());
        }
        let a = f.events[0].2.attribution.as_ref().unwrap();
        assert_eq!((a.subscriber.as_str(), a.audit_seq), ("S1", 77));
        assert_eq!(f.events[0].2.case_id, Some(5));
        assert_eq!(f.events[1].2.attribution, None);
        assert_eq!(f.events[1].2.unattributed.as_deref(), Some("no binding"));
        f
    }

    /// Version 1: deflated, strings in place.
    const FIELDS_V1: &str = "626464656162606037997724b2bde6a729bb1dff5d61659603803130311cdcc1c4a6c0c8bb83010118191a8eccbfcab3e2dbdc0dbc7cb9893999c999f9a5c5bac9f929a9fc997969a9c925a929bac595c525a9b90c6cb999458999fca965a9792526f1c59979d919f939a93cc1198929f9e5c5a94565a9450c0c8c4cc1867c9979c59929a9bac5a9c5c599f979b318191899400eda2273327e75df81a40bdb97af023988e9303607b550d7410cdc79f90a499979299979e90c00";

    /// Version 2: strings in a table, no harmonized fields.
    const FIELDS_V2_HEX: &str = "ff02080e6d616c6963696f75732d636f64650f696e6665637465642d73797374656d056d697261690f6576656e74345f73696e6b686f6c650c536861646f777365727665720253310e696e736964652d73657373696f6e0a6e6f2062696e64696e6701050402000007349e22cd29efca4a7d299bdef01904c0000200c1b8020620010db80000000000000000000000010080c49fd50c8ad9b1b10d00010003030400000105069a010001020007349e9b4efaa27c7cfc555cbd277f04c0000202c3b8020620010db80000000000000000000000010084c49fd50c8ad9b1b10d0001000303040000000800";

    #[test]
    fn fields_written_by_version_1_still_read() {
        read_old_fields(FIELDS_V1);
    }

    #[test]
    fn fields_written_by_version_2_still_read_with_no_harmonized_fields() {
        assert!(FIELDS_V2_HEX.starts_with("ff02"));
        let f = read_old_fields(FIELDS_V2_HEX);
        assert_eq!(f.events[1].1, event(2).key());
        assert_eq!(f.events[1].2.event.destination_ip, event(2).destination_ip);
        // Written now, fields are version 3.
        assert_eq!(encode_fields(&[], &[])[..2], [FIELDS_V2, FIELDS_VERSION]);
    }

    #[test]
    fn a_damaged_segment_reads_as_nothing_rather_than_garbage() {
        let e = event(1);
        let data = encode_raw([raw_parts(&e)]);
        assert!(decode_raw(&data[..data.len() / 2]).is_none());
        assert!(decode_fields(1, b"not deflate").is_none());
        let fields = encode_fields(&[], &[]);
        assert!(decode_fields(1, &fields).is_some());
        assert!(decode_fields(1, &fields[..fields.len() - 1]).is_none());
    }
}
