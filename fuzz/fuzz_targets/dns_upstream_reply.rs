#![no_main]
//! The DNS front's upstream reply matcher on any bytes: a query (read as
//! the front reads a client's), the id it went out with, where a datagram
//! came from, and the datagram. A reply is accepted only when it comes
//! from the upstream's address and port, carries the id, and is a response
//! to exactly the question asked: checked here against hickory-proto's
//! reading of the reply's question. A reply that is the query's exact
//! echo as a response must be accepted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::Query;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use kanki_dns::front::upstream::reply_matches;
use kanki_dns::front::wire;
use libfuzzer_sys::fuzz_target;

const UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)), 53);

fuzz_target!(|data: &[u8]| {
    // Bytes 0-1: the id sent; 2: where the reply came from; 3: where the
    // query ends and the reply begins.
    if data.len() < 4 {
        return;
    }
    let id = u16::from_be_bytes([data[0], data[1]]);
    let from = match data[2] % 5 {
        0 => UPSTREAM,
        1 => SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 53).to_ipv6_mapped()),
            53,
        ),
        2 => SocketAddr::new(UPSTREAM.ip(), 5353),
        3 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 54)), 53),
        _ => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 53),
    };
    let rest = &data[4..];
    let split = (data[3] as usize).min(rest.len());
    let (packet, reply) = rest.split_at(split);
    let Ok(q) = wire::parse_query(packet) else {
        return;
    };
    let question = q.question(packet);
    let matched = reply_matches(reply, from, UPSTREAM, id, question);
    if matched {
        assert!(from.port() == 53 && from.ip().to_canonical() == UPSTREAM.ip());
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), id);
        assert!(reply[2] & 0x80 != 0, "a query taken for an answer");
        assert_eq!((reply[4], reply[5]), (0, 1));
        let mut d = BinDecoder::new(&reply[12..]);
        let asked =
            Query::read(&mut BinDecoder::new(&packet[12..])).expect("the query's question reads");
        let got = Query::read(&mut d).expect("a matched reply's question reads");
        assert_eq!(got.query_type(), asked.query_type());
        assert_eq!(got.query_class(), asked.query_class());
        assert!(
            got.name()
                .to_ascii()
                .eq_ignore_ascii_case(&asked.name().to_ascii()),
            "{} answers {}",
            got.name(),
            asked.name()
        );
        // Whatever follows the question, reading its facts never panics.
        let _ = wire::response_facts(reply, &q);
    }
    // The query itself, as a response with the id sent, from the upstream:
    // always accepted.
    let mut echo = packet[..q.question_end].to_vec();
    echo[..2].copy_from_slice(&id.to_be_bytes());
    echo[2] |= 0x80;
    echo[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    assert!(reply_matches(&echo, UPSTREAM, UPSTREAM, id, question));
});
