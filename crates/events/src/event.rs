//! The harmonized event.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One security event, with IntelMQ's harmonized field names. Fields that
/// kanki acts on are typed; every other harmonized field a parser mapped is
/// in `extra` under its IntelMQ name (`source.asn`, `extra.tag`, ...): the
/// harmonized ones are stored and shown ([`Event::harmonized_extra`]), a
/// report's own columns (`extra.*`) are kept in its raw record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "source.ip")]
    pub source_ip: IpAddr,
    #[serde(rename = "source.port", skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    #[serde(rename = "destination.ip", skip_serializing_if = "Option::is_none")]
    pub destination_ip: Option<IpAddr>,
    #[serde(rename = "destination.port", skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    /// When the source did it, by the reporter's clock.
    #[serde(rename = "time.source")]
    pub time_source: DateTime<Utc>,
    /// When kanki read it.
    #[serde(rename = "time.observation")]
    pub time_observation: DateTime<Utc>,
    /// RSIT taxonomy: `malicious-code`, `intrusion-attempts`, `vulnerable`, ...
    #[serde(rename = "classification.taxonomy")]
    pub taxonomy: String,
    /// RSIT type: `infected-system`, `brute-force`, `vulnerable-system`, ...
    /// The event's class: the ground of its attribution is configured per type.
    #[serde(rename = "classification.type")]
    pub class: String,
    #[serde(
        rename = "classification.identifier",
        skip_serializing_if = "Option::is_none"
    )]
    pub identifier: Option<String>,
    /// The malware family, lower case.
    #[serde(rename = "malware.name", skip_serializing_if = "Option::is_none")]
    pub malware: Option<String>,
    #[serde(rename = "feed.name")]
    pub feed_name: String,
    #[serde(rename = "feed.provider")]
    pub feed_provider: String,
    #[serde(rename = "protocol.transport", skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(
        rename = "protocol.application",
        skip_serializing_if = "Option::is_none"
    )]
    pub application: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
    /// The record as the feed wrote it (for a CSV row: the header line and
    /// the row), less `raw_head` when that is set. Stored compressed; the
    /// idempotency key is made from it.
    #[serde(skip)]
    pub raw: Vec<u8>,
    /// The first line of the record when every record of the input starts
    /// with it (a CSV report's header, without its line end), held once for
    /// them all rather than copied into each: the whole record is then
    /// `raw_head`, `\n`, `raw`. A header is often longer than its row.
    #[serde(skip)]
    pub raw_head: Option<Arc<[u8]>>,
    /// A remark on how the record was read (`short row`), which an ingest
    /// counts; not stored.
    #[serde(skip)]
    pub remark: Option<&'static str>,
}

/// An event's idempotency key: the same record from the same feed has the
/// same key, so ingesting a file again adds nothing.
pub type EventKey = [u8; 16];

/// The hasher of sets of keys (or of their parts after the hour). A key
/// is a hash already, so its bytes are the set's hash: SipHash over each
/// of millions of keys was a twentieth of an ingest.
#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A key (or its tail) hashes as its bytes (arrays write their bytes
        // whole), most of them a hash of the record. Anything else still
        // hashes, if poorly.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(b);
        }
    }
}

/// How many items of `item_bytes` a hash set may hold in `bytes`: the
/// slots of Rust's `HashSet` (SwissTable) are a power of two, an item and
/// a control byte each, filled to 7/8 before the table doubles. A set kept
/// under this many items never takes more than `bytes`.
pub const fn hash_set_items_within(bytes: usize, item_bytes: usize) -> usize {
    let most_slots = bytes / (item_bytes + 1);
    if most_slots < 8 {
        return 0;
    }
    // The largest power of two of slots that fits.
    let slots = 1usize << (usize::BITS - 1 - most_slots.leading_zeros());
    slots / 8 * 7
}

impl Event {
    /// A new event of a class, seen now; the parser fills in the rest.
    pub fn new(
        source_ip: IpAddr,
        time_source: DateTime<Utc>,
        taxonomy: &str,
        class: &str,
        feed_name: &str,
        feed_provider: &str,
    ) -> Event {
        Event {
            source_ip,
            source_port: None,
            destination_ip: None,
            destination_port: None,
            time_source,
            time_observation: Utc::now(),
            taxonomy: taxonomy.to_string(),
            class: class.to_string(),
            identifier: None,
            malware: None,
            feed_name: feed_name.to_string(),
            feed_provider: feed_provider.to_string(),
            transport: None,
            application: None,
            extra: BTreeMap::new(),
            raw: Vec::new(),
            raw_head: None,
            remark: None,
        }
    }

