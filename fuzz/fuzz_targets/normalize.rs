#![no_main]

use kanki_indicators::{Kind, normalize_any, normalize_as};
use libfuzzer_sys::fuzz_target;

// Every normalizer on the input as text; a value that normalizes must be
// a fixed point (normalizing it again gives it back unchanged).
fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let any = normalize_any(s);
    for n in [
        any.as_ref().ok().cloned(),
        normalize_as(Kind::Url, s).ok(),
        normalize_as(Kind::Domain, s).ok(),
        normalize_as(Kind::Ip, s).ok(),
    ]
    .into_iter()
    .flatten()
    {
        let again = normalize_as(n.kind, &n.value)
            .unwrap_or_else(|e| panic!("{s:?} gave {n:?}, which does not normalize again: {e}"));
        assert_eq!(again, n, "{s:?}: normalizing twice changed the value");
    }
    if let Err(e) = any {
        assert!(!e.reason().is_empty());
    }
});
