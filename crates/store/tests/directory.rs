//! The directory and the audit log as the service uses them, on a real
//! SQLite file.

use chrono::{DateTime, Duration, TimeZone, Utc};
use kanki_audit::{AuditEntry, GENESIS, Ground, verify};
use kanki_directory::{Binding, BindingEvent, BindingOrigin, SessionEvent, SessionPhase, Subject};
use kanki_store::{ALL_BINDINGS, AuditFilter, SqliteOptions, Store, SubscriberRecord};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open_sqlite(&dir.path().join("kanki.sqlite3"), &SqliteOptions::default()).unwrap()
}

fn t(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::hours(h)
}

fn session(
    phase: SessionPhase,
    nas: &str,
    sid: &str,
    user: &str,
    prefixes: &[&str],
    at: i64,
) -> BindingEvent {
    BindingEvent::Session(SessionEvent {
        phase,
        nas: nas.into(),
        session_id: sid.into(),
        subject: Subject::login(user).unwrap(),
        prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        at: t(at),
        session_time: None,
        class: Some("0a0b".into()),
    })
}

#[test]
fn sessions_open_extend_close_and_replays_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    let g0 = d.directory_generation().unwrap();
    let events = vec![
        session(
            SessionPhase::Start,
            "nas1",
            "s1",
            "alice",
            &["192.0.2.7/32", "2001:db8:7:100::/56"],
            1,
        ),
        session(
            SessionPhase::Interim,
            "nas1",
            "s1",
            "alice",
            &["192.0.2.7/32", "2001:db8:7:100::/56"],
            2,
        ),
    ];
    let (c, changed) = d
        .apply_bindings(BindingOrigin::Radius, &events, t(2))
        .unwrap();
    assert_eq!((c.added, c.unchanged), (2, 2));
    assert_eq!(changed.len(), 2);
    assert!(
        d.bindings_by_id(&changed)
            .unwrap()
            .iter()
            .all(|b| b.binding.to.is_none() && b.binding.from == t(1))
    );
    assert!(d.directory_generation().unwrap() > g0);

    // A replay (a retransmission, a re-read detail file) changes nothing.
    let g1 = d.directory_generation().unwrap();
    let (c, changed) = d
        .apply_bindings(BindingOrigin::Radius, &events, t(3))
        .unwrap();
    assert_eq!((c.added, c.updated, c.unchanged), (0, 0, 4));
    assert!(changed.is_empty());
    assert_eq!(d.directory_generation().unwrap(), g1);

    // The IPv6 prefix is given up mid-session; then the session stops.
    let (c, _) = d
        .apply_bindings(
            BindingOrigin::Radius,
            &[session(
                SessionPhase::Interim,
                "nas1",
                "s1",
                "alice",
                &["192.0.2.7/32"],
                3,
            )],
            t(3),
        )
        .unwrap();
    assert_eq!(c.closed, 1);
    let stop = session(
        SessionPhase::Stop,
        "nas1",
        "s1",
        "alice",
        &["192.0.2.7/32"],
        5,
    );
    d.apply_bindings(BindingOrigin::Radius, std::slice::from_ref(&stop), t(5))
        .unwrap();
    let (c, _) = d
        .apply_bindings(BindingOrigin::Radius, &[stop], t(6))
        .unwrap();
    assert_eq!(c.unchanged, 1);
    let mut all = Vec::new();
    d.scan_bindings(ALL_BINDINGS, &mut |b| {
        all.push((b.prefix.to_string(), b.from, b.to))
    })
    .unwrap();
    all.sort();
    assert_eq!(
        all[0],
        (
            "192.0.2.7/32".to_string(),
            t(1).timestamp(),
            Some(t(5).timestamp())
        )
    );
    assert_eq!(all[1].2, Some(t(3).timestamp()));
}

