//! The removal loop end to end with real peers: the directory fed by
//! FreeRADIUS's `radclient` into `kanki serve`, a Shadowserver sinkhole
//! report and an X-ARF report ingested, notices delivered to a real SMTP
//! server (Python's aiosmtpd) whose mailbox the test reads, a letter
//! exported, the acknowledgement on the countermeasure site, escalation,
//! and the outcomes in /metrics.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Env, Smtp, client, eventually, free_port, need};
use serde_json::Value;

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
    assert!(out.status.success(), "radclient failed");
}

#[test]
fn from_a_sinkhole_report_to_a_notified_subscriber_who_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let radius = free_port();
    let env = Env::new(&format!(
        "\n[directory]\nrebuild_every = \"0s\"\nrefresh_every = \"100ms\"\n\n[radius]\nlisten = \"127.0.0.1:{radius}\"\n\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n\n[smtp]\nserver = \"127.0.0.1:{}\"\nfrom = \"abuse@isp.example\"\ntls = \"none\"\n\n[notices]\nmin_interval = \"0s\"\nescalate_after = 1\nsite_url = \"https://isp.example/countermeasures\"\n",
        smtp.port
    ));
    let subs = env.dir.path().join("subs.csv");
    std::fs::write(
        &subs,
        "id,email,postal_address,language,consent\nS1,s1@example.jp,,ja,yes\nS2,,大阪府大阪市北区1-2-3,en,no\n",
    )
    .unwrap();
    env.ok(&["subscribers", "import", subs.to_str().unwrap()]);
    let s = env.serve();
    let api = &s.api;
    let t0 = chrono::Utc::now().timestamp() - 7200;
    for (user, addr, sess) in [("S1", "192.0.2.10", "a"), ("S2", "192.0.2.20", "b")] {
        radclient(
            radius,
            &format!(
                "Acct-Status-Type = Start\nUser-Name = \"{user}\"\nAcct-Session-Id = \"{sess}\"\nNAS-IP-Address = 127.0.0.1\nFramed-IP-Address = {addr}\nEvent-Timestamp = {t0}\n"
            ),
        );
    }
    eventually(10, "both sessions in the index", || {
        client()
            .get(format!("{api}/api/v1/directory"))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["bindings"]
            == 2
    });

    // A sinkhole report: S1 twice (mirai), S2 once (emotet), an address
    // nobody held, and a broken row.
    let at = |secs: i64| {
        chrono::DateTime::from_timestamp(t0 + secs, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let report = env.dir.path().join("2026-05-01-event4_sinkhole-asn-jp.csv");
    std::fs::write(
        &report,
        format!(
            "\"timestamp\",\"protocol\",\"src_ip\",\"src_port\",\"dst_ip\",\"dst_port\",\"infection\",\"family\",\"tag\",\"new_column\"\n\
             \"{}\",\"tcp\",\"192.0.2.10\",51000,\"198.51.100.1\",80,\"mirai\",\"mirai\",,\"x\"\n\
             \"{}\",\"tcp\",\"192.0.2.10\",51001,\"198.51.100.1\",80,\"mirai\",\"mirai\",,\"x\"\n\
             \"{}\",\"tcp\",\"192.0.2.20\",40000,\"198.51.100.2\",443,\"emotet\",\"emotet\",,\"x\"\n\
             \"{}\",\"tcp\",\"203.0.113.9\",40000,\"198.51.100.2\",443,\"emotet\",\"emotet\",,\"x\"\n\
             \"not a time\",\"tcp\",\"192.0.2.10\",1,,,,,,\n",
            at(600),
            at(900),
            at(600),
            at(600)
        ),
    )
    .unwrap();
    let out: Value = serde_json::from_str(&env.ok(&[
        "ingest",
        "--format",
        "shadowserver",
        "--json",
        report.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(out["report_type"], "event4_sinkhole");
    assert_eq!(out["unknown_columns"][0], "new_column");
    assert_eq!(out["events"], 4);
    assert_eq!(out["attributed"], 3);
    assert_eq!(out["cases_opened"], 2);
    assert_eq!(
        out["skipped"]["time.source is missing or not a time"]["count"],
        1
    );
    assert_eq!(
        out["unattributed"]["no binding holds the address at that time"]["count"],
        1
    );
    // Each attribution is in the audit log, under the configured ground.
    let audit = env.ok(&["audit", "show", "--json"]);
    assert_eq!(audit.matches("emergency-evacuation").count(), 4, "{audit}");
    // A replay adds nothing.
    let again: Value = serde_json::from_str(&env.ok(&[
        "ingest",
        "-f",
        "shadowserver",
        "--json",
        report.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(
        (again["events"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(4))
    );

    // The dry run shows both notices and sends nothing.
    let dry = env.ok(&["notices", "send", "--dry-run"]);
    assert!(dry.contains("to S1 by mail (s1@example.jp)"), "{dry}");
    assert!(dry.contains("to S2 by letter"), "{dry}");
    assert!(smtp.mails().is_empty());

    let sent = env.ok(&["notices", "send"]);
    assert!(sent.contains("1 mailed, 1 letters queued"), "{sent}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m["to"], "s1@example.jp");
    let subject = m["subject"].as_str().unwrap();
    assert!(subject.contains("Mirai"), "{subject}");
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("S1 様"), "{body}");
    assert!(
        body.contains("https://isp.example/countermeasures/mirai"),
        "{body}"
    );
    let reference = body
        .split_whitespace()
        .find_map(|w| w.split("reference=").nth(1))
        .unwrap()
        .to_string();
    assert!(subject.contains(&reference));

    // The letter for S2, ready for the mail merge.
    let letters = env.dir.path().join("letters.csv");
    env.ok(&["notices", "letters", "-o", letters.to_str().unwrap()]);
    let text = std::fs::read_to_string(&letters).unwrap();
    assert!(
        text.contains("大阪府大阪市北区1-2-3") && text.contains("emotet"),
        "{text}"
    );

    // S1 says "I have cleaned my machine" on the countermeasure site.
    let page = client()
        .get(format!("{api}/countermeasures/ack?reference={reference}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains(&reference) && !page.to_lowercase().contains("password\""));
    let r = client()
        .post(format!("{api}/countermeasures/ack?lang=en"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("reference={reference}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad = client()
        .post(format!("{api}/countermeasures/ack"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reference=K-0000-0000-0000")
        .send()
        .unwrap();
    assert_eq!(bad.status(), 404);
    let cases: Value = client()
        .get(format!("{api}/api/v1/cases?subscriber=S1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(cases["items"][0]["state"], "acknowledged");

    // S2 did not acknowledge: the next run escalates (no consent: a letter
    // and a call-list entry, not the walled garden).
    let again = env.ok(&["notices", "send"]);
    assert!(again.contains("1 escalated"), "{again}");
    let esc: Value = client()
        .get(format!("{api}/api/v1/escalations?status=requested"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kinds: Vec<&str> = esc
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["letter", "call-list"]);

    // An X-ARF report over HTTP: S1 again, brute force.
    let xarf = format!(
        "{{\"Version\":\"4\",\"ReporterInfo\":{{\"ReporterOrg\":\"CERT\"}},\"Report\":{{\"ReportClass\":\"Activity\",\"ReportType\":\"LoginAttack\",\"Date\":\"{}\",\"SourceType\":\"ip-address\",\"Source\":\"192.0.2.10\",\"Service\":\"ssh\",\"Port\":22}}}}",
        chrono::DateTime::from_timestamp(t0 + 1200, 0)
            .unwrap()
            .to_rfc3339()
    );
    let r: Value = client()
        .post(format!("{api}/api/v1/events?format=xarf"))
        .body(xarf)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["attributed"], 1, "{r}");

    let metrics = client()
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("kanki_removal_notices{channel=\"mail\",status=\"sent\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kanki_removal_acknowledgement_ratio 0.5"),
        "{metrics}"
    );
    let report = env.ok(&["report"]);
    assert!(
        report.contains("infected subscribers      2 of 2"),
        "{report}"
    );
}

#[test]
fn the_sensor_records_a_telnet_login_and_it_becomes_a_case() {
    let port = free_port();
    let env = Env::new(&format!(
        "\n[sensor]\nlisten = [\"127.0.0.1:{port}\"]\ntelnet_ports = [{port}]\nfirst_bytes = 64\ntimeout = \"2s\"\n"
    ));
    let subs = env.dir.path().join("subs.csv");
    std::fs::write(&subs, "id,email,language,consent\nS3,s3@example.jp,en,no\n").unwrap();
    env.ok(&["subscribers", "import", subs.to_str().unwrap()]);
    let st = env.dir.path().join("static.csv");
    std::fs::write(&st, "subscriber,prefix,from,to\nS3,127.0.0.1,2024-01-01,\n").unwrap();
    env.ok(&[
        "bindings",
        "import",
        "--format",
        "static",
        st.to_str().unwrap(),
    ]);
    let s = env.serve();
    {
        use std::io::Read;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        c.write_all(b"root\r\nxc3511\r\n").unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        // It answered like a login prompt, nothing more.
        assert!(String::from_utf8_lossy(&got).contains("login:"));
    }
    eventually(10, "a case for S3", || {
        let v: Value = client()
            .get(format!("{}/api/v1/cases?subscriber=S3", s.api))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["items"][0]["class"] == "brute-force"
    });
    // The event keeps the credentials offered and the hash of the bytes.
    let e: Value = client()
        .get(format!("{}/api/v1/events/1", s.api))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        e["raw"]
            .as_str()
            .unwrap()
            .contains("\"password\":\"xc3511\""),
        "{e}"
    );
    assert_eq!(e["destination.port"], port);
}
