//! `kanki serve`'s RPZ primary: the `[rpz]` zones, fed from the policy
//! snapshot in use (kanki_dns::rpz does the DNS).

use std::sync::Arc;

use anyhow::Context;
use kanki_dns::rpz::{ListSource, RpzServer, RunOptions};
use kanki_exports::DnsList;
use kanki_policy::PolicyHandle;
use kanki_service::Kanki;
use kanki_store::Selection;
use prometheus_client::registry::Registry;

/// The list as the current policy snapshot has it.
struct SnapshotSource {
    kanki: Arc<Kanki>,
    policy: Arc<PolicyHandle>,
}

impl ListSource for SnapshotSource {
    fn generation(&self) -> u64 {
        self.policy.load().generation()
    }

    fn list(&self, sel: &Selection) -> Result<DnsList, String> {
        let snapshot = self.policy.load_full();
        self.kanki
            .dns_list_of(&snapshot, sel)
            .map_err(|e| e.to_string())
    }
}

/// The primary from the configuration, its counters registered; `None`
/// when no zone is configured.
pub fn setup(
    kanki: &Kanki,
    registry: &mut Registry,
) -> anyhow::Result<Option<(Arc<RpzServer>, RunOptions)>> {
    let Some((server, opts)) = kanki_dns::rpz::from_config(&kanki.config)
        .map_err(anyhow::Error::msg)
        .context("cannot set up the RPZ primary ([rpz])")?
    else {
        return Ok(None);
    };
    server.stats.register(registry);
    Ok(Some((Arc::new(server), opts)))
}

/// Runs the primary in the background; fails now if it cannot listen.
pub async fn spawn(
    server: Arc<RpzServer>,
    opts: RunOptions,
    kanki: Arc<Kanki>,
    policy: Arc<PolicyHandle>,
) -> anyhow::Result<()> {
    let listen = opts.listen;
    // Bind first, so that a taken port stops `kanki serve` at start.
    let probe = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (rpz.listen)"))?;
    drop(probe);
    let source = Arc::new(SnapshotSource { kanki, policy });
    tokio::spawn(async move {
        if let Err(e) = kanki_dns::rpz::run(server, source, opts).await {
            tracing::error!(error = %e, %listen, "the RPZ primary stopped");
        }
    });
    Ok(())
}
