//! The crawler's tables (migration 0004).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteBackend, from_ts, ts};
use crate::{
    CrawlBackend, CrawlNodeRow, CrawlRecord, CrawlSite, NewCrawl, NewSiteNotice, Result, SiteNotice,
};

const CRAWL_COLUMNS: &str =
    "id, seed, started_at, finished_at, verdict, profiles, cloaking, origin";

fn crawl_of(r: &Row<'_>) -> rusqlite::Result<CrawlRecord> {
    let profiles: String = r.get(5)?;
    Ok(CrawlRecord {
        id: r.get(0)?,
        seed: r.get(1)?,
        started_at: from_ts(r.get(2)?),
        finished_at: from_ts(r.get(3)?),
        verdict: r.get(4)?,
        profiles: serde_json::from_str(&profiles).unwrap_or_default(),
        cloaking: r.get::<_, i64>(6)? != 0,
        origin: r.get(7)?,
    })
}

const SITE_COLUMNS: &str = "url, role, liveness, verdict, first_seen, last_checked, last_online, last_crawl_id, notice_at, clean_at";

fn site_of(r: &Row<'_>) -> rusqlite::Result<CrawlSite> {
    let opt = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(from_ts))
    };
    Ok(CrawlSite {
        url: r.get(0)?,
        role: r.get(1)?,
        liveness: r.get(2)?,
        verdict: r.get(3)?,
        first_seen: from_ts(r.get(4)?),
        last_checked: opt(5)?,
        last_online: opt(6)?,
        last_crawl_id: r.get(7)?,
        notice_at: opt(8)?,
        clean_at: opt(9)?,
    })
}

const NOTICE_COLUMNS: &str = "id, site, crawl_id, language, recipient, contacts, subject, body, eml_path, created_at, status, attempts, next_attempt_at, sent_at, last_error";

fn notice_of(r: &Row<'_>) -> rusqlite::Result<SiteNotice> {
    let contacts: String = r.get(5)?;
    Ok(SiteNotice {
        id: r.get(0)?,
        site: r.get(1)?,
        crawl_id: r.get(2)?,
        language: r.get(3)?,
        recipient: r.get(4)?,
        contacts: serde_json::from_str(&contacts).unwrap_or_default(),
        subject: r.get(6)?,
        body: r.get(7)?,
        eml_path: r.get(8)?,
        created_at: from_ts(r.get(9)?),
        status: r.get(10)?,
        attempts: r.get(11)?,
        next_attempt_at: r.get::<_, Option<i64>>(12)?.map(from_ts),
        sent_at: r.get::<_, Option<i64>>(13)?.map(from_ts),
        last_error: r.get(14)?,
    })
}

