//! The store as its callers use it: imports, the allowlist, expiry, operator
//! actions, listings and the DNS list, on a real SQLite file.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kanki_feeds::{FeedRecord, Row, Skip};
use kanki_indicators::{AllowEntry, AllowKind, Category, Kind, Status, Tlp, normalize_any};
use kanki_store::{Importer, ListQuery, NewIndicator, SourceSpec, SqliteOptions, Store};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open_sqlite(&dir.path().join("kanki.sqlite3"), &SqliteOptions::default()).unwrap()
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
}

fn spec(name: &str) -> SourceSpec {
    SourceSpec {
        name: name.into(),
        default_category: Category::MalwareDistribution,
        default_confidence: 60,
        default_tlp: Tlp::Clear,
        ttl: Some(Duration::from_secs(7 * 86400)),
        list_url_hosts: true,
    }
}

fn rec(line: u64, value: &str) -> Row {
    Row::Record(FeedRecord::new(line, normalize_any(value).unwrap()))
}

fn import(
    store: &Store,
    source: &SourceSpec,
    rows: Vec<Row>,
    now: DateTime<Utc>,
) -> kanki_store::ImportSummary {
    Importer::new(store)
        .chunk_rows(2)
        .run(
            source,
            "plain",
            "test",
            rows.into_iter().map(Ok),
            now,
            &mut |_| {},
        )
        .unwrap()
}

fn dns_names(store: &Store) -> Vec<String> {
    let mut names = Vec::new();
    store
        .for_each_dns_name(&mut |n, _| names.push(n.to_string()))
        .unwrap();
    names.sort();
    names
}

#[test]
fn import_is_idempotent_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let rows = || {
        vec![
            rec(1, "http://Evil.example/a"),
            rec(2, "bad.example"),
            Row::Skip(Skip {
                line: 3,
                reason: "invalid URL".into(),
            }),
            rec(4, "198.51.100.7"),
            rec(5, "bad.example"), // a duplicate inside the file
        ]
    };
    let first = import(&store, &spec("f"), rows(), at(1));
    assert_eq!(
        (
            first.rows_read,
            first.added,
            first.updated,
            first.unchanged,
            first.skipped
        ),
        (5, 3, 0, 1, 1)
    );
    assert_eq!(first.skipped_by_reason["invalid URL"].first_lines, vec![3]);
    let generation = store.generation().unwrap();

    let second = import(&store, &spec("f"), rows(), at(2));
    assert!(second.changed_nothing(), "{second:?}");
    assert_eq!(second.unchanged, 4);
    assert_eq!(
        store.generation().unwrap(),
        generation,
        "a re-import must not change the list"
    );
    // Seen again: the expiry moved with the second import.
    let ind = store.find_indicator("bad.example").unwrap().unwrap();
    assert_eq!(ind.expires_at, Some(at(2) + chrono::Duration::days(7)));
    assert_eq!(ind.first_seen, at(1));

    let imports = store.recent_imports(10).unwrap();
    assert_eq!(imports.len(), 2);
    assert!(imports.iter().all(|i| i.status == "completed"));
}

#[test]
fn a_second_source_adds_itself_to_the_indicator() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    import(&store, &spec("a"), vec![rec(1, "bad.example")], at(1));
    let mut b = spec("b");
    b.default_confidence = 90;
    b.default_category = Category::C2;
    let s = import(&store, &b, vec![rec(1, "bad.example")], at(2));
    assert_eq!((s.added, s.updated), (0, 1));
    let ind = store.find_indicator("bad.example").unwrap().unwrap();
    assert_eq!(ind.sources.len(), 2);
    assert_eq!(ind.confidence, 90);
    assert_eq!(ind.category, Category::C2);
}

#[test]
fn the_allowlist_wins_over_every_source_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .add_allow(
            &AllowEntry::new(AllowKind::Suffix, "isp.example", "our own zone", "operator").unwrap(),
            at(1),
        )
        .unwrap();
    import(
        &store,
        &spec("f"),
        vec![
            rec(1, "mail.isp.example"),
            rec(2, "http://www.isp.example/x"),
            rec(3, "bad.example"),
        ],
        at(1),
    );
    let ind = store.find_indicator("mail.isp.example").unwrap().unwrap();
    assert_eq!(ind.status, Status::Allowlisted);
    assert!(ind.status_reason.unwrap().contains("our own zone"));
    assert_eq!(dns_names(&store), vec!["bad.example"]);

    // An allowlist entry added later applies to what is already listed...
    let e = store
        .add_allow(
            &AllowEntry::new(
                AllowKind::Exact,
                "bad.example",
                "customer complaint #12",
                "operator",
            )
            .unwrap(),
            at(2),
        )
        .unwrap();
    assert!(dns_names(&store).is_empty());
    assert_eq!(
        store.find_indicator("bad.example").unwrap().unwrap().status,
        Status::Allowlisted
    );
    // ...and removing it lists it again.
    assert!(store.remove_allow(e.id, at(3)).unwrap());
    assert_eq!(dns_names(&store), vec!["bad.example"]);
}

