//! `kanki crawl`: crawl seed URLs, print the trees and verdicts, store the
//! evidence and list what was found.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use kanki_config::{Config, NoticeDelivery};
use kanki_service::Kanki;

#[derive(Args, Debug)]
pub struct CrawlArgs {
    /// URLs to crawl.
    urls: Vec<String>,
    /// A file of seed URLs, one a line (`#` comments).
    #[arg(long, value_name = "FILE")]
    seeds: Option<PathBuf>,
    /// Crawl under this profile (repeat for several; their trees are
    /// compared for cloaking). Default: `[crawler] profiles`.
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    /// Print the reports as JSON (one object per seed, a JSON array).
    #[arg(long)]
    json: bool,
    /// Do not store the crawl or list its verdicts.
    #[arg(long)]
    dry_run: bool,
    /// Queue notices to the administrators of compromised entrance sites
    /// (also on when `[crawler.notices] enabled`).
    #[arg(long)]
    notify: bool,
}

/// Seed URLs of a seed file: one a line, blank lines and `#` comments skipped.
pub fn read_seeds(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read seed file {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

pub fn crawl(config: Config, a: CrawlArgs) -> anyhow::Result<ExitCode> {
    let mut seeds = a.urls.clone();
    if let Some(f) = &a.seeds {
        seeds.extend(read_seeds(f)?);
    }
    if seeds.is_empty() {
        bail!("nothing to crawl: give URLs or --seeds FILE");
    }
    let kanki = Kanki::open(config)?;
    let crawler = kanki.crawler()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let reports = rt.block_on(async {
        let jobs = seeds.iter().map(|s| {
            let c = crawler.clone();
            let profiles = a.profiles.clone();
            let s = s.clone();
            tokio::spawn(async move { (s.clone(), c.crawl(&s, &profiles).await) })
        });
        let mut out = Vec::new();
        for j in jobs.collect::<Vec<_>>() {
            out.push(j.await);
        }
        out
    });
    let notify = !a.dry_run && (a.notify || kanki.config.crawler.notices.enabled);
    let finder = kanki_crawler::notice::ContactFinder::default();
    let mut json = Vec::new();
    let mut failed = 0;
    for r in reports {
        let (seed, report) = r.context("a crawl task failed")?;
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kanki: {seed}: {e}");
                failed += 1;
                continue;
            }
        };
        let recorded = if a.dry_run {
            None
        } else {
            Some(kanki.record_crawl(&report, "cli")?)
        };
        let notices = match &recorded {
            Some(rec) if notify => {
                rt.block_on(kanki.queue_notices(&crawler, &finder, &report, rec.crawl_id))?
            }
            _ => Vec::new(),
        };
        if a.json {
            let mut v = serde_json::to_value(&report)?;
            if let Some(rec) = &recorded {
                v["recorded"] = serde_json::to_value(rec)?;
            }
            v["notices"] = serde_json::to_value(&notices)?;
            json.push(v);
        } else {
            print!("{}", kanki_crawler::render_text(&report));
            if let Some(rec) = recorded {
                println!("  stored as crawl {}", rec.crawl_id);
                for (url, category) in &rec.listed {
                    println!("  listed {url} ({category})");
                }
                for h in &rec.marked_hosts {
                    println!(
                        "  marked {h} compromised (its URLs listed, the host kept off the DNS list)"
                    );
                }
            }
            for n in &notices {
                println!(
                    "  notice {} for {} ({}): {} (to {})",
                    n.id,
                    n.site,
                    n.status,
                    n.path.display(),
                    n.to.as_deref().unwrap_or("nobody: no contact found")
                );
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    let n = &kanki.config.crawler.notices;
    if notify && n.delivery == NoticeDelivery::Smtp {
        let mailer = kanki_notify::Mailer::new(&kanki.config.smtp).map_err(anyhow::Error::msg)?;
        let sum = kanki.send_site_notices(&mailer, chrono::Utc::now())?;
        if !a.json {
            println!(
                "site notices: {} sent, {} to retry, {} failed, {} bounced",
                sum.sent, sum.retry_later, sum.failed, sum.bounced
            );
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `kanki crawls`: what the crawler stored.
#[derive(clap::Subcommand, Debug)]
pub enum CrawlsCommand {
    /// The most recent crawls.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One crawl: its trees, verdicts and cloaking signals (the evidence
    /// an indicator's `/api/v1/crawls/ID#PROFILE/NODE` link names).
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// URLs the crawler re-checks: liveness with dates, entrance sites
    /// until they are clean.
    Sites {
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Notices to the administrators of compromised sites and their delivery.
    Notices {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

fn date(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Rows as a JSON array, or one line of text each.
fn print_rows<T: serde::Serialize>(
    rows: &[T],
    json: bool,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        for r in rows {
            println!("{}", line(r));
        }
    }
    Ok(())
}

pub fn crawls(config: Config, c: CrawlsCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let store = kanki.store.crawl();
    match c {
        CrawlsCommand::List { limit, json } => {
            print_rows(&store.recent_crawls(limit)?, json, |c| {
                format!(
                    "{:>6}  {}  {:<12} {}{}  {}",
                    c.id,
                    date(Some(c.started_at)),
                    c.verdict,
                    c.origin,
                    if c.cloaking { " cloaking" } else { "" },
                    c.seed
                )
            })?;
        }
        CrawlsCommand::Show { id, json } => {
            let Some((_, report)) = store.get_crawl(id)? else {
                bail!("no crawl {id}");
            };
            if json {
                println!("{report}");
            } else {
                let report: kanki_crawler::CrawlReport = serde_json::from_str(&report)
                    .with_context(|| format!("crawl {id}: the stored report cannot be read"))?;
                print!("{}", kanki_crawler::render_text(&report));
            }
        }
        CrawlsCommand::Sites { limit, json } => {
            print_rows(&store.sites(limit)?, json, |s| {
                format!(
                    "{:<8} {:<8} {:<12} checked {}  online {}  clean {}  {}",
                    s.role,
                    s.liveness,
                    s.verdict.as_deref().unwrap_or("-"),
                    date(s.last_checked),
                    date(s.last_online),
                    date(s.clean_at),
                    s.url
                )
            })?;
        }
        CrawlsCommand::Notices { limit, json } => {
            print_rows(&store.site_notices(limit)?, json, |n| {
                format!(
                    "{:>5}  {}  {:<8} to {}  {}  ({})",
                    n.id,
                    date(Some(n.created_at)),
                    n.status,
                    n.recipient.as_deref().unwrap_or("-"),
                    n.site,
                    n.eml_path
                )
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
