//! The removal loop's side of the store: events with their idempotency
//! keys and raw records, cases, notices and escalation requests. The rules
//! (how a case moves between states) are the removal part's; the store
//! persists what it is given, atomically.

use std::fmt;
use std::str::FromStr;

use std::time::Duration;

use chrono::{DateTime, Utc};
use kanki_audit::AuditEntry;
use kanki_events::{Event, EventKey};
use serde::Serialize;

use crate::Result;
use crate::event_segment::{SEGMENT_EVENTS, encode_raw, raw_parts};

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$v),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL.iter().copied().find(|x| x.as_str() == s).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|x| x.as_str()).collect();
                    format!("unknown {} {s:?}: one of {}", stringify!($name), all.join(", "))
                })
            }
        }
    };
}

named_enum!(
    /// Where a case stands.
    CaseState {
        /// Events attributed; no notice yet.
        New = "new",
        /// At least one notice went out.
        Notified = "notified",
        /// The subscriber said they cleaned up.
        Acknowledged = "acknowledged",
        /// No events for the configured quiet period since the last notice.
        Quiet = "quiet",
        /// Quiet long enough: verified clean by re-observation.
        Resolved = "resolved",
        /// Events again after it was quiet or resolved.
        Reinfected = "reinfected",
        /// Unacknowledged notices led to a walled garden, letter or call.
        Escalated = "escalated",
        /// Closed by an operator, with a reason.
        Closed = "closed",
    }
);

named_enum!(
    /// How serious a case is.
    Severity {
        Low = "low",
        Medium = "medium",
        High = "high",
    }
);

named_enum!(
    /// How a notice reaches the subscriber.
    Channel {
        Mail = "mail",
        Letter = "letter",
        /// Shown on the walled garden's page (an escalation).
        Garden = "garden",
    }
);

named_enum!(
    NoticeStatus {
        /// Rendered, not delivered yet (or waiting for a retry).
        Queued = "queued",
        Sent = "sent",
        /// Given up after the configured attempts.
        Failed = "failed",
        /// The mail server refused the recipient for good.
        Bounced = "bounced",
        /// Written to a letter export for the postal mail merge.
        Exported = "exported",
    }
);

named_enum!(
    EscalationKind {
        /// The DNS front sends the subscriber's lookups to the walled
        /// garden (only with consent that covers it).
        WalledGarden = "walled-garden",
        Letter = "letter",
        CallList = "call-list",
    }
);

named_enum!(
    EscalationStatus {
        Requested = "requested",
        Active = "active",
        Done = "done",
        Cancelled = "cancelled",
    }
);

/// An attribution as kept with its event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventAttribution {
    pub subscriber: String,
    pub confidence: String,
    pub audit_seq: i64,
}

/// One event to record.
#[derive(Clone, Debug)]
pub struct EventWrite {
    pub key: EventKey,
    pub event: Event,
    /// With `audit` set, its `audit_seq` is the stored seq of that record.
    pub attribution: Option<EventAttribution>,
    /// Index into the batch's audit records: the one of the lookup that
    /// attributed this event.
    pub audit: Option<usize>,
    /// Why it was not attributed (when it was not).
    pub unattributed: Option<String>,
    /// Index into the batch's [`CaseTarget`]s.
    pub case: Option<usize>,
}

/// The case (subscriber, threat) an attributed event belongs to.
#[derive(Clone, Debug)]
pub struct CaseTarget {
    pub subscriber: String,
    pub threat: String,
    pub class: String,
    pub severity: Severity,
}

/// A batch of events to record in one go, with the cases they belong to
/// and the audit records of the lookups that attributed them.
#[derive(Clone, Debug)]
pub struct EventBatch {
    pub events: Vec<EventWrite>,
    pub cases: Vec<CaseTarget>,
    /// Appended to the audit log in the transaction that stores the
    /// events: an attribution is never kept without the record of its
    /// lookup, and a lookup whose answer is lost in a crash was never used.
    pub audits: Vec<AuditEntry>,
    pub now: DateTime<Utc>,
    /// The raw records, compressed per segment when the batch is made (on
    /// the caller's thread, not under the store's writer lock).
    pub(crate) raw: Vec<Vec<u8>>,
}

impl EventBatch {
    pub fn new(
        events: Vec<EventWrite>,
        cases: Vec<CaseTarget>,
        audits: Vec<AuditEntry>,
        now: DateTime<Utc>,
    ) -> EventBatch {
        let raw = events
            .chunks(SEGMENT_EVENTS)
            .map(|chunk| encode_raw(chunk.iter().map(|w| raw_parts(&w.event))))
            .collect();
        EventBatch {
            events,
            cases,
            audits,
            now,
            raw,
        }
    }
}

