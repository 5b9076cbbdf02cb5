//! The subscriber directory in a running `kanki serve`: RADIUS accounting
//! from FreeRADIUS's `radclient` becomes bindings that attribute addresses,
//! a NAS restart closes its sessions, and the CLI answers `who` and
//! verifies the audit log.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Env, client, eventually, free_port, need};
use serde_json::{Value, json};

fn radclient(port: u16, attrs: &str) {
    let mut c = Command::new(need("radclient", "freeradius-utils"))
        .args(["-x", "-r", "2", "-t", "2"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["acct", "testing123"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(attrs.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Accounting-Response"),
        "radclient got no Accounting-Response: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn who(api: &str, address: &str, at: i64) -> Value {
    let r = client()
        .post(format!("{api}/api/v1/who"))
        .header("X-Kanki-Actor", "soc")
        .json(&json!({
            "address": address,
            "at": chrono::DateTime::from_timestamp(at, 0).unwrap(),
            "ground": "emergency-evacuation",
            "purpose": "seen talking to a C&C server, case 42",
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
        "emergency-evacuation",
        "--purpose",
        "case 42",
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
