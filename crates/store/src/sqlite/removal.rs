//! [`RemovalBackend`] for SQLite.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use kanki_events::EventKey;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, Statement, params};

use super::event_keys::StoredKeys;
use super::{SqliteBackend, from_ts, ts};
use crate::event_segment::{
    Fields, SEGMENT_EVENTS, SegmentCase, SegmentEvent, decode_fields, decode_fields_of,
    decode_raw_of, encode_fields, split_event_id,
};
use crate::removal::*;
use crate::{Result, StoreError};

fn parse<T: std::str::FromStr<Err = String>>(s: String) -> rusqlite::Result<T> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

fn opt_ts(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_ts)
}

/// A case's columns, as [`case_from_row`] reads them (a macro, so that
/// statements can be whole constants).
macro_rules! case_columns {
    () => {
        "id, subscriber, threat, class, severity, state, held, hold_reason, opened_at, first_seen, last_seen, events, notices, unacknowledged, last_notice_at, acknowledged_at, quiet_at, resolved_at, escalated_at, reinfections, closed_at, close_reason, updated_at"
    };
}
const CASE_COLUMNS: &str = case_columns!();

const FIND_OPEN_CASE: &str = concat!(
    "SELECT ",
    case_columns!(),
    ", last_segment FROM cases WHERE subscriber = ?1 AND threat = ?2 AND state <> 'closed'"
);
const FIND_ALL_OPEN_CASES: &str = concat!(
    "SELECT ",
    case_columns!(),
    ", last_segment FROM cases WHERE state <> 'closed'"
);
const INSERT_CASE: &str = "INSERT INTO cases (subscriber, threat, class, severity, state, held, hold_reason, opened_at, first_seen, last_seen, events, notices, unacknowledged, last_notice_at, acknowledged_at, quiet_at, resolved_at, escalated_at, reinfections, closed_at, close_reason, updated_at, last_segment)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)";
const UPDATE_CASE_EVENTS: &str = "UPDATE cases SET severity = ?2, first_seen = ?3, last_seen = ?4, events = ?5, updated_at = ?6, last_segment = ?7
     WHERE id = ?1";
const LOG_CASE: &str = "INSERT INTO case_log (case_id, at, actor, action, state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The statements an ingest runs for each case, prepared once per
/// transaction: a day's report opens or updates hundreds of thousands of
/// cases, and finding a statement in the connection's cache by its text
/// each time cost a twentieth of the store stage.
struct CaseStatements<'c> {
    find_open: CachedStatement<'c>,
    insert: CachedStatement<'c>,
    update_events: CachedStatement<'c>,
    log: CachedStatement<'c>,
}

impl<'c> CaseStatements<'c> {
    fn new(c: &'c Connection) -> Result<CaseStatements<'c>> {
        Ok(CaseStatements {
            find_open: c.prepare_cached(FIND_OPEN_CASE)?,
            insert: c.prepare_cached(INSERT_CASE)?,
            update_events: c.prepare_cached(UPDATE_CASE_EVENTS)?,
            log: c.prepare_cached(LOG_CASE)?,
        })
    }
}

fn case_from_row(r: &Row) -> rusqlite::Result<Case> {
    Ok(Case {
        id: r.get(0)?,
        subscriber: r.get(1)?,
        threat: r.get(2)?,
        class: r.get(3)?,
        severity: parse(r.get(4)?)?,
        state: parse(r.get(5)?)?,
        held: r.get(6)?,
        hold_reason: r.get(7)?,
        opened_at: from_ts(r.get(8)?),
        first_seen: from_ts(r.get(9)?),
        last_seen: from_ts(r.get(10)?),
        events: r.get::<_, i64>(11)? as u64,
        notices: r.get::<_, i64>(12)? as u64,
        unacknowledged: r.get::<_, i64>(13)? as u64,
        last_notice_at: opt_ts(r.get(14)?),
        acknowledged_at: opt_ts(r.get(15)?),
        quiet_at: opt_ts(r.get(16)?),
        resolved_at: opt_ts(r.get(17)?),
        escalated_at: opt_ts(r.get(18)?),
        reinfections: r.get::<_, i64>(19)? as u64,
        closed_at: opt_ts(r.get(20)?),
        close_reason: r.get(21)?,
        updated_at: from_ts(r.get(22)?),
    })
}

/// Inserts or updates a case (id 0: insert) and returns its id; with a
/// segment, that is the newest with the case's events.
fn store_case(c: &Connection, case: &Case, segment: Option<i64>) -> Result<i64> {
    if case.id == 0 {
        let id = insert_case(&mut *c.prepare_cached(INSERT_CASE)?, case, segment)?;
        let mut opened = OpenedCounts::default();
        opened.add(case);
        opened.write(c)?;
        return Ok(id);
    }
    let mut update = c.prepare_cached(
        "UPDATE cases SET subscriber = ?1, threat = ?2, class = ?3, severity = ?4, state = ?5, held = ?6, hold_reason = ?7, opened_at = ?8, first_seen = ?9, last_seen = ?10, events = ?11, notices = ?12, unacknowledged = ?13, last_notice_at = ?14, acknowledged_at = ?15, quiet_at = ?16, resolved_at = ?17, escalated_at = ?18, reinfections = ?19, closed_at = ?20, close_reason = ?21, updated_at = ?22, last_segment = coalesce(?23, last_segment)
         WHERE id = ?24",
    )?;
    with_case_values(case, segment, |values| {
        let id: &dyn rusqlite::ToSql = &case.id;
        update.execute(rusqlite::params_from_iter(
            values.iter().copied().chain([id]),
        ))
    })?;
    Ok(case.id)
}

/// Inserts a new case through [`INSERT_CASE`]; returns its id.
fn insert_case(insert: &mut Statement<'_>, case: &Case, segment: Option<i64>) -> Result<i64> {
    Ok(with_case_values(case, segment, |values| {
        insert.insert(values)
    })?)
}

/// Calls `f` with a case's columns as [`INSERT_CASE`] numbers them.
fn with_case_values<R>(
    case: &Case,
    segment: Option<i64>,
    f: impl FnOnce(&[&dyn rusqlite::ToSql]) -> R,
) -> R {
    f(params![
        case.subscriber,
        case.threat,
        case.class,
        case.severity.as_str(),
        case.state.as_str(),
        case.held,
        case.hold_reason,
        ts(case.opened_at),
        ts(case.first_seen),
        ts(case.last_seen),
        case.events as i64,
        case.notices as i64,
        case.unacknowledged as i64,
        case.last_notice_at.map(ts),
        case.acknowledged_at.map(ts),
        case.quiet_at.map(ts),
        case.resolved_at.map(ts),
        case.escalated_at.map(ts),
        case.reinfections as i64,
        case.closed_at.map(ts),
        case.close_reason,
        ts(case.updated_at),
        segment,
    ])
}

/// Cases opened, per 5 minutes and severity, to be added to the
/// dashboard's `case_counts` by the code that opens them: a trigger on
/// the insert (as resolutions are counted) made every insert of a case
/// keep a statement journal, which cost a day's report a third of its
/// case inserts; an ingest adds its counts once per segment.
#[derive(Default)]
struct OpenedCounts(HashMap<(i64, Severity), i64>);

impl OpenedCounts {
    fn add(&mut self, case: &Case) {
        // Integer division as SQL's, which counts resolutions.
        let bucket = ts(case.opened_at) / 300 * 300;
        *self.0.entry((bucket, case.severity)).or_default() += 1;
    }

