//! kanki's configuration: one TOML file read by every subcommand.
//!
//! Every key has a default that runs on a laptop, so no file is needed to
//! start. [`DEFAULT_TOML`] is the complete, commented configuration that
//! `kanki config default` prints; a test keeps it equal to [`Config::default`].
//! Errors name the key and the line ([`ConfigError`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kanki_feeds::{Format, InputLimits};
use kanki_indicators::{Category, Tlp};
use serde::{Deserialize, Serialize};

mod api;
mod crawler;
mod directory;
mod duration;
mod front;
mod operators;
mod redact;
mod removal;
mod rpz;
mod secrets;

pub use redact::{REDACTED, redact_url, redact_url_in};

pub use crawler::{
    CrawlScheduleConfig, CrawlerConfig, NoticeConfig, NoticeDelivery, ProfileConfig,
    builtin_profiles,
};
pub use directory::{
    AuditConfig, DirectoryConfig, FollowConfig, FollowFormat, NasConfig, RadiusConfig,
};
pub use duration::HumanDuration;
pub use front::{DnsConfig, WarningConfig};
pub use operators::{LdapConfig, OperatorsConfig};
pub use removal::{
    CountermeasureConfig, CountermeasureSiteConfig, NoticesConfig, RemovalConfig, SensorConfig,
    SmtpConfig, SmtpTls, ToolLink,
};
pub use rpz::{
    RpzConfig, RpzZoneConfig, TSIG_ALGORITHMS, TsigKeyConfig, decode_secret, parse_prefix,
};

/// A configuration error before it is placed in the file: the key's dotted
/// path, the text to point at (and which occurrence), and the message.
pub(crate) type Invalid = (String, Option<(String, usize)>, String);

