//! `kanki bench`: the speed and memory targets measured on synthetic
//! data, so anyone can repeat them (`scripts/bench.sh` runs them beside the
//! peers). A benchmark, not a test: it prints figures and asserts nothing.

use std::hint::black_box;
use std::io::{BufWriter, Cursor, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use kanki_config::Config;
use kanki_exports::{DnsList, ExportFormat, ListOptions};
use kanki_feeds::{Format, Row};
use kanki_policy::{Snapshot, SnapshotBuilder};
use kanki_service::Kanki;
use kanki_store::ListQuery;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Parse a URLhaus-format CSV (one core).
    Parse,
    /// Import a URLhaus-format CSV into an empty store, then again unchanged; export it as RPZ.
    Import,
    /// Build, size, query, save and load the policy snapshot.
    Snapshot,
    /// Write the RPZ export of a list.
    Export,
    /// RADIUS accounting with responses: kanki's server in front of a real
    /// store, a load generator beside it (--radius-requests).
    Radius,
    /// The subscriber directory: index build, memory, who_at, who_now,
    /// rebuild from the store (sizes from --sessions and --store-sessions).
    Directory,
    All,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    which: Vec<Which>,
    /// Rows or names to use.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Sessions for the directory benchmark.
    #[arg(long, default_value_t = 10_000_000)]
    sessions: usize,
    /// Of those, how many are written to a store and read back at start
    /// (writing them is the slow part of the run).
    #[arg(long, default_value_t = 2_000_000)]
    store_sessions: usize,
    /// Requests for the RADIUS benchmark.
    #[arg(long, default_value_t = 500_000)]
    radius_requests: u64,
    /// Where the import benchmark keeps its store (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print one JSON object per measurement instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) struct Report {
    json: bool,
}

impl Report {
    pub(crate) fn line(&self, name: &str, value: f64, unit: &str, target: &str) {
        if self.json {
            println!(
                "{}",
                json!({ "bench": name, "value": value, "unit": unit, "target": target })
            );
        } else {
            println!("{name:<44} {value:>14.2} {unit:<12} (target {target})");
        }
    }
}

