//! `kanki serve`'s DNS front: kanki_dns::front does the DNS; here is the
//! decision per query, from the policy snapshot, the subscriber directory,
//! proceed-once passes and the walled garden.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kanki_dns::front::{Decider, Decision, Front, FrontOptions, FrontStats};
use kanki_policy::{PolicyHandle, Verdict};
use kanki_service::directory::Directory;
use kanki_service::front::{Garden, Passes};
use prometheus_client::registry::Registry;

pub struct PolicyDecider {
    pub policy: Arc<PolicyHandle>,
    pub directory: Arc<Directory>,
    pub passes: Arc<Passes>,
    pub garden: Arc<Garden>,
}

impl Decider for PolicyDecider {
    fn decide(&self, client: IpAddr, name: &[u8]) -> Decision {
        let client = match client {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        // Unix seconds, read straight from the clock (chrono's `Utc::now`
        // builds a calendar date first; this runs on every query).
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let who = self
            .directory
            .with_subscriber_now(client, now, |subscriber, consents| {
                let gardened = !self.garden.is_empty() && self.garden.contains(subscriber);
                (gardened, consents)
            });
        let Some((gardened, consents)) = who else {
            return Decision::Forward;
        };
        let text = std::str::from_utf8(name).unwrap_or("");
        if gardened && !self.garden.allows_name(text) {
            return Decision::Warn {
                indicator: None,
                garden: true,
            };
        }
        if !consents {
            return Decision::Forward;
        }
        match self.policy.load().lookup(name) {
            Verdict::Listed { indicators, .. }
                if !self.passes.allows(client, text, Instant::now()) =>
            {
                Decision::Warn {
                    indicator: indicators.first().copied(),
                    garden: false,
                }
            }
            _ => Decision::Forward,
        }
    }
}

/// The front's counters, registered, when `[dns] listen` is set.
pub fn stats(config: &kanki_config::Config, registry: &mut Registry) -> Option<Arc<FrontStats>> {
    if config.dns.listen.is_empty() {
        return None;
    }
    let stats = Arc::new(FrontStats::default());
    stats.register(registry);
    Some(stats)
}

/// Starts the DNS front; fails now if it cannot listen or open its
/// upstream sockets.
pub async fn spawn(
    config: &kanki_config::Config,
    decider: PolicyDecider,
    stats: Arc<FrontStats>,
) -> anyhow::Result<()> {
    let opts = FrontOptions::from_config(&config.dns)
        .map_err(anyhow::Error::msg)
        .context("[dns]")?;
    let front = Front::new(opts, Arc::new(decider), stats)
        .await
        .context("cannot open the DNS front's upstream sockets")?;
    kanki_dns::front::run(Arc::new(front))
        .await
        .context("cannot listen on dns.listen")?;
    Ok(())
}
