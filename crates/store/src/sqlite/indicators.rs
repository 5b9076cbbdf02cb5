//! The [`Backend`] implementation for SQLite.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use kanki_feeds::FeedRecord;
use kanki_indicators::{
    AllowEntry, AllowKind, Allowlist, Category, Evidence, Indicator, IndicatorId, Kind, SourceRef,
    Status, Tlp, normalize_any, normalize_as,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::{SqliteBackend, count_map, from_ts, journal, source_id, ts};
use crate::change_actor::{ALLOWLIST, CONFIGURATION, EXPIRY, OPERATOR};
use crate::{
    Backend, ChunkCounts, HostMark, ImportRecord, ImportRun, ImportSummary, IndicatorChange,
    ListCounts, ListQuery, NewEvidence, NewIndicator, Page, Result, Selection, SourceSpec,
    StoreError, StoredAllowEntry,
};

/// What an import run knows about its source, loaded once per run.
struct RunCache {
    source_id: i64,
    allowlist: Allowlist,
    /// Value → (indicator id, status, fingerprint) of what this source
    /// lists: all of it while `complete`, else the values of the chunk at
    /// hand (looked up when it begins).
    listed: HashMap<String, Listed>,
    /// `listed` holds every value this source lists.
    complete: bool,
    /// What `listed` takes, counted as [`listed_bytes`] does, against
    /// [`ImportRun::listed_most_bytes`].
    listed_bytes: usize,
    /// `Some(seq)` while every indicator in the store is one this source
    /// lists, as of change journal entry `seq`: then a value this source
    /// does not list is not in the store at all, and new rows need no
    /// lookup. The usual first import of a feed into an
    /// empty store runs this way. Every insert of an indicator is journaled,
    /// so a journal that moved on means someone else may have added one.
    alone_at: Option<i64>,
}

/// What one entry of the map of what a source lists takes: the value's
/// bytes, its `String`, the [`Listed`] and a hash slot, rounded up.
fn listed_bytes(value: &str) -> usize {
    value.len() + 96
}

/// Values per statement when a chunk looks up what its source lists.
const LISTED_LOOKUP_BATCH: usize = 500;

/// What [`listed_row`] reads, from `indicators i` joined with its
/// `indicator_sources s` row.
const LISTED_COLUMNS: &str = "i.value, i.id, i.status, s.fingerprint, i.expires_at";

/// What `source_id` lists of `values`, into `listed`.
fn look_up_listed(
    c: &Connection,
    source_id: i64,
    values: &[&str],
    listed: &mut HashMap<String, Listed>,
) -> Result<()> {
    for batch in values.chunks(LISTED_LOOKUP_BATCH) {
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {LISTED_COLUMNS} FROM indicators i
             JOIN indicator_sources s ON s.indicator_id = i.id AND s.source_id = ?1
             WHERE i.value IN ({})",
            vec!["?"; batch.len()].join(", ")
        ))?;
        let args = std::iter::once(&source_id as &dyn rusqlite::ToSql)
            .chain(batch.iter().map(|v| v as &dyn rusqlite::ToSql));
        let mut rows = stmt.query(params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            listed.insert(r.get(0)?, listed_row(r)?);
        }
    }
    Ok(())
}

/// A row of [`LISTED_COLUMNS`] as [`Listed`] (the value is column 0).
fn listed_row(r: &Row) -> Result<Listed> {
    Ok(Listed {
        id: r.get(1)?,
        status: parse_enum(&r.get::<_, String>(2)?)?,
        fingerprint: r.get(3)?,
        expires_at: r.get(4)?,
    })
}

/// The newest change journal entry (0 for none).
fn journal_head(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })?,
    )
}

#[derive(Clone, Copy)]
struct Listed {
    id: i64,
    status: Status,
    fingerprint: i64,
    /// The indicator's expiry as last written.
    expires_at: Option<i64>,
}

/// An expiry moves forward only by more than this fraction of its time to
/// live: a feed fetched every five minutes then rewrites each row about every
/// seven hours (at a 30-day TTL) instead of every five minutes, and a listing
/// expires at most 1% of its TTL early.
const EXPIRY_SLACK_DIVISOR: i64 = 100;

/// Stable 64-bit FNV-1a of a membership's content, to tell an unchanged
/// row from a changed one without reading the row back. Hand-written
/// because the value is stored: std's hasher may change between releases.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        self
    }
    fn opt(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.bytes(b"S").bytes(s.as_bytes()),
            None => self.bytes(b"N"),
        }
    }
}

/// The content of one (indicator, source) membership as stored.
struct Membership {
    source_ref: Option<String>,
    reference_url: Option<String>,
    reporter: Option<String>,
    category: Category,
    confidence: u8,
    tlp: Tlp,
    tags: Vec<String>,
    online: Option<bool>,
    first_seen: i64,
    last_seen: i64,
    expires_at: Option<i64>,
    /// The dates as the source gave them (not filled in by kanki), which is
    /// what tells a changed row from a row seen again.
    reported: (Option<i64>, Option<i64>),
}

impl Membership {
    fn from_record(
        r: &FeedRecord,
        spec: &SourceSpec,
        now: i64,
        existing_first: Option<i64>,
    ) -> Self {
        let first_seen = r.first_seen.map(ts).or(existing_first).unwrap_or(now);
        let last_seen = r.last_seen.map(ts).unwrap_or(first_seen).max(first_seen);
        // The source sees it *now* unless it says the thing was last seen
        // earlier and is offline; expiry counts from then.
        let seen = match (r.online, r.last_seen) {
            (Some(true), _) | (_, None) => now,
            (_, Some(ls)) => ts(ls),
        };
        let mut tags = r.tags.clone();
        tags.sort();
        tags.dedup();
        Membership {
            source_ref: r.source_id.clone(),
            reference_url: r.reference_url.clone(),
            reporter: r.reporter.clone(),
            category: r.category.unwrap_or(spec.default_category),
            confidence: r.confidence.unwrap_or(spec.default_confidence).min(100),
            tlp: spec.default_tlp,
            tags,
            online: r.online,
            first_seen,
            last_seen,
            expires_at: spec.ttl.map(|t| seen + t.as_secs() as i64),
            reported: (r.first_seen.map(ts), r.last_seen.map(ts)),
        }
    }

    fn fingerprint(&self) -> i64 {
        let mut h = Fnv::new();
        h.opt(self.source_ref.as_deref())
            .opt(self.reference_url.as_deref())
            .opt(self.reporter.as_deref())
            .bytes(self.category.as_str().as_bytes())
            .bytes(&[self.confidence])
            .bytes(self.tlp.as_str().as_bytes())
            .bytes(&self.reported.0.unwrap_or(i64::MIN).to_le_bytes())
            .bytes(&self.reported.1.unwrap_or(i64::MIN).to_le_bytes())
            .bytes(&[self.online.map_or(2, u8::from)]);
        for t in &self.tags {
            h.bytes(t.as_bytes());
        }
        h.0 as i64
    }

    fn upsert(&self, tx: &Transaction, indicator: i64, source: i64) -> Result<()> {
        tx.prepare_cached(&membership_upsert_sql(1))?
            .execute(params![
                indicator,
                source,
                self.source_ref,
                self.reference_url,
                self.reporter,
                self.category.as_str(),
                self.confidence,
                self.tlp.as_str(),
                tags_json(&self.tags),
                self.online,
                self.first_seen,
                self.last_seen,
                self.expires_at,
                self.fingerprint(),
            ])?;
        Ok(())
    }
}