    fn write(&self, c: &Connection) -> Result<()> {
        let mut upsert = c.prepare_cached(
            "INSERT INTO case_counts (bucket, severity, opened) VALUES (?1, ?2, ?3)
             ON CONFLICT (bucket, severity) DO UPDATE SET opened = opened + excluded.opened",
        )?;
        for ((bucket, severity), n) in &self.0 {
            upsert.execute(params![bucket, severity.as_str(), n])?;
        }
        Ok(())
    }
}

/// A case's columns other than its names and reasons (which
/// [`CaseUpdate`] leaves alone) and those [`store_case_events`] writes:
/// new events that leave them as they were are written with the counts,
/// once per transaction.
#[derive(Clone, Copy, PartialEq)]
struct Lifecycle {
    state: CaseState,
    held: bool,
    opened_at: DateTime<Utc>,
    notices: u64,
    unacknowledged: u64,
    last_notice_at: Option<DateTime<Utc>>,
    acknowledged_at: Option<DateTime<Utc>>,
    quiet_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    escalated_at: Option<DateTime<Utc>>,
    reinfections: u64,
    closed_at: Option<DateTime<Utc>>,
}

impl Lifecycle {
    fn of(c: &Case) -> Lifecycle {
        Lifecycle {
            state: c.state,
            held: c.held,
            opened_at: c.opened_at,
            notices: c.notices,
            unacknowledged: c.unacknowledged,
            last_notice_at: c.last_notice_at,
            acknowledged_at: c.acknowledged_at,
            quiet_at: c.quiet_at,
            resolved_at: c.resolved_at,
            escalated_at: c.escalated_at,
            reinfections: c.reinfections,
            closed_at: c.closed_at,
        }
    }
}

/// Applies `update` to an open case; returns its lifecycle before.
fn apply(
    update: &mut CaseUpdate<'_>,
    c: &mut Case,
    d: &CaseDelta<'_>,
    now: DateTime<Utc>,
) -> Lifecycle {
    let before = Lifecycle::of(c);
    #[cfg(debug_assertions)]
    let names = |c: &Case| {
        (
            c.id,
            c.subscriber.clone(),
            c.threat.clone(),
            c.class.clone(),
            c.hold_reason.clone(),
            c.close_reason.clone(),
        )
    };
    #[cfg(debug_assertions)]
    let was = names(c);
    update(c, d, now);
    #[cfg(debug_assertions)]
    debug_assert!(was == names(c), "a case update changed the case's names");
    before
}

/// Stores what new events change of a case whose state they leave alone
/// (through [`UPDATE_CASE_EVENTS`]): no indexed column is written, so its
/// indexes are not touched.
fn store_case_events(update: &mut Statement<'_>, case: &Case, segment: i64) -> Result<()> {
    update.execute(params![
        case.id,
        case.severity.as_str(),
        ts(case.first_seen),
        ts(case.last_seen),
        case.events as i64,
        ts(case.updated_at),
        segment
    ])?;
    Ok(())
}

fn log_case(
    c: &Connection,
    id: i64,
    ch: &CaseChange<'_>,
    state: CaseState,
    now: i64,
) -> Result<()> {
    log_case_with(&mut *c.prepare_cached(LOG_CASE)?, id, ch, state, now)
}

/// [`log_case`] through a prepared [`LOG_CASE`].
fn log_case_with(
    log: &mut Statement<'_>,
    id: i64,
    ch: &CaseChange<'_>,
    state: CaseState,
    now: i64,
) -> Result<()> {
    log.execute(params![
        id,
        now,
        ch.actor,
        ch.action,
        state.as_str(),
        ch.reason
    ])?;
    Ok(())
}

fn load_case(c: &Connection, id: i64) -> Result<Option<Case>> {
    Ok(
        c.prepare_cached(&format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = ?1"))?
            .query_row([id], case_from_row)
            .optional()?,
    )
}

const NOTICE_COLUMNS: &str = "id, reference, case_id, subscriber, channel, language, recipient, subject, body, status, attempts, next_attempt_at, last_error, created_at, sent_at, acknowledged_at";

fn notice_from_row(r: &Row) -> rusqlite::Result<Notice> {
    Ok(Notice {
        id: r.get(0)?,
        reference: r.get(1)?,
        case_id: r.get(2)?,
        subscriber: r.get(3)?,
        channel: parse(r.get(4)?)?,
        language: r.get(5)?,
        recipient: r.get(6)?,
        subject: r.get(7)?,
        body: r.get(8)?,
        status: parse(r.get(9)?)?,
        attempts: r.get(10)?,
        next_attempt_at: opt_ts(r.get(11)?),
        last_error: r.get(12)?,
        created_at: from_ts(r.get(13)?),
        sent_at: opt_ts(r.get(14)?),
        acknowledged_at: opt_ts(r.get(15)?),
    })
}

fn notices_where(c: &Connection, clause: &str, args: impl rusqlite::Params) -> Result<Vec<Notice>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {NOTICE_COLUMNS} FROM notices WHERE {clause} ORDER BY id"
    ))?;
    Ok(stmt
        .query_map(args, notice_from_row)?
        .collect::<rusqlite::Result<_>>()?)
}

const ESCALATION_COLUMNS: &str =
    "id, case_id, subscriber, kind, status, requested_at, updated_at, reason";

fn escalation_from_row(r: &Row) -> rusqlite::Result<Escalation> {
    Ok(Escalation {
        id: r.get(0)?,
        case_id: r.get(1)?,
        subscriber: r.get(2)?,
        kind: parse(r.get(3)?)?,
        status: parse(r.get(4)?)?,
        requested_at: from_ts(r.get(5)?),
        updated_at: from_ts(r.get(6)?),
        reason: r.get(7)?,
    })
}

/// The segment id the next batch gets: never one used before, even if
/// that segment was purged (event ids stay unique).
fn next_segment(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event_segments'), 0),
                    coalesce((SELECT max(id) FROM event_segments), 0)) + 1",
        [],
        |r| r.get(0),
    )?)
}

