//! What the primary answers to one request: the whole request path from
//! the received bytes to the answer, with no I/O, so the fuzz target and
//! the tests drive exactly what the listeners run.
//!
//! | request | answer |
//! | --- | --- |
//! | not a DNS message, or a response | nothing |
//! | unreadable past the header, no single question | FORMERR |
//! | an opcode other than QUERY | NOTIMP |
//! | TSIG with an unknown key or a bad MAC | NOTAUTH, TSIG error BADKEY / BADSIG (unsigned) |
//! | TSIG out of its time window | NOTAUTH, BADTIME (signed) |
//! | a zone kanki does not serve, a class other than IN | REFUSED |
//! | from an address outside `allow_transfer` | REFUSED |
//! | unsigned, or signed with another key, where the zone has `tsig_key` | REFUSED |
//! | SOA | the SOA |
//! | NS | the apex NS |
//! | AXFR over TCP | the zone (RFC 5936) |
//! | AXFR over UDP | FORMERR |
//! | IXFR from the current serial or later | the SOA |
//! | IXFR from a serial the journal has, over TCP | the differences (RFC 1995) |
//! | IXFR from an older or unknown serial, over TCP | the whole zone, AXFR-style |
//! | IXFR other than current, over UDP | the SOA (the client then asks over TCP) |
//! | any other type | REFUSED |
//! | a zone not built yet | SERVFAIL |
//!
//! Every refusal and failure is counted in [`RpzStats`].

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};

use super::server::{RpzServer, ZoneHandle};
use super::tsig::{self, Checked, Signer};
use super::zone::{Kind, Transfer, serial_gt};

/// What to send back.
pub enum Reply {
    /// Nothing.
    Drop,
    /// One message.
    Message(Vec<u8>),
    /// A transfer or SOA answer: call [`Transfer::next_message`] until it
    /// says `None`.
    Transfer(Transfer),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Drop => f.write_str("Drop"),
            Reply::Message(m) => write!(f, "Message({} bytes)", m.len()),
            Reply::Transfer(_) => f.write_str("Transfer"),
        }
    }
}

/// An error answer: the request's ID, opcode and question, this rcode.
fn error(req: Option<&Message>, raw: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let id = u16::from_be_bytes([raw[0], raw[1]]);
    let op = req.map_or(OpCode::Query, |m| m.metadata.op_code);
    let mut msg = Message::error_msg(id, op, rcode);
    if let Some(m) = req {
        msg.metadata.recursion_desired = m.metadata.recursion_desired;
        if m.queries.len() == 1 {
            msg.add_query(m.queries[0].clone());
        }
    }
    match msg.to_vec() {
        Ok(v) => v,
        // A question hickory read but cannot write back: answer without it.
        Err(_) => Message::error_msg(id, op, rcode)
            .to_vec()
            .unwrap_or_default(),
    }
}

