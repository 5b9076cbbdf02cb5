//! A real Cowrie honeypot (pip package `cowrie`, in the virtual environment
//! scripts/test.sh makes at /opt/kanki/venv-cowrie) on loopback, attacked
//! over telnet by this test; its JSON log is ingested, grouped per session,
//! and attributed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, eventually, free_port};
use serde_json::Value;

fn venv() -> PathBuf {
    let v = PathBuf::from(
        std::env::var("KANKI_COWRIE_VENV").unwrap_or_else(|_| "/opt/kanki/venv-cowrie".into()),
    );
    assert!(
        v.join("bin/twistd").exists() && v.join("bin/cowrie").exists(),
        "Cowrie is needed by this test: run scripts/test.sh, which installs it (pip install cowrie) in {}",
        v.display()
    );
    v
}

struct Cowrie(Child);

impl Drop for Cowrie {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Cowrie refuses to run as root: as root, it runs as nobody.
fn start_cowrie(dir: &std::path::Path, telnet: u16, ssh: u16) -> Cowrie {
    for d in [
        "etc",
        "var/log/cowrie",
        "var/lib/cowrie/downloads",
        "var/lib/cowrie/tty",
        "var/run",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("etc/cowrie.cfg"),
        format!(
            "[honeypot]\nstate_path = var/lib/cowrie\ndownload_path = var/lib/cowrie/downloads\nttylog_path = var/lib/cowrie/tty\nlog_path = var/log/cowrie\n\n[ssh]\nenabled = true\nlisten_endpoints = tcp:{ssh}:interface=127.0.0.1\n\n[telnet]\nenabled = true\nlisten_endpoints = tcp:{telnet}:interface=127.0.0.1\n\n[output_jsonlog]\nenabled = true\nlogfile = var/log/cowrie/cowrie.json\nepoch_timestamp = false\n"
        ),
    )
    .unwrap();
    let v = venv();
    let mut cmd = if unsafe_is_root() {
        let _ = Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(dir)
            .status();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(v.join("bin/twistd"));
        c
    } else {
        Command::new(v.join("bin/twistd"))
    };
    let child = cmd
        .args([
            "-n",
            "--umask=0022",
            "--logger",
            "cowrie.python.logfile.stdoutLogger",
            "cowrie",
        ])
        .current_dir(dir)
        .env("PATH", format!("{}:/usr/bin:/bin", v.join("bin").display()))
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = Cowrie(child);
    eventually(60, "cowrie listening", || {
        TcpStream::connect(("127.0.0.1", telnet)).is_ok()
    });
    c
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A bot's telnet session: each line sent after the server's prompt.
fn telnet(port: u16, lines: &[&str]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
    for l in lines {
        s.write_all(format!("{l}\r\n").as_bytes()).unwrap();
        let _ = s.read(&mut buf);
    }
}

#[test]
fn a_real_cowrie_log_is_ingested_per_session() {
    let env = Env::new("");
    let cw = env.dir.path().join("cowrie");
    let (tport, sport) = (free_port(), free_port());
    let _cowrie = start_cowrie(&cw, tport, sport);
    // A bot that gets in and runs a command; one that only knocks.
    telnet(tport, &["root", "hunter2", "uname -a", "exit"]);
    drop(TcpStream::connect(("127.0.0.1", tport)).unwrap());
    let log = cw.join("var/log/cowrie/cowrie.json");
    eventually(30, "both sessions closed in cowrie.json", || {
        std::fs::read_to_string(&log)
            .map(|t| t.matches("cowrie.session.closed").count() >= 2)
            .unwrap_or(false)
    });

    let subs = env.dir.path().join("subs.csv");
    std::fs::write(&subs, "id,email,language,consent\nS1,s1@example.jp,ja,no\n").unwrap();
    env.ok(&["subscribers", "import", subs.to_str().unwrap()]);
    let st = env.dir.path().join("static.csv");
    std::fs::write(&st, "subscriber,prefix,from,to\nS1,127.0.0.1,2024-01-01,\n").unwrap();
    env.ok(&[
        "bindings",
        "import",
        "--format",
        "static",
        st.to_str().unwrap(),
    ]);

    // Every session Cowrie logged (the readiness probe's too) is one event.
    let sessions = std::fs::read_to_string(&log)
        .unwrap()
        .matches("cowrie.session.connect")
        .count();
    let out: Value = serde_json::from_str(&env.ok(&[
        "ingest",
        "--format",
        "cowrie",
        "--json",
        log.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(out["events"], sessions, "{out}");
    assert_eq!(out["attributed"], sessions, "{out}");
    // One case per (subscriber, threat): every session is the threat "cowrie".
    let cases: Value = serde_json::from_str(&env.ok(&["cases", "list", "--json"])).unwrap();
    assert_eq!(cases.as_array().unwrap().len(), 1, "{cases}");
    assert_eq!(cases[0]["events"], sessions);
    // Its events, each as `kanki events show` gives it.
    let case = cases[0]["id"].to_string();
    let listed = env.ok(&["events", "list", "--case", &case, "--json"]);
    let events: Vec<Value> = listed
        .lines()
        .map(|l| {
            let id = serde_json::from_str::<Value>(l).unwrap()["id"].to_string();
            serde_json::from_str(&env.ok(&["events", "show", &id])).unwrap()
        })
        .collect();
    assert_eq!(events.len(), sessions);
    let bot = events
        .iter()
        .find(|e| e["classification.type"] == "infected-system")
        .expect("the session that logged in and ran a command");
    assert_eq!(bot["source.ip"], "127.0.0.1");
    assert_eq!(bot["destination.port"], tport);
    let raw = bot["raw"].as_str().unwrap();
    assert!(
        raw.contains("\"input\":\"uname -a\"") && raw.contains("hunter2"),
        "{raw}"
    );
    assert!(events.iter().any(|e| e["classification.type"] == "scanner"));
    let again: Value = serde_json::from_str(&env.ok(&[
        "ingest",
        "--format",
        "cowrie",
        "--json",
        log.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(again["events"], 0);
}
