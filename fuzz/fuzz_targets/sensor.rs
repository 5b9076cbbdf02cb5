#![no_main]
//! What the sensor makes of a connection's first bytes (telnet, SSH or
//! other: the first byte decides).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 2 == 2 {
        let s = kanki_sensors::observe_ssh(rest);
        assert!(s.banner.as_ref().is_none_or(|b| b.chars().count() <= 255));
        assert!(s.hassh.as_ref().is_none_or(|h| h.len() == 32));
        return;
    }
    let o = kanki_sensors::observe(rest, mode & 1 == 1);
    assert!(o.username.as_ref().is_none_or(|u| u.chars().count() <= 128));
});
