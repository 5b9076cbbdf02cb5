#![no_main]
//! Bounces read by `kanki notices bounces`: any bytes as a mail message.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = kanki_notify::dsn::parse_dsn(data) {
        for r in &d.recipients {
            let _ = r.is_permanent_failure();
        }
        if let Some(id) = &d.original_message_id {
            let _ = kanki_notify::reference_of_message_id(id);
        }
    }
});