#[test]
fn a_nas_restart_closes_its_open_sessions_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    d.apply_bindings(
        BindingOrigin::Radius,
        &[
            session(
                SessionPhase::Start,
                "nas1",
                "a",
                "alice",
                &["192.0.2.1/32"],
                1,
            ),
            session(
                SessionPhase::Start,
                "nas1",
                "b",
                "bob",
                &["192.0.2.2/32"],
                1,
            ),
            session(
                SessionPhase::Start,
                "nas2",
                "c",
                "carol",
                &["192.0.2.3/32"],
                1,
            ),
        ],
        t(1),
    )
    .unwrap();
    let (c, changed) = d
        .apply_bindings(
            BindingOrigin::Radius,
            &[BindingEvent::NasReset {
                nas: "nas1".into(),
                at: t(4),
            }],
            t(4),
        )
        .unwrap();
    assert_eq!(c.closed, 2);
    assert!(
        d.bindings_by_id(&changed)
            .unwrap()
            .iter()
            .all(|b| b.binding.to == Some(t(4)))
    );
    let mut open = Vec::new();
    d.scan_bindings(ALL_BINDINGS, &mut |b| {
        if b.to.is_none() {
            open.push(b.subject)
        }
    })
    .unwrap();
    let mut names = Vec::new();
    d.binding_subjects(&mut |s| {
        if open.contains(&s.number) {
            names.push(s.value.to_string())
        }
    })
    .unwrap();
    assert_eq!(names, ["carol"]);
}

#[test]
fn leases_merge_by_key_and_subscribers_keep_their_consent_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    let lease = Binding {
        subject: Subject::new(kanki_directory::SubjectKind::HwAddr, "00:11:22:33:44:55").unwrap(),
        prefix: "198.51.100.9/32".parse().unwrap(),
        ports: None,
        from: t(1),
        to: Some(t(3)),
        origin: BindingOrigin::Kea,
        key: "198.51.100.9/lease1".into(),
        reporter: None,
    };
    let (c, _) = d
        .apply_bindings(
            BindingOrigin::Kea,
            &[BindingEvent::Binding(lease.clone())],
            t(1),
        )
        .unwrap();
    assert_eq!(c.added, 1);
    let (c, _) = d
        .apply_bindings(BindingOrigin::Kea, &[BindingEvent::Binding(lease)], t(2))
        .unwrap();
    assert_eq!(c.unchanged, 1);

    let rec = SubscriberRecord {
        id: "S1".into(),
        email: Some("s1@example.jp".into()),
        language: "ja".into(),
        consent: Some(true),
        identifiers: vec![
            Subject::new(kanki_directory::SubjectKind::HwAddr, "00-11-22-33-44-55").unwrap(),
        ],
        ..Default::default()
    };
    let c = d
        .upsert_subscribers(std::slice::from_ref(&rec), "import", "test", t(1))
        .unwrap();
    assert_eq!((c.added, c.consent_changes), (1, 1));
    let c = d
        .upsert_subscribers(&[rec], "import", "test", t(2))
        .unwrap();
    assert_eq!((c.added, c.updated, c.unchanged), (0, 0, 1));
    assert!(d.set_consent("S1", false, "phone", "ops", t(3)).unwrap());
    assert!(!d.set_consent("S1", false, "phone", "ops", t(4)).unwrap());
    assert!(d.set_consent("nobody", true, "web", "ops", t(4)).is_err());
    let s = d.get_subscriber("S1").unwrap().unwrap();
    assert!(!s.consent);
    let history: Vec<_> = s
        .consent_history
        .iter()
        .map(|e| (e.granted, e.channel.as_str()))
        .collect();
    assert_eq!(history, [(true, "import"), (false, "phone")]);
    let mut idents = Vec::new();
    d.identifiers(&mut |s, id| idents.push((s.to_string(), id.to_string())))
        .unwrap();
    idents.sort();
    assert_eq!(
        idents,
        [
            ("hw-addr:00:11:22:33:44:55".to_string(), "S1".to_string()),
            ("login:S1".to_string(), "S1".to_string()),
            ("subscriber:S1".to_string(), "S1".to_string())
        ]
    );
    assert!(d.consenting().unwrap().is_empty());
}

