#![no_main]
//! The RPZ primary's request path: any bytes, from an allowed or a
//! refused address, over TCP or UDP, to a server with a signed zone, an
//! open zone with an IXFR journal, and a client-scope zone. Every answer
//! must be a DNS message hickory-proto reads back, under 64 KiB.
//!
//! The first input byte picks the transport (bit 0: UDP) and the peer
//! (bit 1: an address outside allow_transfer); the rest is the request.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::Message;
use kanki_dns::rpz::content::{Content, EntryKind};
use kanki_dns::rpz::{Reply, RpzServer, TsigKey, ZoneContent, ZoneSpec};
use kanki_exports::{IpTrigger, RpzOptions};
use libfuzzer_sys::fuzz_target;

fn server() -> &'static RpzServer {
    static SERVER: OnceLock<RpzServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let key = Arc::new(
            TsigKey::new(
                "kanki-key",
                "hmac-sha256",
                b"secret-secret-secret-secret!".to_vec(),
            )
            .unwrap(),
        );
        let spec = |origin: &str, action: &str, tsig: bool, content: ZoneContent| ZoneSpec {
            options: RpzOptions {
                origin: origin.into(),
                action: action.parse().unwrap(),
                ..RpzOptions::default()
            },
            shadow: false,
            content,
            consent: None,
            notify: Vec::new(),
            allow_transfer: vec![("127.0.0.1".parse().unwrap(), 32)],
            tsig_key: tsig.then(|| key.clone()),
        };
        let list = || ZoneContent::List(Default::default());
        let s = RpzServer::new(
            vec![
                spec("malware.rpz.kanki", "cname:*.garden.kanki.", true, list()),
                spec(
                    "open.rpz.kanki",
                    "local:192.0.2.1,2001:db8::1",
                    false,
                    list(),
                ),
                spec(
                    "consent.rpz.kanki",
                    "passthru",
                    false,
                    ZoneContent::ClientScope(vec![IpTrigger::parse("192.0.2.0/24").unwrap()]),
                ),
            ],
            vec![key.clone()],
            None,
            1000,
        )
        .unwrap();
        let names = |n: &[&str]| {
            Content::from_entries(n.iter().map(|x| (EntryKind::Name, *x)).chain([
                (EntryKind::Exception, "ok.bad.example"),
                (EntryKind::Ip, "32.1.2.0.192.rpz-ip"),
            ]))
        };
        for z in &s.zones {
            z.update(names(&["bad.example"]), 1).unwrap();
            z.update(names(&["bad.example", "new.example"]), 2).unwrap();
            z.update(names(&["new.example"]), 3).unwrap();
        }
        s
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, request)) = data.split_first() else {
        return;
    };
    let tcp = mode & 1 == 0;
    let peer: IpAddr = if mode & 2 == 0 {
        [127, 0, 0, 1]
    } else {
        [127, 0, 0, 2]
    }
    .into();
    let check = |m: &[u8]| {
        assert!(m.len() <= 65_535, "answer of {} bytes", m.len());
        Message::from_vec(m).unwrap_or_else(|e| panic!("unreadable answer: {e}"));
    };
    match server().handle(request, peer, tcp) {
        Reply::Drop => {}
        Reply::Message(m) => check(&m),
        Reply::Transfer(mut t) => {
            while let Some(m) = t.next_message() {
                check(&m);
            }
        }
    }
});
