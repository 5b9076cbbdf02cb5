//! Ingestion: parse an input into events, attribute each through the
//! directory under the ground configured for its class (audited), store
//! the events with their idempotency keys and open or update cases, batch
//! by batch. Parsing, attributing and storing each have a thread, a batch
//! apart.
//!
//! At-least-once: a batch is stored in one transaction with its cases; a
//! kill between the attribution and that transaction only repeats the
//! attribution on a replay (audited again), and events already stored are
//! recognized by key before they are attributed, so a replay adds nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use kanki_audit::Ground;
use kanki_events::shadowserver::Schemas;
use kanki_events::{Event, Format, Item, Items, Notes};
use kanki_service::directory::{BulkAnswer, BulkAsk, Compiled, Confidence, Lookup};
use kanki_service::{Kanki, ServiceError};
use kanki_store::{CaseTarget, EventAttribution, EventWrite, RecordCounts, Severity};
use serde::Serialize;

use crate::case;

/// Events per batch (one attribution transaction and one store transaction).
/// Large: a batch's cost is mostly the pages it dirties (the cases and keys
/// it touches), and a larger batch touches each of them once for more
/// events. A batch in memory is about 30 MB.
const BATCH: usize = 32_768;

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
    let input = kanki_feeds::open_input(input)?;
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
            kanki_events::shadowserver::parse_shadowserver(schema, input).map_err(err)
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
    let result = run(kanki, compiled, id, items, &mut sum, progress);
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

/// Batches waiting between two stages.
const IN_FLIGHT: usize = 1;

fn run(
    kanki: &Kanki,
    compiled: &Compiled,
    ingest: i64,
    items: Items,
    sum: &mut IngestSummary,
    progress: &mut dyn FnMut(&IngestSummary),
) -> Result<(), ServiceError> {
    // Three stages, each on its own thread: parsing (and keying), then
    // judging (key probes and attribution), then storing, here. A batch is
    // stored while the next is attributed and the one after is parsed.
    let origin = sum.origin.clone();
    std::thread::scope(|scope| {
        let (parsed_tx, parsed) =
            std::sync::mpsc::sync_channel::<Result<Parsed, String>>(IN_FLIGHT);
        scope.spawn(move || {
            let mut batch = Parsed::default();
            for item in items {
                match item {
                    Ok(Item::Event(e)) => {
                        batch.keys.push(e.key());
                        batch.events.push(*e);
                    }
                    Ok(Item::Skipped(s)) => batch.skipped.push((s.reason, s.line)),
                    Err(e) => {
                        let _ = parsed_tx.send(Err(e.to_string()));
                        return;
                    }
                }
                if batch.events.len() + batch.skipped.len() == BATCH
                    && parsed_tx.send(Ok(std::mem::take(&mut batch))).is_err()
                {
                    return;
                }
            }
            if !batch.events.is_empty() || !batch.skipped.is_empty() {
                let _ = parsed_tx.send(Ok(batch));
            }
        });
        let (judged_tx, judged) =
            std::sync::mpsc::sync_channel::<Result<Judged, ServiceError>>(IN_FLIGHT);
        scope.spawn(move || {
            // Keys of the batches judged but perhaps not stored yet: a record
            // repeated across them is still recognized before attribution.
            let mut recent = Recent::default();
            for batch in parsed {
                let judged = batch
                    .map_err(|e| ServiceError::Invalid(format!("{origin}: {e}")))
                    .and_then(|b| judge(kanki, compiled, b, &mut recent));
                let failed = judged.is_err();
                if judged_tx.send(judged).is_err() || failed {
                    return;
                }
            }
        });
        for batch in judged {
            let batch = batch?;
            store(kanki, ingest, batch, sum)?;
            progress(sum);
        }
        Ok(())
    })
}

/// A parsed batch with its events' keys.
#[derive(Default)]
struct Parsed {
    events: Vec<Event>,
    keys: Vec<kanki_events::EventKey>,
    skipped: Vec<(String, u64)>,
}

/// A batch judged: what to store, and what it adds to the summary.
struct Judged {
    writes: Vec<EventWrite>,
    cases: Vec<CaseTarget>,
    /// Records, duplicates found by key, attributions and reasons.
    sum: IngestSummary,
    keys_ms: f64,
    attribution_ms: f64,
}

/// The keys of the last few batches judged.
#[derive(Default)]
struct Recent(std::collections::VecDeque<std::collections::HashSet<kanki_events::EventKey>>);

impl Recent {
    fn contains(&self, k: &kanki_events::EventKey) -> bool {
        self.0.iter().any(|s| s.contains(k))
    }

    fn push(&mut self, keys: std::collections::HashSet<kanki_events::EventKey>) {
        if self.0.len() > IN_FLIGHT + 1 {
            self.0.pop_front();
        }
        self.0.push_back(keys);
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
    };
    let judged = judge(kanki, compiled, parsed, &mut Recent::default())?;
    store(kanki, ingest, judged, sum)
}