/// What a stream of batches offers the store next.
pub enum NextBatch {
    Batch(Box<EventBatch>),
    /// None within the time given.
    NotYet,
    End,
}

/// Changes an open case for what new events say of it (the store opens a
/// case not open yet, through [`Case::opened`]). It may change the case's
/// state, counters and times, never its names (subscriber, threat, class)
/// or an operator's reasons: the store tells what to write by those it may
/// change.
pub type CaseUpdate<'a> = dyn FnMut(&mut Case, &CaseDelta<'_>, DateTime<Utc>) + 'a;

/// What the new events of a batch say about one (subscriber, threat).
#[derive(Clone, Debug)]
pub struct CaseDelta<'a> {
    pub subscriber: &'a str,
    pub threat: &'a str,
    pub class: &'a str,
    pub severity: Severity,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub events: u64,
}

impl CaseDelta<'_> {
    /// The delta of one event.
    pub fn of(t: &CaseTarget, seen: DateTime<Utc>) -> CaseDelta<'_> {
        CaseDelta {
            subscriber: &t.subscriber,
            threat: &t.threat,
            class: &t.class,
            severity: t.severity,
            first_seen: seen,
            last_seen: seen,
            events: 1,
        }
    }

    /// Adds one more event seen at `seen`.
    pub fn add(&mut self, seen: DateTime<Utc>) {
        self.events += 1;
        self.first_seen = self.first_seen.min(seen);
        self.last_seen = self.last_seen.max(seen);
    }
}

/// A case as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Case {
    /// 0 for a case not stored yet.
    pub id: i64,
    pub subscriber: String,
    pub threat: String,
    pub class: String,
    pub severity: Severity,
    pub state: CaseState,
    pub held: bool,
    pub hold_reason: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub events: u64,
    pub notices: u64,
    pub unacknowledged: u64,
    pub last_notice_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub quiet_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub reinfections: u64,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Case {
    /// A new case, not stored yet, of what a delta says: state new, no
    /// notices.
    pub fn opened(d: &CaseDelta, now: DateTime<Utc>) -> Case {
        Case {
            id: 0,
            subscriber: d.subscriber.to_string(),
            threat: d.threat.to_string(),
            class: d.class.to_string(),
            severity: d.severity,
            state: CaseState::New,
            held: false,
            hold_reason: None,
            opened_at: now,
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            events: d.events,
            notices: 0,
            unacknowledged: 0,
            last_notice_at: None,
            acknowledged_at: None,
            quiet_at: None,
            resolved_at: None,
            escalated_at: None,
            reinfections: 0,
            closed_at: None,
            close_reason: None,
            updated_at: now,
        }
    }
}

/// A line of a case's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseLogEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub state: CaseState,
    pub reason: Option<String>,
}

/// A change to a case, for its history.
#[derive(Clone, Debug)]
pub struct CaseChange<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub reason: Option<&'a str>,
}

/// Filters of the case list.
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    pub states: Vec<CaseState>,
    pub subscriber: Option<String>,
    pub threat: Option<String>,
    pub severity: Option<Severity>,
    /// Cases with events of this feed (`feed.name`).
    pub feed: Option<String>,
    /// Cases opened at or after this.
    pub opened_since: Option<DateTime<Utc>>,
    /// Cases with an id above this.
    pub after: Option<i64>,
    /// Cases with an id below this.
    pub before: Option<i64>,
    /// Newest (highest id) first; else oldest first.
    pub newest_first: bool,
    /// The most recently seen first (by last seen, then id, both
    /// descending) instead of by id.
    pub by_last_seen: bool,
    /// With `by_last_seen`: the cases after this (last seen, id) position.
    pub seen_before: Option<(DateTime<Utc>, i64)>,
    pub limit: Option<u32>,
}

/// One count of the dashboard's charts: in the bucket starting at
/// `bucket` (Unix seconds), `count` of `series` (`cases-opened`,
/// `cases-resolved`, `notices-sent`, `notices-bounced`,
/// `notices-acknowledged`, `events`, `rejected`), for `label` (a severity,
/// a channel, a format; empty when the series has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActivityCount {
    pub bucket: i64,
    pub series: &'static str,
    pub label: String,
    pub count: u64,
}

/// An ingest run of reports or sensor events, as recorded.
#[derive(Clone, Debug, Serialize)]
pub struct IngestRecord {
    pub id: i64,
    pub format: String,
    /// What was read: a file's name, an upload, `kanki serve` (the sensor).
    pub origin: String,
    pub report_type: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// The summary written at its end (JSON text: counts and reasons).
    pub summary: Option<String>,
}

