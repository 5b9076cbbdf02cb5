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
    /// The RPZ primary: zone build, memory per entry, AXFR and IXFR over TCP.
    Rpz,
    /// RADIUS accounting with responses: kanki's server in front of a real
    /// store, a load generator beside it (--radius-requests).
    Radius,
    /// The removal loop's ingest: a Shadowserver sinkhole CSV (--rows)
    /// attributed against a directory of --sessions sessions, every
    /// attribution audited; written to --csv-out for IntelMQ's parser.
    Ingest,
    /// Render notices (--notices).
    Notices,
    /// The subscriber directory: index build, memory, who_at, who_now,
    /// rebuild from the store (sizes from --sessions and --store-sessions).
    Directory,
    /// The crawler against the lab with 20 ms latency (--crawl-seeds), and
    /// a YARA scan of a 10 MB body with 100 rules.
    Crawl,
    /// What authentication costs a request: token and session checks in
    /// process, and /metrics over HTTP with and without a token side by
    /// side against a real `kanki serve` (--api-requests). Run on its own.
    ApiAuth,
    /// `kanki audit verify` of an audit log of `--rows` records: time, and
    /// the peak memory verification adds (flat: it streams).
    Audit,
    /// A subscriber import of `--rows` subscribers who all consent, as
    /// `kanki subscribers import` writes it: one transaction, one consent
    /// record in the audit chain per subscriber.
    ConsentImport,
    /// Build the store the console is measured on (--work-dir, --cases,
    /// --events, --indicators, --audit); scripts/bench-console.sh
    /// serves it and drives the console's routes. Run on its own.
    ConsoleStore,
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
    /// Seeds for the crawl benchmark (3 pages each).
    #[arg(long, default_value_t = 2000)]
    crawl_seeds: usize,
    /// Requests for the api-auth benchmark (half with a token).
    #[arg(long, default_value_t = 40_000)]
    api_requests: u64,
    /// Notices rendered by the notices benchmark.
    #[arg(long, default_value_t = 100_000)]
    notices: usize,
    /// Write the ingest benchmark's CSV here too.
    #[arg(long)]
    csv_out: Option<PathBuf>,
    /// The ingest benchmark's seed, which picks its day and rows (default:
    /// the clock). The figures depend on the day (how many cases it opens):
    /// give the same seed to compare two builds.
    #[arg(long)]
    seed: Option<u64>,
    /// Where the import benchmark keeps its store (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// console-store: cases (one subscriber each).
    #[arg(long, default_value_t = 1_000_000)]
    cases: usize,
    /// console-store: events, spread over the cases.
    #[arg(long, default_value_t = 10_000_000)]
    events: usize,
    /// console-store: indicators.
    #[arg(long, default_value_t = 1_000_000)]
    indicators: usize,
    /// console-store: audit records (besides the ingest's own).
    #[arg(long = "audit", default_value_t = 1_000_000)]
    audit_records: usize,
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
    if want(Which::Rpz) {
        rpz(n, &r)?;
    }
    if want(Which::Import) {
        import(n, a.work_dir.clone(), &r)?;
    }
    if want(Which::Radius) {
        crate::bench_directory::radius(a.radius_requests, &r)?;
    }
    if a.which.contains(&Which::Ingest) {
        let seed = a
            .seed
            .unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(23) as u64);
        crate::bench_removal::ingest(
            a.sessions,
            n,
            a.work_dir.clone(),
            a.csv_out.clone(),
            seed,
            &r,
        )?;
    }
    if want(Which::Notices) {
        crate::bench_removal::notices(a.notices, &r)?;
    }
    if want(Which::Directory) {
        crate::bench_directory::run(a.sessions, a.store_sessions, a.work_dir.clone(), &r)?;
    }
    if want(Which::Crawl) {
        crate::bench_crawl::run(a.crawl_seeds, &r)?;
    }
    if a.which.contains(&Which::ApiAuth) {
        crate::bench_api::api_auth(a.api_requests, &r)?;
    }
    if a.which.contains(&Which::ConsoleStore) {
        let dir = a.work_dir.as_deref().ok_or_else(|| {
            anyhow::anyhow!("console-store needs --work-dir (where the store stays)")
        })?;
        let size = crate::bench_console::ConsoleStoreSize {
            cases: a.cases,
            events: a.events,
            indicators: a.indicators,
            audit: a.audit_records,
        };
        crate::bench_console::console_store(dir, size, &r)?;
    }
    if a.which.contains(&Which::Audit) {
        audit_verify(n, a.work_dir.clone(), &r)?;
    }
    if a.which.contains(&Which::ConsentImport) {
        consent_import(n, a.work_dir.clone(), &r)?;
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

/// Writes `n` audit records (a who-lookup's size each), then verifies the
/// chain as `kanki audit verify` does, measuring the peak resident memory
/// of the verification alone (the peak is reset before it).
fn audit_verify(n: usize, work_dir: Option<PathBuf>, r: &Report) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let data_dir = dir.join("audit-bench");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)?;
    }
    let config = Config {
        data_dir,
        ..Config::default()
    };
    let kanki = Kanki::open(config)?;
    let d = kanki.store.directory();
    let at = chrono::Utc::now();
    let mut written = 0;
    while written < n {
        let batch: Vec<kanki_audit::AuditEntry> = (written..n.min(written + 10_000))
            .map(|i| kanki_audit::AuditEntry {
                at,
                actor: "bench".into(),
                action: "who".into(),
                ground: Some(kanki_audit::Ground::EmergencyEvacuation),
                purpose: format!("case {i}"),
                input: format!(
                    "{{\"address\":\"10.{}.{}.{}\",\"at\":\"{at}\"}}",
                    i >> 16 & 255,
                    i >> 8 & 255,
                    i & 255
                ),
                result: "{\"subscriber\":\"S1\",\"confidence\":\"exact\"}".into(),
            })
            .collect();
        written += batch.len();
        d.audit_append_many(&batch)?;
    }
    // Linux: "5" resets the peak (VmHWM) to the current resident size.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = rss_bytes("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let v = kanki
        .verify_audit(&[])?
        .map_err(|b| anyhow::anyhow!("the bench's own chain does not verify: {b}"))?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(v.records == n as u64, "verified {} of {n}", v.records);
    r.line(
        &format!("audit verify {n} records (records/s)"),
        n as f64 / secs,
        "records/s",
        ">= 200000",
    );
    if let Some(hwm) = rss_bytes("VmHWM:") {
        r.line(
            &format!("audit verify {n} records (peak memory added)"),
            hwm.saturating_sub(before) as f64 / 1e6,
            "MB",
            "<= 64, whatever n",
        );
    }
    Ok(())
}

