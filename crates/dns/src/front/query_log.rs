//! The debugging query log: one line per query (time, client, name, type,
//! answer) in one file a day, `PATH.YYYY-MM-DD`; files older than the
//! retention are deleted. Off unless configured: it is a record of
//! communications. Written by a task of its own; when it falls behind,
//! lines are dropped rather than slowing the answers.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

pub struct QueryLog {
    tx: mpsc::Sender<String>,
}

impl QueryLog {
    /// Starts the writer (inside a runtime).
    pub fn start(path: PathBuf, keep: Duration) -> QueryLog {
        let (tx, rx) = mpsc::channel(65_536);
        tokio::task::spawn_blocking(move || write_lines(path, keep, rx));
        QueryLog { tx }
    }

    pub fn record(&self, client: IpAddr, qname: &[u8], qtype: u16, answer: &str) {
        let mut name = [0u8; 256];
        let name = super::wire::dotted(qname, &mut name)
            .map_or_else(|| "(unprintable)".into(), String::from_utf8_lossy);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let _ = self
            .tx
            .try_send(format!("{now} {client} {name}. {qtype} {answer}\n"));
    }
}

fn write_lines(path: PathBuf, keep: Duration, mut rx: mpsc::Receiver<String>) {
    let mut open: Option<(String, std::fs::File)> = None;
    while let Some(line) = rx.blocking_recv() {
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        if open.as_ref().is_none_or(|(d, _)| *d != day) {
            let file = PathBuf::from(format!("{}.{day}", path.display()));
            // A record of communications: for kanki's user alone.
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&file)
            {
                Ok(f) => open = Some((day, f)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot write the query log");
                    continue;
                }
            }
            remove_old(&path, keep);
        }
        if let Some((_, f)) = &mut open {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Deletes `PATH.*` files last written longer ago than `keep`.
fn remove_old(path: &std::path::Path, keep: Duration) {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", stem.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > keep);
        if old && e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
