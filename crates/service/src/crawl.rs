//! Crawls as kanki records them: the report stored as evidence, verdicts
//! listed as indicators of source `crawler` with links to that evidence,
//! compromised entrance sites marked and tracked until they are clean.

use std::collections::BTreeMap;

use chrono::Utc;
use kanki_config::NoticeDelivery;
use kanki_crawler::{CrawlReport, Crawler, Node, Verdict};
use kanki_feeds::{FeedRecord, Row};
use kanki_indicators::{Category, Kind};
use kanki_notify::{Attempt, Mail, Mailer};
use kanki_store::{CrawlNodeRow, HostMark, NewCrawl, NewEvidence, NewSiteNotice, SourceSpec};
use serde::Serialize;

use crate::{Kanki, ServiceError};

/// The indicator source of the crawler's verdicts.
pub const CRAWLER_SOURCE: &str = "crawler";

/// What recording a crawl did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordedCrawl {
    pub crawl_id: i64,
    /// URL indicators added or refreshed, with their category.
    pub listed: Vec<(String, String)>,
    /// Hosts marked as compromised entrance sites (kept off the DNS list).
    pub marked_hosts: Vec<String>,
    /// Bodies written to `data_dir/evidence/`.
    pub bodies_kept: u64,
}

fn category_of(v: Verdict) -> Option<Category> {
    match v {
        Verdict::Distribution => Some(Category::MalwareDistribution),
        Verdict::Exploit => Some(Category::Exploit),
        Verdict::Redirector => Some(Category::Redirector),
        Verdict::Entrance => Some(Category::Entrance),
        Verdict::Clean | Verdict::Unknown => None,
    }
}

impl Kanki {
    /// The crawler as the configuration describes it.
    pub fn crawler(&self) -> Result<Crawler, ServiceError> {
        Crawler::new(&self.config.crawler).map_err(ServiceError::Invalid)
    }

