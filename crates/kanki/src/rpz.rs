//! `kanki serve`'s RPZ primary: the `[rpz]` zones, fed from the policy
//! snapshot in use (kanki_dns::rpz does the DNS).

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use kanki_dns::rpz::scope::ConsentSource;
use kanki_dns::rpz::{ListSource, RpzServer, RunOptions};
use kanki_exports::{DnsList, IpTrigger};
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

/// Client scoping from the subscriber directory: the prefixes statically
/// assigned now to subscribers who consent. Its version moves with consent
/// and bindings, and each minute (an assignment may begin or end with no
/// write); the zone is published only when its content changes.
struct DirectoryConsent {
    kanki: Arc<Kanki>,
}

impl ConsentSource for DirectoryConsent {
    fn consenting(&self) -> std::io::Result<Vec<IpTrigger>> {
        let prefixes = self
            .kanki
            .store
            .directory()
            .consenting_static_prefixes(Utc::now())
            .map_err(std::io::Error::other)?;
        Ok(prefixes
            .into_iter()
            .map(|p| IpTrigger {
                addr: p.network(),
                prefix: p.prefix_len(),
            })
            .collect())
    }

    fn version(&self) -> u64 {
        let d = self.kanki.store.directory();
        let (consent, bindings) = (
            d.consent_generation().unwrap_or(0),
            d.directory_generation().unwrap_or(0),
        );
        let minute = (Utc::now().timestamp() / 60) as u64;
        consent.rotate_left(42) ^ bindings.rotate_left(21) ^ minute
    }
}

/// The primary from the configuration, its counters registered; `None`
/// when no zone is configured.
pub fn setup(
    kanki: &Arc<Kanki>,
    registry: &mut Registry,
) -> anyhow::Result<Option<(Arc<RpzServer>, RunOptions)>> {
    let consent = Arc::new(DirectoryConsent {
        kanki: kanki.clone(),
    });
    let Some((server, opts)) = kanki_dns::rpz::from_config(&kanki.config, consent)
        .map_err(anyhow::Error::msg)
        .context("cannot set up the RPZ primary ([rpz])")?
    else {
        return Ok(None);
    };
    server.stats.register(registry);
    Ok(Some((Arc::new(server), opts)))
}

/// Runs the primary in the background once every zone is built (so a
/// secondary that asks as soon as `kanki serve` is healthy gets its zone);
/// fails now if it cannot listen.
pub async fn spawn(
    server: Arc<RpzServer>,
    opts: RunOptions,
    kanki: Arc<Kanki>,
    policy: Arc<PolicyHandle>,
) -> anyhow::Result<()> {
    let listen = opts.listen;
    let source = Arc::new(SnapshotSource { kanki, policy });
    let primary = kanki_dns::rpz::start(server, source, opts)
        .await
        .with_context(|| format!("cannot listen on {listen} (rpz.listen)"))?;
    tokio::spawn(primary);
    Ok(())
}
