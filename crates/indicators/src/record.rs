//! The indicator record as the rest of kanki sees it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Category, Kind, Status, Tlp};

/// Store-assigned identifier of an indicator.
pub type IndicatorId = i64;

/// One listed (or once listed) URL, domain or IP address, with everything
/// known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    pub id: IndicatorId,
    pub kind: Kind,
    /// The normalized value (see [`crate::normalize`]).
    pub value: String,
    /// The DNS name it lives on, when it has one.
    pub host: Option<String>,
    pub category: Category,
    /// 0–100; the highest any source gave.
    pub confidence: u8,
    pub status: Status,
    /// Why the status is what it is (the allowlist entry, the operator's
    /// reason for a false-positive mark, ...).
    pub status_reason: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// When it expires unless a source sees it again; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub tlp: Tlp,
    pub sources: Vec<SourceRef>,
    pub evidence: Vec<Evidence>,
}

/// What one source said about an indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The source's name (a feed name, `operator`, `crawler`, ...).
    pub source: String,
    /// The source's own identifier for the record.
    pub source_id: Option<String>,
    pub reference_url: Option<String>,
    pub reporter: Option<String>,
    pub category: Category,
    pub confidence: u8,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A pointer to evidence kept elsewhere (a crawl tree, a payload, a report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub id: i64,
    /// What the evidence is: `crawl`, `payload`, `report`, `note`, ...
    pub kind: String,
    /// Where it is: a URI, a path in the data directory, a crawl id.
    pub uri: String,
    pub sha256: Option<String>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}
