//! Secrets: API tokens and session cookies (their format, parsing and
//! hashing), passwords (argon2id) and TOTP codes (RFC 6238).
//!
//! Tokens and cookies carry 256 random bits, so one SHA-256 of the secret
//! is what is stored and compared (a slow hash adds nothing to a secret
//! nobody can guess, and a request must be checked in microseconds).
//! Passwords are chosen by people, so they get argon2id, deliberately slow:
//! call [`hash_password`] and [`verify_password`] off the async threads
//! ([`hash_password_async`], [`verify_password_async`]).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use ring::rand::{SecureRandom, SystemRandom};

/// What every API token starts with (so a leaked one is easy to find in
/// code and logs by secret scanners).
pub const TOKEN_PREFIX: &str = "kanki_";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kanki_session";
/// Hex characters of a token's public id.
const ID_LEN: usize = 16;
/// Random bytes of a token's or cookie's secret.
const SECRET_BYTES: usize = 32;
/// Their base64url length.
const SECRET_LEN: usize = 43;
/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (argon2 takes any length; this bounds work).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why a presented credential could not even be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the Authorization header is not \"Bearer <token>\"")]
    NotBearer,
    #[error("the token is not a kanki token (kanki_<id>_<secret>)")]
    Token,
    #[error("the session cookie is malformed")]
    Cookie,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the operating system's random source failed");
    b
}

/// 32 random bytes (a key).
pub(crate) fn random_bytes() -> [u8; 32] {
    random()
}

/// SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Compares two hashes in time independent of where they differ.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A newly made token: the whole string (shown once) and what is stored.
pub struct NewTokenSecret {
    pub id: String,
    pub token: String,
    pub secret_hash: [u8; 32],
}

/// Makes a token: `kanki_<16 hex id>_<43 base64url secret>`.
pub fn new_token() -> NewTokenSecret {
    let id = hex::encode(random::<{ ID_LEN / 2 }>());
    let secret = random::<SECRET_BYTES>();
    NewTokenSecret {
        token: format!("{TOKEN_PREFIX}{id}_{}", BASE64URL_NOPAD.encode(&secret)),
        secret_hash: secret_hash(&secret),
        id,
    }
}

/// A token read from a request: its id and the hash of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedToken {
    pub id: String,
    pub secret_hash: [u8; 32],
}

/// Reads a token string (strictly: any other length or character is
/// refused before anything is looked up).
pub fn parse_token(s: &str) -> Result<PresentedToken, Malformed> {
    let rest = s.strip_prefix(TOKEN_PREFIX).ok_or(Malformed::Token)?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN || rest.as_bytes()[ID_LEN] != b'_' {
        return Err(Malformed::Token);
    }
    let (id, secret) = (&rest[..ID_LEN], &rest[ID_LEN + 1..]);
    if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Malformed::Token);
    }
    let secret = decode_secret(secret).ok_or(Malformed::Token)?;
    Ok(PresentedToken {
        id: id.to_string(),
        secret_hash: secret_hash(&secret),
    })
}

fn decode_secret(s: &str) -> Option<[u8; SECRET_BYTES]> {
    if s.len() != SECRET_LEN {
        return None;
    }
    let v = BASE64URL_NOPAD.decode(s.as_bytes()).ok()?;
    v.try_into().ok()
}

/// Reads an `Authorization` header value: `Bearer <token>` (the scheme in
/// any case, RFC 9110).
pub fn parse_authorization(value: &[u8]) -> Result<PresentedToken, Malformed> {
    let value = std::str::from_utf8(value).map_err(|_| Malformed::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Malformed::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Malformed::NotBearer);
    }
    parse_token(token.trim_start())
}

/// A new session cookie's value (shown to the browser once) and its hash.
pub fn new_session_secret() -> (String, [u8; 32]) {
    let secret = random::<SECRET_BYTES>();
    (BASE64URL_NOPAD.encode(&secret), secret_hash(&secret))
}

/// A new CSRF token for a session.
pub fn new_csrf_token() -> String {
    BASE64URL_NOPAD.encode(&random::<SECRET_BYTES>())
}

/// Finds the session cookie in a `Cookie` header value and returns the
/// hash of its secret: `Ok(None)` when there is no session cookie, an
/// error when there is one that is malformed (or more than one).
pub fn parse_session_cookie(header: &[u8]) -> Result<Option<[u8; 32]>, Malformed> {
    let header = std::str::from_utf8(header).map_err(|_| Malformed::Cookie)?;
    let mut found = None;
    for pair in header.split(';') {
        let Some((name, value)) = pair.trim().split_once('=') else {
            continue;
        };
        if name.trim() != SESSION_COOKIE {
            continue;
        }
        if found.is_some() {
            return Err(Malformed::Cookie);
        }
        let value = value.trim().trim_matches('"');
        let secret = decode_secret(value).ok_or(Malformed::Cookie)?;
        found = Some(secret_hash(&secret));
    }
    Ok(found)
}

/// Why a password is refused before hashing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("a password has at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("a password has at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters"),
    )
}

/// Hashes a password with argon2id and a random salt (PHC string). Slow on
/// purpose: call it on a blocking thread.
pub fn hash_password(password: &str) -> Result<String, WeakPassword> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(WeakPassword::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(WeakPassword::TooLong);
    }
    let salt = SaltString::encode_b64(&random::<16>()).expect("16 bytes make a salt");
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing cannot fail with valid parameters")
        .to_string())
}

