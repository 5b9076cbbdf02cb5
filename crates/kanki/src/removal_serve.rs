//! The removal loop in `kanki serve`: notices sent on a schedule, report
//! files dropped in the watched directory ingested, bounces read from the
//! bounce maildir, and kanki's own sensor.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use kanki_api::ApiState;
use kanki_removal::ingest::Source;

use crate::serve::{background_turn, with_state};

pub async fn spawn(jobs: &kanki_jobs::Supervisor, st: &ApiState) -> anyhow::Result<()> {
    jobs.spawn("notices", with_state(st, notice_loop));
    jobs.spawn("event retention purge", with_state(st, event_purger));
    if let Some(dir) = st.kanki.config.removal.watch_dir.clone() {
        for sub in ["done", "failed"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let st = st.clone();
        jobs.spawn("watched directory", move |stop| {
            watch_loop(st.clone(), dir.clone(), stop)
        });
    }
    if let Some(maildir) = st.kanki.config.notices.bounce_maildir.clone() {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).with_context(|| {
                format!(
                    "cannot create {} (notices.bounce_maildir)",
                    maildir.join(sub).display()
                )
            })?;
        }
        let st = st.clone();
        jobs.spawn("bounce maildir", move |stop| {
            bounce_loop(st.clone(), maildir.clone(), stop)
        });
    }
    let sc = &st.kanki.config.sensor;
    if !sc.listen.is_empty() {
        let listeners = kanki_sensors::bind(&sc.listen).await?;
        tracing::info!(listen = ?sc.listen, "sensor listening");
        let opts = kanki_sensors::SensorOptions {
            first_bytes: sc.first_bytes,
            timeout: sc.timeout.0,
            per_source_per_minute: sc.per_source_per_minute,
            telnet_ports: sc.telnet_ports.clone(),
            ssh_ports: sc.ssh_ports.clone(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let counters = std::sync::Arc::new(kanki_sensors::SensorCounters::default());
        st.inputs.set_sensor(counters.clone());
        jobs.spawn_until_stop("sensor", kanki_sensors::run(listeners, opts, tx, counters));
        jobs.spawn_until_stop("sensor events", sensor_events(st.clone(), rx));
    }
    Ok(())
}

/// Stores the sensor's events in batches (up to 1,024, or each second),
/// attributed like any other input, under one ingest run per serve.
async fn sensor_events(st: ApiState, mut rx: tokio::sync::mpsc::Receiver<kanki_events::Event>) {
    let k = st.kanki.clone();
    let ingest = match tokio::task::spawn_blocking(move || {
        k.store
            .removal()
            .begin_ingest("sensor", "kanki serve", None, Utc::now())
    })
    .await
    {
        Ok(Ok(id)) => id,
        _ => {
            tracing::error!("the sensor cannot record its events: no ingest run");
            return;
        }
    };
    let mut batch = Vec::new();
    loop {
        let more = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        match more {
            Ok(Some(e)) => {
                batch.push(e);
                if batch.len() < 1024 {
                    continue;
                }
            }
            Ok(None) => return,
            Err(_) if batch.is_empty() => continue,
            Err(_) => {}
        }
        let events = std::mem::take(&mut batch);
        let st2 = st.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut sum = kanki_removal::ingest::IngestSummary::default();
            kanki_removal::ingest::record_batch(
                &st2.kanki,
                &st2.directory.compiled(),
                ingest,
                events,
                &mut sum,
            )?;
            kanki_api::metrics::IngestMeter::new(st2.metrics.clone()).progress(&sum);
            Ok::<_, kanki_service::ServiceError>(sum)
        })
        .await;
        match done {
            Ok(Ok(s)) => tracing::debug!(
                events = s.events,
                attributed = s.attributed,
                "sensor events stored"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "storing sensor events failed"),
            Err(e) => tracing::error!(error = %e, "storing sensor events panicked"),
        }
    }
}

/// Raw events past `removal.events_retention` are removed (with the
/// directory's retention purge schedule).
async fn event_purger(st: ApiState, mut stop: kanki_jobs::Stop) {
    let every = st.kanki.config.directory.purge_every.0;
    loop {
        let k = st.kanki.clone();
        let keep = k.config.removal.events_retention.as_secs().min(1 << 40) as i64;
        let purge = move || {
            k.store
                .removal()
                .purge_events(Utc::now() - chrono::Duration::seconds(keep))
        };
        if let Some(n) = background_turn("event retention purge", purge).await {
            tracing::info!(events = n, "event retention purge done");
        }
        if !stop.sleep(every).await {
            return;
        }
    }
}

