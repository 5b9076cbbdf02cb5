#![no_main]

use kanki_crawler::extract::{BodyKind, links};
use libfuzzer_sys::fuzz_target;
use url::Url;

// Hostile HTML, scripts and redirect headers: the extractor must never
// panic, and every edge it returns is an absolute http(s) URL.
fuzz_target!(|data: &[u8]| {
    let base = Url::parse("http://fuzz.example/dir/page.html").unwrap();
    // The first line doubles as a Location / Refresh header value.
    let first = data.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let header = String::from_utf8_lossy(first).into_owned();
    let headers = vec![
        ("location".to_string(), header.clone()),
        ("refresh".to_string(), header),
    ];
    for kind in [BodyKind::Html, BodyKind::Script] {
        for l in links(&base, Some(302), &headers, data, kind) {
            let u = Url::parse(&l.url).expect("edges are absolute URLs");
            assert!(matches!(u.scheme(), "http" | "https"), "{}", l.url);
        }
    }
});
