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

/// A private root zone holding `records` (zone-file lines).
fn root_zone(records: &str) -> String {
    format!(
        "$TTL 300\n. IN SOA localhost. hostmaster.localhost. 1 300 60 604800 60\n. IN NS localhost.\n\
         localhost. A 127.0.0.1\n{records}"
    )
}

/// Unbound's `server:` lines for 127.0.0.1:`port`, in the foreground,
/// its files in `dir`.
fn unbound_server(port: u16, dir: &Path) -> String {
    format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n  \
         use-syslog: no\n  logfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  \
         pidfile: \"{d}/unbound.pid\"\n  access-control: 127.0.0.0/8 allow\n  \
         do-not-query-localhost: no\n",
        d = dir.display()
    )
}

/// Unbound on 127.0.0.1:`port`, authoritative for a private root zone
/// holding `records` (zone-file lines), so nothing leaves the machine.
pub fn unbound_with_root_zone(dir: &Path, port: u16, records: &str) -> Proc {
    let bin = need("unbound", "unbound");
    let ub = dir.join("unbound");
    fs::create_dir_all(&ub).unwrap();
    fs::write(ub.join("root.zone"), root_zone(records)).unwrap();
    fs::write(
        ub.join("unbound.conf"),
        format!(
            "{}auth-zone:\n  name: \".\"\n  zonefile: \"{d}/root.zone\"\n  for-upstream: yes\n  for-downstream: yes\n",
            unbound_server(port, &ub),
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

/// A validating Unbound on 127.0.0.1:`port` whose private root zone,
/// holding `records`, is signed (dnssec-keygen, dnssec-signzone) and
/// trusted; each `(good, forged)` pair of `tamper` is then replaced in
/// the signed zone, so the records holding `forged` are bogus: an
/// ordinary query for them gets SERVFAIL, a query with CD the forged data.
pub fn validating_unbound_with_signed_root(
    dir: &Path,
    port: u16,
    records: &str,
    tamper: &[(&str, &str)],
) -> Proc {
    use super::succeed;
    let keygen = need("dnssec-keygen", "bind9-utils");
    let signzone = need("dnssec-signzone", "bind9-utils");
    let ub = dir.join("unbound-signed");
    fs::create_dir_all(&ub).unwrap();
    fs::write(ub.join("root.zone"), root_zone(records)).unwrap();
    for ksk in [true, false] {
        let mut c = Command::new(&keygen);
        c.current_dir(&ub).args(["-q", "-a", "ECDSAP256SHA256"]);
        if ksk {
            c.args(["-f", "KSK"]);
        }
        succeed(c.arg("."));
    }
    succeed(Command::new(&signzone).current_dir(&ub).args([
        "-q",
        "-o",
        ".",
        "-K",
        ".",
        "-S",
        "-f",
        "root.signed",
        "root.zone",
    ]));
    let mut signed = fs::read_to_string(ub.join("root.signed")).unwrap();
    for (good, forged) in tamper {
        assert!(signed.contains(good), "{good} not in the signed zone");
        signed = signed.replace(good, forged);
    }
    fs::write(ub.join("root.signed"), signed).unwrap();
    // dsset-.: ".  IN DS <tag> <alg> <digest type> <digest in parts>"
    let ds = fs::read_to_string(ub.join("dsset-.")).unwrap();
    let f: Vec<&str> = ds.split_whitespace().collect();
    let anchor = format!(". DS {} {} {} {}", f[3], f[4], f[5], f[6..].concat());
    fs::write(
        ub.join("unbound.conf"),
        format!(
            "{}  module-config: \"validator iterator\"\n  trust-anchor: \"{anchor}\"\n\
             auth-zone:\n  name: \".\"\n  zonefile: \"{d}/root.signed\"\n  for-upstream: yes\n  for-downstream: no\n",
            unbound_server(port, &ub),
            d = ub.display()
        ),
    )
    .unwrap();
    spawn(
        "unbound (validating)",
        dir,
        Command::new(need("unbound", "unbound"))
            .arg("-d")
            .arg("-c")
            .arg(ub.join("unbound.conf")),
    )
}
