//! The subscriber directory's and the audit log's side of the store.

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use kanki_audit::{AuditEntry, AuditRecord, Ground};
pub use kanki_directory::SubscriberRecord;
use kanki_directory::{Binding, BindingEvent, BindingOrigin, PortRange, Subject};
use serde::Serialize;

use crate::Result;

/// One grant or revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentEvent {
    pub granted: bool,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub actor: String,
}

/// A subscriber as stored, with identifiers and consent history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subscriber {
    pub id: String,
    pub email: Option<String>,
    pub postal_address: Option<String>,
    pub language: String,
    pub plan: Option<String>,
    pub consent: bool,
    pub consent_at: Option<DateTime<Utc>>,
    pub identifiers: Vec<Subject>,
    pub consent_history: Vec<ConsentEvent>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a subscriber import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SubscriberCounts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Grants and revocations among them.
    pub consent_changes: u64,
}

/// Every binding id, for [`DirectoryBackend::scan_bindings`].
pub const ALL_BINDINGS: RangeInclusive<i64> = i64::MIN..=i64::MAX;

/// A stored binding with its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredBinding {
    pub id: i64,
    #[serde(flatten)]
    pub binding: Binding,
    /// JSON text: what else the record said (Class, session id...).
    pub detail: Option<String>,
}

/// What applying binding records changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BindingCounts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Sessions closed by a NAS restart (Accounting-On/Off) or by a prefix
    /// change within a session.
    pub closed: u64,
    /// Stops of sessions whose Start the store never had (stored as the
    /// session, from its start as the Stop gives it).
    pub stops_without_start: u64,
}

/// Ids of the bindings a change touched (read them with
/// [`DirectoryBackend::bindings_by_id`]).
pub type ChangedBindings = Vec<i64>;

/// The compact form the binding index is built from: numbers and a packed
/// prefix, nothing to decode or hash per row (a start reads millions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingScan {
    pub id: i64,
    /// The subject's number: see [`DirectoryBackend::binding_subjects`].
    pub subject: u32,
    pub prefix: ipnet::IpNet,
    pub ports: Option<PortRange>,
    pub from: i64,
    pub to: Option<i64>,
}

/// A subject bindings name, with its number and the subscriber whose
/// identifier it is, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectEntry<'a> {
    pub number: u32,
    pub kind: kanki_directory::SubjectKind,
    pub value: &'a str,
    pub subscriber: Option<&'a str>,
}

/// A binding as one change left it, with its subject as a subscriber
/// lookup names it: what a process holding the compiled index lays over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingChange {
    /// The change's number in the change log.
    pub seq: i64,
    pub binding: BindingScan,
    pub kind: kanki_directory::SubjectKind,
    pub value: String,
    /// The subscriber whose identifier the subject is, if any.
    pub subscriber: Option<String>,
}

/// What a read of the change log found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangesRead {
    /// The number of the last change read (the `after` asked when none).
    pub last: i64,
    /// Changes after `after` were trimmed from the log before they were
    /// read: the reader has missed some and must rebuild from the bindings.
    pub missed: bool,
    /// More changes follow than the limit let through.
    pub more: bool,
}

/// Filters of `audit show`.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub ground: Option<Ground>,
    /// Records whose input or result mention this text (a subscriber id, an
    /// address).
    pub mentions: Option<String>,
    /// Records whose purpose contains this text (a case number, "abuse
    /// notice").
    pub purpose: Option<String>,
    /// Records before this one (by number): the page after a page whose
    /// oldest record this is.
    pub before: Option<i64>,
    /// Newest first, at most this many (all when `None`).
    pub limit: Option<u32>,
}

/// What a retention purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeCounts {
    pub bindings: u64,
    pub audit_records: u64,
    /// Where the audit chain starts after the purge (none: it was never
    /// purged and starts at the genesis). Written into the purge's own
    /// record, where the chain's hashes cover it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<kanki_audit::Anchor>,
}

/// The directory's and the audit log's storage. Every method is atomic and
/// durable when it returns `Ok`.
pub trait DirectoryBackend: Send + Sync {
    /// Grows with every change to subscribers, identifiers or bindings made
    /// through any process: a reader that saw generation `g` and sees a
    /// larger one reloads.
    fn directory_generation(&self) -> Result<u64>;

    /// Grows with every change to subscribers or consent only (a subset of
    /// [`directory_generation`](Self::directory_generation)'s changes): what
    /// the consent set is reloaded on.
    fn consent_generation(&self) -> Result<u64>;

