//! `[crawler]`: the honeyclient that follows seed URLs through redirect
//! chains, judges what it finds, and lists it (docs/configuration.md).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::HumanDuration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrawlerConfig {
    /// Address blocks the SSRF guard lets through although they are
    /// loopback, private, shared or reserved: a test lab's. Empty by default.
    pub lab_allow: Vec<String>,
    /// Names resolved to these addresses instead of asking DNS (a hosts
    /// file for the crawler). The SSRF guard still checks the address.
    pub hosts: BTreeMap<String, IpAddr>,
    /// Profiles a crawl runs under when none is named; with more than one,
    /// their trees are compared for cloaking.
    pub profiles: Vec<String>,
    /// Profiles beyond the built-in ones, or replacing one of the same name.
    pub profile: Vec<ProfileConfig>,
    /// Largest body kept per response, counted after decompression.
    pub max_body_bytes: u64,
    /// Time for one response (connect, headers and body).
    pub page_timeout: HumanDuration,
    /// Time for one crawl of one seed under one profile.
    pub crawl_timeout: HumanDuration,
    /// Redirects (HTTP, Refresh, meta, script, form) followed in a row.
    pub max_hops: u32,
    /// How deep embedded content (frames, scripts, objects) is followed.
    pub max_depth: u32,
    /// Responses fetched per crawl at most.
    pub max_nodes: u32,
    /// Requests in flight to one host at once.
    pub per_host_concurrency: u32,
    /// Requests in flight per crawl process at once.
    pub concurrency: u32,
    /// Pause between two requests to one host (politeness); zero: none.
    pub host_delay: HumanDuration,
    /// Directories of YARA rules (`*.yar`, `*.yara`), compiled at start.
    pub yara_rules: Vec<PathBuf>,
    /// Time one YARA scan may take.
    pub yara_timeout: HumanDuration,
    /// Files of known-bad SHA-256 hashes, one a line (`#` comments).
    pub known_bad_hashes: Vec<PathBuf>,
    /// How deep archives inside archives are opened.
    pub archive_depth: u32,
    /// Whether verdicts are listed as indicators (source `crawler`).
    pub list_verdicts: bool,
    /// Whether bodies of judged nodes are kept in `data_dir/evidence/`.
    pub keep_bodies: bool,
    pub schedule: CrawlScheduleConfig,
    pub notices: NoticeConfig,
}

impl Default for CrawlerConfig {
    fn default() -> Self {
        CrawlerConfig {
            lab_allow: Vec::new(),
            hosts: BTreeMap::new(),
            profiles: vec!["windows-chrome-ja".into()],
            profile: Vec::new(),
            max_body_bytes: 10 * 1024 * 1024,
            page_timeout: HumanDuration::secs(15),
            crawl_timeout: HumanDuration::secs(120),
            max_hops: 15,
            max_depth: 4,
            max_nodes: 200,
            per_host_concurrency: 4,
            concurrency: 64,
            host_delay: HumanDuration::secs(0),
            yara_rules: Vec::new(),
            yara_timeout: HumanDuration::secs(5),
            known_bad_hashes: Vec::new(),
            archive_depth: 3,
            list_verdicts: true,
            keep_bodies: true,
            schedule: CrawlScheduleConfig::default(),
            notices: NoticeConfig::default(),
        }
    }
}

/// One crawling profile: how the crawler presents itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    pub name: String,
    pub user_agent: String,
    #[serde(default = "default_language")]
    pub accept_language: String,
    /// Sent on the seed request (a search engine, say); later requests
    /// send the page that led to them.
    #[serde(default)]
    pub referer: Option<String>,
    /// An egress proxy (`http://` or `https://`) for this profile: requests
    /// leave through it, so the SSRF guard cannot see where they go and the
    /// proxy must be trusted to refuse internal destinations.
    #[serde(default)]
    pub proxy: Option<String>,
}

fn default_language() -> String {
    "ja,en;q=0.8".into()
}

/// Crawling on a schedule by `kanki serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrawlScheduleConfig {
    /// Seed files (one URL a line, `#` comments) crawled every `every`.
    pub seeds: Vec<PathBuf>,
    /// How often the seeds are crawled; zero: never.
    pub every: HumanDuration,
    /// How often URLs the crawler listed are checked for liveness and
    /// compromised entrance sites re-crawled; zero: never.
    pub recheck_every: HumanDuration,
}

impl Default for CrawlScheduleConfig {
    fn default() -> Self {
        CrawlScheduleConfig {
            seeds: Vec::new(),
            every: HumanDuration::secs(0),
            recheck_every: HumanDuration::secs(0),
        }
    }
}

