//! The files kanki keeps: the data directory and the database (who held
//! which address, the audit log) for kanki's user alone, and the watched
//! directory that takes only regular files, never a symbolic link to
//! somewhere else.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Env, eventually, sinkhole_csv};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_data_directory_and_the_database_are_for_kankis_user_alone() {
    let env = Env::new("");
    env.ok(&["audit", "verify"]);
    let data = env.dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for f in ["kanki.sqlite3", "kanki.sqlite3-wal", "kanki.sqlite3-shm"] {
        let p = data.join(f);
        if f == "kanki.sqlite3" || p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    // A database left readable by an older version is taken back.
    std::fs::set_permissions(
        data.join("kanki.sqlite3"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    env.ok(&["audit", "verify"]);
    assert_eq!(mode(&data.join("kanki.sqlite3")), 0o600);
}

#[test]
fn a_symbolic_link_in_the_watched_directory_is_not_followed() {
    let watch = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let w = watch.path();
    let env = Env::new(&format!("\n[removal]\nwatch_dir = \"{}\"\n", w.display()));
    // A file kanki can read but nobody meant it to ingest (it could be any
    // file: its text would land in failed/ with the error).
    let outside = elsewhere
        .path()
        .join("2026-05-02-event4_sinkhole-asn-jp.csv");
    std::fs::write(&outside, sinkhole_csv(&[("192.0.2.7", "mirai")])).unwrap();
    let link = w.join("2026-05-02-event4_sinkhole-asn-jp.csv");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let _s = env.serve();
    let real = "2026-05-03-event4_sinkhole-asn-jp.csv";
    std::fs::write(
        w.join(real),
        sinkhole_csv(&[("192.0.2.8", "mirai"), ("192.0.2.9", "mirai")]),
    )
    .unwrap();
    eventually(30, "the regular file ingested", || {
        w.join("done").join(real).exists()
    });
    let summary = std::fs::read_to_string(w.join(format!("done/{real}.summary.json"))).unwrap();
    assert!(summary.contains("\"events\": 2"), "{summary}");
    // The link is where it was, untouched; nothing read through it.
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let moved: Vec<_> = ["done", "failed"]
        .iter()
        .flat_map(|d| std::fs::read_dir(w.join(d)).unwrap().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("2026-05-02"))
        .collect();
    assert!(moved.is_empty(), "{moved:?}");
}