pub fn run(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let all = a.which.contains(&Which::All);
    let want = |w| all || a.which.contains(&w);
    let r = Report { json: a.json };
    let n = a.rows;
    if want(Which::Parse) {
        parse(n, &r)?;
    }
    if want(Which::Snapshot) {
        snapshot(n, &r)?;
    }
    if want(Which::Export) {
        export(n, a.work_dir.as_deref(), &r)?;
    }
    if want(Which::Import) {
        import(n, a.work_dir.clone(), &r)?;
    }
    if want(Which::Radius) {
        crate::bench_directory::radius(a.radius_requests, &r)?;
    }
    if want(Which::Directory) {
        crate::bench_directory::run(a.sessions, a.store_sessions, a.work_dir.clone(), &r)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn parse(n: usize, r: &Report) -> anyhow::Result<()> {
    let csv = kanki_feeds::synth::urlhaus_csv(n, 1);
    let t = Instant::now();
    let rows = kanki_feeds::parse(Format::Urlhaus, Box::new(Cursor::new(csv)))?;
    let mut records = 0u64;
    for row in rows {
        if let Row::Record(rec) = row {
            black_box(&rec);
            records += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    r.line(
        "parse urlhaus csv (rows/s, one core)",
        records as f64 / secs,
        "rows/s",
        ">= 1000000",
    );
    Ok(())
}

fn rss_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn build_snapshot(names: &[String]) -> Snapshot {
    let mut b = SnapshotBuilder::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        b.add_listed(name, i as i64 + 1);
    }
    b.build(1)
}

fn snapshot(n: usize, r: &Report) -> anyhow::Result<()> {
    let names = kanki_policy::synth::domains(n, 7);
    let t = Instant::now();
    let snap = build_snapshot(&names);
    r.line(
        "policy snapshot build",
        t.elapsed().as_secs_f64(),
        "s",
        "<= 2 s",
    );
    r.line(
        "policy snapshot memory per domain",
        snap.memory_bytes() as f64 / n as f64,
        "bytes",
        "<= 64",
    );
    let queries = kanki_policy::synth::queries(&names, 2_000_000, 11);
    let t = Instant::now();
    let mut hits = 0usize;
    for q in &queries {
        if black_box(snap.lookup(q.as_bytes())).is_listed() {
            hits += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    r.line(
        "policy lookup, one name a call (one core)",
        queries.len() as f64 / secs,
        "lookups/s",
        ">= 5000000",
    );
    let t = Instant::now();
    let mut batched_hits = 0usize;
    snap.lookup_many(queries.iter().map(|q| q.as_bytes()), |v| {
        if v.is_listed() {
            batched_hits += 1;
        }
    });
    let secs = t.elapsed().as_secs_f64();
    r.line(
        "policy lookup_many, batches of 8 (one core)",
        queries.len() as f64 / secs,
        "lookups/s",
        ">= 5000000",
    );
    anyhow::ensure!(hits == batched_hits, "lookup and lookup_many disagree");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("policy.snapshot");
    let t = Instant::now();
    snap.save(&path)?;
    r.line("policy snapshot save", t.elapsed().as_secs_f64(), "s", "-");
    drop(snap);
    let t = Instant::now();
    let loaded = Snapshot::load(&path)?;
    r.line(
        "policy snapshot load (restart ready)",
        t.elapsed().as_secs_f64(),
        "s",
        "< 1 s",
    );
    black_box(loaded.listed_names());
    Ok(())
}

/// Writes `list.rpz` (kept in `work_dir` when given, for the peers to load).
fn export(n: usize, work_dir: Option<&std::path::Path>, r: &Report) -> anyhow::Result<()> {
    let names = kanki_policy::synth::domains(n, 7);
    let tmp = tempfile::tempdir()?;
    let dir = work_dir.unwrap_or(tmp.path());
    std::fs::create_dir_all(dir)?;
    let path = dir.join("list.rpz");
    let snap = build_snapshot(&names);
    let t = Instant::now();
    let list = DnsList::new(
        snap.iter_listed().map(|(n, _)| n.to_string()),
        Vec::<String>::new(),
    );
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    kanki_exports::write_list(ExportFormat::Rpz, &mut w, &list, &ListOptions::default())?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    r.line(
        &format!("rpz export of {} names to a file", list.names.len()),
        t.elapsed().as_secs_f64(),
        "s",
        "<= 3 s",
    );
    Ok(())
}

fn import(n: usize, work_dir: Option<PathBuf>, r: &Report) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let data_dir = dir.join("data");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)?;
    }
    let csv_path = dir.join("urlhaus.csv");
    std::fs::write(&csv_path, kanki_feeds::synth::urlhaus_csv(n, 1))?;
    let config = Config {
        data_dir,
        ..Config::default()
    };
    let t = Instant::now();
    let kanki = Kanki::open(config)?;
    let first = kanki.import_path(Format::Urlhaus, None, &csv_path, &mut |_| {})?;
    r.line(
        "import into an empty store",
        t.elapsed().as_secs_f64(),
        "s",
        "<= 20 s",
    );
    let t = Instant::now();
    let second = kanki.import_path(Format::Urlhaus, None, &csv_path, &mut |_| {})?;
    r.line(
        "re-import of the unchanged file",
        t.elapsed().as_secs_f64(),
        "s",
        "<= 10 s",
    );
    anyhow::ensure!(
        second.changed_nothing(),
        "the re-import changed something: {second:?}"
    );
    let t = Instant::now();
    let snap = kanki.build_snapshot()?;
    r.line(
        "snapshot build from the store",
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    snap.save(&kanki.config.snapshot_path())?;
    let out = dir.join("export.rpz");
    let t = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
    kanki.export(ExportFormat::Rpz, &ListQuery::default(), &mut w)?;
    w.flush()?;
    r.line(
        &format!("rpz export from the store ({} names)", snap.listed_names()),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    r.line(
        "rows added by the first import",
        first.added as f64,
        "rows",
        "-",
    );
    if let Some(hwm) = rss_bytes("VmHWM:") {
        r.line(
            "peak RSS of this benchmark process",
            hwm as f64 / 1048576.0,
            "MiB",
            "-",
        );
    }
    Ok(())
}
