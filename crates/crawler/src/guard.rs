//! The SSRF guard: the crawler resolves names itself, refuses addresses
//! that are not on the public Internet, and connects only to the address it
//! checked (the resolver it hands the HTTP client returns nothing else, so
//! a second, different DNS answer cannot slip in between check and connect).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an address is refused, in the words recorded in the evidence.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() {
                return Some("IPv4-mapped IPv6 address");
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback address")
            } else if v6.is_unspecified() {
                Some("unspecified address")
            } else if v6.is_multicast() {
                Some("multicast address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique-local (private) address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local address")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("site-local (deprecated private) address")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64 (64:ff9b::/96 and /48): judge the embedded IPv4 address.
                let v4 =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                v4_reason(v4).map(|_| "NAT64 address of a non-public IPv4 address")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation address")
            } else if s[0] == 0x2002 {
                Some("6to4 address")
            } else if s[0] == 0x2001 && s[1] == 0 {
                Some("Teredo address")
            } else if s[0] & 0xe000 != 0x2000 {
                Some("reserved address (not global unicast)")
            } else {
                None
            }
        }
    }
}

fn v4_reason(v4: Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    if v4.is_loopback() {
        Some("loopback address")
    } else if v4.is_private() {
        Some("private address")
    } else if v4.is_link_local() {
        Some("link-local address")
    } else if o[0] == 100 && o[1] & 0xc0 == 64 {
        Some("shared address space (100.64/10)")
    } else if v4.is_multicast() {
        Some("multicast address")
    } else if v4.is_unspecified() || o[0] == 0 {
        Some("\"this network\" address (0/8)")
    } else if v4.is_broadcast() {
        Some("broadcast address")
    } else if o[0] >= 240 {
        Some("reserved address (240/4)")
    } else if (o[0] == 192 && o[1] == 0 && o[2] == 2)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
    {
        Some("documentation address")
    } else if o[0] == 198 && o[1] & 0xfe == 18 {
        Some("benchmarking address (198.18/15)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment (192.0.0/24)")
    } else {
        None
    }
}

/// Why a name gave no address the crawler may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GuardError {
    /// The guard refused the address (rather than the name not resolving).
    pub refused: bool,
    pub message: String,
}

/// Decides which addresses the crawler may connect to.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    lab_allow: Vec<IpNet>,
}

impl AddressPolicy {
    /// `lab_allow`: blocks allowed although not public (a test lab's).
    pub fn new(lab_allow: &[String]) -> Result<Self, String> {
        let lab_allow = lab_allow
            .iter()
            .map(|b| {
                let (addr, len) = kanki_config::parse_prefix(b)?;
                IpNet::new(addr, len).map_err(|e| format!("{b:?}: {e}"))
            })
            .collect::<Result<_, String>>()?;
        Ok(AddressPolicy { lab_allow })
    }

    /// `Err(reason)` when the crawler must not connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match forbidden_reason(ip) {
            None => Ok(()),
            Some(_) if self.lab_allow.iter().any(|n| n.contains(&ip)) => Ok(()),
            Some(why) => Err(format!("refused {ip}: {why}")),
        }
    }
}

/// The crawler's resolver: fixed names first (`[crawler.hosts]`), then the
/// system's resolver; every answer passes the [`AddressPolicy`], and only
/// the first address that passes is returned, so the connection goes to
/// exactly the address that was checked.
pub struct GuardedResolver {
    policy: AddressPolicy,
    hosts: BTreeMap<String, IpAddr>,
}

impl GuardedResolver {
    pub fn new(policy: AddressPolicy, hosts: &BTreeMap<String, IpAddr>) -> Arc<Self> {
        let hosts = hosts
            .iter()
            .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), *v))
            .collect();
        Arc::new(GuardedResolver { policy, hosts })
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Resolves a host name to the one address the crawler will use.
    pub async fn resolve_checked(&self, host: &str) -> Result<IpAddr, GuardError> {
        let refused = |message| GuardError {
            refused: true,
            message,
        };
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Ok(ip) = name.parse::<IpAddr>() {
            self.policy.check(ip).map_err(refused)?;
            return Ok(ip);
        }
        let candidates: Vec<IpAddr> = match self.hosts.get(&name) {
            Some(ip) => vec![*ip],
            None => tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| GuardError {
                    refused: false,
                    message: format!("cannot resolve {name}: {e}"),
                })?
                .map(|sa| sa.ip())
                .collect(),
        };
        let mut first_refusal = None;
        for ip in candidates {
            match self.policy.check(ip) {
                Ok(()) => return Ok(ip),
                Err(e) => first_refusal = first_refusal.or(Some(e)),
            }
        }
        Err(match first_refusal {
            Some(e) => refused(format!("{name}: {e}")),
            None => GuardError {
                refused: false,
                message: format!("{name} has no address"),
            },
        })
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = GuardedResolver {
            policy: self.policy.clone(),
            hosts: self.hosts.clone(),
        };
        let name = name.as_str().to_string();
        Box::pin(async move {
            let ip = this
                .resolve_checked(&name)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        forbidden_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "0.0.0.0",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::7f00:1",
            "2001:db8::1",
        ] {
            assert!(refused(a), "{a} should be refused");
        }
        for a in ["8.8.8.8", "100.128.0.1", "1.1.1.1", "2606:4700::1111"] {
            assert!(!refused(a), "{a} is public");
        }
    }

    #[test]
    fn the_lab_allowlist_lets_its_blocks_through() {
        let p = AddressPolicy::new(&["127.0.0.0/8".into()]).unwrap();
        assert!(p.check("127.0.0.2".parse().unwrap()).is_ok());
        let e = p.check("10.0.0.1".parse().unwrap()).unwrap_err();
        assert!(e.contains("private"), "{e}");
    }
}
