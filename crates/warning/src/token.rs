//! Form tokens: the page's forms carry an HMAC over the client address, the
//! name and the time the page was shown, so that another site cannot make a
//! subscriber's browser "proceed" (or report) by posting to a listed name
//! that resolves to the warning address (cross-site request forgery).

use std::net::IpAddr;

use data_encoding::BASE64URL_NOPAD;
use ring::hmac;
use ring::rand::SystemRandom;

/// How long a shown page's forms stay valid.
const VALID_SECS: i64 = 3600;

pub struct Tokens {
    key: hmac::Key,
}

impl Tokens {
    /// A key of this process's own: tokens do not survive a restart.
    pub fn new() -> Tokens {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system randomness");
        Tokens { key }
    }

    /// The token binds the client's prefix (an IPv6 /56), not its address:
    /// a device may post from another of its privacy addresses.
    fn message(client: IpAddr, name: &str, issued: i64) -> Vec<u8> {
        let client = kanki_service::front::client_prefix(client);
        format!("kanki-warning-v1\n{client}\n{name}\n{issued}").into_bytes()
    }

    /// A token for a page shown to `client` for `name` at `now` (unix seconds).
    pub fn issue(&self, client: IpAddr, name: &str, now: i64) -> String {
        let tag = hmac::sign(&self.key, &Self::message(client, name, now));
        format!("{now}.{}", BASE64URL_NOPAD.encode(tag.as_ref()))
    }

    /// Whether `token` was issued by this process to `client` for `name`
    /// within the last hour.
    pub fn verify(&self, token: &str, client: IpAddr, name: &str, now: i64) -> bool {
        let Some((issued, tag)) = token.split_once('.') else {
            return false;
        };
        let (Ok(issued), Ok(tag)) = (
            issued.parse::<i64>(),
            BASE64URL_NOPAD.decode(tag.as_bytes()),
        ) else {
            return false;
        };
        // A minute of slack for a token from "the future" (clock steps).
        if issued > now + 60 || now - issued > VALID_SECS {
            return false;
        }
        hmac::verify(&self.key, &Self::message(client, name, issued), &tag).is_ok()
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_for_its_client_and_name_for_an_hour() {
        let t = Tokens::new();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let tok = t.issue(a, "bad.example", 1_000_000);
        assert!(t.verify(&tok, a, "bad.example", 1_000_100));
        assert!(!t.verify(&tok, b, "bad.example", 1_000_100));
        assert!(!t.verify(&tok, a, "other.example", 1_000_100));
        assert!(!t.verify(&tok, a, "bad.example", 1_000_000 + 3601));
        assert!(!Tokens::new().verify(&tok, a, "bad.example", 1_000_100));
        // IPv6: the token holds on the client's /56, not beyond.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let tok = t.issue(v6("2001:db8:0:1200::5"), "bad.example", 1_000_000);
        assert!(t.verify(&tok, v6("2001:db8:0:12ff:a::7"), "bad.example", 1_000_100));
        assert!(!t.verify(&tok, v6("2001:db8:0:1300::5"), "bad.example", 1_000_100));
        let forged = tok.replacen("1000000", "1000500", 1);
        assert!(!t.verify(&forged, a, "bad.example", 1_000_600));
        for junk in ["", ".", "x.y", "1000000.", "1000000.!!!"] {
            assert!(!t.verify(junk, a, "bad.example", 1_000_100));
        }
    }
}
