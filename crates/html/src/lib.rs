//! The common ground of kanki's HTML pages: the warning page, the
//! countermeasure site, sign-in and the operator console.
//!
//! * [`esc`], [`query_value`] and [`safe_href`]: every value from outside
//!   goes through one of them before it is written into a page.
//! * [`headers`]: the headers every page carries (a Content-Security-Policy
//!   whose only script and style are this response's nonce's, no framing,
//!   no sniffing, no caching), as a middleware.
//! * [`Lang`]: Japanese or English, negotiated from `Accept-Language`.
//! * [`Document`]: the page shell around a body.
//!
//! Hand-written rather than a template engine: the pages are small, and
//! the escaping stays in view.

pub mod headers;
mod lang;

pub use headers::Nonce;
pub use lang::Lang;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved and `/`
/// kept).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL from outside as it may be written into an `href`, escaped; `None`
/// unless it is `http:` or `https:` with a host (no `javascript:`, `data:`,
/// `vbscript:` or scheme-relative trick, whatever its case, spaces or
/// control characters). A caller shows the text unlinked on `None`.
pub fn safe_href(url: &str) -> Option<String> {
    // Browsers drop leading spaces and controls, and tabs and newlines
    // anywhere, before they read a scheme: so is any of them here a reason
    // to refuse the link.
    if url
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    let (scheme, rest) = url.split_once(':')?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let host = rest.strip_prefix("//")?;
    let authority = host.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return None;
    }
    Some(esc(url))
}

/// Whether a browser's post comes from this site: when it names its
/// origin (`Origin`), that names the host the request was sent to (a
/// cross-site form post carries the other site's origin, or `null`).
/// Without an `Origin` header (an older browser, a script) it is let
/// through: the session cookie is SameSite=Strict and forms carry tokens.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header;
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (
        origin.to_str(),
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// A page: the shell (doctype, language, charset, viewport, title) around
/// its head additions and body. `title` is text (escaped here); `head` and
/// `body` are HTML the caller built, with every outside value already
/// escaped.
pub struct Document<'a> {
    pub lang: Lang,
    pub title: &'a str,
    pub head: &'a str,
    pub body: &'a str,
}

impl Document<'_> {
    pub fn render(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title>{head}</head><body>{body}</body></html>\n",
            lang = self.lang.code(),
            title = esc(self.title),
            head = self.head,
            body = self.body,
        )
    }
}

/// An inline `<style>` allowed by this response's nonce.
pub fn style(nonce: &str, css: &str) -> String {
    format!("<style nonce=\"{}\">{css}</style>", esc(nonce))
}

/// An inline `<script>` allowed by this response's nonce.
pub fn script(nonce: &str, js: &str) -> String {
    format!("<script nonce=\"{}\">{js}</script>", esc(nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_escaped() {
        assert_eq!(
            esc("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(query_value("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }

    #[test]
    fn only_web_links_with_a_host_are_links() {
        assert_eq!(
            safe_href("https://a.example/x?y=1&z=\"2\"").as_deref(),
            Some("https://a.example/x?y=1&amp;z=&quot;2&quot;")
        );
        assert!(safe_href("HTTP://a.example").is_some());
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "//evil.example/",
            "https:evil.example",
            "https:///path",
            "http://a.example/\nx",
            "http:\\\\evil.example",
            "/relative",
            "",
        ] {
            assert_eq!(safe_href(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_post_from_another_site_is_not_same_origin() {
        use axum::http::{HeaderMap, HeaderValue, header};
        let with = |origin: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(
                header::HOST,
                HeaderValue::from_static("kanki.isp.example:8080"),
            );
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            same_origin(&h)
        };
        assert!(with(None));
        assert!(with(Some("http://kanki.isp.example:8080")));
        assert!(with(Some("https://KANKI.isp.example:8080")));
        assert!(!with(Some("https://evil.example")));
        assert!(!with(Some("null")));
        assert!(!with(Some("ftp://kanki.isp.example:8080")));
    }

    #[test]
    fn the_shell_escapes_its_title() {
        let page = Document {
            lang: Lang::Ja,
            title: "<b>",
            head: "",
            body: "<p>x</p>",
        }
        .render();
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"ja\">"));
        assert!(page.contains("<title>&lt;b&gt;</title>"));
        assert!(page.contains("<body><p>x</p></body>"));
    }
}