/// Imports `n` new subscribers who all consent into an empty store, as
/// `kanki subscribers import` does (one call, one transaction), and checks
/// that the chain holds one consent record each and verifies.
fn consent_import(n: usize, work_dir: Option<PathBuf>, r: &Report) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = work_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let data_dir = dir.join("consent-bench");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)?;
    }
    let kanki = Kanki::open(Config {
        data_dir,
        ..Config::default()
    })?;
    let records: Vec<kanki_store::SubscriberRecord> = (0..n)
        .map(|i| kanki_store::SubscriberRecord {
            id: format!("S{i:08}"),
            email: Some(format!("s{i}@example.jp")),
            language: "ja".into(),
            consent: Some(true),
            ..Default::default()
        })
        .collect();
    let t = Instant::now();
    let counts = kanki.store.directory().upsert_subscribers(
        &records,
        "bench",
        "bench",
        chrono::Utc::now(),
    )?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        counts.consent_changes == n as u64,
        "{} consent changes of {n}",
        counts.consent_changes
    );
    let v = kanki
        .verify_audit(&[])?
        .map_err(|b| anyhow::anyhow!("the bench's own chain does not verify: {b}"))?;
    anyhow::ensure!(
        v.records == n as u64,
        "{} records chained of {n}",
        v.records
    );
    r.line(
        &format!("subscriber import {n}, all consenting (subscribers/s)"),
        n as f64 / secs,
        "subscribers/s",
        "1M in minutes",
    );
    Ok(())
}

pub(crate) fn rss_bytes(field: &str) -> Option<u64> {
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

/// Sends one request over TCP to the primary and reads answer messages
/// until `records` records have come; returns the seconds it took and the
/// messages.
async fn tcp_exchange(
    addr: std::net::SocketAddr,
    request: &[u8],
    records: u64,
) -> anyhow::Result<(f64, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    s.write_all(&framed).await?;
    let mut s = tokio::io::BufReader::with_capacity(256 * 1024, s);
    let (mut got, mut messages) = (0u64, 0u64);
    let mut buf = vec![0u8; 65_536];
    while got < records {
        let len = s.read_u16().await? as usize;
        s.read_exact(&mut buf[..len]).await?;
        anyhow::ensure!(buf[3] & 0x0f == 0, "answer with rcode {}", buf[3] & 0x0f);
        got += u64::from(u16::from_be_bytes([buf[6], buf[7]]));
        messages += 1;
    }
    Ok((t.elapsed().as_secs_f64(), messages))
}

fn rpz_request(zone: &str, qtype: hickory_proto::rr::RecordType, serial: Option<u32>) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, Record, rdata::SOA};
    let name = Name::from_ascii(zone).expect("zone name");
    let mut m = Message::query();
    m.metadata.id = 7;
    m.add_query(Query::query(name.clone(), qtype));
    if let Some(serial) = serial {
        let soa = SOA::new(Name::root(), Name::root(), serial, 0, 0, 0, 0);
        m.add_authority(Record::from_rdata(name, 0, RData::SOA(soa)));
    }
    m.to_vec().expect("a query encodes")
}

