//! `kanki bench crawl`: the crawler against the lab with 20 ms added to
//! every response (pages per second, peak RSS), and a YARA scan of a 10 MB
//! body with 100 rules.

use std::time::{Duration, Instant};

use kanki_config::CrawlerConfig;
use kanki_crawler::Crawler;
use kanki_crawler::lab::LabServer;

use crate::bench::{Report, rss_bytes};

/// Names the seeds are spread over (all mapped to the lab's 127.0.0.1), so
/// that the per-host limit applies as it would across real sites.
const HOSTS: usize = 32;

pub fn run(seeds: usize, r: &Report) -> anyhow::Result<()> {
    pages(seeds, r)?;
    yara(r)?;
    Ok(())
}

fn pages(seeds: usize, r: &Report) -> anyhow::Result<()> {
    let lab = LabServer::start(Duration::from_millis(20))?;
    let port = lab.addr.port();
    let mut config = CrawlerConfig {
        lab_allow: vec!["127.0.0.0/8".into()],
        ..Default::default()
    };
    for h in 0..HOSTS {
        config.hosts.insert(
            format!("h{h}.lab"),
            "127.0.0.1".parse().expect("an address"),
        );
    }
    let crawler = Crawler::new(&config).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rss_before = rss_bytes("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let (nodes, failed) = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..seeds {
            let c = crawler.clone();
            let url = format!("http://h{}.lab:{port}/bench/{i}", i % HOSTS);
            set.spawn(async move { c.crawl(&url, &[]).await });
        }
        let (mut nodes, mut failed) = (0usize, 0usize);
        while let Some(done) = set.join_next().await {
            match done {
                Ok(Ok(report)) => {
                    for t in &report.trees {
                        nodes += t
                            .nodes
                            .iter()
                            .filter(|n| n.fetch.status == Some(200))
                            .count();
                        failed += t
                            .nodes
                            .iter()
                            .filter(|n| n.fetch.status != Some(200))
                            .count();
                    }
                }
                _ => failed += 1,
            }
        }
        (nodes, failed)
    });
    let secs = t.elapsed().as_secs_f64();
    r.line(
        &format!("crawl the lab, 20 ms latency ({nodes} pages, {failed} failed)"),
        nodes as f64 / secs,
        "pages/s",
        ">= 200",
    );
    if let Some(hwm) = rss_bytes("VmHWM:") {
        r.line(
            "peak RSS of the crawl (lab in the same process)",
            hwm as f64 / 1048576.0,
            "MiB",
            "<= 300",
        );
    }
    let _ = rss_before;
    Ok(())
}

/// 100 rules of the usual kinds: text strings, hex patterns with
/// wildcards, a few regular expressions, and conditions over them.
#[cfg(feature = "yara")]
fn hundred_rules() -> String {
    let mut s = String::new();
    for i in 0..100 {
        let extra = if i % 10 == 0 {
            format!("$re = /evil{i:03}[a-z0-9]{{4,12}}\\.example/")
        } else {
            format!("$w = \"payload-{i}\" wide")
        };
        s.push_str(&format!(
            "rule bench_{i} {{ strings: $a = \"marker-{i}-kanki\" nocase $h = {{ 4D 5A ?? ?? {i:02X} 50 45 [2-8] 00 {:02X} }} {extra} condition: any of them }}\n",
            (i * 7) % 256
        ));
    }
    s
}

/// A 10 MB body like a crawled page: markup, script and base64.
#[cfg(feature = "yara")]
fn ten_megabytes() -> Vec<u8> {
    let mut body = Vec::with_capacity(10 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while body.len() < 10 << 20 {
        body.extend_from_slice(b"<div class=\"post\"><script>var s='");
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(alphabet[(x % 64) as usize]);
        }
        body.extend_from_slice(b"';</script><p>lorem ipsum dolor sit amet</p></div>\n");
    }
    body.truncate(10 << 20);
    body
}

#[cfg(not(feature = "yara"))]
fn yara(_: &Report) -> anyhow::Result<()> {
    eprintln!("YARA scan: not measured (this kanki was built without the `yara` feature)");
    Ok(())
}

#[cfg(feature = "yara")]
fn yara(r: &Report) -> anyhow::Result<()> {
    let text = hundred_rules();
    let t = Instant::now();
    let rules = kanki_crawler::yara::Rules::compile(std::iter::once((
        std::path::Path::new("bench.yar"),
        text.as_str(),
    )))
    .map_err(anyhow::Error::msg)?;
    let compile = t.elapsed();
    let body = ten_megabytes();
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let hits = rules
            .scan(&body, Duration::from_secs(60))
            .map_err(anyhow::Error::msg)?;
        times.push(t.elapsed());
        std::hint::black_box(hits);
    }
    times.sort();
    r.line(
        &format!("compile {} YARA rules", rules.len()),
        compile.as_secs_f64() * 1000.0,
        "ms",
        "-",
    );
    r.line(
        "YARA scan of a 10 MB body, 100 rules (median of 7)",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        "ms",
        "<= 50",
    );
    Ok(())
}