    /// Stores a crawl report and lists its verdicts.
    pub fn record_crawl(
        &self,
        report: &CrawlReport,
        origin: &str,
    ) -> Result<RecordedCrawl, ServiceError> {
        let now = Utc::now();
        let mut nodes = Vec::new();
        for t in &report.trees {
            for n in &t.nodes {
                nodes.push(CrawlNodeRow {
                    profile: t.profile.clone(),
                    node: n.id as u32,
                    parent: n.parent.map(|p| p as u32),
                    edge: n.edge.as_str().into(),
                    url: n.url.clone(),
                    address: n.fetch.address.clone(),
                    status: n.fetch.status,
                    sha256: n.triage.as_ref().map(|t| t.sha256.clone()),
                    size: n.triage.as_ref().map(|t| t.size),
                    magic: n.triage.as_ref().map(|t| t.magic.as_str().into()),
                    verdict: n.verdict.as_str().into(),
                    reasons: n.reasons.clone(),
                });
            }
        }
        let started_at = report
            .trees
            .iter()
            .map(|t| t.started_at)
            .min()
            .unwrap_or(now);
        let crawl_id = self.store.crawl().save_crawl(&NewCrawl {
            seed: report.seed.clone(),
            started_at,
            finished_at: now,
            verdict: report.verdict.as_str().into(),
            profiles: report.trees.iter().map(|t| t.profile.clone()).collect(),
            cloaking: !report.cloaking.is_empty(),
            origin: origin.into(),
            report: serde_json::to_string(report)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?,
            nodes,
        })?;
        let mut out = RecordedCrawl {
            crawl_id,
            ..Default::default()
        };
        // The worst verdict of each URL over all profiles, with its node.
        let mut judged: BTreeMap<&str, (&str, &Node)> = BTreeMap::new();
        for t in &report.trees {
            for n in t.nodes.iter().filter(|n| n.verdict.is_malicious()) {
                let e = judged.entry(n.url.as_str()).or_insert((&t.profile, n));
                if n.verdict < e.1.verdict {
                    *e = (&t.profile, n);
                }
            }
        }
        if self.config.crawler.keep_bodies {
            let dir = self.config.data_dir.join("evidence");
            for (_, n) in judged.values() {
                if let Some(t) = &n.triage
                    && !n.fetch.body.is_empty()
                {
                    let path = dir.join(&t.sha256);
                    if !path.exists() {
                        std::fs::create_dir_all(&dir)
                            .map_err(crate::io_err(format!("cannot create {}", dir.display())))?;
                        std::fs::write(&path, &n.fetch.body)
                            .map_err(crate::io_err(format!("cannot write {}", path.display())))?;
                        out.bodies_kept += 1;
                    }
                }
            }
        }
        for (url, (_, n)) in &judged {
            let role = if n.verdict == Verdict::Entrance {
                "entrance"
            } else {
                "listed"
            };
            self.store
                .crawl()
                .track_site(url, role, n.verdict.as_str(), Some(crawl_id), now)?;
        }
        if !self.config.crawler.list_verdicts || judged.is_empty() {
            return Ok(out);
        }
        let mut rows = Vec::new();
        for (i, (url, (_, n))) in judged.iter().enumerate() {
            let Some(category) = category_of(n.verdict) else {
                continue;
            };
            let Ok(norm) = kanki_indicators::normalize_as(Kind::Url, url) else {
                continue;
            };
            let mut r = FeedRecord::new(i as u64 + 1, norm);
            r.category = Some(category);
            r.source_id = Some(format!("crawl-{crawl_id}"));
            r.reference_url = Some(format!("/api/v1/crawls/{crawl_id}"));
            r.online = Some(true);
            r.tags = vec![format!("verdict:{}", n.verdict)];
            rows.push(Ok(Row::Record(r)));
        }
        let spec = SourceSpec {
            name: CRAWLER_SOURCE.into(),
            default_category: Category::MalwareDistribution,
            default_confidence: self.config.indicators.default_confidence.max(80),
            default_tlp: self.config.indicators.default_tlp,
            ttl: Some(self.config.indicators.default_ttl.0),
            list_url_hosts: true,
        };
        self.importer().run(
            &spec,
            "crawl",
            &format!("crawl {crawl_id}"),
            rows.into_iter(),
            now,
            &mut |_| {},
        )?;
        for (url, (profile, n)) in &judged {
            let Ok(norm) = kanki_indicators::normalize_as(Kind::Url, url) else {
                continue;
            };
            let Some(ind) = self.store.find_indicator(&norm.value)? else {
                continue;
            };
            self.store.add_evidence(
                ind.id,
                &NewEvidence {
                    kind: "crawl".into(),
                    uri: format!("/api/v1/crawls/{crawl_id}#{profile}/{}", n.id),
                    sha256: n.triage.as_ref().map(|t| t.sha256.clone()),
                    note: Some(format!("{}: {}", n.verdict, n.reasons.join("; "))),
                },
                now,
            )?;
            out.listed
                .push((norm.value.clone(), ind.category.to_string()));
            // A compromised real site: its URL is listed, the host is not.
            if n.verdict == Verdict::Entrance
                && let Some(host) = &norm.host
            {
                self.store.set_host_mark(&HostMark {
                    host: host.clone(),
                    reason: format!("compromised entrance site (crawl {crawl_id})"),
                    origin: CRAWLER_SOURCE.into(),
                    created_at: now,
                })?;
                out.marked_hosts.push(host.clone());
            }
        }
        Ok(out)
    }
}

/// A notice rendered for a compromised site, stored and written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedNotice {
    pub id: i64,
    pub site: String,
    pub path: std::path::PathBuf,
    pub to: Option<String>,
    /// `outbox`, `held` (no recipient) or `queued` (for SMTP).
    pub status: String,
    pub contacts: kanki_crawler::notice::Contacts,
}

/// What one round of sending site notices did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SentNotices {
    pub sent: u64,
    pub retry_later: u64,
    pub failed: u64,
    pub bounced: u64,
}

impl Kanki {
    /// The outbox directory (`[crawler.notices] outbox`, relative to `data_dir`).
    pub fn outbox(&self) -> std::path::PathBuf {
        let o = &self.config.crawler.notices.outbox;
        if o.is_absolute() {
            o.clone()
        } else {
            self.config.data_dir.join(o)
        }
    }

