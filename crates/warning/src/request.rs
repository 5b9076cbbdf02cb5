//! What a request to the warning address says: the name it was meant for
//! (the Host header) and the path. Both come from anyone; neither may
//! steer the redirect of "proceed once" to another host.

use std::net::IpAddr;

/// The host a browser asked for, from its Host header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The normalized name (lower case, punycode, no trailing dot).
    pub name: String,
    /// The name with the port the browser used, when it was not 80: the
    /// authority of the URL to send it back to.
    pub authority: String,
}

/// Reads a Host header (`bad.example`, `bad.example:8080`). `None` for an
/// address literal, a malformed value, or a name that cannot be listed.
pub fn host_of(header: &str) -> Option<Host> {
    let h = header.trim();
    if h.starts_with('[') {
        return None; // an IPv6 literal
    }
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p.parse::<u16>().ok()?)),
        None => (h, None),
    };
    if name.parse::<IpAddr>().is_ok() {
        return None;
    }
    let name = kanki_indicators::normalize::normalize_domain(name).ok()?;
    // As a browser reads it, the name must be this very host: a WHATWG URL
    // parser takes a last label like "0xccc" for a number, and refuses a
    // "xn--" label that is not valid punycode.
    let url = url::Url::parse(&format!("http://{name}/")).ok()?;
    if url.host_str() != Some(name.as_str()) {
        return None;
    }
    let authority = match port {
        Some(p) if p != 80 => format!("{name}:{p}"),
        _ => name.clone(),
    };
    Some(Host { name, authority })
}

/// Longest path kept, in bytes.
const PATH_MAX: usize = 2048;

/// A path to send the browser back to: visible ASCII starting with `/`
/// (so the URL's host cannot change), at most 2 KiB; else `/`.
pub fn clean_path(p: &str) -> String {
    let ok = p.starts_with('/') && p.len() <= PATH_MAX && p.bytes().all(|b| b.is_ascii_graphic());
    if ok { p.to_string() } else { "/".into() }
}

/// Text from a form, with control characters (terminal escapes among
/// them) removed but line breaks kept, trimmed.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_with_an_optional_port() {
        let h = host_of("WWW.Bad.Example.").unwrap();
        assert_eq!(
            (h.name.as_str(), h.authority.as_str()),
            ("www.bad.example", "www.bad.example")
        );
        let h = host_of("bad.example:8081").unwrap();
        assert_eq!(h.authority, "bad.example:8081");
        assert_eq!(host_of("bad.example:80").unwrap().authority, "bad.example");
        for bad in [
            "127.0.0.1:8081",
            "[::1]:80",
            "",
            "bad.example:x",
            "a@b.example",
            "localhost",
            "evil.example/x",
        ] {
            assert_eq!(host_of(bad), None, "{bad}");
        }
        assert_eq!(
            host_of("bücher.example").unwrap().name,
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn paths_cannot_change_the_host() {
        assert_eq!(clean_path("/x.exe?a=1"), "/x.exe?a=1");
        for bad in [
            "@evil.example/",
            "evil.example",
            "",
            "/a b",
            "/\u{7f}",
            "/é",
        ] {
            assert_eq!(clean_path(bad), "/", "{bad:?}");
        }
        assert_eq!(clean_path(&format!("/{}", "a".repeat(3000))), "/");
    }

    #[test]
    fn text_loses_control_characters() {
        assert_eq!(clean_text(" a\u{1b}[31mb\r\nc\t "), "a[31mb\nc");
    }
}