/// A segment's cases and the events `wanted` (by index in the batch and
/// case id), each with its raw record.
fn read_segment(
    c: &Connection,
    segment: i64,
    wanted: impl Fn(usize, Option<i64>) -> bool,
) -> Result<Option<Fields>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = c
        .prepare_cached("SELECT fields, raw FROM event_segments WHERE id = ?1")?
        .query_row(params![segment], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((fields, raw)) = row else {
        return Ok(None);
    };
    let damaged = || StoreError::Backend(format!("event segment {segment} cannot be read"));
    let mut f = decode_fields_of(segment, &fields, wanted).ok_or_else(damaged)?;
    let kept: std::collections::HashSet<usize> = f.events.iter().map(|(i, _, _)| *i).collect();
    if !kept.is_empty() {
        let records = decode_raw_of(&raw, |i| kept.contains(&i)).ok_or_else(damaged)?;
        for (i, _, e) in &mut f.events {
            if let Some(r) = records.get(i) {
                e.raw = String::from_utf8_lossy(r).into_owned();
            }
        }
    }
    Ok(Some(f))
}

impl RemovalBackend for SqliteBackend {
    fn begin_ingest(
        &self,
        format: &str,
        origin: &str,
        report_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        self.write(|c| {
            c.execute(
                "INSERT INTO ingests (format, origin, report_type, started_at, status) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![format, origin, report_type, ts(now)],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn finish_ingest(
        &self,
        id: i64,
        status: &str,
        summary: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE ingests SET status = ?2, summary = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, status, summary, ts(now)],
            )?;
            Ok(())
        })
    }

    fn activity(&self, since: DateTime<Utc>, bucket_secs: i64) -> Result<Vec<ActivityCount>> {
        let (from, step) = (ts(since), bucket_secs.max(1));
        self.read(|c| {
            let mut out = Vec::new();
            // (series, SQL giving bucket number, label, count), from the
            // counts per 5 minutes kept as cases and notices change (0019;
            // the opened cases by the code that opens them since 26).
            let queries: [(&'static str, &str); 5] = [
                (
                    "cases-opened",
                    "SELECT (bucket - ?1) / ?2, severity, SUM(opened) FROM case_counts WHERE bucket >= ?1 AND opened > 0 GROUP BY 1, 2",
                ),
                (
                    "cases-resolved",
                    "SELECT (bucket - ?1) / ?2, '', SUM(resolved) FROM case_counts WHERE bucket >= ?1 AND resolved > 0 GROUP BY 1",
                ),
                (
                    "notices-sent",
                    "SELECT (bucket - ?1) / ?2, channel, SUM(sent) FROM notice_counts WHERE bucket >= ?1 AND sent > 0 GROUP BY 1, 2",
                ),
                (
                    "notices-bounced",
                    "SELECT (bucket - ?1) / ?2, channel, SUM(bounced) FROM notice_counts WHERE bucket >= ?1 AND bounced > 0 GROUP BY 1, 2",
                ),
                (
                    "notices-acknowledged",
                    "SELECT (bucket - ?1) / ?2, '', SUM(acknowledged) FROM notice_counts WHERE bucket >= ?1 AND acknowledged > 0 GROUP BY 1",
                ),
            ];
            for (series, sql) in queries {
                let mut stmt = c.prepare_cached(sql)?;
                let rows = stmt.query_map(params![from, step], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })?;
                for row in rows {
                    let (n, label, count) = row?;
                    out.push(ActivityCount {
                        bucket: from + n * step,
                        series,
                        label,
                        count: count as u64,
                    });
                }
            }
            // Ingest runs: their summaries' counts, in the bucket they
            // started in (the table holds a row per run: few).
            let mut stmt = c.prepare_cached(
                "SELECT started_at, format, summary FROM ingests WHERE started_at >= ?1 AND summary IS NOT NULL",
            )?;
            let rows = stmt.query_map([from], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?;
            for row in rows {
                let (at, format, summary) = row?;
                let Ok(s) = serde_json::from_str::<serde_json::Value>(&summary) else {
                    continue;
                };
                let bucket = from + (at - from) / step * step;
                let rejected: u64 = s["skipped"]
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(|v| v["count"].as_u64()).sum());
                for (series, count) in [("events", s["events"].as_u64().unwrap_or(0)), ("rejected", rejected)] {
                    if count > 0 {
                        out.push(ActivityCount {
                            bucket,
                            series,
                            label: format.clone(),
                            count,
                        });
                    }
                }
            }
            Ok(out)
        })
    }

    fn recent_ingests(&self, limit: u32) -> Result<Vec<IngestRecord>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, format, origin, report_type, started_at, finished_at, status, summary \
                 FROM ingests ORDER BY id DESC LIMIT ?1",
            )?
            .query_map([limit], |r| {
                Ok(IngestRecord {
                    id: r.get(0)?,
                    format: r.get(1)?,
                    origin: r.get(2)?,
                    report_type: r.get(3)?,
                    started_at: from_ts(r.get(4)?),
                    finished_at: r.get::<_, Option<i64>>(5)?.map(from_ts),
                    status: r.get(6)?,
                    summary: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn known_event_keys(&self, keys: &[EventKey]) -> Result<Vec<bool>> {
        self.read(|c| super::event_keys::known(c, keys))
    }

    fn event_keys_of_hour(&self, hour: u32, f: &mut dyn FnMut(EventKey)) -> Result<()> {
        self.read(|c| super::event_keys::keys_of_hour(c, hour, f))
    }

    fn record_event_stream(
        &self,
        ingest: i64,
        next: &mut dyn FnMut(Option<std::time::Duration>) -> NextBatch,
        update: &mut CaseUpdate<'_>,
        spent: &mut dyn FnMut(Box<EventBatch>),
        committed: &mut dyn FnMut(usize, RecordCounts) -> Result<()>,
        window: std::time::Duration,
    ) -> Result<()> {
        let mut cases = OpenCases::default();
        loop {
            // Waiting for the first batch of a transaction, the writer is
            // free.
            let first = match next(None) {
                NextBatch::Batch(b) => b,
                NextBatch::NotYet | NextBatch::End => return Ok(()),
            };
            let (more, update, spent, cases) = (&mut *next, &mut *update, &mut *spent, &mut cases);
            let (batches, counts, ended) = self.write(move |c| {
                let mut keys = self.stored_keys.lock().unwrap_or_else(|p| p.into_inner());
                let started = std::time::Instant::now();
                let tx = c.transaction()?;
                cases.check(&tx, self.case_writes.load(Ordering::Acquire))?;
                let mut statements = CaseStatements::new(&tx)?;
                let mut held = Held {
                    keys: &mut keys,
                    cases: &mut *cases,
                    statements: &mut statements,
                };
                let mut counts = RecordCounts::default();
                let (mut batches, mut ended) = (0, false);
                let mut batch = Some(first);
                let written = loop {
                    let Some(b) = batch.take() else {
                        break held.cases.flush(&mut held.statements.update_events);
                    };
                    if let Err(e) = record_batch(&tx, &mut held, ingest, &b, update, &mut counts) {
                        break Err(e);
                    }
                    // Written: nothing of it is needed any more.
                    spent(b);
                    batches += 1;
                    let Some(left) = window.checked_sub(started.elapsed()) else {
                        continue;
                    };
                    match more(Some(left)) {
                        NextBatch::Batch(b) => batch = Some(b),
                        NextBatch::NotYet => {}
                        NextBatch::End => ended = true,
                    }
                };
                // The statements borrow the transaction: done with before
                // it commits.
                drop(statements);
                let t_commit = std::time::Instant::now();
                if let Err(e) = written.and_then(|()| Ok(tx.commit()?)) {
                    // What is held in memory includes what is rolled back.
                    keys.clear();
                    cases.clear();
                    return Err(e);
                }
                cases.committed(self.case_writes.fetch_add(1, Ordering::AcqRel) + 1);
                self.checkpointer.request();
                tracing::debug!(
                    batches,
                    events = counts.inserted,
                    written_ms = (t_commit - started).as_secs_f64() * 1e3,
                    commit_ms = t_commit.elapsed().as_secs_f64() * 1e3,
                    "events recorded"
                );
                Ok((batches, counts, ended))
            })?;
            committed(batches, counts)?;
            if ended {
                return Ok(());
            }
        }
    }

    fn get_event(&self, id: i64) -> Result<Option<StoredEvent>> {
        let (segment, index) = split_event_id(id);
        self.read(|c| {
            Ok(read_segment(c, segment, |i, _| i == index)?.and_then(|f| {
                f.events
                    .into_iter()
                    .find(|(i, _, _)| *i == index)
                    .map(|(_, _, e)| e)
            }))
        })
    }

    fn case_events(&self, case_id: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        // Newest first, down the chain of the case's segments.
        self.read(|c| {
            let mut out = Vec::new();
            let mut next: Option<i64> = c
                .prepare_cached("SELECT last_segment FROM cases WHERE id = ?1")?
                .query_row([case_id], |r| r.get(0))
                .optional()?
                .flatten();
            while let Some(segment) = next
                && out.len() < limit as usize
            {
                let Some(f) = read_segment(c, segment, |_, case| case == Some(case_id))? else {
                    break; // purged
                };
                let of_case = f.events.into_iter().rev().map(|(_, _, e)| e);
                out.extend(
                    of_case
                        .filter(|e| e.case_id == Some(case_id))
                        .take(limit as usize - out.len()),
                );
                next = f
                    .cases
                    .iter()
                    .find(|sc| sc.id == case_id)
                    .and_then(|sc| sc.previous);
            }
            Ok(out)
        })
    }

    fn get_case(&self, id: i64) -> Result<Option<Case>> {
        self.read(|c| load_case(c, id))
    }

    fn list_cases(&self, f: &CaseFilter) -> Result<Vec<Case>> {
        self.read(|c| {
            // States that hold few cases (an acknowledged or reinfected
            // case among a million new ones) are read by their index and
            // sorted, rather than found along a walk of all cases by feed
            // or last seen that may never meet them.
            let by_state = (f.feed.is_some() || f.by_last_seen) && few_in_states(c, &f.states)?;
            // By last seen, the walk goes down `cases_last_seen`: a `+`
            // keeps the state and opening time from choosing their own
            // index (and a sort of all they match).
            let walk = if f.by_last_seen && !by_state { "+" } else { "" };
            let mut clauses = vec!["1".to_string()];
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(after) = f.after {
                clauses.push("id > ?".into());
                args.push(after.into());
            }
            if let Some(before) = f.before {
                clauses.push("id < ?".into());
                args.push(before.into());
            }
            if let (true, Some((seen, id))) = (f.by_last_seen, f.seen_before) {
                clauses.push("(last_seen, id) < (?, ?)".into());
                args.push(ts(seen).into());
                args.push(id.into());
            }
            if let Some(s) = f.severity {
                clauses.push("severity = ?".into());
                args.push(s.as_str().to_string().into());
            }
            if let Some(t) = f.opened_since {
                clauses.push(format!("{walk}opened_at >= ?"));
                args.push(ts(t).into());
            }
            if !f.states.is_empty() {
                clauses.push(format!(
                    "{walk}state IN ({})",
                    vec!["?"; f.states.len()].join(", ")
                ));
                args.extend(f.states.iter().map(|s| s.as_str().to_string().into()));
            }
            if let Some(s) = &f.subscriber {
                clauses.push("subscriber = ?".into());
                args.push(s.clone().into());
            }
            if let Some(t) = &f.threat {
                clauses.push("threat = ?".into());
                args.push(t.clone().into());
            }
            // By feed and id: walk the feed's cases in id order (the
            // primary key's), whatever share of all cases they are.
            // Otherwise (by last seen, or by few-case states) the feed is
            // checked on each case walked.
            let order_by = if f.by_last_seen {
                "last_seen DESC, id"
            } else {
                "id"
            };
            let (from, order) = match &f.feed {
                Some(feed) if !f.by_last_seen && !by_state => {
                    clauses.push("case_feeds.feed = ?".into());
                    args.push(feed.clone().into());
                    (
                        "case_feeds CROSS JOIN cases ON cases.id = case_feeds.case_id",
                        "case_feeds.case_id",
                    )
                }
                Some(feed) => {
                    clauses.push(
                        "EXISTS (SELECT 1 FROM case_feeds WHERE case_feeds.feed = ? AND case_feeds.case_id = cases.id)"
                            .into(),
                    );
                    args.push(feed.clone().into());
                    (by_state_or_all(by_state), order_by)
                }
                // Without a feed or a last-seen order, `by_state` is false.
                None => (by_state_or_all(by_state), order_by),
            };
            let direction = if f.newest_first || f.by_last_seen {
                " DESC"
            } else {
                ""
            };
            let limit = f.limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
            let mut stmt = c.prepare(&format!(
                "SELECT {CASE_COLUMNS} FROM {from} WHERE {} ORDER BY {order}{direction}{limit}",
                clauses.join(" AND "),
            ))?;
            Ok(stmt
                .query_map(rusqlite::params_from_iter(args), case_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn case_feed_names(&self, limit: u32) -> Result<Vec<String>> {
        self.read(|c| {
            // One index step per name (a skip scan), not a walk of every
            // case of every feed.
            let mut stmt = c.prepare_cached(
                "WITH RECURSIVE names(feed) AS (
                     SELECT min(feed) FROM case_feeds
                     UNION ALL
                     SELECT (SELECT min(feed) FROM case_feeds WHERE feed > names.feed)
                     FROM names WHERE names.feed IS NOT NULL
                 )
                 SELECT feed FROM names WHERE feed IS NOT NULL LIMIT ?1",
            )?;
            Ok(stmt
                .query_map([limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn case_log(&self, id: i64) -> Result<Vec<CaseLogEntry>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, actor, action, state, reason FROM case_log WHERE case_id = ?1 ORDER BY id",
            )?;
            Ok(stmt
                .query_map([id], |r| {
                    Ok(CaseLogEntry {
                        at: from_ts(r.get(0)?),
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        state: parse(r.get(3)?)?,
                        reason: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn update_case(
        &self,
        id: i64,
        change: &CaseChange<'_>,
        f: &mut dyn FnMut(&mut Case) -> Result<()>,
        now: DateTime<Utc>,
    ) -> Result<Case> {
        self.write(|c| {
            let tx = c.transaction()?;
            let mut case = load_case(&tx, id)?.ok_or(StoreError::NotFound)?;
            f(&mut case)?;
            case.updated_at = now;
            store_case(&tx, &case, None)?;
            log_case(&tx, id, change, case.state, ts(now))?;
            tx.commit()?;
            self.case_writes.fetch_add(1, Ordering::AcqRel);
            Ok(case)
        })
    }

    fn record_notice(
        &self,
        n: &NewNotice,
        change: &CaseChange<'_>,
        f: &mut dyn FnMut(&mut Case),
        now: DateTime<Utc>,
    ) -> Result<Notice> {
        self.write(|c| {
            let tx = c.transaction()?;
            let mut case = load_case(&tx, n.case_id)?.ok_or(StoreError::NotFound)?;
            f(&mut case);
            case.updated_at = now;
            store_case(&tx, &case, None)?;
            log_case(&tx, case.id, change, case.state, ts(now))?;
            tx.prepare_cached(
                "INSERT INTO notices (reference, case_id, subscriber, channel, language, recipient, subject, body, status, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )?
            .execute(params![
                n.reference,
                n.case_id,
                n.subscriber,
                n.channel.as_str(),
                n.language,
                n.recipient,
                n.subject,
                n.body,
                n.status.as_str(),
                ts(now),
            ])?;
            let id = tx.last_insert_rowid();
            let notice = notices_where(&tx, "id = ?1", [id])?
                .pop()
                .ok_or(StoreError::NotFound)?;
            tx.commit()?;
            self.case_writes.fetch_add(1, Ordering::AcqRel);
            Ok(notice)
        })
    }

    fn set_delivery(&self, id: i64, d: &Delivery, now: DateTime<Utc>) -> Result<Notice> {
        self.write(|c| {
            let sent = matches!(d.status, NoticeStatus::Sent | NoticeStatus::Exported);
            c.prepare_cached(
                "UPDATE notices SET status = ?2, attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4,
                 sent_at = CASE WHEN ?5 THEN ?6 ELSE sent_at END WHERE id = ?1",
            )?
            .execute(params![
                id,
                d.status.as_str(),
                d.error,
                d.next_attempt_at.map(ts),
                sent,
                ts(now)
            ])?;
            notices_where(c, "id = ?1", [id])?
                .pop()
                .ok_or(StoreError::NotFound)
        })
    }

    fn notice_by_reference(&self, reference: &str) -> Result<Option<Notice>> {
        self.read(|c| Ok(notices_where(c, "reference = ?1", [reference])?.pop()))
    }

    fn record_bounce(&self, reference: &str, reason: &str) -> Result<Option<Notice>> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE notices SET status = 'bounced', last_error = ?2, next_attempt_at = NULL
                 WHERE reference = ?1 AND channel = 'mail'",
            )?
            .execute(params![reference, reason])?;
            Ok(notices_where(c, "reference = ?1", [reference])?.pop())
        })
    }

    fn acknowledge_notice(&self, reference: &str, now: DateTime<Utc>) -> Result<Option<Notice>> {
        self.write(|c| {
            c.prepare_cached(
                "UPDATE notices SET acknowledged_at = coalesce(acknowledged_at, ?2) WHERE reference = ?1",
            )?
            .execute(params![reference, ts(now)])?;
            Ok(notices_where(c, "reference = ?1", [reference])?.pop())
        })
    }

    fn notices_due(&self, now: DateTime<Utc>) -> Result<Vec<Notice>> {
        self.read(|c| {
            notices_where(
                c,
                "status = 'queued' AND channel IN ('mail', 'garden') AND coalesce(next_attempt_at, 0) <= ?1",
                [ts(now)],
            )
        })
    }

    fn case_notices(&self, case_id: i64) -> Result<Vec<Notice>> {
        self.read(|c| notices_where(c, "case_id = ?1", [case_id]))
    }

    fn notices_since(&self, since: DateTime<Utc>) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM notices WHERE created_at >= ?1",
                [ts(since)],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }

    fn take_letters(&self, now: DateTime<Utc>) -> Result<Vec<Notice>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let letters = notices_where(&tx, "channel = 'letter' AND status = 'queued'", [])?;
            tx.execute(
                "UPDATE notices SET status = 'exported', sent_at = ?1, attempts = attempts + 1
                 WHERE channel = 'letter' AND status = 'queued'",
                [ts(now)],
            )?;
            tx.commit()?;
            Ok(letters)
        })
    }

    fn request_escalation(
        &self,
        case_id: i64,
        subscriber: &str,
        kind: EscalationKind,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.write(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO escalations (case_id, subscriber, kind, status, requested_at, updated_at, reason)
                 VALUES (?1, ?2, ?3, 'requested', ?4, ?4, ?5)",
                params![case_id, subscriber, kind.as_str(), ts(now), reason],
            )?;
            Ok(n == 1)
        })
    }

    fn list_escalations(&self, status: Option<EscalationStatus>) -> Result<Vec<Escalation>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations WHERE ?1 IS NULL OR status = ?1 ORDER BY id"
            ))?;
            Ok(stmt
                .query_map([status.map(|s| s.as_str())], escalation_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn case_escalations(&self, case_id: i64) -> Result<Vec<Escalation>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations WHERE case_id = ?1 ORDER BY id"
            ))?;
            Ok(stmt
                .query_map([case_id], escalation_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn set_escalation_status(
        &self,
        id: i64,
        status: EscalationStatus,
        now: DateTime<Utc>,
    ) -> Result<Escalation> {
        self.write(|c| {
            c.execute(
                "UPDATE escalations SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, status.as_str(), ts(now)],
            )?;
            Ok(c.prepare_cached(&format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations WHERE id = ?1"
            ))?
            .query_row([id], escalation_from_row)?)
        })
    }

    fn removal_stats(&self) -> Result<RemovalStats> {
        self.read(|c| {
            let mut s = RemovalStats::default();
            let mut stmt = c.prepare("SELECT state, count(*) FROM cases GROUP BY state")?;
            s.cases_by_state = stmt
                .query_map([], |r| Ok((parse(r.get(0)?)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<_>>()?;
            s.infected_subscribers = c.query_row(
                "SELECT count(DISTINCT subscriber) FROM cases WHERE state NOT IN ('resolved', 'closed')",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64;
            let mut stmt = c.prepare(
                "SELECT channel, status, count(*) FROM notices GROUP BY channel, status",
            )?;
            s.notices_by_channel = stmt
                .query_map([], |r| {
                    Ok((parse(r.get(0)?)?, parse(r.get(1)?)?, r.get::<_, i64>(2)? as u64))
                })?
                .collect::<rusqlite::Result<_>>()?;
            (s.notified_cases, s.acknowledged_cases) = c.query_row(
                "SELECT count(*), count(acknowledged_at) FROM cases WHERE notices > 0",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?;
            let mut stmt =
                c.prepare("SELECT resolved_at - opened_at FROM cases WHERE resolved_at IS NOT NULL")?;
            s.time_to_clean = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            (s.resolved_cases, s.reinfected_cases) = c.query_row(
                "SELECT count(*), count(*) FILTER (WHERE reinfections > 0) FROM cases
                 WHERE resolved_at IS NOT NULL OR reinfections > 0",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?;
            s.events = c.query_row(
                "SELECT coalesce(sum(events), 0) FROM event_segments",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64;
            s.subscribers = c.query_row("SELECT count(*) FROM subscribers", [], |r| {
                r.get::<_, i64>(0)
            })? as u64;
            let mut stmt = c.prepare(
                "SELECT reason, sum(events) FROM segment_unattributed GROUP BY reason ORDER BY reason",
            )?;
            s.unattributed_by_reason = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(s)
        })
    }

    fn purge_events(&self, before: DateTime<Utc>) -> Result<u64> {
        self.write(|c| {
            let tx = c.transaction()?;
            let old: Vec<i64> = tx
                .prepare("SELECT id FROM event_segments WHERE last_observation < ?1 ORDER BY id")?
                .query_map([ts(before)], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut n = 0u64;
            // The keys go with their events: a replay of a purged event
            // stores it again.
            super::event_keys::purge(&tx, &old)?;
            for segment in old {
                n += tx.query_row(
                    "SELECT events FROM event_segments WHERE id = ?1",
                    [segment],
                    |r| r.get::<_, i64>(0),
                )? as u64;
                tx.execute("DELETE FROM event_segments WHERE id = ?1", [segment])?;
            }
            let mut keys = self.stored_keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.clear();
            tx.commit()?;
            Ok(n)
        })
    }
}

/// What the writer holds in memory while it stores a stream of batches.
struct Held<'a, 'c> {
    keys: &'a mut StoredKeys,
    cases: &'a mut OpenCases,
    statements: &'a mut CaseStatements<'c>,
}

/// Open cases held at most; past it they are let go (after being
/// written).
const OPEN_CASES_MAX: usize = 1 << 20;

/// How many lookups of open cases that miss the held ones make it worth
/// reading all of them instead (a row read in a scan costs a fraction of
/// one looked up), when there are this many times fewer open cases.
const LOOKUPS_PER_CASE_READ: u64 = 4;

/// Lookups before the open cases are counted to weigh reading them all.
const LOOKUPS_BEFORE_COUNTING: u64 = 4096;

/// The open cases a stream of batches touched, as last written (or to be
/// written): a case named again is not read again, and what new events
/// change of it (counts, times, newest segment) is written once per
/// transaction rather than once per batch. A case gets a few events in
/// each of many batches of a day's report. Once lookups show the stream
/// touches many of the store's open cases, all of them are read in one
/// go, and a case not held is then known not to be open without a lookup
/// (a new day's report opens most of its cases). Kept from one
/// transaction to the next only while no one else wrote a case: another
/// process (`PRAGMA data_version`) or this one (`case_writes`, which every
/// writer of cases moves).
#[derive(Default)]
struct OpenCases {
    /// By subscriber, then threat.
    cases: foldhash::HashMap<String, Vec<OpenCase>>,
    held: usize,
    /// Every open case of the store is held.
    complete: bool,
    /// Open cases in the store when counted (once lookups make it worth
    /// asking), and the lookups that missed the held cases.
    open: Option<u64>,
    lookups: u64,
    /// `PRAGMA data_version` at the last transaction's start, and
    /// `case_writes` after its commit.
    seen: Option<(i64, u64)>,
    version: i64,
    /// The names of the first 64 feeds seen, for [`OpenCase::feeds`].
    feed_names: Vec<Box<str>>,
}

struct OpenCase {
    case: Case,
    last_segment: Option<i64>,
    /// Its event columns are to be written before the commit.
    pending: bool,
    /// Feeds known to be in its `case_feeds` (those this stream wrote),
    /// as [`OpenCases::feed_bit`]s: each is written once per stream, not
    /// once per batch.
    feeds: u64,
}

impl OpenCases {
    fn clear(&mut self) {
        self.cases.clear();
        self.held = 0;
        self.complete = false;
        self.open = None;
        self.lookups = 0;
        self.seen = None;
    }

    /// At a transaction's start: lets go of everything if another writer
    /// wrote since the last commit; reads every open case once lookups
    /// show it is worth it.
    fn check(&mut self, tx: &Connection, case_writes: u64) -> Result<()> {
        self.version = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.seen != Some((self.version, case_writes)) {
            self.clear();
        }
        if self.complete {
            return Ok(());
        }
        // There are at most as many open cases as the highest case id (read
        // from the end of the table); counting them walks an index, which
        // an ingest of a few events should not pay for.
        let at_most = tx.query_row("SELECT coalesce(max(id), 0) FROM cases", [], |r| {
            r.get::<_, i64>(0)
        })? as u64;
        let asked = self.lookups * LOOKUPS_PER_CASE_READ;
        let open = match self.open {
            _ if asked >= at_most && at_most as usize <= OPEN_CASES_MAX => at_most,
            Some(n) => n,
            None if self.lookups >= LOOKUPS_BEFORE_COUNTING => {
                let n = tx.query_row(
                    "SELECT count(*) FROM cases WHERE state <> 'closed'",
                    [],
                    |r| r.get::<_, i64>(0),
                )? as u64;
                *self.open.insert(n)
            }
            None => return Ok(()),
        };
        if open as usize > OPEN_CASES_MAX || asked < open {
            return Ok(());
        }
        let mut all = tx.prepare_cached(FIND_ALL_OPEN_CASES)?;
        let mut rows = all.query([])?;
        while let Some(r) = rows.next()? {
            let case = case_from_row(r)?;
            // One held already may be newer than it was stored.
            if self.position(&case.subscriber, &case.threat).is_none() {
                let last_segment = r.get(23)?;
                self.hold(OpenCase {
                    case,
                    last_segment,
                    pending: false,
                    feeds: 0,
                });
            }
        }
        tracing::debug!(cases = self.held, "open cases read");
        self.complete = true;
        Ok(())
    }

    /// A feed's bit in [`OpenCase::feeds`]; 0 past the 64th feed (whose
    /// cases' feeds are written each time).
    fn feed_bit(&mut self, feed: &str) -> u64 {
        let at = match self.feed_names.iter().position(|f| &**f == feed) {
            Some(at) => at,
            None if self.feed_names.len() < 64 => {
                self.feed_names.push(feed.into());
                self.feed_names.len() - 1
            }
            None => return 0,
        };
        1 << at
    }

    fn position(&self, subscriber: &str, threat: &str) -> Option<usize> {
        self.cases
            .get(subscriber)?
            .iter()
            .position(|c| c.case.threat == threat)
    }

    /// The open case of (subscriber, threat): held, else looked up (and
    /// held from then on) unless all are held.
    fn find(
        &mut self,
        find_open: &mut Statement<'_>,
        subscriber: &str,
        threat: &str,
    ) -> Result<Option<&mut OpenCase>> {
        if let Some(at) = self.position(subscriber, threat) {
            return Ok(self.cases.get_mut(subscriber).map(|of| &mut of[at]));
        }
        if self.complete {
            return Ok(None);
        }
        self.lookups += 1;
        let found = find_open
            .query_row([subscriber, threat], |r| {
                Ok((case_from_row(r)?, r.get::<_, Option<i64>>(23)?))
            })
            .optional()?;
        Ok(found.map(|(case, last_segment)| {
            self.hold(OpenCase {
                case,
                last_segment,
                pending: false,
                feeds: 0,
            })
        }))
    }

    /// Holds a case not held yet.
    fn hold(&mut self, c: OpenCase) -> &mut OpenCase {
        if !self.cases.contains_key(&c.case.subscriber) {
            self.cases.insert(c.case.subscriber.clone(), Vec::new());
        }
        let of = self.cases.get_mut(&c.case.subscriber).expect("just made");
        of.push(c);
        self.held += 1;
        of.last_mut().expect("just pushed")
    }

    /// Writes the pending event columns, in the caller's transaction,
    /// through its [`UPDATE_CASE_EVENTS`].
    fn flush(&mut self, update: &mut Statement<'_>) -> Result<()> {
        for c in self.cases.values_mut().flatten().filter(|c| c.pending) {
            if let Some(segment) = c.last_segment {
                store_case_events(update, &c.case, segment)?;
            }
            c.pending = false;
        }
        if self.held > OPEN_CASES_MAX {
            self.clear();
        }
        Ok(())
    }

    /// After a commit, with `case_writes` as it now is.
    fn committed(&mut self, case_writes: u64) {
        self.seen = Some((self.version, case_writes));
    }
}

/// Stores a batch's audit records, then its events a segment at a time,
/// inside the caller's transaction.
fn record_batch(
    tx: &Connection,
    held: &mut Held<'_, '_>,
    ingest: i64,
    b: &EventBatch,
    update: &mut CaseUpdate<'_>,
    counts: &mut RecordCounts,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    let mut seqs = Vec::with_capacity(b.audits.len());
    if !b.audits.is_empty() {
        let mut head = super::directory::audit_head(tx)?;
        for e in &b.audits {
            let hash = super::directory::insert_audit(tx, e, head.0, &head.1)?;
            seqs.push(head.0);
            head = (head.0 + 1, hash);
        }
        tracing::debug!(
            records = seqs.len(),
            audit_ms = t0.elapsed().as_secs_f64() * 1e3,
            "lookup records appended"
        );
    }
    let segments = b.events.chunks(SEGMENT_EVENTS).zip(&b.raw);
    for (events, raw) in segments {
        let written = Written {
            events,
            raw,
            targets: &b.cases,
            audit_seqs: &seqs,
            now: b.now,
        };
        record_segment(tx, held, ingest, &written, update, counts)?;
    }
    Ok(())
}

/// Records that cases hold events of feeds: `(feed, case)` pairs, each
/// kept once.
pub(crate) fn insert_case_feeds(tx: &Connection, pairs: &[(&str, i64)]) -> Result<()> {
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO case_feeds (feed, case_id) VALUES (?1, ?2)")?;
    for (feed, case) in pairs {
        insert.execute(params![feed, case])?;
    }
    Ok(())
}

/// Schema 21's second step: `case_feeds` from the stored events (each
/// segment's fields name its events' feeds and cases).
/// The most cases the queue's chosen states may hold for the queue by
/// feed or by last seen to read them by state and sort them.
const FEW_IN_STATES: i64 = 10_000;

/// Whether `states` (none: every state) hold at most [`FEW_IN_STATES`]
/// cases, counted on their index up to that bound.
fn few_in_states(c: &Connection, states: &[CaseState]) -> Result<bool> {
    if states.is_empty() {
        return Ok(false);
    }
    let held: i64 = c.query_row(
        &format!(
            "SELECT count(*) FROM (SELECT 1 FROM cases INDEXED BY cases_state WHERE state IN ({}) LIMIT {})",
            vec!["?"; states.len()].join(", "),
            FEW_IN_STATES + 1
        ),
        rusqlite::params_from_iter(states.iter().map(|s| s.as_str())),
        |r| r.get(0),
    )?;
    Ok(held <= FEW_IN_STATES)
}

fn by_state_or_all(by_state: bool) -> &'static str {
    if by_state {
        "cases INDEXED BY cases_state"
    } else {
        "cases"
    }
}

pub(crate) fn fill_case_feeds(c: &Connection) -> Result<()> {
    let total: i64 = c.query_row("SELECT count(*) FROM event_segments", [], |r| r.get(0))?;
    let mut segments = c.prepare("SELECT id, fields FROM event_segments ORDER BY id")?;
    let mut rows = segments.query([])?;
    let mut done = 0i64;
    // A segment holds up to 65,536 events: on a store of ten million
    // events this step takes tens of seconds, so progress is told by time.
    let mut told = std::time::Instant::now();
    while let Some(r) = rows.next()? {
        let segment: i64 = r.get(0)?;
        let fields: Vec<u8> = r.get(1)?;
        done += 1;
        if told.elapsed() >= std::time::Duration::from_secs(5) {
            told = std::time::Instant::now();
            tracing::info!(
                segments = done,
                of = total,
                "store migration 21: finding the feeds of stored cases"
            );
        }
        let Some(f) = decode_fields(segment, &fields) else {
            tracing::warn!(
                segment,
                "event segment cannot be read: its cases' feeds are not known"
            );
            continue;
        };
        let mut pairs: Vec<(&str, i64)> = f
            .events
            .iter()
            .filter_map(|(_, _, e)| Some((e.event.feed_name.as_str(), e.case_id?)))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        insert_case_feeds(c, &pairs)?;
    }
    Ok(())
}

/// One segment's share of a batch.
struct Written<'a> {
    events: &'a [EventWrite],
    raw: &'a [u8],
    targets: &'a [CaseTarget],
    audit_seqs: &'a [i64],
    now: DateTime<Utc>,
}

/// Stores one segment's worth of a batch (at most [`SEGMENT_EVENTS`]
/// events).
fn record_segment(
    tx: &Connection,
    held: &mut Held<'_, '_>,
    ingest: i64,
    w: &Written<'_>,
    update: &mut CaseUpdate<'_>,
    counts: &mut RecordCounts,
) -> Result<()> {
    let Written {
        events: batch,
        raw,
        targets,
        audit_seqs,
        now,
    } = *w;
    let segment = next_segment(tx)?;
    let keys: Vec<&EventKey> = batch.iter().map(|w| &w.key).collect();
    let t0 = std::time::Instant::now();
    let new = held.keys.insert_segment(tx, segment, &keys)?;
    let t_keys = t0.elapsed();
    let stored = new.iter().filter(|n| **n).count();
    counts.duplicates += (batch.len() - stored) as u64;
    if stored == 0 {
        return Ok(());
    }
    counts.inserted += stored as u64;

    // What the new events say of each case, in the order first seen.
    let mut deltas: Vec<(usize, CaseDelta)> = Vec::new();
    let mut delta_of: HashMap<usize, usize> = HashMap::new();
    // The feeds of each case's new events (most cases have one), each
    // with its bit in `OpenCase::feeds`.
    let mut delta_feeds: Vec<Vec<(&str, u64)>> = Vec::new();
    for (w, _) in batch.iter().zip(&new).filter(|(_, n)| **n) {
        let Some(t) = w.case else { continue };
        let Some(target) = targets.get(t) else {
            continue;
        };
        let seen = w.event.time_source;
        let feed = w.event.feed_name.as_str();
        match delta_of.get(&t) {
            Some(&d) => {
                deltas[d].1.add(seen);
                if !delta_feeds[d].iter().any(|(f, _)| *f == feed) {
                    delta_feeds[d].push((feed, held.cases.feed_bit(feed)));
                }
            }
            None => {
                delta_of.insert(t, deltas.len());
                deltas.push((t, CaseDelta::of(target, seen)));
                delta_feeds.push(vec![(feed, held.cases.feed_bit(feed))]);
            }
        }
    }
    let now_ts = ts(now);
    // In (subscriber, threat) order: the lookups walk the index forward.
    let mut order: Vec<usize> = (0..deltas.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&deltas[a].1, &deltas[b].1);
        (&a.subscriber, &a.threat).cmp(&(&b.subscriber, &b.threat))
    });
    let mut segment_cases = vec![
        SegmentCase {
            id: 0,
            previous: None
        };
        deltas.len()
    ];
    let opened = CaseChange {
        actor: "removal",
        action: "opened",
        reason: None,
    };
    let moved = CaseChange {
        action: "events",
        ..opened
    };
    let mut opened_counts = OpenedCounts::default();
    // The feeds each case's new events came from, for the queue's filter.
    let mut feeds: Vec<(&str, i64)> = Vec::new();
    for i in order {
        let d = &deltas[i].1;
        let st = &mut *held.statements;
        let (id, previous) = match held.cases.find(&mut st.find_open, d.subscriber, d.threat)? {
            Some(open) => {
                for &(feed, bit) in &delta_feeds[i] {
                    if bit == 0 || open.feeds & bit == 0 {
                        feeds.push((feed, open.case.id));
                        open.feeds |= bit;
                    }
                }
                let before = apply(update, &mut open.case, d, now);
                let previous = open.last_segment.replace(segment);
                // What only counts and times change is written once, at
                // the transaction's end.
                open.pending = before == Lifecycle::of(&open.case);
                if !open.pending {
                    store_case(tx, &open.case, Some(segment))?;
                }
                if before.state != open.case.state {
                    log_case_with(&mut st.log, open.case.id, &moved, open.case.state, now_ts)?;
                }
                counts.cases_updated += 1;
                (open.case.id, previous)
            }
            None => {
                let mut case = Case::opened(d, now);
                case.id = insert_case(&mut st.insert, &case, Some(segment))?;
                opened_counts.add(&case);
                log_case_with(&mut st.log, case.id, &opened, case.state, now_ts)?;
                counts.cases_opened += 1;
                let id = case.id;
                feeds.extend(delta_feeds[i].iter().map(|&(feed, _)| (feed, id)));
                held.cases.hold(OpenCase {
                    case,
                    last_segment: Some(segment),
                    pending: false,
                    feeds: delta_feeds[i].iter().fold(0, |all, (_, bit)| all | bit),
                });
                (id, None)
            }
        };
        segment_cases[i] = SegmentCase { id, previous };
    }

    let t_cases = t0.elapsed();
    let mut unattributed: HashMap<&str, i64> = HashMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let written: Vec<SegmentEvent> = batch
        .iter()
        .zip(&new)
        .enumerate()
        .filter(|(_, (_, n))| **n)
        .map(|(index, (w, _))| {
            let observed = w.event.time_observation.timestamp();
            (first, last) = (first.min(observed), last.max(observed));
            if let Some(r) = &w.unattributed {
                *unattributed.entry(r).or_default() += 1;
            }
            SegmentEvent {
                index,
                key: &w.key,
                event: &w.event,
                attribution: w.attribution.as_ref(),
                audit_seq: match (w.audit, &w.attribution) {
                    (Some(i), _) => audit_seqs.get(i).copied().unwrap_or_default(),
                    (None, a) => a.as_ref().map_or(0, |a| a.audit_seq),
                },
                unattributed: w.unattributed.as_deref(),
                case: w.case.and_then(|t| delta_of.get(&t).copied()),
            }
        })
        .collect();
    let fields = encode_fields(&segment_cases, &written);
    tx.prepare_cached(
        "INSERT INTO event_segments (id, ingest, events, first_observation, last_observation, fields, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![segment, ingest, stored as i64, first, last, fields, raw])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO segment_unattributed (segment, reason, events) VALUES (?1, ?2, ?3)",
    )?;
    for (reason, n) in unattributed {
        insert.execute(params![segment, reason, n])?;
    }
    opened_counts.write(tx)?;
    feeds.sort_unstable();
    insert_case_feeds(tx, &feeds)?;
    tracing::debug!(
        segment,
        keys_ms = t_keys.as_secs_f64() * 1e3,
        cases = deltas.len(),
        cases_ms = (t_cases - t_keys).as_secs_f64() * 1e3,
        segment_ms = (t0.elapsed() - t_cases).as_secs_f64() * 1e3,
        "segment written"
    );
    Ok(())
}