/// Every binding as the index reads it: (prefix, subject's name), sorted.
fn scanned(d: &dyn kanki_store::DirectoryBackend) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    d.scan_bindings(ALL_BINDINGS, &mut |b| rows.push((b.prefix, b.subject)))
        .unwrap();
    let mut names = std::collections::HashMap::new();
    d.binding_subjects(&mut |s| {
        names.insert(s.number, format!("{}:{}", s.kind.as_str(), s.value));
    })
    .unwrap();
    let mut out: Vec<_> = rows
        .into_iter()
        .map(|(p, n)| (p.to_string(), names[&n].clone()))
        .collect();
    out.sort();
    out
}

#[test]
fn bindings_name_numbered_subjects_mapped_to_subscribers_and_purged_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    let stat = |subject: Subject, prefix: &str, to: Option<i64>| {
        BindingEvent::Binding(Binding {
            key: format!("{subject}/{prefix}"),
            subject,
            prefix: prefix.parse().unwrap(),
            ports: None,
            from: t(1),
            to: to.map(t),
            origin: BindingOrigin::Static,
            reporter: None,
        })
    };
    d.apply_bindings(
        BindingOrigin::Radius,
        &[
            session(
                SessionPhase::Start,
                "nas1",
                "a1",
                "alice",
                &["192.0.2.1/32"],
                1,
            ),
            session(
                SessionPhase::Start,
                "nas1",
                "a2",
                "alice",
                &["2001:db8:1:100::/56"],
                1,
            ),
            session(
                SessionPhase::Start,
                "nas1",
                "b1",
                "bob",
                &["192.0.2.2/32"],
                1,
            ),
            session(
                SessionPhase::Stop,
                "nas1",
                "b1",
                "bob",
                &["192.0.2.2/32"],
                2,
            ),
        ],
        t(2),
    )
    .unwrap();
    d.apply_bindings(
        BindingOrigin::Static,
        &[stat(
            Subject::new(kanki_directory::SubjectKind::Subscriber, "S2").unwrap(),
            "198.51.100.0/24",
            None,
        )],
        t(2),
    )
    .unwrap();
    let recs = [
        SubscriberRecord {
            id: "S1".into(),
            language: "ja".into(),
            identifiers: vec![Subject::login("alice").unwrap()],
            ..Default::default()
        },
        SubscriberRecord {
            id: "S2".into(),
            language: "en".into(),
            ..Default::default()
        },
    ];
    d.upsert_subscribers(&recs, "import", "test", t(2)).unwrap();
    assert_eq!(
        scanned(d),
        [
            ("192.0.2.1/32".to_string(), "login:alice".to_string()),
            ("192.0.2.2/32".to_string(), "login:bob".to_string()),
            ("198.51.100.0/24".to_string(), "subscriber:S2".to_string()),
            ("2001:db8:1:100::/56".to_string(), "login:alice".to_string()),
        ]
    );
    let owners = || {
        let mut v = Vec::new();
        d.binding_subjects(&mut |s| {
            v.push((s.value.to_string(), s.subscriber.map(str::to_string)))
        })
        .unwrap();
        v.sort();
        v
    };
    assert_eq!(
        owners(),
        [
            ("S2".to_string(), Some("S2".to_string())),
            ("alice".to_string(), Some("S1".to_string())),
            ("bob".to_string(), None),
        ]
    );
    // Bob's only binding ends before the cut-off: his name goes with it.
    let c = d.purge(t(5), t(0), entry(t(5), "retention")).unwrap();
    assert_eq!(c.bindings, 1);
    assert_eq!(
        owners(),
        [
            ("S2".to_string(), Some("S2".to_string())),
            ("alice".to_string(), Some("S1".to_string())),
        ]
    );
}

