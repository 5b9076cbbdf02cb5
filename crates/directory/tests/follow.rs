//! Following a growing FreeRADIUS `detail` file with the follower every
//! followed format shares.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use kanki_directory::sources::{Tail, TailPosition};
use kanki_directory::{BindingEvent, BindingOrigin, BindingRow};

fn record(session: u32) -> String {
    format!(
        "Mon Nov 16 12:00:{:02} 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"u{session}@isp.example\"\n\tAcct-Session-Id = \"S{session}\"\n\tFramed-IP-Address = 198.51.100.{}\n\tNAS-IP-Address = 192.0.2.1\n\tTimestamp = {}\n\n",
        session % 60,
        session % 250,
        1_794_830_400 + u64::from(session),
    )
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The session ids and line numbers one poll yields.
fn poll(f: &mut Tail) -> Vec<(u64, String)> {
    f.poll()
        .unwrap()
        .rows
        .into_iter()
        .map(|r| match r {
            BindingRow::Event {
                line,
                event: BindingEvent::Session(s),
            } => (line, s.session_id),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn ids(rows: &[(u64, String)]) -> Vec<&str> {
    rows.iter().map(|(_, s)| s.as_str()).collect()
}

#[test]
fn sees_appended_records_once_they_are_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("detail");
    let mut f = Tail::new(BindingOrigin::Detail, &path, None);
    assert!(poll(&mut f).is_empty(), "no file yet");

    append(&path, &record(1));
    append(&path, &record(2));
    let r3 = record(3);
    // Half of record 3: not complete, not read.
    append(&path, &r3[..40]);
    let got = poll(&mut f);
    assert_eq!(ids(&got), ["S1", "S2"]);
    assert_eq!(got[1].0, 9, "line numbers count from the file's start");
    assert_eq!(f.position().unwrap().offset, 2 * record(1).len() as u64);
    assert!(poll(&mut f).is_empty());

    // The rest of record 3 and all of record 4.
    append(&path, &r3[40..]);
    append(&path, &record(4));
    let got = poll(&mut f);
    assert_eq!(ids(&got), ["S3", "S4"]);
    assert_eq!(got[0].0, 17);

    // A record without its blank line yet is not complete.
    let r5 = record(5);
    append(&path, r5.trim_end_matches('\n'));
    append(&path, "\n");
    assert!(poll(&mut f).is_empty());
    append(&path, "\n");
    assert_eq!(ids(&poll(&mut f)), ["S5"]);

    // Resuming from the saved position reads only what is new.
    let at: TailPosition = f.position().unwrap();
    append(&path, &record(6));
    let mut resumed = Tail::new(BindingOrigin::Detail, &path, Some(at));
    assert_eq!(poll(&mut resumed), vec![(41, "S6".to_string())]);
}

#[test]
fn follows_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("detail");
    append(&path, &record(1));
    let mut f = Tail::new(BindingOrigin::Detail, &path, None);
    assert_eq!(ids(&poll(&mut f)), ["S1"]);

    // Written to the old file just before it was rotated (its last record
    // without its blank line), then a new file at the path.
    append(&path, record(2).trim_end_matches('\n'));
    fs::rename(&path, dir.path().join("detail.1")).unwrap();
    append(&path, &record(3));
    let got = poll(&mut f);
    assert_eq!(ids(&got), ["S2", "S3"]);
    assert_eq!(got[1].0, 1, "the new file counts lines from 1");
    assert_eq!(f.position().unwrap().offset, record(3).len() as u64);

    // Rotation by copy and truncate: the file shrinks.
    fs::write(&path, "").unwrap();
    assert!(poll(&mut f).is_empty());
    append(&path, &record(4));
    assert_eq!(poll(&mut f), vec![(1, "S4".to_string())]);

    // The path gone for a moment: nothing, and no error.
    fs::remove_file(&path).unwrap();
    assert!(poll(&mut f).is_empty());
    append(&path, &record(5));
    assert_eq!(ids(&poll(&mut f)), ["S5"]);
}
