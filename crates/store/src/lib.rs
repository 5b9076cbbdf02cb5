//! kanki's state, behind one storage interface.
//!
//! Callers see [`Store`] and the plain types of this crate; no SQL and no
//! backend type leaves it. The embedded default is SQLite in WAL mode in the
//! data directory ([`Store::open_sqlite`]); a PostgreSQL backend is added by
//! implementing [`Backend`] for it, without touching the callers.
//! Migrations are versioned and applied when a store is opened.

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

mod crawl;
mod directory;
mod event_segment;
mod import;
mod removal;
mod sqlite;
mod types;
mod warning;

pub use crawl::*;
pub use directory::*;
pub use import::{ImportProgress, Importer};
pub use removal::*;
pub use types::*;
pub use warning::*;

use chrono::{DateTime, Utc};
use kanki_indicators::{AllowEntry, Indicator, IndicatorId, Status};

/// Result of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a storage backend provides. Every method is a complete, atomic
/// operation: when it returns `Ok`, the change is durable.
pub trait Backend: Send + Sync {
    /// The list's generation: it grows with every change to what is listed.
    fn generation(&self) -> Result<u64>;

    /// Registers (or updates) sources and their per-source rules.
    fn sync_sources(&self, sources: &[SourceSpec]) -> Result<()>;

    /// Starts an import run and returns its id.
    fn begin_import(
        &self,
        source: &SourceSpec,
        format: &str,
        origin: &str,
        now: DateTime<Utc>,
    ) -> Result<i64>;
    /// Applies one chunk of an import run atomically and records the run's
    /// progress with it.
    fn apply_import_chunk(
        &self,
        run: &mut ImportRun,
        records: &[kanki_feeds::FeedRecord],
    ) -> Result<ChunkCounts>;
    /// Marks an import run finished (`completed` or `failed`).
    fn finish_import(&self, summary: &ImportSummary, now: DateTime<Utc>) -> Result<()>;
    /// The most recent import runs, newest first.
    fn recent_imports(&self, limit: u32) -> Result<Vec<ImportRecord>>;
    /// Adds each `(bucket, counter, count)` to the counter's count in its
    /// bucket (Unix seconds, the bucket's start).
    fn add_counter_counts(&self, counts: &[(i64, &str, u64)]) -> Result<()>;
    /// The counters' counts from bucket `since` on, oldest first.
    fn counter_counts(&self, since: i64) -> Result<Vec<(i64, String, u64)>>;
    /// Removes the counts of buckets before `before`; how many.
    fn trim_counter_counts(&self, before: i64) -> Result<u64>;
    /// The list's size: indicators by status and category, and the active
    /// ones by source (an indicator listed by two sources counts for
    /// each). A full scan: cache it.
    fn list_counts(&self) -> Result<ListCounts>;
    /// The latest import run of `source`, with its summary (JSON text:
    /// counts and the skipped rows by reason) once it has finished.
    fn last_import_of(&self, source: &str) -> Result<Option<(ImportRecord, Option<String>)>>;

