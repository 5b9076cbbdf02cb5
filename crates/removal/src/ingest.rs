//! Ingestion: parse an input into events, attribute each through the
//! directory under the ground configured for its class (audited), store
//! the events with their idempotency keys and open or update cases, batch
//! by batch. Parsing, judging (key probes, attribution) and storing each
//! have a thread, a batch apart.
//!
//! At-least-once: batches are stored in transactions of about a second,
//! each batch with its cases and the audit records of the lookups that
//! attributed it. A kill loses only what was not committed (neither its
//! events nor its keys nor its lookups' records), which a replay stores;
//! events already stored are recognized by key before they are
//! attributed, so a replay adds nothing.
//!
//! Memory is bounded whatever the input: a batch ends at a count of events
//! or of bytes ([`StreamMemory::batch_bytes`]), and the batches between the
//! parser and the store hold at most [`BATCHES_IN_FLIGHT`] times that
//! together.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::BuildHasherDefault;
use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use chrono::Utc;
use kanki_audit::Ground;
use kanki_events::shadowserver::{NETWORK, Schemas};
use kanki_events::{Event, EventKey, Format, Item, Items, KeyHasher, Notes};
use kanki_service::directory::{BulkAnswer, BulkAsk, Compiled, Confidence, Lookup};
use kanki_service::{Kanki, ServiceError, StreamMemory};
use kanki_store::{
    CaseTarget, EventAttribution, EventBatch, EventWrite, NextBatch, RecordCounts, Severity,
};
use serde::Serialize;

use crate::case;

/// Events per batch (one attribution transaction and one store transaction)
/// at most. Large: a batch's cost is mostly the pages it dirties (the cases
/// and keys it touches), and a larger batch touches each of them once for
/// more events.
const BATCH: usize = 32_768;

/// The bytes of the batches parsed and not yet freed by the store, at most,
/// in batches: a batch is parsed on while the one before is judged and the
/// one before that is stored. A batch ends, too, when its events hold
/// [`StreamMemory::batch_bytes`] (as [`Event::size_in_memory`] counts them;
/// with 8 MiB some 8,000 rows of a 33-column Shadowserver report), one
/// record of up to [`kanki_events::MAX_RECORD`] bytes past it at most.
/// With the batch being parsed, the ingest's events hold four batches'
/// bytes at most whatever the input. Before this bound, a 1 GiB zip bomb of report rows
/// peaked at 127 MiB with 2 parsed and 6 judged batches of up to 32,768
/// events in flight.
const BATCHES_IN_FLIGHT: usize = 3;

/// What to read.
#[derive(Clone, Debug)]
pub struct Source {
    pub format: Format,
    /// Shadowserver: the report type, else taken from `origin`'s file name.
    pub report_type: Option<String>,
    /// Sinkhole: the mapping's name.
    pub mapping: Option<String>,
    /// A file name, `stdin`, `http`, `sensor`.
    pub origin: String,
    /// Who ingests: the audit log's actor of the attributions made (the
    /// authenticated operator or token through the API, the
    /// operating-system user from the command line, `removal` for kanki's
    /// own jobs).
    pub actor: String,
}

/// Counted reasons, with the first few line numbers of each.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reasons(pub BTreeMap<String, ReasonCount>);

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReasonCount {
    pub count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub first_lines: Vec<u64>,
}

impl Reasons {
    fn add(&mut self, reason: &str, line: Option<u64>) {
        let r = self.0.entry(reason.to_string()).or_default();
        r.count += 1;
        if let Some(l) = line
            && r.first_lines.len() < 5
        {
            r.first_lines.push(l);
        }
    }

    fn merge(&mut self, other: Reasons) {
        for (reason, c) in other.0 {
            let r = self.0.entry(reason).or_default();
            r.count += c.count;
            let room = 5usize.saturating_sub(r.first_lines.len());
            r.first_lines.extend(c.first_lines.into_iter().take(room));
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().map(|r| r.count).sum()
    }
}

/// What an ingest did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestSummary {
    pub id: i64,
    pub origin: String,
    pub format: String,
    #[serde(flatten)]
    pub notes: Notes,
    pub records: u64,
    /// Events stored now.
    pub events: u64,
    /// Events stored before (a replay).
    pub duplicates: u64,
    pub skipped: Reasons,
    /// Records read, with a remark on how (`short row`: fewer fields than
    /// the header, the missing ones read as empty).
    pub remarks: Reasons,
    pub attributed: u64,
    pub unattributed: Reasons,
    pub cases_opened: u64,
    pub cases_updated: u64,
    pub elapsed_ms: u64,
}

