//! The removal loop end to end with real peers: the directory fed by
//! FreeRADIUS's `radclient` into `kanki serve`, a Shadowserver sinkhole
//! report and an X-ARF report ingested, notices delivered to a real SMTP
//! server (Python's aiosmtpd) whose mailbox the test reads, a letter
//! exported, the acknowledgement on the countermeasure site, escalation,
//! and the outcomes in /metrics.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{
    Env, SINKHOLE_HEADER, Smtp, anonymous_client, client, eventually, free_port, need, python,
    sinkhole_csv, succeed,
};
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
    // The abuse desk's own mail server, where bounces of notices arrive.
    std::fs::create_dir_all(dir.path().join("abuse")).unwrap();
    let abuse_mx = Smtp::start(&dir.path().join("abuse"));
    let radius = free_port();
    // The countermeasure site on its own listener; notices link to it.
    let site_port = free_port();
    let env = Env::new(&format!(
        "\n[directory]\nrebuild_every = \"0s\"\nrefresh_every = \"100ms\"\n\n[radius]\nlisten = \"127.0.0.1:{radius}\"\n\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n\n[smtp]\nserver = \"127.0.0.1:{}\"\nfrom = \"abuse@isp.example\"\ntls = \"none\"\n\n[notices]\nmin_interval = \"0s\"\nescalate_after = 1\nbounce_maildir = \"{}\"\n\n[countermeasure_site]\nlisten = \"127.0.0.1:{site_port}\"\n",
        smtp.port,
        abuse_mx.maildir().display()
    ));
    let site = format!("http://127.0.0.1:{site_port}/countermeasures");
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
    let out: Value = ingest(&env, "shadowserver", &report);
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
    // Each attribution is in the audit log, under the configured ground:
    // the batch's lookups listed in one record, each with its answer, as
    // rows under named columns.
    let audit = env.ok(&["audit", "show", "--action", "who-bulk", "--json"]);
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["ground"], "emergency-evacuation");
    let input: Value = serde_json::from_str(records[0]["input"].as_str().unwrap()).unwrap();
    let result: Value = serde_json::from_str(records[0]["result"].as_str().unwrap()).unwrap();
    assert_eq!(input["lookups"].as_array().unwrap().len(), 4, "{input}");
    assert_eq!(
        input["columns"],
        serde_json::json!(["address", "port", "at"])
    );
    assert_eq!(
        result["columns"],
        serde_json::json!(["confidence", "subscriber", "bindings"])
    );
    let answers = result["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 4, "{result}");
    assert_eq!(
        answers.iter().filter(|a| a[1].is_string()).count(),
        3,
        "{result}"
    );
    // A replay adds nothing.
    let again: Value = ingest(&env, "shadowserver", &report);
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
    assert!(body.contains(&format!("{site}/mirai")), "{body}");
    assert!(body.contains(&format!("{site}/ack?reference=")), "{body}");
    let reference = body
        .split_whitespace()
        .find_map(|w| w.split("reference=").nth(1))
        .unwrap()
        .to_string();
    assert!(subject.contains(&reference));

    // S1 checks that the mail is really from the ISP: the site says when
    // and how that notice went out and about what, and nothing about S1;
    // a reference of no notice is called a fake.
    assert!(body.contains(&format!("{site}/verify")), "{body}");
    // Subscribers reach the site on its own listener, never the operator
    // API's, which does not serve it.
    let on_api = anonymous_client()
        .get(format!("{api}/countermeasures/verify?lang=en"))
        .send()
        .unwrap();
    assert_eq!(on_api.status(), 404);
    let verify = |r: &str| {
        let resp = anonymous_client()
            .get(format!(
                "{site}/verify?lang=en&reference={}",
                r.replace(' ', "%20")
            ))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    let (status, page) = verify(&format!(" {} ", reference.to_lowercase()));
    assert_eq!(status, 200, "{page}");
    let today = chrono::Utc::now().date_naive().to_string();
    assert!(
        page.contains(&format!(
            "Notice {reference} was sent by us on {today} by e-mail, about mirai"
        )),
        "{page}"
    );
    // The reference and the style nonce are random and may themselves
    // contain "S1"; what matters is the rest of the page.
    let shown: String = page
        .replace(&reference, "")
        .split("nonce=\"")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once('"').map_or("", |(_, rest)| rest)
            }
        })
        .collect();
    assert!(
        !shown.contains("S1") && !shown.contains("s1@example.jp") && !shown.contains("192.0.2.10"),
        "{page}"
    );
    let (status, page) = verify("K-AAAA-BBBB-CCCC");
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("the message did not come from us"), "{page}");
    let (status, page) = verify("");
    assert_eq!(status, 200);
    assert!(page.contains("id=\"verify\""), "{page}");

    // The letter for S2, ready for the mail merge.
    let letters = env.dir.path().join("letters.csv");
    env.ok(&["notices", "letters", "-o", letters.to_str().unwrap()]);
    let text = std::fs::read_to_string(&letters).unwrap();
    assert!(
        text.contains("大阪府大阪市北区1-2-3") && text.contains("emotet"),
        "{text}"
    );

    // S1 says "I have cleaned my machine" on the countermeasure site.
    let page = anonymous_client()
        .get(format!("{site}/ack?reference={reference}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains(&reference) && !page.to_lowercase().contains("password\""));
    let r = anonymous_client()
        .post(format!("{site}/ack?lang=en"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("reference={reference}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad = anonymous_client()
        .post(format!("{site}/ack"))
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

    // S2 did not acknowledge: the next run escalates (no consent: not the
    // walled garden but, with a postal address, a letter).
    let again = env.ok(&["notices", "send"]);
    assert!(
        again.contains("1 escalated (0 into the walled garden)"),
        "{again}"
    );
    let esc: Value = client()
        .get(format!("{api}/api/v1/escalations?status=requested"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(esc.as_array().unwrap().is_empty(), "{esc}");
    let esc: Value = client()
        .get(format!("{api}/api/v1/escalations?status=active"))
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
    assert_eq!(kinds, ["letter"]);
    env.ok(&["notices", "letters", "-o", letters.to_str().unwrap()]);
    let text = std::fs::read_to_string(&letters).unwrap();
    assert!(text.contains("大阪府大阪市北区1-2-3"), "{text}");

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

    // Later, S1's mail server bounces the notice it had accepted. The
    // bounce is mailed to the abuse desk's mail server, which delivers it
    // into the maildir serve reads; it quotes the headers of the mail as
    // it was delivered, whose Message-ID names the notice. A message in
    // the same mailbox that is not a bounce is left there, unseen, for the
    // people who read it.
    let message_id = m["message_id"].as_str().unwrap();
    assert!(message_id.contains(&reference), "{message_id}");
    let bounce = bounce_of(m["headers"].as_str().unwrap(), "s1@example.jp");
    let lunch = "From: noc@isp.example\r\nSubject: lunch\r\n\r\nat noon\r\n";
    abuse_mx.deliver("abuse@isp.example", &bounce);
    abuse_mx.deliver("abuse@isp.example", lunch);
    eventually(20, "serve reading the bounce from the maildir", || {
        notices_of(&env, "S1")
            .iter()
            .any(|n| n["reference"] == reference.as_str() && n["status"] == "bounced")
    });
    let maildir = abuse_mx.maildir();
    eventually(10, "both messages moved to cur/, the bounce seen", || {
        let mut cur: Vec<(String, String)> = std::fs::read_dir(maildir.join("cur"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let flags = e
                    .file_name()
                    .to_string_lossy()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_string();
                let text = std::fs::read_to_string(e.path()).unwrap();
                let subject = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or("")
                    .to_string();
                (subject, flags)
            })
            .collect();
        cur.sort();
        cur == [
            (
                "Undelivered Mail Returned to Sender".to_string(),
                "2,S".to_string(),
            ),
            ("lunch".to_string(), "2,".to_string()),
        ]
    });
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);

    // The same messages read by the command, from a directory: the bounce
    // is named (recording it again changes nothing), the other message is
    // reported and does not stop the bounce.
    let mailbox = env.dir.path().join("bounces");
    std::fs::create_dir_all(mailbox.join("new")).unwrap();
    std::fs::write(mailbox.join("new/1.eml"), &bounce).unwrap();
    std::fs::write(mailbox.join("new/0.eml"), lunch).unwrap();
    let out = env.run(&["notices", "bounces", mailbox.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "notice {reference} bounced (failed 5.1.1: 550 5.1.1"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("0.eml: not a delivery status notification"),
        "{stderr}"
    );
    let notice = notices_of(&env, "S1")
        .into_iter()
        .find(|n| n["reference"] == reference.as_str())
        .unwrap();
    assert_eq!(notice["status"], "bounced", "{notice}");
    assert!(
        notice["last_error"]
            .as_str()
            .unwrap()
            .contains("User unknown"),
        "{notice}"
    );
}

/// A delivery status notification as Postfix writes one when the
/// recipient's server refused, after accepting it, a mail whose delivered
/// headers were `headers`.
fn bounce_of(headers: &str, recipient: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.isp.example (Mail Delivery System)\r\n\
         To: abuse@isp.example\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B1\"\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         Your message could not be delivered.\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.isp.example\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address\r\n    rejected: User unknown\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {headers}\r\n\
         --B1--\r\n"
    )
}

#[test]
fn the_sensor_records_a_telnet_login_and_it_becomes_a_case() {
    let port = free_port();
    let env = Env::new(&format!(
        "\n[sensor]\nlisten = [\"127.0.0.1:{port}\"]\ntelnet_ports = [{port}]\nfirst_bytes = 64\ntimeout = \"2s\"\n"
    ));
    env.directory(
        "id,email,language,consent\nS3,s3@example.jp,en,no\n",
        "S3,127.0.0.1,2024-01-01,\n",
    );
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
    let e = newest_event_of(&s.api, "S3");
    assert!(
        e["raw"]
            .as_str()
            .unwrap()
            .contains("\"password\":\"xc3511\""),
        "{e}"
    );
    assert_eq!(e["destination.port"], port);
}

/// `kanki ingest --format FORMAT --json FILE`: the summary.
fn ingest(env: &Env, format: &str, file: &std::path::Path) -> Value {
    serde_json::from_str(&env.ok(&["ingest", "-f", format, "--json", file.to_str().unwrap()]))
        .unwrap()
}

fn get_json(api: &str, path: &str) -> Value {
    client()
        .get(format!("{api}{path}"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The newest event of a subscriber's first case, as `/api/v1/events/{id}`
/// gives it (the id from the case's event list).
fn newest_event_of(api: &str, subscriber: &str) -> Value {
    let case = &get_json(api, &format!("/api/v1/cases?subscriber={subscriber}"))["items"][0];
    let case = get_json(api, &format!("/api/v1/cases/{}", case["id"]));
    let id = &case["events"][0]["id"];
    assert!(id.is_i64(), "{case}");
    get_json(api, &format!("/api/v1/events/{id}"))
}

/// A sinkhole report of subscribers at `(address, family)`, seen an hour ago.
fn sinkhole_report(dir: &std::path::Path, rows: &[(&str, &str)]) -> String {
    let p = dir.join("2026-05-01-event4_sinkhole-asn-jp.csv");
    std::fs::write(&p, sinkhole_csv(rows)).unwrap();
    p.to_str().unwrap().to_string()
}

/// Escalation end to end, with `kanki serve` sending on its schedule: the
/// consenting subscriber whose notice went unacknowledged is put in the
/// walled garden (the DNS front, asked with dig, answers the warning
/// address for any name but the allowed ones), sees the notice with its
/// reference on the garden page, acknowledges it on the countermeasure
/// site, and is let out at once; the one without consent or any address
/// goes to the call list instead; a consenting one with no address goes
/// straight to the garden, and out when an operator closes the case.
#[test]
fn unacknowledged_notices_put_a_consenting_subscriber_in_the_walled_garden_until_acknowledged() {
    use common::resolvers::{dig, unbound_with_root_zone};
    let (dns, upstream, page) = (free_port(), free_port(), free_port());
    let env = Env::new(&format!(
        r#"
[directory]
rebuild_every = "0s"
refresh_every = "100ms"

[dns]
listen = ["127.0.0.1:{dns}"]
upstreams = ["127.0.0.1:{upstream}"]
clients = ["127.0.0.2/32", "127.0.0.3/32", "127.0.0.4/32"]
warning_v4 = "192.0.2.80"
garden_allow = ["clean.example.jp"]

[warning]
listen = "127.0.0.1:{page}"

[notices]
min_interval = "0s"
escalate_after = 1
send_every = "300ms"
garden_ground = "consent"
"#
    ));
    let _unbound = unbound_with_root_zone(
        env.dir.path(),
        upstream,
        "www.example.jp. A 10.0.0.7\nclean.example.jp. A 10.0.0.9\n",
    );
    env.directory(
        "id,email,postal_address,language,consent\nS1,,東京都千代田区1-1,en,yes\nS2,,,ja,no\nS3,,,ja,yes\n",
        "S1,127.0.0.2,2024-01-01,\nS2,127.0.0.3,2024-01-01,\nS3,127.0.0.4,2024-01-01,\n",
    );
    let s = env.serve();
    let api = &s.api;
    let p = dns.to_string();
    let ask = |from: &str, name: &str| {
        dig(&["-b", from, "-p", &p, "@127.0.0.1", name, "A"])
            .answer
            .first()
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .unwrap_or_default()
    };
    eventually(10, "Unbound answering through the front", || {
        ask("127.0.0.2", "www.example.jp") == "10.0.0.7"
    });

    let report = sinkhole_report(
        env.dir.path(),
        &[
            ("127.0.0.2", "mirai"),
            ("127.0.0.3", "mirai"),
            ("127.0.0.4", "emotet"),
        ],
    );
    env.ok(&["ingest", "-f", "shadowserver", &report]);

    // First a letter to S1; unacknowledged, the next run puts S1 in the
    // garden: any name is the warning address, the allowed site is not.
    eventually(20, "S1 in the walled garden", || {
        ask("127.0.0.2", "www.example.jp") == "192.0.2.80"
    });
    assert_eq!(ask("127.0.0.2", "anything.example.org"), "192.0.2.80");
    assert_eq!(ask("127.0.0.2", "clean.example.jp"), "10.0.0.9");
    // S2, no consent: the upstream's answers, and a call-list entry.
    assert_eq!(ask("127.0.0.3", "www.example.jp"), "10.0.0.7");
    let esc: Value = get_json(api, "/api/v1/escalations");
    let esc: Vec<(String, String, String)> = esc
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["subscriber"].as_str().unwrap().into(),
                e["kind"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut esc = esc;
    esc.sort();
    assert_eq!(
        esc,
        [
            ("S1".into(), "walled-garden".into(), "active".into()),
            ("S2".into(), "call-list".into(), "requested".into()),
            ("S3".into(), "walled-garden".into(), "active".into()),
        ]
    );
    // Entered through the audited garden path, under the configured ground.
    let garden: Value = get_json(api, "/api/v1/garden");
    assert_eq!(garden[0]["subscriber"], "S1");
    assert_eq!(garden[0]["entered_by"], "removal");
    assert_eq!(garden[0]["ground"], "consent");
    let reference = garden[0]["reference"].as_str().unwrap().to_string();
    let audit = env.ok(&["audit", "show", "--json"]);
    assert!(
        audit.contains("garden-enter") && audit.contains(&reference),
        "{audit}"
    );

    // The garden page, as S1's browser meets it under any name: the notice
    // in S1's language with its reference, and the form to the
    // countermeasure site.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let browser = reqwest::blocking::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .resolve(
            "www.example.jp",
            format!("127.0.0.1:{page}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let origin = format!("http://www.example.jp:{page}");
    let html = browser
        .get(format!("{origin}/"))
        .header("Accept-Language", "en")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(html.contains("id=\"garden\""), "{html}");
    assert!(html.contains("Internet access from your line is restricted"));
    assert!(html.contains(&format!("<strong id=\"reference\">{reference}</strong>")));
    assert!(
        html.contains("action=\"/countermeasures/ack?lang=en\""),
        "{html}"
    );

    // "I have cleaned my machine" with the reference: out at once.
    let r = browser
        .post(format!("{origin}/countermeasures/ack?lang=en"))
        .header("Origin", &origin)
        .form(&[
            ("reference", reference.as_str()),
            ("note", "reinstalled the router firmware"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    assert!(text.contains("lifted the restriction"), "{text}");
    eventually(5, "S1 out of the walled garden", || {
        ask("127.0.0.2", "www.example.jp") == "10.0.0.7"
    });
    let cases: Value = get_json(api, "/api/v1/cases?subscriber=S1");
    assert_eq!(cases["items"][0]["state"], "acknowledged");
    let case = cases["items"][0]["id"].as_i64().unwrap();
    let detail: Value = get_json(api, &format!("/api/v1/cases/{case}"));
    let history = detail["history"].to_string();
    assert!(
        history.contains("reinstalled the router firmware"),
        "{history}"
    );
    let channels: Vec<&str> = detail["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["letter", "garden"]);
    let esc: Value = get_json(api, "/api/v1/escalations?status=done");
    assert_eq!(esc[0]["kind"], "walled-garden");
    let audit: Value = get_json(api, "/api/v1/audit?limit=100");
    let leave = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "garden-leave")
        .expect("the leave audited");
    assert_eq!(leave["actor"], "subscriber");
    assert_eq!(leave["ground"], "consent");
    assert!(leave["purpose"].as_str().unwrap().contains(&reference));
    // The case moved on: later runs do not put S1 back.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(ask("127.0.0.2", "www.example.jp"), "10.0.0.7");

    // S3 (consenting, no address to write to) went straight to the
    // garden; an operator closing the case (a false positive) lets S3 out.
    assert_eq!(ask("127.0.0.4", "www.example.jp"), "192.0.2.80");
    let s3 = get_json(api, "/api/v1/cases?subscriber=S3")["items"][0]["id"]
        .as_i64()
        .unwrap();
    let r = client()
        .post(format!("{api}/api/v1/cases/{s3}/actions"))
        .header("X-Kanki-Actor", "soc-carol")
        .json(
            &serde_json::json!({"action": "close", "reason": "false positive: a research scanner"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ask("127.0.0.4", "www.example.jp"), "10.0.0.7");
}

/// A sinkhole report of `rows` distinct events (a day ago, a second apart)
/// from addresses in 10.`net`.0.0/16.
fn many_sinkhole_rows(rows: usize, net: u8) -> String {
    let t0 = chrono::Utc::now() - chrono::Duration::days(1);
    let mut report = String::from(SINKHOLE_HEADER);
    for i in 0..rows {
        let at = (t0 + chrono::Duration::seconds(i as i64)).format("%Y-%m-%d %H:%M:%S");
        report.push_str(&format!(
            "\"{at}\",\"tcp\",\"10.{net}.{}.{}\",{},\"198.51.100.1\",80,\"mirai\",\"mirai\",\n",
            (i / 250) % 256,
            i % 250 + 1,
            1024 + i % 60000
        ));
    }
    report
}

/// A count from the store, read with the sqlite3 shell while kanki runs.
/// What sqlite3 prints for one query on the store.
fn text(env: &Env, sql: &str) -> String {
    let out = succeed(
        Command::new(need("sqlite3", "sqlite3"))
            .arg("-readonly")
            .arg(env.dir.path().join("data/kanki.sqlite3"))
            .arg(sql),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn count(env: &Env, sql: &str) -> u64 {
    text(env, sql).parse().unwrap_or(0)
}

/// A store whose one subscriber, S1 (no consent), holds 10.`net`.0.0/16:
/// the address space of `many_sinkhole_rows(_, net)`.
fn s1_holding_net(net: u8) -> Env {
    // Short transactions: a kill lands between commits mid-file.
    let env = Env::new("\n[removal]\ncommit_window = \"100ms\"\n");
    env.directory(
        "id,email,language,consent\nS1,s1@example.jp,ja,no\n",
        &format!("S1,10.{net}.0.0/16,2024-01-01,\n"),
    );
    env
}

/// Events stored, by their segments.
fn stored_events(env: &Env) -> u64 {
    count(env, "SELECT coalesce(sum(events), 0) FROM event_segments")
}

/// `n` events stored, each once: as many in segments as keys, and the
/// cases count each once.
fn assert_stored_once(env: &Env, n: u64) {
    assert_eq!(stored_events(env), n, "events in segments");
    assert_eq!(
        // 14 bytes a key in its hour's block.
        count(
            env,
            "SELECT coalesce(sum(length(keys)), 0) / 14 FROM event_key_blocks"
        ),
        n,
        "keys"
    );
    assert_eq!(
        count(env, "SELECT sum(events) FROM cases"),
        n,
        "case counts"
    );
}

/// Nothing lost, nothing doubled: `kanki ingest` reading a report from a
/// pipe is SIGKILLed mid-file, after some batches were stored and with
/// more read but not stored; the whole file ingested again stores every
/// event exactly once, each with its audited attribution, with the case
/// counting each once.
#[test]
fn a_sigkilled_ingest_run_again_stores_every_event_exactly_once() {
    // Three quarters of it is several batches (each up to 32,768 events
    // or 8 MiB of them) and some more.
    const ROWS: usize = 90_000;
    let env = s1_holding_net(1);
    let report = many_sinkhole_rows(ROWS, 1);
    // Cut at a line's end three quarters in.
    let halfway = report[..report.len() * 3 / 4].rfind('\n').unwrap() + 1;
    let file = env.dir.path().join("2026-05-02-event4_sinkhole-asn-jp.csv");
    std::fs::write(&file, &report).unwrap();

    let mut child = env
        .cmd(&[
            "ingest",
            "-f",
            "shadowserver",
            "--report-type",
            "event4_sinkhole",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&report.as_bytes()[..halfway]).unwrap();
    stdin.flush().unwrap();
    // Three quarters written: whole batches are stored, the rest of what
    // was read waits in memory for more input. Then the kill.
    let progress = || {
        (
            stored_events(&env),
            count(
                &env,
                "SELECT count(*) FROM audit_log WHERE action = 'who-bulk'",
            ),
        )
    };
    eventually(
        60,
        "some batches stored, and the run waiting for input",
        || {
            let p = progress();
            std::thread::sleep(std::time::Duration::from_millis(500));
            p.0 > 0 && p == progress()
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let before = stored_events(&env);
    assert!(
        before > 0 && (before as usize) < ROWS,
        "killed mid-file: {before} events stored"
    );

    let out: Value = ingest(&env, "shadowserver", &file);
    assert_eq!(out["events"], ROWS as u64 - before, "{out}");
    assert_eq!(out["duplicates"], before, "{out}");
    assert_stored_once(&env, ROWS as u64);
    // Every event is S1's, in its one case, and names the attribution
    // record that lists its lookup. (A batch attributed but not yet stored
    // when the kill came is attributed again, audited twice: at least
    // once, as designed.)
    let case = count(&env, "SELECT id FROM cases WHERE subscriber = 'S1'");
    let listed = env.ok(&[
        "events",
        "list",
        "--case",
        &case.to_string(),
        "--limit",
        &(2 * ROWS).to_string(),
        "--json",
    ]);
    let events: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), ROWS);
    // The addresses each audit record's lookups name.
    let mut looked_up: std::collections::HashMap<u64, std::collections::HashSet<String>> =
        Default::default();
    for e in &events {
        assert_eq!(e["attribution"]["subscriber"], "S1", "{e}");
        let seq = e["attribution"]["audit_seq"].as_u64().unwrap();
        let addresses = looked_up.entry(seq).or_insert_with(|| {
            let input: Value = serde_json::from_str(&text(
                &env,
                &format!("SELECT input FROM audit_log WHERE seq = {seq} AND action = 'who-bulk'"),
            ))
            .unwrap();
            input["lookups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l[0].as_str().unwrap().to_string())
                .collect()
        });
        let ip = e["source.ip"].as_str().unwrap();
        assert!(
            addresses.contains(ip),
            "audit record {seq} does not list {ip}"
        );
    }
    // The killed run is on record as never finished.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM ingests WHERE status = 'running'"
        ),
        1
    );
}

/// The notices of a subscriber's case, from `kanki cases show --json`.
fn notices_of(env: &Env, subscriber: &str) -> Vec<Value> {
    let cases: Value =
        serde_json::from_str(&env.ok(&["cases", "list", "--subscriber", subscriber, "--json"]))
            .unwrap();
    let id = cases[0]["id"].as_i64().unwrap().to_string();
    let show: Value = serde_json::from_str(&env.ok(&["cases", "show", &id, "--json"])).unwrap();
    show["notices"].as_array().unwrap().clone()
}

/// Notices over SMTP with TLS (STARTTLS, and TLS from the first byte) and
/// authentication, to a real aiosmtpd whose certificate a test CA signed
/// (trusted through `smtp.ca_file`): the mail arrives over TLS as the
/// configured user; a 550 is recorded on the notice as a bounce with the
/// server's words; a 451 is retried after the backoff and then delivered;
/// and without the CA the certificate is refused and the notice waits.
#[test]
fn notices_go_over_tls_with_auth_and_bounces_and_retries_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::test_certificates(dir.path(), "test");
    for mode in ["starttls", "tls"] {
        let smtp = Smtp::start_secure(dir.path(), mode, &cert, &key);
        let config = |ca_file: &str| {
            format!(
                "\n[smtp]\nserver = \"127.0.0.1:{}\"\nfrom = \"abuse@isp.example\"\ntls = \"{mode}\"\nusername = \"kanki\"\npassword = \"s3cret\"\ntimeout = \"10s\"\n{ca_file}\n[notices]\nmin_interval = \"1h\"\nmax_attempts = 3\nretry_backoff = \"1s\"\n",
                smtp.port
            )
        };
        let env = Env::new(&config(&format!("ca_file = \"{ca}\"")));
        let subscribers = "id,email,language,consent\nS1,ok@example.jp,en,no\nS2,gone@example.jp,en,no\nS3,busy@example.jp,en,no\n";
        let statics = "S1,10.2.0.1,2024-01-01,\nS2,10.2.0.2,2024-01-01,\nS3,10.2.0.3,2024-01-01,\n";
        env.directory(subscribers, statics);
        let report = sinkhole_report(
            env.dir.path(),
            &[
                ("10.2.0.1", "mirai"),
                ("10.2.0.2", "mirai"),
                ("10.2.0.3", "mirai"),
            ],
        );
        env.ok(&["ingest", "-f", "shadowserver", &report]);

        let sent: Value = serde_json::from_str(&env.ok(&["notices", "send", "--json"])).unwrap();
        assert_eq!(
            (
                sent["mails_sent"].as_u64(),
                sent["bounced"].as_u64(),
                sent["retry_later"].as_u64()
            ),
            (Some(1), Some(1), Some(1)),
            "{mode}: {sent}"
        );
        let mails = smtp.mails();
        assert_eq!(mails.len(), 1, "{mode}: {mails:?}");
        assert_eq!(mails[0]["to"], "ok@example.jp");
        assert_eq!(
            (mails[0]["tls"].as_str(), mails[0]["user"].as_str()),
            (Some("yes"), Some("kanki")),
            "{mode}"
        );
        let ok = &notices_of(&env, "S1")[0];
        assert_eq!(ok["status"], "sent");
        assert!(
            mails[0]["subject"]
                .as_str()
                .unwrap()
                .contains(ok["reference"].as_str().unwrap())
        );
        let gone = &notices_of(&env, "S2")[0];
        assert_eq!(gone["status"], "bounced", "{gone}");
        let why = gone["last_error"].as_str().unwrap();
        assert!(
            why.contains("550") && why.contains("no such mailbox here"),
            "{why}"
        );
        let busy = &notices_of(&env, "S3")[0];
        assert_eq!(
            (busy["status"].as_str(), busy["attempts"].as_u64()),
            (Some("queued"), Some(1)),
            "{busy}"
        );
        assert!(
            busy["last_error"].as_str().unwrap().contains("451"),
            "{busy}"
        );
        assert!(busy["next_attempt_at"].as_str().unwrap() > busy["created_at"].as_str().unwrap());
        // After the backoff, the retry goes through.
        eventually(30, "the retried notice delivered", || {
            env.ok(&["notices", "send"]);
            notices_of(&env, "S3")[0]["status"] == "sent"
        });
        assert_eq!(notices_of(&env, "S3")[0]["attempts"], 2);
        assert_eq!(smtp.mails().len(), 2);
        // The bounce is not retried.
        assert_eq!(notices_of(&env, "S2")[0]["attempts"], 1);

        // Without the test CA the server's certificate is not trusted: the
        // notice waits for a retry, with the reason.
        let untrusted = Env::new(&config(""));
        untrusted.directory(subscribers, statics);
        let report = sinkhole_report(untrusted.dir.path(), &[("10.2.0.1", "mirai")]);
        untrusted.ok(&["ingest", "-f", "shadowserver", &report]);
        let sent: Value =
            serde_json::from_str(&untrusted.ok(&["notices", "send", "--json"])).unwrap();
        assert_eq!(sent["retry_later"], 1, "{mode}: {sent}");
        let n = &notices_of(&untrusted, "S1")[0];
        assert!(
            n["last_error"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("certificate"),
            "{mode}: {n}"
        );
        assert_eq!(smtp.mails().len(), 2);
    }
}

/// X-ARF reports as a real mailer writes them: Python's email package
/// builds an abuse mail with the report attached base64-encoded, and one
/// with it quoted-printable, each beside a Japanese text part
/// (ISO-2022-JP). Both are the same one event.
#[test]
fn xarf_reports_in_base64_and_quoted_printable_mails_are_one_event() {
    let env = Env::new("");
    env.directory(
        "id,email,language,consent\nS1,s1@example.jp,ja,no\n",
        "S1,10.3.0.0/24,2024-01-01,\n",
    );
    let report = format!(
        "{{\"Version\":\"4\",\"ReporterInfo\":{{\"ReporterOrg\":\"Example CERT\",\"ReporterOrgEmail\":\"abuse@cert.example\"}},\"Disclosure\":true,\"Report\":{{\"ReportClass\":\"Content\",\"ReportType\":\"Malware\",\"MalwareFamily\":\"Emotet\",\"Date\":\"{}\",\"SourceType\":\"ip-address\",\"Source\":\"10.3.0.9\",\"SourcePort\":49152,\"DestinationIp\":\"198.51.100.7\",\"DestinationPort\":8080}}}}",
        (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339()
    );
    let script = r#"
import sys
from email import policy
from email.message import EmailMessage
report, out = sys.argv[1], sys.argv[2]
for cte in ("base64", "quoted-printable"):
    m = EmailMessage()
    m["From"] = "abuse@cert.example"
    m["To"] = "abuse@isp.example"
    m["Subject"] = "X-ARF abuse report"
    m.set_content("貴社ネットワークからのマルウェア通信を報告します。", charset="iso-2022-jp")
    m.add_attachment(report.encode(), maintype="application", subtype="json", cte=cte, filename="report.json")
    open("%s/%s.eml" % (out, cte), "wb").write(m.as_bytes(policy=policy.SMTP))
"#;
    succeed(
        Command::new(python())
            .args(["-c", script, &report])
            .arg(env.dir.path()),
    );
    let b64 = env.dir.path().join("base64.eml");
    let qp = env.dir.path().join("quoted-printable.eml");
    let text = std::fs::read_to_string(&qp).unwrap();
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable") && text.contains("=\r\n"),
        "{text}"
    );
    assert!(!std::fs::read_to_string(&b64).unwrap().contains("Emotet"));
    let counts = |f: &std::path::Path| -> (u64, u64, u64) {
        let v = ingest(&env, "xarf", f);
        let n = |k: &str| v[k].as_u64().unwrap();
        (n("events"), n("attributed"), n("duplicates"))
    };
    assert_eq!(counts(&b64), (1, 1, 0));
    assert_eq!(counts(&qp), (0, 0, 1));
    let case = count(&env, "SELECT id FROM cases");
    let listed = env.ok(&["events", "list", "--case", &case.to_string(), "--json"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let id = serde_json::from_str::<Value>(&listed).unwrap()["id"].to_string();
    let e: Value = serde_json::from_str(&env.ok(&["events", "show", &id])).unwrap();
    assert_eq!(e["source.ip"], "10.3.0.9");
    assert_eq!(e["source.port"], 49152);
    assert_eq!(e["malware.name"], "emotet");
    assert_eq!(e["feed.provider"], "Example CERT");
    assert_eq!(e["raw"], report);
}

/// The watched directory of `kanki serve`: a file renamed in when complete
/// is ingested once and moved to done/ with its summary; a file kanki
/// cannot read goes to failed/ with the reason; a partial file is left
/// alone. `kanki serve` SIGKILLed in the middle of a file, and started
/// again, ingests it again: every event is stored once.
#[test]
fn the_watched_directory_ingests_each_file_once_and_loses_nothing_on_a_kill() {
    const ROWS: usize = 100_000;
    let watch = tempfile::tempdir().unwrap();
    let w = watch.path();
    // Short transactions: a kill lands between commits mid-file.
    let env = Env::new(&format!(
        "\n[removal]\nwatch_dir = \"{}\"\ncommit_window = \"100ms\"\n",
        w.display()
    ));
    env.directory(
        "id,email,language,consent\nS1,s1@example.jp,ja,no\n",
        "S1,10.5.0.0/16,2024-01-01,\nS1,10.6.0.0/16,2024-01-01,\n",
    );
    let drop_in = |name: &str, text: &str| {
        let part = w.join(format!("{name}.part"));
        std::fs::write(&part, text).unwrap();
        std::fs::rename(&part, w.join(name)).unwrap();
    };
    let events = || stored_events(&env);
    let s = env.serve();
    let small = "2026-05-03-event4_sinkhole-asn-jp.csv";
    drop_in(small, &many_sinkhole_rows(500, 5));
    drop_in("notes-from-the-noc.csv", "this is not a report\n");
    std::fs::write(w.join("still-writing.csv.part"), "\"timestamp\"\n").unwrap();
    eventually(30, "both files handled", || {
        w.join("done").join(small).exists() && w.join("failed/notes-from-the-noc.csv").exists()
    });
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(w.join(format!("done/{small}.summary.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (summary["events"].as_u64(), summary["attributed"].as_u64()),
        (Some(500), Some(500))
    );
    let why = std::fs::read_to_string(w.join("failed/notes-from-the-noc.csv.error.txt")).unwrap();
    assert!(why.contains("report type"), "{why}");
    assert!(w.join("still-writing.csv.part").exists());
    assert_eq!(events(), 500);

    // A big file, and a kill in the middle of it.
    let big = "2026-05-04-event4_sinkhole-asn-jp.csv";
    drop_in(big, &many_sinkhole_rows(ROWS, 6));
    eventually(60, "the big file being ingested", || events() > 500);
    s.sigkill();
    let stored = events();
    assert!(
        (stored as usize) < 500 + ROWS && w.join(big).exists(),
        "killed mid-file: {stored} events stored"
    );
    let s = env.serve();
    eventually(120, "the big file ingested after the restart", || {
        w.join("done").join(big).exists()
    });
    assert_stored_once(&env, (500 + ROWS) as u64);
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(w.join(format!("done/{big}.summary.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary["events"].as_u64(),
        Some(ROWS as u64 - (stored - 500))
    );
    assert_eq!(summary["duplicates"].as_u64(), Some(stored - 500));
    // Files in done/ are not read again.
    assert_eq!(
        count(
            &env,
            &format!("SELECT count(*) FROM ingests WHERE origin = '{small}'")
        ),
        1
    );
    drop(s);
}

/// A report POSTed to `kanki serve` is acknowledged (its summary returned)
/// only once it is stored: a kill mid-ingest leaves the client without an
/// answer and the store with whole batches only; the same POST after the
/// restart stores the rest, every event once, its case counting each once.
#[test]
fn a_report_posted_to_a_killed_serve_is_stored_once_when_posted_again() {
    const ROWS: usize = 100_000;
    let env = s1_holding_net(7);
    let events = || stored_events(&env);
    let report = many_sinkhole_rows(ROWS, 7);
    let post = |api: &str| {
        client()
            .post(format!(
                "{api}/api/v1/events?format=shadowserver&name=2026-05-06-event4_sinkhole-asn-jp.csv"
            ))
            .body(report.clone())
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json::<Value>())
    };
    let s = env.serve();
    let api = s.api.clone();
    let answer = std::thread::scope(|scope| {
        let posted = scope.spawn(|| post(&api));
        eventually(60, "the posted report being stored", || events() > 0);
        s.sigkill();
        posted.join().unwrap()
    });
    assert!(answer.is_err(), "answered before the kill: {answer:?}");
    let stored = events();
    // Whole batches only (a batch ends at a count of events or of bytes):
    // what the same POST stores after the restart says that nothing was
    // stored in part.
    assert!(
        (stored as usize) < ROWS,
        "killed mid-report: {stored} events stored"
    );

    let s = env.serve();
    let summary = post(&s.api).unwrap();
    assert_eq!(
        (summary["events"].as_u64(), summary["duplicates"].as_u64()),
        (Some(ROWS as u64 - stored), Some(stored)),
        "{summary}"
    );
    assert_stored_once(&env, ROWS as u64);
    drop(s);
}

/// Carrier-grade NAT: two subscribers share a public address, each with a
/// port block (a CGNAT CSV export); an event with a source port is
/// attributed to the one whose block holds the port, one without a port
/// is not attributed (both held the address).
#[test]
fn cgnat_port_blocks_attribute_an_event_to_the_right_subscriber() {
    let env = Env::new("");
    let subs = env.dir.path().join("subs.csv");
    std::fs::write(
        &subs,
        "id,email,language,consent\nS1,s1@example.jp,ja,no\nS2,s2@example.jp,en,no\n",
    )
    .unwrap();
    env.ok(&["subscribers", "import", subs.to_str().unwrap()]);
    let nat = env.dir.path().join("cgnat.csv");
    std::fs::write(
        &nat,
        "subscriber,private_address,public_address,first_port,last_port,from,to\n\
         S1,100.64.0.11,203.0.113.7,1024,1535,2024-01-01T00:00:00Z,\n\
         S2,100.64.0.12,203.0.113.7,1536,2047,2024-01-01T00:00:00Z,\n",
    )
    .unwrap();
    env.ok(&[
        "bindings",
        "import",
        "--format",
        "cgnat",
        nat.to_str().unwrap(),
    ]);
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%d %H:%M:%S");
    let report = env.dir.path().join("2026-05-05-event4_sinkhole-asn-jp.csv");
    std::fs::write(
        &report,
        format!(
            "{SINKHOLE_HEADER}\
             \"{at}\",\"tcp\",\"203.0.113.7\",1100,\"198.51.100.1\",80,\"mirai\",\"mirai\",\n\
             \"{at}\",\"tcp\",\"203.0.113.7\",1600,\"198.51.100.1\",80,\"emotet\",\"emotet\",\n\
             \"{at}\",\"tcp\",\"203.0.113.7\",,\"198.51.100.1\",80,\"qakbot\",\"qakbot\",\n"
        ),
    )
    .unwrap();
    let out: Value = ingest(&env, "shadowserver", &report);
    assert_eq!(
        (out["events"].as_u64(), out["attributed"].as_u64()),
        (Some(3), Some(2)),
        "{out}"
    );
    assert_eq!(
        out["unattributed"]["several subscribers held the address"]["count"], 1,
        "{out}"
    );
    let cases = |who: &str| -> Vec<String> {
        let v: Value =
            serde_json::from_str(&env.ok(&["cases", "list", "--subscriber", who, "--json"]))
                .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["threat"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(cases("S1"), ["mirai"]);
    assert_eq!(cases("S2"), ["emotet"]);
    // The attribution is audited with the port it was made by.
    let audit = env.ok(&["audit", "show", "--json"]);
    assert!(
        audit.contains("1600") && audit.contains("203.0.113.7"),
        "{audit}"
    );
}

/// kanki's sensor on an SSH port, met by the real OpenSSH client: it
/// records the client's identification line and the HASSH of its
/// key-exchange offer (credentials would come later, encrypted), and the
/// event is attributed like any other.
#[test]
fn the_sensor_records_an_ssh_client_s_banner_and_hassh() {
    let port = free_port();
    let env = Env::new(&format!(
        "\n[sensor]\nlisten = [\"127.0.0.1:{port}\"]\nssh_ports = [{port}]\ntimeout = \"5s\"\n"
    ));
    env.directory(
        "id,email,language,consent\nS4,s4@example.jp,en,no\n",
        "S4,127.0.0.1,2024-01-01,\n",
    );
    let s = env.serve();
    let ssh = need("ssh", "openssh-client");
    let out = Command::new(&ssh)
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "probe@127.0.0.1",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the sensor is no SSH server");
    eventually(10, "the SSH event stored", || {
        get_json(&s.api, "/api/v1/cases?subscriber=S4")["items"][0]["threat"] == "ssh"
    });
    let e = newest_event_of(&s.api, "S4");
    assert_eq!(e["classification.identifier"], "ssh", "{e}");
    let raw: Value = serde_json::from_str(e["raw"].as_str().unwrap()).unwrap();
    let version =
        String::from_utf8_lossy(&Command::new(&ssh).arg("-V").output().unwrap().stderr).to_string();
    let banner = raw["ssh_client"].as_str().unwrap();
    assert!(banner.starts_with("SSH-2.0-OpenSSH_"), "{raw}");
    // The version `ssh -V` prints is the one in its banner.
    let v = banner.trim_start_matches("SSH-2.0-OpenSSH_");
    assert!(
        version.contains(v.split(' ').next().unwrap()),
        "{version} / {banner}"
    );
    // HASSH is of the key exchange the client offered: the kex algorithms
    // `ssh -G` says it uses come first.
    let algorithms = raw["hassh_algorithms"].as_str().unwrap();
    let config = String::from_utf8_lossy(
        &Command::new(&ssh)
            .args(["-G", "127.0.0.1"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    let kex = config
        .lines()
        .find_map(|l| l.strip_prefix("kexalgorithms "))
        .unwrap();
    assert!(algorithms.starts_with(kex), "{algorithms} / {kex}");
    assert_eq!(raw["hassh"].as_str().unwrap().len(), 32);
    assert!(raw["username"].is_null() && raw["password"].is_null());
}

/// A Shadowserver sinkhole report with every column Shadowserver writes
/// for `event4_sinkhole`, POSTed to `kanki serve`: the harmonized fields
/// IntelMQ sets from its columns (the source's AS, country, region, city
/// and reverse name; the destination's; the severity) are stored with the
/// event and shown by the API's event and case and by `kanki events
/// list`. The report's own columns (`extra.*`) stay in the raw record.
#[test]
fn the_harmonized_fields_of_a_shadowserver_report_are_stored_and_shown() {
    let env = Env::new("");
    env.directory(
        "id,email,language,consent\nS5,s5@example.jp,en,no\n",
        "S5,192.0.2.55,2024-01-01,\n",
    );
    let s = env.serve();
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%d %H:%M:%S");
    let report = format!(
        "\"timestamp\",\"protocol\",\"src_ip\",\"src_port\",\"src_asn\",\"src_geo\",\"src_region\",\"src_city\",\"src_hostname\",\"src_naics\",\"src_sector\",\"device_vendor\",\"device_type\",\"device_model\",\"severity\",\"dst_ip\",\"dst_port\",\"dst_asn\",\"dst_geo\",\"dst_region\",\"dst_city\",\"dst_hostname\",\"dst_naics\",\"dst_sector\",\"public_source\",\"infection\",\"family\",\"tag\",\"application\",\"version\",\"event_id\",\"ssl_cipher\",\"ssl_servername\"\n\
         \"{at}\",\"tcp\",\"192.0.2.55\",51234,64500,\"JP\",\"TOKYO\",\"CHIYODA\",\"host55.example.jp\",517311,\"Communications, Service Provider, and Telecommunications\",,,,\"medium\",\"198.51.100.1\",80,64501,\"US\",\"CALIFORNIA\",\"LOS ANGELES\",\"sinkhole.example.net\",0,,\"CERT-X\",\"andromeda\",\"andromeda\",,\"http\",,,,\n"
    );
    let summary: Value = client()
        .post(format!(
            "{}/api/v1/events?format=shadowserver&name=2026-05-07-event4_sinkhole-asn-jp.csv",
            s.api
        ))
        .body(report)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .unwrap();
    assert_eq!(
        (summary["events"].as_u64(), summary["attributed"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );

    let e = newest_event_of(&s.api, "S5");
    for (field, value) in [
        ("source.asn", "64500"),
        ("source.geolocation.cc", "JP"),
        ("source.geolocation.region", "TOKYO"),
        ("source.geolocation.city", "CHIYODA"),
        ("source.reverse_dns", "host55.example.jp"),
        ("destination.asn", "64501"),
        ("destination.geolocation.cc", "US"),
        ("destination.reverse_dns", "sinkhole.example.net"),
        ("severity", "medium"),
        ("malware.name", "andromeda"),
    ] {
        assert_eq!(e[field], value, "{field} in {e}");
    }
    // The report's own columns are in its raw record, not fields.
    assert!(e.get("extra.source.naics").is_none(), "{e}");
    assert!(e.get("extra.public_source").is_none(), "{e}");
    assert!(e["raw"].as_str().unwrap().contains("\"CERT-X\""), "{e}");

    // The case lists its events with them.
    let case = &get_json(&s.api, "/api/v1/cases?subscriber=S5")["items"][0];
    let case_id = case["id"].as_i64().unwrap();
    let case = get_json(&s.api, &format!("/api/v1/cases/{case_id}"));
    assert_eq!(case["events"][0]["source.asn"], "64500", "{case}");
    assert_eq!(case["events"][0]["source.geolocation.cc"], "JP", "{case}");

    // The command line: in the text listing, and each field in JSON.
    let listed = env.ok(&["events", "list", "--case", &case_id.to_string()]);
    assert!(listed.contains("AS64500 JP host55.example.jp"), "{listed}");
    let json: Value = serde_json::from_str(
        env.ok(&["events", "list", "--case", &case_id.to_string(), "--json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["source.reverse_dns"], "host55.example.jp", "{json}");
    drop(s);
}