/// The complete default configuration, with a comment on every key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where all state lives: the SQLite database, the policy snapshot.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub api: ApiConfig,
    /// Bounds on every input from outside: feeds, reports, uploads.
    pub input: InputLimits,
    pub storage: StorageConfig,
    pub indicators: IndicatorsConfig,
    pub allowlist: AllowlistConfig,
    pub policy: PolicyConfig,
    pub export: ExportConfig,
    pub feeds: Vec<FeedConfig>,
    /// The RPZ primary (`kanki serve`), off until zones are configured.
    pub rpz: RpzConfig,
    pub directory: DirectoryConfig,
    pub audit: AuditConfig,
    pub radius: RadiusConfig,
    /// The crawler (`kanki crawl`, and scheduled crawls in `kanki serve`).
    pub crawler: CrawlerConfig,
    /// The consent-aware DNS front (`kanki serve`), off until `listen` is set.
    pub dns: DnsConfig,
    pub warning: WarningConfig,
    /// The removal loop: events, attribution grounds, cases.
    pub removal: RemovalConfig,
    pub notices: NoticesConfig,
    pub smtp: SmtpConfig,
    /// kanki's own low-interaction sensor.
    pub sensor: SensorConfig,
    /// The countermeasure site's pages, one per family.
    pub countermeasures: Vec<CountermeasureConfig>,
    /// The countermeasure site's own listener and public address.
    pub countermeasure_site: CountermeasureSiteConfig,
    /// Sign-in, sessions and tokens of the operator API.
    pub operators: OperatorsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./kanki-data"),
            log: LogConfig::default(),
            api: ApiConfig::default(),
            input: InputLimits::default(),
            storage: StorageConfig::default(),
            indicators: IndicatorsConfig::default(),
            allowlist: AllowlistConfig::default(),
            policy: PolicyConfig::default(),
            export: ExportConfig::default(),
            feeds: Vec::new(),
            rpz: RpzConfig::default(),
            directory: DirectoryConfig::default(),
            audit: AuditConfig::default(),
            radius: RadiusConfig::default(),
            crawler: CrawlerConfig::default(),
            dns: DnsConfig::default(),
            warning: WarningConfig::default(),
            removal: RemovalConfig::default(),
            notices: NoticesConfig::default(),
            smtp: SmtpConfig::default(),
            sensor: SensorConfig::default(),
            countermeasures: Vec::new(),
            countermeasure_site: CountermeasureSiteConfig::default(),
            operators: OperatorsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `kanki=debug,info`. `RUST_LOG` wins.
    pub level: String,
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the operator's HTTP API, `/metrics` and `/healthz`.
    /// Beyond loopback only with TLS (`tls_cert_file`) or behind a
    /// declared TLS reverse proxy (`trusted_proxies`, `proxy_tls`).
    pub listen: SocketAddr,
    /// Largest file accepted by the import upload endpoint, in bytes.
    pub max_upload_bytes: u64,
    /// PEM certificate chain the API is served with over TLS (with
    /// `tls_key_file`); unset: plain HTTP. Reloaded when it changes.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// The names (`host` or `host:port`) clients reach the API by; a
    /// request whose Host is none of them is refused. Empty: the listen
    /// address, and `localhost` when it is loopback.
    pub hostnames: Vec<String>,
    /// Reverse proxies in front of the API: from a peer in these prefixes
    /// the client's address is taken from `Forwarded` / `X-Forwarded-For`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The proxies in `trusted_proxies` speak TLS to clients: session
    /// cookies are marked Secure, and the API may listen beyond loopback.
    pub proxy_tls: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            max_upload_bytes: 512 * 1024 * 1024,
            tls_cert_file: None,
            tls_key_file: None,
            hostnames: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_tls: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite`: one file in the data directory (the embedded default).
    pub backend: Backend,
    /// SQLite's `synchronous` setting: `full` survives power loss, `normal`
    /// survives a killed process but may lose the last commits on power loss.
    pub synchronous: Synchronous,
    /// With `synchronous = "normal"`, says that losing the last
    /// acknowledged RADIUS records and audit records on power loss is
    /// accepted; without it, `normal` is refused while RADIUS accounting
    /// or attribution is on.
    pub accept_loss: bool,
    /// How long a writer waits for another writer before giving up.
    pub busy_timeout: HumanDuration,
    /// Page cache of each database connection, in MiB, for `kanki serve`
    /// and the other commands (a writer, four readers and a checkpointer;
    /// it is filled only as pages are read).
    pub page_cache_mib: u32,
    /// The same for the one-shot `kanki import` and `kanki ingest`: small,
    /// so that reading a report of any size stays in bounded memory.
    pub import_page_cache_mib: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Sqlite,
            synchronous: Synchronous::Full,
            accept_loss: false,
            busy_timeout: HumanDuration::secs(30),
            page_cache_mib: 256,
            import_page_cache_mib: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndicatorsConfig {
    /// How long a listing lives after its source last saw it, unless the
    /// source sets its own `ttl`.
    pub default_ttl: HumanDuration,
    /// Confidence (0–100) given to rows whose source says nothing.
    pub default_confidence: u8,
    /// TLP marking of indicators whose source sets none.
    pub default_tlp: Tlp,
    /// How often `kanki serve` expires listings whose time is up.
    pub expire_every: HumanDuration,
}

impl Default for IndicatorsConfig {
    fn default() -> Self {
        IndicatorsConfig {
            default_ttl: HumanDuration::secs(30 * 86400),
            default_confidence: 50,
            default_tlp: Tlp::Clear,
            expire_every: HumanDuration::secs(60),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowlistConfig {
    /// Names never listed, exactly these names.
    pub exact: Vec<String>,
    /// Names never listed, with everything below them.
    pub suffix: Vec<String>,
    /// A top-sites file (Tranco `rank,domain` CSV or one domain a line):
    /// each domain and its `www.` name are never listed.
    pub top_sites: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// How often `kanki serve` checks the store for list changes and
    /// rebuilds the policy snapshot when there are some.
    pub refresh_every: HumanDuration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            refresh_every: HumanDuration::secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// The address the `hosts` export points listed names at.
    pub hosts_address: String,
    pub rpz: RpzExportConfig,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            hosts_address: "0.0.0.0".into(),
            rpz: RpzExportConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpzExportConfig {
    /// Zone name (origin) of the exported RPZ.
    pub origin: String,
    /// `nxdomain`, `nodata`, `passthru`, `drop`, `cname:NAME` for a walled
    /// garden (`cname:*.garden.example.` keeps the query name), or
    /// `local:ADDRESS[,ADDRESS...]` for local A/AAAA data.
    #[serde(deserialize_with = "de_rpz_action")]
    pub action: String,
    /// Also write `*.name` triggers so subdomains of a listed name match.
    pub wildcards: bool,
    /// TTL of the zone's records, in seconds.
    pub ttl: u32,
    /// SOA primary name server and responsible mailbox.
    pub soa_mname: String,
    pub soa_rname: String,
    /// SOA timers, in seconds.
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

impl Default for RpzExportConfig {
    /// The exports' own defaults, so the two cannot drift apart.
    fn default() -> Self {
        let d = kanki_exports::RpzOptions::default();
        RpzExportConfig {
            origin: d.origin,
            action: d.action.to_string(),
            wildcards: d.wildcards,
            ttl: d.ttl,
            soa_mname: d.soa_mname,
            soa_rname: d.soa_rname,
            refresh: d.refresh,
            retry: d.retry,
            expire: d.expire,
            minimum: d.minimum,
        }
    }
}

fn de_rpz_action<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_rpz_action(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

/// Checks an RPZ action spelling: `nxdomain`, `nodata`, `passthru`,
/// `drop`, `cname:NAME` or `local:ADDRESS[,ADDRESS...]`.
pub fn check_rpz_action(s: &str) -> Result<(), String> {
    s.parse::<kanki_exports::RpzAction>().map(|_| ())
}

/// One source of indicators imported on a schedule by `kanki serve`, or
/// named by `kanki import --source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFeed")]
pub struct FeedConfig {
    /// The source's name, shown with every indicator it lists.
    pub name: String,
    pub format: FormatName,
    /// Where to read it: a local file ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// ... or an http(s) URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How often to import it.
    pub every: HumanDuration,
    /// Category of rows that carry none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// Time to live after the source last saw an indicator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tlp: Option<Tlp>,
    /// Whether the hosts of this source's URL indicators go on the DNS-level
    /// list. Turn off for sources whose URLs are mostly on compromised but
    /// legitimate sites (blocking the host would take the real site down).
    pub list_url_hosts: bool,
    /// A disabled feed keeps its indicators but is not fetched.
    pub enabled: bool,
}