/// Checks a password against its stored hash. Slow on purpose: call it on
/// a blocking thread.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    argon2().verify_password(password.as_bytes(), &hash).is_ok()
}

/// [`hash_password`] on tokio's blocking pool.
pub async fn hash_password_async(password: String) -> Result<String, WeakPassword> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .expect("password hashing panicked")
}

/// [`verify_password`] on tokio's blocking pool.
pub async fn verify_password_async(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false)
}

/// A new TOTP secret (160 bits, as RFC 4226 recommends).
pub fn new_totp_secret() -> Vec<u8> {
    random::<20>().to_vec()
}

/// A TOTP step: 30 seconds.
const TOTP_STEP: u64 = 30;

fn totp(secret: &[u8]) -> Option<totp_rs::TOTP> {
    // SHA-1, 6 digits, 30 s steps: what every authenticator app uses by
    // default. (One step of clock skew either way is allowed by
    // [`totp_step`].)
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, TOTP_STEP, secret.to_vec()).ok()
}

/// The time step (Unix time / 30) whose code `code` is, among the step at
/// `unix_time` and one step either side (clock skew); `None` when it is
/// none of them. A sign-in remembers the step it accepted, so that a code
/// seen once (over a shoulder, in a proxy's log) cannot be used again.
pub fn totp_step(secret: &[u8], code: &str, unix_time: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret)?;
    let now = unix_time / TOTP_STEP;
    // Every candidate is compared, in time independent of which matches.
    (now.saturating_sub(1)..=now + 1)
        .filter(|step| {
            let want = t.generate(step * TOTP_STEP);
            want.len() == code.len()
                && want
                    .bytes()
                    .zip(code.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        })
        .max()
}

/// Checks a TOTP code at `unix_time` (one step of skew either way).
pub fn check_totp(secret: &[u8], code: &str, unix_time: u64) -> bool {
    totp_step(secret, code, unix_time).is_some()
}

/// The code at `unix_time` (for tests and for showing the set-up worked).
pub fn totp_code(secret: &[u8], unix_time: u64) -> String {
    totp(secret).map_or_else(String::new, |t| t.generate(unix_time))
}

/// The `otpauth://` URI an authenticator app reads (as a QR code or typed).
pub fn totp_uri(secret: &[u8], account: &str) -> String {
    let account: String = account
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "otpauth://totp/kanki:{account}?secret={}&issuer=kanki&algorithm=SHA1&digits=6&period=30",
        BASE32_NOPAD.encode(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_nothing_else_does() {
        let t = new_token();
        let p = parse_token(&t.token).unwrap();
        assert_eq!(p.id, t.id);
        assert!(same_hash(&p.secret_hash, &t.secret_hash));
        let header = format!("bearer  {}", t.token);
        assert_eq!(parse_authorization(header.as_bytes()).unwrap(), p);
        // One character changed in the secret: another hash.
        let mut other = t.token.clone();
        let last = other.pop().unwrap();
        other.push(if last == 'A' { 'B' } else { 'A' });
        if let Ok(o) = parse_token(&other) {
            assert!(!same_hash(&o.secret_hash, &t.secret_hash));
        }
        for bad in [
            "",
            "kanki_",
            &t.token[..t.token.len() - 1],
            &format!("{}x", t.token),
            &t.token.replace("kanki_", "kanki-"),
            &t.token.to_uppercase(),
        ] {
            assert!(parse_token(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_authorization(format!("Basic {}", t.token).as_bytes()),
            Err(Malformed::NotBearer)
        );
        assert_eq!(parse_authorization(b"\xff\xfe"), Err(Malformed::NotBearer));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let (value, hash) = new_session_secret();
        let h = format!("lang=ja; {SESSION_COOKIE}={value}; theme=dark");
        assert_eq!(parse_session_cookie(h.as_bytes()).unwrap(), Some(hash));
        assert_eq!(parse_session_cookie(b"lang=ja").unwrap(), None);
        let twice = format!("{SESSION_COOKIE}={value}; {SESSION_COOKIE}={value}");
        assert!(parse_session_cookie(twice.as_bytes()).is_err());
        let bad = format!("{SESSION_COOKIE}={}", &value[1..]);
        assert!(parse_session_cookie(bad.as_bytes()).is_err());
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse battery!", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_eq!(hash_password("short"), Err(WeakPassword::TooShort));
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn totp_matches_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890": at
        // 59 s the 8-digit code is 94287082, so the 6-digit one is 287082.
        let secret = b"12345678901234567890";
        assert_eq!(totp_code(secret, 59), "287082");
        assert!(check_totp(secret, "287082", 59));
        assert!(check_totp(secret, "287082", 59 + 30)); // one step of skew
        assert!(!check_totp(secret, "287082", 59 + 90));
        assert!(!check_totp(secret, "28708", 59));
        // The step a code belongs to, whichever neighbour it is checked at.
        assert_eq!(totp_step(secret, "287082", 59), Some(1));
        assert_eq!(totp_step(secret, "287082", 59 + 30), Some(1));
        assert_eq!(totp_step(secret, "287082", 0), Some(1));
        assert_eq!(totp_step(secret, "287082", 59 + 60), None);
        assert!(
            totp_uri(secret, "a b").contains("kanki:a%20b?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
        );
    }
}
