//! A served zone: its settings (what the records look like), its state at
//! one serial (content and the journal's chain of differences), and the
//! transfer writer that turns them into DNS messages.
//!
//! Zone records are written straight into wire form here, one entry at a
//! time, with every owner name compressed against the question (the zone
//! name at offset 12): a million-entry AXFR is two million records, and
//! building a `hickory_proto` `Record` with its own `Name` for each would
//! cost more than the whole transfer may take. The unit tests read every
//! message back with hickory-proto's decoder.

use std::sync::Arc;

use hickory_proto::rr::Name;
use kanki_exports::{RpzAction, RpzOptions, RpzRdata};

use super::content::{Content, EntryKind};
use super::tsig::Signer;

/// Aim for messages of about this size (TCP allows 65,535 with the TSIG).
pub const MESSAGE_TARGET: usize = 32 * 1024;

const T_A: u16 = 1;
const T_NS: u16 = 2;
const T_CNAME: u16 = 5;
const T_SOA: u16 = 6;
const T_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// A compression pointer to offset 12, where the question's name is.
const PTR_QNAME: [u8; 2] = [0xc0, 12];

/// One record's type and data in wire form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rdata {
    rtype: u16,
    data: Vec<u8>,
}

/// What a zone's records look like: everything but the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSettings {
    /// The zone name, lowercase, absolute.
    pub origin: Name,
    origin_wire: Vec<u8>,
    mname_wire: Vec<u8>,
    rname_wire: Vec<u8>,
    ns_wire: Vec<u8>,
    pub ttl: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    action: Vec<Rdata>,
    passthru: Vec<Rdata>,
    pub wildcards: bool,
}

impl ZoneSettings {
    /// From the RPZ options (origin, SOA, TTL, action, wildcards); in
    /// shadow mode every trigger gets `rpz-passthru.`.
    pub fn new(opts: &RpzOptions, shadow: bool) -> Result<ZoneSettings, String> {
        let apex = opts.apex()?;
        let name = |s: &str| -> Result<Name, String> {
            let mut n = Name::from_ascii(s).map_err(|e| format!("{s:?}: {e}"))?;
            n.set_fqdn(true);
            Ok(n.to_lowercase())
        };
        let origin = name(&apex.origin)?;
        let rdata = |action: &RpzAction| -> Result<Vec<Rdata>, String> {
            action
                .rdata()
                .into_iter()
                .map(|r| {
                    Ok(match r {
                        RpzRdata::Cname(t) => Rdata {
                            rtype: T_CNAME,
                            data: wire_name(&name(&t)?),
                        },
                        RpzRdata::A(a) => Rdata {
                            rtype: T_A,
                            data: a.octets().to_vec(),
                        },
                        RpzRdata::Aaaa(a) => Rdata {
                            rtype: T_AAAA,
                            data: a.octets().to_vec(),
                        },
                    })
                })
                .collect()
        };
        let passthru = rdata(&RpzAction::Passthru)?;
        Ok(ZoneSettings {
            origin_wire: wire_name(&origin),
            origin,
            mname_wire: wire_name(&name(&apex.mname)?),
            rname_wire: wire_name(&name(&apex.rname)?),
            ns_wire: wire_name(&name(&apex.ns)?),
            ttl: opts.ttl,
            refresh: opts.refresh,
            retry: opts.retry,
            expire: opts.expire,
            minimum: opts.minimum,
            action: if shadow {
                passthru.clone()
            } else {
                rdata(&opts.action)?
            },
            passthru,
            wildcards: opts.wildcards,
        })
    }

