#![no_main]
//! X-ARF v4 reports, alone or in a mail.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, items)) = kanki_events::parse_xarf(Box::new(std::io::Cursor::new(data.to_vec())))
    {
        for i in items {
            let _ = i;
        }
    }
});
