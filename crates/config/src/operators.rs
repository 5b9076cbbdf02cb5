//! `[operators]`: sign-in, sessions and tokens of the operator API.

use serde::{Deserialize, Serialize};

use crate::HumanDuration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorsConfig {
    /// A browser session unused this long ends.
    pub session_idle: HumanDuration,
    /// A browser session ends this long after sign-in, however busy.
    pub session_absolute: HumanDuration,
    /// How often `kanki serve` reloads operators, tokens and sessions
    /// (a token revoked with `kanki tokens revoke` stops working within
    /// this time) and writes tokens' last-used times.
    pub refresh_every: HumanDuration,
    /// Source prefixes that may read `/metrics` without a token (a
    /// Prometheus server); empty: a token with the `metrics` permission is
    /// needed.
    pub metrics_scrapers: Vec<ipnet::IpNet>,
}

impl Default for OperatorsConfig {
    fn default() -> Self {
        OperatorsConfig {
            session_idle: HumanDuration::secs(30 * 60),
            session_absolute: HumanDuration::secs(12 * 3600),
            refresh_every: HumanDuration::secs(2),
            metrics_scrapers: Vec::new(),
        }
    }
}
