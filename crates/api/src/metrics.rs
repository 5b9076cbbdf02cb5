//! Prometheus metrics, served as text at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImportLabels {
    pub source: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RadiusLabels {
    /// received, answered, duplicate, replay, untracked_session, applied,
    /// sink_error, send_error, or
    /// dropped_<reason>.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PermissionLabels {
    pub permission: String,
}

/// Every metric kanki exports so far.
pub struct Metrics {
    pub registry: Registry,
    pub indicators: Family<StatusLabels, Gauge>,
    pub policy_generation: Gauge,
    pub policy_names: Gauge,
    pub policy_memory_bytes: Gauge,
    pub policy_build_seconds: Gauge<f64, AtomicU64>,
    pub policy_rebuilds: Counter,
    pub imports: Family<ImportLabels, Counter>,
    pub import_rows_added: Family<SourceLabels, Counter>,
    pub import_rows_updated: Family<SourceLabels, Counter>,
    pub import_rows_unchanged: Family<SourceLabels, Counter>,
    pub import_rows_skipped: Family<SourceLabels, Counter>,
    pub expired: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    /// Requests refused 401, by reason (missing, malformed, revoked, ...).
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Requests refused 403 for want of a permission, or 400/403 for a
    /// request a browser was tricked into (csrf, origin, host).
    pub forbidden: Family<PermissionLabels, Counter>,
    /// Failed sign-ins, by reason.
    pub sign_in_failures: Family<ReasonLabels, Counter>,
    pub radius: Family<RadiusLabels, Counter>,
    /// The RADIUS server's own counters, copied into `radius` at each scrape.
    pub radius_source: std::sync::OnceLock<std::sync::Arc<kanki_radius::server::Counters>>,
    pub directory_bindings: Gauge,
    pub directory_consenting: Gauge,
    /// Bindings changed since the index was built, laid over it.
    pub directory_changed: Gauge,
    /// Overlapping holders, stops without a start, lines a followed file
    /// skipped, by kind (copied from the directory at each scrape).
    pub directory_events: Family<EventLabels, Counter>,
    /// The removal loop's outcomes, set at each scrape.
    pub removal: kanki_removal::outcomes::OutcomeGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kanki");
        let removal = kanki_removal::outcomes::OutcomeGauges::register(&mut registry);
        let m = Metrics {
            removal,
            indicators: Family::default(),
            policy_generation: Gauge::default(),
            policy_names: Gauge::default(),
            policy_memory_bytes: Gauge::default(),
            policy_build_seconds: Gauge::default(),
            policy_rebuilds: Counter::default(),
            imports: Family::default(),
            import_rows_added: Family::default(),
            import_rows_updated: Family::default(),
            import_rows_unchanged: Family::default(),
            import_rows_skipped: Family::default(),
            expired: Counter::default(),
            http_requests: Family::default(),
            auth_failures: Family::default(),
            forbidden: Family::default(),
            sign_in_failures: Family::default(),
            radius: Family::default(),
            radius_source: std::sync::OnceLock::new(),
            directory_bindings: Gauge::default(),
            directory_consenting: Gauge::default(),
            directory_changed: Gauge::default(),
            directory_events: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "api_auth_failures",
            "API requests refused as unauthenticated (401), by reason",
            m.auth_failures.clone(),
        );
        registry.register(
            "api_forbidden",
            "API requests refused: 403 for want of a permission or as cross-site (csrf, origin); 400 for another Host (host) or an unreadable forwarded address (forwarded)",
            m.forbidden.clone(),
        );
        registry.register(
            "sign_in_failures",
            "Failed sign-ins, by reason",
            m.sign_in_failures.clone(),
        );
        registry.register(
            "indicators",
            "Indicators in the store by status",
            m.indicators.clone(),
        );
        registry.register(
            "policy_generation",
            "List generation of the policy snapshot in use",
            m.policy_generation.clone(),
        );
        registry.register(
            "policy_names",
            "Names on the DNS-level list in the policy snapshot",
            m.policy_names.clone(),
        );
        registry.register(
            "policy_memory_bytes",
            "Memory held by the policy snapshot",
            m.policy_memory_bytes.clone(),
        );
        registry.register(
            "policy_build_seconds",
            "Time the last policy snapshot build took",
            m.policy_build_seconds.clone(),
        );
        registry.register(
            "policy_rebuilds",
            "Policy snapshots built and swapped in",
            m.policy_rebuilds.clone(),
        );
        registry.register(
            "imports",
            "Import runs by source and outcome",
            m.imports.clone(),
        );
        registry.register(
            "import_rows_added",
            "Rows that added an indicator",
            m.import_rows_added.clone(),
        );
        registry.register(
            "import_rows_updated",
            "Rows that changed an indicator",
            m.import_rows_updated.clone(),
        );
        registry.register(
            "import_rows_unchanged",
            "Rows seen again unchanged",
            m.import_rows_unchanged.clone(),
        );
        registry.register(
            "import_rows_skipped",
            "Rows skipped as malformed or unusable",
            m.import_rows_skipped.clone(),
        );
        registry.register(
            "expired",
            "Indicators expired by the expiry job",
            m.expired.clone(),
        );
        registry.register(
            "radius_requests",
            "RADIUS accounting requests by outcome (drops by reason)",
            m.radius.clone(),
        );
        registry.register(
            "directory_bindings",
            "Bindings in the directory's index",
            m.directory_bindings.clone(),
        );
        registry.register(
            "directory_consenting_subscribers",
            "Subscribers who consent to be warned",
            m.directory_consenting.clone(),
        );
        registry.register(
            "directory_changed_bindings",
            "Bindings changed since the directory's index was built, laid over it until the next rebuild",
            m.directory_changed.clone(),
        );
        registry.register(
            "directory_events",
            "Directory events by kind: overlap (a binding starting on an address another holder still holds), stop without start, index rebuilt, changes wait for a rebuild (more changed bindings than directory.overlay_most), and what a followed lease or accounting file skipped, by reason",
            m.directory_events.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP API requests by method and status code",
            m.http_requests.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a finished import.
    pub fn record_import(&self, s: &kanki_store::ImportSummary) {
        let src = SourceLabels {
            source: s.source.clone(),
        };
        self.imports
            .get_or_create(&ImportLabels {
                source: s.source.clone(),
                status: s.status.clone(),
            })
            .inc();
        self.import_rows_added.get_or_create(&src).inc_by(s.added);
        self.import_rows_updated
            .get_or_create(&src)
            .inc_by(s.updated);
        self.import_rows_unchanged
            .get_or_create(&src)
            .inc_by(s.unchanged);
        self.import_rows_skipped
            .get_or_create(&src)
            .inc_by(s.skipped);
    }

    /// Records the snapshot now in use.
    pub fn record_snapshot(&self, s: &kanki_policy::Snapshot, build_seconds: Option<f64>) {
        self.policy_generation.set(s.generation() as i64);
        self.policy_names.set(s.listed_names() as i64);
        self.policy_memory_bytes.set(s.memory_bytes() as i64);
        if let Some(secs) = build_seconds {
            self.policy_build_seconds.set(secs);
            self.policy_rebuilds.inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Metrics {
    /// Copies the RADIUS server's counters (monotonic) into `radius`.
    pub fn sync_radius(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(c) = self.radius_source.get() else {
            return;
        };
        let set = |outcome: &str, v: u64| {
            let counter = self.radius.get_or_create(&RadiusLabels {
                outcome: outcome.to_string(),
            });
            let have = counter.get();
            if v > have {
                counter.inc_by(v - have);
            }
        };
        set("received", c.received.load(Relaxed));
        set("answered", c.answered.load(Relaxed));
        set("duplicate", c.duplicates.load(Relaxed));
        set("applied", c.events.load(Relaxed));
        set("sink_error", c.sink_errors.load(Relaxed));
        set("send_error", c.send_errors.load(Relaxed));
        set("replay", c.replays.load(Relaxed));
        set("untracked_session", c.untracked_sessions.load(Relaxed));
        for &r in kanki_radius::server::DropReason::ALL {
            set(&format!("dropped_{}", r.as_str()), c.dropped(r));
        }
    }
}