/// Leaves out the events stored before (by key), attributes the others
/// (audited) and says which case each belongs to.
fn judge(
    kanki: &Kanki,
    compiled: &Compiled,
    batch: Parsed,
    recent: &mut Recent,
) -> Result<Judged, ServiceError> {
    let removal = kanki.store.removal();
    let t0 = Instant::now();
    let mut sum = IngestSummary {
        records: (batch.events.len() + batch.skipped.len()) as u64,
        ..Default::default()
    };
    for (reason, line) in &batch.skipped {
        sum.skipped.add(reason, Some(*line));
    }
    let known = removal.known_event_keys(&batch.keys)?;
    let mut fresh: Vec<(kanki_events::EventKey, Event)> = Vec::with_capacity(batch.events.len());
    // A batch may repeat a record too.
    let mut seen = std::collections::HashSet::with_capacity(batch.events.len());
    for ((k, e), known) in batch.keys.into_iter().zip(batch.events).zip(known) {
        if known || recent.contains(&k) || !seen.insert(k) {
            sum.duplicates += 1;
        } else {
            fresh.push((k, e));
        }
    }
    recent.push(seen);
    let t_keys = t0.elapsed();
    // One bulk attribution (one audit record) per ground and purpose in
    // the batch: a class's ground, a feed's name.
    let cfg = &kanki.config.removal;
    let mut groups: HashMap<(Ground, String), (Vec<Lookup>, Vec<usize>)> = HashMap::new();
    for (i, (_, e)) in fresh.iter().enumerate() {
        if let Some(&ground) = cfg.grounds.get(&e.class) {
            let purpose = format!(
                "removal: find the subscribers behind {} events from {} to notify them",
                e.class, e.feed_name
            );
            let (lookups, of) = groups.entry((ground, purpose)).or_default();
            lookups.push(Lookup {
                address: e.source_ip,
                port: e.source_port,
                at: e.time_source,
            });
            of.push(i);
        }
    }
    // Per event: its answer and the audit record listing it.
    let mut answers: Vec<Option<(BulkAnswer, i64)>> = vec![None; fresh.len()];
    for ((ground, purpose), (lookups, of)) in groups {
        let asked = BulkAsk {
            actor: "removal".into(),
            ground,
            purpose,
        };
        let done = kanki.who_bulk(compiled, &asked, &lookups)?;
        for (a, i) in done.answers.into_iter().zip(of) {
            answers[i] = Some((a, done.audit_seq));
        }
    }
    let t_who = t0.elapsed();
    let mut cases: Vec<CaseTarget> = Vec::new();
    let mut case_of: HashMap<(String, String), usize> = HashMap::new();
    let mut writes = Vec::with_capacity(fresh.len());
    for ((key, e), answer) in fresh.into_iter().zip(answers) {
        let mut w = EventWrite {
            key,
            event: e,
            attribution: None,
            unattributed: None,
            case: None,
        };
        let e = &w.event;
        let reason = match answer {
            None => Some(format!("no ground configured for class {}", e.class)),
            Some((a, audit_seq)) => match (a.subscriber, a.confidence) {
                (_, Confidence::None) => Some("no binding holds the address at that time".into()),
                (_, Confidence::Ambiguous) => Some("several subscribers held the address".into()),
                (None, _) => Some("the holder maps to no subscriber".into()),
                (Some(s), c) => {
                    w.attribution = Some(EventAttribution {
                        subscriber: s,
                        confidence: serde_json::to_value(c)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        audit_seq,
                    });
                    None
                }
            },
        };
        match (&w.attribution, reason) {
            (Some(a), _) => {
                sum.attributed += 1;
                let k = (a.subscriber.clone(), e.threat().to_string());
                let i = *case_of.entry(k).or_insert_with(|| {
                    cases.push(CaseTarget {
                        subscriber: a.subscriber.clone(),
                        threat: e.threat().to_string(),
                        class: e.class.clone(),
                        severity: severity(kanki, &e.class),
                    });
                    cases.len() - 1
                });
                w.case = Some(i);
            }
            (None, Some(r)) => {
                sum.unattributed.add(&r, None);
                w.unattributed = Some(r);
            }
            (None, None) => {}
        }
        writes.push(w);
    }
    Ok(Judged {
        writes,
        cases,
        sum,
        keys_ms: t_keys.as_secs_f64() * 1e3,
        attribution_ms: (t_who - t_keys).as_secs_f64() * 1e3,
    })
}

/// Stores a judged batch: its new events, and the cases they open or update.
fn store(
    kanki: &Kanki,
    ingest: i64,
    j: Judged,
    sum: &mut IngestSummary,
) -> Result<RecordCounts, ServiceError> {
    let t0 = Instant::now();
    let now = Utc::now();
    let counts = if j.writes.is_empty() {
        RecordCounts::default()
    } else {
        kanki.store.removal().record_events(
            ingest,
            &j.writes,
            &j.cases,
            &mut |open, d| case::on_events(open, d, now),
            now,
        )?
    };
    tracing::debug!(
        events = j.writes.len(),
        keys_ms = j.keys_ms,
        attribution_ms = j.attribution_ms,
        stored_ms = t0.elapsed().as_secs_f64() * 1e3,
        "ingest batch"
    );
    let s = j.sum;
    sum.records += s.records;
    sum.duplicates += s.duplicates + counts.duplicates;
    sum.attributed += s.attributed;
    sum.skipped.merge(s.skipped);
    sum.unattributed.merge(s.unattributed);
    sum.events += counts.inserted;
    sum.cases_opened += counts.cases_opened;
    sum.cases_updated += counts.cases_updated;
    Ok(counts)
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
