//! The `[rpz]` section: kanki serve as the primary of response policy
//! zones that the ISP's own resolvers (BIND, Unbound, PowerDNS, Knot)
//! transfer by AXFR/IXFR. See docs/configuration.md and docs/resolvers.md.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use kanki_indicators::{Category, Tlp};
use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpzConfig {
    /// Where the RPZ primary listens, TCP (transfers, SOA) and UDP (SOA
    /// queries, NOTIFY answers). It runs only when zones are configured.
    pub listen: SocketAddr,
    /// Changed entries the IXFR journal keeps per zone; a secondary further
    /// behind gets a full transfer.
    pub journal_depth: u64,
    /// NOTIFY is sent at most this often per zone; changes in between are
    /// announced together.
    pub notify_interval: HumanDuration,
    /// TCP connections (transfers) served at once; more wait their turn.
    pub max_transfers: usize,
    /// A TCP connection idle this long is closed.
    pub idle_timeout: HumanDuration,
    pub zones: Vec<RpzZoneConfig>,
    pub tsig: Vec<TsigKeyConfig>,
}

impl Default for RpzConfig {
    fn default() -> Self {
        RpzConfig {
            listen: "127.0.0.1:5354".parse().expect("valid address"),
            journal_depth: 100_000,
            notify_interval: HumanDuration::secs(5),
            max_transfers: 16,
            idle_timeout: HumanDuration::secs(30),
            zones: Vec::new(),
            tsig: Vec::new(),
        }
    }
}

/// One response policy zone served by the primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpzZoneConfig {
    /// The zone's name, as the resolvers name it.
    pub name: String,
    /// Only indicators of these categories (all when empty).
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Only indicators listed by one of these sources (all when empty).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Only indicators with one of these TLP markings (all when empty).
    #[serde(default)]
    pub tlp: Vec<Tlp>,
    /// `nxdomain`, `nodata`, `passthru`, `drop`, `cname:NAME`
    /// (`cname:*.garden.example.` keeps the query name) or
    /// `local:ADDRESS[,ADDRESS...]`.
    #[serde(default = "default_action", deserialize_with = "crate::de_rpz_action")]
    pub action: String,
    /// `*.name` triggers so subdomains of a listed name match too.
    #[serde(default = "yes")]
    pub wildcards: bool,
    /// Shadow mode: every trigger's action is `passthru`, so resolvers log
    /// hits without changing any answer.
    #[serde(default)]
    pub shadow: bool,
    /// Secondaries to send NOTIFY to when the zone changes (`address:port`).
    #[serde(default)]
    pub notify: Vec<SocketAddr>,
    /// Clients (addresses or CIDR blocks) that may transfer the zone and ask
    /// for its SOA; everyone else is refused.
    #[serde(default = "loopback")]
    pub allow_transfer: Vec<String>,
    /// A `[[rpz.tsig]]` key name: requests must be signed with it.
    #[serde(default)]
    pub tsig_key: Option<String>,
    /// A client-scope zone: instead of the list, `rpz-client-ip` passthru
    /// triggers for these subscriber address blocks, less the addresses of
    /// subscribers who consented. Put it before the policy zones.
    #[serde(default)]
    pub client_scope: Vec<String>,
    /// For a client-scope zone: the consenting subscribers' addresses or
    /// blocks, one a line (`#` comments), re-read when it changes.
    #[serde(default)]
    pub consent_file: Option<PathBuf>,
}

fn default_action() -> String {
    "nxdomain".into()
}

fn yes() -> bool {
    true
}

fn loopback() -> Vec<String> {
    vec!["127.0.0.1/32".into(), "::1/128".into()]
}

/// A TSIG key (RFC 8945) shared with secondaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKeyConfig {
    /// The key's name, the same on both sides.
    pub name: String,
    /// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The secret, base64 (what `tsig-keygen` prints).
    #[serde(default)]
    pub secret: String,
    /// A file holding the secret instead (kept out of the configuration,
    /// readable by kanki alone).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

fn default_algorithm() -> String {
    "hmac-sha256".into()
}