#[test]
fn listings_expire_and_come_back_when_seen_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    import(&store, &spec("f"), vec![rec(1, "bad.example")], at(1));
    assert_eq!(store.expire(at(7)).unwrap(), 0);
    assert_eq!(store.expire(at(9)).unwrap(), 1);
    assert!(dns_names(&store).is_empty());
    let ind = store.find_indicator("bad.example").unwrap().unwrap();
    assert_eq!(ind.status, Status::Expired);
    let s = import(&store, &spec("f"), vec![rec(1, "bad.example")], at(10));
    assert_eq!(s.updated, 1, "revival is a change");
    assert_eq!(dns_names(&store), vec!["bad.example"]);
}

#[test]
fn operator_marks_stick_and_url_hosts_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut no_hosts = spec("phish");
    no_hosts.list_url_hosts = false;
    import(
        &store,
        &spec("f"),
        vec![
            rec(1, "http://dropper.example/x.exe"),
            rec(2, "http://real-site.example/wp/x.php"),
        ],
        at(1),
    );
    import(
        &store,
        &no_hosts,
        vec![rec(1, "http://compromised.example/login")],
        at(1),
    );
    assert_eq!(
        dns_names(&store),
        vec!["dropper.example", "real-site.example"]
    );

    store
        .set_host_mark(&kanki_store::HostMark {
            host: "real-site.example".into(),
            reason: "a real shop with an injected script".into(),
            origin: "operator".into(),
            created_at: at(2),
        })
        .unwrap();
    assert_eq!(dns_names(&store), vec!["dropper.example"]);

    let id = store
        .find_indicator("http://dropper.example/x.exe")
        .unwrap()
        .unwrap()
        .id;
    let fp = store
        .set_status(
            id,
            Status::FalsePositive,
            "it is our update server",
            "alice",
            at(2),
        )
        .unwrap();
    assert_eq!(fp.status, Status::FalsePositive);
    assert!(dns_names(&store).is_empty());
    // A feed seeing it again does not undo an operator's judgement.
    import(
        &store,
        &spec("f"),
        vec![rec(1, "http://dropper.example/x.exe")],
        at(3),
    );
    assert_eq!(
        store.get_indicator(id).unwrap().unwrap().status,
        Status::FalsePositive
    );
    assert!(
        store
            .set_status(id, Status::FalsePositive, " ", "alice", at(3))
            .is_err(),
        "a reason is required"
    );
    // Its history: the operator's judgement, with who made it, above the
    // source's first sighting.
    let history = store.indicator_history(id, 10).unwrap();
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = history
        .iter()
        .map(|h| (h.change.as_str(), h.actor.as_deref(), h.detail.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "false-positive",
                Some("alice"),
                Some("it is our update server")
            ),
            ("listed", Some("source f"), Some("f")),
        ]
    );
    assert_eq!(history[0].at, at(2));
    assert_eq!(store.indicator_history(id, 1).unwrap().len(), 1);
    assert!(store.delete_indicator(id, "alice", at(4)).unwrap());
    assert!(store.get_indicator(id).unwrap().is_none());
}

