//! The RADIUS accounting decoder: framing, authenticators, attributes, and
//! the conversion to a binding event, on arbitrary datagrams.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use kanki_radius::packet::{HEADER_LEN, code};
use kanki_radius::server::to_binding_event;
use kanki_radius::{AccountingRequest, Packet, PacketWriter, accounting_response};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"testing123";

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::parse(data) else {
        return;
    };
    // Length is honoured: the packet is a prefix of the datagram, and its
    // attributes cover it exactly.
    let bytes = p.as_bytes();
    assert!(bytes.len() >= HEADER_LEN && bytes.len() <= data.len());
    assert_eq!(&data[..bytes.len()], bytes);
    assert_eq!(
        usize::from(u16::from_be_bytes([data[2], data[3]])),
        bytes.len()
    );
    let covered: usize = p.attributes().map(|a| 2 + a.value.len()).sum();
    assert_eq!(HEADER_LEN + covered, bytes.len());

    // The authenticator check never panics, and signing the same contents
    // gives a request that verifies and re-encodes to the same attributes.
    let _ = p.verify_accounting_request(SECRET);
    let mut w = PacketWriter::new(p.code(), p.identifier());
    for a in p.attributes() {
        w.attribute(a.kind, a.value)
            .expect("attributes of a parsed packet fit");
    }
    let signed = w.finish_accounting_request(SECRET);
    assert_eq!(&signed[HEADER_LEN..], &bytes[HEADER_LEN..]);
    let s = Packet::parse(&signed).expect("a signed copy parses");
    assert!(s.verify_accounting_request(SECRET));
    assert_eq!(
        p.verify_accounting_request(SECRET),
        signed[4..HEADER_LEN] == bytes[4..HEADER_LEN]
    );

    // The response to it parses and verifies against the request.
    let response = accounting_response(&s, SECRET);
    let r = Packet::parse(&response).expect("a response parses");
    assert_eq!(r.code(), code::ACCOUNTING_RESPONSE);
    assert!(r.verify_accounting_response(&s.authenticator(), SECRET));

    if let Ok(req) = AccountingRequest::decode(&p) {
        assert!(req.status.is_some());
        for n in req
            .framed_ipv6_prefixes
            .iter()
            .chain(&req.delegated_ipv6_prefixes)
        {
            assert_eq!(*n, n.trunc(), "host bits left in {n}");
        }
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
        let _ = to_binding_event(&req, IpAddr::V4(Ipv4Addr::LOCALHOST), now);
    }
});
