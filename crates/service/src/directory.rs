//! The subscriber directory as the front ends use it: the compiled binding
//! index with the subscribers behind its subjects, consent, attribution
//! under a legal ground (always audited), and the retention purge.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use kanki_audit::{AuditEntry, Ground};
use kanki_directory::{BindingIndex, BindingRef, IndexBuilder, Subject, SubjectKind};
use kanki_store::{Store, StoredBinding};
use serde::Serialize;

use crate::{Kanki, ServiceError};

/// The binding index with the subscribers behind its holder numbers, as of
/// one directory generation. Immutable. A holder number is the number the
/// store gives a subject (see `DirectoryBackend::binding_subjects`).
pub struct Compiled {
    pub generation: u64,
    index: BindingIndex,
    /// Holder number → subscriber id, where an identifier maps it.
    subscriber_of: Vec<Option<Arc<str>>>,
    /// Holder numbers naming an inside (private) address behind CGNAT
    /// (asked of each candidate of each lookup: foldhash, not SipHash).
    inside_address: foldhash::HashMap<u32, IpAddr>,
}

impl Compiled {
    /// Reads every binding and subject from the store and compiles them.
    /// The bindings are read and sorted in id ranges on as many threads as
    /// there are cores (10M rows must load in seconds at start), then
    /// merged.
    pub fn load(store: &Store, now: DateTime<Utc>) -> Result<Compiled, ServiceError> {
        let started = std::time::Instant::now();
        let d = store.directory();
        let generation = d.directory_generation()?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        let ranges: Vec<RangeInclusive<i64>> = match d.binding_id_span()? {
            None => Vec::new(),
            Some((first, last)) => {
                let step = ((last - first) / threads + 1).max(1);
                (0..threads)
                    .map(|k| first.saturating_add(k * step))
                    .take_while(|&a| a <= last)
                    .map(|a| a..=a.saturating_add(step - 1).min(last))
                    .collect()
            }
        };
        let parts = std::thread::scope(|scope| {
            let running: Vec<_> = ranges
                .into_iter()
                .map(|ids| scope.spawn(move || read_sorted(store, ids)))
                .collect();
            running
                .into_iter()
                .map(|t| t.join().expect("a load thread panicked"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let read = started.elapsed();

        // After the bindings, so that every subject they name is listed.
        let mut subscriber_of: Vec<Option<Arc<str>>> = Vec::new();
        let mut inside_address = foldhash::HashMap::default();
        // One Arc per subscriber, shared by their identifiers.
        let mut subscribers: HashMap<String, Arc<str>> = HashMap::new();
        d.binding_subjects(&mut |s| {
            if s.kind == SubjectKind::InsideAddress
                && let Ok(addr) = s.value.parse::<IpAddr>()
            {
                inside_address.insert(s.number, addr);
            }
            let Some(id) = s.subscriber else { return };
            let n = s.number as usize;
            if subscriber_of.len() <= n {
                subscriber_of.resize(n + 1, None);
            }
            let shared = match subscribers.get(id) {
                Some(a) => a.clone(),
                None => {
                    let a: Arc<str> = Arc::from(id);
                    subscribers.insert(id.to_string(), a.clone());
                    a
                }
            };
            subscriber_of[n] = Some(shared);
        })?;
        let subjects_read = started.elapsed();
        let merged = IndexBuilder::merge(parts);
        let merged_at = started.elapsed();
        let index = merged.build(now.timestamp(), rand_seed());
        tracing::debug!(
            bindings = index.len(),
            read_sorted_s = read.as_secs_f64(),
            subjects_s = (subjects_read - read).as_secs_f64(),
            merged_s = (merged_at - subjects_read).as_secs_f64(),
            built_s = (started.elapsed() - merged_at).as_secs_f64(),
            "directory index compiled"
        );
        Ok(Compiled {
            generation,
            index,
            subscriber_of,
            inside_address,
        })
    }

    pub fn empty() -> Compiled {
        Compiled {
            generation: 0,
            index: BindingIndex::empty(),
            subscriber_of: Vec::new(),
            inside_address: Default::default(),
        }
    }

    /// Number of bindings held.
    pub fn bindings(&self) -> usize {
        self.index.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// The subscriber whose identifier holder number `h` is, if any.
    fn subscriber_of(&self, h: u32) -> Option<&str> {
        self.subscriber_of.get(h as usize)?.as_deref()
    }

    /// The subscriber holding `addr` now, if exactly one does. For the DNS
    /// front's consent check, which is covered by the subscriber's consent
    /// and not written to the audit log (see `../shared/DESIGN.md`).
    #[inline]
    pub fn subscriber_now(&self, addr: IpAddr, now: i64) -> Option<&str> {
        self.subscriber_of(self.index.who_now(addr, now)?)
    }
}

/// One load thread's share: the bindings with ids in `ids`, sorted.
fn read_sorted(store: &Store, ids: RangeInclusive<i64>) -> Result<IndexBuilder, ServiceError> {
    // Ids are dense, so the range is about the row count: reserved once
    // rather than grown (and copied) in steps; capped, as a range thinned by
    // retention may hold far fewer.
    let mut builder = IndexBuilder::with_capacity(
        (ids.end().saturating_sub(*ids.start()) as usize)
            .saturating_add(1)
            .min(1 << 26),
    );
    store.directory().scan_bindings(ids, &mut |row| {
        builder.add(&BindingRef {
            id: row.id,
            prefix: row.prefix,
            ports: row.ports,
            from: row.from,
            to: row.to,
            holder: row.subject,
        });
    })?;
    builder.sort();
    Ok(builder)
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x006b_616e_6b69_u64)
}

/// The directory a running kanki keeps: the compiled index and the set of
/// consenting subscribers, each swapped whole when it changes.
pub struct Directory {
    compiled: ArcSwap<Compiled>,
    consent: ArcSwap<HashSet<String>>,
    consent_generation: std::sync::atomic::AtomicU64,
    /// When the index was last rebuilt.
    built: std::sync::Mutex<std::time::Instant>,
}

impl Directory {
    pub fn load(store: &Store, now: DateTime<Utc>) -> Result<Directory, ServiceError> {
        let d = Directory {
            compiled: ArcSwap::from_pointee(Compiled::empty()),
            consent: ArcSwap::from_pointee(HashSet::new()),
            consent_generation: Default::default(),
            built: std::sync::Mutex::new(std::time::Instant::now()),
        };
        d.reload_consent(store)?;
        d.compiled.store(Arc::new(Compiled::load(store, now)?));
        Ok(d)
    }

    pub fn compiled(&self) -> Arc<Compiled> {
        self.compiled.load_full()
    }

    /// Picks up changes made through the store: consent at once when it
    /// changed; the binding index when bindings changed and the last
    /// rebuild is at least `rebuild_every` old (a busy RADIUS feed changes
    /// bindings all the time; rebuilding ten million of them takes
    /// seconds). Returns whether the index was rebuilt.
    pub fn refresh(
        &self,
        store: &Store,
        now: DateTime<Utc>,
        rebuild_every: std::time::Duration,
    ) -> Result<bool, ServiceError> {
        use std::sync::atomic::Ordering::Relaxed;
        let d = store.directory();
        if d.consent_generation()? != self.consent_generation.load(Relaxed) {
            self.reload_consent(store)?;
        }
        if d.directory_generation()? == self.compiled.load().generation {
            return Ok(false);
        }
        {
            let built = self.built.lock().unwrap_or_else(|p| p.into_inner());
            if built.elapsed() < rebuild_every {
                return Ok(false);
            }
        }
        self.compiled.store(Arc::new(Compiled::load(store, now)?));
        *self.built.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        Ok(true)
    }

    pub fn reload_consent(&self, store: &Store) -> Result<(), ServiceError> {
        let d = store.directory();
        // The generation first: a change made while reading is then seen
        // again next time rather than missed.
        let g = d.consent_generation()?;
        self.consent
            .store(Arc::new(d.consenting()?.into_iter().collect()));
        self.consent_generation
            .store(g, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Number of subscribers who consent now.
    pub fn consenting_count(&self) -> usize {
        self.consent.load().len()
    }

    /// Whether the subscriber consents now.
    pub fn consents(&self, subscriber: &str) -> bool {
        self.consent.load().contains(subscriber)
    }

    /// Calls `f` with the subscriber behind `addr` now, if exactly one
    /// holds it, and whether they consent. Allocates nothing and takes no
    /// lock: the DNS front asks this for every query.
    #[inline]
    pub fn with_subscriber_now<R>(
        &self,
        addr: IpAddr,
        now: i64,
        f: impl FnOnce(&str, bool) -> R,
    ) -> Option<R> {
        let compiled = self.compiled.load();
        let subscriber = compiled.subscriber_now(addr, now)?;
        Some(f(subscriber, self.consent.load().contains(subscriber)))
    }

    /// The consenting subscriber behind `addr` now, if there is one: the
    /// question the DNS front asks for each query.
    pub fn consenting_subscriber_now(&self, addr: IpAddr, now: i64) -> Option<String> {
        let c = self.compiled.load();
        let s = c.subscriber_now(addr, now)?;
        self.consents(s).then(|| s.to_string())
    }
}

/// An attribution request: who held `address` (and `port`) at `at`.
#[derive(Clone, Debug, Serialize)]
pub struct WhoQuery {
    pub address: IpAddr,
    pub port: Option<u16>,
    pub at: DateTime<Utc>,
    pub ground: Ground,
    pub purpose: String,
    pub actor: String,
}

/// How sure an attribution is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// One holder; the moment is well inside a binding of exactly this
    /// address (a /32 or /128, or the CGNAT port block of the given port).
    Exact,
    /// One holder; well inside a binding of a wider prefix (a delegated
    /// IPv6 prefix, a shared address without the port).
    InsideSession,
    /// One holder, but the moment is within the clock-skew tolerance of a
    /// binding's start or end.
    NearBoundary,
    /// Several holders are possible: all are listed.
    Ambiguous,
    /// No binding covers the address at that moment.
    None,
}

impl Confidence {
    /// The name it is serialized with.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Exact => "exact",
            Confidence::InsideSession => "inside-session",
            Confidence::NearBoundary => "near-boundary",
            Confidence::Ambiguous => "ambiguous",
            Confidence::None => "none",
        }
    }
}

/// One possible holder.
#[derive(Clone, Debug, Serialize)]
pub struct Holder {
    /// The subscriber, when an identifier maps the subject to one.
    pub subscriber: Option<String>,
    /// As the network record names them.
    pub subject: Subject,
    pub near_boundary: bool,
    pub binding: StoredBinding,
    /// When the binding names an inside (private) address behind CGNAT:
    /// the bindings of that address at the same moment, through which the
    /// subscriber was found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub through: Vec<StoredBinding>,
}

/// The answer to a [`WhoQuery`], as audited.
#[derive(Clone, Debug, Serialize)]
pub struct Attribution {
    pub confidence: Confidence,
    /// The one subscriber, unless ambiguous or unknown.
    pub subscriber: Option<String>,
    pub holders: Vec<Holder>,
    /// Sequence number of the audit record of this lookup.
    pub audit_seq: i64,
}

impl Kanki {
    /// Who held an address at a moment. Refused without a purpose; the
    /// lookup and its answer, with the bindings read from the store as
    /// evidence, are written to the audit log before the answer is
    /// returned, and no answer is returned if that write fails.
    pub fn who(&self, c: &Compiled, q: &WhoQuery) -> Result<Attribution, ServiceError> {
        check_asked(&q.actor, &q.purpose)?;
        let skew = self.clock_skew();
        let found = Found::lookup(c, q.address, q.port, q.at, skew);
        let mut ids: Vec<i64> = found.binding_ids().collect();
        ids.sort_unstable();
        ids.dedup();
        let stored: HashMap<i64, StoredBinding> = self
            .store
            .directory()
            .bindings_by_id(&ids)?
            .into_iter()
            .map(|b| (b.id, b))
            .collect();
        let (mut answer, entry) = found.answer(c, q, skew, &stored);
        answer.audit_seq = self.store.directory().audit_append(&entry)?.seq;
        Ok(answer)
    }

    /// Many lookups made for one purpose under one ground (an ingest
    /// attributes hundreds of thousands of events a second): each judged
    /// as [`who`](Self::who) judges, from the index alone (no evidence is
    /// read back from the store), and all listed, each with its answer and
    /// the ids of the bindings it rests on, in one audit record. The record
    /// is returned, not written: the caller appends it in the transaction
    /// that keeps anything of the answers (the removal store does so with
    /// the events, [`kanki_store::EventBatch::audits`]), so that an answer
    /// is never kept without its record, and an ingest's writes do not
    /// wait on a separate audit transaction per batch.
    pub fn who_bulk(
        &self,
        c: &Compiled,
        asked: &BulkAsk,
        lookups: &[Lookup],
    ) -> Result<BulkAttribution, ServiceError> {
        check_asked(&asked.actor, &asked.purpose)?;
        let skew = self.clock_skew();
        let answers: Vec<BulkAnswer> = lookups
            .iter()
            .map(|l| {
                let found = Found::lookup(c, l.address, l.port, l.at, skew);
                let subs = found.subscribers(c);
                let (confidence, first) =
                    judge(found.cands.iter().zip(subs.iter().copied()), l.port);
                BulkAnswer {
                    confidence,
                    subscriber: first.map(str::to_string),
                    bindings: found.cands.iter().map(|x| x.binding.id).collect(),
                }
            })
            .collect();
        // Each lookup and each answer is a row under named columns, the
        // time in seconds since 1970 (UTC): a record lists a batch's tens
        // of thousands of lookups, and objects with RFC 3339 times made it
        // three times the size, to build and to hash.
        #[derive(Serialize)]
        struct Input {
            columns: [&'static str; 3],
            lookups: Vec<(IpAddr, Option<u16>, i64)>,
            clock_skew_secs: u32,
        }
        #[derive(Serialize)]
        struct Output<'a> {
            columns: [&'static str; 3],
            answers: Vec<(&'static str, Option<&'a str>, &'a [i64])>,
        }
        let input = Input {
            columns: ["address", "port", "at"],
            lookups: lookups
                .iter()
                .map(|l| (l.address, l.port, l.at.timestamp()))
                .collect(),
            clock_skew_secs: skew,
        };
        let output = Output {
            columns: ["confidence", "subscriber", "bindings"],
            answers: answers
                .iter()
                .map(|a| {
                    (
                        a.confidence.as_str(),
                        a.subscriber.as_deref(),
                        &a.bindings[..],
                    )
                })
                .collect(),
        };
        let entry = AuditEntry {
            at: Utc::now(),
            actor: asked.actor.clone(),
            action: "who-bulk".into(),
            ground: Some(asked.ground),
            purpose: asked.purpose.clone(),
            input: serde_json::to_string(&input).unwrap_or_default(),
            result: serde_json::to_string(&output).unwrap_or_default(),
        };
        Ok(BulkAttribution {
            answers,
            record: entry,
        })
    }

    fn clock_skew(&self) -> u32 {
        self.config
            .directory
            .clock_skew
            .as_secs()
            .min(u32::MAX as u64) as u32
    }

    /// Removes bindings and audit records past their retention, recording
    /// the purge in the audit log.
    /// Verifies the whole audit chain, one record at a time (memory stays
    /// flat whatever the log's size), and holds it to `checkpoints` (signed
    /// heads, see [`kanki_audit::checkpoint`]).
    pub fn verify_audit(
        &self,
        checkpoints: &[kanki_audit::checkpoint::Checkpoint],
    ) -> Result<Result<kanki_audit::Verified, kanki_audit::Broken>, ServiceError> {
        let d = self.store.directory();
        let mut v = kanki_audit::Verifier::new(&d.audit_anchor()?);
        for c in checkpoints {
            v.expect(c.seq, &c.hash);
        }
        d.audit_records(&kanki_store::AuditFilter::default(), &mut |r| v.push(&r))?;
        Ok(v.finish())
    }

    /// The chain's head now: the last record's sequence number and hash
    /// (for an empty log, the number before the next record and the
    /// anchor). What a checkpoint signs.
    pub fn audit_head(&self) -> Result<(i64, String), ServiceError> {
        let d = self.store.directory();
        let mut head = None;
        let newest = kanki_store::AuditFilter {
            limit: Some(1),
            ..Default::default()
        };
        d.audit_records(&newest, &mut |r| head = Some((r.seq, r.hash)))?;
        match head {
            Some(h) => Ok(h),
            None => Ok((0, d.audit_anchor()?)),
        }
    }

    pub fn purge_expired(
        &self,
        now: DateTime<Utc>,
        actor: &str,
    ) -> Result<kanki_store::PurgeCounts, ServiceError> {
        let d = &self.config.directory;
        let age = |h: kanki_config::HumanDuration| {
            now - chrono::Duration::seconds(h.as_secs().min(i64::MAX as u64 / 2) as i64)
        };
        let bindings_before = age(d.bindings_retention);
        let audit_before = age(self.config.audit.retention);
        let record = AuditEntry {
            at: now,
            actor: actor.into(),
            action: "purge".into(),
            ground: None,
            purpose: "retention: remove bindings and audit records past their configured periods"
                .into(),
            input: serde_json::json!({
                "bindings_ended_before": bindings_before,
                "audit_before": audit_before,
            })
            .to_string(),
            result: String::new(),
        };
        Ok(self
            .store
            .directory()
            .purge(bindings_before, audit_before, record)?)
    }
}

/// Refuses a lookup nobody answers for.
fn check_asked(actor: &str, purpose: &str) -> Result<(), ServiceError> {
    if purpose.trim().is_empty() {
        return Err(ServiceError::Invalid(
            "an attribution needs a purpose (and a ground): say why it is made".into(),
        ));
    }
    if actor.trim().is_empty() {
        return Err(ServiceError::Invalid(
            "an attribution needs an actor".into(),
        ));
    }
    Ok(())
}

/// Who asks many lookups at once, under which ground and why.
#[derive(Clone, Debug)]
pub struct BulkAsk {
    pub actor: String,
    pub ground: Ground,
    pub purpose: String,
}

/// One lookup of a bulk attribution: `address` (and `port`) at `at`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Lookup {
    pub address: IpAddr,
    pub port: Option<u16>,
    pub at: DateTime<Utc>,
}

/// The answer to one [`Lookup`].
#[derive(Clone, Debug, Serialize)]
pub struct BulkAnswer {
    pub confidence: Confidence,
    /// The one subscriber, unless ambiguous or unknown.
    pub subscriber: Option<String>,
    /// The bindings the answer rests on.
    pub bindings: Vec<i64>,
}

/// The answers of [`Kanki::who_bulk`], in the order asked, and the audit
/// record listing them all, to be appended by the caller.
#[derive(Clone, Debug)]
pub struct BulkAttribution {
    pub answers: Vec<BulkAnswer>,
    pub record: AuditEntry,
}

/// How sure the candidates make an answer, and the one subscriber if there
/// is one: each candidate with the subscriber it resolves to.
fn judge<'c>(
    cands: impl Iterator<Item = (&'c kanki_directory::Candidate, Option<&'c str>)> + Clone,
    port: Option<u16>,
) -> (Confidence, Option<&'c str>) {
    // Holders are told apart by subscriber, else by subject. Only whether
    // they are all one matters; most lookups have one candidate.
    fn holder<'c>((c, s): (&kanki_directory::Candidate, Option<&'c str>)) -> Result<&'c str, u32> {
        s.ok_or(c.binding.holder)
    }
    let mut all = cands.clone();
    let Some((c, first)) = all.next() else {
        return (Confidence::None, None);
    };
    let one = holder((c, first));
    let one_holder = all.all(|x| holder(x) == one);
    let confidence = match one_holder {
        true if cands.clone().all(|(c, _)| c.near_boundary) => Confidence::NearBoundary,
        true => {
            let exact = cands.clone().any(|(c, _)| {
                let b = &c.binding;
                !c.near_boundary
                    && match (b.ports, port) {
                        (Some(_), Some(_)) => true,
                        (Some(_), None) => false,
                        (None, _) => b.prefix.prefix_len() == b.prefix.max_prefix_len(),
                    }
            });
            if exact {
                Confidence::Exact
            } else {
                Confidence::InsideSession
            }
        }
        false => Confidence::Ambiguous,
    };
    match confidence {
        Confidence::Ambiguous | Confidence::None => (confidence, None),
        _ => (confidence, first),
    }
}

