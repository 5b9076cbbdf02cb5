#![no_main]

use kanki_crawler::CertFacts;
use libfuzzer_sys::fuzz_target;

// A crawled site's leaf certificate is whatever the site sends: the facts
// are read from any bytes without a panic, a certificate that does not
// parse is never called valid, and the dates are RFC 3339 or empty.
fuzz_target!(|data: &[u8]| {
    let f = CertFacts::of_der(data, Some(None));
    assert_eq!(f.sha256.len(), 64);
    if f.problem.is_some() {
        assert!(!f.valid, "{f:?}");
    }
    for t in [&f.not_before, &f.not_after] {
        assert!(
            t.is_empty() || chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{t:?}"
        );
    }
    // JSON of the facts (what the crawl stores) always serializes.
    serde_json::to_string(&f).unwrap();
});
