//! [`DirectoryBackend`] for SQLite.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;
use kanki_audit::{AuditEntry, AuditRecord, record_hash};
use kanki_directory::{
    Binding, BindingEvent, BindingOrigin, PortRange, SessionEvent, SessionPhase, Subject,
    SubjectKind,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::open_sessions::{OpenRow, SessionKey, Staged};
use super::{SqliteBackend, from_ts, ts};
use crate::directory::*;
use crate::{Result, StoreError};

/// The page cache (negative: KiB) of a whole-log audit read.
const AUDIT_SCAN_CACHE_KIB: i64 = -8192;

fn bump_generation(tx: &Connection) -> Result<()> {
    tx.prepare_cached(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'directory_generation'",
    )?
    .execute([])?;
    Ok(())
}

/// Subscribers or consent changed: both generations move.
fn bump_consent_generation(tx: &Connection) -> Result<()> {
    bump_generation(tx)?;
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('consent_generation', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
    )?
    .execute([])?;
    Ok(())
}

pub(super) fn meta(conn: &Connection, key: &str) -> Result<String> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
}

fn subscriber_from_row(r: &Row) -> rusqlite::Result<Subscriber> {
    Ok(Subscriber {
        id: r.get(0)?,
        email: r.get(1)?,
        postal_address: r.get(2)?,
        language: r.get(3)?,
        plan: r.get(4)?,
        consent: r.get(5)?,
        consent_at: r.get::<_, Option<i64>>(6)?.map(from_ts),
        identifiers: Vec::new(),
        consent_history: Vec::new(),
        created_at: from_ts(r.get(7)?),
        updated_at: from_ts(r.get(8)?),
    })
}

const SUBSCRIBER_COLUMNS: &str =
    "id, email, postal_address, language, plan, consent, consent_at, created_at, updated_at";

fn fill_subscriber(conn: &Connection, s: &mut Subscriber) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, value FROM subscriber_identifiers WHERE subscriber_id = ?1 ORDER BY kind, value",
    )?;
    s.identifiers = stmt
        .query_map([&s.id], |r| {
            let kind: String = r.get(0)?;
            Ok(Subject {
                kind: kind.parse().unwrap_or(SubjectKind::Login),
                value: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT granted, at, channel, actor FROM consent_events WHERE subscriber_id = ?1 ORDER BY id",
    )?;
    s.consent_history = stmt
        .query_map([&s.id], |r| {
            Ok(ConsentEvent {
                granted: r.get(0)?,
                at: from_ts(r.get(1)?),
                channel: r.get(2)?,
                actor: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(())
}

fn record_consent(
    tx: &Connection,
    chain: &mut AuditTail,
    id: &str,
    granted: bool,
    channel: &str,
    actor: &str,
    now: i64,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE subscribers SET consent = ?2, consent_at = ?3, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, granted, now])?;
    tx.prepare_cached(
        "INSERT INTO consent_events (subscriber_id, granted, at, channel, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, granted, now, channel, actor])?;
    // In the audit log's hash chain too, in the same transaction.
    chain.append(
        tx,
        &AuditEntry::consent_change(from_ts(now), actor, id, granted, channel),
    )
}

/// The audit log's head within one transaction: read at the first record
/// appended and carried forward, so that a batch (an import's consent
/// changes, one record each) does not read it back for every record.
struct AuditTail(Option<(i64, String)>);

impl AuditTail {
    fn new() -> AuditTail {
        AuditTail(None)
    }

    fn append(&mut self, tx: &Connection, e: &AuditEntry) -> Result<()> {
        let (seq, prev) = match self.0.take() {
            Some(head) => head,
            None => audit_head(tx)?,
        };
        let hash = insert_audit(tx, e, seq, &prev)?;
        self.0 = Some((seq + 1, hash));
        Ok(())
    }
}

/// The stored form of a binding's row, read back.
fn binding_from_row(r: &Row) -> rusqlite::Result<StoredBinding> {
    let origin: String = r.get(1)?;
    let kind: String = r.get(3)?;
    let prefix: String = r.get(5)?;
    let ports = match (r.get::<_, Option<u16>>(6)?, r.get::<_, Option<u16>>(7)?) {
        (Some(a), Some(b)) => PortRange::new(a, b),
        _ => None,
    };
    Ok(StoredBinding {
        id: r.get(0)?,
        binding: Binding {
            origin: origin.parse().unwrap_or(BindingOrigin::Static),
            key: r.get(2)?,
            subject: Subject {
                kind: kind.parse().unwrap_or(SubjectKind::Login),
                value: r.get(4)?,
            },
            prefix: prefix.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    5,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            ports,
            from: from_ts(r.get(8)?),
            to: r.get::<_, Option<i64>>(9)?.map(from_ts),
            reporter: r.get(10)?,
        },
        detail: r.get(11)?,
    })
}

const BINDING_COLUMNS: &str = "id, origin, key, subject_kind, subject, prefix, port_first, port_last, from_ts, to_ts, reporter, detail";

fn binding_by_key(tx: &Connection, origin: &str, key: &str) -> Result<Option<StoredBinding>> {
    Ok(tx
        .prepare_cached(&format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE origin = ?1 AND key = ?2"
        ))?
        .query_row(params![origin, key], binding_from_row)
        .optional()?)
}

/// The number of `s` in `binding_subjects`, given on first use.
fn subject_number(tx: &Connection, s: &Subject) -> Result<i64> {
    let kind = s.kind.as_str();
    let known = tx
        .prepare_cached("SELECT id FROM binding_subjects WHERE kind = ?1 AND value = ?2")?
        .query_row(params![kind, s.value], |r| r.get(0))
        .optional()?;
    if let Some(n) = known {
        return Ok(n);
    }
    tx.prepare_cached("INSERT INTO binding_subjects (kind, value) VALUES (?1, ?2)")?
        .execute(params![kind, s.value])?;
    Ok(tx.last_insert_rowid())
}

/// A prefix as the `net` column keeps it: the address's bytes (4 or 16),
/// then the prefix length.
fn pack_prefix(p: &IpNet) -> Vec<u8> {
    let mut packed = match p.addr() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    packed.push(p.prefix_len());
    packed
}

fn unpack_prefix(b: &[u8]) -> Option<IpNet> {
    let (len, addr) = b.split_last()?;
    let addr = match addr.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(addr).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(addr).ok()?),
        _ => return None,
    };
    IpNet::new(addr, *len).ok()
}

/// A prefix as the `net_len`, `net_hi`, `net_lo` columns keep it (schema
/// 12): the length (plus 200 for IPv4), and the network address's upper and
/// lower 64 bits, bit for bit as signed integers.
pub(crate) fn net_columns(p: &IpNet) -> (i64, i64, i64) {
    match p.trunc() {
        IpNet::V4(n) => (
            200 + i64::from(n.prefix_len()),
            0,
            i64::from(u32::from(n.network())),
        ),
        IpNet::V6(n) => {
            let a = u128::from(n.network());
            (
                i64::from(n.prefix_len()),
                (a >> 64) as u64 as i64,
                a as u64 as i64,
            )
        }
    }
}

/// Schema 12's second step: every stored binding's prefix as integers, then
/// their index (made after, so that filling the columns does not update it
/// row by row).
pub(super) fn fill_binding_ranges(conn: &Connection) -> Result<()> {
    let rows: Vec<(i64, Option<IpNet>)> = {
        let mut stmt = conn.prepare("SELECT id, coalesce(net, prefix) FROM bindings")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let prefix = match r.get_ref(1)? {
                ValueRef::Blob(b) => unpack_prefix(b),
                ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(parse_prefix),
                _ => None,
            };
            out.push((r.get(0)?, prefix));
        }
        out
    };
    let mut update =
        conn.prepare("UPDATE bindings SET net_len = ?2, net_hi = ?3, net_lo = ?4 WHERE id = ?1")?;
    for (id, prefix) in rows {
        if let Some(p) = prefix {
            let (len, hi, lo) = net_columns(&p);
            update.execute(params![id, len, hi, lo])?;
        }
    }
    conn.execute_batch("CREATE INDEX bindings_net ON bindings(net_len, net_hi, net_lo, from_ts)")?;
    Ok(())
}

/// Inserts a binding whose (origin, key) is new; `None` when one exists.
fn insert_binding(
    tx: &Connection,
    b: &Binding,
    detail: Option<&str>,
    now: i64,
) -> Result<Option<i64>> {
    let subject = subject_number(tx, &b.subject)?;
    let net = net_columns(&b.prefix);
    let n = tx
        .prepare_cached(
        "INSERT INTO bindings (origin, key, subject_kind, subject, prefix, port_first, port_last,
            from_ts, to_ts, reporter, detail, updated_at, subject_id, net, net_len, net_hi, net_lo)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (origin, key) DO NOTHING",
    )?
    .execute(params![
        b.origin.as_str(),
        b.key,
        b.subject.kind.as_str(),
        b.subject.value,
        b.prefix.to_string(),
        b.ports.map(|p| p.first),
        b.ports.map(|p| p.last),
        ts(b.from),
        b.to.map(ts),
        b.reporter,
        detail,
        now,
        subject,
        pack_prefix(&b.prefix),
        net.0,
        net.1,
        net.2,
    ])?;
    Ok((n == 1).then(|| tx.last_insert_rowid()))
}