/// A stored event with what was made of it.
#[derive(Clone, Debug, Serialize)]
pub struct StoredEvent {
    /// The event's segment (the batch it was stored with) in the high bits,
    /// its place in that batch in the low 16.
    pub id: i64,
    #[serde(flatten)]
    pub event: Event,
    /// The raw record, as text where it is UTF-8.
    pub raw: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<EventAttribution>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unattributed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<i64>,
}

/// What recording a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    pub inserted: u64,
    /// Already stored (a replay).
    pub duplicates: u64,
    pub cases_opened: u64,
    pub cases_updated: u64,
}

impl RecordCounts {
    pub fn add(&mut self, o: &RecordCounts) {
        self.inserted += o.inserted;
        self.duplicates += o.duplicates;
        self.cases_opened += o.cases_opened;
        self.cases_updated += o.cases_updated;
    }
}

/// A notice to store.
#[derive(Clone, Debug)]
pub struct NewNotice {
    pub reference: String,
    pub case_id: i64,
    pub subscriber: String,
    pub channel: Channel,
    pub language: String,
    pub recipient: Option<String>,
    pub subject: String,
    pub body: String,
    pub status: NoticeStatus,
}

/// A stored notice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    pub id: i64,
    pub reference: String,
    pub case_id: i64,
    pub subscriber: String,
    pub channel: Channel,
    pub language: String,
    pub recipient: Option<String>,
    pub subject: String,
    pub body: String,
    pub status: NoticeStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// A delivery attempt's outcome.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub status: NoticeStatus,
    pub error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// An escalation request, for the part that carries it out (the DNS
/// front's walled garden, the letter desk, the call centre).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Escalation {
    pub id: i64,
    pub case_id: i64,
    pub subscriber: String,
    pub kind: EscalationKind,
    pub status: EscalationStatus,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub reason: String,
}

/// Figures for the outcome metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RemovalStats {
    pub cases_by_state: Vec<(CaseState, u64)>,
    /// Distinct subscribers with a case that is neither resolved nor closed.
    pub infected_subscribers: u64,
    pub notices_by_channel: Vec<(Channel, NoticeStatus, u64)>,
    /// Cases that got a notice, and those of them acknowledged.
    pub notified_cases: u64,
    pub acknowledged_cases: u64,
    /// Seconds from opening to resolution, of each resolved case.
    pub time_to_clean: Vec<i64>,
    /// Cases ever resolved (or reinfected after), and those reinfected.
    pub resolved_cases: u64,
    pub reinfected_cases: u64,
    pub events: u64,
    /// Subscribers in the directory.
    pub subscribers: u64,
    pub unattributed_by_reason: Vec<(String, u64)>,
}