#[test]
fn bindings_written_before_schema_7_are_numbered_and_read() {
    // A store as version 6 left it: subjects and prefixes as text only.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kanki.sqlite3");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for (version, sql) in [
            (1, include_str!("../migrations/sqlite/0001_init.sql")),
            (2, include_str!("../migrations/sqlite/0002_directory.sql")),
            (3, include_str!("../migrations/sqlite/0003_removal.sql")),
            (5, include_str!("../migrations/sqlite/0005_warning.sql")),
            (
                6,
                include_str!("../migrations/sqlite/0006_garden_reference.sql"),
            ),
        ] {
            c.execute_batch(sql).unwrap();
            c.execute(
                "INSERT INTO schema_migrations VALUES (?1, 'old', 0)",
                [version],
            )
            .unwrap();
        }
        c.execute_batch(
            "INSERT INTO bindings (origin, key, subject_kind, subject, prefix, from_ts, updated_at)
             VALUES ('radius', 'k1', 'login', 'alice', '192.0.2.7/32', 1, 1),
                    ('radius', 'k2', 'login', 'alice', '2001:db8:1:100::/56', 1, 1),
                    ('kea', 'k3', 'hw-addr', '00:11:22:33:44:55', '192.0.2.8/32', 1, 1)",
        )
        .unwrap();
    }
    let store = open(&dir);
    let expected = [
        ("192.0.2.7/32".to_string(), "login:alice".to_string()),
        (
            "192.0.2.8/32".to_string(),
            "hw-addr:00:11:22:33:44:55".to_string(),
        ),
        ("2001:db8:1:100::/56".to_string(), "login:alice".to_string()),
    ];
    assert_eq!(scanned(store.directory()), expected);
    // Written again (an update numbers the subject the same way), and read
    // from the packed prefix.
    let (c, _) = store
        .directory()
        .apply_bindings(
            BindingOrigin::Radius,
            &[session(
                SessionPhase::Start,
                "nas1",
                "s9",
                "alice",
                &["192.0.2.9/32"],
                1,
            )],
            t(1),
        )
        .unwrap();
    assert_eq!(c.added, 1);
    let after = scanned(store.directory());
    assert_eq!(after.len(), 4);
    assert!(after.contains(&("192.0.2.9/32".to_string(), "login:alice".to_string())));
    let mut subjects = 0;
    store
        .directory()
        .binding_subjects(&mut |_| subjects += 1)
        .unwrap();
    assert_eq!(subjects, 2, "alice is one subject, numbered once");
}

fn entry(at: DateTime<Utc>, purpose: &str) -> AuditEntry {
    AuditEntry {
        at,
        actor: "ops".into(),
        action: "who".into(),
        ground: Some(Ground::EmergencyEvacuation),
        purpose: purpose.into(),
        input: "{\"address\":\"192.0.2.7\"}".into(),
        result: "{\"subscriber\":\"S1\"}".into(),
    }
}

fn records(store: &Store) -> Vec<kanki_audit::AuditRecord> {
    let mut v = Vec::new();
    store
        .directory()
        .audit_records(&AuditFilter::default(), &mut |r| v.push(r))
        .unwrap();
    v
}

