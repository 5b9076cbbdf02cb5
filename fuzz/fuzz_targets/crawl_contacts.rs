#![no_main]

use kanki_crawler::notice::{rdap_abuse_emails, security_txt_contacts};
use libfuzzer_sys::fuzz_target;

// Hostile security.txt files and RDAP answers (deep nesting, odd vCards):
// the contact finders must never panic, and every contact is an address
// with an @ and no whitespace, ready for a To: header.
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for a in security_txt_contacts(&text)
        .into_iter()
        .chain(rdap_abuse_emails(data))
    {
        assert!(a.contains('@'), "{a:?}");
        assert!(!a.contains(['\r', '\n']), "{a:?}");
    }
});