/// The RPZ primary on `n` names: zone build and memory, then a full AXFR
/// and an IXFR of 1,000 changes over TCP on loopback (the primary's side
/// of the transfer: writing and sending; the reader only counts records).
fn rpz(n: usize, r: &Report) -> anyhow::Result<()> {
    use hickory_proto::rr::RecordType;
    use kanki_dns::rpz::{
        ListSource, RpzServer, RunOptions, StaticList, ZoneContent, ZoneSpec, zone::Kind,
        zone::Transfer,
    };
    let names = kanki_policy::synth::domains(n, 7);
    let snap = build_snapshot(&names);
    let list = DnsList::new(
        snap.iter_listed().map(|(n, _)| n.to_string()),
        Vec::<String>::new(),
    );
    let listed = list.names.len();
    drop(names);
    let source = std::sync::Arc::new(StaticList::new(list, 1));
    let zone = "bench.rpz.kanki";
    let spec = ZoneSpec {
        options: kanki_exports::RpzOptions {
            origin: zone.into(),
            ..Default::default()
        },
        shadow: false,
        content: ZoneContent::List(Default::default()),
        consent: None,
        notify: Vec::new(),
        allow_transfer: vec![("127.0.0.1".parse()?, 32)],
        tsig_key: None,
    };
    let journal = tempfile::tempdir()?;
    let server = std::sync::Arc::new(
        RpzServer::new(vec![spec], Vec::new(), Some(journal.path()), 100_000)
            .map_err(anyhow::Error::msg)?,
    );
    let handle = server.zones[0].clone();
    let rss_before = rss_bytes("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let content = handle.build(&*source).map_err(anyhow::Error::msg)?;
    let entries = content.len();
    let content_bytes = content.memory_bytes();
    let build_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    handle.update(content, source.generation())?;
    let publish_secs = t.elapsed().as_secs_f64();
    r.line(
        &format!("rpz zone build from the list ({listed} names)"),
        build_secs,
        "s",
        "-",
    );
    r.line(
        "rpz zone publish (journal base written, synced)",
        publish_secs,
        "s",
        "-",
    );
    r.line(
        &format!("rpz serving memory per entry ({entries} entries)"),
        content_bytes as f64 / entries as f64,
        "bytes",
        "<= 64",
    );
    if let Some(after) = rss_bytes("VmRSS:") {
        r.line(
            "rpz RSS growth per entry during build + publish (transient)",
            after.saturating_sub(rss_before) as f64 / entries as f64,
            "bytes",
            "-",
        );
    }
    let state = handle.state().expect("published");
    let records = |state: &std::sync::Arc<kanki_dns::rpz::zone::ZoneState>, kind| {
        let mut t = Transfer::new(state.clone(), kind, 1, 0, 252, None);
        while t.next_message().is_some() {}
        t.records
    };
    let t = Instant::now();
    let axfr_records = records(&state, Kind::Full);
    r.line(
        &format!("rpz AXFR written in memory ({axfr_records} records)"),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let opts = RunOptions {
        listen: addr,
        notify_interval: std::time::Duration::from_secs(5),
        max_transfers: 4,
        idle_timeout: std::time::Duration::from_secs(30),
        check_every: std::time::Duration::from_millis(100),
    };
    let src: std::sync::Arc<dyn ListSource> = source.clone();
    rt.spawn(kanki_dns::rpz::run(server.clone(), src, opts));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (secs, messages) = rt.block_on(tcp_exchange(
        addr,
        &rpz_request(zone, RecordType::AXFR, None),
        axfr_records,
    ))?;
    r.line(
        &format!("rpz AXFR over TCP, {entries} entries ({messages} messages)"),
        secs,
        "s",
        "<= 3 s",
    );

    // 1,000 changes: 500 names gone, 500 new.
    let old_serial = state.serial;
    let mut list = source
        .list(&Default::default())
        .map_err(anyhow::Error::msg)?;
    list.names.drain(..500);
    list.names
        .extend((0..500).map(|i| format!("bench-new-{i}.example")));
    list.names.sort();
    source.set(list);
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while handle.state().is_none_or(|s| s.serial == old_serial) {
        anyhow::ensure!(Instant::now() < deadline, "the zone did not update");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let state = handle.state().expect("published");
    let changes: u64 = state.history.iter().map(|d| d.changes()).sum();
    let ixfr_records = records(&state, Kind::Incremental { from: old_serial });
    let (secs, _) = rt.block_on(tcp_exchange(
        addr,
        &rpz_request(zone, RecordType::IXFR, Some(old_serial)),
        ixfr_records,
    ))?;
    r.line(
        &format!("rpz IXFR of {changes} changes over TCP ({ixfr_records} records)"),
        secs * 1000.0,
        "ms",
        "<= 50 ms",
    );
    let journal_bytes: usize = state
        .history
        .iter()
        .map(|d| d.removed.memory_bytes() + d.added.memory_bytes())
        .sum();
    r.line(
        "rpz journal memory (depth 100000 changes)",
        journal_bytes as f64 / 1024.0,
        "KiB",
        "bounded",
    );
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