    /// Renders a notice for every compromised entrance site of the crawl
    /// that has not had one, writes it to the outbox as an `.eml` file and
    /// stores it; with `delivery = "smtp"` it is queued for
    /// [`Kanki::send_site_notices`].
    pub async fn queue_notices(
        &self,
        crawler: &Crawler,
        finder: &kanki_crawler::notice::ContactFinder,
        report: &CrawlReport,
        crawl_id: i64,
    ) -> Result<Vec<QueuedNotice>, ServiceError> {
        let cfg = &self.config.crawler.notices;
        let mut out = Vec::new();
        let mut done = std::collections::HashSet::new();
        for t in &report.trees {
            let Some(fetcher) = crawler.fetcher(&t.profile) else {
                continue;
            };
            for n in t.nodes.iter().filter(|n| n.verdict == Verdict::Entrance) {
                if !done.insert(n.url.clone()) {
                    continue;
                }
                if let Some(site) = self.store.crawl().site(&n.url)?
                    && site.notice_at.is_some()
                {
                    continue;
                }
                let contacts = finder
                    .find(
                        &fetcher,
                        &n.url,
                        n.fetch.address.as_deref(),
                        &cfg.rdap_base,
                        &cfg.fallback_to,
                    )
                    .await;
                let now = Utc::now();
                let to = contacts.recipient().map(str::to_string);
                let notice = kanki_crawler::notice::render(
                    &cfg.language,
                    &n.url,
                    t,
                    n.id,
                    crawl_id,
                    &contacts,
                );
                let eml = kanki_crawler::notice::to_eml(
                    &notice,
                    &self.config.smtp.from,
                    to.as_deref(),
                    &n.url,
                    crawl_id,
                    now,
                );
                let path = self.write_outbox(&n.url, crawl_id, &eml, now)?;
                let status = match (&to, cfg.delivery) {
                    (None, _) => "held",
                    (Some(_), NoticeDelivery::Smtp) => "queued",
                    (Some(_), NoticeDelivery::Outbox) => "outbox",
                };
                let id = self.store.crawl().add_site_notice(
                    &NewSiteNotice {
                        site: n.url.clone(),
                        crawl_id,
                        language: cfg.language.clone(),
                        recipient: to.clone(),
                        contacts: serde_json::to_string(&contacts)
                            .map_err(|e| ServiceError::Invalid(e.to_string()))?,
                        subject: notice.subject,
                        body: notice.body,
                        eml_path: path.display().to_string(),
                        status: status.into(),
                    },
                    now,
                )?;
                out.push(QueuedNotice {
                    id,
                    site: n.url.clone(),
                    path,
                    to,
                    status: status.into(),
                    contacts,
                });
            }
        }
        Ok(out)
    }

    /// Writes a message whole, then renames it into the outbox: a mailer
    /// picking up the outbox never sees half a message.
    fn write_outbox(
        &self,
        site: &str,
        crawl_id: i64,
        eml: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<std::path::PathBuf, ServiceError> {
        let dir = self.outbox();
        std::fs::create_dir_all(&dir)
            .map_err(crate::io_err(format!("cannot create {}", dir.display())))?;
        let host = url::Url::parse(site)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-");
        let path = dir.join(format!(
            "{}-crawl{crawl_id}-{host}.eml",
            now.format("%Y%m%dT%H%M%S")
        ));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, eml)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(crate::io_err(format!("cannot write {}", path.display())))?;
        Ok(path)
    }

    /// Sends the site notices queued for SMTP whose attempt is due, retried
    /// as `[notices]` says (`max_attempts`, `retry_backoff`).
    pub fn send_site_notices(
        &self,
        mailer: &Mailer,
        now: chrono::DateTime<Utc>,
    ) -> Result<SentNotices, ServiceError> {
        let policy = &self.config.notices;
        let mut sum = SentNotices::default();
        for n in self.store.crawl().site_notices_due(now, 1000)? {
            let Some(to) = &n.recipient else { continue };
            let mail = Mail {
                to,
                subject: &n.subject,
                body: &n.body,
                reference: None,
            };
            let (status, error, next) = match mailer.attempt(
                &mail,
                n.attempts,
                policy.max_attempts,
                policy.retry_backoff.0,
            ) {
                Attempt::Sent => {
                    sum.sent += 1;
                    ("sent", None, None)
                }
                Attempt::Bounced(e) => {
                    sum.bounced += 1;
                    ("bounced", Some(e), None)
                }
                Attempt::Failed(e) => {
                    sum.failed += 1;
                    ("failed", Some(e), None)
                }
                Attempt::Retry { error, wait } => {
                    sum.retry_later += 1;
                    let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    ("queued", Some(error), Some(next))
                }
            };
            if let Some(e) = &error {
                tracing::warn!(site = n.site, to, error = %e, status, "site notice not delivered");
            }
            self.store.crawl().set_site_notice_delivery(
                n.id,
                status,
                error.as_deref(),
                next,
                now,
            )?;
        }
        Ok(sum)
    }
}