    /// Adds an indicator, or a source's sighting of a listed one, made by
    /// `actor`.
    fn add_indicator(
        &self,
        new: &NewIndicator,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Indicator, bool)>;
    fn get_indicator(&self, id: IndicatorId) -> Result<Option<Indicator>>;
    fn find_indicator(&self, value: &str) -> Result<Option<Indicator>>;
    fn list_indicators(&self, query: &ListQuery) -> Result<Page>;
    /// Sets an operator status (`false-positive`, `delisted`, or back to
    /// `active`) with the operator's reason.
    fn set_status(
        &self,
        id: IndicatorId,
        status: Status,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Indicator>;
    fn delete_indicator(&self, id: IndicatorId, actor: &str, now: DateTime<Utc>) -> Result<bool>;
    /// The indicator's history, newest first, at most `limit`: its changes
    /// with who made each, and each source's first sighting.
    fn indicator_history(&self, id: IndicatorId, limit: u32) -> Result<Vec<IndicatorChange>>;
    fn add_evidence(
        &self,
        id: IndicatorId,
        evidence: &NewEvidence,
        now: DateTime<Utc>,
    ) -> Result<i64>;
    fn counts_by_status(&self) -> Result<Vec<(Status, u64)>>;

    fn allowlist(&self) -> Result<Vec<StoredAllowEntry>>;
    fn add_allow(&self, entry: &AllowEntry, now: DateTime<Utc>) -> Result<StoredAllowEntry>;
    fn remove_allow(&self, id: i64, now: DateTime<Utc>) -> Result<bool>;
    /// Replaces every entry of one origin (`config`, `top-sites`) with these.
    fn replace_allow_origin(
        &self,
        origin: &str,
        entries: &[AllowEntry],
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Re-applies the allowlist to every indicator; returns how many changed status.
    fn reapply_allowlist(&self, now: DateTime<Utc>) -> Result<u64>;

    fn host_marks(&self) -> Result<Vec<HostMark>>;
    fn set_host_mark(&self, mark: &HostMark) -> Result<()>;
    fn remove_host_mark(&self, host: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Expires active indicators whose time is up; returns how many.
    fn expire(&self, now: DateTime<Utc>) -> Result<u64>;

    /// The DNS-level list: each name with an indicator that lists it. Domain
    /// indicators, and the hosts of URL indicators from sources whose URL
    /// hosts are listed, except hosts marked compromised. Allowlisted and
    /// inactive indicators are not in it.
    fn for_each_dns_name(&self, f: &mut dyn FnMut(&str, IndicatorId)) -> Result<()>;
    /// Active IP indicators (addresses and CIDR blocks).
    fn for_each_ip(&self, f: &mut dyn FnMut(&str, IndicatorId)) -> Result<()>;
    /// Ids of the active indicators in a selection, in no particular order.
    fn for_each_selected(&self, sel: &Selection, f: &mut dyn FnMut(IndicatorId)) -> Result<()>;
    /// Every indicator matching the filter, with its sources, in id order.
    fn for_each_indicator(&self, filter: &ListQuery, f: &mut dyn FnMut(Indicator)) -> Result<()>;
}

/// The store: a backend behind the [`Backend`] interface.
pub struct Store {
    backend: Arc<dyn Backend>,
    directory: Arc<dyn DirectoryBackend>,
    crawl: Arc<dyn CrawlBackend>,
    removal: Arc<dyn RemovalBackend>,
    warning: Arc<dyn WarningBackend>,
    operators: Arc<dyn kanki_operators::OperatorStore>,
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path`, applying
    /// pending migrations and marking imports that a crash interrupted.
    pub fn open_sqlite(path: &Path, options: &SqliteOptions) -> Result<Store> {
        let backend = Arc::new(sqlite::SqliteBackend::open(path, options)?);
        Ok(Store {
            backend: backend.clone(),
            directory: backend.clone(),
            crawl: backend.clone(),
            removal: backend.clone(),
            warning: backend.clone(),
            operators: backend,
        })
    }

    /// The subscriber directory and the audit log.
    pub fn directory(&self) -> &dyn DirectoryBackend {
        self.directory.as_ref()
    }

    /// The crawler's evidence and re-checked sites.
    pub fn crawl(&self) -> &dyn CrawlBackend {
        self.crawl.as_ref()
    }

    /// Events, cases, notices and escalations.
    pub fn removal(&self) -> &dyn RemovalBackend {
        self.removal.as_ref()
    }

    /// The warning page's hit counts and false-positive queue, and the
    /// walled garden.
    pub fn warning(&self) -> &dyn WarningBackend {
        self.warning.as_ref()
    }

    /// Operators, their API tokens and browser sessions.
    pub fn operators(&self) -> &dyn kanki_operators::OperatorStore {
        self.operators.as_ref()
    }
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}