fn update_binding(tx: &Connection, id: i64, b: &Binding, now: i64) -> Result<()> {
    let subject = subject_number(tx, &b.subject)?;
    tx.prepare_cached(
        "UPDATE bindings SET subject_kind = ?2, subject = ?3, from_ts = ?4, to_ts = ?5,
            port_first = ?6, port_last = ?7, updated_at = ?8, subject_id = ?9 WHERE id = ?1",
    )?
    .execute(params![
        id,
        b.subject.kind.as_str(),
        b.subject.value,
        ts(b.from),
        b.to.map(ts),
        b.ports.map(|p| p.first),
        b.ports.map(|p| p.last),
        now,
        subject,
    ])?;
    Ok(())
}

struct Apply<'t, 'o> {
    tx: &'t Transaction<'t>,
    now: i64,
    counts: BindingCounts,
    changed: Vec<i64>,
    open: Staged<'o>,
}

impl Apply<'_, '_> {
    /// Writes `new` (by its origin and key); `merge` decides the stored
    /// result from the existing row.
    fn put(
        &mut self,
        new: Binding,
        detail: Option<&str>,
        merge: impl FnOnce(&Binding, Binding) -> Binding,
    ) -> Result<()> {
        // Most records of a busy feed are new (a Start, a new lease): try
        // the insert first, and read the stored row only on a conflict.
        if let Some(id) = insert_binding(self.tx, &new, detail, self.now)? {
            self.counts.added += 1;
            self.changed.push(id);
            return Ok(());
        }
        match binding_by_key(self.tx, new.origin.as_str(), &new.key)? {
            None => {
                return Err(StoreError::Backend(format!(
                    "binding {}/{} conflicted but cannot be read back",
                    new.origin, new.key
                )));
            }
            Some(old) => {
                let merged = merge(&old.binding, new);
                if merged == old.binding {
                    self.counts.unchanged += 1;
                } else {
                    update_binding(self.tx, old.id, &merged, self.now)?;
                    self.counts.updated += 1;
                    self.changed.push(old.id);
                }
            }
        }
        Ok(())
    }

    fn session(&mut self, origin: BindingOrigin, e: &SessionEvent) -> Result<()> {
        let started = ts(match (e.phase, e.session_time) {
            (SessionPhase::Start, _) | (_, None) => e.at,
            (_, Some(secs)) => e.at - chrono::Duration::seconds(secs as i64),
        });
        let k = self.open.key(origin, &e.nas, &e.session_id);
        if self.known_session(origin, e, k, started)? {
            return Ok(());
        }
        self.stored_session(origin, e, k, started)
    }