/// Opens the parser for a source.
pub fn parse(
    kanki: &Kanki,
    s: &Source,
    input: Box<dyn Read + Send>,
) -> Result<(Notes, Items), ServiceError> {
    let input = kanki_feeds::open_input(input, &kanki.config.input)?;
    let err = |e: kanki_events::EventsError| ServiceError::Invalid(format!("{}: {e}", s.origin));
    match s.format {
        Format::Shadowserver => {
            let schemas = schemas(kanki)?;
            let report_type = s
                .report_type
                .clone()
                .or_else(|| schemas.type_in_file_name(&s.origin).map(str::to_string))
                .ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "{}: no Shadowserver report type in the file name; give one with --report-type (one of the {} types in the schemas)",
                        s.origin,
                        schemas.len()
                    ))
                })?;
            let schema = schemas.report(&report_type).ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "{}: unknown Shadowserver report type {report_type:?}: not in the schemas (update removal.shadowserver_schemas?)",
                    s.origin
                ))
            })?;
            kanki_events::shadowserver::parse_shadowserver(schema, input, false).map_err(err)
        }
        Format::Sinkhole => {
            let name = s.mapping.as_deref().ok_or_else(|| {
                ServiceError::Invalid(
                    "--format sinkhole needs --mapping NAME ([[removal.sinkholes]])".into(),
                )
            })?;
            let m = kanki
                .config
                .removal
                .sinkholes
                .iter()
                .find(|m| m.name == name)
                .ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "no [[removal.sinkholes]] mapping named {name:?}"
                    ))
                })?;
            kanki_events::parse_mapped(m.clone(), input).map_err(err)
        }
        Format::Cowrie => Ok((Notes::default(), kanki_events::parse_cowrie(input))),
        Format::Xarf => kanki_events::parse_xarf(input).map_err(err),
    }
}

fn schemas(kanki: &Kanki) -> Result<Arc<Schemas>, ServiceError> {
    let Some(dir) = &kanki.config.removal.shadowserver_schemas else {
        return Ok(Schemas::builtin());
    };
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| ServiceError::Io {
            context: format!("cannot read {}", dir.join(f).display()),
            source: e,
        })
    };
    Ok(Arc::new(
        Schemas::load(&read("intelmq.json")?, &read("reports.json")?)
            .map_err(ServiceError::Invalid)?,
    ))
}

/// Parses `input` and ingests it. `progress` is called after each batch
/// with the summary so far.
pub fn ingest(
    kanki: &Kanki,
    compiled: &Compiled,
    source: &Source,
    input: Box<dyn Read + Send>,
    progress: &mut dyn FnMut(&IngestSummary),
) -> Result<IngestSummary, ServiceError> {
    let started = Instant::now();
    let (notes, items) = parse(kanki, source, input)?;
    let removal = kanki.store.removal();
    let id = removal.begin_ingest(
        source.format.as_str(),
        &source.origin,
        notes.report_type.as_deref(),
        Utc::now(),
    )?;
    let mut sum = IngestSummary {
        id,
        origin: source.origin.clone(),
        format: source.format.to_string(),
        notes,
        ..Default::default()
    };
    let result = run(
        kanki,
        compiled,
        id,
        items,
        &source.actor,
        &mut sum,
        progress,
    );
    sum.elapsed_ms = started.elapsed().as_millis() as u64;
    let status = if result.is_ok() {
        "completed"
    } else {
        "failed"
    };
    let text = serde_json::to_string(&sum).unwrap_or_default();
    removal.finish_ingest(id, status, &text, Utc::now())?;
    result.map(|_| sum)
}

/// Parsed batches waiting to be judged.
const PARSED_IN_FLIGHT: usize = 2;

/// Judged batches waiting to be stored: parsing and judging go on while
/// the store commits (writing its pages to the WAL, a third of a day's
/// ingest), so that the store finds batches ready when it is done, as far
/// as the bytes in flight let them.
const JUDGED_IN_FLIGHT: usize = 6;