/// The membership upsert for `rows` rows of 14 parameters each.
fn membership_upsert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO indicator_sources (indicator_id, source_id, source_ref, reference_url, reporter,
            category, confidence, tlp, tags, online, first_seen, last_seen, expires_at, fingerprint)
         VALUES {}
         ON CONFLICT (indicator_id, source_id) DO UPDATE SET
            source_ref = excluded.source_ref, reference_url = excluded.reference_url,
            reporter = excluded.reporter, category = excluded.category,
            confidence = excluded.confidence, tlp = excluded.tlp, tags = excluded.tags,
            online = excluded.online,
            first_seen = min(indicator_sources.first_seen, excluded.first_seen),
            last_seen = max(indicator_sources.last_seen, excluded.last_seen),
            expires_at = excluded.expires_at,
            fingerprint = excluded.fingerprint",
        value_rows(rows, 14)
    )
}

/// `(?,?,...),(?,?,...)`: `rows` groups of `cols` placeholders.
fn value_rows(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(","));
    vec![one; rows].join(",")
}

/// Rows of an import chunk whose values this source did not list before,
/// written together: one query for which values exist already, one
/// multi-row insert for the new indicators, one for the memberships. Per-row
/// statements spent most of a large import in statement overhead.
const NEW_ROWS_BATCH: usize = 256;

struct NewRow<'a> {
    record: &'a FeedRecord,
    membership: Membership,
    fingerprint: i64,
}

fn flush_new_rows(
    tx: &Transaction,
    cache: &mut RunCache,
    pending: &mut Vec<NewRow<'_>>,
    counts: &mut ChunkCounts,
    now: i64,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut existing: HashMap<String, (i64, Status)> = HashMap::new();
    if cache.alone_at.is_none() {
        let sql = format!(
            "SELECT value, id, status FROM indicators WHERE value IN ({})",
            vec!["?"; pending.len()].join(",")
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(
            pending.iter().map(|p| p.record.indicator.value.as_str()),
        ))?;
        while let Some(r) = rows.next()? {
            existing.insert(r.get(0)?, (r.get(1)?, parse_enum(&r.get::<_, String>(2)?)?));
        }
    }
    let mut next_id: i64 =
        tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM indicators", [], |r| {
            r.get(0)
        })?;
    let mut ids = Vec::with_capacity(pending.len());
    let mut fresh: Vec<(i64, &NewRow, Status, Option<String>, String)> = Vec::new();
    for p in pending.iter() {
        let n = &p.record.indicator;
        match existing.get(&n.value) {
            Some(&(id, status)) => ids.push((id, status, false)),
            None => {
                let (status, reason) = initial_status(
                    &cache.allowlist,
                    n.kind,
                    &n.value,
                    n.host.as_deref(),
                    &p.membership,
                    now,
                );
                ids.push((next_id, status, true));
                fresh.push((next_id, p, status, reason, tags_json(&p.membership.tags)));
                next_id += 1;
            }
        }
    }
    if !fresh.is_empty() {
        let sql = format!(
            "INSERT INTO indicators (id, kind, value, host, category, confidence, status, status_reason, tlp,
                tags, first_seen, last_seen, expires_at, updated_at) VALUES {}",
            value_rows(fresh.len(), 14)
        );
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(fresh.len() * 14);
        let kinds: Vec<&'static str> = fresh
            .iter()
            .map(|f| f.1.record.indicator.kind.as_str())
            .collect();
        let cats: Vec<&'static str> = fresh
            .iter()
            .map(|f| f.1.membership.category.as_str())
            .collect();
        let statuses: Vec<&'static str> = fresh.iter().map(|f| f.2.as_str()).collect();
        let tlps: Vec<&'static str> = fresh.iter().map(|f| f.1.membership.tlp.as_str()).collect();
        for (i, (id, p, _, reason, tags)) in fresh.iter().enumerate() {
            let m = &p.membership;
            args.extend_from_slice(&[
                id as &dyn rusqlite::ToSql,
                &kinds[i],
                &p.record.indicator.value,
                &p.record.indicator.host,
                &cats[i],
                &m.confidence,
                &statuses[i],
                reason,
                &tlps[i],
                tags,
                &m.first_seen,
                &m.last_seen,
                &m.expires_at,
                &now,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(args.as_slice())?;
    }
    {
        let sql = membership_upsert_sql(pending.len());
        let cats: Vec<&'static str> = pending
            .iter()
            .map(|p| p.membership.category.as_str())
            .collect();
        let tlps: Vec<&'static str> = pending.iter().map(|p| p.membership.tlp.as_str()).collect();
        let tags: Vec<String> = pending
            .iter()
            .map(|p| tags_json(&p.membership.tags))
            .collect();
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(pending.len() * 14);
        for (i, p) in pending.iter().enumerate() {
            let m = &p.membership;
            args.extend_from_slice(&[
                &ids[i].0 as &dyn rusqlite::ToSql,
                &cache.source_id,
                &m.source_ref,
                &m.reference_url,
                &m.reporter,
                &cats[i],
                &m.confidence,
                &tlps[i],
                &tags[i],
                &m.online,
                &m.first_seen,
                &m.last_seen,
                &m.expires_at,
                &p.fingerprint,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(args.as_slice())?;
    }
    for (p, &(id, status, new)) in pending.iter().zip(&ids) {
        if new {
            counts.added += 1;
        } else {
            // Listed by another source already: this one joins it.
            recompute(tx, id, now)?;
            counts.updated += 1;
        }
        cache.listed_bytes += listed_bytes(&p.record.indicator.value);
        cache.listed.insert(
            p.record.indicator.value.clone(),
            Listed {
                id,
                status,
                fingerprint: p.fingerprint,
                expires_at: p.membership.expires_at,
            },
        );
    }
    pending.clear();
    Ok(())
}

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn parse_tags(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn tlp_rank(t: Tlp) -> u8 {
    match t {
        Tlp::Clear => 0,
        Tlp::Green => 1,
        Tlp::Amber => 2,
        Tlp::AmberStrict => 3,
        Tlp::Red => 4,
    }
}

fn parse_enum<T: std::str::FromStr>(s: &str) -> rusqlite::Result<T> {
    s.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown value {s:?} in store").into(),
        )
    })
}

/// The allowlist entry covering an indicator, if any.
fn allow_reason(list: &Allowlist, kind: Kind, value: &str, host: Option<&str>) -> Option<String> {
    let key = match kind {
        Kind::Ip => Some(value),
        _ => host,
    }?;
    list.check(key).map(|m| m.to_string())
}

/// Recomputes an indicator's summary fields from its memberships: highest
/// confidence (its category with it), most restrictive TLP, union of tags,
/// earliest first and latest last sighting, latest expiry. Revives an
/// expired indicator whose expiry moved into the future.
fn recompute(tx: &Transaction, id: i64, now: i64) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "SELECT category, confidence, tlp, tags, first_seen, last_seen, expires_at
         FROM indicator_sources WHERE indicator_id = ?1",
    )?;
    let mut rows = stmt.query([id])?;
    let mut best: Option<(u8, Category)> = None;
    let mut tlp = Tlp::Clear;
    let mut tags = BTreeSet::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut expires: Option<Option<i64>> = None;
    while let Some(r) = rows.next()? {
        let category: Category = parse_enum(&r.get::<_, String>(0)?)?;
        let confidence: u8 = r.get(1)?;
        if best.is_none_or(|(c, _)| confidence > c) {
            best = Some((confidence, category));
        }
        let t: Tlp = parse_enum(&r.get::<_, String>(2)?)?;
        if tlp_rank(t) > tlp_rank(tlp) {
            tlp = t;
        }
        tags.extend(parse_tags(&r.get::<_, String>(3)?));
        first = first.min(r.get(4)?);
        last = last.max(r.get(5)?);
        let e: Option<i64> = r.get(6)?;
        expires = Some(match (expires, e) {
            (None, e) => e,
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
        });
    }
    let Some((confidence, category)) = best else {
        return Ok(());
    };
    let tags: Vec<String> = tags.into_iter().collect();
    tx.prepare_cached(
        "UPDATE indicators SET category = ?2, confidence = ?3, tlp = ?4, tags = ?5,
            first_seen = ?6, last_seen = ?7,
            expires_at = CASE WHEN ?8 IS NULL THEN NULL ELSE max(coalesce(expires_at, 0), ?8) END,
            status = CASE WHEN status = 'expired' AND (?8 IS NULL OR ?8 > ?9) THEN 'active' ELSE status END,
            status_reason = CASE WHEN status = 'expired' AND (?8 IS NULL OR ?8 > ?9) THEN NULL ELSE status_reason END,
            updated_at = ?9
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        category.as_str(),
        confidence,
        tlp.as_str(),
        tags_json(&tags),
        first,
        last,
        expires.flatten(),
        now
    ])?;
    Ok(())
}

