//! [`RemovalBackend`] for SQLite.

use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use kanki_events::{Event, EventKey};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteBackend, from_ts, ts};
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

const CASE_COLUMNS: &str = "id, subscriber, threat, class, severity, state, held, hold_reason, opened_at, first_seen, last_seen, events, notices, unacknowledged, last_notice_at, acknowledged_at, quiet_at, resolved_at, escalated_at, reinfections, closed_at, close_reason, updated_at";

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

/// Inserts or updates a case (id 0: insert) and returns its id.
fn store_case(c: &Connection, case: &Case) -> Result<i64> {
    let values = params![
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
    ];
    if case.id == 0 {
        c.prepare_cached(
            "INSERT INTO cases (subscriber, threat, class, severity, state, held, hold_reason, opened_at, first_seen, last_seen, events, notices, unacknowledged, last_notice_at, acknowledged_at, quiet_at, resolved_at, escalated_at, reinfections, closed_at, close_reason, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
        )?
        .execute(values)?;
        Ok(c.last_insert_rowid())
    } else {
        c.prepare_cached(
            "UPDATE cases SET subscriber = ?1, threat = ?2, class = ?3, severity = ?4, state = ?5, held = ?6, hold_reason = ?7, opened_at = ?8, first_seen = ?9, last_seen = ?10, events = ?11, notices = ?12, unacknowledged = ?13, last_notice_at = ?14, acknowledged_at = ?15, quiet_at = ?16, resolved_at = ?17, escalated_at = ?18, reinfections = ?19, closed_at = ?20, close_reason = ?21, updated_at = ?22
             WHERE id = ?23",
        )?
        .execute(rusqlite::params_from_iter(
            values.iter().copied().chain(std::iter::once(&case.id as &dyn rusqlite::ToSql)),
        ))?;
        Ok(case.id)
    }
}

fn log_case(
    c: &Connection,
    id: i64,
    ch: &CaseChange<'_>,
    state: CaseState,
    now: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO case_log (case_id, at, actor, action, state, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, now, ch.actor, ch.action, state.as_str(), ch.reason])?;
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

/// A batch's raw records, each length-prefixed, compressed together: far
/// smaller and faster than one compressed value per event.
fn pack_raw(records: &[&[u8]]) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    for r in records {
        let _ = z.write_all(&(r.len() as u32).to_le_bytes());
        let _ = z.write_all(r);
    }
    z.finish().unwrap_or_default()
}

fn unpack_raw(block: &[u8], index: usize) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    flate2::read::DeflateDecoder::new(block)
        .read_to_end(&mut data)
        .ok()?;
    let mut at = 0usize;
    for i in 0.. {
        let len = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        let rec = data.get(at + 4..at + 4 + len)?;
        if i == index {
            return Some(rec.to_vec());
        }
        at += 4 + len;
    }
    None
}

const EVENT_COLUMNS: &str = "e.id, e.source_ip, e.source_port, e.destination_ip, e.destination_port, e.time_source, e.time_observation, e.taxonomy, e.class, e.identifier, e.malware, e.feed_name, e.feed_provider, e.transport, e.application, r.data, e.raw_index, e.subscriber, e.confidence, e.audit_seq, e.unattributed, e.case_id";

