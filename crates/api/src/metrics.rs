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
pub struct JobLabels {
    /// The background job's name ("policy refresher", "feed urlhaus", ...).
    pub job: String,
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
pub struct StageLabels {
    pub stage: String,
}

/// The ingest stages counted, in the pipeline's order: records read,
/// rejected as unusable, stored before (a replay), attributed to a
/// subscriber or not, stored; and the cases they opened and updated.
pub const INGEST_STAGES: [&str; 8] = [
    "read",
    "rejected",
    "duplicate",
    "attributed",
    "unattributed",
    "stored",
    "cases-opened",
    "cases-updated",
];

/// The notice-sending stages counted: mails handed to the SMTP server,
/// letters queued, sends failed, bounces, mails to retry later.
pub const NOTICE_STAGES: [&str; 5] = ["mailed", "letters", "failed", "bounced", "retry-later"];

/// An ingest summary's totals, stage by stage ([`INGEST_STAGES`]).
fn ingest_totals(s: &kanki_removal::ingest::IngestSummary) -> [u64; INGEST_STAGES.len()] {
    [
        s.records,
        s.skipped.total(),
        s.duplicates,
        s.attributed,
        s.unattributed.total(),
        s.events,
        s.cases_opened,
        s.cases_updated,
    ]
}

/// Counts one ingest run's progress per stage: each summary it is given
/// (the run's totals so far) adds what grew since the one before.
pub struct IngestMeter {
    metrics: std::sync::Arc<Metrics>,
    seen: [u64; INGEST_STAGES.len()],
}

impl IngestMeter {
    pub fn new(metrics: std::sync::Arc<Metrics>) -> IngestMeter {
        IngestMeter {
            metrics,
            seen: [0; INGEST_STAGES.len()],
        }
    }

    pub fn progress(&mut self, s: &kanki_removal::ingest::IngestSummary) {
        for (i, total) in ingest_totals(s).into_iter().enumerate() {
            let grew = total.saturating_sub(self.seen[i]);
            if grew > 0 {
                self.metrics
                    .ingest
                    .get_or_create(&StageLabels {
                        stage: INGEST_STAGES[i].into(),
                    })
                    .inc_by(grew);
            }
            self.seen[i] = self.seen[i].max(total);
        }
    }
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
    /// Events through each ingest stage ([`INGEST_STAGES`]).
    pub ingest: Family<StageLabels, Counter>,
    /// Notices through each sending stage ([`NOTICE_STAGES`]).
    pub notices: Family<StageLabels, Counter>,
    /// The stage counters' recent samples, for their live rates.
    pub stage_rates: crate::dashboard::StageRates,
    /// Background jobs running, and started again after a panic, by job
    /// (copied from the supervisor at each scrape).
    pub jobs: Family<JobLabels, Gauge>,
    pub job_restarts: Family<JobLabels, Counter>,
    pub jobs_source: std::sync::OnceLock<std::sync::Arc<kanki_jobs::JobStates>>,
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
            ingest: Family::default(),
            notices: Family::default(),
            stage_rates: crate::dashboard::StageRates::default(),
            jobs: Family::default(),
            job_restarts: Family::default(),
            jobs_source: std::sync::OnceLock::new(),
            registry: Registry::default(),
        };
        registry.register(
            "background_jobs",
            "Background jobs of kanki serve running now, by job (0: the job ended)",
            m.jobs.clone(),
        );
        registry.register(
            "background_job_restarts",
            "Background jobs started again after a panic, by job",
            m.job_restarts.clone(),
        );
        registry.register(
            "ingest_events",
            "Report records and sensor events through each ingest stage: read, rejected (unusable), duplicate (stored before), attributed, unattributed, stored; and the cases they opened and updated",
            m.ingest.clone(),
        );
        registry.register(
            "notices_sent",
            "Notices through each sending stage: mailed (handed to the SMTP server), letters (queued), failed, bounced, retry-later",
            m.notices.clone(),
        );
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
    /// Counts a notice-sending turn per stage.
    pub fn count_notices(&self, s: &kanki_removal::notice::SendSummary) {
        if s.dry_run {
            return;
        }
        let counts = [
            s.mails_sent,
            s.letters_queued,
            s.failed,
            s.bounced,
            s.retry_later,
        ];
        for (stage, n) in NOTICE_STAGES.iter().zip(counts) {
            if n > 0 {
                self.notices
                    .get_or_create(&StageLabels {
                        stage: (*stage).into(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// Counts notices found bounced in the bounce mailbox.
    pub fn count_bounced(&self, n: u64) {
        self.notices
            .get_or_create(&StageLabels {
                stage: "bounced".into(),
            })
            .inc_by(n);
    }

    /// Every stage counter's total now: ingest's, then notices', in their
    /// stages' order.
    pub fn stage_totals(&self) -> Vec<u64> {
        let of = |family: &Family<StageLabels, Counter>, stage: &str| {
            family
                .get_or_create(&StageLabels {
                    stage: stage.into(),
                })
                .get()
        };
        INGEST_STAGES
            .iter()
            .map(|s| of(&self.ingest, s))
            .chain(NOTICE_STAGES.iter().map(|s| of(&self.notices, s)))
            .collect()
    }

    /// Samples the stage counters for their live rates.
    pub fn sample_stages(&self, at: std::time::Instant) {
        self.stage_rates.sample(at, self.stage_totals());
    }

    /// Copies the background jobs' states into `jobs` and `job_restarts`.
    pub fn sync_jobs(&self) {
        let Some(states) = self.jobs_source.get() else {
            return;
        };
        // Every job started, 0 once it ended.
        for (job, n) in states.running() {
            self.jobs.get_or_create(&JobLabels { job }).set(n as i64);
        }
        for (job, n) in states.restarts() {
            let counter = self.job_restarts.get_or_create(&JobLabels { job });
            if n > counter.get() {
                counter.inc_by(n - counter.get());
            }
        }
    }

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