#[test]
fn the_audit_chain_verifies_survives_a_purge_and_shows_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    for i in 0..5 {
        d.audit_append(&entry(t(i), &format!("case {i}"))).unwrap();
    }
    let before = records(&store);
    let v = verify(&before, &d.audit_anchor().unwrap()).unwrap();
    assert_eq!(v.records, 5);

    // Purge what is older than hour 2: the purge is itself recorded and the
    // chain still verifies from its anchor.
    let purge = AuditEntry {
        ground: None,
        action: "purge".into(),
        actor: "retention".into(),
        result: String::new(),
        ..entry(t(10), "retention")
    };
    let c = d.purge(t(0), t(2), purge).unwrap();
    assert_eq!(c.audit_records, 2);
    let rs = records(&store);
    assert_eq!(rs.first().unwrap().seq, 3);
    assert_eq!(rs.last().unwrap().entry.action, "purge");
    assert_ne!(d.audit_anchor().unwrap(), GENESIS);
    // The purge record names the anchor, under the chain's hashes.
    let anchor = kanki_audit::Anchor {
        seq: 2,
        hash: before[1].hash.clone(),
    };
    assert_eq!(c.anchor.as_ref(), Some(&anchor));
    assert_eq!(
        kanki_audit::Anchor::named_by(rs.last().unwrap()),
        Some(anchor.clone())
    );
    let v = verify(&rs, &d.audit_anchor().unwrap()).unwrap();
    assert_eq!((v.records, v.anchor), (4, Some(anchor.clone())));
    // A purge that removes nothing names the same anchor again.
    let c = d
        .purge(
            t(0),
            t(0),
            AuditEntry {
                ..rs.last().unwrap().entry.clone()
            },
        )
        .unwrap();
    assert_eq!((c.audit_records, c.anchor), (0, Some(anchor)));
    assert!(verify(&records(&store), &d.audit_anchor().unwrap()).is_ok());

    // Updates are refused by the database itself.
    let conn = rusqlite::Connection::open(dir.path().join("kanki.sqlite3")).unwrap();
    assert!(
        conn.execute("UPDATE audit_log SET purpose = 'x' WHERE seq = 4", [])
            .is_err()
    );
    // Someone who drops the trigger and edits a record is caught.
    conn.execute_batch("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET result = '{\"subscriber\":\"S2\"}' WHERE seq = 4;").unwrap();
    let err = verify(&records(&store), &d.audit_anchor().unwrap()).unwrap_err();
    assert_eq!(err.seq, 4);

    let mut shown = Vec::new();
    d.audit_records(
        &AuditFilter {
            mentions: Some("S2".into()),
            ..Default::default()
        },
        &mut |r| shown.push(r.seq),
    )
    .unwrap();
    assert_eq!(shown, [4]);
    // By purpose: the records kept after the purge ("case 2" to "case 4"),
    // and the purges' own.
    let by_purpose = |purpose: &str| {
        let mut shown = Vec::new();
        d.audit_records(
            &AuditFilter {
                purpose: Some(purpose.into()),
                ..Default::default()
            },
            &mut |r| shown.push(r.entry.purpose),
        )
        .unwrap();
        shown
    };
    assert_eq!(by_purpose("case"), ["case 2", "case 3", "case 4"]);
    let purges = by_purpose("retention");
    assert!(!purges.is_empty() && purges.iter().all(|p| p == "retention"));
    assert!(
        by_purpose("Case").is_empty(),
        "a purpose is matched as written"
    );
    assert_eq!(by_purpose("e 3"), ["case 3"], "through the trigram index");
    assert_eq!(by_purpose("4"), ["case 4"], "too short for a trigram: read");
    assert!(
        by_purpose("\"case\" OR *").is_empty(),
        "every character literal"
    );
    // Paged from the newest: the page before record 5.
    let mut older = Vec::new();
    d.audit_records(
        &AuditFilter {
            purpose: Some("case".into()),
            before: Some(5),
            limit: Some(1),
            ..Default::default()
        },
        &mut |r| older.push(r.entry.purpose),
    )
    .unwrap();
    assert_eq!(older, ["case 3"]);
}