    /// Adds or updates subscribers by id; a consent value that differs from
    /// the stored one is a grant or revocation recorded with `channel`.
    fn upsert_subscribers(
        &self,
        subscribers: &[SubscriberRecord],
        channel: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<SubscriberCounts>;

    fn get_subscriber(&self, id: &str) -> Result<Option<Subscriber>>;

    /// Subscribers by id, from `after` (exclusive), at most `limit`.
    fn list_subscribers(&self, after: Option<&str>, limit: u32) -> Result<Vec<Subscriber>>;

    /// Grants or revokes; `Ok(false)` when it was so already (nothing
    /// recorded), `Err(NotFound)` for an unknown subscriber.
    fn set_consent(
        &self,
        id: &str,
        granted: bool,
        channel: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Every (identifier, subscriber id) pair, the subscriber's own id
    /// included (as a subscriber id and as a login name).
    fn identifiers(&self, f: &mut dyn FnMut(Subject, &str)) -> Result<()>;

    /// Ids of the subscribers who consent now.
    fn consenting(&self) -> Result<Vec<String>>;

    /// Applies binding records idempotently (a replay changes nothing).
    /// Session records of `origin` (Radius or Detail) open, extend and close
    /// sessions; a NAS reset closes that NAS's open sessions.
    fn apply_bindings(
        &self,
        origin: BindingOrigin,
        events: &[BindingEvent],
        now: DateTime<Utc>,
    ) -> Result<(BindingCounts, ChangedBindings)>;

    /// The prefixes statically assigned, at `now`, to subscribers who
    /// consent (for RPZ client scoping, which can follow only static
    /// assignments).
    fn consenting_static_prefixes(&self, now: DateTime<Utc>) -> Result<Vec<ipnet::IpNet>>;

    /// Every binding whose id lies in `ids`, in id order, compactly, for
    /// the index. A start reads disjoint id ranges on parallel threads
    /// ([`binding_id_span`](Self::binding_id_span) gives the whole range).
    fn scan_bindings(&self, ids: RangeInclusive<i64>, f: &mut dyn FnMut(BindingScan))
    -> Result<()>;

    /// Every subject bindings name, with the number [`BindingScan`] gives
    /// it and the subscriber an identifier maps it to. Read after the
    /// bindings: a binding read earlier names a subject listed here (unless
    /// the binding was purged meanwhile).
    fn binding_subjects(&self, f: &mut dyn FnMut(SubjectEntry<'_>)) -> Result<()>;

    /// The lowest and the highest binding id, or `None` when there is none.
    fn binding_id_span(&self) -> Result<Option<(i64, i64)>>;

    /// The number of the newest entry of the change log (0 when nothing
    /// has changed): every binding written or changed by
    /// [`apply_bindings`](Self::apply_bindings), in commit order.
    fn binding_change_head(&self) -> Result<i64>;

    /// The bindings changed after change `after`, as they are now, with
    /// their subjects, in change order, at most `limit` changes (a binding
    /// purged since is left out).
    fn binding_changes_since(
        &self,
        after: i64,
        limit: u32,
        f: &mut dyn FnMut(BindingChange),
    ) -> Result<ChangesRead>;

    /// Removes change-log entries written before `before`.
    fn trim_binding_changes(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Every binding whose prefix contains `addr` and whose interval meets
    /// `from..=to` (Unix seconds), from the store's index of prefixes,
    /// without reading the others.
    fn bindings_covering(
        &self,
        addr: std::net::IpAddr,
        from: i64,
        to: i64,
        f: &mut dyn FnMut(BindingScan),
    ) -> Result<()>;

    /// The subjects numbered `numbers`, as [`binding_subjects`](Self::binding_subjects) gives them.
    fn subjects_numbered(&self, numbers: &[u32], f: &mut dyn FnMut(SubjectEntry<'_>))
    -> Result<()>;

    /// The bindings with these ids (the evidence of an attribution).
    fn bindings_by_id(&self, ids: &[i64]) -> Result<Vec<StoredBinding>>;

    /// The bindings of a subscriber's identifiers over time, latest start
    /// first: at most `limit`, those that come after `after` in that order
    /// (a page's last binding: its start in Unix seconds, and its id).
    fn subscriber_bindings(
        &self,
        subscriber: &str,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<StoredBinding>>;

    /// Appends to the audit log, chaining the record.
    fn audit_append(&self, entry: &AuditEntry) -> Result<AuditRecord>;

    /// Appends several records, chained in order, in one transaction.
    fn audit_append_many(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>>;

    /// Records matching the filter; oldest first unless a limit asks for
    /// the newest.
    fn audit_records(&self, filter: &AuditFilter, f: &mut dyn FnMut(AuditRecord)) -> Result<()>;

    /// The hash the oldest remaining record points to.
    fn audit_anchor(&self) -> Result<String>;

    /// Removes bindings that ended before `bindings_before` and audit
    /// records before `audit_before`, and appends `record` (the purge's own
    /// audit record, whose result this fills in) in the same transaction.
    fn purge(
        &self,
        bindings_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
        record: AuditEntry,
    ) -> Result<PurgeCounts>;
}