    /// A session whose open rows the writer knows (see `open_sessions`):
    /// when every reported prefix is one of them, from no earlier start,
    /// an Interim-Update or a replayed Start writes nothing but what it
    /// gives up, and a Stop closes the rows by id. Returns false, having
    /// written nothing, when the event needs the stored rows read.
    fn known_session(
        &mut self,
        origin: BindingOrigin,
        e: &SessionEvent,
        k: SessionKey,
        started: i64,
    ) -> Result<bool> {
        let Some(rows) = self.open.get(k) else {
            return Ok(false);
        };
        let mut reported = Vec::with_capacity(e.prefixes.len());
        for p in &e.prefixes {
            match rows.iter().find(|r| r.prefix == *p) {
                Some(r) if started >= r.from => reported.push(*r),
                _ => return Ok(false),
            }
        }
        let given_up: Vec<i64> = rows
            .iter()
            .filter(|r| !e.prefixes.contains(&r.prefix))
            .map(|r| r.id)
            .collect();
        match e.phase {
            SessionPhase::Start => self.counts.unchanged += reported.len() as u64,
            SessionPhase::Interim => {
                self.counts.unchanged += reported.len() as u64;
                if !given_up.is_empty() {
                    self.open.set(k, reported);
                }
            }
            SessionPhase::Stop => {
                for r in &reported {
                    let closed = self
                        .tx
                        .prepare_cached(
                            "UPDATE bindings SET to_ts = ?2, updated_at = ?3
                             WHERE id = ?1 AND to_ts IS NULL",
                        )?
                        .execute(params![r.id, ts(e.at), self.now])?;
                    if closed == 1 {
                        self.counts.updated += 1;
                        self.changed.push(r.id);
                    } else {
                        // Closed or purged behind the writer's back.
                        let detail = serde_json_detail(e);
                        self.upsert_session_row(origin, e, &r.prefix, started, &detail)?;
                    }
                }
                self.open.forget(k);
            }
        }
        if e.phase != SessionPhase::Start {
            for id in given_up {
                self.close_if_open(id, e.at)?;
            }
        }
        Ok(true)
    }

    /// A session event applied by reading the session's stored rows; what
    /// it leaves open is remembered for the session's next record.
    fn stored_session(
        &mut self,
        origin: BindingOrigin,
        e: &SessionEvent,
        k: SessionKey,
        started: i64,
    ) -> Result<()> {
        let detail = serde_json_detail(e);
        let mut inserted = Vec::with_capacity(e.prefixes.len());
        for prefix in &e.prefixes {
            inserted.push(self.upsert_session_row(origin, e, prefix, started, &detail)?);
        }
        let session_key = format!("{}/{}/", e.nas, e.session_id);
        if e.phase == SessionPhase::Start {
            // Known open only if every row is new.
            match inserted
                .iter()
                .zip(&e.prefixes)
                .map(|(id, &prefix)| {
                    id.map(|id| OpenRow {
                        prefix,
                        id,
                        from: started,
                    })
                })
                .collect::<Option<Vec<_>>>()
            {
                Some(rows) => self.open.set(k, rows),
                None => self.open.forget(k),
            }
            return Ok(());
        }
        // A prefix the session no longer reports has been given up; the
        // rows still open after this record are what the writer remembers.
        let upper = format!("{}/{}0", e.nas, e.session_id); // '0' follows '/'
        let mut given_up = Vec::new();
        let mut still_open = Vec::with_capacity(e.prefixes.len());
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, key, from_ts FROM bindings
             WHERE origin = ?1 AND key >= ?2 AND key < ?3 AND to_ts IS NULL",
        )?;
        let mut open = stmt.query(params![origin.as_str(), session_key, upper])?;
        while let Some(r) = open.next()? {
            let id = r.get::<_, i64>(0)?;
            let reported = text(r, 1)?
                .strip_prefix(session_key.as_str())
                .and_then(|p| e.prefixes.iter().find(|q| q.to_string() == p));
            match reported {
                Some(&prefix) => still_open.push(OpenRow {
                    prefix,
                    id,
                    from: r.get(2)?,
                }),
                None => given_up.push(id),
            }
        }
        drop(open);
        drop(stmt);
        for id in given_up {
            self.close(id, e.at)?;
        }
        if e.phase == SessionPhase::Interim && still_open.len() == e.prefixes.len() {
            self.open.set(k, still_open);
        } else {
            self.open.forget(k);
        }
        Ok(())
    }

    /// One row of a session record, by its key: a new session is inserted
    /// (its id returned); a known one keeps its subject and detail, takes
    /// the earlier start, and on a Stop the later end (a replay or an older
    /// Stop changes nothing).
    fn upsert_session_row(
        &mut self,
        origin: BindingOrigin,
        e: &SessionEvent,
        prefix: &IpNet,
        started: i64,
        detail: &str,
    ) -> Result<Option<i64>> {
        let stop = e.phase == SessionPhase::Stop;
        let key = format!("{}/{}/{prefix}", e.nas, e.session_id);
        let subject = subject_number(self.tx, &e.subject)?;
        let net = net_columns(prefix);
        // Insert first (most rows of a busy feed are new sessions), then
        // update a known one. (Not one upsert: telling its insert from its
        // update by the last inserted row id fails when numbering the
        // subject inserted a row of the same id into another table.)
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT INTO bindings (origin, key, subject_kind, subject, prefix, from_ts,
                    to_ts, reporter, detail, updated_at, subject_id, net, net_len, net_hi, net_lo)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT (origin, key) DO NOTHING",
            )?
            .execute(params![
                origin.as_str(),
                key,
                e.subject.kind.as_str(),
                e.subject.value,
                prefix.to_string(),
                started,
                stop.then(|| ts(e.at)),
                e.nas,
                detail,
                self.now,
                subject,
                pack_prefix(prefix),
                net.0,
                net.1,
                net.2,
            ])?;
        if inserted == 1 {
            let id = self.tx.last_insert_rowid();
            self.counts.added += 1;
            if stop {
                // The session's Start never reached the store.
                self.counts.stops_without_start += 1;
            }
            self.changed.push(id);
            return Ok(Some(id));
        }
        let updated: Option<i64> = self
            .tx
            .prepare_cached(
                "UPDATE bindings SET
                    from_ts = min(from_ts, ?3),
                    to_ts = CASE WHEN ?5 THEN max(coalesce(to_ts, ?4), ?4) ELSE to_ts END,
                    updated_at = ?6
                 WHERE origin = ?1 AND key = ?2
                   AND (?3 < from_ts OR (?5 AND (to_ts IS NULL OR to_ts < ?4)))
                 RETURNING id",
            )?
            .query_row(
                params![
                    origin.as_str(),
                    key,
                    started,
                    stop.then(|| ts(e.at)),
                    stop,
                    self.now
                ],
                |r| r.get(0),
            )
            .optional()?;
        match updated {
            None => self.counts.unchanged += 1,
            Some(id) => {
                self.counts.updated += 1;
                self.changed.push(id);
            }
        }
        Ok(None)
    }

    /// Closes a row the writer remembers open, if it still is.
    fn close_if_open(&mut self, id: i64, at: DateTime<Utc>) -> Result<()> {
        let closed = self
            .tx
            .prepare_cached(
                "UPDATE bindings SET to_ts = max(from_ts, ?2), updated_at = ?3
                 WHERE id = ?1 AND to_ts IS NULL",
            )?
            .execute(params![id, ts(at), self.now])?;
        if closed == 1 {
            self.counts.closed += 1;
            self.changed.push(id);
        }
        Ok(())
    }

    fn close(&mut self, id: i64, at: DateTime<Utc>) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE bindings SET to_ts = max(from_ts, ?2), updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, ts(at), self.now])?;
        self.counts.closed += 1;
        self.changed.push(id);
        Ok(())
    }

    fn nas_reset(&mut self, origin: BindingOrigin, nas: &str, at: DateTime<Utc>) -> Result<()> {
        let open: Vec<i64> = self
            .tx
            .prepare_cached(
                "SELECT id FROM bindings WHERE reporter = ?1 AND to_ts IS NULL AND origin = ?2 AND from_ts <= ?3",
            )?
            .query_map(params![nas, origin.as_str(), ts(at)], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in open {
            self.close(id, at)?;
        }
        self.open.forget_all();
        Ok(())
    }
}