impl RpzServer {
    /// Answers one request received from `peer` over TCP or UDP.
    pub fn handle(&self, raw: &[u8], peer: IpAddr, tcp: bool) -> Reply {
        let stats = &self.stats;
        if raw.len() < 12 || raw[2] & 0x80 != 0 {
            stats.malformed.inc();
            return Reply::Drop;
        }
        let req = match Message::from_vec(raw) {
            Ok(m) => m,
            Err(_) => {
                stats.malformed.inc();
                return Reply::Message(error(None, raw, ResponseCode::FormErr));
            }
        };
        if req.metadata.message_type != MessageType::Query {
            stats.malformed.inc();
            return Reply::Drop;
        }
        if req.metadata.op_code != OpCode::Query {
            stats.not_implemented.inc();
            return Reply::Message(error(Some(&req), raw, ResponseCode::NotImp));
        }
        if req.queries.len() != 1 {
            stats.malformed.inc();
            return Reply::Message(error(Some(&req), raw, ResponseCode::FormErr));
        }
        let now = tsig::now();
        let signed = match tsig::check(raw, &self.keys, now) {
            Checked::Invalid(inv) => {
                stats.tsig_failed.inc();
                let mut msg = error(Some(&req), raw, ResponseCode::NotAuth);
                match inv.signer.clone() {
                    Some((key, mac)) => Signer::bad_time(key, mac, now).sign(&mut msg),
                    None => tsig::append_error(&mut msg, &inv, now),
                }
                return Reply::Message(msg);
            }
            Checked::Valid { key, mac } => Some((key, mac)),
            Checked::Unsigned => None,
        };
        let signer = || signed.clone().map(|(k, m)| Signer::response(k, m, now));
        let refuse = |signer: Option<Signer>| {
            let mut msg = error(Some(&req), raw, ResponseCode::Refused);
            if let Some(mut s) = signer {
                s.sign(&mut msg);
            }
            Reply::Message(msg)
        };

        let q = &req.queries[0];
        let qname = q.name.to_lowercase();
        let Some(zone) = self.zones.iter().find(|z| z.name == qname) else {
            stats.refused_zone.inc();
            return refuse(signer());
        };
        if q.query_class != DNSClass::IN {
            stats.refused_zone.inc();
            return refuse(signer());
        }
        if !zone.allows(peer) {
            stats.refused_acl.inc();
            tracing::debug!(%peer, zone = %zone.name, "request from an address not in allow_transfer refused");
            return refuse(signer());
        }
        if let Some(required) = &zone.tsig_key {
            match &signed {
                Some((k, _)) if Arc::ptr_eq(k, required) => {}
                _ => {
                    stats.tsig_required.inc();
                    tracing::debug!(%peer, zone = %zone.name, "request without the zone's TSIG key refused");
                    return refuse(signer());
                }
            }
        }
        let Some(state) = zone.state() else {
            let mut msg = error(Some(&req), raw, ResponseCode::ServFail);
            if let Some(mut s) = signer() {
                s.sign(&mut msg);
            }
            return Reply::Message(msg);
        };
        let flags = u16::from_be_bytes([raw[2], raw[3]]);
        let id = req.metadata.id;
        let qtype = u16::from(q.query_type);
        let asked = |kind, had| super::server::SecondaryAsked {
            at: chrono::Utc::now(),
            kind,
            had,
            serial: state.serial,
        };
        let transfer = |kind| {
            Reply::Transfer(Transfer::new(
                state.clone(),
                kind,
                id,
                flags,
                qtype,
                signer(),
            ))
        };
        match q.query_type {
            RecordType::SOA => {
                stats.soa.inc();
                transfer(Kind::Soa)
            }
            RecordType::NS => transfer(Kind::Ns),
            RecordType::AXFR if !tcp => {
                stats.malformed.inc();
                let mut msg = error(Some(&req), raw, ResponseCode::FormErr);
                if let Some(mut s) = signer() {
                    s.sign(&mut msg);
                }
                Reply::Message(msg)
            }
            RecordType::AXFR => {
                stats.axfr.inc();
                tracing::info!(%peer, zone = %zone.name, serial = state.serial, "AXFR");
                zone.asked(peer, asked("axfr", None));
                transfer(Kind::Full)
            }
            RecordType::IXFR => {
                let client = req.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) if r.name.to_lowercase() == qname => Some(soa.serial),
                    _ => None,
                });
                let Some(client) = client else {
                    stats.malformed.inc();
                    let mut msg = error(Some(&req), raw, ResponseCode::FormErr);
                    if let Some(mut s) = signer() {
                        s.sign(&mut msg);
                    }
                    return Reply::Message(msg);
                };
                stats.ixfr.inc();
                if client == state.serial || serial_gt(client, state.serial) || !tcp {
                    zone.asked(peer, asked("up-to-date", Some(client)));
                    return transfer(Kind::Soa);
                }
                if state.chain_from(client).is_some() {
                    tracing::info!(%peer, zone = %zone.name, from = client, to = state.serial, "IXFR");
                    zone.asked(peer, asked("ixfr", Some(client)));
                    transfer(Kind::Incremental { from: client })
                } else {
                    stats.ixfr_full.inc();
                    tracing::info!(%peer, zone = %zone.name, from = client, to = state.serial, "IXFR from a serial the journal no longer has: full zone");
                    zone.asked(peer, asked("ixfr-full", Some(client)));
                    transfer(Kind::Full)
                }
            }
            _ => {
                stats.refused_zone.inc();
                refuse(signer())
            }
        }
    }
}

