//! [`WarningBackend`] for SQLite.

use chrono::{DateTime, NaiveDate, Utc};
use kanki_audit::{AuditEntry, AuditRecord, Ground};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::directory::{append_audit, meta};
use super::{SqliteBackend, from_ts, ts};
use crate::warning::*;
use crate::{Result, StoreError};

const DAY: &str = "%Y-%m-%d";

fn bump_garden_generation(tx: &Connection) -> Result<()> {
    tx.prepare_cached(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'garden_generation'",
    )?
    .execute([])?;
    Ok(())
}

fn conversion(col: usize, e: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, e.into())
}

const REPORT_COLUMNS: &str = "id, name, matched, indicator_ids, url, note, contact, language, reported_at, status, outcome, review_note, reviewed_by, reviewed_at";

fn report_from_row(r: &Row) -> rusqlite::Result<FalsePositiveReport> {
    let ids: String = r.get(3)?;
    let status: String = r.get(9)?;
    let outcome: Option<String> = r.get(10)?;
    Ok(FalsePositiveReport {
        id: r.get(0)?,
        name: r.get(1)?,
        matched: r.get(2)?,
        indicator_ids: serde_json::from_str(&ids).map_err(|e| conversion(3, e.to_string()))?,
        url: r.get(4)?,
        note: r.get(5)?,
        contact: r.get(6)?,
        language: r.get(7)?,
        reported_at: from_ts(r.get(8)?),
        status: status.parse().map_err(|e| conversion(9, e))?,
        outcome: outcome
            .map(|o| o.parse())
            .transpose()
            .map_err(|e| conversion(10, e))?,
        review_note: r.get(11)?,
        reviewed_by: r.get(12)?,
        reviewed_at: r.get::<_, Option<i64>>(13)?.map(from_ts),
    })
}

fn report_by_id(c: &Connection, id: i64) -> Result<Option<FalsePositiveReport>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {REPORT_COLUMNS} FROM false_positive_reports WHERE id = ?1"
    ))?
    .query_row([id], report_from_row)
    .optional()?)
}

const GARDEN_COLUMNS: &str = "subscriber_id, ground, reason, notice, entered_at, entered_by, leave_requested_at, leave_request_note, reference";

fn member_from_row(r: &Row) -> rusqlite::Result<GardenMember> {
    let ground: String = r.get(1)?;
    Ok(GardenMember {
        subscriber: r.get(0)?,
        ground: ground.parse::<Ground>().map_err(|e| conversion(1, e))?,
        reason: r.get(2)?,
        notice: r.get(3)?,
        entered_at: from_ts(r.get(4)?),
        entered_by: r.get(5)?,
        leave_requested_at: r.get::<_, Option<i64>>(6)?.map(from_ts),
        leave_request_note: r.get(7)?,
        reference: r.get(8)?,
    })
}

fn member(c: &Connection, subscriber: &str) -> Result<Option<GardenMember>> {
    Ok(c.prepare_cached(&format!(
        "SELECT {GARDEN_COLUMNS} FROM garden WHERE subscriber_id = ?1"
    ))?
    .query_row([subscriber], member_from_row)
    .optional()?)
}

impl WarningBackend for SqliteBackend {
    fn add_hits(&self, counts: &[HitCount]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO warning_hits (indicator_id, day, hits, proceeds) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (indicator_id, day) DO UPDATE
                     SET hits = hits + excluded.hits, proceeds = proceeds + excluded.proceeds",
                )?;
                for h in counts {
                    stmt.execute(params![
                        h.indicator_id,
                        h.day.format(DAY).to_string(),
                        h.hits as i64,
                        h.proceeds as i64
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn hits_by_day(&self, since: NaiveDate) -> Result<Vec<(NaiveDate, u64, u64)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT day, SUM(hits), SUM(proceeds) FROM warning_hits WHERE day >= ?1 GROUP BY day ORDER BY day",
            )?;
            let rows = stmt.query_map([since.format(DAY).to_string()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (day, hits, proceeds) = row?;
                if let Ok(d) = NaiveDate::parse_from_str(&day, DAY) {
                    out.push((d, hits as u64, proceeds as u64));
                }
            }
            Ok(out)
        })
    }