async fn notice_loop(st: ApiState, mut stop: kanki_jobs::Stop) {
    let every = st.kanki.config.notices.send_every.0;
    loop {
        if !stop.sleep(every).await {
            return;
        }
        let k = st.kanki.clone();
        let send = move || {
            let mailer = kanki_notify::Mailer::new(&k.config.smtp)
                .map_err(kanki_service::ServiceError::Invalid)?;
            kanki_removal::notice::send_due(&k, Some(&mailer), false, Utc::now())
        };
        if let Some(s) = background_turn("sending notices", send).await {
            st.metrics.count_notices(&s);
            tracing::info!(
                mailed = s.mails_sent,
                letters = s.letters_queued,
                escalated = s.escalated,
                gardened = s.gardened,
                retry = s.retry_later,
                failed = s.failed,
                bounced = s.bounced,
                "notices sent"
            );
        }
    }
}

/// Reads the bounce maildir every 2 s (see `kanki_removal::bounce::read_maildir`).
async fn bounce_loop(st: ApiState, maildir: PathBuf, mut stop: kanki_jobs::Stop) {
    loop {
        let k = st.kanki.clone();
        let dir = maildir.clone();
        let read = move || kanki_removal::bounce::read_maildir(&k, &dir);
        match background_turn("reading the bounce maildir", read).await {
            Some(p) if p != Default::default() => {
                st.metrics.count_bounced(p.notices_bounced);
                tracing::info!(
                    bounces = p.bounces,
                    notices_bounced = p.notices_bounced,
                    other_messages = p.other_messages,
                    left = p.left,
                    "bounce maildir read"
                )
            }
            _ => {}
        }
        if !stop.sleep(Duration::from_secs(2)).await {
            return;
        }
    }
}

/// The format of a dropped file, by its name: `*.json` Cowrie logs,
/// `*.eml` X-ARF mails, anything else a Shadowserver report (whose type is
/// in the name).
fn format_of(name: &str) -> kanki_events::Format {
    use kanki_events::Format;
    if name.contains("cowrie") {
        Format::Cowrie
    } else if name.ends_with(".eml") || name.contains("xarf") {
        Format::Xarf
    } else {
        Format::Shadowserver
    }
}

/// `dir/name`, or `dir/name.N` when a file of that name is there already
/// (the same name dropped again).
fn free_name(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    let first = dir.join(name);
    let mut to = first.clone();
    let mut n = 1;
    while to.exists() {
        to = PathBuf::from(format!("{}.{n}", first.display()));
        n += 1;
    }
    to
}

/// Ingests each complete file dropped in `dir`, then moves it to `done/`
/// with its summary beside it (`NAME.summary.json`: events, skipped lines
/// with their reasons, unknown columns), or to `failed/` with the reason
/// (`NAME.error.txt`). A file is moved only after its ingest finished, so
/// after a crash it is still there and is ingested again: events already
/// stored are recognized by their keys and nothing is doubled.
async fn watch_loop(st: ApiState, dir: PathBuf, mut stop: kanki_jobs::Stop) {
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| kanki_removal::ingest::waiting_report(p))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for path in files {
            let st2 = st.clone();
            let p = path.clone();
            let done = tokio::task::spawn_blocking(move || ingest_file(&st2, &p)).await;
            let (to_dir, report, text) = match done {
                Ok(Ok(s)) => {
                    tracing::info!(file = %path.display(), events = s.events, duplicates = s.duplicates, attributed = s.attributed, skipped = s.skipped.total(), "ingested");
                    let json = serde_json::to_string_pretty(&s).unwrap_or_default();
                    ("done", "summary.json", json)
                }
                Ok(Err(e)) => {
                    tracing::error!(file = %path.display(), error = %e, "ingest failed");
                    ("failed", "error.txt", format!("{e}\n"))
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "ingest panicked");
                    ("failed", "error.txt", format!("the ingest stopped: {e}\n"))
                }
            };
            let to = free_name(&dir.join(to_dir), path.file_name().unwrap_or_default());
            let beside = PathBuf::from(format!("{}.{report}", to.display()));
            if let Err(e) = std::fs::write(&beside, text) {
                tracing::error!(file = %beside.display(), error = %e, "cannot write an ingest report");
            }
            if let Err(e) = std::fs::rename(&path, &to) {
                tracing::error!(file = %path.display(), error = %e, "cannot move an ingested file");
            }
        }
        if !stop.sleep(Duration::from_secs(2)).await {
            return;
        }
    }
}

fn ingest_file(
    st: &ApiState,
    path: &Path,
) -> Result<kanki_removal::ingest::IngestSummary, kanki_service::ServiceError> {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    // Not through a link swapped in since the listing (O_NOFOLLOW).
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| kanki_service::ServiceError::Io {
            context: format!("cannot open {}", path.display()),
            source: e,
        })?;
    let source = Source {
        format: format_of(&name),
        report_type: None,
        mapping: None,
        origin: name,
        actor: "removal".into(),
    };
    let mut meter = kanki_api::metrics::IngestMeter::new(st.metrics.clone());
    let s = kanki_removal::ingest::ingest(
        &st.kanki,
        &st.directory.compiled(),
        &source,
        Box::new(f),
        &mut |s| meter.progress(s),
    )?;
    meter.progress(&s);
    Ok(s)
}
