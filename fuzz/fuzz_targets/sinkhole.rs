#![no_main]
//! Sinkhole / C&C logs (CSV or JSON) through a mapping.

use kanki_events::{SinkholeMapping, parse_mapped};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m: SinkholeMapping = serde_json::from_str(
        r#"{"name":"f","provider":"p","address":"ip","port":"port","time":"ts","family":"fam","destination_address":"dst","destination_port":"dport"}"#,
    )
    .unwrap();
    if let Ok((_, items)) = parse_mapped(m, Box::new(std::io::Cursor::new(data.to_vec()))) {
        for i in items {
            let _ = i;
        }
    }
});