/// A feed format name checked against the formats kanki reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatName(pub Format);

impl Serialize for FormatName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for FormatName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(FormatName).map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    name: String,
    format: FormatName,
    path: Option<PathBuf>,
    url: Option<String>,
    #[serde(default = "default_every")]
    every: HumanDuration,
    category: Option<Category>,
    ttl: Option<HumanDuration>,
    confidence: Option<u8>,
    tlp: Option<Tlp>,
    #[serde(default = "yes")]
    list_url_hosts: bool,
    #[serde(default = "yes")]
    enabled: bool,
}

fn default_every() -> HumanDuration {
    HumanDuration::secs(3600)
}

fn yes() -> bool {
    true
}

impl TryFrom<RawFeed> for FeedConfig {
    type Error = String;
    fn try_from(r: RawFeed) -> Result<Self, String> {
        let name = r.name.trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "feed name {:?} must be non-empty and use only letters, digits, '-', '_' and '.'",
                r.name
            ));
        }
        match (&r.path, &r.url) {
            (Some(_), Some(_)) => {
                return Err(format!("feed {name:?} has both `path` and `url`; give one"));
            }
            (None, None) => return Err(format!("feed {name:?} needs a `path` or a `url`")),
            (None, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                return Err(format!(
                    "feed {name:?}: url {u:?} must start with http:// or https://"
                ));
            }
            _ => {}
        }
        if r.every.0.as_secs() < 10 {
            return Err(format!("feed {name:?}: `every` must be at least 10s"));
        }
        if let Some(c) = r.confidence
            && c > 100
        {
            return Err(format!("feed {name:?}: confidence {c} is over 100"));
        }
        Ok(FeedConfig {
            name,
            format: r.format,
            path: r.path,
            url: r.url,
            every: r.every,
            category: r.category,
            ttl: r.ttl,
            confidence: r.confidence,
            tlp: r.tlp,
            list_url_hosts: r.list_url_hosts,
            enabled: r.enabled,
        })
    }
}

