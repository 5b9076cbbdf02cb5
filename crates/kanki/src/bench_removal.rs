//! `kanki bench ingest` and `kanki bench notices`: the removal loop's
//! targets (issue 7). The ingest benchmark writes a directory of synthetic
//! sessions (and their subscribers) to a store, then ingests a
//! Shadowserver-format sinkhole CSV whose rows name addresses of those
//! sessions at moments inside them, attributing every row (audited).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use kanki_config::Config;
use kanki_directory::SubscriberRecord;
use kanki_directory::synth::{self, Rng};
use kanki_removal::ingest::{IngestSummary, Source};
use kanki_service::Kanki;
use kanki_service::directory::Compiled;

use crate::bench::Report;

const DAYS: u32 = 90;

/// Of the addresses in use on the report's day, the share whose machines
/// are infected and call the sinkhole.
const INFECTED_PERCENT: u64 = 5;

/// The CSV the ingest benchmark reads (also what `scripts/bench.sh` gives
/// IntelMQ's parser): `rows` rows over the sessions `ss` of the directory,
/// as Shadowserver's daily report is: one day (`day` days before the
/// directory's last), in time order, naming the infected addresses of that
/// day (a share of those in use), each many times (a bot calls its
/// sinkholed server again and again).
pub fn sinkhole_csv(
    ss: &[kanki_directory::BindingRef],
    rows: usize,
    day: u32,
    seed: u64,
) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let end = synth::epoch().timestamp() + DAYS as i64 * 86400;
    let day = end - 86400 * (1 + day as i64);
    // Sessions in use on the day, for at least ten minutes of it.
    let in_use: Vec<(i64, i64, &kanki_directory::BindingRef)> = ss
        .iter()
        .filter_map(|s| {
            let (from, to) = (s.from.max(day) + 300, s.to.unwrap_or(end).min(end) - 300);
            (to > from).then_some((from, to, s))
        })
        .collect();
    let infected: Vec<_> = in_use
        .iter()
        .filter(|_| rng.below(100) < INFECTED_PERCENT)
        .collect();
    let mut sources: Vec<(IpAddr, i64)> = (0..rows)
        .map(|_| {
            let &&(from, to, s) = &infected[rng.below(infected.len() as u64) as usize];
            let at = from + rng.below((to - from) as u64) as i64;
            let ip = match s.prefix {
                ipnet::IpNet::V4(n) => IpAddr::V4(n.network()),
                ipnet::IpNet::V6(n) => IpAddr::V6((u128::from(n.network()) | 1).into()),
            };
            (ip, at)
        })
        .collect();
    sources.sort_by_key(|&(_, at)| at);
    kanki_events::synth::sinkhole_csv(&sources)
}

fn holders(sessions: usize) -> u32 {
    (sessions / 10).max(1) as u32
}

/// Writes the directory (subscribers and sessions) into a store under
/// `template` once; each run starts from a copy of it, so every run
/// measures the same thing: a day's report into a store holding the
/// directory and no events, then the next day's into the store holding
/// the first.
fn directory_template(
    sessions: usize,
    template: &std::path::Path,
    r: &Report,
) -> anyhow::Result<()> {
    let ready = template.join("directory-ready");
    if ready.exists() {
        return Ok(());
    }
    let t = Instant::now();
    let kanki = Kanki::open(Config {
        data_dir: template.to_path_buf(),
        ..Config::default()
    })?;
    let n = holders(sessions);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100_000) {
        let subs: Vec<SubscriberRecord> = chunk
            .iter()
            .map(|h| SubscriberRecord {
                id: format!("u{h}"),
                email: Some(format!("u{h}@example.jp")),
                postal_address: None,
                language: "ja".into(),
                plan: None,
                consent: Some(h % 2 == 0),
                identifiers: Vec::new(),
            })
            .collect();
        kanki
            .store
            .directory()
            .upsert_subscribers(&subs, "bench", "bench", Utc::now())?;
    }
    let ss = synth::sessions(sessions, DAYS, n, 5);
    crate::bench_directory::store_sessions(&kanki, &ss)?;
    // Closed before it is copied: the last connection's close folds the
    // WAL into the database file.
    drop(kanki);
    std::fs::write(&ready, b"")?;
    r.line(
        &format!("directory written ({sessions} sessions, {n} subscribers)"),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    Ok(())
}

/// A fresh copy of the directory template in `run`.
fn fresh_store(template: &std::path::Path, run: &std::path::Path) -> anyhow::Result<()> {
    if run.exists() {
        std::fs::remove_dir_all(run)?;
    }
    std::fs::create_dir_all(run)?;
    for entry in std::fs::read_dir(template)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("kanki.sqlite3") {
            std::fs::copy(entry.path(), run.join(&name))?;
        }
    }
    Ok(())
}