/// The bindings one query matched in the index, before the store is read.
struct Found {
    cands: Vec<kanki_directory::Candidate>,
    /// For a candidate naming an inside (private) address behind CGNAT:
    /// the bindings of that address at the same moment.
    inside: foldhash::HashMap<usize, Vec<kanki_directory::Candidate>>,
}

impl Found {
    fn lookup(
        c: &Compiled,
        address: IpAddr,
        port: Option<u16>,
        at: DateTime<Utc>,
        skew: u32,
    ) -> Found {
        let mut cands = Vec::new();
        c.index
            .who_at(address, port, at.timestamp(), skew, &mut cands);
        // A CGNAT log that names the inside address: who held that address
        // then (one step; an inside address behind another NAT is not
        // followed further).
        let mut inside = foldhash::HashMap::default();
        let cgnat = !c.inside_address.is_empty();
        for (i, cand) in cands.iter().enumerate().filter(|_| cgnat) {
            if let Some(&addr) = c.inside_address.get(&cand.binding.holder) {
                let mut inner = Vec::new();
                c.index.who_at(addr, None, at.timestamp(), skew, &mut inner);
                inside.insert(i, inner);
            }
        }
        Found { cands, inside }
    }

    fn binding_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.cands
            .iter()
            .chain(self.inside.values().flatten())
            .map(|c| c.binding.id)
    }

    /// Each candidate's subscriber: its subject's, or, for an inside
    /// address, the one subscriber who held that address then.
    fn subscribers<'c>(&self, c: &'c Compiled) -> Vec<Option<&'c str>> {
        self.cands
            .iter()
            .enumerate()
            .map(|(i, cand)| {
                let own = c.subscriber_of(cand.binding.holder);
                let Some(inner) = self.inside.get(&i) else {
                    return own;
                };
                let subs: HashSet<Option<&str>> = inner
                    .iter()
                    .map(|x| c.subscriber_of(x.binding.holder))
                    .collect();
                if subs.len() == 1 {
                    subs.into_iter().next().flatten()
                } else {
                    own
                }
            })
            .collect()
    }

    /// The answer and its audit record (whose sequence number the caller
    /// fills in once it is written). A binding purged since the index was
    /// built is not evidence any more: its candidate is dropped.
    fn answer(
        self,
        c: &Compiled,
        q: &WhoQuery,
        skew: u32,
        stored: &HashMap<i64, StoredBinding>,
    ) -> (Attribution, AuditEntry) {
        let subs = self.subscribers(c);
        let kept: Vec<(
            &kanki_directory::Candidate,
            Option<&str>,
            &StoredBinding,
            Vec<StoredBinding>,
        )> = self
            .cands
            .iter()
            .zip(subs)
            .enumerate()
            .filter_map(|(i, (cand, sub))| {
                let through = self.inside.get(&i).map_or(Vec::new(), |inner| {
                    inner
                        .iter()
                        .filter_map(|x| stored.get(&x.binding.id).cloned())
                        .collect()
                });
                Some((cand, sub, stored.get(&cand.binding.id)?, through))
            })
            .collect();
        let (confidence, subscriber) = judge(kept.iter().map(|k| (k.0, k.1)), q.port);
        let subscriber = subscriber.map(str::to_string);
        let holders: Vec<Holder> = kept
            .into_iter()
            .map(|(cand, sub, binding, through)| Holder {
                subscriber: sub.map(str::to_string),
                subject: binding.binding.subject.clone(),
                near_boundary: cand.near_boundary,
                binding: binding.clone(),
                through,
            })
            .collect();
        let input = serde_json::json!({
            "address": q.address,
            "port": q.port,
            "at": q.at,
            "clock_skew_secs": skew,
        });
        let result = serde_json::json!({
            "confidence": confidence,
            "subscriber": subscriber,
            "candidates": holders.iter().map(|h| serde_json::json!({
                "subscriber": h.subscriber,
                "subject": h.subject.to_string(),
                "binding": h.binding.id,
            })).collect::<Vec<_>>(),
        });
        let entry = AuditEntry {
            at: Utc::now(),
            actor: q.actor.clone(),
            action: "who".into(),
            ground: Some(q.ground),
            purpose: q.purpose.clone(),
            input: input.to_string(),
            result: result.to_string(),
        };
        let answer = Attribution {
            confidence,
            subscriber,
            holders,
            audit_seq: 0,
        };
        (answer, entry)
    }
}