/// The removal loop's storage. Every method is atomic and durable when it
/// returns `Ok`.
pub trait RemovalBackend: Send + Sync {
    fn begin_ingest(
        &self,
        format: &str,
        origin: &str,
        report_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64>;
    /// `summary` is JSON text.
    fn finish_ingest(&self, id: i64, status: &str, summary: &str, now: DateTime<Utc>)
    -> Result<()>;
    /// The latest ingest runs, newest first.
    fn recent_ingests(&self, limit: u32) -> Result<Vec<IngestRecord>>;

    /// For each key, whether an event with it is stored.
    fn known_event_keys(&self, keys: &[EventKey]) -> Result<Vec<bool>>;

    /// The stored keys of the events whose source time falls in `hour`
    /// (hours since the epoch, as keys begin), each given to `f`.
    fn event_keys_of_hour(&self, hour: u32, f: &mut dyn FnMut(EventKey)) -> Result<()>;

    /// Stores the batches `next` gives until it says `End`: each batch's
    /// audit records, its events (those whose key is stored already are
    /// left out) and, by `update`, the cases the new ones belong to.
    /// Batches are committed together, a transaction holding those that
    /// arrive within `window` of its start; `next` is then asked with the
    /// time left, and the writer is let go between transactions.
    /// `spent` is given each batch as soon as it is written, before its
    /// transaction commits (to free where the caller likes: a batch's
    /// events are many small allocations, and memory given back at once
    /// is memory the next batches reuse); `committed` is told, after each
    /// commit, how many batches it held and what they did.
    fn record_event_stream(
        &self,
        ingest: i64,
        next: &mut dyn FnMut(Option<Duration>) -> NextBatch,
        update: &mut CaseUpdate<'_>,
        spent: &mut dyn FnMut(Box<EventBatch>),
        committed: &mut dyn FnMut(usize, RecordCounts) -> Result<()>,
        window: Duration,
    ) -> Result<()>;

    /// Stores one batch in its own transaction.
    fn record_events(
        &self,
        ingest: i64,
        batch: EventBatch,
        update: &mut CaseUpdate<'_>,
    ) -> Result<RecordCounts> {
        let mut batch = Some(batch);
        let mut counts = RecordCounts::default();
        self.record_event_stream(
            ingest,
            &mut |_| {
                batch
                    .take()
                    .map_or(NextBatch::End, |b| NextBatch::Batch(Box::new(b)))
            },
            update,
            &mut drop,
            &mut |_, c| {
                counts.add(&c);
                Ok(())
            },
            Duration::ZERO,
        )?;
        Ok(counts)
    }

    fn get_event(&self, id: i64) -> Result<Option<StoredEvent>>;
    /// The newest events of a case, at most `limit`.
    fn case_events(&self, case_id: i64, limit: u32) -> Result<Vec<StoredEvent>>;

    fn get_case(&self, id: i64) -> Result<Option<Case>>;
    fn list_cases(&self, filter: &CaseFilter) -> Result<Vec<Case>>;
    /// The names of the feeds cases have events of, in name order, at most
    /// `limit` (for the queue's filter).
    fn case_feed_names(&self, limit: u32) -> Result<Vec<String>>;
    fn case_log(&self, id: i64) -> Result<Vec<CaseLogEntry>>;
    /// Reads a case, lets `f` change it (an `Err` from `f` changes
    /// nothing), stores it and logs the change.
    fn update_case(
        &self,
        id: i64,
        change: &CaseChange<'_>,
        f: &mut dyn FnMut(&mut Case) -> Result<()>,
        now: DateTime<Utc>,
    ) -> Result<Case>;

    /// Stores a notice and the case as `f` changes it, together.
    fn record_notice(
        &self,
        notice: &NewNotice,
        change: &CaseChange<'_>,
        f: &mut dyn FnMut(&mut Case),
        now: DateTime<Utc>,
    ) -> Result<Notice>;
    fn set_delivery(&self, notice: i64, d: &Delivery, now: DateTime<Utc>) -> Result<Notice>;
    fn notice_by_reference(&self, reference: &str) -> Result<Option<Notice>>;
    /// A mail notice bounced after it was handed over (a delivery status
    /// notification came back): marked `bounced` with `reason`, retries
    /// cancelled. `Ok(None)` for an unknown reference.
    fn record_bounce(&self, reference: &str, reason: &str) -> Result<Option<Notice>>;
    /// Marks the notice acknowledged (once); `Ok(None)` for an unknown reference.
    fn acknowledge_notice(&self, reference: &str, now: DateTime<Utc>) -> Result<Option<Notice>>;
    /// Queued mail and garden notices whose next attempt is due.
    fn notices_due(&self, now: DateTime<Utc>) -> Result<Vec<Notice>>;
    fn case_notices(&self, case_id: i64) -> Result<Vec<Notice>>;
    /// Notices created since `since` (for the daily capacity).
    fn notices_since(&self, since: DateTime<Utc>) -> Result<u64>;
    /// Letter notices not yet exported; marks them exported.
    fn take_letters(&self, now: DateTime<Utc>) -> Result<Vec<Notice>>;

    /// Requests an escalation unless one of that kind is open for the case;
    /// returns whether it is new.
    fn request_escalation(
        &self,
        case_id: i64,
        subscriber: &str,
        kind: EscalationKind,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    fn list_escalations(&self, status: Option<EscalationStatus>) -> Result<Vec<Escalation>>;
    /// The escalations of a case, oldest first.
    fn case_escalations(&self, case_id: i64) -> Result<Vec<Escalation>>;
    fn set_escalation_status(
        &self,
        id: i64,
        status: EscalationStatus,
        now: DateTime<Utc>,
    ) -> Result<Escalation>;

    fn removal_stats(&self) -> Result<RemovalStats>;

    /// What the removal loop did in each bucket of `bucket_secs` seconds (a
    /// multiple of 300) from `since` (aligned on it) on: cases opened (by
    /// severity) and resolved, notices sent and bounced (by channel) and
    /// acknowledged, and each ingest run's events stored and records
    /// rejected (by format). Read from counts kept per 5 minutes, not by
    /// counting the window's rows.
    fn activity(&self, since: DateTime<Utc>, bucket_secs: i64) -> Result<Vec<ActivityCount>>;

    /// Removes events observed before `before`, with their raw records and
    /// keys, a stored batch at a time (a batch goes when its last event is
    /// older); returns how many. Cases keep their counts.
    fn purge_events(&self, before: DateTime<Utc>) -> Result<u64>;
}
