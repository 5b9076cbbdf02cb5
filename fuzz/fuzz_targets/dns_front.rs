#![no_main]
//! The DNS front's message path on any bytes: a client's query (read, then
//! answered with a warning, a truncation or an error) and an upstream's
//! response to it (its facts read, cached, served back aged). Every answer
//! written must be a DNS message hickory-proto reads back, and a cached
//! copy must keep the response's length.

use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use kanki_dns::front::cache::Cache;
use kanki_dns::front::wire::{self, Malformed};
use libfuzzer_sys::fuzz_target;

fn reads_back(bytes: &[u8]) {
    if let Err(e) = Message::from_vec(bytes) {
        panic!("unreadable answer {e}: {bytes:02x?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: where the query ends and the upstream response begins.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = (split as usize).min(rest.len());
    let (packet, response) = rest.split_at(split);
    let q = match wire::parse_query(packet) {
        Ok(q) => q,
        Err(Malformed::Answer(rcode)) => {
            if let Some(a) = wire::error_answer(packet, rcode) {
                reads_back(&a);
            }
            return;
        }
        Err(Malformed::Drop) => return,
    };
    let mut name = [0u8; 256];
    let _ = wire::dotted(q.qname, &mut name);
    let mut out = Vec::new();
    wire::warning_answer(
        &mut out,
        packet,
        &q,
        "192.0.2.80".parse().unwrap(),
        "2001:db8::80".parse().unwrap(),
        60,
        17,
        |t| t.extend_from_slice(b"{\"j\":\"fuzz\"}"),
    );
    reads_back(&out);
    wire::truncated_answer(&mut out, packet, &q);
    reads_back(&out);
    reads_back(&wire::error_answer(packet, wire::RCODE_SERVFAIL).unwrap());
    if let Some(facts) = wire::response_facts(response, &q) {
        let cache = Cache::new(4);
        let now = Instant::now();
        cache.put(&q, response, &facts, now);
        if cache.get(packet, &q, now + Duration::from_secs(1), &mut out) {
            assert_eq!(out.len(), response.len());
        }
    }
});