/// The TSIG algorithms the RPZ primary accepts.
pub const TSIG_ALGORITHMS: &[&str] = &["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// Parses an address or CIDR block: `192.0.2.1`, `192.0.2.0/24`,
/// `2001:db8::/32`. Returns the address with host bits cleared and the
/// prefix length.
pub fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let s = s.trim();
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
        None => max,
    };
    let addr = match addr {
        IpAddr::V4(a) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Ok((addr, len))
}

/// A base64 secret decoded, or why not.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let s: String = secret.split_whitespace().collect();
    let bytes = data_encoding::BASE64
        .decode(s.as_bytes())
        .map_err(|e| format!("the secret is not base64: {e}"))?;
    if bytes.len() < 16 {
        return Err(format!(
            "the secret is {} bytes; use at least 16 (tsig-keygen makes 32)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

impl RpzConfig {
    /// Checks across keys; on error the key path, a text to point at in the
    /// file (with which occurrence), and the message.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let mut keys = std::collections::HashSet::new();
        for (i, k) in self.tsig.iter().enumerate() {
            let at = |field: &str| format!("rpz.tsig[{i}].{field}");
            let point = |text: &str| Some((text.to_string(), 1));
            check_name(&k.name).map_err(|e| (at("name"), point(&k.name), e))?;
            if !keys.insert(k.name.to_ascii_lowercase()) {
                return Err((
                    at("name"),
                    Some((format!("\"{}\"", k.name), 2)),
                    format!("TSIG key {:?} is defined more than once", k.name),
                ));
            }
            if !TSIG_ALGORITHMS.contains(&k.algorithm.to_ascii_lowercase().as_str()) {
                return Err((
                    at("algorithm"),
                    point(&k.algorithm),
                    format!(
                        "unsupported TSIG algorithm {:?}: use one of {}",
                        k.algorithm,
                        TSIG_ALGORITHMS.join(", ")
                    ),
                ));
            }
            decode_secret(&k.secret).map_err(|e| (at("secret"), point(&k.secret), e))?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, z) in self.zones.iter().enumerate() {
            let at = |field: &str| format!("rpz.zones[{i}].{field}");
            let point = |text: &str| Some((text.to_string(), 1));
            check_name(&z.name).map_err(|e| (at("name"), point(&z.name), e))?;
            if !names.insert(z.name.trim_end_matches('.').to_ascii_lowercase()) {
                return Err((
                    at("name"),
                    Some((format!("\"{}\"", z.name), 2)),
                    format!("zone {:?} is configured more than once", z.name),
                ));
            }
            for a in &z.allow_transfer {
                parse_prefix(a).map_err(|e| (at("allow_transfer"), point(a), e))?;
            }
            for a in &z.client_scope {
                parse_prefix(a).map_err(|e| (at("client_scope"), point(a), e))?;
            }
            if let Some(k) = &z.tsig_key
                && !keys.contains(&k.to_ascii_lowercase())
            {
                return Err((
                    at("tsig_key"),
                    point(k),
                    format!("no [[rpz.tsig]] key is named {k:?}"),
                ));
            }
            let scoped = !z.client_scope.is_empty();
            if scoped && (!z.categories.is_empty() || !z.sources.is_empty() || !z.tlp.is_empty()) {
                return Err((
                    at("client_scope"),
                    point("client_scope"),
                    "a client-scope zone carries no list: leave out categories, sources and tlp"
                        .into(),
                ));
            }
            if z.consent_file.is_some() && !scoped {
                return Err((
                    at("consent_file"),
                    point("consent_file"),
                    "consent_file needs client_scope (the subscriber address blocks)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A zone or key name: letters, digits, `-` and `_` in dot-separated labels.
fn check_name(name: &str) -> Result<(), String> {
    let opts = kanki_exports::RpzOptions {
        origin: name.to_string(),
        ..Default::default()
    };
    opts.apex().map(|_| ())
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    const ISSUE_EXAMPLE: &str = r#"
[rpz]
listen = "127.0.0.1:5354"

[[rpz.zones]]
name = "malware.rpz.kanki"
categories = ["malware-distribution", "exploit"]
action = "cname:warning.kanki."      # or "nxdomain", "nodata", "passthru"
notify = ["127.0.0.1:5360"]
allow_transfer = ["127.0.0.1/32"]
tsig_key = "kanki-key"

[[rpz.tsig]]
name = "kanki-key"
algorithm = "hmac-sha256"
secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="
"#;

    #[test]
    fn the_issue_example_works_as_written() {
        let c = Config::from_toml_str(ISSUE_EXAMPLE, None).unwrap();
        let z = &c.rpz.zones[0];
        assert_eq!(z.name, "malware.rpz.kanki");
        assert_eq!(z.categories.len(), 2);
        assert_eq!(z.action, "cname:warning.kanki.");
        assert!(z.wildcards && !z.shadow);
        assert_eq!(z.notify, ["127.0.0.1:5360".parse().unwrap()]);
        assert_eq!(z.tsig_key.as_deref(), Some("kanki-key"));
        assert_eq!(c.rpz.tsig[0].algorithm, "hmac-sha256");
        assert_eq!(c.rpz.listen.port(), 5354);
        assert_eq!(c.rpz.notify_interval.as_secs(), 5);
    }

    fn error_of(text: &str) -> crate::ConfigError {
        Config::from_toml_str(text, Some(Path::new("kanki.toml"))).unwrap_err()
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e =
            error_of(&ISSUE_EXAMPLE.replace("tsig_key = \"kanki-key\"", "tsig_key = \"other\""));
        assert_eq!(e.key.as_deref(), Some("rpz.zones[0].tsig_key"), "{e}");
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.message.contains("no [[rpz.tsig]] key"), "{e}");

        let e = error_of(&ISSUE_EXAMPLE.replace("\"hmac-sha256\"", "\"hmac-md5\""));
        assert_eq!(e.key.as_deref(), Some("rpz.tsig[0].algorithm"), "{e}");
        assert_eq!(e.line, Some(15), "{e}");

        let e = error_of(&ISSUE_EXAMPLE.replace("c2VjcmV0", "!!!!"));
        assert_eq!(e.key.as_deref(), Some("rpz.tsig[0].secret"), "{e}");
        assert!(e.message.contains("base64"), "{e}");

        let e = error_of(&ISSUE_EXAMPLE.replace("127.0.0.1/32", "127.0.0.1/33"));
        assert_eq!(e.key.as_deref(), Some("rpz.zones[0].allow_transfer"), "{e}");
        assert_eq!(e.line, Some(10), "{e}");

        let e = error_of(&ISSUE_EXAMPLE.replace("cname:warning.kanki.", "block"));
        assert_eq!(e.key.as_deref(), Some("rpz.zones[0].action"), "{e}");

        let e = error_of(&ISSUE_EXAMPLE.replace("\"exploit\"", "\"exploits\""));
        assert_eq!(e.key.as_deref(), Some("rpz.zones[0].categories[1]"), "{e}");

        let e = error_of(&ISSUE_EXAMPLE.replace("notify =", "notfy ="));
        assert!(e.message.contains("unknown field `notfy`"), "{e}");

        let twice = format!("{ISSUE_EXAMPLE}\n[[rpz.zones]]\nname = \"malware.rpz.kanki.\"\n");
        let e = error_of(&twice);
        assert_eq!(e.key.as_deref(), Some("rpz.zones[1].name"), "{e}");

        let e = error_of(
            "[[rpz.zones]]\nname = \"scope.rpz\"\nclient_scope = [\"192.0.2.0/24\"]\ncategories = [\"c2\"]\n",
        );
        assert_eq!(e.key.as_deref(), Some("rpz.zones[0].client_scope"), "{e}");
        let e = error_of("[[rpz.zones]]\nname = \"bad name\"\n");
        assert_eq!(e.key.as_deref(), Some("rpz.zones[0].name"), "{e}");
    }

    #[test]
    fn prefixes_and_secrets() {
        use super::{decode_secret, parse_prefix};
        assert_eq!(
            parse_prefix("192.0.2.77/24").unwrap(),
            ("192.0.2.0".parse().unwrap(), 24)
        );
        assert_eq!(parse_prefix("::1").unwrap(), ("::1".parse().unwrap(), 128));
        assert!(parse_prefix("192.0.2.1/40").is_err());
        assert!(parse_prefix("host").is_err());
        assert_eq!(
            decode_secret("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==")
                .unwrap()
                .len(),
            28
        );
        assert!(decode_secret("c2VjcmV0").is_err());
    }
}
