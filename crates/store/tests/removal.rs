//! Events are stored once per key, with their raw records, and purged by age.

use chrono::{Duration, Utc};
use kanki_events::Event;
use kanki_store::{EventWrite, SqliteOptions, Store};

#[test]
fn events_are_stored_once_and_purged_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open_sqlite(&dir.path().join("k.sqlite3"), &SqliteOptions::default()).unwrap();
    let r = store.removal();
    let ingest = r.begin_ingest("test", "here", None, Utc::now()).unwrap();
    let mut e = Event::new(
        "192.0.2.1".parse().unwrap(),
        Utc::now(),
        "t",
        "c",
        "feed",
        "p",
    );
    e.raw = b"header\nrow 1".to_vec();
    let write = |e: &Event| EventWrite {
        key: e.key(),
        event: e.clone(),
        attribution: None,
        unattributed: Some("no ground configured for class c".into()),
        case: None,
    };
    let mut other = e.clone();
    other.raw = b"header\nrow 2".to_vec();
    let batch = [write(&e), write(&other)];
    let c = r
        .record_events(ingest, &batch, &[], &mut |_, _| unreachable!(), Utc::now())
        .unwrap();
    assert_eq!((c.inserted, c.duplicates), (2, 0));
    let c = r
        .record_events(ingest, &batch, &[], &mut |_, _| unreachable!(), Utc::now())
        .unwrap();
    assert_eq!((c.inserted, c.duplicates), (0, 2));
    assert_eq!(
        r.known_event_keys(&[e.key(), [0; 16]]).unwrap(),
        [true, false]
    );
    let stored = r.get_event(2).unwrap().unwrap();
    assert_eq!(stored.raw, "header\nrow 2");
    assert_eq!(r.purge_events(Utc::now() - Duration::days(1)).unwrap(), 0);
    assert_eq!(r.purge_events(Utc::now() + Duration::days(1)).unwrap(), 2);
    assert!(r.get_event(1).unwrap().is_none());
}
