//! Events are stored once per key, with their raw records, and purged by age.

use chrono::{Duration, Utc};
use kanki_events::Event;
use kanki_store::{
    Case, CaseDelta, CaseFilter, CaseTarget, CaseUpdate, EventAttribution, EventBatch, EventWrite,
    RecordCounts, RemovalBackend, Severity, SqliteOptions, Store,
};

/// A new store (in a directory removed when dropped) and an ingest run.
fn store_with_an_ingest() -> (tempfile::TempDir, Store, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open_sqlite(&dir.path().join("k.sqlite3"), &SqliteOptions::default()).unwrap();
    let ingest = store
        .removal()
        .begin_ingest("test", "here", None, Utc::now())
        .unwrap();
    (dir, store, ingest)
}

/// Records one batch of events for `cases`.
fn record(
    r: &dyn RemovalBackend,
    ingest: i64,
    events: &[EventWrite],
    cases: &[CaseTarget],
    update: &mut CaseUpdate<'_>,
) -> RecordCounts {
    let batch = EventBatch::new(events.to_vec(), cases.to_vec(), Vec::new(), Utc::now());
    r.record_events(ingest, batch, update).unwrap()
}

/// Streams `batches` in order, in transactions of `window`; returns each
/// commit's number of batches and counts.
fn stream(
    r: &dyn RemovalBackend,
    ingest: i64,
    batches: Vec<EventBatch>,
    update: &mut CaseUpdate<'_>,
    window: std::time::Duration,
) -> Vec<(usize, RecordCounts)> {
    let mut batches = batches.into_iter();
    let mut commits = Vec::new();
    r.record_event_stream(
        ingest,
        &mut |_| match batches.next() {
            Some(b) => kanki_store::NextBatch::Batch(Box::new(b)),
            None => kanki_store::NextBatch::End,
        },
        update,
        &mut drop,
        &mut |batches, counts| {
            commits.push((batches, counts));
            Ok(())
        },
        window,
    )
    .unwrap();
    commits
}

/// An event of `raw` to write, not attributed.
fn unattributed(raw: &str) -> EventWrite {
    let e = event(raw);
    EventWrite {
        key: e.key(),
        event: e,
        attribution: None,
        audit: None,
        unattributed: Some("none".into()),
        case: None,
    }
}

/// The case target of S1's Mirai infection.
fn s1_mirai() -> CaseTarget {
    CaseTarget {
        subscriber: "S1".into(),
        threat: "mirai".into(),
        class: "infected-system".into(),
        severity: Severity::High,
    }
}

/// An event from 192.0.2.1 now, with its raw record.
fn event(raw: &str) -> Event {
    let mut e = Event::new(
        "192.0.2.1".parse().unwrap(),
        Utc::now(),
        "t",
        "c",
        "feed",
        "p",
    );
    e.raw = raw.as_bytes().to_vec();
    e
}

#[test]
fn events_are_stored_once_and_purged_by_age() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let e = event("header\nrow 1");
    let write = |e: &Event| EventWrite {
        key: e.key(),
        event: e.clone(),
        attribution: None,
        audit: None,
        unattributed: Some("no ground configured for class c".into()),
        case: None,
    };
    let mut other = e.clone();
    other.raw = b"header\nrow 2".to_vec();
    let batch = [write(&e), write(&other)];
    let c = record(r, ingest, &batch, &[], &mut |_, _, _| unreachable!());
    assert_eq!((c.inserted, c.duplicates), (2, 0));
    let c = record(r, ingest, &batch, &[], &mut |_, _, _| unreachable!());
    assert_eq!((c.inserted, c.duplicates), (0, 2));
    assert_eq!(
        r.known_event_keys(&[e.key(), [0; 16]]).unwrap(),
        [true, false]
    );
    // An id is the batch's segment (the first is 1) and the place in it.
    let stored = r.get_event((1 << 16) | 1).unwrap().unwrap();
    assert_eq!(stored.raw, "header\nrow 2");
    assert_eq!(stored.event.source_ip, e.source_ip);
    assert_eq!(
        stored.unattributed.as_deref(),
        Some("no ground configured for class c")
    );
    assert!(r.get_event(2).unwrap().is_none());
    let stats = r.removal_stats().unwrap();
    assert_eq!(stats.events, 2);
    assert_eq!(
        stats.unattributed_by_reason,
        [("no ground configured for class c".to_string(), 2)]
    );
    assert_eq!(r.purge_events(Utc::now() - Duration::days(1)).unwrap(), 0);
    assert_eq!(r.purge_events(Utc::now() + Duration::days(1)).unwrap(), 2);
    assert!(r.get_event(1 << 16).unwrap().is_none());
    assert_eq!(r.removal_stats().unwrap().events, 0);
    // The keys went with the events: the same records are stored again,
    // under new ids.
    assert_eq!(
        r.known_event_keys(&[e.key()]).unwrap(),
        [false],
        "purged keys"
    );
    let c = record(r, ingest, &batch, &[], &mut |_, _, _| unreachable!());
    assert_eq!((c.inserted, c.duplicates), (2, 0));
    assert!(r.get_event((2 << 16) | 1).unwrap().is_some());
}

