//! The SQLite backend: one database file in WAL mode.
//!
//! One writer connection (SQLite allows one writer at a time anyway) and a
//! few reader connections, which WAL lets read while the writer writes.

#[cfg(feature = "mimalloc")]
mod alloc;
mod crawl;
mod directory;
mod event_keys;
mod indicators;
mod migrate;
mod migrate_events;
mod open_sessions;
mod operators;
mod removal;
mod warning;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::{Result, SqliteOptions, StoreError};

const READERS: usize = 4;

pub(crate) struct SqliteBackend {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Locked only while the writer is.
    open_sessions: Mutex<open_sessions::OpenSessions>,
    /// Locked only while the writer is.
    stored_keys: Mutex<event_keys::StoredKeys>,
    /// Moved by every write of cases: an ingest holding open cases in
    /// memory lets them go when another writer moved it.
    case_writes: AtomicU64,
    checkpointer: Checkpointer,
    /// Each connection's page cache, restored after a scan that used a
    /// small one of its own.
    page_cache_kib: u32,
}

/// Pages of WAL past which the writer checkpoints itself (64 MiB). During
/// an ingest the [`Checkpointer`] keeps the WAL below that.
const WRITER_CHECKPOINT_PAGES: i64 = 16_384;

/// Copies the WAL back into the database on a thread and connection of its
/// own (a passive checkpoint, which neither waits for nor blocks readers
/// and the writer), when asked: an ingest asks after each of its commits,
/// so that its next commit does not stop to do it (checkpointing 64 MiB of
/// WAL with its fsyncs took the writer about a second, and an ingest
/// commits that much every few seconds). Other writers (RADIUS
/// accounting's many small commits) leave it to the writer's own
/// checkpoint, which a timer here made slower.
pub(crate) struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path, options: &SqliteOptions) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        configure(&conn, options)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                loop {
                    std::thread::park();
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "background checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint (one runs soon; asks while it runs make one
    /// more).
    pub(crate) fn request(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            other => StoreError::Backend(other.to_string()),
        }
    }
}

fn configure(conn: &Connection, options: &SqliteOptions) -> Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(
        None,
        "synchronous",
        if options.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        },
    )?;
    configure_cache(conn, options.page_cache_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// The page cache of one connection (a negative `cache_size` is in KiB).
/// A large one lets a million-row import keep its indexes in memory; a
/// small one bounds the memory of a one-shot import or ingest.
pub(super) fn configure_cache(conn: &Connection, kib: u32) -> Result<()> {
    conn.pragma_update(None, "cache_size", -i64::from(kib))?;
    Ok(())
}

impl SqliteBackend {
    pub(crate) fn open(path: &Path, options: &SqliteOptions) -> Result<Self> {
        #[cfg(feature = "mimalloc")]
        alloc::use_mimalloc();
        private_file(path)?;
        let mut writer = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        // Every write transaction takes the write lock at BEGIN. A deferred
        // one that reads first and then writes fails at once with "database
        // is locked" when another process wrote meanwhile (SQLite cannot
        // wait there without a deadlock); an immediate one waits its turn
        // under busy_timeout. (Found with `kanki garden enter` while
        // `kanki serve` flushed warning-page hits.)
        writer.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        let mode: String = writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{} cannot use WAL mode (got {mode})",
                path.display()
            )));
        }
        configure(&writer, options)?;
        // Past WRITER_CHECKPOINT_PAGES of WAL, the writer copies it back
        // itself; an ingest has the checkpointer do it.
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        migrate::apply(&writer)?;
        mark_interrupted_imports(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&r, options)?;
            readers.push(Mutex::new(r));
        }
        let checkpointer = Checkpointer::start(path, options)?;
        Ok(SqliteBackend {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            open_sessions: Mutex::new(open_sessions::OpenSessions::new(options.open_sessions_kept)),
            stored_keys: Mutex::new(event_keys::StoredKeys::within(options.held_keys_bytes)),
            case_writes: AtomicU64::new(0),
            checkpointer,
            page_cache_kib: options.page_cache_kib,
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(conn) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// Who runs an import: this host and process.
pub(crate) fn import_owner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A run still marked running whose process on this host is gone was cut
/// off by a crash or a kill. Runs of live processes (a `kanki serve` and a
/// `kanki import` side by side) are left alone.
fn mark_interrupted_imports(conn: &Connection) -> Result<()> {
    let running: Vec<(i64, String)> = {
        let mut stmt = conn.prepare("SELECT id, owner FROM imports WHERE status = 'running'")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let host = hostname();
    for (id, owner) in running {
        let gone = match owner.rsplit_once(':') {
            Some((h, pid)) if h == host => pid.parse::<u32>().is_ok_and(|p| {
                p == std::process::id() || !Path::new(&format!("/proc/{p}")).exists()
            }),
            _ => false,
        };
        if gone {
            conn.execute(
                "UPDATE imports SET status = 'interrupted' WHERE id = ?1",
                [id],
            )?;
            tracing::warn!(
                import = id,
                "an import was interrupted (the process running it is gone)"
            );
        }
    }
    Ok(())
}

pub(crate) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

pub(crate) fn from_ts(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap_or_default()
}

/// Appends to the change journal, which is what moves the generation and
/// is each indicator's history: `actor` made the change.
pub(crate) fn journal(
    conn: &Connection,
    at: i64,
    indicator: Option<i64>,
    op: &str,
    detail: Option<&str>,
    actor: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO changes (at, indicator_id, op, detail, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![at, indicator, op, detail, actor])?;
    Ok(())
}

pub(crate) fn source_id(conn: &Connection, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM sources WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// Counts by key, for small group-by results.
pub(crate) fn count_map(conn: &Connection, sql: &str) -> Result<HashMap<String, u64>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (k, v) = row?;
        out.insert(k, v);
    }
    Ok(out)
}

/// Creates the database file for its owner alone (0600), or takes back a
/// looser mode: it holds who held which address and the audit log. SQLite
/// gives its `-wal` and `-shm` files the database file's mode.
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io =
        |e: std::io::Error| StoreError::Backend(format!("cannot open {}: {e}", path.display()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mode = f.metadata().map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    Ok(())
}
