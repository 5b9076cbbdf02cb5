//! Scheduled crawling in `kanki serve`: the seed lists every
//! `[crawler.schedule] every`, and every `recheck_every` the sites the
//! crawler listed: liveness of listed URLs (online / offline / unknown, with
//! dates) and re-crawls of compromised entrance sites until they are clean,
//! when they are delisted.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kanki_config::NoticeDelivery;
use kanki_crawler::notice::ContactFinder;
use kanki_crawler::{CrawlReport, Crawler, Verdict};
use kanki_indicators::{Kind, Status};
use kanki_service::Kanki;
use tokio::sync::Notify;

/// Starts the loops that are configured (none by default).
pub fn spawn(
    jobs: &kanki_jobs::Supervisor,
    kanki: Arc<Kanki>,
    list_changed: Arc<Notify>,
) -> anyhow::Result<()> {
    let s = &kanki.config.crawler.schedule;
    let n = &kanki.config.crawler.notices;
    if n.enabled && n.delivery == NoticeDelivery::Smtp {
        let mailer = kanki_notify::Mailer::new(&kanki.config.smtp).map_err(anyhow::Error::msg)?;
        let (k, mailer) = (kanki.clone(), Arc::new(mailer));
        jobs.spawn("crawl notices", move |stop| {
            send_loop(k.clone(), mailer.clone(), stop)
        });
    }
    if s.every.0.is_zero() && s.recheck_every.0.is_zero() {
        return Ok(());
    }
    let crawler = kanki.crawler()?;
    let finder = Arc::new(ContactFinder::default());
    if !s.every.0.is_zero() {
        let (k, c, f, l) = (
            kanki.clone(),
            crawler.clone(),
            finder.clone(),
            list_changed.clone(),
        );
        jobs.spawn("crawl schedule", move |stop| {
            seed_loop(k.clone(), c.clone(), f.clone(), l.clone(), stop)
        });
    }
    if !s.recheck_every.0.is_zero() {
        jobs.spawn("crawl recheck", move |stop| {
            recheck_loop(
                kanki.clone(),
                crawler.clone(),
                finder.clone(),
                list_changed.clone(),
                stop,
            )
        });
    }
    Ok(())
}

/// Stores a report, queues notices when enabled; returns the crawl id.
async fn record(
    kanki: &Arc<Kanki>,
    crawler: &Crawler,
    finder: &ContactFinder,
    report: CrawlReport,
    origin: &'static str,
) -> anyhow::Result<(i64, CrawlReport)> {
    let k = kanki.clone();
    let (rec, report) = tokio::task::spawn_blocking(move || {
        let rec = k.record_crawl(&report, origin);
        rec.map(|r| (r, report))
    })
    .await??;
    if kanki.config.crawler.notices.enabled {
        kanki
            .queue_notices(crawler, finder, &report, rec.crawl_id)
            .await?;
    }
    Ok((rec.crawl_id, report))
}

/// Sends the site notices that are due every `[notices] send_every`.
async fn send_loop(
    kanki: Arc<Kanki>,
    mailer: Arc<kanki_notify::Mailer>,
    mut stop: kanki_jobs::Stop,
) {
    let every = kanki
        .config
        .notices
        .send_every
        .0
        .max(Duration::from_secs(1));
    loop {
        let (k, m) = (kanki.clone(), mailer.clone());
        match tokio::task::spawn_blocking(move || k.send_site_notices(&m, Utc::now())).await {
            Ok(Ok(sum)) if sum != Default::default() => {
                tracing::info!(?sum, "site notices sent")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "site notices not sent"),
            Err(e) => tracing::warn!(error = %e, "the site-notice task failed"),
        }
        if !stop.sleep(every).await {
            return;
        }
    }
}

