#![no_main]

use kanki_crawler::triage::Triager;
use libfuzzer_sys::fuzz_target;

// Hostile payloads and archives (nested ZIPs, bombs, truncated headers):
// triage must never panic, and the hash and size describe the input.
fuzz_target!(|data: &[u8]| {
    let t = Triager::plain(3).triage(data, Some("application/octet-stream"), "/x.bin");
    assert_eq!(t.size, data.len() as u64);
    assert_eq!(t.sha256.len(), 64);
});
