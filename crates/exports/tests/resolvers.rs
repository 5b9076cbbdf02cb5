//! The exports as the resolvers themselves read them.
//!
//! Debian packages these tests need (scripts/test.sh installs them):
//!
//!     bind9-utils   named-checkzone: the RPZ export is a loadable zone
//!     bind9         named: a live BIND enforces the RPZ export as meant
//!     unbound       unbound-checkconf: the Unbound export is valid config
//!
//! A missing tool fails its test with a message naming the package; no
//! test here passes without having run its tool.
//!
//! The live BIND test runs `named` on a free loopback port, authoritative
//! for a private root zone so that it never sends a query anywhere, and
//! asks it over UDP from this process.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kanki_exports::{DnsList, RpzAction, RpzOptions, write_rpz, write_unbound};

/// Finds a tool on PATH or in the usual sbin folders, or fails the test.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` was not found: run scripts/test.sh, which installs the Debian package \
         `{package}` (or `apt-get install -y {package}`)"
    );
}

#[test]
#[should_panic(expected = "run scripts/test.sh, which installs the Debian package `no-such-pkg`")]
fn a_missing_tool_fails_the_test_and_says_what_to_install() {
    tool("kanki-no-such-tool", "no-such-pkg");
}

/// A list with a bit of everything: wildcards and names they cover, an
/// allowlist exception, names `check-names` dislikes, IPv4 and IPv6
/// triggers whose owner names exercise every `zz` case.
fn rich_list() -> DnsList {
    DnsList::new(
        [
            "bad.example",
            "www.bad.example",
            "x.good.bad.example",
            "evil.test",
            "_dmarc.phish.example",
            "a-b.c_d.example",
            "xn--r8jz45g.example",
            "deep.sub.domain.of.some.example",
        ],
        [
            "192.0.2.1",
            "198.51.100.0/24",
            "10.0.0.0/8",
            "203.0.113.255/32",
            "2001:db8::1",
            "2001:db8::/32",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "2001:db8:1:2:3:4:5:6",
            "2001:db8:0:1:2:3:4:5",
            "::1",
            "fe80::/10",
            "::ffff:192.0.2.99",
            "2001:db8:5::/48",
        ],
    )
    .with_exceptions(["good.bad.example"])
}

const ACTIONS: &[&str] = &[
    "nxdomain",
    "nodata",
    "passthru",
    "drop",
    "cname:warning.kanki.",
    "cname:*.garden.example.",
    "local:192.0.2.80,2001:db8::80",
];

fn rpz_file(dir: &Path, file: &str, list: &DnsList, opts: &RpzOptions) -> PathBuf {
    let path = dir.join(file);
    let f = fs::File::create(&path).unwrap();
    write_rpz(f, list, opts).unwrap();
    path
}

#[test]
fn named_checkzone_accepts_the_rpz_export() {
    let checkzone = tool("named-checkzone", "bind9-utils");
    let dir = tempfile::tempdir().unwrap();
    for action in ACTIONS {
        for wildcards in [true, false] {
            let opts = RpzOptions {
                action: action.parse().unwrap(),
                wildcards,
                serial: 2026010101,
                ..RpzOptions::default()
            };
            let path = rpz_file(dir.path(), "rpz.zone", &rich_list(), &opts);
            // check-names and integrity checks as strict as a primary zone's.
            let out = Command::new(&checkzone)
                .args([
                    "-k", "fail", "-n", "fail", "-i", "local", "-M", "fail", "-S", "fail",
                ])
                .arg(&opts.origin)
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "named-checkzone refused the {action} export (wildcards {wildcards}):\n{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(&path).unwrap()
            );
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.contains("\n128.1.zz.db8.2001.rpz-ip "), "{text}");
            assert_eq!(text.contains("\n*.bad.example "), wildcards, "{text}");
        }
    }
}

