//! The subscriber directory in a running `kanki serve`: RADIUS accounting
//! from FreeRADIUS's `radclient` becomes bindings that attribute addresses,
//! a NAS restart closes its sessions, and the CLI answers `who` and
//! verifies the audit log.

mod common;

use std::process::Command;

use common::{Env, client, eventually, free_port, need, radclient};
use serde_json::{Value, json};

fn who(api: &str, address: &str, at: i64) -> Value {
    let r = client()
        .post(format!("{api}/api/v1/who"))
        .header("X-Kanki-Actor", "soc")
        .json(&json!({
            "address": address,
            "at": chrono::DateTime::from_timestamp(at, 0).unwrap(),
            "ground": "legitimate-business",
            "program": "OP25B",
            "purpose": "outbound SMTP from this address",
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

#[test]
fn radius_accounting_attributes_addresses_and_a_nas_restart_closes_sessions() {
    let radius = free_port();
    let env = Env::new(&format!(
        "\n[directory]\nrebuild_every = \"0s\"\nrefresh_every = \"100ms\"\n\n[radius]\nlisten = \"127.0.0.1:{radius}\"\n\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n"
    ));
    let subs = env.dir.path().join("subs.csv");
    std::fs::write(
        &subs,
        "id,email,language,consent\nS1,s1@example.jp,ja,yes\n",
    )
    .unwrap();
    env.ok(&["subscribers", "import", subs.to_str().unwrap()]);
    let s = env.serve();
    let api = &s.api;

    let t0 = chrono::Utc::now().timestamp() - 3600;
    radclient(
        radius,
        &format!(
            "Acct-Status-Type = Start\nUser-Name = \"S1\"\nAcct-Session-Id = \"sess-1\"\nNAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 192.0.2.10\nDelegated-IPv6-Prefix = 2001:db8:10:100::/56\nEvent-Timestamp = {t0}\n"
        ),
    );
    eventually(5, "the session in the index", || {
        client()
            .get(format!("{api}/api/v1/directory"))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["bindings"]
            == 2
    });
    let a = who(api, "192.0.2.10", t0 + 600);
    assert_eq!(a["subscriber"], "S1");
    assert_eq!(a["confidence"], "exact");
    let a = who(api, "2001:db8:10:1ff::1", t0 + 600);
    assert_eq!(
        (a["subscriber"].as_str(), a["confidence"].as_str()),
        (Some("S1"), Some("inside-session"))
    );
    // Before the session: nobody; just before, within the clock skew: S1,
    // near a boundary.
    assert_eq!(who(api, "192.0.2.10", t0 - 3600)["confidence"], "none");
    assert_eq!(
        who(api, "192.0.2.10", t0 - 30)["confidence"],
        "near-boundary"
    );

    // A retransmitted Start changes nothing; the NAS restarts: every session
    // it had open ends then.
    radclient(
        radius,
        &format!(
            "Acct-Status-Type = Start\nUser-Name = \"S1\"\nAcct-Session-Id = \"sess-1\"\nNAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 192.0.2.10\nDelegated-IPv6-Prefix = 2001:db8:10:100::/56\nEvent-Timestamp = {t0}\n"
        ),
    );
    let t1 = t0 + 1800;
    radclient(
        radius,
        &format!(
            "Acct-Status-Type = Accounting-On\nNAS-IP-Address = 127.0.0.1\nEvent-Timestamp = {t1}\n"
        ),
    );
    eventually(5, "the session closed by the NAS restart", || {
        who(api, "192.0.2.10", t1 + 600)["confidence"] == "none"
    });
    assert_eq!(who(api, "192.0.2.10", t1 - 600)["subscriber"], "S1");

    // The CLI answers too, and every answer above is in a verified log.
    let out = env.ok(&[
        "who",
        "192.0.2.10",
        "--at",
        &chrono::DateTime::from_timestamp(t0 + 600, 0)
            .unwrap()
            .to_rfc3339(),
        "--ground",
        "legitimate-business",
        "--program",
        "OP25B",
        "--purpose",
        "outbound SMTP from this address",
    ]);
    assert!(out.contains("S1 (exact)"), "{out}");
    let verified = env.ok(&["audit", "verify"]);
    assert!(verified.starts_with("audit log intact"), "{verified}");
    let metrics = client()
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("kanki_radius_requests_total{outcome=\"answered\"} 3"),
        "{metrics}"
    );
}

fn who_cli(env: &Env, args: &[&str]) -> Value {
    let mut a = vec![
        "who",
        "--ground",
        "legitimate-business",
        "--program",
        "OP25B",
        "--purpose",
        "test",
        "--json",
    ];
    a.extend_from_slice(args);
    let out = env.run(&a);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn answer(v: &Value) -> (Option<&str>, &str) {
    (v["subscriber"].as_str(), v["confidence"].as_str().unwrap())
}

#[test]
fn leases_static_assignments_and_cgnat_blocks_attribute_addresses() {
    let env = Env::new("");
    let d = env.dir.path();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let subs = write(
        "subs.csv",
        "id,email,language,consent,hw_addrs\nS1,,ja,yes,00:16:3e:5a:10:01\nS2,,ja,yes,00:16:3e:5a:10:02\nS3,,en,no,\n",
    );
    env.ok(&["subscribers", "import", &subs]);

    // Back-to-back leases of one address to two subscribers' devices.
    let e = 1_794_801_600i64;
    let kea = write(
        "leases4.csv",
        &format!(
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n\
             192.0.2.10,00:16:3e:5a:10:01,,3600,{e},1,0,0,,0,,0\n\
             192.0.2.10,00:16:3e:5a:10:02,,3600,{},1,0,0,,0,,0\n\
             not-an-address,00:16:3e:5a:10:02,,3600,{e},1,0,0,,0,,0\n",
            e + 3600
        ),
    );
    let out = env.ok(&["bindings", "import", "--format", "kea", &kea]);
    assert!(
        out.contains("2 added") && out.contains("1 skipped"),
        "{out}"
    );
    // Importing it again changes nothing.
    let out = env.ok(&["bindings", "import", "--format", "kea", &kea]);
    assert!(
        out.contains("0 added") && out.contains("2 unchanged"),
        "{out}"
    );

    let statics = write(
        "static.csv",
        "subscriber,prefix,from,to\nS3,198.51.100.0/29,2026-01-01,\nS2,100.64.12.35,2026-01-01,\n",
    );
    env.ok(&["bindings", "import", "--format", "static", &statics]);
    let cgnat = write(
        "cgnat.csv",
        "subscriber,private_address,public_address,first_port,last_port,from,to\n\
         S1,100.64.12.34,203.0.113.7,1024,1535,2026-11-16T03:00:00Z,2026-11-16T09:00:00Z\n\
         ,100.64.12.35,203.0.113.7,1536,2047,2026-11-16T03:00:00Z,\n",
    );
    env.ok(&["bindings", "import", "--format", "cgnat", &cgnat]);

    let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
    let v = who_cli(&env, &["192.0.2.10", "--at", &at(e - 1800)]);
    assert_eq!(answer(&v), (Some("S1"), "exact"));
    let v = who_cli(&env, &["192.0.2.10", "--at", &at(e + 1800)]);
    assert_eq!(answer(&v), (Some("S2"), "exact"));
    // At the hand-over, within the clock skew, both are possible.
    let v = who_cli(&env, &["192.0.2.10", "--at", &at(e + 30)]);
    assert_eq!(answer(&v), (None, "ambiguous"));
    assert_eq!(v["holders"].as_array().unwrap().len(), 2);

    // A prefix contains its addresses.
    let v = who_cli(&env, &["198.51.100.6", "--at", "2026-11-16 12:00:00"]);
    assert_eq!(answer(&v), (Some("S3"), "inside-session"));
    let v = who_cli(&env, &["198.51.100.9", "--at", "2026-11-16 12:00:00"]);
    assert_eq!(answer(&v), (None, "none"));

    // CGNAT: the port decides; an inside address is followed to its holder.
    let v = who_cli(
        &env,
        &[
            "203.0.113.7",
            "--port",
            "1100",
            "--at",
            "2026-11-16 05:00:00",
        ],
    );
    assert_eq!(answer(&v), (Some("S1"), "exact"));
    let v = who_cli(
        &env,
        &[
            "203.0.113.7",
            "--port",
            "1600",
            "--at",
            "2026-11-16 05:00:00",
        ],
    );
    assert_eq!(answer(&v), (Some("S2"), "exact"));
    assert_eq!(v["holders"][0]["through"][0]["prefix"], "100.64.12.35/32");
    let v = who_cli(&env, &["203.0.113.7", "--at", "2026-11-16 05:00:00"]);
    assert_eq!(answer(&v), (None, "ambiguous"));
    let v = who_cli(
        &env,
        &[
            "203.0.113.7",
            "--port",
            "1100",
            "--at",
            "2026-11-16 10:00:00",
        ],
    );
    assert_eq!(answer(&v), (None, "none"));

    // Every one of those lookups is in the audit log, which verifies; a
    // record changed behind kanki's back is named.
    let shown = env.ok(&["audit", "show", "--action", "who", "--json"]);
    assert_eq!(shown.lines().count(), 9);
    // With the import's two grants of consent, in the same chain.
    assert_eq!(
        env.ok(&["audit", "show", "--action", "consent-grant", "--json"])
            .lines()
            .count(),
        2
    );
    assert!(
        env.ok(&["audit", "verify"])
            .starts_with("audit log intact: 11 records")
    );
    let db = d.join("data").join("kanki.sqlite3");
    let conn = rusqlite_open(&db);
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET purpose = 'nothing to see' WHERE seq = 2;",
    )
    .unwrap();
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("audit record 2 is broken"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The test edits the database directly, as an intruder with file access
/// would (through the sqlite3 shell, installed by scripts/test.sh).
fn rusqlite_open(db: &std::path::Path) -> Sqlite {
    Sqlite(db.to_path_buf())
}

struct Sqlite(std::path::PathBuf);

impl Sqlite {
    fn execute_batch(&self, sql: &str) -> Result<(), String> {
        let out = Command::new(need("sqlite3", "sqlite3"))
            .arg(&self.0)
            .arg(sql)
            .output()
            .map_err(|e| e.to_string())?;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
