#![no_main]
//! What the sensor makes of a connection's first bytes (telnet or not:
//! the first byte decides).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let o = kanki_sensors::observe(rest, mode & 1 == 1);
    assert!(o.username.as_ref().is_none_or(|u| u.chars().count() <= 128));
});
