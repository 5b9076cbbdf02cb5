//! What the operator API's listener reads from a request before anything
//! else: its Host, checked against the API's own names (a page on another
//! site that resolves its own name to the API's address, DNS rebinding,
//! gets nothing), and, from a trusted reverse proxy, the client's address
//! it forwarded (`Forwarded`, RFC 7239, or `X-Forwarded-For`), which token
//! source prefixes and sign-in limits apply to.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The names a request may carry in its Host, from `api.hostnames` (or
/// the listen address): `name` matches with any port, `name:port` only
/// with that one. Compared without regard to case.
#[derive(Debug, Clone)]
pub struct Hosts(Vec<(String, Option<String>)>);

impl Hosts {
    pub fn new(names: &[String]) -> Hosts {
        Hosts(
            names
                .iter()
                .map(|n| {
                    let (h, p) = split_port(n);
                    (h.to_ascii_lowercase(), p.map(str::to_string))
                })
                .collect(),
        )
    }

    /// Whether `authority` (a Host header or the URI's authority) names
    /// one of the hosts.
    pub fn allows(&self, authority: &str) -> bool {
        let (host, port) = split_port(authority);
        self.0
            .iter()
            .any(|(h, p)| h.eq_ignore_ascii_case(host) && (p.is_none() || p.as_deref() == port))
    }
}

/// `host[:port]`, with an IPv6 literal in brackets kept whole.
fn split_port(s: &str) -> (&str, Option<&str>) {
    let colon = if s.starts_with('[') {
        s.find("]:").map(|i| i + 1)
    } else {
        s.rfind(':')
    };
    match colon {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// The forwarded client address cannot be read: a hop where the client
/// should be is not an address (`unknown`, an obfuscated name, garbage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadForwarded;

/// The client behind `peer`. From a peer in `trusted` (a reverse proxy)
/// the `Forwarded` header's `for=` (else `X-Forwarded-For`) is read from
/// its right end, where the nearest proxy wrote, leftwards past the
/// trusted proxies: the first address not among them is the client (an
/// address written further left could be anyone's claim). From any other
/// peer the headers are not read. An unreadable hop where the client
/// should be gives `Err`.
///
/// `forwarded` and `x_forwarded_for` are the values of those headers in
/// the order received.
pub fn client_address(
    peer: IpAddr,
    forwarded: &[&[u8]],
    x_forwarded_for: &[&[u8]],
    trusted: &[IpNet],
) -> Result<IpAddr, BadForwarded> {
    let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    if !is_trusted(&peer) {
        return Ok(peer);
    }
    let (values, rfc7239) = if forwarded.is_empty() {
        (x_forwarded_for, false)
    } else {
        (forwarded, true)
    };
    let mut leftmost = peer;
    for value in values.iter().rev() {
        let value = std::str::from_utf8(value).map_err(|_| BadForwarded)?;
        for element in value.rsplit(',') {
            let node = if rfc7239 {
                forwarded_for(element).ok_or(BadForwarded)?
            } else {
                element.trim()
            };
            let addr = parse_node(node).ok_or(BadForwarded)?;
            if !is_trusted(&addr) {
                return Ok(addr);
            }
            leftmost = addr;
        }
    }
    // Every hop is a trusted proxy: the leftmost is the nearest to the client.
    Ok(leftmost)
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        return v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header (name, value) pairs, as the listener hands them over.
    fn headers(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        pairs.to_vec()
    }

    fn client_address(
        peer: IpAddr,
        h: &[(&str, &str)],
        trusted: &[IpNet],
    ) -> Result<IpAddr, BadForwarded> {
        let of = |name: &str| -> Vec<&[u8]> {
            h.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
                .collect()
        };
        super::client_address(peer, &of("forwarded"), &of("x-forwarded-for"), trusted)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_read_only_from_a_trusted_proxy_and_from_its_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "198.51.100.9, 203.0.113.7, 10.0.0.2")]);
        // A peer that is not a proxy: its own address, headers ignored.
        assert_eq!(
            client_address(ip("192.0.2.1"), &xff, &trusted),
            Ok(ip("192.0.2.1"))
        );
        // From the proxy: past the trusted hops, the first other address;
        // what the client wrote further left is not believed.
        assert_eq!(
            client_address(ip("10.0.0.1"), &xff, &trusted),
            Ok(ip("203.0.113.7"))
        );
        // Several headers read as one list, the last header rightmost.
        let two = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &two, &trusted),
            Ok(ip("203.0.113.7"))
        );
        // Forwarded (RFC 7239) wins over X-Forwarded-For, with its forms.
        let fwd = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
            ),
        ]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &fwd, &trusted),
            Ok(ip("2001:db8:cafe::17"))
        );
        // No header from the proxy: the proxy is the client.
        assert_eq!(
            client_address(ip("10.0.0.1"), &[], &trusted),
            Ok(ip("10.0.0.1"))
        );
        // Every hop a proxy: the leftmost.
        let inner = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &inner, &trusted),
            Ok(ip("10.1.1.1"))
        );
        // An unreadable hop where the client should be is refused.
        for bad in [
            ("forwarded", "for=unknown"),
            ("forwarded", "for=_hidden, for=10.0.0.2"),
            ("forwarded", "proto=https"),
            ("x-forwarded-for", "not-an-address"),
            ("x-forwarded-for", "[2001:db8::1"),
            ("x-forwarded-for", ""),
        ] {
            assert_eq!(
                client_address(ip("10.0.0.1"), &headers(&[bad]), &trusted),
                Err(BadForwarded),
                "{bad:?}"
            );
        }
        // An unreadable hop left of the client is never looked at.
        let left = headers(&[("x-forwarded-for", "garbage, 192.0.2.8, 10.0.0.2")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &left, &trusted),
            Ok(ip("192.0.2.8"))
        );
    }

    #[test]
    fn hosts_match_with_or_without_port_and_case() {
        let h = Hosts::new(&[
            "kanki.isp.example".into(),
            "127.0.0.1:8080".into(),
            "[::1]:8080".into(),
        ]);
        for ok in [
            "kanki.isp.example",
            "KANKI.isp.example:8443",
            "127.0.0.1:8080",
            "[::1]:8080",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "127.0.0.1",
            "127.0.0.1:8081",
            "[::1]",
            "kanki.isp.example.evil.example",
            "",
        ] {
            assert!(!h.allows(no), "{no}");
        }
    }
}
