//! Ingestion: parse an input into events, attribute each through the
//! directory under the ground configured for its class (audited), store
//! the events with their idempotency keys and open or update cases, batch
//! by batch. A parser thread feeds the attributing and storing thread.
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
const BATCH: usize = 8192;

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

fn run(
    kanki: &Kanki,
    compiled: &Compiled,
    ingest: i64,
    items: Items,
    sum: &mut IngestSummary,
    progress: &mut dyn FnMut(&IngestSummary),
) -> Result<(), ServiceError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Item>, String>>(4);
        scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            for item in items {
                match item {
                    Ok(i) => batch.push(i),
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
                if batch.len() == BATCH
                    && tx
                        .send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))))
                        .is_err()
                {
                    return;
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch));
            }
        });
        for batch in rx {
            let batch = batch.map_err(|e| ServiceError::Invalid(format!("{}: {e}", sum.origin)))?;
            let mut events = Vec::with_capacity(batch.len());
            for item in batch {
                sum.records += 1;
                match item {
                    Item::Event(e) => events.push(*e),
                    Item::Skipped(s) => sum.skipped.add(&s.reason, Some(s.line)),
                }
            }
            record_batch(kanki, compiled, ingest, events, sum)?;
            progress(sum);
        }
        Ok(())
    })
}

/// Attributes and stores one batch of events.
pub fn record_batch(
    kanki: &Kanki,
    compiled: &Compiled,
    ingest: i64,
    events: Vec<Event>,
    sum: &mut IngestSummary,
) -> Result<RecordCounts, ServiceError> {
    let removal = kanki.store.removal();
    let t0 = Instant::now();
    let keys: Vec<_> = events.iter().map(Event::key).collect();
    let known = removal.known_event_keys(&keys)?;
    let mut fresh: Vec<(kanki_events::EventKey, Event)> = Vec::with_capacity(events.len());
    // A batch may repeat a record too.
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    for ((k, e), known) in keys.into_iter().zip(events).zip(known) {
        if known || !seen.insert(k) {
            sum.duplicates += 1;
        } else {
            fresh.push((k, e));
        }
    }
    if fresh.is_empty() {
        return Ok(RecordCounts::default());
    }
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
    let now = Utc::now();
    let writes_len = writes.len();
    let counts = removal.record_events(
        ingest,
        &writes,
        &cases,
        &mut |open, d| case::on_events(open, d, now),
        now,
    )?;
    tracing::debug!(
        events = writes_len,
        keys_ms = t_keys.as_secs_f64() * 1e3,
        attribution_ms = (t_who - t_keys).as_secs_f64() * 1e3,
        stored_ms = (t0.elapsed() - t_who).as_secs_f64() * 1e3,
        "ingest batch"
    );
    sum.events += counts.inserted;
    sum.duplicates += counts.duplicates;
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
