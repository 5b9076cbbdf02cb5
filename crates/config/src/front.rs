//! `[dns]` and `[warning]`: the consent-aware DNS front and the warning
//! page it sends consenting subscribers to.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Invalid, parse_prefix};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Addresses the DNS front answers on, UDP and TCP; empty: no front.
    pub listen: Vec<SocketAddr>,
    /// Resolvers queries are forwarded to, tried in order on timeout or
    /// failure.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for one upstream before trying the next.
    pub upstream_timeout: HumanDuration,
    /// Client prefixes served; everyone else is REFUSED (kanki is never an
    /// open resolver).
    pub clients: Vec<String>,
    /// Where consenting subscribers are sent for a listed name.
    pub warning_v4: Ipv4Addr,
    pub warning_v6: Ipv6Addr,
    /// TTL of a policy answer, in seconds.
    pub ttl: u32,
    /// Extended DNS Error code of a policy answer: "filtered" (17) or
    /// "blocked" (15).
    pub ede: String,
    /// Entries in the response cache (0: no cache).
    pub cache_entries: usize,
    /// Queries per second allowed per client prefix (a /24 for IPv4, a /56
    /// for IPv6), with bursts of twice that; 0: no limit.
    pub rate_limit: u32,
    /// Queries waiting for an upstream at most; a query that finds them
    /// all taken is answered SERVFAIL (and counted).
    pub max_forwards: usize,
    /// UDP sockets per upstream, each on a random source port, each
    /// replaced by one on a fresh random port after 1,024 queries.
    pub upstream_ports: usize,
    /// Client TCP connections open at once, at most; past it new
    /// connections are closed at once (and counted).
    pub tcp_connections: usize,
    /// A client TCP connection idle this long (or this slow to send a
    /// query or take an answer) is closed.
    pub tcp_idle_timeout: HumanDuration,
    /// Names (and their subdomains) reachable from the walled garden: the
    /// countermeasure and security-vendor sites.
    pub garden_allow: Vec<String>,
    /// A log of every query, for debugging only (it is a record of
    /// communications): unset, none is kept.
    pub query_log: Option<std::path::PathBuf>,
    /// How long query log files are kept.
    pub query_log_retention: HumanDuration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: Vec::new(),
            upstreams: Vec::new(),
            upstream_timeout: HumanDuration::millis(1500),
            clients: vec!["127.0.0.0/8".into(), "::1/128".into()],
            warning_v4: Ipv4Addr::LOCALHOST,
            warning_v6: Ipv6Addr::LOCALHOST,
            ttl: 60,
            ede: "filtered".into(),
            cache_entries: 200_000,
            rate_limit: 1000,
            max_forwards: 10_000,
            upstream_ports: 64,
            tcp_connections: 256,
            tcp_idle_timeout: HumanDuration::secs(10),
            garden_allow: Vec::new(),
            query_log: None,
            query_log_retention: HumanDuration::secs(86400),
        }
    }
}

impl DnsConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let point = |text: &str| Some((text.to_string(), 1));
        for c in &self.clients {
            parse_prefix(c).map_err(|e| ("dns.clients".into(), point(c), e))?;
        }
        if !self.listen.is_empty() && self.upstreams.is_empty() {
            return Err((
                "dns.upstreams".into(),
                Some(("listen".into(), 1)),
                "the DNS front needs at least one upstream resolver".into(),
            ));
        }
        for (key, value) in [
            ("dns.max_forwards", self.max_forwards),
            ("dns.upstream_ports", self.upstream_ports),
            ("dns.tcp_connections", self.tcp_connections),
        ] {
            if value == 0 {
                return Err((key.into(), None, format!("{key} must be at least 1")));
            }
        }
        if self.upstream_ports > 1024 {
            return Err((
                "dns.upstream_ports".into(),
                point(&self.upstream_ports.to_string()),
                "upstream_ports is at most 1024 (sockets per upstream)".into(),
            ));
        }
        if !matches!(self.ede.as_str(), "filtered" | "blocked") {
            return Err((
                "dns.ede".into(),
                point(&self.ede),
                format!("ede is \"filtered\" or \"blocked\", not {:?}", self.ede),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarningConfig {
    /// HTTP address of the warning page (answers for any Host); unset: no
    /// page.
    pub listen: Option<SocketAddr>,
    /// How long "proceed once" lets that client reach that name unwarned.
    pub proceed_for: HumanDuration,
    /// TCP addresses (port 443 of the warning addresses in production) that
    /// accept and at once reset every connection, so a browser asking for
    /// `https://` fails fast instead of waiting; empty: none.
    pub reset_listen: Vec<SocketAddr>,
    /// Language of the page when the browser's Accept-Language names
    /// neither Japanese nor English: "ja" or "en".
    pub language: String,
    /// The countermeasure page (how to clean a machine) linked from the
    /// walled-garden notice; unset: no link.
    pub countermeasure_url: Option<String>,
    /// How often the page's hit counts (per indicator per day) are written
    /// to the store.
    pub hits_flush_every: HumanDuration,
    /// False-positive reports accepted per client address per hour (the
    /// queue is the operators' time; 0: none accepted).
    pub reports_per_hour: u32,
    /// False-positive reports accepted per hour from all clients together.
    pub reports_per_hour_total: u32,
}

impl Default for WarningConfig {
    fn default() -> Self {
        WarningConfig {
            listen: None,
            proceed_for: HumanDuration::secs(600),
            reset_listen: Vec::new(),
            language: "ja".into(),
            countermeasure_url: None,
            hits_flush_every: HumanDuration::secs(10),
            reports_per_hour: 10,
            reports_per_hour_total: 200,
        }
    }
}

impl WarningConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !matches!(self.language.as_str(), "ja" | "en") {
            return Err((
                "warning.language".into(),
                Some((format!("\"{}\"", self.language), 1)),
                format!("language is \"ja\" or \"en\", not {:?}", self.language),
            ));
        }
        if let Some(u) = &self.countermeasure_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err((
                "warning.countermeasure_url".into(),
                Some((u.clone(), 1)),
                format!("countermeasure_url {u:?} must start with http:// or https://"),
            ));
        }
        if self.proceed_for.0.is_zero() || self.hits_flush_every.0.is_zero() {
            return Err((
                "warning".into(),
                None,
                "proceed_for and hits_flush_every must be longer than zero".into(),
            ));
        }
        Ok(())
    }
}
