//! `kanki lab`: the drill ISP plays its day through serve's real
//! listeners, both loops and the crawler show in the API within a bounded
//! time, SIGINT stops it cleanly and a second start on the same directory
//! resumes.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{anonymous_client, eventually, kanki_bin, signal};
use serde_json::Value;

/// A running `kanki lab`, its standard output read line by line.
struct Lab {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lab {
    fn start(dir: &std::path::Path) -> Lab {
        let mut child = Command::new(kanki_bin())
            .args([
                "lab",
                "--data-dir",
                dir.to_str().unwrap(),
                "--speed",
                "900",
                "--subscribers",
                "24",
                "--seed",
                "7",
            ])
            .env_remove("KANKI_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lab {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it.
    fn line(&mut self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "no line with {needle:?} within {secs} s:\n{}",
            self.seen.join("\n")
        );
    }

    /// SIGINT, as Ctrl-C in the terminal; it must exit 0 within 30 s.
    fn interrupt(mut self) -> Vec<String> {
        signal(self.child.id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "kanki lab exited with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kanki lab did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value after `label` on a banner line (`  console      http://...`).
fn after(line: &str, label: &str) -> String {
    line.split(label)
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn get(api: &str, token: &str, path: &str) -> Value {
    let r = anonymous_client()
        .get(format!("{api}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().unwrap()
}

#[test]
fn the_drill_isp_runs_both_loops_through_the_listeners_and_resumes_after_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let lab_dir = dir.path().join("lab");
    let mut lab = Lab::start(&lab_dir);
    let console = lab.line("console ", 120);
    let api = after(&console, "console").trim_end_matches('/').to_string();
    let sign_in = lab.line("sign in ", 5);
    assert!(sign_in.contains("as lab-admin with password "), "{sign_in}");
    let password = after(&sign_in, "with password");
    let token_line = lab.line("API token", 5);
    let token = std::fs::read_to_string(after(&token_line, " in "))
        .unwrap()
        .trim()
        .to_string();
    lab.line("playing the day of seed 7", 5);

    // The administrator signs in with the password printed once.
    let r = anonymous_client()
        .post(format!("{api}/api/v1/session"))
        .json(&serde_json::json!({"name": "lab-admin", "password": password}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "sign-in: {}", r.status());

    // RADIUS sessions arrived as accounting packets and are in the index.
    eventually(60, "RADIUS bindings in the directory", || {
        get(&api, &token, "/api/v1/directory")["bindings"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    // The prevention loop: the feed was fetched and listed, consenting
    // subscribers' queries for listed names were warned, some proceeded.
    eventually(120, "warning-page hits and a proceed-once counted", || {
        let hits = get(&api, &token, "/api/v1/warning/hits");
        let sum = |f: &str| {
            hits.as_array()
                .unwrap()
                .iter()
                .map(|h| h[f].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        sum("hits") > 0 && sum("proceeds") > 0
    });
    let listed = get(&api, &token, "/api/v1/indicators?source=lab-feed&limit=5");
    assert!(
        !listed["items"].as_array().unwrap().is_empty(),
        "the feed's sites are listed: {listed}"
    );
    // The removal loop: cases from the sinkhole reports, notices mailed,
    // acknowledged on the countermeasure site, and a reinfection.
    eventually(240, "an acknowledged notice and a reinfected case", || {
        let r = get(&api, &token, "/api/v1/removal/report");
        r["acknowledged_cases"].as_u64().unwrap_or(0) > 0
            && r["reinfected_cases"].as_u64().unwrap_or(0) > 0
    });
    let report = get(&api, &token, "/api/v1/removal/report");
    let sent: u64 = report["notices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n[0] == "mail" && n[1] == "sent")
        .map(|n| n[2].as_u64().unwrap())
        .sum();
    assert!(sent > 0, "{report}");
    let cases = get(&api, &token, "/api/v1/cases?limit=100");
    assert!(!cases["items"].as_array().unwrap().is_empty(), "{cases}");
    // The notices reached the lab's mail server.
    let mails = std::fs::read_dir(lab_dir.join("mail/new")).unwrap().count();
    assert!(mails as u64 >= sent, "{mails} mails for {sent} notices");

    // The crawler: serve crawled the lab's web of attack chains from the
    // seeds, listed what the compromised shop's chain leads to, and wrote
    // to the shop's contact, found through the lab's RDAP.
    eventually(
        120,
        "a crawl of the shop, its finds listed, its contact noticed",
        || {
            let crawls = get(&api, &token, "/api/v1/crawls?limit=100");
            let shop = crawls.as_array().unwrap().iter().any(|c| {
                c["seed"].as_str().unwrap_or("").contains("shop.lab")
                    && c["verdict"].as_str() != Some("clean")
            });
            let found = get(&api, &token, "/api/v1/indicators?source=crawler&limit=5");
            let notices = get(&api, &token, "/api/v1/crawl-notices");
            let noticed = notices
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["site"].as_str().unwrap_or("").contains("shop.lab"));
            shop && !found["items"].as_array().unwrap().is_empty() && noticed
        },
    );

    let seen = lab.interrupt();
    let last = seen
        .iter()
        .rev()
        .find(|l| l.starts_with("day "))
        .expect("a status line")
        .clone();
    assert!(
        last.contains("acks ") && !last.contains("acks 0 "),
        "{last}"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(lab_dir.join("lab.json")).unwrap()).unwrap();
    let stopped_at = state["minute"].as_u64().unwrap();
    assert!(stopped_at > 0);

    // A second start resumes the same ISP where it stopped: the operators
    // and their token are kept, the day goes on from that minute.
    let mut again = Lab::start(&lab_dir);
    let banner = again.line("kanki lab: a drill ISP", 120);
    assert!(banner.contains("(resumed)"), "{banner}");
    let console = again.line("console ", 5);
    let api = after(&console, "console").trim_end_matches('/').to_string();
    let sign_in = again.line("sign in ", 5);
    assert!(
        !sign_in.contains("with password "),
        "no new password: {sign_in}"
    );
    again.line("playing the day of seed 7", 5);
    let before = report["acknowledged_cases"].as_u64().unwrap();
    let r = get(&api, &token, "/api/v1/removal/report");
    assert!(
        r["acknowledged_cases"].as_u64().unwrap() >= before,
        "the store is the same: {r}"
    );
    // Let the day go on a little before stopping.
    std::thread::sleep(Duration::from_secs(2));
    again.interrupt();
    let state: Value =
        serde_json::from_slice(&std::fs::read(lab_dir.join("lab.json")).unwrap()).unwrap();
    assert!(
        state["minute"].as_u64().unwrap() > stopped_at,
        "the day went on from minute {stopped_at}: {state}"
    );
}
