//! `[removal]`, `[notices]`, `[smtp]`, `[sensor]` and `[[countermeasures]]`:
//! the removal loop, from events to notices and the countermeasure site.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use kanki_audit::Ground;
use kanki_events::SinkholeMapping;
use serde::{Deserialize, Serialize};

use crate::HumanDuration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemovalConfig {
    /// The legal ground each event class (`classification.type`) is
    /// attributed under. Events of a class not listed are stored but not
    /// attributed (counted as "no ground for class").
    pub grounds: BTreeMap<String, Ground>,
    /// Severity of a case by class (`low`, `medium`, `high`); unlisted: medium.
    pub severity: BTreeMap<String, String>,
    /// A notified case with no events for this long is quiet.
    pub quiet_after: HumanDuration,
    /// A case with no events for this long after its last notice is
    /// resolved (verified by re-observation).
    pub resolve_after: HumanDuration,
    /// A directory holding a newer `intelmq.json` and `reports.json` from
    /// Shadowserver's report_schema; unset: the schemas built in.
    pub shadowserver_schemas: Option<PathBuf>,
    /// `kanki serve` ingests files dropped here (then moves them to
    /// `done/` or `failed/` below it); unset: no watched directory.
    pub watch_dir: Option<PathBuf>,
    /// Events older than this (by time of observation) are purged.
    pub events_retention: HumanDuration,
    /// Mappings of sinkhole / taken-down C&C logs (`--format sinkhole --mapping NAME`).
    pub sinkholes: Vec<SinkholeMapping>,
    /// How long one store transaction of an ingest may gather batches: the
    /// batches committed together write each case and block once for all
    /// of them; other writers (RADIUS accounting in `kanki serve`) wait at
    /// most about this long.
    pub commit_window: HumanDuration,
}