const INDICATOR_COLUMNS: &str = "id, kind, value, host, category, confidence, status, status_reason, tlp, tags, first_seen, last_seen, expires_at";

fn indicator_from_row(r: &Row) -> rusqlite::Result<Indicator> {
    Ok(Indicator {
        id: r.get(0)?,
        kind: parse_enum(&r.get::<_, String>(1)?)?,
        value: r.get(2)?,
        host: r.get(3)?,
        category: parse_enum(&r.get::<_, String>(4)?)?,
        confidence: r.get(5)?,
        status: parse_enum(&r.get::<_, String>(6)?)?,
        status_reason: r.get(7)?,
        tlp: parse_enum(&r.get::<_, String>(8)?)?,
        tags: parse_tags(&r.get::<_, String>(9)?),
        first_seen: from_ts(r.get(10)?),
        last_seen: from_ts(r.get(11)?),
        expires_at: r.get::<_, Option<i64>>(12)?.map(from_ts),
        sources: Vec::new(),
        evidence: Vec::new(),
    })
}

const SOURCE_COLUMNS: &str = "s.indicator_id, src.name, s.source_ref, s.reference_url, s.reporter, s.category, s.confidence, s.first_seen, s.last_seen, s.expires_at";

fn source_from_row(r: &Row) -> rusqlite::Result<(i64, SourceRef)> {
    Ok((
        r.get(0)?,
        SourceRef {
            source: r.get(1)?,
            source_id: r.get(2)?,
            reference_url: r.get(3)?,
            reporter: r.get(4)?,
            category: parse_enum(&r.get::<_, String>(5)?)?,
            confidence: r.get(6)?,
            first_seen: from_ts(r.get(7)?),
            last_seen: from_ts(r.get(8)?),
            expires_at: r.get::<_, Option<i64>>(9)?.map(from_ts),
        },
    ))
}

fn load_indicator(conn: &Connection, id: i64) -> Result<Option<Indicator>> {
    let Some(mut ind) = conn
        .prepare_cached(&format!(
            "SELECT {INDICATOR_COLUMNS} FROM indicators WHERE id = ?1"
        ))?
        .query_row([id], indicator_from_row)
        .optional()?
    else {
        return Ok(None);
    };
    fill_details(conn, &mut ind)?;
    Ok(Some(ind))
}