fn serde_json_detail(e: &SessionEvent) -> String {
    let mut s = format!("{{\"session_id\":{}", json_string(&e.session_id));
    if let Some(c) = &e.class {
        s.push_str(&format!(",\"class\":{}", json_string(c)));
    }
    if let Some(t) = e.session_time {
        s.push_str(&format!(",\"session_time\":{t}"));
    }
    s.push('}');
    s
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A stored prefix, `address/length`. ipnet's own parser is several times
/// slower (it boxes a closure per attempt), and a start parses millions.
fn parse_prefix(s: &str) -> Option<IpNet> {
    let (addr, len) = s.split_once('/')?;
    IpNet::new(addr.parse::<IpAddr>().ok()?, len.parse().ok()?).ok()
}

/// Larger than any store: the whole file may be mapped.
const SCAN_MMAP_BYTES: i64 = 1 << 40;

fn scan_binding_rows(
    c: &Connection,
    ids: RangeInclusive<i64>,
    f: &mut dyn FnMut(BindingScan),
) -> Result<()> {
    let mut stmt = c.prepare(
        "SELECT id, subject_id, coalesce(net, prefix), port_first, port_last, from_ts, to_ts \
         FROM bindings WHERE id BETWEEN ?1 AND ?2",
    )?;
    let mut rows = stmt.query([ids.start(), ids.end()])?;
    while let Some(r) = rows.next()? {
        if let Some(b) = scan_row(r, 0)? {
            f(b);
        }
    }
    Ok(())
}

/// A binding in its compact form from the columns `id, subject_id,
/// coalesce(net, prefix), port_first, port_last, from_ts, to_ts` starting
/// at column `at`; `None` for a row without a subject number or a readable
/// prefix (written by this code, so never; skipped rather than failing a
/// start).
fn scan_row(r: &Row, at: usize) -> rusqlite::Result<Option<BindingScan>> {
    // Rows written before schema version 7 have their prefix as text only.
    let prefix = match r.get_ref(at + 2)? {
        ValueRef::Blob(b) => unpack_prefix(b),
        ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(parse_prefix),
        _ => None,
    };
    let (Some(subject), Some(prefix)) = (r.get::<_, Option<u32>>(at + 1)?, prefix) else {
        return Ok(None);
    };
    let ports = match (
        r.get::<_, Option<u16>>(at + 3)?,
        r.get::<_, Option<u16>>(at + 4)?,
    ) {
        (Some(a), Some(b)) => PortRange::new(a, b),
        _ => None,
    };
    Ok(Some(BindingScan {
        id: r.get(at)?,
        subject,
        prefix,
        ports,
        from: r.get(at + 5)?,
        to: r.get(at + 6)?,
    }))
}

/// Joins a subject (`s`) to the subscriber whose identifier it is (`i`), or
/// who it is (`p`).
const SUBJECT_OWNER: &str =
    "LEFT JOIN subscriber_identifiers i ON i.kind = s.kind AND i.value = s.value
     LEFT JOIN subscribers p ON s.kind = 'subscriber' AND p.id = s.value";

/// Calls `f` with the subject of a row `s.id, s.kind, s.value, subscriber`.
fn subject_entry(r: &Row, f: &mut dyn FnMut(SubjectEntry<'_>)) -> Result<()> {
    let (Ok(number), Ok(kind)) = (r.get::<_, u32>(0), text(r, 1)?.parse()) else {
        return Ok(());
    };
    f(SubjectEntry {
        number,
        kind,
        value: text(r, 2)?,
        subscriber: r
            .get_ref(3)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)?,
    });
    Ok(())
}

/// The number of the newest change-log entry ever written.
fn change_head(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'binding_changes'), 0)",
        [],
        |r| r.get(0),
    )?)
}

