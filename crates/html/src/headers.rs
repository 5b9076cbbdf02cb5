//! The headers every HTML page of kanki carries (the warning page, the
//! countermeasure site, sign-in, the console): never cached, never framed
//! (a proceed, "cleaned" or "close case" button must not be clickjacked),
//! never sniffed as another type, and a Content-Security-Policy under
//! which only this response's nonce may carry a script or a style.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use data_encoding::BASE64URL_NOPAD;
use ring::rand::{SecureRandom, SystemRandom};

/// A fresh nonce for one response's Content-Security-Policy.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    BASE64URL_NOPAD.encode(&b)
}

/// The page's Content-Security-Policy for a response whose inline script
/// and style carry `nonce`.
pub fn policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// As [`policy`], and the site's own stylesheets and images (the console's
/// CSS file, cached long, and its server-drawn SVG), and requests from
/// script to the site itself (the console's report upload, which shows
/// its progress).
pub fn policy_with_own_files(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// Sets the page headers on `h`, with the Content-Security-Policy `csp`.
pub fn apply_policy(h: &mut HeaderMap, csp: &str) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Nothing to another site; and with "no-referrer" a browser would send
    // `Origin: null` on the page's own forms.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// Sets the page headers on `h` for a response whose inline script and
/// style carry `nonce`.
pub fn apply(h: &mut HeaderMap, nonce: &str) {
    apply_policy(h, &policy(nonce));
}

/// The nonce a handler behind [`layer`] writes on its inline style or
/// script (a request extension).
#[derive(Clone, Debug)]
pub struct Nonce(pub String);

/// Middleware that gives every response of a router the page headers,
/// whatever the handler (an error, a redirect, a page): the handler finds
/// its [`Nonce`] in the request's extensions. Use with
/// `axum::middleware::from_fn(kanki_html::headers::layer)`.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let n = nonce();
    req.extensions_mut().insert(Nonce(n.clone()));
    let mut r = next.run(req).await;
    apply(r.headers_mut(), &n);
    r
}