    /// The whole record as the feed wrote it.
    pub fn raw_record(&self) -> Cow<'_, [u8]> {
        match &self.raw_head {
            None => Cow::Borrowed(&self.raw),
            Some(h) => Cow::Owned([&h[..], b"\n", &self.raw].concat()),
        }
    }

    /// The record as its first line, if it has more than one, and the rest
    /// (line ends left out): with `raw_head`, that and `raw`.
    pub fn raw_lines(&self) -> (Option<&[u8]>, &[u8]) {
        match &self.raw_head {
            Some(h) => (Some(h), &self.raw),
            None => match self.raw.iter().position(|&b| b == b'\n') {
                Some(n) => (Some(&self.raw[..n]), &self.raw[n + 1..]),
                None => (None, &self.raw),
            },
        }
    }

    /// The hour of `time.source` (4 bytes, big-endian hours since 1970),
    /// then the first 12 bytes of a BLAKE3 hash of the feed name and the
    /// raw record. Led by the hour so that a feed's keys, which come
    /// roughly in time order, land near each other in the store: a batch
    /// probes and inserts into a few hot places instead of all over an
    /// index larger than the cache.
    ///
    /// The hash is BLAKE3's keyed hash of the record's rest, keyed by the
    /// BLAKE3 hash of what the records of one input share (the feed name
    /// and a CSV report's header line), so that the shared part is hashed
    /// once per input. (Until schema 11 the key was SHA-256 of both; the
    /// migration made stored keys again in this form. SHA-256 without the
    /// CPU's SHA extensions was a quarter of parsing a report.)
    pub fn key(&self) -> EventKey {
        self.key_with(&mut None)
    }

    /// [`key`](Self::key), with the hash of the part records of one input
    /// share kept in `prefix` from one record to the next.
    pub fn key_with(&self, prefix: &mut Option<KeyPrefix>) -> EventKey {
        let (head, body) = self.raw_lines();
        let same = |p: &KeyPrefix| {
            p.feed == self.feed_name
                && match (&p.shared, &self.raw_head, head) {
                    (Some(a), Some(b), _) if Arc::ptr_eq(a, b) => true,
                    (_, _, Some(h)) => p.head.as_deref() == Some(h),
                    (_, _, None) => p.head.is_none(),
                }
        };
        let shared = match prefix {
            Some(p) if same(p) => p,
            _ => {
                let mut h = blake3::Hasher::new();
                h.update(&(self.feed_name.len() as u64).to_be_bytes());
                h.update(self.feed_name.as_bytes());
                if let Some(head) = head {
                    // The first line with its line end, as the whole
                    // record has it.
                    h.update(head);
                    h.update(b"\n");
                }
                prefix.insert(KeyPrefix {
                    feed: self.feed_name.clone(),
                    head: head.map(<[u8]>::to_vec),
                    shared: self.raw_head.clone(),
                    key: *h.finalize().as_bytes(),
                })
            }
        };
        let d = blake3::keyed_hash(&shared.key, body);
        let hour = (self.time_source.timestamp() / 3600).clamp(0, u32::MAX as i64) as u32;
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&hour.to_be_bytes());
        k[4..].copy_from_slice(&d.as_bytes()[..12]);
        k
    }

    /// The harmonized fields in `extra` (`source.asn`,
    /// `source.geolocation.cc`, `source.reverse_dns`, `source.network`,
    /// ...), by name: those an ingest stores with the event. A report's own
    /// columns (`extra.*`, which may hold what a sensor captured, such as a
    /// password tried) are left out: they stay in the raw record.
    pub fn harmonized_extra(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.extra
            .iter()
            .filter(|(k, _)| !k.starts_with("extra."))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// About how many bytes the event holds in memory (itself, its strings,
    /// its `extra` and its raw record): what an ingest counts to bound the
    /// events it holds in flight.
    pub fn size_in_memory(&self) -> usize {
        // A string's allocation, rounded as an allocator does, and a map
        // entry's share of its node.
        let s = |v: &str| v.len().next_multiple_of(16);
        let o = |v: &Option<String>| v.as_deref().map_or(0, s);
        std::mem::size_of::<Event>()
            + s(&self.taxonomy)
            + s(&self.class)
            + s(&self.feed_name)
            + s(&self.feed_provider)
            + o(&self.identifier)
            + o(&self.malware)
            + o(&self.transport)
            + o(&self.application)
            + self
                .extra
                .iter()
                .map(|(k, v)| 64 + s(k) + s(v))
                .sum::<usize>()
            + self.raw.capacity()
    }

    /// What a case is about: the malware family, else the classification
    /// identifier, else the class.
    pub fn threat(&self) -> &str {
        self.malware
            .as_deref()
            .or(self.identifier.as_deref())
            .unwrap_or(&self.class)
    }
}

