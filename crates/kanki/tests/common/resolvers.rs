//! Real resolvers and `dig` in tests: a process killed when dropped (its
//! log printed when the test fails), `dig` answers, `/metrics` values.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{client, need};

/// A resolver process, killed when dropped.
pub struct Proc {
    child: Child,
    log: std::path::PathBuf,
    name: &'static str,
}

impl Proc {
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).replace('\0', "")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}

/// Unbound on 127.0.0.1:`port`, authoritative for a private root zone
/// holding `records` (zone-file lines), so nothing leaves the machine.
pub fn unbound_with_root_zone(dir: &Path, port: u16, records: &str) -> Proc {
    let bin = need("unbound", "unbound");
    let ub = dir.join("unbound");
    fs::create_dir_all(&ub).unwrap();
    fs::write(
        ub.join("root.zone"),
        format!(
            "$TTL 300\n. IN SOA localhost. hostmaster.localhost. 1 300 60 604800 60\n. IN NS localhost.\n\
             localhost. A 127.0.0.1\n{records}"
        ),
    )
    .unwrap();
    fs::write(
        ub.join("unbound.conf"),
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  \
             use-syslog: no\n  logfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  \
             pidfile: \"{d}/unbound.pid\"\n  access-control: 127.0.0.0/8 allow\n  \
             do-not-query-localhost: no\n\
             auth-zone:\n  name: \".\"\n  zonefile: \"{d}/root.zone\"\n  for-upstream: yes\n  for-downstream: yes\n",
            d = ub.display()
        ),
    )
    .unwrap();
    spawn(
        "unbound",
        dir,
        Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(ub.join("unbound.conf")),
    )
}

pub fn spawn(name: &'static str, dir: &Path, cmd: &mut Command) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let f = fs::File::create(&log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc { child, log, name }
}

/// `dig` answer: status and the answer section's lines.
#[derive(Debug)]
pub struct Dig {
    pub status: String,
    pub answer: Vec<String>,
    pub text: String,
}

pub fn dig(args: &[&str]) -> Dig {
    let out = Command::new(need("dig", "bind9-dnsutils"))
        .args(["+time=1", "+tries=1"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_string();
    let answer = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    Dig {
        status,
        answer,
        text,
    }
}

pub fn ask(port: u16, name: &str) -> Dig {
    dig(&["-p", &port.to_string(), "@127.0.0.1", name, "A"])
}

/// A value from `/metrics` (0 when absent).
pub fn metric(api: &str, name: &str) -> f64 {
    let text = client()
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