impl CrawlBackend for SqliteBackend {
    fn save_crawl(&self, c: &NewCrawl) -> Result<i64> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO crawls (seed, started_at, finished_at, verdict, profiles, cloaking, origin, report)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.seed,
                    ts(c.started_at),
                    ts(c.finished_at),
                    c.verdict,
                    serde_json::to_string(&c.profiles).unwrap_or_default(),
                    c.cloaking as i64,
                    c.origin,
                    c.report
                ],
            )?;
            let id = tx.last_insert_rowid();
            {
                let mut stmt = tx.prepare(
                    "INSERT OR REPLACE INTO crawl_nodes (crawl_id, profile, node, parent, edge, url, address, status, sha256, size, magic, verdict, reasons)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?;
                for n in &c.nodes {
                    stmt.execute(params![
                        id,
                        n.profile,
                        n.node,
                        n.parent,
                        n.edge,
                        n.url,
                        n.address,
                        n.status,
                        n.sha256,
                        n.size.map(|s| s as i64),
                        n.magic,
                        n.verdict,
                        serde_json::to_string(&n.reasons).unwrap_or_default()
                    ])?;
                }
            }
            tx.commit()?;
            Ok(id)
        })
    }

    fn get_crawl(&self, id: i64) -> Result<Option<(CrawlRecord, String)>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {CRAWL_COLUMNS}, report FROM crawls WHERE id = ?1"),
                [id],
                |r| Ok((crawl_of(r)?, r.get::<_, String>(8)?)),
            )
            .optional()?)
        })
    }

    fn recent_crawls(&self, limit: u32) -> Result<Vec<CrawlRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CRAWL_COLUMNS} FROM crawls ORDER BY id DESC LIMIT ?1"
            ))?;
            Ok(stmt
                .query_map([limit], crawl_of)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn nodes_for_url(&self, url: &str, limit: u32) -> Result<Vec<(i64, CrawlNodeRow)>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT crawl_id, profile, node, parent, edge, url, address, status, sha256, size, magic, verdict, reasons
                 FROM crawl_nodes WHERE url = ?1 ORDER BY crawl_id DESC LIMIT ?2",
            )?;
            Ok(stmt
                .query_map(params![url, limit], |r| {
                    let reasons: String = r.get(12)?;
                    Ok((
                        r.get(0)?,
                        CrawlNodeRow {
                            profile: r.get(1)?,
                            node: r.get(2)?,
                            parent: r.get(3)?,
                            edge: r.get(4)?,
                            url: r.get(5)?,
                            address: r.get(6)?,
                            status: r.get(7)?,
                            sha256: r.get(8)?,
                            size: r.get::<_, Option<i64>>(9)?.map(|s| s as u64),
                            magic: r.get(10)?,
                            verdict: r.get(11)?,
                            reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn track_site(
        &self,
        url: &str,
        role: &str,
        verdict: &str,
        crawl_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write(|c| {
            // An entrance site found compromised again is tracked anew.
            c.execute(
                "INSERT INTO crawl_sites (url, role, liveness, verdict, first_seen, last_checked, last_online, last_crawl_id)
                 VALUES (?1, ?2, 'online', ?3, ?4, ?4, ?4, ?5)
                 ON CONFLICT(url) DO UPDATE SET role = excluded.role, verdict = excluded.verdict,
                   liveness = 'online', last_checked = excluded.last_checked,
                   last_online = excluded.last_online, last_crawl_id = excluded.last_crawl_id,
                   clean_at = NULL",
                params![url, role, verdict, ts(now), crawl_id],
            )?;
            Ok(())
        })
    }

    fn record_check(
        &self,
        url: &str,
        liveness: &str,
        verdict: Option<&str>,
        crawl_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE crawl_sites SET liveness = ?2, verdict = coalesce(?3, verdict), last_checked = ?4,
                   last_online = CASE WHEN ?2 = 'online' THEN ?4 ELSE last_online END,
                   last_crawl_id = coalesce(?5, last_crawl_id),
                   clean_at = CASE WHEN role = 'entrance' AND ?3 = 'clean' THEN ?4 ELSE clean_at END
                 WHERE url = ?1",
                params![url, liveness, verdict, ts(now), crawl_id],
            )?;
            Ok(())
        })
    }

    fn sites_due(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<CrawlSite>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SITE_COLUMNS} FROM crawl_sites
                 WHERE clean_at IS NULL AND coalesce(last_checked, 0) < ?1
                 ORDER BY coalesce(last_checked, 0) LIMIT ?2"
            ))?;
            Ok(stmt
                .query_map(params![ts(before), limit], site_of)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn site(&self, url: &str) -> Result<Option<CrawlSite>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {SITE_COLUMNS} FROM crawl_sites WHERE url = ?1"),
                [url],
                site_of,
            )
            .optional()?)
        })
    }

    fn sites(&self, limit: u32) -> Result<Vec<CrawlSite>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SITE_COLUMNS} FROM crawl_sites ORDER BY url LIMIT ?1"
            ))?;
            Ok(stmt
                .query_map([limit], site_of)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn add_site_notice(&self, n: &NewSiteNotice, now: DateTime<Utc>) -> Result<i64> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO crawl_notices (site, crawl_id, language, recipient, contacts, subject, body, eml_path, created_at, status, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, CASE WHEN ?10 = 'queued' THEN ?9 END)",
                params![
                    n.site,
                    n.crawl_id,
                    n.language,
                    n.recipient,
                    n.contacts,
                    n.subject,
                    n.body,
                    n.eml_path,
                    ts(now),
                    n.status
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE crawl_sites SET notice_at = ?2 WHERE url = ?1",
                params![n.site, ts(now)],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn site_notices_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SiteNotice>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {NOTICE_COLUMNS} FROM crawl_notices
                 WHERE status = 'queued' AND coalesce(next_attempt_at, 0) <= ?1
                 ORDER BY id LIMIT ?2"
            ))?;
            Ok(stmt
                .query_map(params![ts(now), limit], notice_of)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn set_site_notice_delivery(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
        next_attempt_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE crawl_notices SET status = ?2, attempts = attempts + 1, last_error = ?3,
                   next_attempt_at = ?4, sent_at = CASE WHEN ?2 = 'sent' THEN ?5 ELSE sent_at END
                 WHERE id = ?1",
                params![id, status, error, next_attempt_at.map(ts), ts(now)],
            )?;
            Ok(())
        })
    }

    fn site_notices(&self, limit: u32) -> Result<Vec<SiteNotice>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {NOTICE_COLUMNS} FROM crawl_notices ORDER BY id DESC LIMIT ?1"
            ))?;
            Ok(stmt
                .query_map([limit], notice_of)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }
}
