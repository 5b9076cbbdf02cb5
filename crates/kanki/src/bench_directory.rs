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
use kanki_service::directory::{Compiled, Directory};
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

/// `who_at` questions: an address of a random session at a random moment
/// of the period (most fall inside some session of that prefix).
fn at_queries(sessions: &[BindingRef], rng: &mut Rng) -> Vec<(IpAddr, i64)> {
    (0..2_000_000)
        .map(|_| {
            let s = &sessions[rng.below(sessions.len() as u64) as usize];
            let t = synth::epoch().timestamp() + rng.below(DAYS as u64 * 86400) as i64;
            (address_in(s, rng), t)
        })
        .collect()
}

/// `who_now` questions: addresses of random sessions (asked at the end of
/// the period).
fn now_queries(sessions: &[BindingRef], rng: &mut Rng) -> Vec<IpAddr> {
    (0..4_000_000)
        .map(|_| address_in(&sessions[rng.below(sessions.len() as u64) as usize], rng))
        .collect()
}

/// Asks `lookup` every question on this thread; the questions answered
/// per second. `lookup` returns what it found, kept from the optimizer.
fn rate_of<Q: Copy>(questions: &[Q], mut lookup: impl FnMut(Q) -> usize) -> f64 {
    let t = Instant::now();
    let found: usize = questions.iter().map(|&q| lookup(q)).sum();
    black_box(found);
    questions.len() as f64 / t.elapsed().as_secs_f64()
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

    let mut rng = Rng::new(17);
    let queries = at_queries(&sessions, &mut rng);
    let mut out = Vec::with_capacity(8);
    r.line(
        "who_at lookups (one core)",
        rate_of(&queries, |(a, at)| {
            out.clear();
            index.who_at(a, None, at, 120, &mut out);
            out.len()
        }),
        "lookups/s",
        ">= 1000000",
    );
    let now_queries = now_queries(&sessions, &mut rng);
    r.line(
        "who_now lookups (one core)",
        rate_of(&now_queries, |a| {
            usize::from(index.who_now(a, now).is_some())
        }),
        "lookups/s",
        ">= 5000000",
    );
    let held = now_queries
        .iter()
        .filter(|&&a| index.who_now(a, now).is_some())
        .count();
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
    drop(c);
    live(&kanki, &sessions[..store_rows], now, r)?;
    Ok(())
}