/// Notices to the administrators of compromised entrance sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoticeConfig {
    /// Whether notices are written for entrance sites found by a crawl.
    pub enabled: bool,
    /// RDAP bootstrap service asked for a domain's or an address's abuse
    /// contact (`{base}domain/NAME`, `{base}ip/ADDRESS`).
    pub rdap_base: String,
    /// Where every notice is written as an `.eml` file (relative: in
    /// `data_dir`): the queue when `delivery` is `outbox`, a copy otherwise.
    pub outbox: PathBuf,
    /// `outbox`: notices stay in the outbox for a mailer or an operator;
    /// `smtp`: they are also sent through `[smtp]`, retried as `[notices]`
    /// says (`max_attempts`, `retry_backoff`, `send_every`).
    pub delivery: NoticeDelivery,
    /// `ja` or `en`.
    pub language: String,
    /// Where a site's contact is sent when no security.txt or RDAP contact
    /// is found; empty: the notice is kept in the outbox without recipient.
    pub fallback_to: String,
}

/// How notices to site administrators leave kanki.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeDelivery {
    Outbox,
    Smtp,
}

impl Default for NoticeConfig {
    fn default() -> Self {
        NoticeConfig {
            enabled: false,
            rdap_base: "https://rdap.org/".into(),
            outbox: PathBuf::from("outbox"),
            delivery: NoticeDelivery::Outbox,
            language: "ja".into(),
            fallback_to: String::new(),
        }
    }
}

/// The profiles every kanki knows; `[[crawler.profile]]` adds more.
pub fn builtin_profiles() -> Vec<ProfileConfig> {
    let p = |name: &str, ua: &str, lang: &str, referer: Option<&str>| ProfileConfig {
        name: name.into(),
        user_agent: ua.into(),
        accept_language: lang.into(),
        referer: referer.map(Into::into),
        proxy: None,
    };
    vec![
        p(
            "windows-chrome-ja",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "ja,en-US;q=0.9,en;q=0.8",
            None,
        ),
        p(
            "windows-ie-ja",
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
            "ja-JP",
            None,
        ),
        p(
            "android-ja",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            "ja-JP,ja;q=0.9",
            None,
        ),
        p(
            "search-referer-ja",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "ja,en-US;q=0.9,en;q=0.8",
            Some("https://www.google.co.jp/"),
        ),
        p("crawler-plain", "kanki-crawler/0.1", "en", None),
    ]
}

impl CrawlerConfig {
    /// A profile by name: a configured one first, then a built-in one.
    pub fn profile_named(&self, name: &str) -> Option<ProfileConfig> {
        self.profile
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .or_else(|| builtin_profiles().into_iter().find(|p| p.name == name))
    }

    pub(crate) fn validate(&self) -> Result<(), crate::Invalid> {
        for (i, block) in self.lab_allow.iter().enumerate() {
            if let Err(e) = crate::parse_prefix(block) {
                return Err((
                    format!("crawler.lab_allow[{i}]"),
                    Some((format!("\"{block}\""), 1)),
                    e,
                ));
            }
        }
        for (i, name) in self.profiles.iter().enumerate() {
            if self.profile_named(name).is_none() {
                let known: Vec<String> = builtin_profiles()
                    .into_iter()
                    .chain(self.profile.iter().cloned())
                    .map(|p| p.name)
                    .collect();
                return Err((
                    format!("crawler.profiles[{i}]"),
                    Some((format!("\"{name}\""), 1)),
                    format!("unknown profile {name:?} (known: {})", known.join(", ")),
                ));
            }
        }
        for (i, p) in self.profile.iter().enumerate() {
            if let Some(proxy) = &p.proxy
                && !(proxy.starts_with("http://") || proxy.starts_with("https://"))
            {
                return Err((
                    format!("crawler.profile[{i}].proxy"),
                    Some((format!("\"{proxy}\""), 1)),
                    "a proxy URL starts with http:// or https://".into(),
                ));
            }
        }
        let positive = [
            ("max_hops", self.max_hops),
            ("max_nodes", self.max_nodes),
            ("per_host_concurrency", self.per_host_concurrency),
            ("concurrency", self.concurrency),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err((
                    format!("crawler.{key}"),
                    Some((key.into(), 1)),
                    "must be at least 1".into(),
                ));
            }
        }
        if !matches!(self.notices.language.as_str(), "ja" | "en") {
            return Err((
                "crawler.notices.language".into(),
                Some(("language".into(), 1)),
                "a notice is written in \"ja\" or \"en\"".into(),
            ));
        }
        if !(self.notices.rdap_base.starts_with("http://")
            || self.notices.rdap_base.starts_with("https://"))
        {
            return Err((
                "crawler.notices.rdap_base".into(),
                Some(("rdap_base".into(), 1)),
                "an http:// or https:// URL".into(),
            ));
        }
        Ok(())
    }
}