    /// A fingerprint of what the entries' records look like: when it
    /// changes, the journal cannot describe the change and starts over.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        h.write(&self.origin_wire);
        h.write(&self.ttl.to_be_bytes());
        for r in self.action.iter().chain(&self.passthru) {
            h.write(&r.rtype.to_be_bytes());
            h.write(&r.data);
            h.write(b"|");
        }
        h.write(&[self.wildcards as u8]);
        h.0
    }

    /// The zone name in wire form.
    pub fn origin_wire(&self) -> &[u8] {
        &self.origin_wire
    }

    fn rdata_of(&self, kind: EntryKind) -> &[Rdata] {
        match kind {
            EntryKind::Name | EntryKind::Ip => &self.action,
            EntryKind::Exception | EntryKind::ClientIp => &self.passthru,
        }
    }

    /// Records an entry has.
    pub fn records_per_entry(&self, kind: EntryKind) -> usize {
        let twins = if self.wildcards && matches!(kind, EntryKind::Name | EntryKind::Exception) {
            2
        } else {
            1
        };
        self.rdata_of(kind).len() * twins
    }

    /// Appends the SOA record of `serial` (owner: the question's name).
    fn push_soa(&self, buf: &mut Vec<u8>, serial: u32) {
        buf.extend_from_slice(&PTR_QNAME);
        buf.extend_from_slice(&T_SOA.to_be_bytes());
        buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        buf.extend_from_slice(&self.ttl.to_be_bytes());
        let len = self.mname_wire.len() + self.rname_wire.len() + 20;
        buf.extend_from_slice(&(len as u16).to_be_bytes());
        buf.extend_from_slice(&self.mname_wire);
        buf.extend_from_slice(&self.rname_wire);
        for v in [serial, self.refresh, self.retry, self.expire, self.minimum] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Appends the apex NS record.
    fn push_ns(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&PTR_QNAME);
        buf.extend_from_slice(&T_NS.to_be_bytes());
        buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        buf.extend_from_slice(&self.ttl.to_be_bytes());
        buf.extend_from_slice(&(self.ns_wire.len() as u16).to_be_bytes());
        buf.extend_from_slice(&self.ns_wire);
    }

    /// Appends the records of one entry; returns how many, 0 for an owner
    /// that cannot be written (an empty or over-long label, a name too
    /// long under this origin: never made by kanki, but a journal file is
    /// outside input).
    fn push_entry(&self, buf: &mut Vec<u8>, kind: EntryKind, owner: &str) -> u16 {
        let start = buf.len();
        if owner.len() + 2 * usize::from(self.wildcards) + self.origin_wire.len() > 254 {
            return 0;
        }
        // The owner, once: labels then the pointer to the origin.
        let mut owner_wire = [0u8; 256];
        let mut n = 0;
        for label in owner.split('.') {
            if label.is_empty() || label.len() > 63 {
                return 0;
            }
            owner_wire[n] = label.len() as u8;
            owner_wire[n + 1..n + 1 + label.len()].copy_from_slice(label.as_bytes());
            n += 1 + label.len();
        }
        owner_wire[n..n + 2].copy_from_slice(&PTR_QNAME);
        n += 2;
        let owner_wire = &owner_wire[..n];
        let rdata = self.rdata_of(kind);
        let mut count = 0u16;
        let twins = self.wildcards && matches!(kind, EntryKind::Name | EntryKind::Exception);
        for wildcard in [false, true] {
            if wildcard && !twins {
                break;
            }
            for r in rdata {
                if wildcard {
                    buf.extend_from_slice(&[1, b'*']);
                }
                buf.extend_from_slice(owner_wire);
                buf.extend_from_slice(&r.rtype.to_be_bytes());
                buf.extend_from_slice(&CLASS_IN.to_be_bytes());
                buf.extend_from_slice(&self.ttl.to_be_bytes());
                buf.extend_from_slice(&(r.data.len() as u16).to_be_bytes());
                buf.extend_from_slice(&r.data);
                count += 1;
            }
        }
        debug_assert!(buf.len() > start || count == 0);
        count
    }
}

/// A name in uncompressed, lowercase wire form.
pub fn wire_name(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// FNV-1a, 64 bits: a hash that stays the same across builds and versions
/// (the journal file keeps it).
#[derive(Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The difference between two serials of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub from: u32,
    pub to: u32,
    pub removed: Content,
    pub added: Content,
}

impl Diff {
    /// Entries changed (removed plus added): what the journal depth counts.
    pub fn changes(&self) -> u64 {
        (self.removed.len() + self.added.len()) as u64
    }
}

/// A zone at one serial: what transfers and SOA answers are made from.
/// Immutable; a change makes a new one.
#[derive(Debug)]
pub struct ZoneState {
    pub serial: u32,
    pub settings: Arc<ZoneSettings>,
    pub content: Arc<Content>,
    /// The journal: differences in order, the last ending at `serial`,
    /// each starting where the one before ended.
    pub history: Vec<Arc<Diff>>,
}