/// The bytes of the batches in flight between the parser and the store,
/// against a bound: the parser holds a batch's bytes before it hands it
/// on, and they are released when the store has freed it.
struct InFlight {
    most: usize,
    /// Bytes held, and whether the ingest has ended (nothing waits then).
    held: std::sync::Mutex<(usize, bool)>,
    freed: std::sync::Condvar,
}

impl InFlight {
    fn within(memory: StreamMemory) -> InFlight {
        InFlight {
            most: BATCHES_IN_FLIGHT * memory.batch_bytes,
            held: Default::default(),
            freed: Default::default(),
        }
    }

    /// Waits until `bytes` more fit under the bound (or nothing is held,
    /// so that a batch always goes), then holds them; false when the
    /// ingest has ended.
    fn hold(&self, bytes: usize) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while !held.1 && held.0 > 0 && held.0 + bytes > self.most {
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.0 += bytes;
        !held.1
    }

    fn release(&self, bytes: usize) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 = held.0.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// The ingest has ended (the store stage returned): no one waits.
    fn close(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.freed.notify_all();
    }
}

fn run(
    kanki: &Kanki,
    compiled: &Compiled,
    ingest: i64,
    items: Items,
    actor: &str,
    sum: &mut IngestSummary,
    progress: &mut dyn FnMut(&IngestSummary),
) -> Result<(), ServiceError> {
    // Three stages, each on its own thread: parsing (and keying), then
    // judging (key probes, attribution, compression of the raw records),
    // then storing, here. A batch is stored while the next is judged and
    // the one after is parsed.
    let origin = sum.origin.clone();
    let memory = kanki.stream_memory;
    let in_flight = Arc::new(InFlight::within(memory));
    std::thread::scope(|scope| {
        let (parsed_tx, parsed) =
            std::sync::mpsc::sync_channel::<Result<Parsed, String>>(PARSED_IN_FLIGHT);
        let parser_in_flight = in_flight.clone();
        scope.spawn(move || {
            let mut batch = Parsed::default();
            let mut prefix = None;
            let hand_on = |batch: Parsed| {
                parser_in_flight.hold(batch.bytes) && parsed_tx.send(Ok(batch)).is_ok()
            };
            for item in items {
                match item {
                    Ok(Item::Event(e)) => {
                        if let Some(r) = e.remark {
                            batch.remarks.push(r);
                        }
                        batch.bytes += e.size_in_memory() + std::mem::size_of::<EventKey>();
                        batch.keys.push(e.key_with(&mut prefix));
                        batch.events.push(*e);
                    }
                    Ok(Item::Skipped(s)) => {
                        batch.bytes += s.reason.len() + std::mem::size_of::<(String, u64)>();
                        batch.skipped.push((s.reason, s.line));
                    }
                    Err(e) => {
                        let _ = parsed_tx.send(Err(e.to_string()));
                        return;
                    }
                }
                let full = batch.events.len() + batch.skipped.len() == BATCH
                    || batch.bytes >= memory.batch_bytes;
                if full && !hand_on(std::mem::take(&mut batch)) {
                    return;
                }
            }
            if !batch.events.is_empty() || !batch.skipped.is_empty() {
                hand_on(batch);
            }
        });
        let (judged_tx, judged) =
            std::sync::mpsc::sync_channel::<Result<Judged, ServiceError>>(JUDGED_IN_FLIGHT);
        scope.spawn(move || {
            let mut known = KnownKeys::loading_hours(memory);
            for batch in parsed {
                let judged = batch
                    .map_err(|e| ServiceError::Invalid(format!("{origin}: {e}")))
                    .and_then(|b| judge(kanki, compiled, b, actor, &mut known));
                let failed = judged.is_err();
                if judged_tx.send(judged).is_err() || failed {
                    return;
                }
            }
        });
        let stored = store_stream(kanki, ingest, judged, &in_flight, sum, progress);
        in_flight.close();
        stored
    })
}

