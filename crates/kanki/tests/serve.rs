//! `kanki serve` over real HTTP connections: the API, scheduled imports,
//! shutdown, and SIGKILL at awkward moments.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Env, client, eventually, repo};
use serde_json::{Value, json};

fn get(api: &str, path: &str) -> Value {
    let r = client().get(format!("{api}{path}")).send().unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().unwrap()
}

fn lookup(api: &str, name: &str) -> String {
    get(api, &format!("/api/v1/lookup?name={name}"))["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_api_lists_adds_judges_and_imports() {
    let env = Env::new("");
    let s = env.serve();
    let api = &s.api;
    let c = client();

    let health = get(api, "/healthz");
    assert_eq!(health["status"], "ok");

    // Add: normalized, 201; again: 200.
    let r = c.post(format!("{api}/api/v1/indicators"))
        .json(&json!({"value": "HTTP://Bad.Example./x.exe", "category": "malware-distribution", "tags": ["emotet"]}))
        .send().unwrap();
    assert_eq!(r.status(), 201);
    let ind: Value = r.json().unwrap();
    assert_eq!(ind["value"], "http://bad.example/x.exe");
    let id = ind["id"].as_i64().unwrap();
    let r = c
        .post(format!("{api}/api/v1/indicators"))
        .json(&json!({"value": "http://bad.example/x.exe", "tags": ["emotet"]}))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "adding it again updates the operator's view of it"
    );

    // The change reaches the policy snapshot without a restart.
    eventually(5, "the new indicator in the policy", || {
        lookup(api, "cdn.bad.example") == "listed"
    });

    // Bad input gets a clear error.
    let r = c
        .post(format!("{api}/api/v1/indicators"))
        .json(&json!({"value": "http://"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(
        r.json::<Value>().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("invalid URL")
    );
    let r = c
        .post(format!("{api}/api/v1/indicators"))
        .json(&json!({"valu": "x"}))
        .send()
        .unwrap();
    assert!(r.status().is_client_error());
    let r = c
        .get(format!("{api}/api/v1/indicators?status=bogus"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        c.get(format!("{api}/api/v1/indicators/999999"))
            .send()
            .unwrap()
            .status(),
        404
    );

    // Upload a file for import, raw and as a form.
    let body = std::fs::read(repo().join("examples/feeds/urlhaus.csv")).unwrap();
    let r = c
        .post(format!(
            "{api}/api/v1/imports?format=urlhaus&source=urlhaus"
        ))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let summary: Value = r.json().unwrap();
    assert!(summary["added"].as_u64().unwrap() > 10);
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(body).file_name("urlhaus.csv"),
    );
    let summary: Value = c
        .post(format!(
            "{api}/api/v1/imports?format=urlhaus&source=urlhaus"
        ))
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(summary["added"], 0);
    assert_eq!(summary["updated"], 0);
    let r = c
        .post(format!("{api}/api/v1/imports?format=csv"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // List with filters and pages.
    let page = get(api, "/api/v1/indicators?source=urlhaus&limit=5");
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let after = page["next_after"].as_i64().unwrap();
    let next = get(
        api,
        &format!("/api/v1/indicators?source=urlhaus&limit=5&after={after}"),
    );
    assert!(next["items"][0]["id"].as_i64().unwrap() > after);
    let tagged = get(api, "/api/v1/indicators?tag=emotet");
    assert_eq!(tagged["total"], 1);

    // One with its sources.
    let one = get(api, &format!("/api/v1/indicators/{id}"));
    assert_eq!(one["sources"][0]["source"], "operator");

    // Evidence.
    let r = c
        .post(format!("{api}/api/v1/indicators/{id}/evidence"))
        .json(&json!({"kind": "crawl", "uri": "crawl:42", "note": "dropper seen at hop 3"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        get(api, &format!("/api/v1/indicators/{id}"))["evidence"][0]["uri"],
        "crawl:42"
    );

    // False positive: off the list at once, with the reason shown.
    let r = c
        .post(format!("{api}/api/v1/indicators/{id}/false-positive"))
        .json(&json!({"reason": "vendor CDN"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let one: Value = r.json().unwrap();
    assert_eq!(one["status"], "false-positive");
    assert_eq!(one["status_reason"], "vendor CDN");
    eventually(5, "the false positive off the policy", || {
        lookup(api, "bad.example") == "not-listed"
    });

    // Allowlist an indicator through its host.
    let list = get(api, "/api/v1/indicators?q=cdn.update-center.example");
    let cdn = list["items"][0]["id"].as_i64().unwrap();
    let r = c
        .post(format!("{api}/api/v1/indicators/{cdn}/allowlist"))
        .json(&json!({"reason": "partner CDN", "kind": "suffix"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["indicator"]["status"], "allowlisted");
    assert!(
        v["indicator"]["status_reason"]
            .as_str()
            .unwrap()
            .contains("partner CDN")
    );
    eventually(5, "the allowlist in the policy", || {
        lookup(api, "x.cdn.update-center.example") == "allowed"
    });
    let entries: Value = get(api, "/api/v1/allowlist");
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "cdn.update-center.example")
        .unwrap();
    let r = c
        .delete(format!("{api}/api/v1/allowlist/{}", entry["id"]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually(5, "the listing back after the allowlist entry went", || {
        lookup(api, "cdn.update-center.example") == "listed"
    });

    // Delete.
    assert_eq!(
        c.delete(format!("{api}/api/v1/indicators/{cdn}"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.delete(format!("{api}/api/v1/indicators/{cdn}"))
            .send()
            .unwrap()
            .status(),
        404
    );

    // Exports over HTTP.
    let rpz = c
        .get(format!("{api}/api/v1/exports/rpz"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(rpz.contains("SOA"));
    assert_eq!(
        c.get(format!("{api}/api/v1/exports/bind"))
            .send()
            .unwrap()
            .status(),
        404
    );

    // Metrics in Prometheus text.
    let m = c
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(m.contains("kanki_indicators{status=\"active\"}"), "{m}");
    assert!(
        m.contains("kanki_import_rows_added_total{source=\"urlhaus\"}"),
        "{m}"
    );
    assert!(m.contains("kanki_policy_rebuilds_total"), "{m}");
    // The background jobs, each running once.
    for job in ["policy refresher", "notices", "directory refresher"] {
        assert!(
            m.contains(&format!("kanki_background_jobs{{job=\"{job}\"}} 1")),
            "{m}"
        );
    }

    // SIGTERM: the API stops, then every background job ends (those
    // asleep at once) well within the grace period.
    let (status, log) = s.sigterm_with_log();
    assert!(status.success(), "a clean exit on SIGTERM:\n{log}");
    assert!(log.contains("background jobs stopped"), "{log}");
    assert!(!log.contains("still running"), "{log}");
}

#[test]
fn the_openapi_document_describes_every_route() {
    let env = Env::new("");
    let s = env.serve();
    let doc = get(&s.api, "/api/v1/openapi.json");
    assert_eq!(doc["openapi"].as_str().unwrap().chars().next(), Some('3'));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/indicators",
        "/api/v1/indicators/{id}",
        "/api/v1/indicators/{id}/false-positive",
        "/api/v1/indicators/{id}/allowlist",
        "/api/v1/indicators/{id}/status",
        "/api/v1/indicators/{id}/evidence",
        "/api/v1/lookup",
        "/api/v1/allowlist",
        "/api/v1/allowlist/{id}",
        "/api/v1/host-marks",
        "/api/v1/host-marks/{host}",
        "/api/v1/imports",
        "/api/v1/exports/{format}",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let in_docs: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap())
            .unwrap();
    assert_eq!(in_docs, doc);
}

#[test]
fn scheduled_feeds_are_imported_expire_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.txt");
    std::fs::write(&feed, "scheduled.example\n").unwrap();
    let env = Env::new(&format!(
        "\n[indicators]\nexpire_every = \"1s\"\n\n[[feeds]]\nname = \"local\"\nformat = \"plain\"\npath = \"{}\"\nevery = \"10s\"\nttl = \"3s\"\n",
        feed.display()
    ));
    let s = env.serve();
    eventually(10, "the scheduled import", || {
        lookup(&s.api, "www.scheduled.example") == "listed"
    });
    let imports = get(&s.api, "/api/v1/imports");
    assert_eq!(imports[0]["source"], "local");
    assert_eq!(imports[0]["status"], "completed");
    // Its time to live runs out before the next import...
    eventually(8, "expiry", || {
        lookup(&s.api, "scheduled.example") == "not-listed"
    });
    let page = get(&s.api, "/api/v1/indicators?status=expired");
    assert_eq!(page["total"], 1);
    // ...and the next import, seeing it again, lists it again.
    eventually(15, "the listing back after the next import", || {
        lookup(&s.api, "scheduled.example") == "listed"
    });
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    let env = Env::new("");
    let s = env.serve();
    let c = client();
    let r = c
        .post(format!("{}/api/v1/indicators", s.api))
        .json(&json!({"value": "acked.example"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    s.sigkill();
    let s = env.serve();
    assert_eq!(
        get(&s.api, "/api/v1/indicators?q=acked.example")["total"],
        1
    );
    // The persisted snapshot answers at once after the restart.
    eventually(5, "the policy after restart", || {
        lookup(&s.api, "acked.example") == "listed"
    });
}

#[test]
fn an_import_killed_midway_leaves_a_consistent_store_and_completes_on_rerun() {
    let env = Env::new("");
    let rows = 150_000;
    let path = env.dir.path().join("big.csv");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&kanki_feeds::synth::urlhaus_csv(rows, 5))
        .unwrap();
    let mut child = env
        .cmd(&["import", "-f", "urlhaus", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some chunks are committed, but not all.
    let mut progressed = false;
    for _ in 0..600 {
        std::thread::sleep(Duration::from_millis(50));
        let out = env.ok(&["imports"]);
        if let Some(line) = out.lines().find(|l| l.contains("running")) {
            let read: u64 = line.split_whitespace().nth(5).unwrap().parse().unwrap();
            if read > 0 {
                progressed = true;
                break;
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    assert!(
        progressed,
        "the import should have committed a chunk before finishing"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Consistent: the store opens, the run is marked interrupted, every
    // indicator has its source.
    let out = env.ok(&["imports"]);
    assert!(out.lines().nth(1).unwrap().contains("interrupted"), "{out}");
    let db = rusqlite::Connection::open(env.dir.path().join("data/kanki.sqlite3")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let orphans: i64 = db
        .query_row("SELECT count(*) FROM indicators i WHERE NOT EXISTS (SELECT 1 FROM indicator_sources s WHERE s.indicator_id = i.id)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(orphans, 0);
    let before: i64 = db
        .query_row("SELECT count(*) FROM indicators", [], |r| r.get(0))
        .unwrap();
    assert!(before > 0 && (before as usize) < rows, "{before}");

    // The re-import completes the list.
    let out = env.ok(&["import", "-f", "urlhaus", "--json", path.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "completed");
    assert_eq!(
        v["unchanged"].as_i64().unwrap()
            + v["added"].as_i64().unwrap()
            + v["updated"].as_i64().unwrap(),
        v["rows_read"].as_i64().unwrap() - v["skipped"].as_i64().unwrap()
    );
    let after: i64 = db
        .query_row("SELECT count(*) FROM indicators", [], |r| r.get(0))
        .unwrap();
    assert!(after > before);
    assert_eq!(after, v["added"].as_i64().unwrap() + before);
}

/// A one-file HTTP server on loopback that answers with an ETag and a 304
/// when the client already has it; it records the request heads it saw.
fn feed_server(body: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/feeds/list.txt", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let cached = head.to_ascii_lowercase().contains("if-none-match: \"v1\"");
            log.lock().unwrap().push(head);
            let resp = if cached {
                "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    (url, seen)
}

#[test]
fn feeds_are_fetched_by_url_with_conditional_requests() {
    let (url, seen) = feed_server("fetched.example\nhttp://dl.fetched2.example/x.apk\n");
    let env = Env::new(&format!(
        "\n[[feeds]]\nname = \"remote\"\nformat = \"plain\"\nurl = \"{url}\"\nevery = \"10s\"\n"
    ));
    let s = env.serve();
    eventually(10, "the fetched feed in the policy", || {
        lookup(&s.api, "fetched.example") == "listed"
    });
    assert_eq!(lookup(&s.api, "dl.fetched2.example"), "listed");
    // The next fetch asks whether it changed, and the 304 changes nothing.
    eventually(20, "a conditional second fetch", || {
        seen.lock().unwrap().len() >= 2
    });
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("if-none-match: \"v1\""),
        "{heads:?}"
    );
    assert_eq!(
        get(&s.api, "/api/v1/imports").as_array().unwrap().len(),
        1,
        "a 304 is not an import"
    );
}

#[test]
fn consent_revoked_elsewhere_reaches_a_running_serve_within_a_second_and_attributions_are_audited()
{
    let env = Env::new("");
    let subs = env.dir.path().join("subs.csv");
    std::fs::write(
        &subs,
        "id,email,language,consent\nS1,s1@example.jp,ja,yes\nS2,s2@example.jp,en,yes\n",
    )
    .unwrap();
    env.ok(&["subscribers", "import", subs.to_str().unwrap()]);
    let s = env.serve();
    let api = &s.api;
    eventually(5, "both consents loaded", || {
        get(api, "/api/v1/directory")["consenting_subscribers"] == 2
    });

    // Revoked by another process (the CLI): serve sees it within 1 s.
    let t = std::time::Instant::now();
    env.ok(&["consent", "revoke", "S1", "--channel", "phone"]);
    eventually(1, "the revocation in serve", || {
        get(api, "/api/v1/directory")["consenting_subscribers"] == 1
    });
    eprintln!("revocation reached serve in {:?}", t.elapsed());

    // Through the API: effective at once, recorded with its channel.
    let c = client();
    let r = c
        .post(format!("{api}/api/v1/subscribers/S2/consent"))
        .header("X-Kanki-Actor", "desk")
        .json(&json!({"granted": false, "channel": "web"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(api, "/api/v1/directory")["consenting_subscribers"], 0);
    let s2 = get(api, "/api/v1/subscribers/S2");
    assert_eq!(s2["consent_history"][1]["channel"], "web");
    // The authenticated token's operator, not the header's claim.
    assert_eq!(s2["consent_history"][1]["actor"], common::test_actor());

    // An attribution without a purpose is refused; with one it is answered
    // and audited.
    let r = c
        .post(format!("{api}/api/v1/who"))
        .json(&json!({"address": "192.0.2.7", "ground": "emergency-evacuation", "purpose": " "}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .post(format!("{api}/api/v1/who"))
        .json(&json!({"address": "192.0.2.7", "ground": "legitimate-business", "program": "OP25B", "purpose": "C&C contact, case 17"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let a: Value = r.json().unwrap();
    assert_eq!(a["confidence"], "none");
    let audit = get(api, "/api/v1/audit?action=who");
    assert_eq!(audit.as_array().unwrap().len(), 1);
    assert_eq!(audit[0]["seq"], a["audit_seq"]);
    assert_eq!(audit[0]["purpose"], "C&C contact, case 17");
    assert_eq!(get(api, "/api/v1/audit/verify")["intact"], true);
}

/// `size` bytes of `line` repeated, deflated into one zip entry: a
/// thousand times smaller than what it unpacks to.
fn zip_bomb(name: &str, head: &[u8], line: &[u8], size: usize) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9));
    w.start_file(name, opts).unwrap();
    w.write_all(head).unwrap();
    let block = line.repeat((1 << 20) / line.len());
    let mut written = head.len();
    while written < size {
        w.write_all(&block).unwrap();
        written += block.len();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn compression_bombs_posted_to_the_api_are_refused_with_their_reason_and_serve_keeps_answering() {
    let env = Env::new("");
    let s = env.serve();
    let c = client();
    let bomb = zip_bomb("list.txt", b"", b"bomb.example\n", 256 << 20);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let r = c
        .post(format!("{}/api/v1/imports?format=plain&source=bomb", s.api))
        .body(bomb)
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let err: Value = r.json().unwrap();
    let err = err["error"].as_str().unwrap();
    assert!(
        err.contains("zip entry 0 (\"list.txt\")") && err.contains("compression bomb"),
        "{err}"
    );
    // A report for the removal loop, gzip this time.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"\"timestamp\",\"src_ip\",\"infection\"\n")
        .unwrap();
    let row = b"\"2024-05-01 10:00:00\",\"192.0.2.7\",\"mirai\"\n".repeat(20_000);
    for _ in 0..(256 << 20) / row.len() {
        gz.write_all(&row).unwrap();
    }
    let r = c
        .post(format!(
            "{}/api/v1/events?format=shadowserver&report_type=event4_sinkhole",
            s.api
        ))
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let err: Value = r.json().unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("compression bomb"),
        "{err}"
    );
    // The server goes on answering, and importing.
    let r = c
        .post(format!(
            "{}/api/v1/imports?format=plain&source=after",
            s.api
        ))
        .body("after.example\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The policy snapshot follows the store shortly after, not within the request.
    eventually(5, "the import after the bombs in the policy", || {
        lookup(&s.api, "after.example") == "listed"
    });
}

#[test]
fn a_feed_download_larger_than_its_bound_is_refused_and_nothing_is_imported() {
    let body: &'static str = "toolarge.example\n".repeat(1000).leak();
    let (url, seen) = feed_server(body);
    let env = Env::new(&format!(
        "\n[input]\nmax_download_bytes = 4096\n\n[[feeds]]\nname = \"remote\"\nformat = \"plain\"\nurl = \"{url}\"\nevery = \"10s\"\n"
    ));
    let mut s = env.serve();
    let stderr = s.child.stderr.take().unwrap();
    // Feeds are fetched every 10 s at the most often: wait for two.
    eventually(30, "two fetches of the feed", || {
        seen.lock().unwrap().len() >= 2
    });
    assert_eq!(lookup(&s.api, "toolarge.example"), "not-listed");
    assert_eq!(get(&s.api, "/api/v1/imports").as_array().unwrap().len(), 0);
    assert!(
        !env.dir.path().join("data/feeds/remote.part").exists(),
        "the partial download is removed"
    );
    s.sigterm();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut { stderr }, &mut log).unwrap();
    assert!(
        log.contains("larger than 4096 bytes (input.max_download_bytes)"),
        "{log}"
    );
}
