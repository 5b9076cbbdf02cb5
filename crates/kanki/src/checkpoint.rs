//! Signed checkpoints of the audit chain's head, written where
//! `[audit] checkpoint_to` says: appended to a file, or sent to the local
//! syslog (facility auth), from where the operator ships them to a place
//! the database's writer cannot change. See `kanki_audit::checkpoint`.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use kanki_audit::checkpoint::{Checkpoint, Signer};
use kanki_service::Kanki;

/// The local syslog socket.
const SYSLOG: &str = "/dev/log";

/// Signs the chain's head now and delivers the checkpoint.
pub fn write(k: &Kanki) -> anyhow::Result<Checkpoint> {
    let a = &k.config.audit;
    let key = a
        .checkpoint_key_file
        .as_ref()
        .context("audit.checkpoint_key_file is not set")?;
    let to = a
        .checkpoint_to
        .as_deref()
        .context("audit.checkpoint_to is not set")?;
    let signer = Signer::from_file(key).map_err(anyhow::Error::msg)?;
    let (seq, hash) = k.audit_head()?;
    let c = signer.sign(seq, &hash, Utc::now());
    deliver(to, &c.to_string()).with_context(|| format!("cannot write a checkpoint to {to}"))?;
    Ok(c)
}

fn deliver(to: &str, line: &str) -> std::io::Result<()> {
    if to == "syslog" {
        // RFC 3164 as the local daemon reads it: auth.notice (4 * 8 + 5).
        let msg = format!("<37>kanki[{}]: {line}", std::process::id());
        let s = std::os::unix::net::UnixDatagram::unbound()?;
        s.send_to(msg.as_bytes(), SYSLOG)?;
        return Ok(());
    }
    let mut f = crate::files::open_private_append(std::path::Path::new(to))?;
    writeln!(f, "{line}")?;
    f.sync_data()
}

/// `kanki serve`'s schedule: a checkpoint every `audit.checkpoint_every`
/// when a key and a destination are configured, the first at start.
pub async fn run(k: Arc<Kanki>, mut stop: kanki_jobs::Stop) {
    let a = &k.config.audit;
    if a.checkpoint_key_file.is_none() || a.checkpoint_to.is_none() {
        return;
    }
    let every = a.checkpoint_every.0;
    loop {
        let k2 = k.clone();
        match tokio::task::spawn_blocking(move || write(&k2)).await {
            Ok(Ok(c)) => tracing::info!(seq = c.seq, head = %c.hash, "audit checkpoint written"),
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "audit checkpoint not written")
            }
            Err(e) => tracing::error!(error = %e, "audit checkpoint panicked"),
        }
        if !stop.sleep(every).await {
            return;
        }
    }
}
