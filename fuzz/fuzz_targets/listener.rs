#![no_main]
//! What the operator API's listener reads before any route: the Host
//! (checked against the API's names) and, from a trusted reverse proxy,
//! the forwarded client address (`Forwarded` / `X-Forwarded-For`). The
//! input is lines: the first is a Host, each other `F:value` (a
//! `Forwarded` header) or `X:value` (an `X-Forwarded-For` header).
//!
//! Checked: no panic; a Host that is let in names one of the hosts; from a
//! peer that is not a proxy the headers change nothing; a client found
//! behind the proxy is an address from the headers (or the proxy).

use std::net::IpAddr;

use ipnet::IpNet;
use kanki_operators::listener::{Hosts, client_address};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let host = lines.next().unwrap_or_default();
    let (mut forwarded, mut xff) = (Vec::new(), Vec::new());
    for line in lines {
        match line.split_first() {
            Some((&b'F', rest)) => forwarded.push(rest.strip_prefix(b":").unwrap_or(rest)),
            Some((&b'X', rest)) => xff.push(rest.strip_prefix(b":").unwrap_or(rest)),
            _ => {}
        }
    }
    let names = [
        "kanki.isp.example".to_string(),
        "127.0.0.1:8080".to_string(),
        "[::1]:8080".to_string(),
    ];
    let hosts = Hosts::new(&names);
    if let Ok(h) = std::str::from_utf8(host)
        && hosts.allows(h)
    {
        let h = h.to_ascii_lowercase();
        assert!(
            h == "127.0.0.1:8080"
                || h == "[::1]:8080"
                || h == "kanki.isp.example"
                || h.strip_prefix("kanki.isp.example:").is_some(),
            "{h:?} let in"
        );
    }
    let trusted: [IpNet; 2] = [
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let outsider: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(
        client_address(outsider, &forwarded, &xff, &trusted),
        Ok(outsider)
    );
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    if let Ok(client) = client_address(proxy, &forwarded, &xff, &trusted)
        && client != proxy
    {
        let shown = client.to_string();
        let all: Vec<u8> = forwarded
            .iter()
            .chain(&xff)
            .flat_map(|v| v.iter().copied())
            .collect();
        let text = String::from_utf8_lossy(&all).to_ascii_lowercase();
        // The address is written in the headers (IPv6 perhaps in another
        // spelling, so only the first group is looked for).
        let first = shown.split([':', '.']).next().unwrap_or_default();
        assert!(text.contains(first), "{shown} not in {text:?}");
    }
});