#[test]
fn listing_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let rows = (0..25)
        .map(|i| rec(i, &format!("host{i}.bad.example")))
        .collect();
    import(&store, &spec("f"), rows, at(1));
    let (added, _) = store
        .add_indicator(
            &NewIndicator {
                value: "203.0.113.0/24".into(),
                category: Some(Category::C2),
                tags: vec!["mirai".into()],
                ..Default::default()
            },
            "operator",
            at(1),
        )
        .unwrap();
    assert_eq!(added.kind, Kind::Ip);
    assert_eq!(added.sources[0].source, "operator");

    let mut q = ListQuery {
        limit: Some(10),
        source: Some("f".into()),
        ..Default::default()
    };
    let mut seen = 0;
    loop {
        let page = store.list_indicators(&q).unwrap();
        assert_eq!(page.total, 25);
        seen += page.items.len();
        match page.next_after {
            Some(a) => q.after = Some(a),
            None => break,
        }
    }
    assert_eq!(seen, 25);
    let tagged = store
        .list_indicators(&ListQuery {
            tag: Some("mirai".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(tagged.items.len(), 1);
    let found = store
        .list_indicators(&ListQuery {
            q: Some("HOST1".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(found.total, 11, "host1 and host10..host19");
    let ips = store
        .list_indicators(&ListQuery {
            kind: Some(Kind::Ip),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ips.items[0].value, "203.0.113.0/24");
    let mut all = 0;
    store
        .for_each_indicator(&ListQuery::default(), &mut |i| {
            assert!(!i.sources.is_empty());
            all += 1;
        })
        .unwrap();
    assert_eq!(all, 26);
}

#[test]
fn the_list_is_searched_by_tlp_and_first_seen_narrow_or_wide() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
    // More than a narrow range holds (5,000), first seen on 1 November,
    // then a few on the 5th marked amber.
    let seen_at = |rows: Vec<(u64, String, DateTime<Utc>)>| -> Vec<Row> {
        rows.into_iter()
            .map(|(line, value, first)| {
                let mut r = FeedRecord::new(line, normalize_any(&value).unwrap());
                r.first_seen = Some(first);
                Row::Record(r)
            })
            .collect()
    };
    let old = seen_at(
        (0..6_000)
            .map(|i| {
                (
                    i,
                    format!("old{i}.example"),
                    day(1) + chrono::Duration::seconds(i as i64),
                )
            })
            .collect(),
    );
    let bulk = |source: &SourceSpec, rows: Vec<Row>| {
        Importer::new(&store)
            .chunk_rows(1_000)
            .run(
                source,
                "plain",
                "test",
                rows.into_iter().map(Ok),
                at(6),
                &mut |_| {},
            )
            .unwrap()
    };
    bulk(&spec("old"), old);
    let mut amber = spec("new");
    amber.default_tlp = Tlp::Amber;
    bulk(
        &amber,
        seen_at(
            (0..10)
                .map(|i| (i, format!("new{i}.example"), day(5)))
                .collect(),
        ),
    );
    let every = |q: ListQuery| -> Vec<String> {
        let mut q = ListQuery {
            limit: Some(1_000),
            ..q
        };
        let mut values = Vec::new();
        let mut last = 0;
        loop {
            let page = store.list_indicators(&q).unwrap();
            for i in &page.items {
                assert!(i.id > last, "in id order, each once");
                last = i.id;
                values.push(i.value.clone());
            }
            match page.next_after {
                Some(a) => q.after = Some(a),
                None => return values,
            }
        }
    };
    // Narrow: read by date.
    let new = every(ListQuery {
        first_seen_since: Some(day(5)),
        ..Default::default()
    });
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|v| v.starts_with("new")), "{new:?}");
    // Wide: walked by id, paged, the range kept.
    let old = every(ListQuery {
        first_seen_since: Some(day(1)),
        first_seen_until: Some(day(2)),
        ..Default::default()
    });
    assert_eq!(old.len(), 6_000);
    assert!(old.iter().all(|v| v.starts_with("old")));
    let late = every(ListQuery {
        first_seen_since: Some(day(1) + chrono::Duration::seconds(5_990)),
        ..Default::default()
    });
    assert_eq!(late.len(), 20, "the last ten old and the ten new");
    let wide = store
        .list_indicators(&ListQuery {
            first_seen_until: Some(day(6)),
            limit: Some(5),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(wide.total, 6_010);
    assert_eq!(wide.items.len(), 5);
    assert_eq!(wide.items[0].value, "old0.example");
    // By TLP, with and without a date.
    let amber_new = every(ListQuery {
        tlp: Some(Tlp::Amber),
        ..Default::default()
    });
    assert_eq!(amber_new, new);
    assert!(
        every(ListQuery {
            tlp: Some(Tlp::Amber),
            first_seen_until: Some(day(2)),
            ..Default::default()
        })
        .is_empty()
    );
    assert!(
        every(ListQuery {
            tlp: Some(Tlp::Red),
            ..Default::default()
        })
        .is_empty()
    );
    assert!(
        every(ListQuery {
            first_seen_since: Some(day(7)),
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn a_store_reopens_with_its_data_and_marks_interrupted_imports() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        import(&store, &spec("f"), vec![rec(1, "bad.example")], at(1));
        store
            .begin_import(&spec("f"), "plain", "killed", at(2))
            .unwrap();
    }
    let store = open(&dir);
    assert!(store.find_indicator("bad.example").unwrap().is_some());
    let runs = store.recent_imports(10).unwrap();
    assert_eq!(runs[0].status, "interrupted");
    assert_eq!(runs[1].status, "completed");
}

#[test]
fn an_input_that_breaks_off_fails_the_run_and_keeps_what_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let rows = vec![
        Ok(rec(1, "one.example")),
        Ok(rec(2, "two.example")),
        Ok(rec(3, "three.example")),
        Err(kanki_feeds::FeedError::Archive(
            "unexpected end of gzip stream".into(),
        )),
    ];
    let err = Importer::new(&store)
        .chunk_rows(2)
        .run(
            &spec("f"),
            "plain",
            "test",
            rows.into_iter(),
            at(1),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("broke off after 3 rows"), "{err}");
    let runs = store.recent_imports(1).unwrap();
    assert_eq!(runs[0].status, "failed");
    assert_eq!(
        dns_names(&store),
        vec!["one.example", "three.example", "two.example"]
    );
}

#[test]
fn a_value_twice_in_one_chunk_is_added_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let rows = vec![
        rec(1, "a.example"),
        rec(2, "b.example"),
        rec(3, "a.example"),
        rec(4, "http://a.example/x"),
    ];
    let s = Importer::new(&store)
        .run(
            &spec("f"),
            "plain",
            "test",
            rows.into_iter().map(Ok),
            at(1),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((s.added, s.updated, s.unchanged), (3, 0, 1));
    assert_eq!(
        store.list_indicators(&ListQuery::default()).unwrap().total,
        3
    );
    // Another source listing a known value joins it in one batch.
    let s = Importer::new(&store)
        .run(
            &spec("g"),
            "plain",
            "test",
            vec![rec(1, "a.example"), rec(2, "c.example")]
                .into_iter()
                .map(Ok),
            at(1),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((s.added, s.updated), (1, 1));
    assert_eq!(
        store
            .find_indicator("a.example")
            .unwrap()
            .unwrap()
            .sources
            .len(),
        2
    );
}

#[test]
fn a_value_added_by_someone_else_during_an_import_is_joined_not_duplicated() {
    // The first import into an empty store skips the lookup of new values
    // while it is alone; an indicator added between two of its chunks (the
    // API, another process) must end that.
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut added_meanwhile = false;
    let rows = (1..=6u64).map(|line| {
        if line == 3 && !added_meanwhile {
            added_meanwhile = true;
            store
                .add_indicator(
                    &NewIndicator {
                        value: "c.example".into(),
                        ..Default::default()
                    },
                    "operator",
                    at(1),
                )
                .unwrap();
        }
        let value = ["a", "b", "c", "d", "e", "f"][line as usize - 1];
        Ok(rec(line, &format!("{value}.example")))
    });
    let s = Importer::new(&store)
        .chunk_rows(2)
        .run(&spec("f"), "plain", "test", rows, at(1), &mut |_| {})
        .unwrap();
    assert_eq!((s.added, s.updated, s.status.as_str()), (5, 1, "completed"));
    let c = store.find_indicator("c.example").unwrap().unwrap();
    assert_eq!(c.sources.len(), 2, "{:?}", c.sources);
    assert_eq!(
        store.list_indicators(&ListQuery::default()).unwrap().total,
        6
    );
}

#[test]
fn selections_cut_the_list_by_category_source_and_tlp() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    import(
        &store,
        &spec("feed-a"),
        vec![rec(1, "a1.example"), rec(2, "a2.example")],
        at(1),
    );
    let mut b = spec("feed-b");
    b.default_category = Category::Phishing;
    b.default_tlp = Tlp::Amber;
    import(&store, &b, vec![rec(1, "b1.example")], at(1));
    let (c2, _) = store
        .add_indicator(
            &NewIndicator {
                value: "c2.example".into(),
                category: Some(Category::C2),
                tlp: Some(Tlp::Red),
                ..Default::default()
            },
            "operator",
            at(1),
        )
        .unwrap();
    let dead = store.find_indicator("a2.example").unwrap().unwrap();
    store
        .set_status(dead.id, Status::FalsePositive, "test", "operator", at(1))
        .unwrap();

    let values = |sel: kanki_store::Selection| {
        let mut ids = Vec::new();
        store
            .for_each_selected(&sel, &mut |id| ids.push(id))
            .unwrap();
        let mut v: Vec<String> = ids
            .into_iter()
            .map(|id| store.get_indicator(id).unwrap().unwrap().value)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        values(Default::default()),
        ["a1.example", "b1.example", "c2.example"]
    );
    assert_eq!(
        values(kanki_store::Selection {
            categories: vec![Category::MalwareDistribution, Category::C2],
            ..Default::default()
        }),
        ["a1.example", "c2.example"]
    );
    assert_eq!(
        values(kanki_store::Selection {
            sources: vec!["feed-b".into(), "operator".into()],
            ..Default::default()
        }),
        ["b1.example", "c2.example"]
    );
    assert_eq!(
        values(kanki_store::Selection {
            sources: vec!["feed-b".into(), "operator".into()],
            tlps: vec![Tlp::Clear, Tlp::Green, Tlp::Amber],
            ..Default::default()
        }),
        ["b1.example"]
    );
    assert_eq!(c2.category, Category::C2);
}

/// A run that cannot hold what its source lists (its bound at nothing, so
/// each chunk looks up its own values) counts and stores exactly what a
/// run holding it all does: new values, repeats across and within chunks,
/// values another source lists, and a re-import.
#[test]
fn an_import_past_its_memory_bound_looks_up_each_chunk_and_answers_the_same() {
    let run = |bound: usize| {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let import = |source: &str, rows: Vec<Row>, now| {
            let s = Importer::new(&store)
                .chunk_rows(3)
                .listed_most_bytes(bound)
                .run(
                    &spec(source),
                    "plain",
                    "test",
                    rows.into_iter().map(Ok),
                    now,
                    &mut |_| {},
                )
                .unwrap();
            (s.rows_read, s.added, s.updated, s.unchanged, s.skipped)
        };
        let names = |n: u64| -> Vec<Row> {
            (0..n)
                .map(|i| rec(i + 1, &format!("n{}.example", i % 7)))
                .collect()
        };
        let mut seen = vec![
            import(
                "other",
                vec![rec(1, "n3.example"), rec(2, "x.example")],
                at(1),
            ),
            import("f", names(12), at(1)),
            import("f", names(12), at(2)),
            import("f", names(9), at(9)),
        ];
        seen.push(import("f", vec![rec(1, "new.example")], at(9)));
        let mut stored: Vec<(String, usize, Option<DateTime<Utc>>)> =
            ["n0", "n3", "n6", "x", "new"]
                .iter()
                .map(|n| {
                    let i = store
                        .find_indicator(&format!("{n}.example"))
                        .unwrap()
                        .unwrap();
                    (i.value, i.sources.len(), i.expires_at)
                })
                .collect();
        stored.sort();
        (seen, stored)
    };
    let (held, stored_held) = run(usize::MAX);
    let (looked_up, stored_looked_up) = run(0);
    assert_eq!(
        held[1],
        (12, 6, 1, 5, 0),
        "7 distinct names, one of them joined as another source lists it"
    );
    assert_eq!(held[2], (12, 0, 0, 12, 0), "a re-import changes nothing");
    assert_eq!(looked_up, held);
    assert_eq!(stored_looked_up, stored_held);
}

/// A chunk ends at its byte bound as well as its row count: rows with long
/// values commit (and report progress) in smaller chunks, and the import
/// stores every row all the same.
#[test]
fn an_import_s_chunks_end_at_their_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let long = |i: u64| format!("{}.x{i}.example", "a".repeat(60));
    let rows: Vec<Row> = (0..10).map(|i| rec(i + 1, &long(i))).collect();
    let one_row = match &rows[0] {
        Row::Record(r) => r.size_in_memory(),
        Row::Skip(_) => unreachable!(),
    };
    let mut chunks = Vec::new();
    let s = Importer::new(&store)
        .chunk_bytes(3 * one_row)
        .run(
            &spec("f"),
            "plain",
            "test",
            rows.into_iter().map(Ok),
            at(1),
            &mut |p| chunks.push(p.rows_read),
        )
        .unwrap();
    assert_eq!((s.rows_read, s.added), (10, 10));
    assert_eq!(chunks, vec![3, 6, 9, 10]);
    for i in 0..10 {
        assert!(store.find_indicator(&long(i)).unwrap().is_some(), "{i}");
    }
}