/// The store stage: judged batches are stored as they come, a commit
/// window at a time; the summary grows as each transaction commits.
fn store_stream(
    kanki: &Kanki,
    ingest: i64,
    judged: Receiver<Result<Judged, ServiceError>>,
    in_flight: &Arc<InFlight>,
    sum: &mut IngestSummary,
    progress: &mut dyn FnMut(&IngestSummary),
) -> Result<(), ServiceError> {
    // The summaries of the batches handed to the store and not committed.
    let uncommitted = RefCell::new(VecDeque::new());
    // The bytes held in flight by the batches handed to the store and not
    // freed yet, in order.
    let unfreed = RefCell::new(VecDeque::new());
    let mut failed = None;
    let mut next = |wait: Option<Duration>| {
        let got = match wait {
            None => judged.recv().ok(),
            Some(left) => match judged.recv_timeout(left) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => return NextBatch::NotYet,
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        match got {
            None => NextBatch::End,
            Some(Err(e)) => {
                failed = Some(e);
                NextBatch::End
            }
            Some(Ok(j)) => {
                tracing::debug!(
                    events = j.batch.events.len(),
                    keys_ms = j.keys_ms,
                    attribution_ms = j.attribution_ms,
                    "ingest batch judged"
                );
                uncommitted.borrow_mut().push_back(j.sum);
                unfreed.borrow_mut().push_back(j.bytes);
                NextBatch::Batch(Box::new(j.batch))
            }
        }
    };
    // Batches are freed on a thread of their own as soon as they are
    // written (before their commit): a batch is some 300,000 small
    // allocations, and freeing them took the store stage a twentieth of
    // its time.
    // They are released from the bytes in flight once freed.
    let (spent_tx, spent) = std::sync::mpsc::channel::<(Box<EventBatch>, usize)>();
    let freer_in_flight = in_flight.clone();
    let freer = std::thread::spawn(move || {
        for (batch, bytes) in spent {
            drop(batch);
            freer_in_flight.release(bytes);
        }
    });
    let stored = kanki.store.removal().record_event_stream(
        ingest,
        &mut next,
        &mut case::on_events,
        &mut |batch| {
            let bytes = unfreed.borrow_mut().pop_front().unwrap_or_default();
            let _ = spent_tx.send((batch, bytes));
        },
        &mut |batches, counts| {
            for s in uncommitted.borrow_mut().drain(..batches) {
                sum.add_judged(s);
            }
            sum.add_stored(&counts);
            progress(sum);
            Ok(())
        },
        // A kill loses only batches not committed, which a replay stores
        // (their keys were not stored either).
        kanki.config.removal.commit_window.0,
    );
    drop(spent_tx);
    let _ = freer.join();
    stored?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl IngestSummary {
    /// What judging a batch found: records, duplicates by key,
    /// attributions and reasons.
    fn add_judged(&mut self, s: IngestSummary) {
        self.records += s.records;
        self.duplicates += s.duplicates;
        self.attributed += s.attributed;
        self.skipped.merge(s.skipped);
        self.remarks.merge(s.remarks);
        self.unattributed.merge(s.unattributed);
    }

    /// What storing batches did.
    fn add_stored(&mut self, c: &RecordCounts) {
        self.duplicates += c.duplicates;
        self.events += c.inserted;
        self.cases_opened += c.cases_opened;
        self.cases_updated += c.cases_updated;
    }
}

/// A parsed batch with its events' keys.
#[derive(Default)]
struct Parsed {
    events: Vec<Event>,
    keys: Vec<EventKey>,
    skipped: Vec<(String, u64)>,
    remarks: Vec<&'static str>,
    /// What its events and skipped records hold in memory, about.
    bytes: usize,
}

/// A batch judged: what to store, and what it adds to the summary.
struct Judged {
    batch: EventBatch,
    /// Records, duplicates found by key, attributions and reasons.
    sum: IngestSummary,
    keys_ms: f64,
    attribution_ms: f64,
    /// The parsed batch's bytes, held in flight until the store frees it.
    bytes: usize,
}

/// A set of event keys, hashed by their own bytes.
type KeySet = HashSet<EventKey, BuildHasherDefault<KeyHasher>>;

/// Batches whose keys are kept when the store is asked: those judged and
/// perhaps not committed yet (one commit window and the stages between).
const RECENT_BATCHES: usize = 16;

/// The keys of events stored before, to leave a replayed record out
/// before it is attributed (and the lookup audited) again. A large ingest
/// reads the stored keys of each hour its records fall in once (keys begin
/// with their hour, so that is one range of the key index) and adds the
/// keys of the batches it judges; asking the store for every key of every
/// batch was most of the time of a replay. A key stored by another writer
/// after its hour was read is still caught when the event is stored.
struct KnownKeys {
    /// The keys held while hours are read, at most: past it the store is
    /// asked batch by batch ([`StreamMemory::keys_bytes`] in keys; some
    /// 450,000 in 8 MiB). With the batches in flight it keeps an ingest in
    /// its memory bound whatever the input.
    most: usize,
    /// The hours read, while under `most`; `None`: ask the store.
    hours: Option<foldhash::HashSet<u32>>,
    keys: KeySet,
    /// When asking the store: the keys of the last batches judged.
    recent: VecDeque<Vec<EventKey>>,
}

impl KnownKeys {
    fn loading_hours(memory: StreamMemory) -> KnownKeys {
        KnownKeys {
            most: kanki_events::hash_set_items_within(memory.keys_bytes, size_of::<EventKey>()),
            hours: Some(Default::default()),
            keys: KeySet::default(),
            recent: VecDeque::new(),
        }
    }

    fn asking_the_store() -> KnownKeys {
        KnownKeys {
            most: 0,
            hours: None,
            keys: KeySet::default(),
            recent: VecDeque::new(),
        }
    }

    /// For each key, whether its event is stored or was judged before.
    fn known(&mut self, kanki: &Kanki, keys: &[EventKey]) -> Result<Vec<bool>, ServiceError> {
        let removal = kanki.store.removal();
        if let Some(hours) = &mut self.hours {
            // Keys come mostly in runs of one hour.
            let mut last = None;
            let mut full = false;
            for k in keys {
                let hour = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
                if !full && last.replace(hour) != Some(hour) && hours.insert(hour) {
                    removal.event_keys_of_hour(hour, &mut |k| {
                        // Never past the bound, however many are stored.
                        if self.keys.len() < self.most {
                            self.keys.insert(k);
                        } else {
                            full = true;
                        }
                    })?;
                }
            }
            if !full {
                return Ok(keys.iter().map(|k| self.keys.contains(k)).collect());
            }
            tracing::debug!(
                keys = self.keys.len(),
                "ingest: too many stored keys to hold; asking the store"
            );
            *self = KnownKeys::asking_the_store();
        }
        let stored = removal.known_event_keys(keys)?;
        Ok(keys
            .iter()
            .zip(stored)
            .map(|(k, s)| s || self.keys.contains(k))
            .collect())
    }

    /// The keys of a batch just judged (its new events).
    fn judged(&mut self, keys: Vec<EventKey>) {
        if self.hours.is_some() && self.keys.len() + keys.len() > self.most {
            tracing::debug!(
                keys = self.keys.len(),
                "ingest: too many keys to hold; asking the store"
            );
            *self = KnownKeys::asking_the_store();
        }
        self.keys.extend(keys.iter().copied());
        if self.hours.is_none() {
            self.recent.push_back(keys);
            if self.recent.len() > RECENT_BATCHES
                && let Some(old) = self.recent.pop_front()
            {
                for k in &old {
                    self.keys.remove(k);
                }
            }
        }
    }
}

/// Attributes and stores one batch of events.
pub fn record_batch(
    kanki: &Kanki,
    compiled: &Compiled,
    ingest: i64,
    events: Vec<Event>,
    sum: &mut IngestSummary,
) -> Result<RecordCounts, ServiceError> {
    let keys = events.iter().map(Event::key).collect();
    let parsed = Parsed {
        events,
        keys,
        skipped: Vec::new(),
        remarks: Vec::new(),
        bytes: 0,
    };
    let judged = judge(
        kanki,
        compiled,
        parsed,
        "removal",
        &mut KnownKeys::asking_the_store(),
    )?;
    let counts = kanki
        .store
        .removal()
        .record_events(ingest, judged.batch, &mut case::on_events)?;
    sum.add_judged(judged.sum);
    sum.add_stored(&counts);
    Ok(counts)
}

/// Leaves out the events stored before (by key), attributes the others
/// and says which case each belongs to. The audit records of the lookups
/// go with the batch, to be appended when it is stored.
fn judge(
    kanki: &Kanki,
    compiled: &Compiled,
    batch: Parsed,
    actor: &str,
    known: &mut KnownKeys,
) -> Result<Judged, ServiceError> {
    let t0 = Instant::now();
    let bytes = batch.bytes;
    let mut sum = IngestSummary {
        records: (batch.events.len() + batch.skipped.len()) as u64,
        ..Default::default()
    };
    for (reason, line) in &batch.skipped {
        sum.skipped.add(reason, Some(*line));
    }
    for remark in &batch.remarks {
        sum.remarks.add(remark, None);
    }
    let stored = known.known(kanki, &batch.keys)?;
    // The events to store, by index: an event is moved once, into its
    // write (it is some 350 bytes).
    let mut fresh: Vec<usize> = Vec::with_capacity(batch.events.len());
    // A batch may repeat a record too.
    let mut seen = KeySet::with_capacity_and_hasher(batch.events.len(), Default::default());
    for (i, (k, stored)) in batch.keys.iter().zip(stored).enumerate() {
        if stored || !seen.insert(*k) {
            sum.duplicates += 1;
        } else {
            fresh.push(i);
        }
    }
    drop(seen);
    known.judged(fresh.iter().map(|&i| batch.keys[i]).collect());
    let t_keys = t0.elapsed();
    // One bulk attribution (one audit record) per ground and purpose in
    // the batch: a class's ground, a feed's name.
    let cfg = &kanki.config.removal;
    let mut groups: Vec<(Ground, String, Vec<Lookup>, Vec<usize>)> = Vec::new();
    let mut group_of: foldhash::HashMap<(&str, &str), Option<usize>> = Default::default();
    // The events of an input mostly share their class and feed.
    let mut last: Option<(&str, &str, Option<usize>)> = None;
    for (j, e) in fresh.iter().map(|&i| &batch.events[i]).enumerate() {
        let (class, feed) = (e.class.as_str(), e.feed_name.as_str());
        let group = match last {
            Some((c, f, g)) if c == class && f == feed => g,
            _ => *group_of.entry((class, feed)).or_insert_with(|| {
                let &ground = cfg.grounds.get(&e.class)?;
                let purpose = format!(
                    "removal: find the subscribers behind {} events from {} to notify them",
                    e.class, e.feed_name
                );
                match groups.iter().position(|g| g.0 == ground && g.1 == purpose) {
                    Some(g) => Some(g),
                    None => {
                        groups.push((ground, purpose, Vec::new(), Vec::new()));
                        Some(groups.len() - 1)
                    }
                }
            }),
        };
        last = Some((class, feed, group));
        // A network names no one subscriber: it is not looked up.
        if let Some(g) = group.filter(|_| !e.extra.contains_key(NETWORK)) {
            let (_, _, lookups, of) = &mut groups[g];
            lookups.push(Lookup {
                address: e.source_ip,
                port: e.source_port,
                at: e.time_source,
            });
            of.push(j);
        }
    }
    drop(group_of);
    // Per fresh event: its answer and the audit record listing it.
    let mut answers: Vec<Option<(BulkAnswer, usize)>> = vec![None; fresh.len()];
    let mut audits = Vec::with_capacity(groups.len());
    for (ground, purpose, lookups, of) in groups {
        let asked = BulkAsk {
            actor: actor.to_string(),
            ground,
            purpose,
        };
        let done = kanki.who_bulk(compiled, &asked, &lookups)?;
        for (a, j) in done.answers.into_iter().zip(of) {
            answers[j] = Some((a, audits.len()));
        }
        audits.push(done.record);
    }
    let t_who = t0.elapsed();
    let mut cases: Vec<CaseTarget> = Vec::new();
    // A subscriber's cases in this batch, by threat: most subscribers have
    // one, so a short list beats a map keyed by two cloned strings.
    let mut cases_of: foldhash::HashMap<String, Vec<usize>> = Default::default();
    let mut writes = Vec::with_capacity(fresh.len());
    let mut answers = answers.into_iter();
    let mut fresh = fresh.into_iter().peekable();
    for (i, (key, e)) in batch.keys.into_iter().zip(batch.events).enumerate() {
        if fresh.next_if_eq(&i).is_none() {
            continue;
        }
        let (mut attribution, mut audit, mut unattributed, mut case) = (None, None, None, None);
        let answer = answers.next().flatten();
        let reason = match answer {
            None if e.extra.contains_key(NETWORK) => {
                Some("a network (source.network), not one address".into())
            }
            None => Some(format!("no ground configured for class {}", e.class)),
            Some((a, record)) => match (a.subscriber, a.confidence) {
                (_, Confidence::None) => Some("no binding holds the address at that time".into()),
                (_, Confidence::Ambiguous) => Some("several subscribers held the address".into()),
                (None, _) => Some("the holder maps to no subscriber".into()),
                (Some(s), c) => {
                    attribution = Some(EventAttribution {
                        subscriber: s,
                        confidence: c.as_str().to_string(),
                        audit_seq: 0,
                    });
                    audit = Some(record);
                    None
                }
            },
        };
        match (&attribution, reason) {
            (Some(a), _) => {
                sum.attributed += 1;
                let threat = e.threat();
                let of = match cases_of.get_mut(&a.subscriber) {
                    Some(of) => of,
                    None => cases_of.entry(a.subscriber.clone()).or_default(),
                };
                let i = match of.iter().find(|&&i| cases[i].threat == threat) {
                    Some(&i) => i,
                    None => {
                        cases.push(CaseTarget {
                            subscriber: a.subscriber.clone(),
                            threat: threat.to_string(),
                            class: e.class.clone(),
                            severity: severity(kanki, &e.class),
                        });
                        of.push(cases.len() - 1);
                        cases.len() - 1
                    }
                };
                case = Some(i);
            }
            (None, Some(r)) => {
                sum.unattributed.add(&r, None);
                unattributed = Some(r);
            }
            (None, None) => {}
        }
        writes.push(EventWrite {
            key,
            event: e,
            attribution,
            audit,
            unattributed,
            case,
        });
    }
    Ok(Judged {
        batch: EventBatch::new(writes, cases, audits, Utc::now()),
        sum,
        keys_ms: t_keys.as_secs_f64() * 1e3,
        attribution_ms: (t_who - t_keys).as_secs_f64() * 1e3,
        bytes,
    })
}

fn severity(kanki: &Kanki, class: &str) -> Severity {
    kanki
        .config
        .removal
        .severity
        .get(class)
        .and_then(|s| s.parse().ok())
        .unwrap_or(Severity::Medium)
}

/// Whether a file in the watched directory is a complete report waiting
/// to be ingested: a writer puts a file in under a hidden or partial name
/// (`.x`, `*.part`, `*.tmp`) and renames it when done. A symbolic link is
/// not followed (it could point at any file kanki can read, and its text
/// would end up in `failed/`): only a regular file is taken.
pub fn waiting_report(path: &std::path::Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    regular && !name.starts_with('.') && !name.ends_with(".part") && !name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch waits for room under the bound until the store frees one
    /// before it; one batch alone always goes; an ended ingest waits for
    /// nothing.
    #[test]
    fn batches_in_flight_hold_at_most_the_bound() {
        let memory = StreamMemory::ONE_SHOT;
        let f = Arc::new(InFlight::within(memory));
        let batch_bytes = memory.batch_bytes;
        assert!(f.hold(2 * batch_bytes));
        assert!(f.hold(batch_bytes));
        let waiting = {
            let f = f.clone();
            std::thread::spawn(move || {
                let went = f.hold(batch_bytes);
                let held = f.held.lock().unwrap().0;
                (went, held)
            })
        };
        // The waiting batch goes once the first is freed, and then the
        // bytes held are within the bound.
        f.release(2 * batch_bytes);
        assert_eq!(waiting.join().unwrap(), (true, 2 * batch_bytes));
        f.release(2 * batch_bytes);
        // Larger than the bound, alone: it goes.
        assert!(f.hold(BATCHES_IN_FLIGHT * batch_bytes + 1));
        let blocked = {
            let f = f.clone();
            std::thread::spawn(move || f.hold(1))
        };
        f.close();
        assert!(!blocked.join().unwrap());
    }
}
