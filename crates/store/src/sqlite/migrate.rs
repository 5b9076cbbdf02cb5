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
        4,
        "crawler",
        include_str!("../../migrations/sqlite/0004_crawler.sql"),
    ),
    (
        5,
        "warning",
        include_str!("../../migrations/sqlite/0005_warning.sql"),
    ),
    (
        6,
        "garden_reference",
        include_str!("../../migrations/sqlite/0006_garden_reference.sql"),
    ),
    (
        7,
        "binding_subjects",
        include_str!("../../migrations/sqlite/0007_binding_subjects.sql"),
    ),
    (
        8,
        "event_keys_by_hour",
        include_str!("../../migrations/sqlite/0008_event_keys_by_hour.sql"),
    ),
    (
        9,
        "event_segments",
        include_str!("../../migrations/sqlite/0009_event_segments.sql"),
    ),
    (
        10,
        "event_key_blocks",
        include_str!("../../migrations/sqlite/0010_event_key_blocks.sql"),
    ),
    (
        11,
        "event_keys_blake3",
        include_str!("../../migrations/sqlite/0011_event_keys_blake3.sql"),
    ),
    (
        12,
        "binding_ranges",
        include_str!("../../migrations/sqlite/0012_binding_ranges.sql"),
    ),
    (
        13,
        "operators",
        include_str!("../../migrations/sqlite/0013_operators.sql"),
    ),
    (
        14,
        "operators_totp_keys",
        include_str!("../../migrations/sqlite/0014_operators_totp_keys.sql"),
    ),
    (
        15,
        "console_language",
        include_str!("../../migrations/sqlite/0015_console_language.sql"),
    ),
    (
        16,
        "bindings_by_subscriber",
        include_str!("../../migrations/sqlite/0016_bindings_by_subscriber.sql"),
    ),
    (
        17,
        "dashboard_times",
        include_str!("../../migrations/sqlite/0017_dashboard_times.sql"),
    ),
    (
        18,
        "counter_counts",
        include_str!("../../migrations/sqlite/0018_counter_counts.sql"),
    ),
    (
        19,
        "dashboard_counts",
        include_str!("../../migrations/sqlite/0019_dashboard_counts.sql"),
    ),
    (
        20,
        "cases_by_subscriber",
        include_str!("../../migrations/sqlite/0020_cases_by_subscriber.sql"),
    ),
    (
        21,
        "case_feeds",
        include_str!("../../migrations/sqlite/0021_case_feeds.sql"),
    ),
    (
        22,
        "change_actors",
        include_str!("../../migrations/sqlite/0022_change_actors.sql"),
    ),
    (
        23,
        "cases_by_last_seen",
        include_str!("../../migrations/sqlite/0023_cases_by_last_seen.sql"),
    ),
    (
        24,
        "indicators_by_tlp_and_date",
        include_str!("../../migrations/sqlite/0024_indicators_by_tlp_and_date.sql"),
    ),
    (
        25,
        "audit_purposes",
        include_str!("../../migrations/sqlite/0025_audit_purposes.sql"),
    ),
    (
        26,
        "case_writes",
        include_str!("../../migrations/sqlite/0026_case_writes.sql"),
    ),
];

/// Migrations with a second step in Rust, run in the same transaction
/// after their SQL: what SQL alone cannot do (re-encode stored data).
const STEPS: &[(i64, Step)] = &[
    (9, super::migrate_events::events_into_segments),
    (10, super::event_keys::keys_into_blocks),
    (11, super::migrate_events::rekey_events),
    (12, super::directory::fill_binding_ranges),
    (21, super::removal::fill_case_feeds),
];

type Step = fn(&Connection) -> Result<()>;

pub(crate) fn apply(conn: &Connection) -> Result<()> {
    apply_list(conn, MIGRATIONS)
}

