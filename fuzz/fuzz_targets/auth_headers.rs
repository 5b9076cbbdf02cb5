#![no_main]
//! What the operator API reads from every request before anything else:
//! the `Authorization` header (`Bearer kanki_<id>_<secret>`), a token
//! string, and the `Cookie` header's session cookie. Any input gives a
//! clear refusal or a well-formed credential: a token's id is 16 lower-case
//! hex characters, the same token read through the header and alone gives
//! the same id and hash, and a cookie header with the session cookie twice
//! is refused.

use kanki_operators::secret::{
    SESSION_COOKIE, parse_authorization, parse_session_cookie, parse_token,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = parse_authorization(data) {
        assert_eq!(p.id.len(), 16);
        assert!(p.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let text = std::str::from_utf8(data).unwrap();
        let token = text.trim().split_once(' ').unwrap().1.trim_start();
        assert_eq!(parse_token(token).unwrap(), p);
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(p) = parse_token(s)
    {
        assert_eq!(s.len(), "kanki_".len() + 16 + 1 + 43);
        let again = format!("Bearer {s}");
        assert_eq!(parse_authorization(again.as_bytes()).unwrap(), p);
    }
    if let Ok(Some(hash)) = parse_session_cookie(data) {
        // The cookie found, once: repeating it is refused.
        let mut twice = data.to_vec();
        twice.extend_from_slice(b"; ");
        twice.extend_from_slice(data);
        assert!(parse_session_cookie(&twice).is_err());
        assert_eq!(hash.len(), 32);
        assert!(std::str::from_utf8(data).unwrap().contains(SESSION_COOKIE));
    }
});