/// Every column of every binding, in id order.
fn dump(path: &std::path::Path) -> Vec<Vec<rusqlite::types::Value>> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c.prepare("SELECT * FROM bindings ORDER BY id").unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn remembered_open_sessions_write_what_reading_the_store_writes() {
    // The same random RADIUS traffic (replays, late records, prefixes given
    // up, NAS restarts, rows closed and purged behind the writer's back)
    // into a store that remembers open sessions and one that does not:
    // every batch must report the same counts and ids, and leave the same
    // rows, column for column.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let paths: Vec<_> = dirs
        .iter()
        .map(|d| d.path().join("kanki.sqlite3"))
        .collect();
    let stores: Vec<Store> = paths
        .iter()
        .zip([SqliteOptions::default().open_sessions_kept, 0])
        .map(|(p, kept)| {
            let options = SqliteOptions {
                open_sessions_kept: kept,
                ..SqliteOptions::default()
            };
            Store::open_sqlite(p, &options).unwrap()
        })
        .collect();
    let mut rng = kanki_directory::synth::Rng::new(11);
    let prefixes = [
        "192.0.2.1/32",
        "192.0.2.2/32",
        "192.0.2.3/32",
        "2001:db8:1::/56",
        "2001:db8:2::/56",
    ];
    let mut clock = 0i64;
    let mut remembered_writes_nothing = 0;
    for round in 0..400 {
        let batch: Vec<BindingEvent> = (0..1 + rng.below(4))
            .map(|_| {
                clock += rng.below(3) as i64;
                let at = clock - rng.below(2) as i64; // some arrive late
                let nas = ["nas1", "nas2"][rng.below(2) as usize];
                if rng.below(40) == 0 {
                    return BindingEvent::NasReset {
                        nas: nas.into(),
                        at: t(at),
                    };
                }
                let phase = match rng.below(10) {
                    0..=2 => SessionPhase::Start,
                    3..=7 => SessionPhase::Interim,
                    _ => SessionPhase::Stop,
                };
                let sid = format!("s{}", rng.below(5));
                let first = rng.below(prefixes.len() as u64) as usize;
                let mut held = vec![prefixes[first]];
                if rng.below(2) == 0 {
                    held.push(prefixes[(first + 3) % prefixes.len()]);
                }
                let mut e = session(phase, nas, &sid, "alice", &held, at);
                if let BindingEvent::Session(s) = &mut e {
                    s.session_time = (rng.below(3) == 0).then(|| rng.below(7200) as u32);
                }
                e
            })
            .collect();
        let now = t(clock);
        let results: Vec<_> = stores
            .iter()
            .map(|s| {
                s.directory()
                    .apply_bindings(BindingOrigin::Radius, &batch, now)
                    .unwrap()
            })
            .collect();
        assert_eq!(results[0], results[1], "round {round}: {batch:?}");
        if batch
            .iter()
            .all(|e| matches!(e, BindingEvent::Session(s) if s.phase == SessionPhase::Interim))
            && results[0].0.unchanged > 0
        {
            remembered_writes_nothing += 1;
        }
        // Now and then, something else closes or purges a row.
        if rng.below(15) == 0 {
            let sql = if rng.below(2) == 0 {
                "UPDATE bindings SET to_ts = from_ts WHERE id = (SELECT max(id) FROM bindings WHERE to_ts IS NULL)"
            } else {
                "DELETE FROM bindings WHERE id = (SELECT min(id) FROM bindings WHERE to_ts IS NOT NULL)"
            };
            for p in &paths {
                rusqlite::Connection::open(p)
                    .unwrap()
                    .execute(sql, [])
                    .unwrap();
            }
        }
        assert_eq!(dump(&paths[0]), dump(&paths[1]), "round {round}: {batch:?}");
    }
    // The traffic did exercise the remembered path.
    assert!(
        remembered_writes_nothing > 20,
        "{remembered_writes_nothing}"
    );
}