impl ZoneState {
    /// The differences from `serial` to the current one, if the journal
    /// still has them all.
    pub fn chain_from(&self, serial: u32) -> Option<&[Arc<Diff>]> {
        let i = self.history.iter().position(|d| d.from == serial)?;
        Some(&self.history[i..])
    }
}

/// RFC 1982: whether serial `a` is after `b`.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// One part of a transfer's answer.
#[derive(Debug, Clone, Copy)]
enum Part {
    Soa(u32),
    Ns,
    /// The whole content.
    Full,
    /// `history[i].removed`, `history[i].added`.
    Removed(usize),
    Added(usize),
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The SOA alone (a SOA query, or an IXFR from a current serial).
    Soa,
    /// The apex NS.
    Ns,
    /// The whole zone: SOA, NS, entries, SOA (AXFR, and IXFR's fallback).
    Full,
    /// IXFR's differences from a serial the journal has.
    Incremental { from: u32 },
}

/// The messages of one answer, written one at a time so that a large
/// transfer never sits in memory whole.
pub struct Transfer {
    state: Arc<ZoneState>,
    id: u16,
    flags: u16,
    qtype: u16,
    parts: Vec<Part>,
    part: usize,
    entry: usize,
    signer: Option<Signer>,
    finished: bool,
    pub messages: u64,
    pub records: u64,
}

impl Transfer {
    /// `request_flags` are the request's second header word: the answer
    /// copies its opcode and RD bit.
    pub fn new(
        state: Arc<ZoneState>,
        kind: Kind,
        id: u16,
        request_flags: u16,
        qtype: u16,
        signer: Option<Signer>,
    ) -> Transfer {
        let serial = state.serial;
        let parts = match kind {
            Kind::Soa => vec![Part::Soa(serial)],
            Kind::Ns => vec![Part::Ns],
            Kind::Full => vec![Part::Soa(serial), Part::Ns, Part::Full, Part::Soa(serial)],
            Kind::Incremental { from } => {
                let start = state
                    .history
                    .iter()
                    .position(|d| d.from == from)
                    .expect("the caller checked the journal has it");
                let mut p = vec![Part::Soa(serial)];
                for i in start..state.history.len() {
                    let d = &state.history[i];
                    p.extend([
                        Part::Soa(d.from),
                        Part::Removed(i),
                        Part::Soa(d.to),
                        Part::Added(i),
                    ]);
                }
                p.push(Part::Soa(serial));
                p
            }
        };
        // QR, AA; the request's opcode and RD.
        let flags = 0x8400 | (request_flags & 0x7900);
        Transfer {
            state,
            id,
            flags,
            qtype,
            parts,
            part: 0,
            entry: 0,
            signer,
            finished: false,
            messages: 0,
            records: 0,
        }
    }

    fn entries(&self, part: Part) -> Option<&Content> {
        match part {
            Part::Full => Some(&self.state.content),
            Part::Removed(i) => Some(&self.state.history[i].removed),
            Part::Added(i) => Some(&self.state.history[i].added),
            _ => None,
        }
    }

