//! `kanki bench console-store`: the store the console's speed is measured
//! on (docs/benchmarks.md, "Console"): cases, events, indicators and audit
//! records at the sizes of a large ISP's year, built quickly through the
//! store's own import paths (a feed import, the subscriber and binding
//! upserts, the report ingest with attribution, the audit append). A
//! fixture, not the lab: nothing goes through the listeners.
//! `scripts/bench-console.sh` then starts `kanki serve` on it and drives
//! the console's routes.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use kanki_config::Config;
use kanki_directory::{Binding, BindingEvent, BindingOrigin, Subject, SubscriberRecord};
use kanki_removal::ingest::Source;
use kanki_service::Kanki;
use kanki_service::directory::Compiled;

use crate::bench::Report;

/// The sizes of the store.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleStoreSize {
    pub cases: usize,
    pub events: usize,
    pub indicators: usize,
    pub audit: usize,
}

/// Events are spread over this many days before now.
const DAYS: i64 = 60;

/// Subscriber `h`'s address: 10.0.0.0/8 and on into 11/8 past 16M.
fn address(h: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000u32 + 1 + h as u32)
}

pub fn console_store(work_dir: &Path, size: ConsoleStoreSize, r: &Report) -> anyhow::Result<()> {
    anyhow::ensure!(size.cases > 0, "--cases must be at least 1");
    anyhow::ensure!(
        size.cases < 100_000_000,
        "--cases must be below 100,000,000"
    );
    let data_dir = work_dir.join("data");
    anyhow::ensure!(
        !data_dir.exists(),
        "{} exists: give an empty --work-dir (the store is built once)",
        data_dir.display()
    );
    std::fs::create_dir_all(&data_dir)?;
    let all = Instant::now();
    let kanki = Kanki::open(Config {
        data_dir: data_dir.clone(),
        ..Config::default()
    })?;

    // Indicators: a URLhaus-format feed, imported as `kanki import` does.
    let t = Instant::now();
    let feed = work_dir.join("indicators.csv");
    std::fs::write(&feed, kanki_feeds::synth::urlhaus_csv(size.indicators, 1))?;
    let s = kanki.import_path(
        kanki_feeds::Format::Urlhaus,
        Some("bench-feed"),
        &feed,
        &mut |_| {},
    )?;
    std::fs::remove_file(&feed)?;
    r.line(
        &format!("indicators imported ({} added)", s.added),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );

    // One subscriber per case, each with a static address held all along.
    let t = Instant::now();
    let from = Utc::now() - chrono::Duration::days(DAYS + 1);
    for chunk in (0..size.cases).collect::<Vec<_>>().chunks(100_000) {
        let subs: Vec<SubscriberRecord> = chunk
            .iter()
            .map(|&h| SubscriberRecord {
                id: format!("S{h:08}"),
                email: Some(format!("s{h}@subscribers.example.jp")),
                postal_address: None,
                language: if h % 5 == 0 { "en" } else { "ja" }.into(),
                plan: None,
                consent: Some(h % 3 != 0),
                identifiers: Vec::new(),
            })
            .collect();
        let now = Utc::now();
        kanki
            .store
            .directory()
            .upsert_subscribers(&subs, "bench", "bench", now)?;
        let bindings: Vec<BindingEvent> = chunk
            .iter()
            .map(|&h| {
                BindingEvent::Binding(Binding {
                    subject: Subject::login(&format!("S{h:08}")).expect("non-empty"),
                    prefix: IpAddr::V4(address(h)).into(),
                    ports: None,
                    from,
                    to: None,
                    origin: BindingOrigin::Static,
                    key: format!("bench-{h}"),
                    reporter: None,
                })
            })
            .collect();
        kanki
            .store
            .directory()
            .apply_bindings(BindingOrigin::Static, &bindings, now)?;
    }
    r.line(
        &format!("{} subscribers and their addresses stored", size.cases),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );

    // Audit records: who-lookups (a lookup's size each) over the days,
    // appended as the directory appends them (before the ingest, whose
    // own records are dated now: the log stays in time order).
    let start = (Utc::now() - chrono::Duration::days(DAYS)).timestamp();
    let span = DAYS * 86400 - 3600;
    let t = Instant::now();
    let at = Utc::now();
    let d = kanki.store.directory();
    let mut written = 0;
    while written < size.audit {
        let batch: Vec<kanki_audit::AuditEntry> = (written..size.audit.min(written + 10_000))
            .map(|i| kanki_audit::AuditEntry {
                at: Utc
                    .timestamp_opt(start + (i as i64 * span / size.audit.max(1) as i64), 0)
                    .single()
                    .unwrap_or(at),
                actor: ["analyst-1", "officer-2", "officer-3"][i % 3].into(),
                action: "who".into(),
                ground: Some(kanki_audit::Ground::EmergencyEvacuation),
                purpose: format!("notice for case {}", 1 + i % size.cases),
                input: format!(
                    "{{\"address\":\"{}\",\"at\":\"{at}\"}}",
                    address(i % size.cases)
                ),
                result: format!(
                    "{{\"subscriber\":\"S{:08}\",\"confidence\":\"exact\"}}",
                    i % size.cases
                ),
            })
            .collect();
        written += batch.len();
        d.audit_append_many(&batch)?;
    }
    r.line(
        &format!("{} audit records appended", size.audit),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    // Events: sinkhole reports naming every subscriber, `events / cases`
    // times each over the days, ingested (attributed, audited, cases
    // opened) as `kanki ingest` does, a million rows a report.
    let t = Instant::now();
    let compiled = Compiled::load(&kanki.store, Utc::now())?;
    let source = Source {
        format: kanki_events::Format::Shadowserver,
        report_type: Some("event4_sinkhole".into()),
        mapping: None,
        origin: "bench".into(),
        actor: "bench".into(),
    };
    let (mut events, mut cases) = (0u64, 0u64);
    let mut row = 0usize;
    while row < size.events {
        let n = (size.events - row).min(1_000_000);
        // Row i names subscriber i % cases, at a time rising with i.
        let sources: Vec<(IpAddr, i64)> = (row..row + n)
            .map(|i| {
                let at = start + (i as i128 * span as i128 / size.events as i128) as i64;
                (IpAddr::V4(address(i % size.cases)), at)
            })
            .collect();
        let csv = kanki_events::synth::sinkhole_csv(&sources);
        drop(sources);
        let s = kanki_removal::ingest::ingest(
            &kanki,
            &compiled,
            &source,
            Box::new(std::io::Cursor::new(csv)),
            &mut |_| {},
        )?;
        events += s.events;
        cases += s.cases_opened;
        row += n;
    }
    r.line(
        &format!("{events} events ingested, {cases} cases opened"),
        t.elapsed().as_secs_f64(),
        "s",
        "-",
    );

    drop(kanki);
    r.line(
        "console store built (all of it)",
        all.elapsed().as_secs_f64(),
        "s",
        "-",
    );
    println!("store: {}", data_dir.display());
    Ok(())
}