    fn hits(&self, q: &HitsQuery) -> Result<Vec<HitCount>> {
        self.read(|c| {
            let mut clauses = Vec::new();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(d) = q.since {
                clauses.push("day >= ?");
                args.push(d.format(DAY).to_string().into());
            }
            if let Some(d) = q.until {
                clauses.push("day <= ?");
                args.push(d.format(DAY).to_string().into());
            }
            if let Some(i) = q.indicator {
                clauses.push("indicator_id = ?");
                args.push(i.into());
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let limit = q.limit.map(|n| format!("LIMIT {n}")).unwrap_or_default();
            let mut stmt = c.prepare(&format!(
                "SELECT indicator_id, day, hits, proceeds FROM warning_hits {filter}
                 ORDER BY day DESC, indicator_id {limit}"
            ))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                let day: String = r.get(1)?;
                Ok(HitCount {
                    indicator_id: r.get(0)?,
                    day: NaiveDate::parse_from_str(&day, DAY)
                        .map_err(|e| conversion(1, e.to_string()))?,
                    hits: r.get::<_, i64>(2)? as u64,
                    proceeds: r.get::<_, i64>(3)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn add_report(&self, r: &NewReport, now: DateTime<Utc>) -> Result<FalsePositiveReport> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.prepare_cached(
                "INSERT INTO false_positive_reports (name, matched, indicator_ids, url, note, contact, language, reported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                r.name,
                r.matched,
                serde_json::to_string(&r.indicator_ids).map_err(|e| StoreError::Backend(e.to_string()))?,
                r.url,
                r.note,
                r.contact,
                r.language,
                ts(now)
            ])?;
            let stored = report_by_id(&tx, tx.last_insert_rowid())?.ok_or(StoreError::NotFound)?;
            tx.commit()?;
            Ok(stored)
        })
    }

    fn reports(&self, q: &ReportQuery) -> Result<Vec<FalsePositiveReport>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {REPORT_COLUMNS} FROM false_positive_reports
                 WHERE (?1 IS NULL OR status = ?1) AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    q.status.map(ReportStatus::as_str),
                    q.after.unwrap_or(i64::MIN),
                    q.limit.map_or(-1, i64::from)
                ],
                report_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn get_report(&self, id: i64) -> Result<Option<FalsePositiveReport>> {
        self.read(|c| report_by_id(c, id))
    }

    fn review_report(
        &self,
        id: i64,
        outcome: ReportOutcome,
        note: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<FalsePositiveReport> {
        self.write(|c| {
            let tx = c.transaction()?;
            let report = report_by_id(&tx, id)?.ok_or(StoreError::NotFound)?;
            if report.status == ReportStatus::Reviewed {
                return Err(StoreError::Invalid(format!(
                    "report {id} was already reviewed by {} ({})",
                    report.reviewed_by.as_deref().unwrap_or("?"),
                    report.outcome.map_or("?", ReportOutcome::as_str)
                )));
            }
            tx.prepare_cached(
                "UPDATE false_positive_reports SET status = 'reviewed', outcome = ?2, review_note = ?3,
                    reviewed_by = ?4, reviewed_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, outcome.as_str(), note, actor, ts(now)])?;
            let stored = report_by_id(&tx, id)?.ok_or(StoreError::NotFound)?;
            tx.commit()?;
            Ok(stored)
        })
    }

    fn garden_generation(&self) -> Result<u64> {
        self.read(|c| Ok(meta(c, "garden_generation")?.parse().unwrap_or(0)))
    }

    fn garden(&self) -> Result<Vec<GardenMember>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {GARDEN_COLUMNS} FROM garden ORDER BY subscriber_id"
            ))?;
            let rows = stmt.query_map([], member_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn garden_member(&self, subscriber: &str) -> Result<Option<GardenMember>> {
        self.read(|c| member(c, subscriber))
    }

    fn garden_enter(&self, m: &GardenMember, audit: &AuditEntry) -> Result<Option<AuditRecord>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM subscribers WHERE id = ?1)",
                [&m.subscriber],
                |r| r.get(0),
            )?;
            if !known {
                return Err(StoreError::NotFound);
            }
            let n = tx
                .prepare_cached(
                    "INSERT INTO garden (subscriber_id, ground, reason, notice, entered_at, entered_by, reference)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (subscriber_id) DO NOTHING",
                )?
                .execute(params![
                    m.subscriber,
                    m.ground.as_str(),
                    m.reason,
                    m.notice,
                    ts(m.entered_at),
                    m.entered_by,
                    m.reference
                ])?;
            if n == 0 {
                return Ok(None);
            }
            bump_garden_generation(&tx)?;
            let record = append_audit(&tx, audit)?;
            tx.commit()?;
            Ok(Some(record))
        })
    }

    fn garden_leave(&self, subscriber: &str, audit: &AuditEntry) -> Result<Option<AuditRecord>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let n = tx
                .prepare_cached("DELETE FROM garden WHERE subscriber_id = ?1")?
                .execute([subscriber])?;
            if n == 0 {
                return Ok(None);
            }
            bump_garden_generation(&tx)?;
            let record = append_audit(&tx, audit)?;
            tx.commit()?;
            Ok(Some(record))
        })
    }

    fn garden_leave_request(
        &self,
        subscriber: &str,
        note: &str,
        audit: &AuditEntry,
    ) -> Result<Option<AuditRecord>> {
        self.write(|c| {
            let tx = c.transaction()?;
            let n = tx
                .prepare_cached(
                    "UPDATE garden SET leave_requested_at = ?2, leave_request_note = ?3 WHERE subscriber_id = ?1",
                )?
                .execute(params![subscriber, ts(audit.at), note])?;
            if n == 0 {
                return Ok(None);
            }
            let record = append_audit(&tx, audit)?;
            tx.commit()?;
            Ok(Some(record))
        })
    }
}