#[test]
fn the_change_log_lists_changed_bindings_and_bindings_are_found_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    d.upsert_subscribers(
        &[SubscriberRecord {
            id: "S1".into(),
            email: None,
            postal_address: None,
            language: "ja".into(),
            plan: None,
            consent: Some(true),
            identifiers: vec![],
        }],
        "import",
        "test",
        t(0),
    )
    .unwrap();
    assert_eq!(d.binding_change_head().unwrap(), 0);
    let (counts, _) = d
        .apply_bindings(
            BindingOrigin::Radius,
            &[
                session(
                    SessionPhase::Start,
                    "nas1",
                    "a",
                    "S1",
                    &["192.0.2.7/32", "2001:db8:7:100::/56"],
                    1,
                ),
                // A Stop whose Start never came: stored, and counted.
                session(SessionPhase::Stop, "nas1", "b", "bob", &["192.0.2.9/32"], 3),
            ],
            t(4),
        )
        .unwrap();
    assert_eq!(counts.stops_without_start, 1);
    let mut seen = Vec::new();
    let read = d
        .binding_changes_since(0, 100, &mut |c| {
            seen.push((
                c.binding.prefix.to_string(),
                c.binding.to.is_some(),
                c.subscriber,
            ))
        })
        .unwrap();
    assert!(!read.missed && !read.more);
    assert_eq!(read.last, d.binding_change_head().unwrap());
    seen.sort();
    assert_eq!(
        seen,
        [
            ("192.0.2.7/32".to_string(), false, Some("S1".to_string())),
            ("192.0.2.9/32".to_string(), true, None),
            (
                "2001:db8:7:100::/56".to_string(),
                false,
                Some("S1".to_string())
            ),
        ]
    );
    // The Stop of session a: one more change, read after the last one seen.
    d.apply_bindings(
        BindingOrigin::Radius,
        &[session(
            SessionPhase::Stop,
            "nas1",
            "a",
            "S1",
            &["192.0.2.7/32", "2001:db8:7:100::/56"],
            2,
        )],
        t(4),
    )
    .unwrap();
    let mut later = Vec::new();
    let next = d
        .binding_changes_since(read.last, 1, &mut |c| later.push(c.binding.to))
        .unwrap();
    assert!(next.more, "two changes, one asked");
    assert_eq!(later, [Some(t(2).timestamp())]);

    // By address: the prefixes that contain it, around the moment.
    let found = |addr: &str, at: i64| {
        let mut v = Vec::new();
        d.bindings_covering(
            addr.parse().unwrap(),
            t(at).timestamp(),
            t(at).timestamp(),
            &mut |b| v.push(b.prefix.to_string()),
        )
        .unwrap();
        v
    };
    assert_eq!(found("192.0.2.7", 1), ["192.0.2.7/32"]);
    assert_eq!(found("2001:db8:7:1ff::9", 1), ["2001:db8:7:100::/56"]);
    assert!(found("192.0.2.8", 1).is_empty());
    assert!(found("192.0.2.7", 3).is_empty(), "stopped at 2");

    // Trimmed past a reader: it is told it missed changes.
    d.trim_binding_changes(t(5)).unwrap();
    let r = d.binding_changes_since(0, 100, &mut |_| {}).unwrap();
    assert!(r.missed);
}

/// An import's consent changes enter the chain one record each, written in
/// one batch after a record already there, and the chain verifies.
#[test]
fn an_imports_consent_changes_chain_one_record_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    d.audit_append(&entry(t(0), "before the import")).unwrap();
    let recs: Vec<SubscriberRecord> = (0..50)
        .map(|i| SubscriberRecord {
            id: format!("S{i}"),
            language: "ja".into(),
            consent: Some(i % 5 != 0),
            ..Default::default()
        })
        .collect();
    let counts = d.upsert_subscribers(&recs, "import", "test", t(1)).unwrap();
    assert_eq!(counts.consent_changes, 40);
    // Two revocations in a second import.
    let again: Vec<SubscriberRecord> = recs[1..3]
        .iter()
        .map(|r| SubscriberRecord {
            consent: Some(false),
            ..r.clone()
        })
        .collect();
    assert_eq!(
        d.upsert_subscribers(&again, "import", "test", t(2))
            .unwrap()
            .consent_changes,
        2
    );
    let all = records(&store);
    let v = verify(&all, &d.audit_anchor().unwrap()).unwrap();
    assert_eq!(v.records, 1 + 40 + 2);
    let grants = all
        .iter()
        .filter(|r| r.entry.action == "consent-grant")
        .count();
    let revokes: Vec<_> = all
        .iter()
        .filter(|r| r.entry.action == "consent-revoke")
        .collect();
    assert_eq!((grants, revokes.len()), (40, 2));
    assert!(revokes[0].entry.input.contains("S1") && revokes[1].entry.input.contains("S2"));
    // Sequence numbers follow each other with no gap.
    assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[test]