/// The directory live: lookups with changes laid over the index, `kanki
/// who` answered from the store, the time from a binding change stored to
/// the DNS front's answer changing under RADIUS load, and a Kea lease file
/// followed at 5,000 leases/s.
fn live(kanki: &Kanki, sessions: &[BindingRef], now: i64, r: &Report) -> anyhow::Result<()> {
    use kanki_service::directory::WhoQuery;
    let n = sessions.len();
    if n == 0 {
        return Ok(());
    }
    let at = Utc.timestamp_opt(now, 0).unwrap();
    let directory = std::sync::Arc::new(Directory::load(&kanki.store, at)?);
    // Changes laid over the index: new holders of random prefixes.
    let mut rng = Rng::new(23);
    // As many as a busy feed changes between rebuilds: 50,000 at 10M.
    let changes: Vec<BindingEvent> = (0..(n / 200).clamp(1, 50_000))
        .map(|i| {
            let s = &sessions[rng.below(n as u64) as usize];
            BindingEvent::Binding(Binding {
                subject: Subject::login(&format!("u{}", s.holder + 1)).expect("non-empty"),
                prefix: s.prefix,
                ports: None,
                from: Utc.timestamp_opt(now - 60, 0).unwrap(),
                to: None,
                origin: BindingOrigin::Static,
                key: format!("live-{i}"),
                reporter: None,
            })
        })
        .collect();
    kanki
        .store
        .directory()
        .apply_bindings(BindingOrigin::Static, &changes, Utc::now())?;
    let t = Instant::now();
    let laid = directory.follow_changes(&kanki.store, at)?;
    r.line(
        &format!("changes laid over the index ({laid})"),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    let c = directory.compiled();
    let queries = at_queries(sessions, &mut rng);
    let mut out = Vec::with_capacity(8);
    r.line(
        "who_at lookups, changes laid over (one core)",
        rate_of(&queries, |(a, at)| {
            out.clear();
            c.who_at(a, None, at, 120, &mut out);
            out.len()
        }),
        "lookups/s",
        ">= 1000000",
    );
    let now_queries = now_queries(sessions, &mut rng);
    r.line(
        "who_now lookups, changes laid over (one core)",
        rate_of(&now_queries, |a| {
            usize::from(c.holder_now(a, now).is_some())
        }),
        "lookups/s",
        ">= 5000000",
    );
    drop(c);

    // `kanki who`: one address answered from the store's index of prefixes
    // (the bindings read, the answer judged and audited), no index compiled.
    let mut took = Vec::new();
    for _ in 0..200 {
        let s = &sessions[rng.below(n as u64) as usize];
        let q = WhoQuery {
            address: address_in(s, &mut rng),
            port: None,
            at: Utc.timestamp_opt(s.from + 1, 0).unwrap(),
            // A legitimate business act names its program; an emergency
            // would have to cite a case, and the benchmark has none.
            ground: kanki_audit::Ground::LegitimateBusiness,
            purpose: "benchmark".into(),
            actor: "bench".into(),
            cites: kanki_service::directory::Cites {
                program: Some("OP25B".into()),
                ..Default::default()
            },
        };
        let t = Instant::now();
        black_box(kanki.who_in_store(&q)?);
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    r.line("who from the store, p50", took[took.len() / 2], "ms", "-");
    r.line(
        "who from the store, p99",
        took[took.len() * 99 / 100],
        "ms",
        "<= 50 ms at 10M",
    );

    reach_front(kanki, &directory, r)?;
    follow_kea(kanki, r)
}

/// The time from a binding change stored to the DNS front's question
/// (`who holds this address now`) answering differently: a Start on a
/// fresh address, then its Stop, while kanki-radius's load generator keeps
/// the store busy through the RADIUS server at a steady rate
/// (`KANKI_BENCH_RADIUS_RATE` requests/s, 30,000 unless set; 0 for as fast
/// as it goes; `KANKI_BENCH_RADIUS_REQUESTS` in all), and a refresher
/// looks for changes every 250 ms (the default `directory.refresh_every`)
/// and rebuilds the index every 10 s, as `kanki serve` does. Probes go on
/// while the load runs (at least `PROBES`), so that many land during a
/// rebuild.
fn reach_front(
    kanki: &Kanki,
    directory: &std::sync::Arc<Directory>,
    r: &Report,
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = &kanki.store;
    const PROBES: u32 = 100;
    let done = AtomicBool::new(false);
    let loaded = AtomicBool::new(false);
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let radius_rate = Some(env("KANKI_BENCH_RADIUS_RATE", 30_000)).filter(|&r| r > 0);
    let radius_requests = env("KANKI_BENCH_RADIUS_REQUESTS", 2_000_000);
    let kanki_arc = std::sync::Arc::new(Kanki::open(kanki.config.clone())?);
    let (latencies, radius, mut refreshes, rebuilds) =
        std::thread::scope(|scope| -> anyhow::Result<_> {
            // As serve runs them: the refresher and the rebuilder apart.
            // Each timed: what a change may wait for.
            let refresher = scope.spawn(|| -> anyhow::Result<Vec<f64>> {
                let mut took = Vec::new();
                let every = std::time::Duration::from_millis(250);
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    directory.refresh(store, Utc::now())?;
                    took.push(t.elapsed().as_secs_f64() * 1000.0);
                    // Every 250 ms, or at once after a longer look.
                    std::thread::sleep(every.saturating_sub(t.elapsed()));
                }
                Ok(took)
            });
            let rebuilder = scope.spawn(|| -> anyhow::Result<Vec<f64>> {
                let mut took = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if directory.rebuild_if_due(
                        store,
                        Utc::now(),
                        std::time::Duration::from_secs(10),
                    )? {
                        took.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                Ok(took)
            });
            let load = {
                let (k, d) = (kanki_arc.clone(), directory.clone());
                let loaded = &loaded;
                scope.spawn(move || {
                    let sink = std::sync::Arc::new(crate::serve::StoreSink {
                        kanki: k,
                        directory: d,
                    });
                    let report =
                        kanki_radius::load::bench_at_rate(sink, radius_requests, 512, radius_rate);
                    loaded.store(true, Ordering::Relaxed);
                    report
                })
            };
            let mut latencies = Vec::new();
            let mut p = 0u32;
            while p < PROBES || (!loaded.load(Ordering::Relaxed) && p < 60_000) {
                p += 1;
                let addr: IpAddr =
                    IpAddr::V4(std::net::Ipv4Addr::new(198, 18, (p >> 8) as u8, p as u8));
                let start = Utc::now();
                let binding = |to: Option<chrono::DateTime<Utc>>| {
                    BindingEvent::Binding(Binding {
                        subject: Subject::login(&format!("probe{p}")).expect("non-empty"),
                        prefix: ipnet::IpNet::from(addr),
                        ports: None,
                        from: start - chrono::Duration::seconds(1),
                        to,
                        origin: BindingOrigin::Static,
                        key: format!("probe-{p}"),
                        reporter: None,
                    })
                };
                for (to, held) in [(None, true), (Some(start), false)] {
                    store.directory().apply_bindings(
                        BindingOrigin::Static,
                        &[binding(to)],
                        Utc::now(),
                    )?;
                    let t = Instant::now();
                    while directory
                        .compiled()
                        .holder_now(addr, Utc::now().timestamp())
                        .is_some()
                        != held
                    {
                        if t.elapsed().as_secs() > 30 {
                            anyhow::bail!("a binding change did not reach the front in 30 s");
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            let radius = load.join().expect("the RADIUS load panicked")?;
            done.store(true, Ordering::Relaxed);
            let refreshes = refresher.join().expect("the refresher panicked")?;
            let rebuilds = rebuilder.join().expect("the rebuilder panicked")?;
            Ok((latencies, radius, refreshes, rebuilds))
        })?;
    let mut l = latencies;
    l.sort_by(f64::total_cmp);
    r.line(
        "RADIUS load during the probes",
        radius.load.rate(),
        "requests/s",
        ">= 30000",
    );
    r.line(
        "RADIUS requests lost",
        radius.load.lost as f64,
        "requests",
        "0",
    );
    r.line(
        &format!("binding changes probed ({})", l.len()),
        l.len() as f64,
        "changes",
        "-",
    );
    refreshes.sort_by(f64::total_cmp);
    r.line(
        "refresher look (changes laid over), p99",
        refreshes
            .get(refreshes.len() * 99 / 100)
            .copied()
            .unwrap_or(0.0),
        "ms",
        "-",
    );
    r.line(
        "refresher look, max",
        refreshes.last().copied().unwrap_or(0.0),
        "ms",
        "-",
    );
    r.line(
        &format!("rebuilds during the probes ({}), longest", rebuilds.len()),
        rebuilds.iter().copied().fold(0.0, f64::max),
        "ms",
        "-",
    );
    let waited = directory
        .events()
        .into_iter()
        .find(|(e, _)| e == "changes wait for a rebuild")
        .map_or(0, |(_, n)| n);
    r.line(
        "looks whose changes waited for a rebuild",
        waited as f64,
        "looks",
        "0",
    );
    for (q, target) in [(50, "-"), (95, "-"), (99, "<= 1000"), (100, "-")] {
        let at = (l.len() * q / 100).min(l.len() - 1);
        let name = match q {
            100 => "max".to_string(),
            q => format!("p{q}"),
        };
        r.line(
            &format!("binding change to DNS front, {name}"),
            l[at],
            "ms",
            target,
        );
    }
    Ok(())
}

/// A Kea lease file written at 5,000 leases/s for 10 s while a follower
/// (as `kanki serve` runs one, looking every 250 ms) stores them: the lag
/// of each look, from a lease written to it stored.
fn follow_kea(kanki: &Kanki, r: &Report) -> anyhow::Result<()> {
    use std::io::Write;
    use std::sync::Mutex;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kea-leases4.csv");
    let rate = 5_000u64;
    let secs = 10u64;
    let written: Mutex<Vec<(u64, Instant)>> = Mutex::new(Vec::new());
    let lags = std::thread::scope(|scope| -> anyhow::Result<Vec<f64>> {
        let writer = scope.spawn(|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(b"address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n")?;
            let start = Instant::now();
            let expire = Utc::now().timestamp() + 3600;
            let mut n = 0u64;
            while n < rate * secs {
                // 250 leases every 50 ms.
                let due = (start.elapsed().as_millis() as u64 / 50 + 1) * 250;
                let mut text = String::new();
                while n < due.min(rate * secs) {
                    let a = std::net::Ipv4Addr::from(0x0a40_0000u32 + n as u32);
                    let m = n.to_be_bytes();
                    text.push_str(&format!(
                        "{a},00:16:3e:{:02x}:{:02x}:{:02x},,3600,{expire},1,0,0,,0,,0\n",
                        m[5], m[6], m[7]
                    ));
                    n += 1;
                }
                f.write_all(text.as_bytes())?;
                written.lock().unwrap().push((n, Instant::now()));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(())
        });
        let mut tail = kanki_directory::sources::Tail::new(BindingOrigin::Kea, &path, None);
        let (mut stored, mut lags) = (0u64, Vec::new());
        while stored < rate * secs {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let read = tail.poll()?;
            let events: Vec<BindingEvent> = read
                .rows
                .into_iter()
                .filter_map(|row| match row {
                    kanki_directory::BindingRow::Event { event, .. } => Some(event),
                    _ => None,
                })
                .collect();
            if events.is_empty() {
                continue;
            }
            kanki
                .store
                .directory()
                .apply_bindings(BindingOrigin::Kea, &events, Utc::now())?;
            stored += events.len() as u64;
            // The oldest lease of this look was written just after the
            // previous look's newest: its wait is the look's lag.
            let w = written.lock().unwrap();
            if let Some(&(_, t)) = w
                .iter()
                .find(|(upto, _)| *upto > stored - events.len() as u64)
            {
                lags.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        writer.join().expect("the writer panicked")?;
        Ok(lags)
    })?;
    let mut l = lags;
    l.sort_by(f64::total_cmp);
    r.line(
        "Kea lease file followed at 5,000/s, lag max",
        l.last().copied().unwrap_or(0.0),
        "ms",
        "<= 1000",
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
