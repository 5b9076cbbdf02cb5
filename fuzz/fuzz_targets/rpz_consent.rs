#![no_main]

use kanki_dns::rpz::scope::parse_consent;
use kanki_exports::IpTrigger;
use libfuzzer_sys::fuzz_target;

// The RPZ consent file: one address or block a line, `#` comments. Never
// a panic; every line is either taken or reported ignored (with a 1-based
// line number in range); every block taken reads back as itself, never a
// /0 (which would consent every address).
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let mut ignored = Vec::new();
    let taken = parse_consent(&text, |l| ignored.push(l));
    assert!(taken.len() + ignored.len() <= lines);
    assert!(ignored.windows(2).all(|w| w[0] < w[1]));
    assert!(ignored.iter().all(|&l| l >= 1 && l <= lines));
    for t in taken {
        assert!(t.prefix > 0, "{t}");
        assert_eq!(IpTrigger::parse(&t.to_string()), Some(t), "{t}");
    }
});
