//! Signed checkpoints of the audit chain's head, as an operator uses them:
//! a key from `kanki audit keygen`, checkpoints written to a file, and
//! `kanki audit verify --checkpoint FILE`, which catches what the chain
//! alone cannot: the newest records cut off, and the log rewritten from a
//! record on with every hash after it recomputed (by someone who can write
//! the database).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::Env;

/// A data directory whose audit log has 5 records and two checkpoints
/// (of records 3 and 5) in the checkpoint file.
struct Logged {
    env: Env,
    checkpoints: PathBuf,
    public_key: String,
}

fn lookup(env: &Env) {
    // A lookup of nobody is audited all the same (exit 1: no holder).
    let out = env.run(&[
        "who",
        "192.0.2.1",
        "--at",
        "2026-11-16 12:00:00",
        "--ground",
        "legitimate-business",
        "--program",
        "OP25B",
        "--purpose",
        "an abused SMTP-AUTH account",
    ]);
    assert!(out.status.code() == Some(1), "{out:?}");
}

fn logged() -> Logged {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("checkpoint.key");
    let checkpoints = dir.path().join("checkpoints.log");
    let env = Env::new(&format!(
        "\n[audit]\ncheckpoint_key_file = \"{}\"\ncheckpoint_to = \"{}\"\n",
        key.display(),
        checkpoints.display()
    ));
    let public_key = env.ok(&["audit", "keygen", key.to_str().unwrap()]);
    let public_key = public_key.trim().to_string();
    assert_eq!(public_key.len(), 64, "{public_key}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    for _ in 0..3 {
        lookup(&env);
    }
    let line = env.ok(&["audit", "checkpoint"]);
    assert!(
        line.starts_with("kanki-audit-checkpoint v1 seq=3 "),
        "{line}"
    );
    for _ in 0..2 {
        lookup(&env);
    }
    env.ok(&["audit", "checkpoint"]);
    assert_eq!(
        std::fs::read_to_string(&checkpoints)
            .unwrap()
            .lines()
            .count(),
        2
    );
    // The tempdir of the key lives as long as the test process needs it.
    std::mem::forget(dir);
    Logged {
        env,
        checkpoints,
        public_key,
    }
}

impl Logged {
    fn verify(&self) -> (Option<i32>, String) {
        let out = self.env.run(&[
            "audit",
            "verify",
            "--checkpoint",
            self.checkpoints.to_str().unwrap(),
            "--public-key",
            &self.public_key,
        ]);
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.env.dir.path().join("data/kanki.sqlite3")).unwrap()
    }
}

#[test]
fn a_log_verifies_against_its_checkpoints() {
    let l = logged();
    let (code, out) = l.verify();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("audit log intact: 5 records"), "{out}");
    assert!(out.contains("checkpoints: 2 confirmed"), "{out}");
    // A checkpoint of another key is refused.
    let other = l.env.dir.path().join("other.key");
    let other_key = l.env.ok(&["audit", "keygen", other.to_str().unwrap()]);
    let out = l.env.run(&[
        "audit",
        "verify",
        "--checkpoint",
        l.checkpoints.to_str().unwrap(),
        "--public-key",
        other_key.trim(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signed by key"),
        "{out:?}"
    );
    // A checkpoint line edited: its signature fails.
    let text = std::fs::read_to_string(&l.checkpoints).unwrap();
    std::fs::write(&l.checkpoints, text.replacen("seq=5", "seq=4", 1)).unwrap();
    let (code, out) = l.verify();
    assert_ne!(code, Some(0));
    assert!(out.contains("signature does not verify"), "{out}");
}

#[test]
fn a_log_cut_short_after_a_checkpoint_fails_verification() {
    let l = logged();
    l.db()
        .execute("DELETE FROM audit_log WHERE seq > 3", [])
        .unwrap();
    // The chain alone still links: the cut does not show without the
    // checkpoint.
    let plain = l.env.ok(&["audit", "verify"]);
    assert!(plain.starts_with("audit log intact: 3 records"), "{plain}");
    let (code, out) = l.verify();
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("checkpoint signed record 5, but the log ends at record 3"),
        "{out}"
    );
}

#[test]
fn a_log_rewritten_after_a_checkpoint_fails_verification() {
    let l = logged();
    // Record 2 changed, and every hash from it on recomputed.
    let db = l.db();
    db.execute_batch("DROP TRIGGER audit_log_no_update")
        .unwrap();
    let mut stmt = db
        .prepare(
            "SELECT seq, at, actor, action, ground, purpose, input, result, prev_hash FROM audit_log ORDER BY seq",
        )
        .unwrap();
    let rows: Vec<(i64, kanki_audit::AuditEntry, String)> = stmt
        .query_map([], |r| {
            let at: String = r.get(1)?;
            let ground: Option<String> = r.get(4)?;
            Ok((
                r.get(0)?,
                kanki_audit::AuditEntry {
                    at: chrono::DateTime::parse_from_rfc3339(&at).unwrap().to_utc(),
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    ground: ground.map(|g| g.parse().unwrap()),
                    purpose: r.get(5)?,
                    input: r.get(6)?,
                    result: r.get(7)?,
                },
                r.get(8)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(stmt);
    let mut prev = rows[0].2.clone();
    for (seq, mut entry, _) in rows {
        if seq == 2 {
            entry.purpose = "nothing to see".into();
        }
        let hash = kanki_audit::record_hash(seq, &entry, &prev);
        db.execute(
            "UPDATE audit_log SET purpose = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![entry.purpose, prev, hash, seq],
        )
        .unwrap();
        prev = hash;
    }
    drop(db);
    let plain = l.env.ok(&["audit", "verify"]);
    assert!(plain.starts_with("audit log intact: 5 records"), "{plain}");
    let (code, out) = l.verify();
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("audit record 3 is broken"), "{out}");
    assert!(out.contains("rewritten"), "{out}");
}