fn fill_details(conn: &Connection, ind: &mut Indicator) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SOURCE_COLUMNS} FROM indicator_sources s JOIN sources src ON src.id = s.source_id
         WHERE s.indicator_id = ?1 ORDER BY s.first_seen, src.name"
    ))?;
    ind.sources = stmt
        .query_map([ind.id], source_from_row)?
        .map(|r| r.map(|(_, s)| s))
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, uri, sha256, note, created_at FROM evidence WHERE indicator_id = ?1 ORDER BY id",
    )?;
    ind.evidence = stmt
        .query_map([ind.id], |r| {
            Ok(Evidence {
                id: r.get(0)?,
                kind: r.get(1)?,
                uri: r.get(2)?,
                sha256: r.get(3)?,
                note: r.get(4)?,
                created_at: from_ts(r.get(5)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

/// The WHERE clause and parameters of a listing. `plain_first_seen`: the
/// planner may use the first-seen index for a first-seen range.
fn list_filter(q: &ListQuery, plain_first_seen: bool) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(k) = q.kind {
        args.push(k.as_str().to_string().into());
        clauses.push(format!("i.kind = ?{}", args.len()));
    }
    if let Some(c) = q.category {
        args.push(c.as_str().to_string().into());
        clauses.push(format!("i.category = ?{}", args.len()));
    }
    if let Some(s) = q.status {
        args.push(s.as_str().to_string().into());
        clauses.push(format!("i.status = ?{}", args.len()));
    }
    if let Some(src) = &q.source {
        args.push(src.clone().into());
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM indicator_sources s JOIN sources src ON src.id = s.source_id
                     WHERE s.indicator_id = i.id AND src.name = ?{})",
            args.len()
        ));
    }
    if let Some(tag) = &q.tag {
        args.push(tag.clone().into());
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM json_each(i.tags) WHERE json_each.value = ?{})",
            args.len()
        ));
    }
    if let Some(t) = q.tlp {
        args.push(t.as_str().to_string().into());
        clauses.push(format!("i.tlp = ?{}", args.len()));
    }
    // `+` keeps the first-seen index out of a walk in id order (see
    // `FirstSeenWalk`).
    let col = if plain_first_seen {
        "i.first_seen"
    } else {
        "+i.first_seen"
    };
    if let Some(t) = q.first_seen_since {
        args.push(t.timestamp().into());
        clauses.push(format!("{col} >= ?{}", args.len()));
    }
    if let Some(t) = q.first_seen_until {
        args.push(t.timestamp().into());
        clauses.push(format!("{col} < ?{}", args.len()));
    }
    if let Some(text) = &q.q {
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        args.push(format!("%{}%", escaped.to_lowercase()).into());
        clauses.push(format!("i.value LIKE ?{} ESCAPE '\\'", args.len()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

/// How a page of the list with a first-seen range is found, in id order.
/// SQLite's planner cannot tell a narrow range from a wide one (it keeps no
/// statistics of ranges), and each needs the other plan.
#[derive(Clone, Copy, Debug, PartialEq)]
enum FirstSeenWalk {
    /// No first-seen range.
    None,
    /// A narrow range: its few indicators read by the first-seen index and
    /// sorted by id.
    ByDate,
    /// A wide range: the list walked in id order, the range checked on
    /// each row; between the range's first and last id when it holds few
    /// enough for those to be read from the index at once (its indicators
    /// mostly sit together, as the list grows with time).
    ById { ids: Option<(i64, i64)> },
}

/// The most indicators a first-seen range may hold to be read by date.
const NARROW_RANGE_MOST: i64 = 5_000;
/// The most a range may hold for its first and last id to be looked up
/// (a read of its index entries, about 10 ms per 100,000).
const BOUNDED_RANGE_MOST: i64 = 100_000;

impl FirstSeenWalk {
    fn of(c: &Connection, q: &ListQuery) -> Result<FirstSeenWalk> {
        if q.first_seen_since.is_none() && q.first_seen_until.is_none() {
            return Ok(FirstSeenWalk::None);
        }
        let range = [
            q.first_seen_since.map_or(i64::MIN, |t| t.timestamp()),
            q.first_seen_until.map_or(i64::MAX, |t| t.timestamp()),
        ];
        let held: i64 = c
            .prepare_cached(&format!(
                "SELECT count(*) FROM (SELECT 1 FROM indicators INDEXED BY indicators_first_seen
                 WHERE first_seen >= ?1 AND first_seen < ?2 LIMIT {})",
                BOUNDED_RANGE_MOST + 1
            ))?
            .query_row(range, |r| r.get(0))?;
        if held <= NARROW_RANGE_MOST {
            return Ok(FirstSeenWalk::ByDate);
        }
        if held > BOUNDED_RANGE_MOST {
            return Ok(FirstSeenWalk::ById { ids: None });
        }
        // The index holds each row's id: the range's smallest and largest
        // are read from the index alone.
        let ids = c
            .prepare_cached(
                "SELECT min(id), max(id) FROM indicators INDEXED BY indicators_first_seen
                 WHERE first_seen >= ?1 AND first_seen < ?2",
            )?
            .query_row(range, |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(FirstSeenWalk::ById { ids: Some(ids) })
    }

    /// Whether the count of matches goes by the range's index entries (at
    /// most `BOUNDED_RANGE_MOST` of them), rather than as the planner
    /// chooses (it prefers any equality, such as a TLP all share).
    fn counts_by_date(self) -> bool {
        matches!(
            self,
            FirstSeenWalk::ByDate | FirstSeenWalk::ById { ids: Some(_) }
        )
    }
}

fn ensure_source(tx: &Connection, name: &str, list_url_hosts: bool, now: i64) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO sources (name, list_url_hosts, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, list_url_hosts, now])?;
    source_id(tx, name)?.ok_or(StoreError::NotFound)
}

fn load_allowlist(conn: &Connection) -> Result<Vec<StoredAllowEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, name, reason, origin, created_at FROM allowlist ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let kind: String = r.get(1)?;
        Ok(StoredAllowEntry {
            id: r.get(0)?,
            entry: AllowEntry {
                kind: if kind == "suffix" {
                    AllowKind::Suffix
                } else {
                    AllowKind::Exact
                },
                name: r.get(2)?,
                reason: r.get(3)?,
                origin: r.get(4)?,
            },
            created_at: from_ts(r.get(5)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Inserts a new indicator row and returns its id.
#[allow(clippy::too_many_arguments)]
fn insert_indicator(
    tx: &Transaction,
    kind: Kind,
    value: &str,
    host: Option<&str>,
    m: &Membership,
    status: Status,
    reason: Option<&str>,
    now: i64,
) -> Result<Option<i64>> {
    // INSERT OR IGNORE rather than ON CONFLICT ... RETURNING: SQLite runs a
    // RETURNING statement through a temporary table and a statement
    // journal, which cost a third of a million-row import.
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO indicators (kind, value, host, category, confidence, status, status_reason, tlp,
                tags, first_seen, last_seen, expires_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            kind.as_str(),
            value,
            host,
            m.category.as_str(),
            m.confidence,
            status.as_str(),
            reason,
            m.tlp.as_str(),
            tags_json(&m.tags),
            m.first_seen,
            m.last_seen,
            m.expires_at,
            now
        ])?;
    Ok((inserted == 1).then(|| tx.last_insert_rowid()))
}

fn initial_status(
    allowlist: &Allowlist,
    kind: Kind,
    value: &str,
    host: Option<&str>,
    m: &Membership,
    now: i64,
) -> (Status, Option<String>) {
    if let Some(reason) = allow_reason(allowlist, kind, value, host) {
        (Status::Allowlisted, Some(reason))
    } else if m.expires_at.is_some_and(|e| e <= now) {
        (
            Status::Expired,
            Some("source last saw it longer ago than its time to live".into()),
        )
    } else {
        (Status::Active, None)
    }
}

impl Backend for SqliteBackend {
    fn generation(&self) -> Result<u64> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
    }

    fn sync_sources(&self, sources: &[SourceSpec]) -> Result<()> {
        let now = Utc::now().timestamp();
        self.write(|c| {
            let tx = c.transaction()?;
            for s in sources {
                let id = ensure_source(&tx, &s.name, s.list_url_hosts, now)?;
                let changed = tx.execute(
                    "UPDATE sources SET list_url_hosts = ?2 WHERE id = ?1 AND list_url_hosts != ?2",
                    params![id, s.list_url_hosts],
                )?;
                if changed > 0 {
                    journal(&tx, now, None, "source-rule", Some(&s.name), CONFIGURATION)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn begin_import(
        &self,
        source: &SourceSpec,
        format: &str,
        origin: &str,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        self.write(|c| {
            c.execute(
                "INSERT INTO imports (source, format, origin, started_at, status, owner) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                params![source.name, format, origin, ts(now), super::import_owner()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn apply_import_chunk(
        &self,
        run: &mut ImportRun,
        records: &[FeedRecord],
    ) -> Result<ChunkCounts> {
        let now = ts(run.started_at);
        self.write(|c| {
            if run.cache.is_none() {
                let sid = ensure_source(c, &run.source.name, run.source.list_url_hosts, now)?;
                let allowlist =
                    Allowlist::new(load_allowlist(c)?.into_iter().map(|e| e.entry));
                let head = journal_head(c)?;
                let lists: i64 = c.query_row(
                    "SELECT count(*) FROM indicator_sources WHERE source_id = ?1",
                    [sid],
                    |r| r.get(0),
                )?;
                // Held whole if it fits; else each chunk looks up its own.
                let mut listed = HashMap::new();
                let mut bytes = 0;
                let mut complete = lists as usize * listed_bytes("") <= run.listed_most_bytes;
                if complete {
                    let mut stmt = c.prepare(&format!(
                        "SELECT {LISTED_COLUMNS} FROM indicator_sources s
                         JOIN indicators i ON i.id = s.indicator_id WHERE s.source_id = ?1"
                    ))?;
                    let mut rows = stmt.query([sid])?;
                    while let Some(r) = rows.next()? {
                        let value: String = r.get(0)?;
                        bytes += listed_bytes(&value);
                        if bytes > run.listed_most_bytes {
                            (complete, bytes, listed) = (false, 0, HashMap::new());
                            break;
                        }
                        listed.insert(value, listed_row(r)?);
                    }
                }
                let total: i64 = c.query_row("SELECT count(*) FROM indicators", [], |r| r.get(0))?;
                // The head was read before the rows: anything written since
                // moves the journal past it, and the first chunk sees that.
                let alone_at = (total == lists).then_some(head);
                run.cache = Some(Box::new(RunCache {
                    source_id: sid,
                    allowlist,
                    listed,
                    complete,
                    listed_bytes: bytes,
                    alone_at,
                }));
            }
            let cache = run
                .cache
                .as_mut()
                .and_then(|c| c.downcast_mut::<RunCache>())
                .expect("run cache set above");
            let mut counts = ChunkCounts::default();
            let tx = c.transaction()?;
            if let Some(seq) = cache.alone_at
                && journal_head(&tx)? != seq
            {
                cache.alone_at = None;
            }
            if cache.complete && cache.listed_bytes > run.listed_most_bytes {
                // Grown past its bound with what this run added.
                cache.complete = false;
            }
            if !cache.complete {
                cache.listed = HashMap::new();
                cache.listed_bytes = 0;
                let mut values: Vec<&str> =
                    records.iter().map(|r| r.indicator.value.as_str()).collect();
                values.sort_unstable();
                values.dedup();
                look_up_listed(&tx, cache.source_id, &values, &mut cache.listed)?;
            }
            let mut pending: Vec<NewRow> = Vec::with_capacity(NEW_ROWS_BATCH);
            let mut pending_values: HashSet<&str> = HashSet::new();
            for r in records {
                let value = &r.indicator.value;
                // A value twice in one batch: write the batch first, so the
                // second sighting finds the first.
                if pending_values.contains(value.as_str()) {
                    flush_new_rows(&tx, cache, &mut pending, &mut counts, now)?;
                    pending_values.clear();
                }
                let m = Membership::from_record(r, &run.source, now, None);
                let fp = m.fingerprint();
                if let Some(known) = cache.listed.get(value).copied() {
                    if known.fingerprint == fp {
                        // Seen again, same content: only the expiry moves,
                        // and only when it moves by more than the slack.
                        let slack = run.source.ttl.map_or(0, |t| t.as_secs() as i64 / EXPIRY_SLACK_DIVISOR);
                        let moves = match (known.expires_at, m.expires_at) {
                            (Some(old), Some(new)) => new > old + slack,
                            (None, None) => false,
                            _ => true,
                        };
                        let revives = known.status == Status::Expired && m.expires_at.is_none_or(|e| e > now);
                        if moves || revives {
                            tx.prepare_cached(
                                "UPDATE indicator_sources SET expires_at = ?3 WHERE indicator_id = ?1 AND source_id = ?2",
                            )?
                            .execute(params![known.id, cache.source_id, m.expires_at])?;
                        }
                        if revives {
                            recompute(&tx, known.id, now)?;
                            counts.updated += 1;
                        } else {
                            if moves {
                                tx.prepare_cached(
                                    "UPDATE indicators SET expires_at = CASE WHEN expires_at IS NULL OR ?2 IS NULL THEN NULL ELSE max(expires_at, ?2) END
                                     WHERE id = ?1",
                                )?
                                .execute(params![known.id, m.expires_at])?;
                            }
                            counts.unchanged += 1;
                        }
                        if moves || revives {
                            let entry = cache.listed.get_mut(value).expect("present");
                            entry.expires_at = m.expires_at;
                            if revives {
                                entry.status = Status::Active;
                            }
                        }
                        continue;
                    }
                    m.upsert(&tx, known.id, cache.source_id)?;
                    recompute(&tx, known.id, now)?;
                    cache.listed.insert(
                        value.clone(),
                        Listed {
                            fingerprint: fp,
                            expires_at: m.expires_at,
                            ..known
                        },
                    );
                    counts.updated += 1;
                    continue;
                }
                pending_values.insert(value.as_str());
                pending.push(NewRow {
                    record: r,
                    membership: m,
                    fingerprint: fp,
                });
                if pending.len() >= NEW_ROWS_BATCH {
                    flush_new_rows(&tx, cache, &mut pending, &mut counts, now)?;
                    pending_values.clear();
                }
            }
            flush_new_rows(&tx, cache, &mut pending, &mut counts, now)?;
            // One journal entry per chunk that changed the list: what moves
            // the generation, without a row per indicator.
            if counts.added + counts.updated > 0 {
                let detail = format!(
                    "{{\"import\":{},\"source\":{:?},\"added\":{},\"updated\":{}}}",
                    run.id, run.source.name, counts.added, counts.updated
                );
                let by = format!("source {}", run.source.name);
                journal(&tx, now, None, "import", Some(&detail), &by)?;
                if cache.alone_at.is_some() {
                    cache.alone_at = Some(tx.last_insert_rowid());
                }
            }
            run.counts.added += counts.added;
            run.counts.updated += counts.updated;
            run.counts.unchanged += counts.unchanged;
            tx.execute(
                "UPDATE imports SET rows_read = ?2, added = ?3, updated = ?4, unchanged = ?5, skipped = ?6 WHERE id = ?1",
                params![
                    run.id,
                    run.rows_read as i64,
                    run.counts.added as i64,
                    run.counts.updated as i64,
                    run.counts.unchanged as i64,
                    run.skipped as i64
                ],
            )?;
            tx.commit()?;
            Ok(counts)
        })
    }

    fn finish_import(&self, s: &ImportSummary, now: DateTime<Utc>) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE imports SET status = ?2, finished_at = ?3, rows_read = ?4, added = ?5, updated = ?6,
                    unchanged = ?7, skipped = ?8, summary = ?9 WHERE id = ?1",
                params![
                    s.import_id,
                    s.status,
                    ts(now),
                    s.rows_read as i64,
                    s.added as i64,
                    s.updated as i64,
                    s.unchanged as i64,
                    s.skipped as i64,
                    serde_json::to_string(s).ok()
                ],
            )?;
            Ok(())
        })
    }

    fn recent_imports(&self, limit: u32) -> Result<Vec<ImportRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {IMPORT_COLUMNS} FROM imports ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit], import_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn add_counter_counts(&self, counts: &[(i64, &str, u64)]) -> Result<()> {
        self.write(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO counter_counts (bucket, counter, count) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (bucket, counter) DO UPDATE SET count = count + excluded.count",
                )?;
                for (bucket, counter, count) in counts {
                    stmt.execute(params![bucket, counter, *count as i64])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn counter_counts(&self, since: i64) -> Result<Vec<(i64, String, u64)>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT bucket, counter, count FROM counter_counts WHERE bucket >= ?1 ORDER BY bucket",
            )?
            .query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn trim_counter_counts(&self, before: i64) -> Result<u64> {
        self.write(|c| {
            Ok(c.execute("DELETE FROM counter_counts WHERE bucket < ?1", [before])? as u64)
        })
    }

    fn list_counts(&self) -> Result<ListCounts> {
        self.read(|c| {
            let by_status_category = c
                .prepare_cached(
                    "SELECT status, category, COUNT(*) FROM indicators GROUP BY status, category ORDER BY status, category",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
                .collect::<rusqlite::Result<_>>()?;
            let active_by_source = c
                .prepare_cached(
                    "SELECT s.name, COUNT(*) FROM indicator_sources x \
                     JOIN indicators i ON i.id = x.indicator_id AND i.status = 'active' \
                     JOIN sources s ON s.id = x.source_id GROUP BY s.name ORDER BY s.name",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ListCounts {
                by_status_category,
                active_by_source,
            })
        })
    }

    fn last_import_of(&self, source: &str) -> Result<Option<(ImportRecord, Option<String>)>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {IMPORT_COLUMNS}, summary FROM imports WHERE source = ?1 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([source], |r| Ok((import_from_row(r)?, r.get(12)?)))
            .optional()?)
        })
    }

    fn add_indicator(
        &self,
        new: &NewIndicator,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Indicator, bool)> {
        let norm = match new.kind {
            Some(k) => normalize_as(k, &new.value),
            None => normalize_any(&new.value),
        }
        .map_err(|e| StoreError::Invalid(format!("{:?}: {e}", new.value)))?;
        if new.confidence.is_some_and(|c| c > 100) {
            return Err(StoreError::Invalid("confidence is 0 to 100".into()));
        }
        let source = new.source.clone().unwrap_or_else(|| "operator".into());
        // The history's detail: the source, and why when given.
        let detail = match new.reason.as_deref().map(str::trim) {
            Some(why) if !why.is_empty() => format!("{source}: {why}"),
            _ => source.clone(),
        };
        let spec = SourceSpec {
            name: source.clone(),
            default_category: new.category.unwrap_or(Category::Other),
            default_confidence: new.confidence.unwrap_or(100),
            default_tlp: new.tlp.unwrap_or(Tlp::Clear),
            ttl: new.ttl_secs.map(std::time::Duration::from_secs),
            list_url_hosts: true,
        };
        let mut rec = FeedRecord::new(0, norm);
        rec.tags = new.tags.clone();
        rec.reference_url = new.reference_url.clone();
        rec.reporter = new.reporter.clone();
        let now_s = ts(now);
        let id = self.write(|c| {
            let tx = c.transaction()?;
            let sid = ensure_source(&tx, &source, true, now_s)?;
            let existing: Option<i64> = tx
                .query_row("SELECT id FROM indicators WHERE value = ?1", [&rec.indicator.value], |r| r.get(0))
                .optional()?;
            let prior_first: Option<i64> = match existing {
                Some(id) => tx
                    .query_row(
                        "SELECT first_seen FROM indicator_sources WHERE indicator_id = ?1 AND source_id = ?2",
                        params![id, sid],
                        |r| r.get(0),
                    )
                    .optional()?,
                None => None,
            };
            let m = Membership::from_record(&rec, &spec, now_s, prior_first);
            let (id, created) = match existing {
                Some(id) => {
                    m.upsert(&tx, id, sid)?;
                    recompute(&tx, id, now_s)?;
                    journal(&tx, now_s, Some(id), "update", Some(&detail), actor)?;
                    (id, false)
                }
                None => {
                    let allowlist = Allowlist::new(load_allowlist(&tx)?.into_iter().map(|e| e.entry));
                    let host = rec.indicator.host.as_deref();
                    let (status, reason) =
                        initial_status(&allowlist, rec.indicator.kind, &rec.indicator.value, host, &m, now_s);
                    let id = insert_indicator(&tx, rec.indicator.kind, &rec.indicator.value, host, &m, status, reason.as_deref(), now_s)?
                        .ok_or_else(|| StoreError::Backend("indicator appeared during its own insert".into()))?;
                    m.upsert(&tx, id, sid)?;
                    journal(&tx, now_s, Some(id), "add", Some(&detail), actor)?;
                    (id, true)
                }
            };
            tx.commit()?;
            Ok((id, created))
        })?;
        let ind = self.get_indicator(id.0)?.ok_or(StoreError::NotFound)?;
        Ok((ind, id.1))
    }

    fn get_indicator(&self, id: IndicatorId) -> Result<Option<Indicator>> {
        self.read(|c| load_indicator(c, id))
    }

    fn find_indicator(&self, value: &str) -> Result<Option<Indicator>> {
        let normalized = normalize_any(value)
            .map(|n| n.value)
            .unwrap_or_else(|_| value.to_string());
        self.read(|c| {
            let id: Option<i64> = c
                .prepare_cached("SELECT id FROM indicators WHERE value = ?1")?
                .query_row([&normalized], |r| r.get(0))
                .optional()?;
            match id {
                Some(id) => load_indicator(c, id),
                None => Ok(None),
            }
        })
    }

    fn list_indicators(&self, q: &ListQuery) -> Result<Page> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000) as i64;
        let (filter, args) = list_filter(q, true);
        self.read(|c| {
            let walk = FirstSeenWalk::of(c, q)?;
            // Counted up to a bound: a count of a million matches is a
            // scan of them all, and a page needs none of it.
            let total: i64 = c.query_row(
                &format!(
                    "SELECT count(*) FROM (SELECT 1 FROM indicators i {hint} {filter} LIMIT {})",
                    TOTAL_COUNTED_MOST + 1,
                    hint = if walk.counts_by_date() {
                        "INDEXED BY indicators_first_seen"
                    } else {
                        ""
                    },
                ),
                params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            let (from, filter, mut page_args) = match walk {
                FirstSeenWalk::None => ("indicators i", filter, args),
                FirstSeenWalk::ByDate => (
                    "indicators i INDEXED BY indicators_first_seen",
                    filter,
                    args,
                ),
                FirstSeenWalk::ById { .. } => {
                    let (filter, args) = list_filter(q, false);
                    ("indicators i", filter, args)
                }
            };
            let (after, last) = match walk {
                FirstSeenWalk::ById {
                    ids: Some((first, last)),
                } => (q.after.unwrap_or(0).max(first - 1), last),
                _ => (q.after.unwrap_or(0), i64::MAX),
            };
            page_args.push(after.into());
            let after_n = page_args.len();
            page_args.push(last.into());
            page_args.push((limit + 1).into());
            let joiner = if filter.is_empty() { "WHERE" } else { "AND" };
            let sql = format!(
                "SELECT {cols} FROM {from} {filter} {joiner} i.id > ?{after_n} AND i.id <= ?{last_n}
                 ORDER BY i.id LIMIT ?{lim}",
                cols = INDICATOR_COLUMNS
                    .split(", ")
                    .map(|c| format!("i.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                last_n = after_n + 1,
                lim = after_n + 2,
            );
            let mut stmt = c.prepare(&sql)?;
            let mut items: Vec<Indicator> = stmt
                .query_map(params_from_iter(page_args.iter()), indicator_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let next_after = if items.len() as i64 > limit {
                items.truncate(limit as usize);
                items.last().map(|i| i.id)
            } else {
                None
            };
            for ind in &mut items {
                fill_details(c, ind)?;
            }
            let total = total as u64;
            Ok(Page {
                items,
                next_after,
                total: total.min(TOTAL_COUNTED_MOST),
                total_at_least: total > TOTAL_COUNTED_MOST,
            })
        })
    }

    fn set_status(
        &self,
        id: IndicatorId,
        status: Status,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Indicator> {
        if !matches!(
            status,
            Status::FalsePositive | Status::Delisted | Status::Active
        ) {
            return Err(StoreError::Invalid(format!(
                "an operator can set false-positive, delisted or active, not {status}; allowlist through the allowlist"
            )));
        }
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid("a reason is required".into()));
        }
        self.write(|c| {
            let tx = c.transaction()?;
            let row: Option<(String, Option<String>, String, Option<i64>)> = tx
                .query_row(
                    "SELECT kind, host, value, expires_at FROM indicators WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let Some((kind, host, value, expires)) = row else {
                return Err(StoreError::NotFound);
            };
            let (status, reason) = if status == Status::Active {
                // Back to what the sources and the allowlist say.
                let allowlist = Allowlist::new(load_allowlist(&tx)?.into_iter().map(|e| e.entry));
                let kind: Kind = parse_enum(&kind)?;
                if let Some(why) = allow_reason(&allowlist, kind, &value, host.as_deref()) {
                    (Status::Allowlisted, why)
                } else if expires.is_some_and(|e| e <= ts(now)) {
                    (Status::Expired, reason.to_string())
                } else {
                    (Status::Active, reason.to_string())
                }
            } else {
                (status, reason.to_string())
            };
            tx.execute(
                "UPDATE indicators SET status = ?2, status_reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, status.as_str(), reason, ts(now)],
            )?;
            journal(&tx, ts(now), Some(id), status.as_str(), Some(&reason), actor)?;
            tx.commit()?;
            Ok(())
        })?;
        self.get_indicator(id)?.ok_or(StoreError::NotFound)
    }

    fn delete_indicator(&self, id: IndicatorId, actor: &str, now: DateTime<Utc>) -> Result<bool> {
        self.write(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM indicators WHERE id = ?1", [id])?;
            if n > 0 {
                journal(&tx, ts(now), Some(id), "delete", None, actor)?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn indicator_history(&self, id: IndicatorId, limit: u32) -> Result<Vec<IndicatorChange>> {
        self.read(|c| {
            let mut out: Vec<IndicatorChange> = c
                .prepare_cached(
                    "SELECT at, op, detail, actor FROM changes
                     WHERE indicator_id = ?1 ORDER BY seq DESC LIMIT ?2",
                )?
                .query_map(params![id, limit], |r| {
                    Ok(IndicatorChange {
                        at: from_ts(r.get(0)?),
                        change: r.get(1)?,
                        detail: r.get(2)?,
                        actor: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            // A feed import changes the list in bulk (one journal entry a
            // chunk): each source's first sighting stands for it.
            let listed = c
                .prepare_cached(
                    "SELECT s.first_seen, src.name FROM indicator_sources s
                     JOIN sources src ON src.id = s.source_id WHERE s.indicator_id = ?1",
                )?
                .query_map([id], |r| {
                    let source: String = r.get(1)?;
                    Ok(IndicatorChange {
                        at: from_ts(r.get(0)?),
                        change: "listed".into(),
                        actor: Some(format!("source {source}")),
                        detail: Some(source),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // Not twice: an operator's add already names its source.
            let listed: Vec<IndicatorChange> = listed
                .into_iter()
                .filter(|l| {
                    !out.iter()
                        .any(|j| j.at == l.at && matches!(j.change.as_str(), "add" | "update"))
                })
                .collect();
            out.extend(listed);
            // Newest first; at one time, the journal's order kept.
            out.sort_by_key(|c| std::cmp::Reverse(c.at));
            out.truncate(limit as usize);
            Ok(out)
        })
    }

    fn add_evidence(&self, id: IndicatorId, e: &NewEvidence, now: DateTime<Utc>) -> Result<i64> {
        if e.kind.trim().is_empty() || e.uri.trim().is_empty() {
            return Err(StoreError::Invalid(
                "evidence needs a kind and a uri".into(),
            ));
        }
        self.write(|c| {
            let exists: bool = c.query_row("SELECT count(*) FROM indicators WHERE id = ?1", [id], |r| {
                r.get::<_, i64>(0).map(|n| n > 0)
            })?;
            if !exists {
                return Err(StoreError::NotFound);
            }
            c.execute(
                "INSERT INTO evidence (indicator_id, kind, uri, sha256, note, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, e.kind, e.uri, e.sha256, e.note, ts(now)],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn counts_by_status(&self) -> Result<Vec<(Status, u64)>> {
        let map =
            self.read(|c| count_map(c, "SELECT status, count(*) FROM indicators GROUP BY status"))?;
        Ok(Status::ALL
            .iter()
            .map(|s| (*s, map.get(s.as_str()).copied().unwrap_or(0)))
            .collect())
    }

    fn allowlist(&self) -> Result<Vec<StoredAllowEntry>> {
        self.read(load_allowlist)
    }

    fn add_allow(&self, entry: &AllowEntry, now: DateTime<Utc>) -> Result<StoredAllowEntry> {
        if entry.reason.trim().is_empty() {
            return Err(StoreError::Invalid(
                "an allowlist entry needs a reason".into(),
            ));
        }
        let id = self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO allowlist (kind, name, reason, origin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, name, origin) DO UPDATE SET reason = excluded.reason",
                params![entry.kind.as_str(), entry.name, entry.reason, entry.origin, ts(now)],
            )?;
            let id: i64 = tx.query_row(
                "SELECT id FROM allowlist WHERE kind = ?1 AND name = ?2 AND origin = ?3",
                params![entry.kind.as_str(), entry.name, entry.origin],
                |r| r.get(0),
            )?;
            journal(&tx, ts(now), None, "allowlist-add", Some(&entry.name), &entry.origin)?;
            tx.commit()?;
            Ok(id)
        })?;
        self.reapply_allowlist(now)?;
        self.allowlist()?
            .into_iter()
            .find(|e| e.id == id)
            .ok_or(StoreError::NotFound)
    }

    fn remove_allow(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let removed = self.write(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM allowlist WHERE id = ?1", [id])?;
            if n > 0 {
                journal(
                    &tx,
                    ts(now),
                    None,
                    "allowlist-remove",
                    Some(&id.to_string()),
                    OPERATOR,
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })?;
        if removed {
            self.reapply_allowlist(now)?;
        }
        Ok(removed)
    }

    fn replace_allow_origin(
        &self,
        origin: &str,
        entries: &[AllowEntry],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let changed = self.write(|c| {
            let tx = c.transaction()?;
            let before: Vec<(String, String, String)> = {
                let mut stmt = tx.prepare("SELECT kind, name, reason FROM allowlist WHERE origin = ?1 ORDER BY kind, name")?;
                stmt.query_map([origin], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut after: Vec<(String, String, String)> = entries
                .iter()
                .map(|e| (e.kind.as_str().to_string(), e.name.clone(), e.reason.clone()))
                .collect();
            after.sort();
            after.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
            if before == after {
                return Ok(false);
            }
            tx.execute("DELETE FROM allowlist WHERE origin = ?1", [origin])?;
            {
                let mut ins = tx.prepare(
                    "INSERT INTO allowlist (kind, name, reason, origin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (kind, name, origin) DO NOTHING",
                )?;
                for (kind, name, reason) in &after {
                    ins.execute(params![kind, name, reason, origin, ts(now)])?;
                }
            }
            journal(&tx, ts(now), None, "allowlist-replace", Some(origin), origin)?;
            tx.commit()?;
            Ok(true)
        })?;
        if changed {
            self.reapply_allowlist(now)?;
        }
        Ok(())
    }

    fn reapply_allowlist(&self, now: DateTime<Utc>) -> Result<u64> {
        let now_s = ts(now);
        self.write(|c| {
            let tx = c.transaction()?;
            let allowlist = Allowlist::new(load_allowlist(&tx)?.into_iter().map(|e| e.entry));
            let mut changes: Vec<(i64, Status, Option<String>)> = Vec::new();
            {
                let mut stmt = tx.prepare(
                    "SELECT id, kind, value, host, status, status_reason, expires_at FROM indicators
                     WHERE status IN ('active', 'expired', 'allowlisted')",
                )?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let kind: Kind = parse_enum(&r.get::<_, String>(1)?)?;
                    let value: String = r.get(2)?;
                    let host: Option<String> = r.get(3)?;
                    let status: Status = parse_enum(&r.get::<_, String>(4)?)?;
                    let reason: Option<String> = r.get(5)?;
                    let expires: Option<i64> = r.get(6)?;
                    let want = match allow_reason(&allowlist, kind, &value, host.as_deref()) {
                        Some(why) => (Status::Allowlisted, Some(why)),
                        None if status == Status::Allowlisted => {
                            if expires.is_some_and(|e| e <= now_s) {
                                (Status::Expired, None)
                            } else {
                                (Status::Active, None)
                            }
                        }
                        None => (status, reason.clone()),
                    };
                    if want.0 != status || want.1 != reason {
                        changes.push((r.get(0)?, want.0, want.1));
                    }
                }
            }
            for (id, status, reason) in &changes {
                tx.prepare_cached("UPDATE indicators SET status = ?2, status_reason = ?3, updated_at = ?4 WHERE id = ?1")?
                    .execute(params![id, status.as_str(), reason, now_s])?;
                journal(&tx, now_s, Some(*id), status.as_str(), reason.as_deref(), ALLOWLIST)?;
            }
            tx.commit()?;
            Ok(changes.len() as u64)
        })
    }

    fn host_marks(&self) -> Result<Vec<HostMark>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT host, reason, origin, created_at FROM host_marks ORDER BY host",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(HostMark {
                    host: r.get(0)?,
                    reason: r.get(1)?,
                    origin: r.get(2)?,
                    created_at: from_ts(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn set_host_mark(&self, mark: &HostMark) -> Result<()> {
        let host = kanki_indicators::normalize::normalize_domain(&mark.host)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if mark.reason.trim().is_empty() {
            return Err(StoreError::Invalid("a host mark needs a reason".into()));
        }
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO host_marks (host, mark, reason, origin, created_at) VALUES (?1, 'compromised', ?2, ?3, ?4)
                 ON CONFLICT (host) DO UPDATE SET reason = excluded.reason, origin = excluded.origin",
                params![host, mark.reason, mark.origin, ts(mark.created_at)],
            )?;
            journal(&tx, ts(mark.created_at), None, "host-mark", Some(&host), &mark.origin)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn remove_host_mark(&self, host: &str, now: DateTime<Utc>) -> Result<bool> {
        self.write(|c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM host_marks WHERE host = ?1", [host])?;
            if n > 0 {
                journal(&tx, ts(now), None, "host-unmark", Some(host), OPERATOR)?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn expire(&self, now: DateTime<Utc>) -> Result<u64> {
        let now_s = ts(now);
        self.write(|c| {
            let tx = c.transaction()?;
            let ids: Vec<i64> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id FROM indicators WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= ?1",
                )?;
                stmt.query_map([now_s], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                tx.prepare_cached(
                    "UPDATE indicators SET status = 'expired', status_reason = 'no source has seen it within its time to live', updated_at = ?2 WHERE id = ?1",
                )?
                .execute(params![id, now_s])?;
                journal(&tx, now_s, Some(*id), "expire", None, EXPIRY)?;
            }
            tx.commit()?;
            Ok(ids.len() as u64)
        })
    }

    fn for_each_dns_name(&self, f: &mut dyn FnMut(&str, IndicatorId)) -> Result<()> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT i.host, i.id FROM indicators i
                 WHERE i.status = 'active' AND i.host IS NOT NULL AND (
                    i.kind = 'domain' OR (
                        i.kind = 'url'
                        AND NOT EXISTS (SELECT 1 FROM host_marks m WHERE m.host = i.host)
                        AND EXISTS (SELECT 1 FROM indicator_sources s JOIN sources src ON src.id = s.source_id
                                    WHERE s.indicator_id = i.id AND src.list_url_hosts = 1)))",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let host = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                f(host, r.get(1)?);
            }
            Ok(())
        })
    }

    fn for_each_ip(&self, f: &mut dyn FnMut(&str, IndicatorId)) -> Result<()> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT value, id FROM indicators WHERE status = 'active' AND kind = 'ip'",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let v = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                f(v, r.get(1)?);
            }
            Ok(())
        })
    }

    fn for_each_selected(&self, sel: &Selection, f: &mut dyn FnMut(IndicatorId)) -> Result<()> {
        let mut clauses = vec!["i.status = 'active'".to_string()];
        let mut args: Vec<Value> = Vec::new();
        let placeholders = |values: Vec<String>, args: &mut Vec<Value>| {
            let start = args.len() + 1;
            let n = values.len();
            args.extend(values.into_iter().map(Value::from));
            (start..start + n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !sel.categories.is_empty() {
            let values = sel
                .categories
                .iter()
                .map(|c| c.as_str().to_string())
                .collect();
            clauses.push(format!(
                "i.category IN ({})",
                placeholders(values, &mut args)
            ));
        }
        if !sel.tlps.is_empty() {
            let values = sel.tlps.iter().map(|t| t.as_str().to_string()).collect();
            clauses.push(format!("i.tlp IN ({})", placeholders(values, &mut args)));
        }
        if !sel.sources.is_empty() {
            let values = sel.sources.clone();
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM indicator_sources s JOIN sources src ON src.id = s.source_id
                         WHERE s.indicator_id = i.id AND src.name IN ({}))",
                placeholders(values, &mut args)
            ));
        }
        let sql = format!(
            "SELECT i.id FROM indicators i WHERE {}",
            clauses.join(" AND ")
        );
        self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            while let Some(r) = rows.next()? {
                f(r.get(0)?);
            }
            Ok(())
        })
    }

    fn for_each_indicator(&self, q: &ListQuery, f: &mut dyn FnMut(Indicator)) -> Result<()> {
        let (filter, args) = list_filter(q, true);
        self.read(|c| {
            let cols = INDICATOR_COLUMNS
                .split(", ")
                .map(|c| format!("i.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut stmt = c.prepare(&format!("SELECT {cols} FROM indicators i {filter} ORDER BY i.id"))?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            // Sources of all indicators in id order, merged with the indicators.
            let mut src_stmt = c.prepare(&format!(
                "SELECT {SOURCE_COLUMNS} FROM indicator_sources s JOIN sources src ON src.id = s.source_id
                 ORDER BY s.indicator_id"
            ))?;
            let mut sources = src_stmt.query_map([], source_from_row)?.peekable();
            while let Some(r) = rows.next()? {
                let mut ind = indicator_from_row(r)?;
                while let Some(Ok((iid, _))) = sources.peek() {
                    if *iid > ind.id {
                        break;
                    }
                    let (iid, s) = sources.next().expect("peeked")?;
                    if iid == ind.id {
                        ind.sources.push(s);
                    }
                }
                if let Some(Err(_)) = sources.peek() {
                    sources.next().expect("peeked")?;
                }
                f(ind);
            }
            Ok(())
        })
    }
}

const IMPORT_COLUMNS: &str = "id, source, format, origin, started_at, finished_at, status, rows_read, added, updated, unchanged, skipped";

fn import_from_row(r: &Row) -> rusqlite::Result<ImportRecord> {
    Ok(ImportRecord {
        id: r.get(0)?,
        source: r.get(1)?,
        format: r.get(2)?,
        origin: r.get(3)?,
        started_at: from_ts(r.get(4)?),
        finished_at: r.get::<_, Option<i64>>(5)?.map(from_ts),
        status: r.get(6)?,
        rows_read: r.get::<_, i64>(7)? as u64,
        added: r.get::<_, i64>(8)? as u64,
        updated: r.get::<_, i64>(9)? as u64,
        unchanged: r.get::<_, i64>(10)? as u64,
        skipped: r.get::<_, i64>(11)? as u64,
    })
}

/// The most matches a list query counts (see `Page::total_at_least`).
pub const TOTAL_COUNTED_MOST: u64 = 10_000;