/// The hash of the part of a record that records of one input share; see
/// [`Event::key_with`].
#[derive(Clone)]
pub struct KeyPrefix {
    feed: String,
    /// The first line, without its line end.
    head: Option<Vec<u8>>,
    /// The same, when the record held it shared: told by its address.
    shared: Option<Arc<[u8]>>,
    /// Their hash: the key of each record's keyed hash.
    key: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_under_its_item_bound_stays_within_its_bytes() {
        let bytes = 1 << 20;
        let most = hash_set_items_within(bytes, size_of::<EventKey>());
        assert!(most > 20_000, "{most}");
        let mut set: std::collections::HashSet<EventKey, std::hash::BuildHasherDefault<KeyHasher>> =
            Default::default();
        let key = |i: u64| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            k
        };
        for i in 0..most as u64 {
            set.insert(key(i));
        }
        let slot_bytes = |s: &std::collections::HashSet<_, _>| s.capacity() / 7 * 8 * 17;
        assert!(
            slot_bytes(&set) <= bytes,
            "{} slots' bytes",
            slot_bytes(&set)
        );
        // One more, and the table doubles past the bound.
        set.insert(key(u64::MAX));
        assert!(slot_bytes(&set) > bytes);
    }

    /// A sinkhole event from 192.0.2.1, now.
    fn sinkhole_event() -> Event {
        Event::new(
            "192.0.2.1".parse().unwrap(),
            Utc::now(),
            "malicious-code",
            "infected-system",
            "Sinkhole-Events IPv4",
            "Shadowserver",
        )
    }

    #[test]
    fn a_key_made_with_a_kept_prefix_is_the_key() {
        let mut prefix = None;
        let mut e = sinkhole_event();
        let mut keys = Vec::new();
        for raw in [
            "timestamp,ip\n2026-11-22,192.0.2.1",
            "timestamp,ip\n2026-11-22,192.0.2.2",
            "timestamp,ip,port\n2026-11-22,192.0.2.2,23",
            "one line, no header",
        ] {
            e.raw = raw.as_bytes().to_vec();
            let k = e.key_with(&mut prefix);
            assert_eq!(k, e.key(), "{raw}");
            keys.push(k);
        }
        e.feed_name = "another feed".into();
        assert_ne!(e.key_with(&mut prefix), keys[3]);
        assert_eq!(e.key_with(&mut prefix), e.key());
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn a_shared_first_line_makes_the_key_and_the_record_of_the_whole() {
        let head: Arc<[u8]> = Arc::from(&b"timestamp,ip"[..]);
        let mut prefix = None;
        for row in ["2026-11-22,192.0.2.1", "2026-11-22,192.0.2.2"] {
            let mut whole = sinkhole_event();
            whole.raw = format!("timestamp,ip\n{row}").into_bytes();
            let mut shared = whole.clone();
            shared.raw = row.as_bytes().to_vec();
            shared.raw_head = Some(head.clone());
            assert_eq!(shared.key_with(&mut prefix), whole.key(), "{row}");
            assert_eq!(whole.key_with(&mut prefix), whole.key(), "{row}");
            assert_eq!(shared.raw_record(), whole.raw_record());
            assert_eq!(shared.raw_lines(), whole.raw_lines());
        }
    }

    /// Stored keys are this construction (schema 11 made the older ones
    /// again in it): changing it orphans every stored key.
    #[test]
    fn the_key_is_the_hour_and_a_keyed_blake3_of_the_record() {
        let mut e = sinkhole_event();
        e.time_source = "2026-11-01T10:20:00Z".parse().unwrap();
        e.raw = b"timestamp,ip\n2026-11-01 10:20:00,192.0.2.1".to_vec();
        let feed = e.feed_name.as_bytes();
        let mut shared = blake3::Hasher::new();
        shared.update(&(feed.len() as u64).to_be_bytes());
        shared.update(feed);
        shared.update(b"timestamp,ip\n");
        let d = blake3::keyed_hash(
            shared.finalize().as_bytes(),
            b"2026-11-01 10:20:00,192.0.2.1",
        );
        let k = e.key();
        assert_eq!(k[..4], (1_793_528_400u32 / 3600).to_be_bytes());
        assert_eq!(k[4..], d.as_bytes()[..12]);
    }

    #[test]
    fn serializes_with_intelmq_names() {
        let mut e = sinkhole_event();
        e.malware = Some("mirai".into());
        e.extra.insert("source.asn".into(), "64500".into());
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["source.ip"], "192.0.2.1");
        assert_eq!(v["classification.type"], "infected-system");
        assert_eq!(v["malware.name"], "mirai");
        assert_eq!(v["source.asn"], "64500");
        assert_eq!(e.threat(), "mirai");
    }

    #[test]
    fn the_key_follows_the_feed_and_the_record() {
        let mut a = Event::new(
            "192.0.2.1".parse().unwrap(),
            Utc::now(),
            "t",
            "c",
            "feed",
            "p",
        );
        a.raw = b"row".to_vec();
        let mut b = a.clone();
        b.time_observation = Utc::now() + chrono::Duration::hours(1);
        assert_eq!(a.key(), b.key());
        b.raw = b"other row".to_vec();
        assert_ne!(a.key(), b.key());
    }
}