fn event_from_row(r: &Row) -> rusqlite::Result<StoredEvent> {
    let ip = |s: Option<String>| s.and_then(|s| s.parse().ok());
    let source: String = r.get(1)?;
    let block: Vec<u8> = r.get(15)?;
    let raw = unpack_raw(&block, r.get::<_, i64>(16)? as usize).unwrap_or_default();
    let subscriber: Option<String> = r.get(17)?;
    Ok(StoredEvent {
        id: r.get(0)?,
        event: Event {
            source_ip: source
                .parse()
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            source_port: r.get(2)?,
            destination_ip: ip(r.get(3)?),
            destination_port: r.get(4)?,
            time_source: from_ts(r.get(5)?),
            time_observation: from_ts(r.get(6)?),
            taxonomy: r.get(7)?,
            class: r.get(8)?,
            identifier: r.get(9)?,
            malware: r.get(10)?,
            feed_name: r.get(11)?,
            feed_provider: r.get(12)?,
            transport: r.get(13)?,
            application: r.get(14)?,
            extra: Default::default(),
            raw: Vec::new(),
        },
        raw: String::from_utf8_lossy(&raw).into_owned(),
        attribution: match subscriber {
            Some(subscriber) => Some(EventAttribution {
                subscriber,
                confidence: r.get::<_, Option<String>>(18)?.unwrap_or_default(),
                audit_seq: r.get::<_, Option<i64>>(19)?.unwrap_or_default(),
            }),
            None => None,
        },
        unattributed: r.get(20)?,
        case_id: r.get(21)?,
    })
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

    fn known_event_keys(&self, keys: &[EventKey]) -> Result<Vec<bool>> {
        // On the writer's connection, whose page cache holds the key index
        // pages the last batch wrote (a reader's is emptied whenever the
        // writer commits), in one read transaction: one snapshot, and the
        // WAL looked up once rather than per key.
        self.write(|c| {
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Deferred)?;
            let known = {
                let mut stmt = tx.prepare_cached("SELECT 1 FROM events WHERE key = ?1")?;
                keys.iter()
                    .map(|k| Ok(stmt.exists([&k[..]])?))
                    .collect::<Result<Vec<bool>>>()?
            };
            tx.commit()?;
            Ok(known)
        })
    }

    fn record_events(
        &self,
        ingest: i64,
        events: &[EventWrite],
        deltas: &[CaseDelta],
        update: &mut dyn FnMut(Option<Case>, &CaseDelta) -> Case,
        now: DateTime<Utc>,
    ) -> Result<RecordCounts> {
        let raws: Vec<&[u8]> = events.iter().map(|e| e.event.raw.as_slice()).collect();
        let block = pack_raw(&raws);
        self.write(|c| {
            let tx = c.transaction()?;
            let mut counts = RecordCounts::default();
            let now_ts = ts(now);
            let mut case_ids = Vec::with_capacity(deltas.len());
            for d in deltas {
                let open = tx
                    .prepare_cached(&format!(
                        "SELECT {CASE_COLUMNS} FROM cases WHERE subscriber = ?1 AND threat = ?2 AND state <> 'closed'"
                    ))?
                    .query_row([&d.subscriber, &d.threat], case_from_row)
                    .optional()?;
                let before = open.as_ref().map(|c| c.state);
                let case = update(open, d);
                let id = store_case(&tx, &case)?;
                if before.is_none() {
                    counts.cases_opened += 1;
                } else {
                    counts.cases_updated += 1;
                }
                if before != Some(case.state) {
                    let action = if before.is_none() { "opened" } else { "events" };
                    let ch = CaseChange {
                        actor: "removal",
                        action,
                        reason: None,
                    };
                    log_case(&tx, id, &ch, case.state, now_ts)?;
                }
                case_ids.push(id);
            }
            tx.prepare_cached("INSERT INTO event_raw (records, data) VALUES (?1, ?2)")?
                .execute(params![events.len() as i64, block])?;
            let block_id = tx.last_insert_rowid();
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (key, source_ip, source_port, destination_ip, destination_port, time_source, time_observation, taxonomy, class, identifier, malware, feed_name, feed_provider, transport, application, raw_block, raw_index, ingest, subscriber, confidence, audit_seq, unattributed, case_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
            )?;
            for (i, w) in events.iter().enumerate() {
                let e = &w.event;
                let a = w.attribution.as_ref();
                let n = insert.execute(params![
                    &w.key[..],
                    e.source_ip.to_string(),
                    e.source_port,
                    e.destination_ip.map(|a| a.to_string()),
                    e.destination_port,
                    ts(e.time_source),
                    ts(e.time_observation),
                    e.taxonomy,
                    e.class,
                    e.identifier,
                    e.malware,
                    e.feed_name,
                    e.feed_provider,
                    e.transport,
                    e.application,
                    block_id,
                    i as i64,
                    ingest,
                    a.map(|a| &a.subscriber),
                    a.map(|a| &a.confidence),
                    a.map(|a| a.audit_seq),
                    w.unattributed,
                    w.case.and_then(|c| case_ids.get(c).copied()),
                ])?;
                if n == 1 {
                    counts.inserted += 1;
                } else {
                    counts.duplicates += 1;
                }
            }
            drop(insert);
            tx.commit()?;
            Ok(counts)
        })
    }

    fn get_event(&self, id: i64) -> Result<Option<StoredEvent>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events e JOIN event_raw r ON r.id = e.raw_block WHERE e.id = ?1"
            ))?
            .query_row([id], event_from_row)
            .optional()?)
        })
    }

    fn case_events(&self, case_id: i64, limit: u32) -> Result<Vec<StoredEvent>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events e JOIN event_raw r ON r.id = e.raw_block
                 WHERE e.case_id = ?1 ORDER BY e.id DESC LIMIT ?2"
            ))?;
            Ok(stmt
                .query_map(params![case_id, limit], event_from_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn get_case(&self, id: i64) -> Result<Option<Case>> {
        self.read(|c| load_case(c, id))
    }

    fn list_cases(&self, f: &CaseFilter) -> Result<Vec<Case>> {
        self.read(|c| {
            let mut clauses = vec!["id > ?".to_string()];
            let mut args: Vec<rusqlite::types::Value> = vec![f.after.unwrap_or(0).into()];
            if !f.states.is_empty() {
                clauses.push(format!(
                    "state IN ({})",
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
            let limit = f.limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
            let mut stmt = c.prepare(&format!(
                "SELECT {CASE_COLUMNS} FROM cases WHERE {} ORDER BY id{limit}",
                clauses.join(" AND ")
            ))?;
            Ok(stmt
                .query_map(rusqlite::params_from_iter(args), case_from_row)?
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
            store_case(&tx, &case)?;
            log_case(&tx, id, change, case.state, ts(now))?;
            tx.commit()?;
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
            store_case(&tx, &case)?;
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
            s.events = c.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))?
                as u64;
            s.subscribers = c.query_row("SELECT count(*) FROM subscribers", [], |r| {
                r.get::<_, i64>(0)
            })? as u64;
            let mut stmt = c.prepare(
                "SELECT unattributed, count(*) FROM events WHERE unattributed IS NOT NULL GROUP BY unattributed",
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
            let n = tx.execute(
                "DELETE FROM events WHERE time_observation < ?1",
                [ts(before)],
            )?;
            tx.execute(
                "DELETE FROM event_raw WHERE id NOT IN (SELECT DISTINCT raw_block FROM events)",
                [],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
    }
}