impl ZoneHandle {
    /// Whether `peer` may transfer this zone.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.acl.iter().any(|(net, len)| match (net, peer) {
            (IpAddr::V4(n), IpAddr::V4(p)) => {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(*n) == u32::from(p) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(p)) => {
                let mask = if *len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                u128::from(*n) == u128::from(p) & mask
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpz::content::{Content, EntryKind};
    use crate::rpz::server::{ZoneContent, ZoneSpec};
    use crate::rpz::tsig::TsigKey;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, Record, rdata::SOA};
    use kanki_exports::RpzOptions;

    fn server() -> (RpzServer, Arc<TsigKey>) {
        let key = Arc::new(TsigKey::new("k", "hmac-sha256", vec![7; 32]).unwrap());
        let spec = |origin: &str, tsig: bool| ZoneSpec {
            options: RpzOptions {
                origin: origin.into(),
                ..RpzOptions::default()
            },
            shadow: false,
            content: ZoneContent::List(Default::default()),
            consent: None,
            notify: Vec::new(),
            allow_transfer: vec![
                ("127.0.0.1".parse().unwrap(), 32),
                ("::1".parse().unwrap(), 128),
            ],
            tsig_key: tsig.then(|| key.clone()),
        };
        let s = RpzServer::new(
            vec![spec("open.rpz", false), spec("signed.rpz", true)],
            vec![key.clone()],
            None,
            3,
        )
        .unwrap();
        let c = |n: &[&str]| Content::from_entries(n.iter().map(|x| (EntryKind::Name, *x)));
        for z in &s.zones {
            z.update(c(&["a.example"]), 10).unwrap();
            z.update(c(&["a.example", "b.example"]), 11).unwrap();
            z.update(c(&["b.example", "c.example"]), 12).unwrap();
        }
        (s, key)
    }

    fn request(zone: &str, qtype: RecordType, serial: Option<u32>) -> Vec<u8> {
        let name = Name::from_ascii(zone).unwrap();
        let mut m = Message::query();
        m.metadata.id = 99;
        m.add_query(Query::query(name.clone(), qtype));
        if let Some(s) = serial {
            m.add_authority(Record::from_rdata(
                name,
                0,
                RData::SOA(SOA::new(Name::root(), Name::root(), s, 0, 0, 0, 0)),
            ));
        }
        m.to_vec().unwrap()
    }

