//! The removal loop in `kanki serve`: notices sent on a schedule, report
//! files dropped in the watched directory ingested, and kanki's own sensor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use kanki_api::ApiState;
use kanki_removal::ingest::Source;

pub async fn spawn(st: &ApiState) -> anyhow::Result<()> {
    tokio::spawn(notice_loop(st.clone()));
    if let Some(dir) = st.kanki.config.removal.watch_dir.clone() {
        for sub in ["done", "failed"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        tokio::spawn(watch_loop(st.clone(), dir));
    }
    Ok(())
}

async fn notice_loop(st: ApiState) {
    let every = st.kanki.config.notices.send_every.0;
    loop {
        tokio::time::sleep(every).await;
        let k = st.kanki.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mailer = kanki_notify::Mailer::new(&k.config.smtp)
                .map_err(kanki_service::ServiceError::Invalid)?;
            kanki_removal::notice::send_due(&k, Some(&mailer), false, Utc::now())
        })
        .await;
        match done {
            Ok(Ok(s)) => tracing::info!(
                mailed = s.mails_sent,
                letters = s.letters_queued,
                escalated = s.escalated,
                retry = s.retry_later,
                failed = s.failed,
                bounced = s.bounced,
                "notices sent"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "sending notices failed"),
            Err(e) => tracing::error!(error = %e, "sending notices panicked"),
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

async fn watch_loop(st: ApiState, dir: PathBuf) {
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        for path in files {
            let st2 = st.clone();
            let p = path.clone();
            let done = tokio::task::spawn_blocking(move || ingest_file(&st2, &p)).await;
            let ok = matches!(done, Ok(Ok(_)));
            match done {
                Ok(Ok(s)) => {
                    tracing::info!(file = %path.display(), events = s.events, attributed = s.attributed, skipped = s.skipped.total(), "ingested")
                }
                Ok(Err(e)) => tracing::error!(file = %path.display(), error = %e, "ingest failed"),
                Err(e) => tracing::error!(file = %path.display(), error = %e, "ingest panicked"),
            }
            let to = dir
                .join(if ok { "done" } else { "failed" })
                .join(path.file_name().unwrap_or_default());
            if let Err(e) = std::fs::rename(&path, &to) {
                tracing::error!(file = %path.display(), error = %e, "cannot move an ingested file");
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
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
    let f = std::fs::File::open(path).map_err(|e| kanki_service::ServiceError::Io {
        context: format!("cannot open {}", path.display()),
        source: e,
    })?;
    let source = Source {
        format: format_of(&name),
        report_type: None,
        mapping: None,
        origin: name,
    };
    kanki_removal::ingest::ingest(
        &st.kanki,
        &st.directory.compiled(),
        &source,
        Box::new(f),
        &mut |_| {},
    )
}