#[test]
fn unbound_checkconf_accepts_the_unbound_export() {
    let checkconf = tool("unbound-checkconf", "unbound");
    let dir = tempfile::tempdir().unwrap();
    let list = rich_list();
    for action in ACTIONS {
        let include = dir.path().join("kanki.conf");
        write_unbound(
            fs::File::create(&include).unwrap(),
            &list,
            &action.parse().unwrap(),
        )
        .unwrap();
        let conf = dir.path().join("unbound.conf");
        fs::write(
            &conf,
            format!(
                "server:\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  \
                 pidfile: \"\"\n  include: \"{include}\"\n",
                dir = dir.path().display(),
                include = include.display()
            ),
        )
        .unwrap();
        let out = Command::new(&checkconf).arg(&conf).output().unwrap();
        assert!(
            out.status.success(),
            "unbound-checkconf refused the {action} export:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&include).unwrap()
        );
    }
}

/// `named` running in the background; killed when dropped.
struct Named {
    child: Child,
    log: PathBuf,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private root zone: every answer the resolver needs, so it never
/// looks anywhere else.
const ROOT_ZONE: &str = "\
$TTL 300
. IN SOA localhost. hostmaster.localhost. 1 300 60 604800 60
. IN NS localhost.
localhost. A 127.0.0.1
bad.example. A 10.0.0.1
www.bad.example. A 10.0.0.1
good.bad.example. A 10.0.0.2
x.good.bad.example. A 10.0.0.3
y.x.good.bad.example. A 10.0.0.3
deep.www.bad.example. A 10.0.0.1
clean.example. A 10.0.0.9
v4host.example. A 192.0.2.1
v4net.example. A 198.51.100.77
v4near.example. A 192.0.2.2
v6host.example. AAAA 2001:db8::1
v6net.example. AAAA 2001:db8:5::7
v6near.example. AAAA 2001:db8:6::7
v6two.example. AAAA 2001:db8:0:0:1:0:0:1
v6long.example. AAAA 2001:0:0:1:0:0:0:1
nodata.example. A 10.0.1.1
drop.example. A 10.0.1.2
garden.example. A 10.0.1.3
warn.example. A 10.0.1.4
local.example. A 10.0.1.5
local.example. AAAA 2001:db8::5
*.garden.example. A 192.0.2.80
warning.kanki. A 192.0.2.81
";

/// A port for named, free for UDP and TCP and below the kernel's
/// ephemeral range (32768 and up): a port `bind(0)` handed out may be
/// handed out again as some program's source port before named binds it.
fn named_port() -> u16 {
    let start = 23_000 + (std::process::id() % 900) as u16 * 10;
    (start..32_000)
        .find(|&p| {
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
                && UdpSocket::bind(("127.0.0.1", p)).is_ok()
        })
        .expect("no free port on 127.0.0.1 below 32000")
}

fn start_named(dir: &Path, zones: &[(&str, PathBuf)]) -> (Named, u16) {
    let named = tool("named", "bind9");
    let port = named_port();
    let root = dir.join("root.zone");
    fs::write(&root, ROOT_ZONE).unwrap();
    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
         listen-on-v6 {{ none; }};\n  pid-file none;\n  session-keyfile \"{d}/session.key\";\n  \
         managed-keys-directory \"{d}\";\n  recursion yes;\n  allow-query {{ 127.0.0.1; }};\n  \
         allow-recursion {{ 127.0.0.1; }};\n  dnssec-validation no;\n  notify no;\n  \
         response-policy {{",
        d = dir.display()
    );
    for (origin, _) in zones {
        conf.push_str(&format!(" zone \"{origin}\";"));
    }
    conf.push_str(" } qname-wait-recurse no;\n};\ncontrols { };\n");
    conf.push_str(&format!(
        "zone \".\" {{ type primary; file \"{}\"; }};\n",
        root.display()
    ));
    for (origin, file) in zones {
        conf.push_str(&format!(
            "zone \"{origin}\" {{ type primary; file \"{}\"; }};\n",
            file.display()
        ));
    }
    let conf_path = dir.join("named.conf");
    fs::write(&conf_path, conf).unwrap();
    let log = dir.join("named.log");
    let log_file = fs::File::create(&log).unwrap();
    let child = Command::new(named)
        .args(["-g", "-n", "1", "-c"])
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let named = Named { child, log };
    // Wait until it answers for the last policy zone, loaded last.
    let deadline = Instant::now() + Duration::from_secs(20);
    let last = zones.last().map(|z| z.0).unwrap_or(".");
    loop {
        if query(port, last, 6).is_some_and(|a| a.rcode == 0 && !a.records.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            let log = fs::read_to_string(&named.log).unwrap_or_default();
            panic!("named did not come up on port {port}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (named, port)
}

/// A DNS answer: the response code and the answer section as
/// (type, data) with data as text (an address or a name).
#[derive(Debug)]
struct Answer {
    rcode: u8,
    records: Vec<(u16, String)>,
}

const A: u16 = 1;
const CNAME: u16 = 5;
const AAAA: u16 = 28;

/// Asks 127.0.0.1:`port` for `name`/`qtype` with recursion desired;
/// `None` when no answer comes within 1.5 s.
fn query(port: u16, name: &str, qtype: u16) -> Option<Answer> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut msg = vec![0x4b, 0x4b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    sock.send_to(&msg, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let m = &buf[..n];
    assert_eq!(&m[..2], &[0x4b, 0x4b], "reply to another query");
    let rcode = m[3] & 0x0f;
    let qd = u16::from_be_bytes([m[4], m[5]]);
    let an = u16::from_be_bytes([m[6], m[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(m, pos).1 + 4;
    }
    let mut records = Vec::new();
    for _ in 0..an {
        pos = read_name(m, pos).1;
        let rtype = u16::from_be_bytes([m[pos], m[pos + 1]]);
        let len = usize::from(u16::from_be_bytes([m[pos + 8], m[pos + 9]]));
        let data = pos + 10;
        let text = match rtype {
            A => Ipv4Addr::from(<[u8; 4]>::try_from(&m[data..data + 4]).unwrap()).to_string(),
            AAAA => Ipv6Addr::from(<[u8; 16]>::try_from(&m[data..data + 16]).unwrap()).to_string(),
            _ => read_name(m, data).0,
        };
        records.push((rtype, text));
        pos = data + len;
    }
    Some(Answer { rcode, records })
}

/// Reads a possibly compressed name at `pos`: the name, and where the
/// field ends.
fn read_name(m: &[u8], mut pos: usize) -> (String, usize) {
    let mut name = String::new();
    let mut end = None;
    loop {
        let len = m[pos];
        if len & 0xc0 == 0xc0 {
            end.get_or_insert(pos + 2);
            pos = usize::from(u16::from_be_bytes([len & 0x3f, m[pos + 1]]));
            continue;
        }
        if len == 0 {
            name.push('.');
            return (name, end.unwrap_or(pos + 1));
        }
        let label = &m[pos + 1..pos + 1 + usize::from(len)];
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(label).unwrap());
        pos += 1 + usize::from(len);
    }
}

const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;

#[test]
fn bind_enforces_the_rpz_export() {
    let dir = tempfile::tempdir().unwrap();
    let main = RpzOptions {
        origin: "rpz.kanki".into(),
        ..RpzOptions::default()
    };
    let mut zones = vec![(
        "rpz.kanki",
        rpz_file(
            dir.path(),
            "rpz.kanki.zone",
            &DnsList::new(
                ["bad.example", "www.bad.example", "x.good.bad.example"],
                [
                    "192.0.2.1",
                    "198.51.100.0/24",
                    "2001:db8::1",
                    "2001:db8:5::/48",
                    "2001:db8:0:0:1:0:0:1",
                    "2001:0:0:1:0:0:0:1",
                ],
            )
            .with_exceptions(["good.bad.example"]),
            &main,
        ),
    )];
    // One zone per other action, each for one name.
    let others = [
        ("nodata.rpz", "nodata", "nodata.example"),
        ("drop.rpz", "drop", "drop.example"),
        ("garden.rpz", "cname:*.garden.example.", "garden.example"),
        ("warn.rpz", "cname:warning.kanki.", "warn.example"),
        (
            "local.rpz",
            "local:192.0.2.82,2001:db8::82",
            "local.example",
        ),
    ];
    for (origin, action, name) in others {
        let opts = RpzOptions {
            origin: origin.into(),
            action: action.parse::<RpzAction>().unwrap(),
            ..RpzOptions::default()
        };
        let list = DnsList::new([name], Vec::<String>::new());
        zones.push((
            origin,
            rpz_file(dir.path(), &format!("{origin}.zone"), &list, &opts),
        ));
    }
    let (named, port) = start_named(dir.path(), &zones);

    let ask = |name: &str, qtype: u16| {
        query(port, name, qtype).unwrap_or_else(|| panic!("no answer for {name}"))
    };
    let blocked = |name: &str, qtype: u16| {
        let a = ask(name, qtype);
        assert_eq!(a.rcode, NXDOMAIN, "{name} should be blocked: {a:?}");
    };
    let answered = |name: &str, qtype: u16, expect: &[(u16, &str)]| {
        let a = ask(name, qtype);
        let got: Vec<(u16, &str)> = a.records.iter().map(|(t, d)| (*t, d.as_str())).collect();
        assert_eq!((a.rcode, got.as_slice()), (NOERROR, expect), "{name}");
    };

    // QNAME triggers, the wildcard, and the allowlist exception carved out
    // of it, with a listed name below the exception.
    blocked("bad.example", A);
    blocked("www.bad.example", A);
    blocked("deep.www.bad.example", A);
    answered("good.bad.example", A, &[(A, "10.0.0.2")]);
    blocked("x.good.bad.example", A);
    blocked("y.x.good.bad.example", A);
    answered("clean.example", A, &[(A, "10.0.0.9")]);
    // IP triggers, IPv4 and IPv6 with `zz`.
    blocked("v4host.example", A);
    blocked("v4net.example", A);
    answered("v4near.example", A, &[(A, "192.0.2.2")]);
    blocked("v6host.example", AAAA);
    blocked("v6net.example", AAAA);
    blocked("v6two.example", AAAA);
    blocked("v6long.example", AAAA);
    answered("v6near.example", AAAA, &[(AAAA, "2001:db8:6::7")]);
    // The other actions.
    answered("nodata.example", A, &[]);
    answered("sub.nodata.example", A, &[]);
    assert!(
        query(port, "drop.example", A).is_none(),
        "drop.example should get no answer"
    );
    answered(
        "garden.example",
        A,
        &[(CNAME, "garden.example.garden.example."), (A, "192.0.2.80")],
    );
    answered(
        "www.garden.example",
        A,
        &[
            (CNAME, "www.garden.example.garden.example."),
            (A, "192.0.2.80"),
        ],
    );
    answered(
        "warn.example",
        A,
        &[(CNAME, "warning.kanki."), (A, "192.0.2.81")],
    );
    answered("local.example", A, &[(A, "192.0.2.82")]);
    answered("sub.local.example", AAAA, &[(AAAA, "2001:db8::82")]);

    let log_path = named.log.clone();
    drop(named);
    let all = String::from_utf8_lossy(&fs::read(&log_path).unwrap_or_default()).replace('\0', "");
    for bad in ["invalid rpz", "not the canonical", "bad owner name"] {
        assert!(!all.contains(bad), "named logged {bad:?}:\n{all}");
    }
    // Make sure the checks above ran against the policy zones, not around them.
    assert!(all.contains("rpz: rpz.kanki: reload done"), "{all}");
    assert!(
        all.contains("rpz IP NXDOMAIN rewrite v6long.example"),
        "{all}"
    );
}
