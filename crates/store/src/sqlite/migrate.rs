//! Versioned schema migrations, applied in order when the store opens.

use rusqlite::{Connection, params};

use crate::{Result, StoreError};

/// Every migration, in order. A new schema version is a new entry here and
/// a new file; an applied migration is never edited.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "directory",
        include_str!("../../migrations/sqlite/0002_directory.sql"),
    ),
    (
        3,
        "removal",
        include_str!("../../migrations/sqlite/0003_removal.sql"),
    ),
    (
        5,
        "warning",
        include_str!("../../migrations/sqlite/0005_warning.sql"),
    ),
];

pub(crate) fn apply(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        // Under the write lock, and checked again there: two processes
        // opening a new store at once would otherwise both apply it.
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let applied: i64 = tx.query_row(
            "SELECT count(*) FROM schema_migrations WHERE version = ?1",
            [version],
            |r| r.get(0),
        )?;
        if applied > 0 {
            continue;
        }
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Backend(format!("migration {version} ({name}) failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now'))",
            params![version, name],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied store migration");
    }
    Ok(())
}