fn text<'r>(r: &'r Row, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)
}

fn audit_from_row(r: &Row) -> rusqlite::Result<AuditRecord> {
    let at: String = r.get(1)?;
    let ground: Option<String> = r.get(4)?;
    Ok(AuditRecord {
        seq: r.get(0)?,
        entry: AuditEntry {
            at: DateTime::parse_from_rfc3339(&at)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            actor: r.get(2)?,
            action: r.get(3)?,
            ground: ground.and_then(|g| g.parse().ok()),
            purpose: r.get(5)?,
            input: r.get(6)?,
            result: r.get(7)?,
        },
        prev_hash: r.get(8)?,
        hash: r.get(9)?,
    })
}

pub(super) fn append_audit(tx: &Connection, e: &AuditEntry) -> Result<AuditRecord> {
    let head = audit_head(tx)?;
    append_audit_after(tx, e, head)
}

/// The next record's sequence number and the hash it chains to.
pub(super) fn audit_head(tx: &Connection) -> Result<(i64, String)> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((s, h)) => (s + 1, h),
        None => {
            // Empty log: continue after the last purged record, if any.
            let seq: i64 = meta(tx, "audit_next_seq")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            (seq, meta(tx, "audit_anchor")?)
        }
    };
    Ok((seq, prev))
}

/// Appends `e` as record `seq`, chained to `prev`.
fn append_audit_after(
    tx: &Connection,
    e: &AuditEntry,
    (seq, prev): (i64, String),
) -> Result<AuditRecord> {
    let hash = insert_audit(tx, e, seq, &prev)?;
    // The time as it is read back (microseconds), as the hash covers it.
    let mut entry = e.clone();
    entry.at = DateTime::parse_from_rfc3339(&entry.at.to_rfc3339_opts(SecondsFormat::Micros, true))
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(entry.at);
    Ok(AuditRecord {
        seq,
        entry,
        prev_hash: prev,
        hash,
    })
}

/// Writes `e` as record `seq` after the record hashed `prev`; returns its
/// hash. The hash covers the time in microseconds, as it is stored.
pub(super) fn insert_audit(
    tx: &Connection,
    e: &AuditEntry,
    seq: i64,
    prev: &str,
) -> Result<String> {
    let at = e.at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let hash = record_hash(seq, e, prev);
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, ground, purpose, input, result, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        seq,
        at,
        e.actor,
        e.action,
        e.ground.map(|g| g.as_str()),
        e.purpose,
        e.input,
        e.result,
        prev,
        hash
    ])?;
    Ok(hash)
}

impl DirectoryBackend for SqliteBackend {
    fn directory_generation(&self) -> Result<u64> {
        self.read(|c| Ok(meta(c, "directory_generation")?.parse().unwrap_or(0)))
    }

