use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kanki_indicators::{AllowEntry, Category, Kind, Status, Tlp};
use serde::{Deserialize, Serialize};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Input(String),
    #[error("storage error: {0}")]
    Backend(String),
    #[error(
        "the store's schema version {found} is newer than this kanki knows ({known}); upgrade kanki"
    )]
    SchemaTooNew { found: i64, known: i64 },
}

/// Options of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// `synchronous=FULL` (survives power loss) rather than `NORMAL`.
    pub synchronous_full: bool,
    pub busy_timeout: Duration,
    /// How many open RADIUS sessions the writer remembers, so that an
    /// Interim-Update of a known session writes nothing and a Stop writes
    /// by row id (0: none; each costs about 100 bytes).
    pub open_sessions_kept: usize,
    /// Page cache of each connection, in KiB. SQLite allocates it only as
    /// pages are used, so it is a bound on memory rather than a reservation;
    /// the store has a writer, four readers and a checkpointer.
    pub page_cache_kib: u32,
    /// Bytes the writer may hold of the stored event keys of recent hours,
    /// to tell a replayed event without reading the key index.
    pub held_keys_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous_full: true,
            busy_timeout: Duration::from_secs(30),
            open_sessions_kept: 2_000_000,
            page_cache_kib: 256 * 1024,
            held_keys_bytes: 8 << 20,
        }
    }
}

/// A source of indicators and the rules that apply to its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub name: String,
    /// Category of rows that carry none.
    pub default_category: Category,
    pub default_confidence: u8,
    pub default_tlp: Tlp,
    /// Time to live after the source last saw an indicator; `None`: forever.
    pub ttl: Option<Duration>,
    /// Whether hosts of this source's URL indicators go on the DNS list.
    pub list_url_hosts: bool,
}

/// Counts of one applied chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// State of an import run, carried between its chunks.
#[derive(Debug)]
pub struct ImportRun {
    pub id: i64,
    pub source: SourceSpec,
    pub started_at: DateTime<Utc>,
    pub rows_read: u64,
    pub skipped: u64,
    pub counts: ChunkCounts,
    /// The most bytes the run may hold of what its source lists (see
    /// [`Importer::listed_most_bytes`](crate::Importer::listed_most_bytes)).
    pub listed_most_bytes: usize,
    /// Backend-private state (e.g. what this source already lists).
    pub(crate) cache: Option<Box<dyn std::any::Any + Send>>,
}

/// Skipped rows of one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipGroup {
    pub count: u64,
    /// Line numbers of the first few.
    pub first_lines: Vec<u64>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub import_id: i64,
    pub source: String,
    pub format: String,
    pub origin: String,
    /// Data rows read (records and skipped rows).
    pub rows_read: u64,
    pub added: u64,
    pub updated: u64,
    /// Rows whose indicator was already listed by this source with the same
    /// content; their expiry is refreshed.
    pub unchanged: u64,
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<String, SkipGroup>,
    /// `completed`, or `failed` with `error`.
    pub status: String,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

impl ImportSummary {
    /// Whether the import changed nothing that was listed.
    pub fn changed_nothing(&self) -> bool {
        self.added == 0 && self.updated == 0
    }
}

/// An import run as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    pub id: i64,
    pub source: String,
    pub format: String,
    pub origin: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub rows_read: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
}

/// An indicator added by hand (API or CLI).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIndicator {
    pub value: String,
    /// Detected from the value when absent.
    #[serde(default)]
    pub kind: Option<Kind>,
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub confidence: Option<u8>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub tlp: Option<Tlp>,
    /// Seconds to live; absent: the store's default for the source.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub reference_url: Option<String>,
    #[serde(default)]
    pub reporter: Option<String>,
    /// Source name; `operator` when absent.
    #[serde(default)]
    pub source: Option<String>,
    /// Why it is added, kept in its history.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Evidence to attach to an indicator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvidence {
    pub kind: String,
    pub uri: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// Filters and pagination of an indicator listing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListQuery {
    pub kind: Option<Kind>,
    pub category: Option<Category>,
    pub status: Option<Status>,
    /// Only indicators listed by this source.
    pub source: Option<String>,
    /// Only indicators carrying this tag.
    pub tag: Option<String>,
    /// Substring of the value.
    pub q: Option<String>,
    /// Only indicators with this TLP marking.
    pub tlp: Option<Tlp>,
    /// Only indicators first seen at or after this moment.
    pub first_seen_since: Option<DateTime<Utc>>,
    /// Only indicators first seen before this moment.
    pub first_seen_until: Option<DateTime<Utc>>,
    /// Only indicators with an id greater than this (keyset pagination).
    pub after: Option<i64>,
    /// Page size; default 100, at most 1000.
    pub limit: Option<u32>,
}

/// One page of indicators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub items: Vec<kanki_indicators::Indicator>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<i64>,
    /// How many indicators match the filters in all, counted up to 10,000.
    pub total: u64,
    /// More than `total` match (counting stopped there).
    pub total_at_least: bool,
}

/// An allowlist entry with its store id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAllowEntry {
    pub id: i64,
    #[serde(flatten)]
    pub entry: AllowEntry,
    pub created_at: DateTime<Utc>,
}

/// A host that is a real site carrying malicious URLs: its URLs stay listed
/// but the host as a whole is kept off the DNS-level list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMark {
    pub host: String,
    pub reason: String,
    pub origin: String,
    pub created_at: DateTime<Utc>,
}

/// A cut of the list by what its indicators are, for lists made of a part
/// of it (an RPZ zone per category, source or TLP). An empty field does not
/// filter; the fields that are given must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The indicator's category is one of these.
    pub categories: Vec<Category>,
    /// One of these sources lists the indicator.
    pub sources: Vec<String>,
    /// The indicator's TLP marking is one of these.
    pub tlps: Vec<Tlp>,
}

impl Selection {
    /// Whether the selection takes every indicator.
    pub fn is_everything(&self) -> bool {
        self.categories.is_empty() && self.sources.is_empty() && self.tlps.is_empty()
    }
}

/// The list's size, for the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListCounts {
    /// (status, category, indicators)
    pub by_status_category: Vec<(String, String, u64)>,
    /// (source, active indicators it lists)
    pub active_by_source: Vec<(String, u64)>,
}

/// One entry of an indicator's history: a change to it, or a source that
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndicatorChange {
    pub at: DateTime<Utc>,
    /// `add`, `update`, a status (`false-positive`, `delisted`, `active`,
    /// `allowlisted`, `expired`), `expire`, `delete`; `listed` for a
    /// source's first sighting.
    pub change: String,
    /// The source, or the reason given.
    pub detail: Option<String>,
    /// Who made it: an operator (`name` or `name token N`), `expiry`,
    /// `allowlist`, `source NAME`; none for changes from before actors
    /// were kept.
    pub actor: Option<String>,
}

/// Who made a change to the list when no operator did.
pub mod change_actor {
    /// An indicator no source saw again within its time to live.
    pub const EXPIRY: &str = "expiry";
    /// The allowlist, applied again after it changed.
    pub const ALLOWLIST: &str = "allowlist";
    /// The configuration's source rules.
    pub const CONFIGURATION: &str = "configuration";
    /// A change through a call that names no operator.
    pub const OPERATOR: &str = "operator";
}