/// Applies every migration of `list` not yet applied, in list order. Not
/// only those above the highest applied: parts are developed side by side,
/// so a store may hold 5 when 4 lands.
fn apply_list(conn: &Connection, list: &[(i64, &str, &str)]) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        )",
    )?;
    let applied: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let current = applied.iter().copied().max().unwrap_or(0);
    let known = list.iter().map(|m| m.0).max().unwrap_or(0);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (version, name, sql) in list.iter().filter(|m| !applied.contains(&m.0)) {
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
        for (_, step) in STEPS.iter().filter(|s| s.0 == *version) {
            step(&tx).map_err(|e| {
                StoreError::Backend(format!("migration {version} ({name}) failed: {e}"))
            })?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now'))",
            params![version, name],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "applied store migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 't%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    #[test]
    fn a_migration_numbered_below_the_highest_applied_is_still_applied() {
        let conn = Connection::open_in_memory().unwrap();
        let (one, four, five) = (
            (1, "one", "CREATE TABLE t1 (x)"),
            (4, "four", "CREATE TABLE t4 (x)"),
            (5, "five", "CREATE TABLE t5 (x)"),
        );
        apply_list(&conn, &[one, five]).unwrap();
        assert_eq!(tables(&conn), ["t1", "t5"]);
        apply_list(&conn, &[one, four, five]).unwrap();
        assert_eq!(tables(&conn), ["t1", "t4", "t5"]);
        // Applied once: a second open changes nothing.
        apply_list(&conn, &[one, four, five]).unwrap();
        assert!(matches!(
            apply_list(&conn, &[one]),
            Err(StoreError::SchemaTooNew { found: 5, known: 1 })
        ));
    }

    #[test]
    fn event_keys_written_before_version_8_take_the_form_new_events_get() {
        let conn = Connection::open_in_memory().unwrap();
        let before_8: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.0 < 8).collect();
        apply_list(&conn, &before_8).unwrap();
        // The old key: the first 16 bytes of the digest; 2026-11-01 10:20 UTC.
        let old: Vec<u8> = (0..16).map(|i| i * 17).collect(); // a NUL and 0xff too
        let at = 1_793_528_400i64;
        conn.execute_batch("INSERT INTO event_raw (id, records, data) VALUES (1, 1, x'00')")
            .unwrap();
        conn.execute(
            "INSERT INTO events (key, source_ip, time_source, time_observation, taxonomy, class,
                feed_name, feed_provider, raw_block, raw_index, ingest)
             VALUES (?1, '192.0.2.1', ?2, ?2, 'malicious-code', 'infected-system', 'f', 'p', 1, 0, 1)",
            params![old, at],
        )
        .unwrap();
        let to_8: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.0 <= 8).collect();
        apply_list(&conn, &to_8).unwrap();
        let key: Vec<u8> = conn
            .query_row("SELECT key FROM events", [], |r| r.get(0))
            .unwrap();
        let mut expected = ((at / 3600) as u32).to_be_bytes().to_vec();
        expected.extend_from_slice(&old[..12]);
        assert_eq!(key, expected);
    }

    #[test]
    fn events_stored_before_version_9_move_into_segments_with_their_cases() {
        use std::io::Write;
        let conn = Connection::open_in_memory().unwrap();
        let to_8: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.0 <= 8).collect();
        apply_list(&conn, &to_8).unwrap();
        // Two batches as schema 3 stored them; the case has an event in each.
        let block = |records: &[&[u8]]| {
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
            for r in records {
                z.write_all(&(r.len() as u32).to_le_bytes()).unwrap();
                z.write_all(r).unwrap();
            }
            z.finish().unwrap()
        };
        let header = "\"timestamp\",\"ip\",\"port\",\"asn\",\"geo\",\"region\",\"city\"";
        let rows: Vec<String> = (1..=3)
            .map(|i| format!("{header}\n\"2026\",\"192.0.2.{i}\""))
            .collect();
        conn.execute(
            "INSERT INTO event_raw (id, records, data) VALUES (1, 2, ?1)",
            [block(&[rows[0].as_bytes(), rows[1].as_bytes()])],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO event_raw (id, records, data) VALUES (2, 1, ?1)",
            [block(&[rows[2].as_bytes()])],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO cases (id, subscriber, threat, class, severity, state, opened_at, first_seen, last_seen, events, updated_at)
             VALUES (7, 'S1', 'mirai', 'infected-system', 'high', 'new', 1, 1, 1, 2, 1);",
        )
        .unwrap();
        for (i, (blk, idx, case)) in [(1, 0, Some(7)), (1, 1, None), (2, 0, Some(7))]
            .into_iter()
            .enumerate()
        {
            conn.execute(
                "INSERT INTO events (key, source_ip, time_source, time_observation, taxonomy, class,
                    feed_name, feed_provider, raw_block, raw_index, ingest, subscriber, confidence, audit_seq, unattributed, case_id)
                 VALUES (?1, ?2, 1793528400, 1793528500, 'malicious-code', 'infected-system', 'f', 'p', ?3, ?4, 1,
                         CASE WHEN ?5 IS NULL THEN NULL ELSE 'S1' END, 'inside-session', 4,
                         CASE WHEN ?5 IS NULL THEN 'no binding' END, ?5)",
                params![vec![i as u8; 16], format!("192.0.2.{}", i + 1), blk, idx, case],
            )
            .unwrap();
        }
        let to_9: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.0 <= 9).collect();
        apply_list(&conn, &to_9).unwrap();
        assert_eq!(tables_named(&conn, "events"), 0, "old tables dropped");
        assert_eq!(tables_named(&conn, "event_raw"), 0);
        let keys: Vec<(Vec<u8>, i64)> = conn
            .prepare("SELECT key, event FROM event_keys ORDER BY event")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            keys,
            [
                (vec![0; 16], 1 << 16),
                (vec![1; 16], (1 << 16) | 1),
                (vec![2; 16], 2 << 16)
            ]
        );
        let last: i64 = conn
            .query_row("SELECT last_segment FROM cases WHERE id = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(last, 2);
        let (fields, raw): (Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT fields, raw FROM event_segments WHERE id = 2",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let f = crate::event_segment::decode_fields(2, &fields).unwrap();
        assert_eq!(f.cases[0].id, 7);
        assert_eq!(f.cases[0].previous, Some(1), "the case's chain");
        let e = &f.events[0].2;
        assert_eq!(e.event.source_ip.to_string(), "192.0.2.3");
        assert_eq!(e.case_id, Some(7));
        assert_eq!(e.attribution.as_ref().unwrap().audit_seq, 4);
        assert_eq!(
            crate::event_segment::decode_raw(&raw).unwrap()[0],
            rows[2].as_bytes()
        );
        let unattributed: i64 = conn
            .query_row(
                "SELECT sum(events) FROM segment_unattributed WHERE reason = 'no binding'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unattributed, 1);

        // Schema 10: the keys into blocks, a block per segment and hour
        // (a key's first 4 bytes), each key's other 12 with its index.
        let to_10: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.0 <= 10).collect();
        apply_list(&conn, &to_10).unwrap();
        assert_eq!(tables_named(&conn, "event_keys"), 0);
        let blocks = key_blocks(&conn);
        let entry = |b: u8, index: u8| [vec![b; 12], vec![0, index]].concat();
        assert_eq!(
            blocks,
            [
                (0, 1, entry(0, 0)),
                (0x0101_0101, 1, entry(1, 1)),
                (0x0202_0202, 2, entry(2, 0)),
            ]
        );

        // Schema 11: every key made again as an ingest makes it now, from
        // the event's feed, time and raw record; in the blocks and in the
        // segments' fields.
        apply(&conn).unwrap();
        let key = |row: &String| {
            let mut e = kanki_events::Event::new(
                "192.0.2.1".parse().unwrap(),
                super::super::from_ts(1_793_528_400),
                "malicious-code",
                "infected-system",
                "f",
                "p",
            );
            e.raw = row.as_bytes().to_vec();
            e.key()
        };
        let k: Vec<_> = rows.iter().map(key).collect();
        let blocks = key_blocks(&conn);
        let hour = 1_793_528_400 / 3600;
        let entry = |k: &[u8; 16], index: u8| [&k[4..], &[0, index]].concat();
        assert_eq!(
            blocks,
            [
                (hour, 1, [entry(&k[0], 0), entry(&k[1], 1)].concat()),
                (hour, 2, entry(&k[2], 0)),
            ]
        );
        assert_eq!(
            super::super::event_keys::known(&conn, &[k[2], k[0], [0; 16]]).unwrap(),
            [true, true, false]
        );
        let fields: Vec<u8> = conn
            .query_row("SELECT fields FROM event_segments WHERE id = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        let f = crate::event_segment::decode_fields(2, &fields).unwrap();
        assert_eq!(f.events[0].1, k[2]);
        assert_eq!(f.events[0].2.case_id, Some(7), "the rest as it was");
        assert_eq!(f.cases[0].previous, Some(1));
    }

    /// (hour, segment, keys) of every key block, in segment order.
    fn key_blocks(conn: &Connection) -> Vec<(i64, i64, Vec<u8>)> {
        conn.prepare("SELECT hour, segment, keys FROM event_key_blocks ORDER BY segment, hour")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn tables_named(conn: &Connection, name: &str) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap()
    }
}