    fn consent_generation(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'consent_generation'), 0)",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }

    fn upsert_subscribers(
        &self,
        subscribers: &[SubscriberRecord],
        channel: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<SubscriberCounts> {
        let now = ts(now);
        self.write(|c| {
            let tx = c.transaction()?;
            let mut counts = SubscriberCounts::default();
            let mut chain = AuditTail::new();
            for s in subscribers {
                let old = tx
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = ?1"
                    ))?
                    .query_row([&s.id], subscriber_from_row)
                    .optional()?;
                let mut changed = false;
                match &old {
                    None => {
                        tx.prepare_cached(
                            "INSERT INTO subscribers (id, email, postal_address, language, plan, consent, created_at, updated_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)",
                        )?
                        .execute(params![s.id, s.email, s.postal_address, s.language, s.plan, now])?;
                        counts.added += 1;
                    }
                    Some(o) => {
                        if (&o.email, &o.postal_address, &o.language, &o.plan)
                            != (&s.email, &s.postal_address, &s.language, &s.plan)
                        {
                            tx.prepare_cached(
                                "UPDATE subscribers SET email = ?2, postal_address = ?3, language = ?4, plan = ?5, updated_at = ?6 WHERE id = ?1",
                            )?
                            .execute(params![s.id, s.email, s.postal_address, s.language, s.plan, now])?;
                            changed = true;
                        }
                    }
                }
                let was = old.as_ref().is_some_and(|o| o.consent);
                if let Some(want) = s.consent
                    && want != was
                {
                    record_consent(&tx, &mut chain, &s.id, want, channel, actor, now)?;
                    counts.consent_changes += 1;
                    changed = true;
                }
                let own = Subject::login(&s.id).into_iter();
                for ident in own.chain(s.identifiers.iter().cloned()) {
                    let n = tx
                        .prepare_cached(
                            "INSERT INTO subscriber_identifiers (kind, value, subscriber_id) VALUES (?1, ?2, ?3)
                             ON CONFLICT (kind, value) DO UPDATE SET subscriber_id = excluded.subscriber_id
                             WHERE subscriber_id != excluded.subscriber_id",
                        )?
                        .execute(params![ident.kind.as_str(), ident.value, s.id])?;
                    changed |= n > 0 && old.is_some();
                }
                if old.is_some() {
                    if changed {
                        counts.updated += 1;
                    } else {
                        counts.unchanged += 1;
                    }
                }
            }
            if counts.added + counts.updated > 0 {
                bump_consent_generation(&tx)?;
            }
            tx.commit()?;
            Ok(counts)
        })
    }

    fn get_subscriber(&self, id: &str) -> Result<Option<Subscriber>> {
        self.read(|c| {
            let s = c
                .prepare_cached(&format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = ?1"
                ))?
                .query_row([id], subscriber_from_row)
                .optional()?;
            match s {
                None => Ok(None),
                Some(mut s) => {
                    fill_subscriber(c, &mut s)?;
                    Ok(Some(s))
                }
            }
        })
    }

    fn list_subscribers(&self, after: Option<&str>, limit: u32) -> Result<Vec<Subscriber>> {
        self.read(|c| {
            let mut out: Vec<Subscriber> = c
                .prepare_cached(&format!(
                    "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?
                .query_map(params![after.unwrap_or(""), limit], subscriber_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            for s in &mut out {
                fill_subscriber(c, s)?;
            }
            Ok(out)
        })
    }

    fn set_consent(
        &self,
        id: &str,
        granted: bool,
        channel: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.write(|c| {
            let tx = c.transaction()?;
            let current: Option<bool> = tx
                .query_row("SELECT consent FROM subscribers WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(current) = current else {
                return Err(StoreError::NotFound);
            };
            if current == granted {
                return Ok(false);
            }
            record_consent(
                &tx,
                &mut AuditTail::new(),
                id,
                granted,
                channel,
                actor,
                ts(now),
            )?;
            bump_consent_generation(&tx)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn identifiers(&self, f: &mut dyn FnMut(Subject, &str)) -> Result<()> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT kind, value, subscriber_id FROM subscriber_identifiers
                           UNION ALL SELECT 'subscriber', id, id FROM subscribers",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let kind: String = r.get(0)?;
                let Ok(kind) = kind.parse() else { continue };
                let sub: String = r.get(2)?;
                f(
                    Subject {
                        kind,
                        value: r.get(1)?,
                    },
                    &sub,
                );
            }
            Ok(())
        })
    }

    fn consenting(&self) -> Result<Vec<String>> {
        self.read(|c| {
            Ok(c.prepare("SELECT id FROM subscribers WHERE consent = 1")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn consenting_static_prefixes(&self, now: DateTime<Utc>) -> Result<Vec<IpNet>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "WITH names (kind, value, subscriber_id) AS (
                     SELECT kind, value, subscriber_id FROM subscriber_identifiers
                     UNION ALL SELECT 'subscriber', id, id FROM subscribers)
                 SELECT DISTINCT b.prefix FROM bindings b
                 JOIN names n ON n.kind = b.subject_kind AND n.value = b.subject
                 JOIN subscribers s ON s.id = n.subscriber_id
                 WHERE b.origin = ?1 AND s.consent = 1
                   AND b.from_ts <= ?2 AND (b.to_ts IS NULL OR b.to_ts > ?2)",
            )?;
            let mut rows = stmt.query(params![BindingOrigin::Static.as_str(), ts(now)])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.extend(parse_prefix(text(r, 0)?));
            }
            Ok(out)
        })
    }

    fn apply_bindings(
        &self,
        origin: BindingOrigin,
        events: &[BindingEvent],
        now: DateTime<Utc>,
    ) -> Result<(BindingCounts, ChangedBindings)> {
        self.write(|c| {
            let tx = c.transaction()?;
            let mut open = self.open_sessions.lock().unwrap_or_else(|p| p.into_inner());
            let mut a = Apply {
                tx: &tx,
                now: ts(now),
                counts: BindingCounts::default(),
                changed: Vec::new(),
                open: open.stage(),
            };
            for e in events {
                match e {
                    BindingEvent::Binding(b) => a.put(b.clone(), None, |old, new| Binding {
                        from: old.from.min(new.from),
                        ..new
                    })?,
                    BindingEvent::Session(s) => a.session(origin, s)?,
                    BindingEvent::NasReset { nas, at } => a.nas_reset(origin, nas, *at)?,
                }
            }
            let (counts, mut changed, open) = (a.counts, a.changed, a.open);
            changed.sort_unstable();
            changed.dedup();
            if !changed.is_empty() {
                bump_generation(&tx)?;
                let mut log = tx.prepare_cached(
                    "INSERT INTO binding_changes (binding_id, at) VALUES (?1, ?2)",
                )?;
                for id in &changed {
                    log.execute(params![id, ts(now)])?;
                }
            }
            tx.commit()?;
            open.keep();
            Ok((counts, changed))
        })
    }

    fn scan_bindings(
        &self,
        ids: RangeInclusive<i64>,
        f: &mut dyn FnMut(BindingScan),
    ) -> Result<()> {
        self.read(|c| {
            // Mapped rather than read into SQLite's page cache: a start
            // reads every page of the table once, and copying each costs
            // about a quarter of the scan. For the scan only (an I/O error
            // on a mapped page is a signal, not an error code).
            c.pragma_update(None, "mmap_size", SCAN_MMAP_BYTES)?;
            let scanned = scan_binding_rows(c, ids, f);
            c.pragma_update(None, "mmap_size", 0)?;
            scanned
        })
    }

    fn binding_subjects(&self, f: &mut dyn FnMut(SubjectEntry<'_>)) -> Result<()> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT s.id, s.kind, s.value, coalesce(i.subscriber_id, p.id)
                 FROM binding_subjects s {SUBJECT_OWNER}"
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                subject_entry(r, f)?;
            }
            Ok(())
        })
    }

    fn binding_id_span(&self) -> Result<Option<(i64, i64)>> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT min(id), max(id) FROM bindings", [], |r| {
                    Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
                })?,
            )
        })
    }

    fn binding_change_head(&self) -> Result<i64> {
        self.read(change_head)
    }

    fn binding_changes_since(
        &self,
        after: i64,
        limit: u32,
        f: &mut dyn FnMut(BindingChange),
    ) -> Result<ChangesRead> {
        self.read(|c| {
            // One read transaction: the bounds and the rows agree.
            let tx = c.unchecked_transaction()?;
            let head = change_head(&tx)?;
            if head <= after {
                return Ok(ChangesRead {
                    last: after,
                    ..Default::default()
                });
            }
            let oldest: Option<i64> =
                tx.query_row("SELECT min(seq) FROM binding_changes", [], |r| r.get(0))?;
            if oldest.is_none_or(|o| o > after + 1) {
                return Ok(ChangesRead {
                    last: head,
                    missed: true,
                    more: false,
                });
            }
            let last: i64 = tx.query_row(
                "SELECT coalesce(max(seq), ?1) FROM
                    (SELECT seq FROM binding_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
                params![after, limit],
                |r| r.get(0),
            )?;
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT c.seq, b.id, b.subject_id, coalesce(b.net, b.prefix), b.port_first,
                        b.port_last, b.from_ts, b.to_ts, s.kind, s.value,
                        coalesce(i.subscriber_id, p.id)
                 FROM binding_changes c
                 JOIN bindings b ON b.id = c.binding_id
                 JOIN binding_subjects s ON s.id = b.subject_id
                 {SUBJECT_OWNER}
                 WHERE c.seq > ?1 AND c.seq <= ?2 ORDER BY c.seq"
            ))?;
            let mut rows = stmt.query(params![after, last])?;
            while let Some(r) = rows.next()? {
                let (Some(binding), Ok(kind)) = (scan_row(r, 1)?, text(r, 8)?.parse()) else {
                    continue;
                };
                f(BindingChange {
                    seq: r.get(0)?,
                    binding,
                    kind,
                    value: r.get(9)?,
                    subscriber: r.get(10)?,
                });
            }
            Ok(ChangesRead {
                last,
                missed: false,
                more: last < head,
            })
        })
    }

    fn trim_binding_changes(&self, before: DateTime<Utc>) -> Result<u64> {
        self.write(|c| {
            Ok(c.execute("DELETE FROM binding_changes WHERE at < ?1", [ts(before)])? as u64)
        })
    }

    fn bindings_covering(
        &self,
        addr: IpAddr,
        from: i64,
        to: i64,
        f: &mut dyn FnMut(BindingScan),
    ) -> Result<()> {
        self.read(|c| {
            // The prefix lengths present, each found by one probe of the
            // index (a skip scan), then the prefixes of this address at
            // each length.
            let (lo, hi) = match addr {
                IpAddr::V4(_) => (200, 232),
                IpAddr::V6(_) => (0, 128),
            };
            let lens: Vec<i64> = c
                .prepare_cached(
                    "WITH RECURSIVE l(n) AS (
                        SELECT (SELECT min(net_len) FROM bindings WHERE net_len >= ?1)
                        UNION ALL
                        SELECT (SELECT min(net_len) FROM bindings WHERE net_len > l.n)
                        FROM l WHERE l.n IS NOT NULL AND l.n < ?2)
                     SELECT n FROM l WHERE n IS NOT NULL AND n <= ?2",
                )?
                .query_map(params![lo, hi], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT id, subject_id, coalesce(net, prefix), port_first, port_last, from_ts, to_ts
                 FROM bindings
                 WHERE net_len = ?1 AND net_hi = ?2 AND net_lo = ?3
                   AND from_ts <= ?5 AND (to_ts IS NULL OR to_ts >= ?4)",
            )?;
            for len in lens {
                let bits = if len >= 200 { len - 200 } else { len } as u8;
                let Ok(net) = IpNet::new(addr, bits) else {
                    continue;
                };
                let (l, h, w) = net_columns(&net);
                let mut rows = stmt.query(params![l, h, w, from, to])?;
                while let Some(r) = rows.next()? {
                    if let Some(b) = scan_row(r, 0)? {
                        f(b);
                    }
                }
            }
            Ok(())
        })
    }

    fn subjects_numbered(
        &self,
        numbers: &[u32],
        f: &mut dyn FnMut(SubjectEntry<'_>),
    ) -> Result<()> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT s.id, s.kind, s.value, coalesce(i.subscriber_id, p.id)
                 FROM binding_subjects s {SUBJECT_OWNER} WHERE s.id = ?1"
            ))?;
            for n in numbers {
                let mut rows = stmt.query([n])?;
                while let Some(r) = rows.next()? {
                    subject_entry(r, f)?;
                }
            }
            Ok(())
        })
    }

    fn bindings_by_id(&self, ids: &[i64]) -> Result<Vec<StoredBinding>> {
        self.read(|c| {
            let mut out = Vec::with_capacity(ids.len());
            for &id in ids {
                if let Some(b) = c
                    .prepare_cached(&format!(
                        "SELECT {BINDING_COLUMNS} FROM bindings WHERE id = ?1"
                    ))?
                    .query_row([id], binding_from_row)
                    .optional()?
                {
                    out.push(b);
                }
            }
            Ok(out)
        })
    }

    fn subscriber_bindings(
        &self,
        subscriber: &str,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<StoredBinding>> {
        let columns = BINDING_COLUMNS
            .split(", ")
            .map(|c| format!("b.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // The subscriber's identifiers and their id itself (a static
        // binding names it); past the last page's (start, id), in the same
        // descending order.
        let (from, id) = after.unwrap_or((i64::MAX, i64::MAX));
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "WITH ids(kind, value) AS (\
                   SELECT kind, value FROM subscriber_identifiers WHERE subscriber_id = ?1 \
                   UNION ALL SELECT 'subscriber', ?1) \
                 SELECT {columns} FROM ids i \
                 JOIN binding_subjects s ON s.kind = i.kind AND s.value = i.value \
                 JOIN bindings b ON b.subject_id = s.id \
                 WHERE (b.from_ts < ?2 OR (b.from_ts = ?2 AND b.id < ?3)) \
                 ORDER BY b.from_ts DESC, b.id DESC LIMIT ?4"
            ))?
            .query_map(params![subscriber, from, id, limit], binding_from_row)?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn audit_append(&self, entry: &AuditEntry) -> Result<AuditRecord> {
        self.write(|c| {
            let tx = c.transaction()?;
            let r = append_audit(&tx, entry)?;
            tx.commit()?;
            Ok(r)
        })
    }

    fn audit_append_many(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>> {
        self.write(|c| {
            let tx = c.transaction()?;
            // The chain's head read once; each record chains to the last.
            let mut head = audit_head(&tx)?;
            let mut records = Vec::with_capacity(entries.len());
            for e in entries {
                let r = append_audit_after(&tx, e, head)?;
                head = (r.seq + 1, r.hash.clone());
                records.push(r);
            }
            tx.commit()?;
            Ok(records)
        })
    }

    fn audit_records(&self, q: &AuditFilter, f: &mut dyn FnMut(AuditRecord)) -> Result<()> {
        self.read(|c| {
            let mut clauses = Vec::new();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
            if let Some(t) = q.since {
                clauses.push("at >= ?");
                args.push(fmt(t).into());
            }
            if let Some(t) = q.until {
                clauses.push("at < ?");
                args.push(fmt(t).into());
            }
            if let Some(a) = &q.actor {
                clauses.push("actor = ?");
                args.push(a.clone().into());
            }
            if let Some(a) = &q.action {
                clauses.push("action = ?");
                args.push(a.clone().into());
            }
            if let Some(g) = q.ground {
                clauses.push("ground = ?");
                args.push(g.as_str().to_string().into());
            }
            if let Some(m) = &q.mentions {
                clauses.push("(instr(input, ?) > 0 OR instr(result, ?) > 0)");
                args.push(m.clone().into());
                args.push(m.clone().into());
            }
            // A purpose text of three characters or more is found through
            // the trigram index (as a phrase: every character literal),
            // which then leads the walk from the newest record; a shorter
            // one by reading the records.
            let by_purpose = q.purpose.as_ref().filter(|p| p.chars().count() >= 3);
            match (&q.purpose, by_purpose) {
                (_, Some(p)) => {
                    clauses.push("audit_purposes MATCH ?");
                    args.push(format!("\"{}\"", p.replace('"', "\"\"")).into());
                }
                (Some(p), None) => {
                    clauses.push("instr(audit_log.purpose, ?) > 0");
                    args.push(p.clone().into());
                }
                (None, None) => {}
            }
            if let Some(seq) = q.before {
                clauses.push(if by_purpose.is_some() {
                    "audit_purposes.rowid < ?"
                } else {
                    "seq < ?"
                });
                args.push(seq.into());
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let (from, order) = if by_purpose.is_some() {
                (
                    "audit_purposes JOIN audit_log ON audit_log.seq = audit_purposes.rowid",
                    "audit_purposes.rowid",
                )
            } else {
                ("audit_log", "seq")
            };
            let columns = "seq, at, actor, action, ground, audit_log.purpose, input, result, prev_hash, hash";
            let sql = match q.limit {
                Some(n) => format!(
                    "SELECT * FROM (SELECT {columns} FROM {from} {filter} ORDER BY {order} DESC LIMIT {n}) ORDER BY seq"
                ),
                None => format!("SELECT {columns} FROM {from} {filter} ORDER BY {order}"),
            };
            // A whole-log read (`audit verify`) visits every page once: in
            // a small page cache of its own, so its memory stays flat
            // whatever the log's size, rather than filling the reader's.
            let whole = q.limit.is_none();
            if whole {
                c.pragma_update(None, "cache_size", AUDIT_SCAN_CACHE_KIB)?;
            }
            let read = (|| -> Result<()> {
                let mut stmt = c.prepare(&sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
                while let Some(r) = rows.next()? {
                    f(audit_from_row(r)?);
                }
                Ok(())
            })();
            if whole {
                super::configure_cache(c, self.page_cache_kib)?;
            }
            read
        })
    }

    fn audit_anchor(&self) -> Result<String> {
        self.read(|c| meta(c, "audit_anchor"))
    }

    fn purge(
        &self,
        bindings_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
        mut record: AuditEntry,
    ) -> Result<PurgeCounts> {
        self.write(|c| {
            let tx = c.transaction()?;
            let bindings = tx.execute(
                "DELETE FROM bindings WHERE to_ts IS NOT NULL AND to_ts < ?1",
                [ts(bindings_before)],
            )? as u64;
            if bindings > 0 {
                // A name no binding mentions any more goes with them.
                tx.execute(
                    "DELETE FROM binding_subjects WHERE id NOT IN
                        (SELECT subject_id FROM bindings WHERE subject_id IS NOT NULL)",
                    [],
                )?;
            }
            let cutoff = audit_before.to_rfc3339_opts(SecondsFormat::Micros, true);
            // The newest record to go: its hash becomes the anchor.
            let last_gone: Option<(i64, String)> = tx
                .query_row(
                    "SELECT seq, hash FROM audit_log WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
                    [&cutoff],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let mut audit_records = 0;
            if let Some((seq, hash)) = last_gone {
                let next_seq: i64 =
                    tx.query_row("SELECT coalesce(max(seq), 0) + 1 FROM audit_log", [], |r| {
                        r.get(0)
                    })?;
                audit_records = tx.execute("DELETE FROM audit_log WHERE seq <= ?1", [seq])? as u64;
                tx.execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'audit_anchor'",
                    [&hash],
                )?;

                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('audit_next_seq', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [next_seq.to_string()],
                )?;
            }
            // Where the chain starts now: the first remaining record's
            // predecessor (with nothing left, the head the purge record
            // will chain to).
            let start: Option<(i64, String)> = tx
                .query_row(
                    "SELECT seq, prev_hash FROM audit_log ORDER BY seq LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (next, prev) = match start {
                Some(s) => s,
                None => audit_head(&tx)?,
            };
            let anchor = (next > 1 || prev != kanki_audit::GENESIS).then(|| kanki_audit::Anchor {
                seq: next - 1,
                hash: prev,
            });
            let counts = PurgeCounts {
                bindings,
                audit_records,
                anchor,
            };
            record.result = serde_json::to_string(&counts).unwrap_or_default();
            append_audit(&tx, &record)?;
            if bindings > 0 {
                bump_generation(&tx)?;
            }
            tx.commit()?;
            Ok(counts)
        })
    }
}
