//! The crawler's side of the store: crawl reports with their nodes as
//! evidence, and the sites the crawler keeps re-checking.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;

/// A finished crawl to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCrawl {
    pub seed: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub verdict: String,
    pub profiles: Vec<String>,
    pub cloaking: bool,
    /// `cli`, `schedule` or `recheck`.
    pub origin: String,
    /// The whole report, JSON.
    pub report: String,
    pub nodes: Vec<CrawlNodeRow>,
}

/// One node of a crawl tree, as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlNodeRow {
    pub profile: String,
    pub node: u32,
    pub parent: Option<u32>,
    pub edge: String,
    pub url: String,
    pub address: Option<String>,
    pub status: Option<u16>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub magic: Option<String>,
    pub verdict: String,
    pub reasons: Vec<String>,
}

/// A stored crawl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlRecord {
    pub id: i64,
    pub seed: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub verdict: String,
    pub profiles: Vec<String>,
    pub cloaking: bool,
    pub origin: String,
}

/// A URL the crawler keeps re-checking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlSite {
    pub url: String,
    /// `listed` (liveness re-checks) or `entrance` (re-crawled until clean).
    pub role: String,
    /// `online`, `offline` or `unknown`.
    pub liveness: String,
    pub verdict: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_checked: Option<DateTime<Utc>>,
    pub last_online: Option<DateTime<Utc>>,
    pub last_crawl_id: Option<i64>,
    pub notice_at: Option<DateTime<Utc>>,
    pub clean_at: Option<DateTime<Utc>>,
}

/// A notice to a compromised site's administrator, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSiteNotice {
    pub site: String,
    pub crawl_id: i64,
    pub language: String,
    pub recipient: Option<String>,
    /// JSON: the contacts found and what was tried.
    pub contacts: String,
    pub subject: String,
    pub body: String,
    pub eml_path: String,
    /// `outbox`, `held` (no recipient) or `queued` (for SMTP).
    pub status: String,
}

/// A stored notice to a site administrator and its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteNotice {
    pub id: i64,
    pub site: String,
    pub crawl_id: i64,
    pub language: String,
    pub recipient: Option<String>,
    pub contacts: serde_json::Value,
    pub subject: String,
    #[serde(skip)]
    pub body: String,
    pub eml_path: String,
    pub created_at: DateTime<Utc>,
    /// `outbox`, `held`, `queued`, `sent`, `bounced` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What a storage backend provides for the crawler.
pub trait CrawlBackend: Send + Sync {
    /// Stores a crawl and its nodes atomically; returns its id.
    fn save_crawl(&self, crawl: &NewCrawl) -> Result<i64>;
    fn get_crawl(&self, id: i64) -> Result<Option<(CrawlRecord, String)>>;
    /// The most recent crawls, newest first.
    fn recent_crawls(&self, limit: u32) -> Result<Vec<CrawlRecord>>;
    /// Nodes of every crawl that reached this URL, newest first.
    fn nodes_for_url(&self, url: &str, limit: u32) -> Result<Vec<(i64, CrawlNodeRow)>>;

    /// Adds a site to re-check, or updates its role and verdict.
    fn track_site(
        &self,
        url: &str,
        role: &str,
        verdict: &str,
        crawl_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records a check: liveness, verdict, crawl; a clean entrance site gets `clean_at`.
    fn record_check(
        &self,
        url: &str,
        liveness: &str,
        verdict: Option<&str>,
        crawl_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Sites not checked since `before`, oldest check first, that are still
    /// tracked (entrance sites found clean are not).
    fn sites_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<CrawlSite>>;
    fn site(&self, url: &str) -> Result<Option<CrawlSite>>;
    fn sites(&self, limit: u32) -> Result<Vec<CrawlSite>>;

    /// Stores a rendered notice and marks its site notified; returns its id.
    fn add_site_notice(&self, n: &NewSiteNotice, now: DateTime<Utc>) -> Result<i64>;
    /// Notices queued for SMTP whose next attempt is due.
    fn site_notices_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SiteNotice>>;
    /// Records one delivery attempt: the new status, its error, the next try.
    fn set_site_notice_delivery(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
        next_attempt_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// The most recent notices, newest first.
    fn site_notices(&self, limit: u32) -> Result<Vec<SiteNotice>>;
}