async fn seed_loop(
    kanki: Arc<Kanki>,
    crawler: Crawler,
    finder: Arc<ContactFinder>,
    list_changed: Arc<Notify>,
    mut stop: kanki_jobs::Stop,
) {
    let every = kanki.config.crawler.schedule.every.0;
    loop {
        let mut seeds = Vec::new();
        for f in &kanki.config.crawler.schedule.seeds {
            match crate::crawl_cli::read_seeds(f) {
                Ok(s) => seeds.extend(s),
                Err(e) => tracing::warn!(error = %e, "seed file skipped"),
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for seed in seeds {
            let c = crawler.clone();
            set.spawn(async move { (seed.clone(), c.crawl(&seed, &[]).await) });
        }
        let mut crawled = 0u64;
        while let Some(done) = set.join_next().await {
            let Ok((seed, report)) = done else { continue };
            match report {
                Ok(r) => match record(&kanki, &crawler, &finder, r, "schedule").await {
                    Ok((id, r)) => {
                        crawled += 1;
                        tracing::info!(seed, crawl = id, verdict = %r.verdict, "seed crawled");
                    }
                    Err(e) => tracing::warn!(seed, error = %e, "a crawl could not be stored"),
                },
                Err(e) => tracing::warn!(seed, error = %e, "seed not crawled"),
            }
        }
        if crawled > 0 {
            list_changed.notify_one();
        }
        if !stop.sleep(every).await {
            return;
        }
    }
}

async fn recheck_loop(
    kanki: Arc<Kanki>,
    crawler: Crawler,
    finder: Arc<ContactFinder>,
    list_changed: Arc<Notify>,
    mut stop: kanki_jobs::Stop,
) {
    let every = kanki.config.crawler.schedule.recheck_every.0;
    loop {
        let before = Utc::now()
            - chrono::Duration::from_std(every).unwrap_or(chrono::Duration::zero())
            + chrono::Duration::seconds(1);
        match kanki.store.crawl().sites_due(before, 1000) {
            Ok(sites) => {
                for site in sites {
                    if let Err(e) = recheck(&kanki, &crawler, &finder, &site).await {
                        tracing::warn!(url = site.url, error = %e, "re-check failed");
                    }
                }
                list_changed.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the sites to re-check"),
        }
        if !stop.sleep(every.max(Duration::from_secs(1))).await {
            return;
        }
    }
}

/// One site: an entrance site is crawled again (and delisted when clean),
/// a listed URL is fetched once for its liveness.
async fn recheck(
    kanki: &Arc<Kanki>,
    crawler: &Crawler,
    finder: &ContactFinder,
    site: &kanki_store::CrawlSite,
) -> anyhow::Result<()> {
    let now = Utc::now();
    if site.role == "entrance" {
        let report = crawler
            .crawl(&site.url, &[])
            .await
            .map_err(anyhow::Error::msg)?;
        let (id, report) = record(kanki, crawler, finder, report, "recheck").await?;
        // The seed node of each profile's tree: the worst verdict, and
        // online when any profile got an answer. Clean only when clean
        // under every profile (a cloaking site may show one of them nothing).
        let seeds: Vec<&kanki_crawler::Node> = report
            .trees
            .iter()
            .filter_map(|t| t.nodes.first())
            .collect();
        let verdict = if !seeds.is_empty() && seeds.iter().all(|n| n.verdict == Verdict::Clean) {
            Verdict::Clean
        } else {
            seeds
                .iter()
                .map(|n| n.verdict)
                .filter(|v| *v != Verdict::Clean)
                .min()
                .unwrap_or(Verdict::Unknown)
        };
        let liveness = seeds
            .iter()
            .map(|n| liveness_of(&n.fetch))
            .min_by_key(|l| match *l {
                "online" => 0,
                "unknown" => 1,
                _ => 2,
            })
            .unwrap_or("unknown");
        kanki.store.crawl().record_check(
            &site.url,
            liveness,
            Some(verdict.as_str()),
            Some(id),
            now,
        )?;
        if verdict == Verdict::Clean {
            delist(kanki, &site.url, id)?;
        }
        return Ok(());
    }
    let profile = crawler
        .default_profiles()
        .first()
        .cloned()
        .unwrap_or_default();
    let fetcher = crawler
        .fetcher(&profile)
        .ok_or_else(|| anyhow::anyhow!("no profile {profile}"))?;
    let url = url::Url::parse(&site.url)?;
    let liveness = liveness_of(&fetcher.fetch(&url, None).await);
    kanki
        .store
        .crawl()
        .record_check(&site.url, liveness, None, None, now)?;
    Ok(())
}

/// `online` (answered below 400), `offline` (an error status, a refused or
/// failed connection) or `unknown` (no answer within the time limit).
fn liveness_of(f: &kanki_crawler::Fetched) -> &'static str {
    match (f.status, &f.stopped) {
        (Some(s), _) if s < 400 => "online",
        (Some(_), _) => "offline",
        (None, Some(why)) if why.contains("time limit") => "unknown",
        (None, _) => "offline",
    }
}

/// A compromised site a re-crawl found clean leaves the list.
fn delist(kanki: &Kanki, url: &str, crawl_id: i64) -> anyhow::Result<()> {
    let norm = kanki_indicators::normalize_as(Kind::Url, url)?;
    if let Some(i) = kanki.store.find_indicator(&norm.value)?
        && i.status == Status::Active
    {
        kanki.store.set_status(
            i.id,
            Status::Delisted,
            &format!("re-crawl {crawl_id} found the site clean"),
            "crawler",
            Utc::now(),
        )?;
    }
    if let Some(h) = &norm.host {
        kanki.store.remove_host_mark(h, Utc::now())?;
    }
    tracing::info!(url, crawl = crawl_id, "entrance site clean: delisted");
    Ok(())
}