/// The keys a writer holds in memory are brought up to date with what
/// other writers stored since: a second process stores a record, a purge
/// by it is seen too.
#[test]
fn keys_stored_or_purged_by_another_writer_are_seen() {
    let (dir, store, ingest) = store_with_an_ingest();
    let other =
        Store::open_sqlite(&dir.path().join("k.sqlite3"), &SqliteOptions::default()).unwrap();

    // Unattributed rows `h\nROW` through one store.
    let rows = |s: &Store, rows: &[&str]| {
        let writes: Vec<EventWrite> = rows
            .iter()
            .map(|r| unattributed(&format!("h\n{r}")))
            .collect();
        let none = &mut |_: &mut Case, _: &CaseDelta, _| unreachable!();
        record(s.removal(), ingest, &writes, &[], none)
    };
    // This writer reads the hour's keys (none yet) with its first record.
    assert_eq!(rows(&store, &["first"]).inserted, 1);
    assert_eq!(rows(&other, &["second"]).inserted, 1);
    let c = rows(&store, &["first", "second", "third"]);
    assert_eq!(
        (c.inserted, c.duplicates),
        (1, 2),
        "the other's key is known"
    );
    assert_eq!(
        other
            .removal()
            .purge_events(Utc::now() + Duration::days(1))
            .unwrap(),
        3
    );
    let c = rows(&store, &["first"]);
    assert_eq!((c.inserted, c.duplicates), (1, 0), "purged elsewhere");
}

#[test]
fn a_case_reads_its_events_newest_first_across_batches() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let target = |s: &str| CaseTarget {
        subscriber: s.into(),
        threat: "mirai".into(),
        class: "infected-system".into(),
        severity: Severity::High,
    };
    let cases = [target("S1"), target("S2")];
    let t0 = Utc::now() - Duration::hours(3);
    let mut n = 0;
    let mut batch = |of: &[usize]| -> Vec<EventWrite> {
        of.iter()
            .map(|&c| {
                n += 1;
                let mut e = Event::new(
                    "192.0.2.1".parse().unwrap(),
                    t0 + Duration::minutes(n),
                    "malicious-code",
                    "infected-system",
                    "feed",
                    "p",
                );
                e.raw = format!("row {n}").into_bytes();
                EventWrite {
                    key: e.key(),
                    event: e,
                    attribution: Some(EventAttribution {
                        subscriber: cases[c].subscriber.clone(),
                        confidence: "inside-session".into(),
                        audit_seq: 1,
                    }),
                    audit: None,
                    unattributed: None,
                    case: Some(c),
                }
            })
            .collect()
    };
    // S1's events are rows 1, 6 and 7, in batches 1 and 3 (its chain skips
    // batch 2); S2's are in all three.
    let batches = [batch(&[0, 1]), batch(&[1, 1]), batch(&[1, 0, 0])];
    let mut update = |c: &mut Case, d: &CaseDelta, _| {
        c.events += d.events;
        c.last_seen = c.last_seen.max(d.last_seen);
    };
    let mut opened = 0;
    for b in &batches {
        opened += record(r, ingest, b, &cases, &mut update).cases_opened;
    }
    assert_eq!(opened, 2);
    let s1 = r
        .list_cases(&CaseFilter {
            subscriber: Some("S1".into()),
            ..Default::default()
        })
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(s1.events, 3);
    let raws = |limit| -> Vec<String> {
        r.case_events(s1.id, limit)
            .unwrap()
            .into_iter()
            .map(|e| e.raw)
            .collect()
    };
    assert_eq!(raws(10), ["row 7", "row 6", "row 1"]);
    assert_eq!(raws(2), ["row 7", "row 6"]);
    // A replay of a batch changes no case.
    let c = record(r, ingest, &batches[1], &cases, &mut update);
    assert_eq!((c.inserted, c.duplicates, c.cases_updated), (0, 2, 0));
    assert_eq!(r.get_case(s1.id).unwrap().unwrap().events, 3);
}