    /// The next message, or `None` when the answer is complete.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let settings = self.state.settings.clone();
        let mut buf = Vec::with_capacity(MESSAGE_TARGET + 1024);
        buf.extend_from_slice(&self.id.to_be_bytes());
        buf.extend_from_slice(&self.flags.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(settings.origin_wire());
        buf.extend_from_slice(&self.qtype.to_be_bytes());
        buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        let mut count: u32 = 0;
        while self.part < self.parts.len() && buf.len() < MESSAGE_TARGET && count < 60_000 {
            let part = self.parts[self.part];
            match part {
                Part::Soa(serial) => {
                    settings.push_soa(&mut buf, serial);
                    count += 1;
                    self.part += 1;
                }
                Part::Ns => {
                    settings.push_ns(&mut buf);
                    count += 1;
                    self.part += 1;
                }
                _ => {
                    let content = self.entries(part).expect("an entries part");
                    let n = content.len();
                    let mut i = self.entry;
                    while i < n && buf.len() < MESSAGE_TARGET && count < 60_000 {
                        let (kind, owner) = content.get(i);
                        count += u32::from(settings.push_entry(&mut buf, kind, owner));
                        i += 1;
                    }
                    self.entry = i;
                    if i >= n {
                        self.part += 1;
                        self.entry = 0;
                    }
                }
            }
        }
        if self.part >= self.parts.len() {
            self.finished = true;
        }
        buf[6..8].copy_from_slice(&(count as u16).to_be_bytes());
        if let Some(s) = &mut self.signer {
            s.sign(&mut buf);
        }
        self.messages += 1;
        self.records += u64::from(count);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::{RData, RecordType};

    pub(crate) fn state(opts: &RpzOptions, entries: &[(EntryKind, &str)]) -> Arc<ZoneState> {
        Arc::new(ZoneState {
            serial: 7,
            settings: Arc::new(ZoneSettings::new(opts, false).unwrap()),
            content: Arc::new(Content::from_entries(entries.iter().copied())),
            history: Vec::new(),
        })
    }

    fn records(msgs: &[Vec<u8>]) -> Vec<String> {
        let mut out = Vec::new();
        for m in msgs {
            let msg = Message::from_vec(m).unwrap();
            assert_eq!(msg.queries.len(), 1);
            for r in &msg.answers {
                let data = match &r.data {
                    RData::SOA(soa) => format!("SOA {}", soa.serial),
                    other => other.to_string(),
                };
                out.push(format!("{} {} {}", r.name, r.record_type(), data));
            }
        }
        out
    }

    #[test]
    fn axfr_reads_back_with_hickory() {
        let opts = RpzOptions {
            origin: "rpz.kanki".into(),
            action: "cname:*.garden.example".parse().unwrap(),
            ..RpzOptions::default()
        };
        let st = state(
            &opts,
            &[
                (EntryKind::Name, "bad.example"),
                (EntryKind::Exception, "ok.bad.example"),
                (EntryKind::Ip, "32.1.2.0.192.rpz-ip"),
            ],
        );
        let mut t = Transfer::new(st, Kind::Full, 0x1234, 0x0100, 252, None);
        let mut msgs = Vec::new();
        while let Some(m) = t.next_message() {
            msgs.push(m);
        }
        assert_eq!(msgs.len(), 1);
        let msg = Message::from_vec(&msgs[0]).unwrap();
        assert_eq!(msg.metadata.id, 0x1234);
        assert!(msg.metadata.authoritative && msg.metadata.recursion_desired);
        assert_eq!(msg.queries[0].query_type, RecordType::AXFR);
        assert_eq!(
            records(&msgs),
            [
                "rpz.kanki. SOA SOA 7",
                "rpz.kanki. NS localhost.",
                "bad.example.rpz.kanki. CNAME *.garden.example.",
                "*.bad.example.rpz.kanki. CNAME *.garden.example.",
                "ok.bad.example.rpz.kanki. CNAME rpz-passthru.",
                "*.ok.bad.example.rpz.kanki. CNAME rpz-passthru.",
                "32.1.2.0.192.rpz-ip.rpz.kanki. CNAME *.garden.example.",
                "rpz.kanki. SOA SOA 7",
            ]
        );
    }

    #[test]
    fn large_transfers_split_into_messages_under_64k() {
        let opts = RpzOptions {
            action: "local:192.0.2.1,2001:db8::1".parse().unwrap(),
            ..RpzOptions::default()
        };
        let names: Vec<String> = (0..20_000)
            .map(|i| format!("host-{i}.bad.example"))
            .collect();
        let entries: Vec<(EntryKind, &str)> = names
            .iter()
            .map(|n| (EntryKind::Name, n.as_str()))
            .collect();
        let st = state(&opts, &entries);
        let mut t = Transfer::new(st, Kind::Full, 1, 0, 252, None);
        let mut msgs = Vec::new();
        while let Some(m) = t.next_message() {
            assert!(m.len() < 65_535);
            msgs.push(m);
        }
        assert!(msgs.len() > 10);
        let all = records(&msgs);
        assert_eq!(all.len(), 20_000 * 4 + 3);
        assert_eq!(t.records, all.len() as u64);
        assert!(all.contains(&"*.host-19999.bad.example.rpz.kanki. AAAA 2001:db8::1".to_string()));
    }

    #[test]
    fn serial_arithmetic() {
        assert!(serial_gt(2, 1));
        assert!(!serial_gt(1, 1));
        assert!(serial_gt(0, u32::MAX));
        assert!(!serial_gt(u32::MAX, 0));
    }
}