    fn answer(r: Reply) -> (ResponseCode, Vec<String>) {
        let msgs = match r {
            Reply::Drop => return (ResponseCode::Unknown(999), vec![]),
            Reply::Message(m) => vec![m],
            Reply::Transfer(mut t) => std::iter::from_fn(|| t.next_message()).collect(),
        };
        let mut rcode = ResponseCode::NoError;
        let mut out = Vec::new();
        for m in msgs {
            let m = Message::from_vec(&m).unwrap();
            rcode = m.metadata.response_code;
            for r in &m.answers {
                out.push(match &r.data {
                    RData::SOA(s) => format!("SOA {}", s.serial),
                    d => format!("{} {d}", r.name),
                });
            }
        }
        (rcode, out)
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn ixfr_from_the_journal_or_the_whole_zone() {
        let (s, _) = server();
        // Serials follow the generation.
        let (rc, soa) = answer(s.handle(&request("open.rpz", RecordType::SOA, None), LOCAL, false));
        assert_eq!(
            (rc, soa),
            (ResponseCode::NoError, vec!["SOA 12".to_string()])
        );
        // Depth 3 changes: 10 -> 11 (one) and 11 -> 12 (two) are both kept.
        let (_, ixfr) = answer(s.handle(
            &request("open.rpz", RecordType::IXFR, Some(11)),
            LOCAL,
            true,
        ));
        assert_eq!(
            ixfr,
            [
                "SOA 12",
                "SOA 11",
                "a.example.open.rpz. .",
                "*.a.example.open.rpz. .",
                "SOA 12",
                "c.example.open.rpz. .",
                "*.c.example.open.rpz. .",
                "SOA 12"
            ]
        );
        let (_, from10) = answer(s.handle(
            &request("open.rpz", RecordType::IXFR, Some(10)),
            LOCAL,
            true,
        ));
        assert_eq!(
            from10[..4],
            ["SOA 12", "SOA 10", "SOA 11", "b.example.open.rpz. ."]
        );
        assert_eq!(s.stats.ixfr_full.get(), 0);
        // 9 is older than the journal: the whole zone.
        let (_, full) =
            answer(s.handle(&request("open.rpz", RecordType::IXFR, Some(9)), LOCAL, true));
        assert_eq!(full.first().unwrap(), "SOA 12");
        assert!(
            full.contains(&"open.rpz. localhost.".to_string()),
            "{full:?}"
        );
        assert_eq!(s.stats.ixfr_full.get(), 1);
        // Current: the SOA alone; over UDP, the SOA whatever the serial.
        assert_eq!(
            answer(s.handle(
                &request("open.rpz", RecordType::IXFR, Some(12)),
                LOCAL,
                true
            ))
            .1,
            ["SOA 12"]
        );
        assert_eq!(
            answer(s.handle(
                &request("open.rpz", RecordType::IXFR, Some(11)),
                LOCAL,
                false
            ))
            .1,
            ["SOA 12"]
        );
        // AXFR over UDP is malformed; IXFR without its SOA too.
        assert_eq!(
            answer(s.handle(&request("open.rpz", RecordType::AXFR, None), LOCAL, false)).0,
            ResponseCode::FormErr
        );
        assert_eq!(
            answer(s.handle(&request("open.rpz", RecordType::IXFR, None), LOCAL, true)).0,
            ResponseCode::FormErr
        );
    }

    #[test]
    fn refusals_are_counted() {
        let (s, key) = server();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            answer(s.handle(&request("open.rpz", RecordType::AXFR, None), other, true)).0,
            ResponseCode::Refused
        );
        assert_eq!(s.stats.refused_acl.get(), 1);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            answer(s.handle(&request("open.rpz", RecordType::SOA, None), mapped, true)).0,
            ResponseCode::NoError
        );
        assert_eq!(
            answer(s.handle(&request("nope.rpz", RecordType::SOA, None), LOCAL, true)).0,
            ResponseCode::Refused
        );
        assert_eq!(
            answer(s.handle(&request("open.rpz", RecordType::A, None), LOCAL, true)).0,
            ResponseCode::Refused
        );
        assert_eq!(s.stats.refused_zone.get(), 2);
        // The signed zone: unsigned refused, signed served.
        assert_eq!(
            answer(s.handle(&request("signed.rpz", RecordType::AXFR, None), LOCAL, true)).0,
            ResponseCode::Refused
        );
        assert_eq!(s.stats.tsig_required.get(), 1);
        let mut signed = request("signed.rpz", RecordType::AXFR, None);
        Signer::request(key.clone(), tsig::now()).sign(&mut signed);
        let (rc, records) = answer(s.handle(&signed, LOCAL, true));
        assert_eq!(rc, ResponseCode::NoError);
        assert_eq!(records.len(), 7);
        // A tampered signature.
        let n = signed.len();
        signed[n - 12] ^= 0x55;
        assert_eq!(
            answer(s.handle(&signed, LOCAL, true)).0,
            ResponseCode::NotAuth
        );
        assert_eq!(s.stats.tsig_failed.get(), 1);
        // Garbage and responses.
        assert!(matches!(s.handle(b"short", LOCAL, true), Reply::Drop));
        let mut resp = request("open.rpz", RecordType::SOA, None);
        resp[2] |= 0x80;
        assert!(matches!(s.handle(&resp, LOCAL, true), Reply::Drop));
        let mut bad = request("open.rpz", RecordType::SOA, None);
        bad.truncate(bad.len() - 2);
        assert_eq!(answer(s.handle(&bad, LOCAL, true)).0, ResponseCode::FormErr);
        assert!(s.stats.malformed.get() >= 3);
    }
}