#[test]
fn a_batch_with_some_events_stored_before_stores_only_the_others() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let writes: Vec<EventWrite> = (0..700)
        .map(|i| {
            let e = event(&format!("row {i}"));
            EventWrite {
                key: e.key(),
                event: e,
                attribution: None,
                audit: None,
                unattributed: None,
                case: None,
            }
        })
        .collect();
    // Every third stored first (as another writer would between the probe
    // and the insert), then all 700, with one repeated inside the batch.
    let first: Vec<EventWrite> = writes.iter().step_by(3).cloned().collect();
    let c = record(r, ingest, &first, &[], &mut |_, _, _| unreachable!());
    assert_eq!((c.inserted, c.duplicates), (234, 0));
    let mut all = writes.clone();
    all.push(writes[1].clone());
    let c = record(r, ingest, &all, &[], &mut |_, _, _| unreachable!());
    assert_eq!((c.inserted, c.duplicates), (466, 235));
    assert_eq!(r.removal_stats().unwrap().events, 700);
    // The second batch's events are found under their own ids.
    let e = r.get_event((2 << 16) | 1).unwrap().unwrap();
    assert_eq!(e.raw, "row 1");
    assert!(r.get_event(2 << 16).unwrap().is_none(), "stored before");
}

#[test]
fn batches_streamed_in_one_window_are_stored_with_their_audit_records() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let target = s1_mirai();
    // Three batches of two events, each attributed by its own lookup
    // record; the events of the first two fall in one hour, the third's in
    // the next.
    let hour = Utc::now().timestamp() / 3600 - 5;
    let at = |h: i64, n: i64| chrono::DateTime::from_timestamp(h * 3600 + n, 0).unwrap();
    let lookup = |n: usize| kanki_audit::AuditEntry {
        at: Utc::now(),
        actor: "removal".into(),
        action: "who-bulk".into(),
        ground: Some(kanki_audit::Ground::EmergencyEvacuation),
        purpose: format!("test batch {n}"),
        input: format!("{{\"batch\":{n}}}"),
        result: "{}".into(),
    };
    let batches: Vec<EventBatch> = (0..3)
        .map(|n| {
            let events = (0..2)
                .map(|i| {
                    let h = if n < 2 { hour } else { hour + 1 };
                    let mut e = event(&format!("batch {n} row {i}"));
                    e.time_source = at(h, (n * 2 + i) as i64);
                    EventWrite {
                        key: e.key(),
                        event: e,
                        attribution: Some(EventAttribution {
                            subscriber: "S1".into(),
                            confidence: "inside-session".into(),
                            audit_seq: 0,
                        }),
                        audit: Some(0),
                        unattributed: None,
                        case: Some(0),
                    }
                })
                .collect();
            EventBatch::new(events, vec![target.clone()], vec![lookup(n)], Utc::now())
        })
        .collect();
    let commits = stream(
        r,
        ingest,
        batches,
        &mut |c: &mut Case, d: &CaseDelta, _| c.events += d.events,
        std::time::Duration::from_secs(3600),
    );
    // One transaction for all three, one case opened and updated twice.
    assert_eq!(commits.len(), 1, "{commits:?}");
    let (n, c) = &commits[0];
    assert_eq!(
        (*n, c.inserted, c.cases_opened, c.cases_updated),
        (3, 6, 1, 2)
    );
    // Each event names the seq its batch's lookup record got, and that
    // record says so; the chain verifies.
    let mut records = Vec::new();
    store
        .directory()
        .audit_records(&Default::default(), &mut |a| records.push(a))
        .unwrap();
    assert_eq!(records.len(), 3);
    let case = r.list_cases(&CaseFilter::default()).unwrap().pop().unwrap();
    assert_eq!(case.events, 6);
    for e in r.case_events(case.id, 10).unwrap() {
        let seq = e.attribution.unwrap().audit_seq;
        let record = records.iter().find(|a| a.seq == seq).unwrap();
        let batch = &e.raw["batch ".len().."batch ".len() + 1];
        assert_eq!(record.entry.input, format!("{{\"batch\":{batch}}}"));
    }
    kanki_audit::verify(&records, kanki_audit::GENESIS).unwrap();
    // The keys of an hour are one range.
    let mut keys = Vec::new();
    r.event_keys_of_hour(hour as u32, &mut |k| keys.push(k))
        .unwrap();
    assert_eq!(keys.len(), 4);
    keys.clear();
    r.event_keys_of_hour(hour as u32 + 1, &mut |k| keys.push(k))
        .unwrap();
    assert_eq!(keys.len(), 2);
}