pub fn ingest(
    sessions: usize,
    rows: usize,
    work_dir: Option<PathBuf>,
    csv_out: Option<PathBuf>,
    seed: u64,
    r: &Report,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let template = dir.join(format!("directory-{sessions}"));
    directory_template(sessions, &template, r)?;
    let run = dir.join(format!("run-{sessions}"));
    let t = Instant::now();
    fresh_store(&template, &run)?;
    r.line(
        "fresh store copied from the directory's",
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    let kanki = Kanki::open(Config {
        data_dir: run,
        ..Config::default()
    })?;
    let t = Instant::now();
    let now = synth::epoch() + chrono::Duration::days(DAYS as i64);
    let compiled = Compiled::load(&kanki.store, now)?;
    r.line(
        &format!("directory index loaded ({} bindings)", compiled.bindings()),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    let ss = synth::sessions(sessions, DAYS, holders(sessions), 5);
    r.line("seed (--seed)", seed as f64, "", "-");
    // Two consecutive days among the last 60.
    let day = 1 + (seed % 59) as u32;
    let first = sinkhole_csv(&ss, rows, day, seed);
    let second = sinkhole_csv(&ss, rows, day - 1, seed ^ 0x9e37_79b9);
    drop(ss);
    if let Some(path) = csv_out {
        std::fs::write(&path, &first)?;
    }
    let source = Source {
        format: kanki_events::Format::Shadowserver,
        report_type: Some("event4_sinkhole".into()),
        mapping: None,
        origin: "bench".into(),
        actor: "bench".into(),
    };
    let run_ingest = |csv: &[u8]| {
        kanki_removal::ingest::ingest(
            &kanki,
            &compiled,
            &source,
            Box::new(std::io::Cursor::new(csv.to_vec())),
            &mut |_| {},
        )
    };
    // Each run: its rate, and the CPU time of all the process's threads
    // (parsing, judging and storing overlap; CPU seconds per million rows
    // say how far a 2-core machine is from the rate's bound, and vary less
    // than the rate from one run to the next).
    let timed = |what: &str, target: &str, csv: &[u8]| -> anyhow::Result<IngestSummary> {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let s = run_ingest(csv)?;
        let secs = t.elapsed().as_secs_f64();
        r.line(what, s.records as f64 / secs, "events/s", target);
        r.line("  CPU time, all threads", cpu_seconds() - cpu, "s", "-");
        Ok(s)
    };
    let s = timed(
        &format!("ingest sinkhole csv with attribution ({rows} rows)"),
        ">= 200000",
        &first,
    )?;
    r.line(
        "  of them attributed (each audited)",
        s.attributed as f64,
        "events",
        "-",
    );
    r.line("  cases opened", s.cases_opened as f64, "cases", "-");
    let again = timed("ingest the same file again (adds nothing)", "-", &first)?;
    anyhow::ensure!(again.events == 0, "a replay added events");
    let next = timed(
        "ingest the next day's report (store holds the first)",
        "-",
        &second,
    )?;
    r.line(
        "  cases opened / updated",
        next.cases_opened as f64,
        &format!("opened, {} updated", next.cases_updated),
        "-",
    );
    Ok(())
}

/// User and system CPU time of the whole process so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Renders `n` notices, half Japanese and half English, over a few
/// families and classes (the most specific template each time), as
/// `kanki notices send` does for each due case.
pub fn notices(n: usize, r: &Report) -> anyhow::Result<()> {
    use kanki_removal::notice::{Evidence, NoticeContext, Templates, new_reference};
    let templates = Templates::load(None)?;
    let kinds = [
        ("mirai", "infected-system"),
        ("emotet", "infected-system"),
        ("ssh", "brute-force"),
        ("dns-open-resolver", "vulnerable-system"),
    ];
    let t = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        let (family, class) = kinds[i % kinds.len()];
        let ctx = NoticeContext {
            reference: new_reference(),
            subscriber: format!("S{i:07}"),
            family: family.into(),
            class: class.into(),
            severity: "high".into(),
            first_seen: "2026-11-01 00:00 UTC".into(),
            last_seen: "2026-11-02 00:00 UTC".into(),
            events: 3 + i as u64 % 50,
            address: format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
            evidence: (0..3)
                .map(|k| Evidence {
                    time: "2026-11-01 00:00 UTC".into(),
                    address: "10.0.0.1".into(),
                    port: Some(40000 + k),
                    feed: "Sinkhole-Events IPv4".into(),
                })
                .collect(),
            page_url: format!("https://isp.example/countermeasures/{family}"),
            ack_url: "https://isp.example/countermeasures/ack?reference=K".into(),
            verify_url: "https://isp.example/countermeasures/verify".into(),
            notice_number: 1 + i as u64 % 3,
            unacknowledged: i as u64 % 3,
        };
        let lang = if i % 2 == 0 { "ja" } else { "en" };
        let out = templates.render(lang, &ctx)?;
        bytes += out.body.len();
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    r.line(&format!("render {n} notices"), secs, "s", "<= 10 s");
    Ok(())
}