/// A configuration that cannot be used, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    /// The dotted key path, e.g. `api.listen` or `feeds[1].every`.
    pub key: Option<String>,
    /// 1-based line and column.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            write!(f, ": ")?;
        } else if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

impl Config {
    /// Parses and validates a configuration text. `file` is used in errors.
    pub fn from_toml_str(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        let err = |key: Option<String>, span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = match span {
                Some(s) => {
                    let (l, c) = line_col(text, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ConfigError {
                file: file.map(Path::to_path_buf),
                key,
                line,
                column,
                message,
            }
        };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| err(None, e.span(), e.message().to_string()))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = (path != ".").then_some(path);
            let inner = e.into_inner();
            err(key, inner.span(), inner.message().to_string())
        })?;
        if let Err((key, message)) = config.read_secret_files() {
            return Err(err(Some(key), None, message));
        }
        if let Err((key, needle, message)) = config.validate() {
            let span = needle
                .and_then(|n| nth_occurrence(text, &n.0, n.1))
                .map(|o| o..o);
            return Err(err(Some(key), span, message));
        }
        Ok(config)
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            key: None,
            line: None,
            column: None,
            message: format!("cannot read configuration: {e}"),
        })?;
        Config::from_toml_str(&text, Some(path))
    }

    /// Checks that span several keys. On error: the key path, a text to find
    /// in the file (and which occurrence) to point at its line, and the message.
    fn validate(&self) -> Result<(), Invalid> {
        let mut seen = std::collections::HashMap::new();
        for (i, feed) in self.feeds.iter().enumerate() {
            let n = seen.entry(feed.name.as_str()).or_insert(0usize);
            *n += 1;
            if *n > 1 {
                return Err((
                    format!("feeds[{i}].name"),
                    Some((format!("\"{}\"", feed.name), *n)),
                    format!("feed name {:?} is used more than once", feed.name),
                ));
            }
        }
        self.rpz.validate()?;
        self.operators.validate()?;
        self.crawler.validate()?;
        self.dns.validate()?;
        self.validate_removal()?;
        self.validate_durability()?;
        self.warning.validate()?;
        self.api.validate()?;
        self.countermeasure_site.validate()?;
        for (key, mib) in [
            ("page_cache_mib", self.storage.page_cache_mib),
            ("import_page_cache_mib", self.storage.import_page_cache_mib),
        ] {
            if !(1..=65_536).contains(&mib) {
                return Err((
                    format!("storage.{key}"),
                    None,
                    format!("{key} = {mib}: a page cache is 1 to 65536 MiB"),
                ));
            }
        }
        if self.indicators.default_confidence > 100 {
            return Err((
                "indicators.default_confidence".into(),
                Some(("default_confidence".into(), 1)),
                "confidence is 0 to 100".into(),
            ));
        }
        Ok(())
    }

    /// `synchronous = "normal"` loses the last commits on power loss: a
    /// NAS's accounting record kanki acknowledged (the NAS will not send it
    /// again) and the audit record of an attribution made. Refused while
    /// either is on, unless the operator says the loss is accepted.
    fn validate_durability(&self) -> Result<(), Invalid> {
        if self.storage.synchronous != Synchronous::Normal || self.storage.accept_loss {
            return Ok(());
        }
        let on = match (
            self.radius.listen.is_some(),
            !self.removal.grounds.is_empty(),
        ) {
            (true, _) => "RADIUS accounting is on (radius.listen)",
            (false, true) => "attribution is on (removal.grounds)",
            (false, false) => return Ok(()),
        };
        Err((
            "storage.synchronous".into(),
            Some(("synchronous".into(), 1)),
            format!(
                "synchronous = \"normal\" can lose acknowledged RADIUS records and audit records on power loss, and {on}: use \"full\", or set storage.accept_loss = true to accept that loss"
            ),
        ))
    }

    fn validate_removal(&self) -> Result<(), Invalid> {
        for (class, sev) in &self.removal.severity {
            if !["low", "medium", "high"].contains(&sev.as_str()) {
                return Err((
                    format!("removal.severity.{class}"),
                    Some((format!("\"{sev}\""), 1)),
                    format!("severity {sev:?}: one of low, medium, high"),
                ));
            }
        }
        if !["ja", "en"].contains(&self.notices.language.as_str()) {
            return Err((
                "notices.language".into(),
                Some(("language".into(), 1)),
                "notices are written in \"ja\" or \"en\"".into(),
            ));
        }
        if self.notices.escalate_after == 0 {
            return Err((
                "notices.escalate_after".into(),
                Some(("escalate_after".into(), 1)),
                "escalate after at least one notice".into(),
            ));
        }
        if self.smtp.username.is_some()
            && self.smtp.tls == SmtpTls::None
            && !self.smtp.allow_auth_without_tls
        {
            return Err((
                "smtp.username".into(),
                Some(("username".into(), 1)),
                "SMTP AUTH over a connection without TLS shows the password to anyone on the path: set smtp.tls = \"starttls\" or \"tls\", or smtp.allow_auth_without_tls = true".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.removal.sinkholes.iter().enumerate() {
            if !names.insert(m.name.as_str()) {
                return Err((
                    format!("removal.sinkholes[{i}].name"),
                    Some((format!("\"{}\"", m.name), 2)),
                    format!("sinkhole mapping {:?} is defined twice", m.name),
                ));
            }
        }
        Ok(())
    }

    /// The feed of that name, if configured.
    pub fn feed(&self, name: &str) -> Option<&FeedConfig> {
        self.feeds.iter().find(|f| f.name == name)
    }

    /// The database file in the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("kanki.sqlite3")
    }

    /// The persisted policy snapshot in the data directory.
    pub fn snapshot_path(&self) -> PathBuf {
        self.data_dir.join("policy.snapshot")
    }
}

fn nth_occurrence(text: &str, needle: &str, n: usize) -> Option<usize> {
    text.match_indices(needle)
        .nth(n.saturating_sub(1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_cache_out_of_range_is_named() {
        let e = error_of("[storage]\nimport_page_cache_mib = 0\n");
        assert_eq!(
            e.key.as_deref(),
            Some("storage.import_page_cache_mib"),
            "{e}"
        );
        assert!(e.to_string().contains("1 to 65536 MiB"), "{e}");
        let c = Config::from_toml_str("[storage]\npage_cache_mib = 64\n", None).unwrap();
        assert_eq!(
            (c.storage.page_cache_mib, c.storage.import_page_cache_mib),
            (64, 2)
        );
    }

    #[test]
    fn synchronous_normal_is_refused_while_records_could_be_lost_unless_accepted() {
        let e = error_of("[storage]\nsynchronous = \"normal\"\n");
        assert_eq!(e.key.as_deref(), Some("storage.synchronous"), "{e}");
        assert!(e.to_string().contains("attribution is on"), "{e}");
        let e = error_of(
            "[storage]\nsynchronous = \"normal\"\n[radius]\nlisten = \"127.0.0.1:1813\"\n[removal.grounds]\n",
        );
        assert!(e.to_string().contains("RADIUS accounting is on"), "{e}");
        let c = Config::from_toml_str(
            "[storage]\nsynchronous = \"normal\"\naccept_loss = true\n",
            None,
        )
        .unwrap();
        assert_eq!(c.storage.synchronous, Synchronous::Normal);
        // Nothing that could be lost: no RADIUS, no attribution.
        Config::from_toml_str(
            "[storage]\nsynchronous = \"normal\"\n[removal]\ngrounds = {}\n",
            None,
        )
        .unwrap();
    }

    #[test]
    fn smtp_auth_without_tls_is_refused_unless_allowed() {
        let e = error_of("[smtp]\nusername = \"u\"\npassword = \"p\"\n");
        assert_eq!(e.key.as_deref(), Some("smtp.username"), "{e}");
        assert!(e.to_string().contains("without TLS"), "{e}");
        for ok in [
            "[smtp]\nusername = \"u\"\npassword = \"p\"\ntls = \"starttls\"\n",
            "[smtp]\nusername = \"u\"\npassword = \"p\"\nallow_auth_without_tls = true\n",
            "[smtp]\ntls = \"none\"\n",
        ] {
            Config::from_toml_str(ok, None).unwrap();
        }
    }

    #[test]
    fn the_commented_default_is_the_default() {
        let parsed = Config::from_toml_str(DEFAULT_TOML, None).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn the_issue_example_works_as_written() {
        let text = r#"
data_dir = "./kanki-data"

[api]
listen = "127.0.0.1:8080"

[[feeds]]
name = "urlhaus"
format = "urlhaus"
path = "/var/lib/feeds/urlhaus.csv"   # or url = "https://..."
every = "5m"
"#;
        let c = Config::from_toml_str(text, None).unwrap();
        assert_eq!(c.feeds.len(), 1);
        assert_eq!(c.feeds[0].every.as_secs(), 300);
        assert_eq!(c.feeds[0].format.0, Format::Urlhaus);
        assert!(c.feeds[0].list_url_hosts);
    }

    fn error_of(text: &str) -> ConfigError {
        Config::from_toml_str(text, Some(Path::new("kanki.toml"))).unwrap_err()
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = error_of("data_dir = \"x\"\n\n[api]\nlisten = \"not an address\"\n");
        assert_eq!(e.key.as_deref(), Some("api.listen"));
        assert_eq!(e.line, Some(4));
        assert!(e.to_string().starts_with("kanki.toml:4:"), "{e}");

        let e = error_of("[api]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("unknown field `lisen`"), "{e}");

        let e = error_of("[[feeds]]\nname = \"a\"\nformat = \"csvx\"\npath = \"/x\"\n");
        assert_eq!(e.key.as_deref(), Some("feeds[0].format"), "{e}");
        assert!(e.message.contains("unknown feed format"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");

        let e = error_of(
            "[[feeds]]\nname = \"a\"\nformat = \"plain\"\npath = \"/x\"\nevery = \"often\"\n",
        );
        assert_eq!(e.key.as_deref(), Some("feeds[0].every"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");

        let e = error_of("[[feeds]]\nname = \"a\"\nformat = \"plain\"\n");
        assert!(e.message.contains("needs a `path` or a `url`"), "{e}");

        let e = error_of(
            "[[feeds]]\nname = \"a\"\nformat = \"plain\"\npath = \"/x\"\n\n[[feeds]]\nname = \"a\"\nformat = \"plain\"\npath = \"/y\"\n",
        );
        assert_eq!(e.key.as_deref(), Some("feeds[1].name"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");

        let e = error_of("[export.rpz]\naction = \"block\"\n");
        assert_eq!(e.key.as_deref(), Some("export.rpz.action"), "{e}");

        let e = error_of("data_dir = \n");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn warning_keys_are_checked() {
        let c = Config::from_toml_str(
            "[warning]\nlisten = \"127.0.0.1:8081\"\nreset_listen = [\"127.0.0.1:8443\", \"[::1]:8443\"]\nlanguage = \"en\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.warning.reset_listen.len(), 2);
        let e = error_of("[warning]\nlanguage = \"fr\"\n");
        assert_eq!(e.key.as_deref(), Some("warning.language"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
        let e = error_of("[warning]\ncountermeasure_url = \"clean.example\"\n");
        assert_eq!(e.key.as_deref(), Some("warning.countermeasure_url"), "{e}");
    }
}