/// An ingest holds the open cases its batches touched from one transaction
/// to the next; a case an operator closes in between is not written over:
/// the next events open a new case.
#[test]
fn a_case_closed_between_two_transactions_of_a_stream_stays_closed() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let target = s1_mirai();
    let batch = |n: usize| {
        let e = event(&format!("h\nrow {n}"));
        let w = EventWrite {
            key: e.key(),
            event: e,
            attribution: Some(EventAttribution {
                subscriber: "S1".into(),
                confidence: "exact".into(),
                audit_seq: 0,
            }),
            audit: None,
            unattributed: None,
            case: Some(0),
        };
        EventBatch::new(vec![w], vec![target.clone()], Vec::new(), Utc::now())
    };
    let mut sent = 0;
    r.record_event_stream(
        ingest,
        &mut |_| {
            sent += 1;
            match sent {
                1 => kanki_store::NextBatch::Batch(Box::new(batch(1))),
                // The first transaction committed (no window); the writer
                // is free, and an operator closes the case.
                2 => {
                    let open = r.list_cases(&CaseFilter::default()).unwrap();
                    let change = kanki_store::CaseChange {
                        actor: "operator",
                        action: "close",
                        reason: Some("handled by phone"),
                    };
                    r.update_case(
                        open[0].id,
                        &change,
                        &mut |c| {
                            c.state = kanki_store::CaseState::Closed;
                            Ok(())
                        },
                        Utc::now(),
                    )
                    .unwrap();
                    kanki_store::NextBatch::Batch(Box::new(batch(2)))
                }
                _ => kanki_store::NextBatch::End,
            }
        },
        &mut |c: &mut Case, d: &CaseDelta, _| c.events += d.events,
        &mut drop,
        &mut |_, _| Ok(()),
        std::time::Duration::ZERO,
    )
    .unwrap();
    let cases = r.list_cases(&CaseFilter::default()).unwrap();
    let states: Vec<_> = cases.iter().map(|c| (c.state, c.events)).collect();
    assert_eq!(
        states,
        [
            (kanki_store::CaseState::Closed, 1),
            (kanki_store::CaseState::New, 1)
        ]
    );
}

/// A stream that touches many of the store's open cases reads them all in
/// one go; it still appends to those stored, and opens the others once.
#[test]
fn a_stream_touching_many_stored_cases_finds_them_all() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let mut n = 0;
    // One event for each subscriber named, of its Mirai case.
    let mut batch = |subscribers: &[&str]| {
        let (mut events, mut targets) = (Vec::new(), Vec::new());
        for s in subscribers {
            n += 1;
            let e = event(&format!("h\nrow {n}"));
            events.push(EventWrite {
                key: e.key(),
                event: e,
                attribution: Some(EventAttribution {
                    subscriber: s.to_string(),
                    confidence: "exact".into(),
                    audit_seq: 0,
                }),
                audit: None,
                unattributed: None,
                case: Some(targets.len()),
            });
            targets.push(CaseTarget {
                subscriber: s.to_string(),
                ..s1_mirai()
            });
        }
        EventBatch::new(events, targets, Vec::new(), Utc::now())
    };
    let mut update = |c: &mut Case, d: &CaseDelta, _| c.events += d.events;
    let first = batch(&["S1", "S2", "S3"]);
    let c = r.record_events(ingest, first, &mut update).unwrap();
    assert_eq!(c.cases_opened, 3);
    // One batch per transaction: after the first looked S1 up, the second
    // and third find S2, S3 and S1 among all the open cases read.
    let batches = vec![
        batch(&["S1"]),
        batch(&["S2", "S4"]),
        batch(&["S3", "S4", "S1"]),
    ];
    let commits = stream(r, ingest, batches, &mut update, std::time::Duration::ZERO);
    let counts: Vec<_> = commits
        .iter()
        .map(|(_, c)| (c.cases_opened, c.cases_updated))
        .collect();
    assert_eq!(counts, [(0, 1), (1, 1), (0, 3)]);
    let cases: Vec<_> = r
        .list_cases(&CaseFilter::default())
        .unwrap()
        .into_iter()
        .map(|c| (c.subscriber, c.events))
        .collect();
    let want = [("S1", 3), ("S2", 2), ("S3", 2), ("S4", 2)];
    assert_eq!(cases, want.map(|(s, n)| (s.to_string(), n)));
}

