#![no_main]
//! Shadowserver CSV reports of the types (the first byte picks one).

use kanki_events::shadowserver::{Schemas, parse_shadowserver};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 7] = [
    "event4_sinkhole",
    "event4_sinkhole_http",
    "event4_honeypot_brute_force",
    "scan_dns",
    "scan_ntp",
    "scan_ntpmonitor",
    "device_id",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let schema = Schemas::builtin()
        .report(TYPES[pick as usize % TYPES.len()])
        .unwrap();
    // The high bit of the first byte: whether the extra fields are parsed.
    let extras = pick & 0x80 != 0;
    if let Ok((_, items)) = parse_shadowserver(
        schema,
        Box::new(std::io::Cursor::new(rest.to_vec())),
        extras,
    ) {
        for i in items {
            let _ = i;
        }
    }
});
