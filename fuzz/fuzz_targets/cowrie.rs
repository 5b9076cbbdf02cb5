#![no_main]
//! Cowrie JSON logs, grouped per session.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for i in kanki_events::parse_cowrie(Box::new(std::io::Cursor::new(data.to_vec()))) {
        let _ = i;
    }
});