/// What is committed reaches the database file in the background (the
/// writer does not stop to copy its WAL back until it is very large).
#[test]
fn committed_events_reach_the_database_file_without_the_writer_checkpointing() {
    let (dir, store, ingest) = store_with_an_ingest();
    let file = dir.path().join("k.sqlite3");
    let before = std::fs::metadata(&file).unwrap().len();
    // 8 MiB of raw records that do not compress.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let events: Vec<EventWrite> = (0..128)
        .map(|n| {
            let noise: String = (0..64 * 1024)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b'!' + (seed % 90) as u8)
                })
                .collect();
            unattributed(&format!("h\n{n} {noise}"))
        })
        .collect();
    let none = &mut |_: &mut Case, _: &CaseDelta, _| unreachable!();
    record(store.removal(), ingest, &events, &[], none);
    let start = std::time::Instant::now();
    while std::fs::metadata(&file).unwrap().len() < before + (4 << 20) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the database file stayed at {} bytes",
            std::fs::metadata(&file).unwrap().len()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The queue's filter by feed: a case is found under every feed it has
/// events of, newest or oldest first, and paged; the feeds are listed.
#[test]
fn cases_are_found_by_the_feeds_of_their_events() {
    let (dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let target = |s: &str| CaseTarget {
        subscriber: s.into(),
        threat: "mirai".into(),
        class: "infected-system".into(),
        severity: Severity::High,
    };
    let cases: Vec<CaseTarget> = ["S1", "S2", "S3"].into_iter().map(target).collect();
    // (case, feed) of each event: S1 from the sinkhole, S2 from both, S3
    // from the honeypot; one event of no case from a third feed.
    let rows = [
        (Some(0), "sinkhole"),
        (Some(1), "sinkhole"),
        (Some(1), "honeypot"),
        (Some(2), "honeypot"),
        (None, "spam"),
    ];
    let writes = feed_events(&cases, &rows, "row");
    let mut update = |c: &mut Case, d: &CaseDelta, _| c.events += d.events;
    assert_eq!(
        record(r, ingest, &writes, &cases, &mut update).cases_opened,
        3
    );
    let of_feed = |feed: &str, newest_first, limit, before| -> Vec<String> {
        r.list_cases(&CaseFilter {
            feed: Some(feed.into()),
            newest_first,
            limit,
            before,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|c| c.subscriber)
        .collect()
    };
    assert_eq!(of_feed("sinkhole", false, None, None), ["S1", "S2"]);
    assert_eq!(of_feed("honeypot", true, None, None), ["S3", "S2"]);
    assert_eq!(of_feed("spam", true, None, None), Vec::<String>::new());
    let newest = r
        .list_cases(&CaseFilter {
            feed: Some("honeypot".into()),
            newest_first: true,
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(newest[0].subscriber, "S3");
    assert_eq!(
        of_feed("honeypot", true, Some(1), Some(newest[0].id)),
        ["S2"],
        "the next page"
    );
    // Other filters still apply on top.
    let s2 = r
        .list_cases(&CaseFilter {
            feed: Some("sinkhole".into()),
            subscriber: Some("S2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(s2.len(), 1);
    // With states that hold few cases, read by state and sorted: the same
    // answer, in the same order.
    let of_feed_in = |feed: &str, states: Vec<kanki_store::CaseState>, newest_first| {
        r.list_cases(&CaseFilter {
            feed: Some(feed.into()),
            states,
            newest_first,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|c| c.subscriber)
        .collect::<Vec<_>>()
    };
    use kanki_store::CaseState::{Closed, New};
    assert_eq!(of_feed_in("sinkhole", vec![New], false), ["S1", "S2"]);
    assert_eq!(
        of_feed_in("honeypot", vec![New, Closed], true),
        ["S3", "S2"]
    );
    assert!(of_feed_in("sinkhole", vec![Closed], false).is_empty());
    assert_eq!(r.case_feed_names(10).unwrap(), ["honeypot", "sinkhole"]);
    assert_eq!(r.case_feed_names(1).unwrap(), ["honeypot"]);
    // A replay adds nothing twice.
    record(r, ingest, &writes, &cases, &mut update);
    assert_eq!(of_feed("sinkhole", false, None, None), ["S1", "S2"]);
    // A held case's new feed in a later batch is written too (the feeds
    // each held case has are written once, not forgotten).
    let later = feed_events(
        &cases,
        &[(Some(0), "honeypot"), (Some(2), "sinkhole")],
        "later",
    );
    record(r, ingest, &later, &cases, &mut update);
    assert_eq!(of_feed("sinkhole", false, None, None), ["S1", "S2", "S3"]);
    assert_eq!(of_feed("honeypot", false, None, None), ["S1", "S2", "S3"]);

    // A store from before the filter finds its cases' feeds in the stored
    // events when it opens.
    let path = dir.path().join("k.sqlite3");
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("DROP TABLE case_feeds; DELETE FROM schema_migrations WHERE version = 21;")
        .unwrap();
    drop(c);
    let store = Store::open_sqlite(&path, &SqliteOptions::default()).unwrap();
    let found: Vec<String> = store
        .removal()
        .list_cases(&CaseFilter {
            feed: Some("honeypot".into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|c| c.subscriber)
        .collect();
    assert_eq!(found, ["S1", "S2", "S3"]);
}

/// Events of `cases` from feeds: `(case, feed)` each, a case index or
/// none (unattributed); `tag` makes their raw records (and keys) distinct
/// from other calls'.
fn feed_events(cases: &[CaseTarget], rows: &[(Option<usize>, &str)], tag: &str) -> Vec<EventWrite> {
    rows.iter()
        .enumerate()
        .map(|(n, &(case, feed))| {
            let mut e = Event::new(
                "192.0.2.1".parse().unwrap(),
                Utc::now(),
                "malicious-code",
                "infected-system",
                feed,
                "p",
            );
            e.raw = format!("{tag} {n}").into_bytes();
            EventWrite {
                key: e.key(),
                event: e,
                attribution: case.map(|c: usize| EventAttribution {
                    subscriber: cases[c].subscriber.clone(),
                    confidence: "inside-session".into(),
                    audit_seq: 1,
                }),
                audit: None,
                unattributed: case.is_none().then(|| "none".into()),
                case,
            }
        })
        .collect()
}

/// The dashboard's count of cases opened, by severity in their 5
/// minutes: each case once, a replay and an update adding none.
#[test]
fn cases_opened_are_counted_once_each_by_severity() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let target = |s: &str, severity| CaseTarget {
        subscriber: s.into(),
        threat: "mirai".into(),
        class: "infected-system".into(),
        severity,
    };
    let cases = vec![
        target("S1", Severity::High),
        target("S2", Severity::High),
        target("S3", Severity::Low),
        target("S4", Severity::High),
    ];
    let opened = |r: &dyn RemovalBackend| -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = r
            .activity(Utc::now() - Duration::hours(1), 3600)
            .unwrap()
            .into_iter()
            .filter(|a| a.series == "cases-opened")
            .map(|a| (a.label, a.count))
            .collect();
        counts.sort();
        counts
    };
    assert!(opened(r).is_empty());
    let mut update = |c: &mut Case, d: &CaseDelta, _| c.events += d.events;
    let first = feed_events(
        &cases,
        &[
            (Some(0), "f"),
            (Some(1), "f"),
            (Some(1), "f"),
            (Some(2), "f"),
        ],
        "first",
    );
    record(r, ingest, &first, &cases, &mut update);
    let want = |high, low| vec![("high".to_string(), high), ("low".to_string(), low)];
    assert_eq!(opened(r), want(2, 1));
    record(r, ingest, &first, &cases, &mut update);
    assert_eq!(opened(r), want(2, 1), "a replay opens nothing");
    let second = feed_events(&cases, &[(Some(0), "f"), (Some(3), "f")], "second");
    record(r, ingest, &second, &cases, &mut update);
    assert_eq!(opened(r), want(3, 1), "S1 updated, S4 opened");
}

/// The queue by the latest event: the most recently seen case first,
/// paged by (last seen, id), with the other filters on top.
#[test]
fn cases_are_listed_most_recently_seen_first_and_paged() {
    let (_dir, store, ingest) = store_with_an_ingest();
    let r = store.removal();
    let t0 = Utc::now() - Duration::hours(5);
    let cases: Vec<CaseTarget> = ["S1", "S2", "S3", "S4"]
        .into_iter()
        .map(|s| CaseTarget {
            subscriber: s.into(),
            threat: "mirai".into(),
            class: "infected-system".into(),
            severity: Severity::High,
        })
        .collect();
    // S1 seen 3 h after t0, S2 1 h, S3 2 h, S4 3 h too (a tie, broken by
    // id); S2 from another feed.
    let writes: Vec<EventWrite> = [(0, 3, "a"), (1, 1, "b"), (2, 2, "a"), (3, 3, "a")]
        .into_iter()
        .map(|(case, hours, feed)| {
            let mut e = Event::new(
                "192.0.2.1".parse().unwrap(),
                t0 + Duration::hours(hours),
                "malicious-code",
                "infected-system",
                feed,
                "p",
            );
            e.raw = format!("row {case}").into_bytes();
            EventWrite {
                key: e.key(),
                event: e,
                attribution: Some(EventAttribution {
                    subscriber: cases[case].subscriber.clone(),
                    confidence: "inside-session".into(),
                    audit_seq: 1,
                }),
                audit: None,
                unattributed: None,
                case: Some(case),
            }
        })
        .collect();
    let mut update = |_: &mut Case, _: &CaseDelta, _| {};
    record(r, ingest, &writes, &cases, &mut update);
    let list = |feed: Option<&str>, limit, seen_before| -> Vec<Case> {
        r.list_cases(&CaseFilter {
            by_last_seen: true,
            feed: feed.map(String::from),
            limit,
            seen_before,
            ..Default::default()
        })
        .unwrap()
    };
    let names =
        |cases: &[Case]| -> Vec<String> { cases.iter().map(|c| c.subscriber.clone()).collect() };
    assert_eq!(names(&list(None, None, None)), ["S4", "S1", "S3", "S2"]);
    let first = list(None, Some(2), None);
    assert_eq!(names(&first), ["S4", "S1"]);
    let last = first.last().unwrap();
    assert_eq!(
        names(&list(None, Some(2), Some((last.last_seen, last.id)))),
        ["S3", "S2"],
        "the next page, past the tie"
    );
    assert_eq!(names(&list(Some("a"), None, None)), ["S4", "S1", "S3"]);
    let by_state = r
        .list_cases(&CaseFilter {
            by_last_seen: true,
            states: vec![kanki_store::CaseState::New],
            subscriber: Some("S3".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(names(&by_state), ["S3"]);
    // States that hold few cases are read by state and sorted by last
    // seen: the same order and pages.
    let in_state = |feed: Option<&str>, limit, seen_before| {
        r.list_cases(&CaseFilter {
            by_last_seen: true,
            states: vec![kanki_store::CaseState::New],
            feed: feed.map(String::from),
            limit,
            seen_before,
            ..Default::default()
        })
        .unwrap()
    };
    assert_eq!(names(&in_state(None, None, None)), ["S4", "S1", "S3", "S2"]);
    let first = in_state(None, Some(2), None);
    let last = first.last().unwrap();
    assert_eq!(
        names(&in_state(None, Some(2), Some((last.last_seen, last.id)))),
        ["S3", "S2"]
    );
    assert_eq!(names(&in_state(Some("a"), None, None)), ["S4", "S1", "S3"]);
}