impl Default for RemovalConfig {
    fn default() -> Self {
        let grounds = [
            ("infected-system", Ground::EmergencyEvacuation),
            ("brute-force", Ground::EmergencyEvacuation),
            ("scanner", Ground::EmergencyEvacuation),
            ("vulnerable-system", Ground::LegitimateBusiness),
        ]
        .into_iter()
        .map(|(k, g)| (k.to_string(), g))
        .collect();
        let severity = [
            ("infected-system", "high"),
            ("brute-force", "high"),
            ("scanner", "medium"),
            ("vulnerable-system", "low"),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
        RemovalConfig {
            grounds,
            severity,
            quiet_after: HumanDuration::secs(7 * 86400),
            resolve_after: HumanDuration::secs(14 * 86400),
            shadowserver_schemas: None,
            watch_dir: None,
            events_retention: HumanDuration::secs(180 * 86400),
            sinkholes: Vec::new(),
            commit_window: HumanDuration::secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticesConfig {
    /// Language of subscribers whose record names none: `ja` or `en`.
    pub language: String,
    /// At most one notice per case this often.
    pub min_interval: HumanDuration,
    /// At most this many notices a day over all cases (helpdesk capacity).
    pub daily_capacity: u32,
    /// After this many unacknowledged notices a case is escalated: the
    /// walled garden for subscribers who consent, else a letter and a
    /// call-list entry.
    pub escalate_after: u32,
    /// The legal ground the removal loop puts a consenting subscriber in the
    /// walled garden under (recorded in the audit log).
    pub garden_ground: Ground,
    /// A directory of templates overriding the built-in ones
    /// (`{language}/{class}.txt`, `{language}/{family}.txt`).
    pub templates: Option<PathBuf>,
    /// Delivery attempts of a mail before it is marked failed.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each.
    pub retry_backoff: HumanDuration,
    /// Where `kanki notices letters` writes postal exports; unset:
    /// `data_dir/letters`.
    pub letters_dir: Option<PathBuf>,
    /// How often `kanki serve` sends what is due.
    pub send_every: HumanDuration,
    /// A maildir the mail server delivers bounces of notices to (the
    /// `from` address's mailbox): `kanki serve` reads what arrives in its
    /// `new/` and marks the notices bounced; unset: bounces are read only
    /// by `kanki notices bounces`.
    pub bounce_maildir: Option<PathBuf>,
}

impl Default for NoticesConfig {
    fn default() -> Self {
        NoticesConfig {
            language: "ja".into(),
            min_interval: HumanDuration::secs(7 * 86400),
            daily_capacity: 1000,
            escalate_after: 3,
            garden_ground: Ground::Consent,
            templates: None,
            max_attempts: 5,
            retry_backoff: HumanDuration::secs(300),
            letters_dir: None,
            send_every: HumanDuration::secs(3600),
            bounce_maildir: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// `host:port` of the mail server notices are handed to.
    pub server: String,
    pub from: String,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password instead (kept out of the
    /// configuration, readable by kanki alone).
    pub password_file: Option<PathBuf>,
    /// Sends the username and password over a connection without TLS
    /// (`tls = "none"`), where anyone on the path reads them. Refused
    /// unless this is set.
    pub allow_auth_without_tls: bool,
    pub timeout: HumanDuration,
    /// A PEM file of CA certificates trusted for the server's certificate
    /// besides the built-in web roots (a relay with a private CA or a
    /// self-signed certificate).
    pub ca_file: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            server: "127.0.0.1:25".into(),
            from: "abuse@isp.example".into(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            password_file: None,
            allow_auth_without_tls: false,
            timeout: HumanDuration::secs(30),
            ca_file: None,
        }
    }
}

/// Where the countermeasure site is served to subscribers: its own
/// listener, apart from the operator API, so the API never faces them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CountermeasureSiteConfig {
    /// HTTP address of the countermeasure site (its pages under
    /// `/countermeasures`); unset: only the warning page serves it.
    pub listen: Option<SocketAddr>,
    /// The site's address as subscribers reach it, written in notices
    /// (`<public_url>/<family>`, `/ack?reference=...`, `/verify`); unset:
    /// `http://<listen>/countermeasures`, else the warning page's.
    pub public_url: Option<String>,
}

impl CountermeasureSiteConfig {
    pub(crate) fn validate(&self) -> Result<(), crate::Invalid> {
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err((
                "countermeasure_site.public_url".into(),
                Some((u.clone(), 1)),
                format!("public_url {u:?} must start with http:// or https://"),
            ));
        }
        Ok(())
    }
}

impl crate::Config {
    /// The countermeasure site's base URL as written in notices:
    /// `countermeasure_site.public_url`, else its listener's address, else
    /// the warning page's (which serves the site under every name), else
    /// `http://localhost/countermeasures`.
    pub fn countermeasure_site_url(&self) -> String {
        if let Some(u) = &self.countermeasure_site.public_url {
            return u.trim_end_matches('/').to_string();
        }
        match self.countermeasure_site.listen.or(self.warning.listen) {
            Some(a) => format!("http://{a}/countermeasures"),
            None => "http://localhost/countermeasures".into(),
        }
    }
}

/// A countermeasure page: one per malware family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountermeasureConfig {
    /// The family as in `malware.name` (lower case), or a class.
    pub family: String,
    pub title_ja: String,
    pub title_en: String,
    pub guidance_ja: String,
    pub guidance_en: String,
    #[serde(default)]
    pub tools: Vec<ToolLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolLink {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// TCP addresses the low-interaction sensor listens on (none: off).
    pub listen: Vec<SocketAddr>,
    /// Bytes of a connection's first data kept (and hashed).
    pub first_bytes: usize,
    /// A connection is closed after this long.
    pub timeout: HumanDuration,
    /// Connections recorded per source address per minute; more are closed
    /// at once and counted.
    pub per_source_per_minute: u32,
    /// Ports where the sensor plays a telnet login prompt and records the
    /// user name and password typed.
    pub telnet_ports: Vec<u16>,
    /// Ports where the sensor plays an SSH server as far as the key
    /// exchange: it records the client's identification line and the HASSH
    /// of its key-exchange offer. Credentials come later, encrypted: only a
    /// full SSH honeypot (Cowrie, whose logs kanki ingests) sees them.
    pub ssh_ports: Vec<u16>,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            listen: Vec::new(),
            first_bytes: 512,
            timeout: HumanDuration::secs(10),
            per_source_per_minute: 30,
            telnet_ports: vec![23, 2323],
            ssh_ports: vec![22, 2222],
        }
    }
}
