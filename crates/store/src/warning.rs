//! The warning page's side of the store: hit counts per indicator per day,
//! the operators' queue of false-positive reports, and the walled garden.

use chrono::{DateTime, NaiveDate, Utc};
use kanki_audit::{AuditEntry, AuditRecord, Ground};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Warning-page counts of one indicator on one day (UTC). Nothing about who.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitCount {
    pub indicator_id: i64,
    pub day: NaiveDate,
    /// Times the page was shown for a name this indicator lists.
    pub hits: u64,
    /// Times "proceed once" was taken.
    pub proceeds: u64,
}

/// Filters of [`WarningBackend::hits`].
#[derive(Clone, Debug, Default)]
pub struct HitsQuery {
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    pub indicator: Option<i64>,
    /// Newest days first, at most this many rows.
    pub limit: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportStatus {
    Open,
    Reviewed,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Open => "open",
            ReportStatus::Reviewed => "reviewed",
        }
    }
}

impl std::str::FromStr for ReportStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(ReportStatus::Open),
            "reviewed" => Ok(ReportStatus::Reviewed),
            _ => Err(format!("unknown report status {s:?}: open or reviewed")),
        }
    }
}

/// An operator's judgement of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportOutcome {
    /// The reporter is right: the listing was wrong.
    FalsePositive,
    /// The listing stands.
    Confirmed,
}

impl ReportOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportOutcome::FalsePositive => "false-positive",
            ReportOutcome::Confirmed => "confirmed",
        }
    }
}

impl std::str::FromStr for ReportOutcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "false-positive" => Ok(ReportOutcome::FalsePositive),
            "confirmed" => Ok(ReportOutcome::Confirmed),
            _ => Err(format!(
                "unknown outcome {s:?}: false-positive (the listing was wrong) or confirmed (it stands)"
            )),
        }
    }
}

/// A report as the warning page takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReport {
    pub name: String,
    pub matched: Option<String>,
    pub indicator_ids: Vec<i64>,
    pub url: String,
    pub note: String,
    pub contact: Option<String>,
    pub language: String,
}

/// A report in the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FalsePositiveReport {
    pub id: i64,
    pub name: String,
    pub matched: Option<String>,
    pub indicator_ids: Vec<i64>,
    pub url: String,
    pub note: String,
    pub contact: Option<String>,
    pub language: String,
    pub reported_at: DateTime<Utc>,
    pub status: ReportStatus,
    pub outcome: Option<ReportOutcome>,
    pub review_note: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// Filters of [`WarningBackend::reports`].
#[derive(Clone, Debug, Default)]
pub struct ReportQuery {
    pub status: Option<ReportStatus>,
    /// Ids after this one (paging).
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// A subscriber in the walled garden.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GardenMember {
    pub subscriber: String,
    pub ground: Ground,
    /// The operator's reason, for the record.
    pub reason: String,
    /// What the subscriber is shown.
    pub notice: Option<String>,
    pub entered_at: DateTime<Utc>,
    pub entered_by: String,
    /// When the subscriber said "I have cleaned my machine", with their words.
    pub leave_requested_at: Option<DateTime<Utc>>,
    pub leave_request_note: Option<String>,
    /// The notice reference of a subscriber the removal loop put inside:
    /// acknowledging it on the countermeasure site lets them out.
    pub reference: Option<String>,
}

/// The warning page's storage. Every method is atomic and durable when it
/// returns `Ok`.
pub trait WarningBackend: Send + Sync {
    /// Adds these counts to the stored ones.
    fn add_hits(&self, counts: &[HitCount]) -> Result<()>;

    /// Counts matching the filter, newest day first, then by indicator.
    fn hits(&self, q: &HitsQuery) -> Result<Vec<HitCount>>;
    /// The warning page's hits and proceeds of all indicators, by day, from
    /// `since` on, oldest first.
    fn hits_by_day(&self, since: NaiveDate) -> Result<Vec<(NaiveDate, u64, u64)>>;

    fn add_report(&self, r: &NewReport, now: DateTime<Utc>) -> Result<FalsePositiveReport>;

    /// Reports by id, oldest first.
    fn reports(&self, q: &ReportQuery) -> Result<Vec<FalsePositiveReport>>;

    fn get_report(&self, id: i64) -> Result<Option<FalsePositiveReport>>;

    /// Marks an open report reviewed; `Err(Invalid)` when it was already,
    /// `Err(NotFound)` for an unknown id.
    fn review_report(
        &self,
        id: i64,
        outcome: ReportOutcome,
        note: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<FalsePositiveReport>;

    /// Grows with every change to the walled garden, through any process.
    fn garden_generation(&self) -> Result<u64>;

    /// Everyone inside, by subscriber id.
    fn garden(&self) -> Result<Vec<GardenMember>>;

    fn garden_member(&self, subscriber: &str) -> Result<Option<GardenMember>>;

    /// Puts a subscriber in the garden and appends `audit` in the same
    /// transaction. `Ok(None)` when they were inside already (nothing
    /// recorded), `Err(NotFound)` for an unknown subscriber.
    fn garden_enter(&self, m: &GardenMember, audit: &AuditEntry) -> Result<Option<AuditRecord>>;

    /// Lets a subscriber out, appending `audit` in the same transaction;
    /// `Ok(None)` when they were not inside (nothing recorded).
    fn garden_leave(&self, subscriber: &str, audit: &AuditEntry) -> Result<Option<AuditRecord>>;

    /// Records the subscriber's "I have cleaned my machine" (for an operator
    /// to check and let them out), appending `audit`; `Ok(None)` when they
    /// are not inside.
    fn garden_leave_request(
        &self,
        subscriber: &str,
        note: &str,
        audit: &AuditEntry,
    ) -> Result<Option<AuditRecord>>;
}
