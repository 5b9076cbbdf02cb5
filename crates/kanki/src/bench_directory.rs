//! `kanki bench directory`: the subscriber directory's targets (issue 3) on
//! synthetic sessions: index build and memory, `who_at` and `who_now`
//! rates on one core, and the rebuild from the store at start.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use kanki_config::Config;
use kanki_directory::synth::{self, Rng};
use kanki_directory::{Binding, BindingEvent, BindingOrigin, BindingRef, IndexBuilder, Subject};
use kanki_service::Kanki;
use kanki_service::directory::Compiled;
use kanki_store::ALL_BINDINGS;

use crate::bench::Report;

const DAYS: u32 = 90;

fn address_in(b: &BindingRef, rng: &mut Rng) -> IpAddr {
    match b.prefix {
        ipnet::IpNet::V4(n) => IpAddr::V4(n.network()),
        ipnet::IpNet::V6(n) => {
            let host = rng.next_u64() as u128 & ((1u128 << 72) - 1);
            IpAddr::V6((u128::from(n.network()) | host).into())
        }
    }
}

pub fn run(
    n: usize,
    store_rows: usize,
    work_dir: Option<PathBuf>,
    r: &Report,
) -> anyhow::Result<()> {
    let sessions = synth::sessions(n, DAYS, (n / 10).max(1) as u32, 5);
    let t = Instant::now();
    let mut b = IndexBuilder::with_capacity(n);
    for s in &sessions {
        b.add(s);
    }
    let now = synth::epoch().timestamp() + DAYS as i64 * 86400;
    let index = b.build(now, 99);
    r.line(
        &format!("directory index build ({n} sessions)"),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    r.line(
        "directory index memory per session",
        index.memory_bytes() as f64 / n as f64,
        "bytes",
        "<= 100",
    );

    // who_at: an address of a random session at a random moment of the
    // period (most fall inside some session of that prefix).
    let mut rng = Rng::new(17);
    let queries: Vec<(IpAddr, i64)> = (0..2_000_000)
        .map(|_| {
            let s = &sessions[rng.below(n as u64) as usize];
            let t = synth::epoch().timestamp() + rng.below(DAYS as u64 * 86400) as i64;
            (address_in(s, &mut rng), t)
        })
        .collect();
    let mut out = Vec::with_capacity(8);
    let mut found = 0usize;
    let t = Instant::now();
    for &(a, at) in &queries {
        out.clear();
        index.who_at(a, None, at, 120, &mut out);
        found += out.len();
    }
    let secs = t.elapsed().as_secs_f64();
    black_box(found);
    r.line(
        "who_at lookups (one core)",
        queries.len() as f64 / secs,
        "lookups/s",
        ">= 1000000",
    );

    // who_now: addresses of random sessions, now = the end of the period.
    let now_queries: Vec<IpAddr> = (0..4_000_000)
        .map(|_| address_in(&sessions[rng.below(n as u64) as usize], &mut rng))
        .collect();
    let mut held = 0usize;
    let t = Instant::now();
    for &a in &now_queries {
        held += usize::from(index.who_now(a, now).is_some());
    }
    let secs = t.elapsed().as_secs_f64();
    r.line(
        "who_now lookups (one core)",
        now_queries.len() as f64 / secs,
        "lookups/s",
        ">= 5000000",
    );
    r.line(
        "who_now answered with one holder",
        100.0 * held as f64 / now_queries.len() as f64,
        "%",
        "-",
    );
    drop(index);

    // The store: bindings written, then the index rebuilt from it as at start.
    let store_rows = store_rows.min(n);
    let tmp = tempfile::tempdir()?;
    let dir = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let data_dir = dir.join("directory-data");
    let kanki = Kanki::open(Config {
        data_dir: data_dir.clone(),
        ..Config::default()
    })?;
    // A kept work dir whose store already holds these (seeded, so the
    // same) sessions is reused: writing 10M rows takes minutes.
    let mut held = 0usize;
    kanki
        .store
        .directory()
        .scan_bindings(ALL_BINDINGS, &mut |_| held += 1)?;
    let kanki = if held == store_rows {
        eprintln!(
            "bench: reusing the {held} bindings in {}",
            data_dir.display()
        );
        kanki
    } else {
        drop(kanki);
        std::fs::remove_dir_all(&data_dir)?;
        let kanki = Kanki::open(Config {
            data_dir,
            ..Config::default()
        })?;
        write_sessions(&kanki, &sessions[..store_rows], r)?;
        kanki
    };
    // The store's share of the rebuild: reading and decoding every row.
    let t = Instant::now();
    let mut scanned = 0usize;
    kanki
        .store
        .directory()
        .scan_bindings(ALL_BINDINGS, &mut |_| scanned += 1)?;
    r.line(
        &format!("bindings scanned from the store ({scanned})"),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    let t = Instant::now();
    let c = Compiled::load(&kanki.store, Utc.timestamp_opt(now, 0).unwrap())?;
    let secs = t.elapsed().as_secs_f64();
    r.line(
        &format!("index rebuilt from the store ({} bindings)", c.bindings()),
        secs,
        "s",
        "<= 10 s at 10M",
    );
    Ok(())
}

/// Writes synthetic sessions to the store as static bindings, 100,000 to a
/// transaction, and reports the rate.
fn write_sessions(kanki: &Kanki, sessions: &[BindingRef], r: &Report) -> anyhow::Result<()> {
    let t = Instant::now();
    store_sessions(kanki, sessions)?;
    let secs = t.elapsed().as_secs_f64();
    r.line(
        &format!("bindings written to the store ({})", sessions.len()),
        sessions.len() as f64 / secs,
        "rows/s",
        "-",
    );
    Ok(())
}

/// Synthetic sessions as static bindings of logins `u{holder}`, 100,000 to
/// a transaction (the directory the directory and ingest benchmarks share).
pub(crate) fn store_sessions(kanki: &Kanki, sessions: &[BindingRef]) -> anyhow::Result<()> {
    for chunk in sessions.chunks(100_000) {
        let events: Vec<BindingEvent> = chunk
            .iter()
            .map(|s| {
                BindingEvent::Binding(Binding {
                    subject: Subject::login(&format!("u{}", s.holder)).expect("non-empty"),
                    prefix: s.prefix,
                    ports: None,
                    from: Utc.timestamp_opt(s.from, 0).unwrap(),
                    to: s.to.map(|t| Utc.timestamp_opt(t, 0).unwrap()),
                    origin: BindingOrigin::Static,
                    key: s.id.to_string(),
                    reporter: None,
                })
            })
            .collect();
        kanki
            .store
            .directory()
            .apply_bindings(BindingOrigin::Static, &events, Utc::now())?;
    }
    Ok(())
}

/// The RADIUS accounting server in front of a store on disk (SQLite, WAL,
/// synchronous=FULL as configured by default: every batch answered only
/// after it is committed), with kanki-radius's load generator on the same
/// machine keeping 512 requests outstanding.
pub fn radius(requests: u64, r: &Report) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let kanki = std::sync::Arc::new(Kanki::open(Config {
        data_dir: tmp.path().join("data"),
        ..Config::default()
    })?);
    let directory = std::sync::Arc::new(kanki_service::directory::Directory::load(
        &kanki.store,
        Utc::now(),
    )?);
    let sink = std::sync::Arc::new(crate::serve::StoreSink {
        kanki: kanki.clone(),
        directory,
    });
    let report = kanki_radius::load::bench(sink, requests, 512)?;
    let l = &report.load;
    r.line(
        "radius accounting, answered after commit",
        l.rate(),
        "requests/s",
        ">= 50000",
    );
    r.line(
        "radius latency p50",
        l.latency_p50.as_secs_f64() * 1000.0,
        "ms",
        "-",
    );
    r.line(
        "radius latency p99",
        l.latency_p99.as_secs_f64() * 1000.0,
        "ms",
        "-",
    );
    r.line("radius requests lost", l.lost as f64, "requests", "0");
    Ok(())
}