fn a_subscriber_s_bindings_come_latest_first_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let d = store.directory();
    d.upsert_subscribers(
        &[
            SubscriberRecord {
                id: "S1".into(),
                language: "ja".into(),
                identifiers: vec![
                    Subject::login("alice").unwrap(),
                    Subject::login("alice-mobile").unwrap(),
                ],
                ..Default::default()
            },
            SubscriberRecord {
                id: "S2".into(),
                language: "ja".into(),
                identifiers: vec![Subject::login("bob").unwrap()],
                ..Default::default()
            },
        ],
        "import",
        "test",
        t(0),
    )
    .unwrap();
    // Two sessions of each of S1's identifiers, two at the same start, and
    // one of S2's.
    let events = [
        session(
            SessionPhase::Start,
            "nas1",
            "a1",
            "alice",
            &["192.0.2.1/32"],
            1,
        ),
        session(
            SessionPhase::Start,
            "nas1",
            "a2",
            "alice",
            &["192.0.2.2/32"],
            3,
        ),
        session(
            SessionPhase::Start,
            "nas1",
            "m1",
            "alice-mobile",
            &["192.0.2.3/32"],
            3,
        ),
        session(
            SessionPhase::Start,
            "nas1",
            "m2",
            "alice-mobile",
            &["192.0.2.4/32"],
            5,
        ),
        session(
            SessionPhase::Start,
            "nas1",
            "b1",
            "bob",
            &["192.0.2.9/32"],
            4,
        ),
    ];
    d.apply_bindings(BindingOrigin::Radius, &events, t(6))
        .unwrap();
    // And a static binding named by the subscriber id itself.
    let fixed = BindingEvent::Binding(Binding {
        key: "S1-fixed".into(),
        subject: Subject::new(kanki_directory::SubjectKind::Subscriber, "S1").unwrap(),
        prefix: "198.51.100.0/29".parse().unwrap(),
        ports: None,
        from: t(2),
        to: None,
        origin: BindingOrigin::Static,
        reporter: None,
    });
    d.apply_bindings(BindingOrigin::Static, &[fixed], t(6))
        .unwrap();
    let prefixes = |bs: &[kanki_store::StoredBinding]| -> Vec<String> {
        bs.iter().map(|b| b.binding.prefix.to_string()).collect()
    };
    let all = d.subscriber_bindings("S1", None, 10).unwrap();
    assert_eq!(all.len(), 5, "S2's binding is not S1's");
    assert_eq!(prefixes(&all)[3], "198.51.100.0/29");
    assert_eq!(prefixes(&all)[0], "192.0.2.4/32");
    assert_eq!(prefixes(&all)[4], "192.0.2.1/32");
    assert!(
        all.windows(2)
            .all(|w| w[0].binding.from >= w[1].binding.from)
    );

    // Pages of one: the two bindings that start together both come, once.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = d.subscriber_bindings("S1", after, 1).unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.binding.from.timestamp(), last.id));
        paged.extend(page);
    }
    assert_eq!(prefixes(&paged), prefixes(&all));
    assert!(
        d.subscriber_bindings("nobody", None, 10)
            .unwrap()
            .is_empty()
    );
}
