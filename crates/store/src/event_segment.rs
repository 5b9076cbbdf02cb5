//! Event segments: the events of one stored batch kept as two compressed
//! values, their fields and their raw records, instead of a row (and four
//! index entries) per event. Ingest writes a segment per batch; an event is
//! found again by its id, `segment << 16 | index in the batch`.
//!
//! The raw records of a batch are encoded without the writer's lock held,
//! before the batch is known to be new; the fields are encoded inside the
//! transaction, once the idempotency keys tell which events are new and
//! the cases they belong to are numbered. A segment also lists, for each
//! case with events in it, the case's previous segment: a case's events are
//! read newest first by following that chain, with no row per event.
//!
//! The encoding is kanki's own (varints, length-prefixed bytes, deflate):
//! it is read only by this module, and a general serializer would add a
//! dependency and a per-field cost to the ingest's hottest loop. Its first
//! byte is a version.

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
pub(crate) fn encode_raw<'a>(records: impl IntoIterator<Item = RawParts<'a>>) -> Vec<u8> {
    let records = records.into_iter();
    let mut heads: Vec<&[u8]> = Vec::new();
    let mut body = Vec::with_capacity(records.size_hint().0 * 160);
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
    let mut plain = Vec::with_capacity(body.len() + 64);
    plain.push(VERSION);
    put_uint(&mut plain, heads.len() as u64);
    for h in &heads {
        put_bytes(&mut plain, h);
    }
    put_uint(&mut plain, n);
    plain.extend_from_slice(&body);
    deflate(&plain)
}

/// The raw records of a batch, by index.
pub(crate) fn decode_raw(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let plain = inflate(data)?;
    let mut r = Reader(&plain);
    if r.byte()? != VERSION {
        return None;
    }
    let heads: Vec<&[u8]> = (0..r.uint()?).map(|_| r.bytes()).collect::<Option<_>>()?;
    let n = r.uint()? as usize;
    let mut out = Vec::with_capacity(n.min(SEGMENT_EVENTS));
    for _ in 0..n {
        let head = r.uint()?;
        let rest = r.bytes()?;
        out.push(match head {
            0 => rest.to_vec(),
            h => {
                let h = heads.get(h as usize - 1)?;
                let mut v = Vec::with_capacity(h.len() + 1 + rest.len());
                v.extend_from_slice(h);
                v.push(b'\n');
                v.extend_from_slice(rest);
                v
            }
        });
    }
    Some(out)
}

/// The fields of a segment's events (those stored: a duplicate's index is
/// absent), with the segment's cases.
pub(crate) fn encode_fields(cases: &[SegmentCase], events: &[SegmentEvent<'_>]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + events.len() * 96);
    b.push(VERSION);
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
        put_str(&mut b, &e.taxonomy);
        put_str(&mut b, &e.class);
        put_opt_str(&mut b, e.identifier.as_deref());
        put_opt_str(&mut b, e.malware.as_deref());
        put_str(&mut b, &e.feed_name);
        put_str(&mut b, &e.feed_provider);
        put_opt_str(&mut b, e.transport.as_deref());
        put_opt_str(&mut b, e.application.as_deref());
        match w.attribution {
            Some(a) => {
                b.push(1);
                put_str(&mut b, &a.subscriber);
                put_str(&mut b, &a.confidence);
                put_int(&mut b, w.audit_seq);
            }
            None => b.push(0),
        }
        put_opt_str(&mut b, w.unattributed);
        put_opt_uint(&mut b, w.case.map(|c| c as u64));
    }
    deflate(&b)
}

/// A segment's fields, read back.
pub(crate) struct Fields {
    pub cases: Vec<SegmentCase>,
    /// Each event with its index in the batch and its key; `raw` empty.
    pub events: Vec<(usize, EventKey, StoredEvent)>,
}

/// Reads a segment's fields; `segment` makes the events' ids and case ids.
pub(crate) fn decode_fields(segment: i64, data: &[u8]) -> Option<Fields> {
    let plain = inflate(data)?;
    let mut r = Reader(&plain);
    if r.byte()? != VERSION {
        return None;
    }
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
    for _ in 0..n {
        let index = r.uint()? as usize;
        let key: EventKey = r.take(16)?.try_into().ok()?;
        let source_ip = r.ip()??;
        let source_port = r.opt_port()?;
        let destination_ip = r.ip()?;
        let destination_port = r.opt_port()?;
        let time_source = time(r.int()?);
        let time_observation = time(r.int()?);
        let taxonomy = r.string()?;
        let class = r.string()?;
        let identifier = r.opt_string()?;
        let malware = r.opt_string()?;
        let feed_name = r.string()?;
        let feed_provider = r.string()?;
        let transport = r.opt_string()?;
        let application = r.opt_string()?;
        let attribution = match r.byte()? {
            0 => None,
            _ => Some(EventAttribution {
                subscriber: r.string()?,
                confidence: r.string()?,
                audit_seq: r.int()?,
            }),
        };
        let unattributed = r.opt_string()?;
        let case_id = match r.uint()? {
            0 => None,
            c => Some(cases.get(c as usize - 1)?.id),
        };
        let event = Event {
            source_ip,
            source_port,
            destination_ip,
            destination_port,
            time_source,
            time_observation,
            taxonomy,
            class,
            identifier,
            malware,
            feed_name,
            feed_provider,
            transport,
            application,
            extra: Default::default(),
            raw: Vec::new(),
            raw_head: None,
        };
        events.push((
            index,
            key,
            StoredEvent {
                id: event_id(segment, index),
                event,
                raw: String::new(),
                attribution,
                unattributed,
                case_id,
            },
        ));
    }
    Some(Fields { cases, events })
}

fn time(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap_or_default()
}

fn deflate(plain: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(plain.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = z.write_all(plain);
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

fn put_opt_str(b: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => {
            put_uint(b, s.len() as u64 + 1);
            b.extend_from_slice(s.as_bytes());
        }
        None => b.push(0),
    }
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

    fn string(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        match self.uint()? {
            0 => Some(None),
            n => Some(Some(
                String::from_utf8_lossy(self.take(n as usize - 1)?).into_owned(),
            )),
        }
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

    fn event(i: u8) -> Event {
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
        let events: Vec<Event> = (0..5).map(event).collect();
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
        let raw = decode_raw(&encode_raw(all.map(raw_parts))).unwrap();
        assert_eq!(raw.len(), 9);
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
        want.time_observation = time(want.time_observation.timestamp());
        assert_eq!(
            serde_json::to_value(&e.event).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        assert_eq!(f.events[2].2.unattributed.as_deref(), Some("no binding"));
        assert_eq!(f.events[2].2.case_id, None);
    }

    #[test]
    fn a_damaged_segment_reads_as_nothing_rather_than_garbage() {
        let e = event(1);
        let data = encode_raw([raw_parts(&e)]);
        assert!(decode_raw(&data[..data.len() / 2]).is_none());
        assert!(decode_fields(1, b"not deflate").is_none());
    }
}
