//! Running the real `kanki` binary in tests.
#![allow(dead_code)]

pub mod browser;
pub mod resolvers;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn kanki_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kanki"))
}

/// The repository's top directory (for examples/).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub api: String,
    /// Set once the test operator and its token are in the data directory.
    test_operator: std::sync::OnceLock<()>,
}

/// The API token every request of [`client`] carries: one per test
/// process, registered in each [`Env`]'s data directory (for an operator
/// `tests` holding every role) before its `kanki serve` starts.
pub fn test_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| kanki_operators::secret::new_token().token)
}

impl Env {
    /// A data directory and a configuration with a free API port.
    pub fn new(extra: &str) -> Env {
        Env::with_api("", extra)
    }

    /// Like [`Env::new`], with `api` (lines of `[api]`, e.g. TLS) too.
    /// With TLS the API's address is `https://`.
    pub fn with_api(api: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("kanki.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n{api}\n\n[policy]\nrefresh_every = \"200ms\"\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let scheme = if api.contains("tls_cert_file") {
            "https"
        } else {
            "http"
        };
        Env {
            dir,
            config,
            api: format!("{scheme}://127.0.0.1:{port}"),
            test_operator: std::sync::OnceLock::new(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kanki_bin());
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    /// Runs a subcommand and returns its output, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs a subcommand that must succeed and returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kanki {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Imports `subscribers` (a CSV with its header) and static bindings
    /// (`subscriber,prefix,from,to` rows, without the header).
    pub fn directory(&self, subscribers: &str, statics: &str) {
        let subs = self.dir.path().join("subscribers.csv");
        std::fs::write(&subs, subscribers).unwrap();
        self.ok(&["subscribers", "import", subs.to_str().unwrap()]);
        let st = self.dir.path().join("static.csv");
        std::fs::write(&st, format!("subscriber,prefix,from,to\n{statics}")).unwrap();
        self.ok(&[
            "bindings",
            "import",
            "--format",
            "static",
            st.to_str().unwrap(),
        ]);
    }

    /// Starts `kanki serve` and waits for /healthz.
    /// S1 (consenting, static 127.0.0.1/32) and S2 (not consenting,
    /// static 127.0.0.2/32) in the directory, and bad.example listed.
    pub fn two_subscribers_and_a_listed_name(&self) {
        let dir = self.dir.path();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_string()
        };
        let subs = write(
            "subscribers.csv",
            "id,email,language,consent\nS1,s1@example.jp,ja,yes\nS2,s2@example.jp,en,no\n",
        );
        self.ok(&["subscribers", "import", &subs]);
        let statics = write(
            "static.csv",
            "subscriber,prefix,from,to\nS1,127.0.0.1/32,2020-01-01T00:00:00Z,\nS2,127.0.0.2/32,2020-01-01T00:00:00Z,\n",
        );
        self.ok(&["bindings", "import", "--format", "static", &statics]);
        let list = write("list.txt", "bad.example\n");
        self.ok(&["import", "--format", "plain", &list]);
    }

    /// Adds the operator `tests` (every role) and registers
    /// [`test_token`] for it, once.
    pub fn test_operator(&self) {
        self.test_operator.get_or_init(|| {
            self.ok(&[
                "operators",
                "add",
                "tests",
                "--kind",
                "machine",
                "--roles",
                "viewer,analyst,attribution-officer,list-curator,notices-officer,auditor,administrator",
            ]);
            self.ok_with_stdin(
                &[
                    "tokens",
                    "create",
                    "--operator",
                    "tests",
                    "--name",
                    "tests",
                    "--expires-in",
                    "never",
                    "--secret-stdin",
                ],
                test_token(),
            );
        });
    }

    /// Runs a subcommand with `input` on its standard input; it must succeed.
    pub fn ok_with_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{input}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kanki {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn serve(&self) -> Server {
        self.serve_checked_by(&client())
    }

    /// Starts `kanki serve` and waits until `client` gets its /healthz
    /// (a client that trusts the test CA, for the API over TLS).
    pub fn serve_checked_by(&self, client: &reqwest::blocking::Client) -> Server {
        self.test_operator();
        let child = self
            .cmd(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            api: self.api.clone(),
        };
        server.wait_healthy(client);
        server
    }
}

pub struct Server {
    pub child: Child,
    pub api: String,
}

impl Server {
    fn wait_healthy(&mut self, client: &reqwest::blocking::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/healthz", self.api)).send()
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // It stopped (a port taken meanwhile, a bad configuration):
                // say why.
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("kanki serve exited with {status} before it was healthy:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kanki serve did not become healthy within 30 s");
    }

    pub fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status.
    pub fn sigterm(self) -> std::process::ExitStatus {
        self.sigterm_with_log().0
    }

    /// SIGTERM, the exit status and what the server logged.
    pub fn sigterm_with_log(mut self) -> (std::process::ExitStatus, String) {
        let status = self.stop_on_sigterm();
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut log);
        }
        (status, log)
    }

    fn stop_on_sigterm(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "kanki serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The audit log's actor for a request made with [`test_token`].
pub fn test_actor() -> String {
    let id = &test_token()["kanki_".len().."kanki_".len() + 16];
    format!("tests token {id}")
}

/// An HTTP client whose every request carries [`test_token`].
pub fn client() -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", test_token()).parse().unwrap(),
    );
    anonymous_client_builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An HTTP client carrying [`test_token`] that trusts only the CA in the
/// PEM file `ca` (for the API over TLS).
pub fn client_trusting(ca: &str) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", test_token()).parse().unwrap(),
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    anonymous_client_builder()
        .default_headers(headers)
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// An HTTP client with no credentials.
pub fn anonymous_client() -> reqwest::blocking::Client {
    anonymous_client_builder().build().unwrap()
}

fn anonymous_client_builder() -> reqwest::blocking::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60))
}

/// A port free on 127.0.0.1 for both TCP and UDP, for a server a test
/// starts. It is taken below the kernel's ephemeral range (32768 and up on
/// Linux): a port the kernel hands out (`bind(0)`) can be handed out again,
/// between the test picking it and the server binding it, as the source
/// port of some other program's query — BIND and Unbound open many — and
/// the server then fails with "address already in use". Each call in a
/// process gives another port, from a start that differs per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let port = (FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!(
        "no free port on 127.0.0.1 between {FIRST} and {}",
        FIRST + SPAN
    );
}

/// Waits until `f` holds, or fails after `secs`.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {secs} s");
}

/// A program the tests need; its absence is a failure that says how to get it.
pub fn need(program: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{program} is needed by this test: run scripts/test.sh, which installs it (Debian package {package})"
    );
}

/// Runs a helper program to its end and returns its output; the test
/// fails, with the program's standard error, unless it succeeded.
pub fn succeed(c: &mut Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        c.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Python with aiosmtpd (scripts/test.sh installs it with pip).
pub fn python() -> String {
    let py = std::env::var("KANKI_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{py} cannot import aiosmtpd: run scripts/test.sh, which installs it (pip install aiosmtpd), or set KANKI_PYTHON"
    );
    py
}

pub struct Smtp {
    child: Child,
    maildir: std::path::PathBuf,
    pub port: u16,
}

impl Smtp {
    pub fn start(dir: &std::path::Path) -> Smtp {
        let port = free_port();
        let maildir = dir.join("maildir");
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(20, "aiosmtpd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Smtp {
            child,
            maildir,
            port,
        }
    }

    /// aiosmtpd with TLS and AUTH ([`SECURE_SMTP`]), `mode` `starttls` or `tls`.
    pub fn start_secure(dir: &std::path::Path, mode: &str, cert: &str, key: &str) -> Smtp {
        use std::io::BufRead;
        let port = free_port();
        let maildir = dir.join(format!("maildir-{mode}"));
        let mut child = Command::new(python())
            .arg("-c")
            .arg(SECURE_SMTP)
            .args([mode, &port.to_string(), cert, key])
            .arg(&maildir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd ({mode}) did not start");
        Smtp {
            child,
            maildir,
            port,
        }
    }

    /// The maildir the server delivers into.
    pub fn maildir(&self) -> &std::path::Path {
        &self.maildir
    }

    /// Hands `message` to the server over SMTP (Python's smtplib), as a
    /// mail server sends a bounce: from the null sender to `to`.
    pub fn deliver(&self, to: &str, message: &str) {
        let script = r#"
import smtplib, sys
port, to, message = sys.argv[1:4]
with smtplib.SMTP("127.0.0.1", int(port), timeout=10) as s:
    s.sendmail("", [to], message.encode())
"#;
        succeed(Command::new(python()).args(["-c", script, &self.port.to_string(), to, message]));
    }

    /// The received mails, decoded by Python's email package: to, subject,
    /// body, and the secure server's marks (tls, user).
    pub fn mails(&self) -> Vec<serde_json::Value> {
        let script = r#"
import json, mailbox, sys
from email.header import decode_header, make_header
out = []
for m in mailbox.Maildir(sys.argv[1], create=False):
    body = m.get_payload(decode=True).decode(m.get_content_charset() or "utf-8")
    subject = str(make_header(decode_header(m["Subject"])))
    headers = "".join(f"{k}: {v}\r\n" for k, v in m.items())
    out.append({"to": m["To"], "subject": subject, "body": body, "tls": m["X-Test-TLS"], "user": m["X-Test-User"], "message_id": m["Message-ID"], "headers": headers})
print(json.dumps(out))
"#;
        let out = Command::new(python())
            .args(["-c", script])
            .arg(&self.maildir)
            .output()
            .unwrap();
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd with TLS (STARTTLS required, or TLS from the first byte) and
/// AUTH (user kanki, password s3cret, only over TLS). It refuses
/// `gone@...` for good (550) and `busy@...` once for now (451), and marks
/// each mail it keeps with the TLS and the user it came with.
const SECURE_SMTP: &str = r#"
import mailbox, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
import ssl
mode, port, cert, key, maildir = sys.argv[1:6]
class Handler:
    def __init__(self):
        self.box = mailbox.Maildir(maildir, create=True)
        self.tries = {}
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 <%s>: no such mailbox here" % address
        if address.startswith("busy@"):
            self.tries[address] = self.tries.get(address, 0) + 1
            if self.tries[address] == 1:
                return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        m = mailbox.MaildirMessage(envelope.original_content)
        tls = session.ssl or server.transport.get_extra_info("ssl_object")
        m["X-Test-TLS"] = "yes" if tls else "no"
        m["X-Test-User"] = session.auth_data.login.decode() if session.auth_data else "-"
        self.box.add(m)
        return "250 OK"
def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"kanki" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
common = dict(hostname="127.0.0.1", port=int(port), authenticator=authenticate, auth_required=True)
if mode == "starttls":
    c = Controller(Handler(), tls_context=ctx, require_starttls=True, auth_require_tls=True, **common)
else:
    c = Controller(Handler(), ssl_context=ctx, auth_require_tls=False, **common)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

/// Sends one Accounting-Request (`attrs`, radclient's attribute list) to
/// the RADIUS server on 127.0.0.1:`port` with FreeRADIUS's `radclient`
/// (secret `testing123`); fails unless it is answered.
pub fn radclient(port: u16, attrs: &str) {
    use std::io::Write;
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

/// The header line of the sinkhole reports the tests write (columns of
/// Shadowserver's `event4_sinkhole`), with its line end.
pub const SINKHOLE_HEADER: &str = "\"timestamp\",\"protocol\",\"src_ip\",\"src_port\",\"dst_ip\",\"dst_port\",\"infection\",\"family\",\"tag\"\n";

/// A Shadowserver sinkhole report (`event4_sinkhole`) of one event per
/// `(address, family)` an hour ago, the family in both its columns (quoted
/// as CSV quotes).
pub fn sinkhole_csv(rows: &[(&str, &str)]) -> String {
    let at = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let mut text = String::from(SINKHOLE_HEADER);
    for (i, (addr, family)) in rows.iter().enumerate() {
        let family = family.replace('"', "\"\"");
        text.push_str(&format!(
            "\"{at}\",\"tcp\",\"{addr}\",{},\"198.51.100.1\",80,\"{family}\",\"{family}\",\n",
            50000 + i
        ));
    }
    text
}

/// A test CA named `name` and a server certificate it signs for 127.0.0.1
/// and localhost (openssl), in `dir`: (`{name}-ca.pem`, `{name}.pem`,
/// `{name}.key`).
pub fn test_certificates(dir: &Path, name: &str) -> (String, String, String) {
    let openssl = need("openssl", "openssl");
    let p = |f: &str| dir.join(format!("{name}{f}")).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        succeed(Command::new(&openssl).args(args));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_subject = format!("/CN=kanki test CA {name}");
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            &p("-ca.key"),
            "-out",
            &p("-ca.pem"),
            "-days",
            "2",
            "-subj",
            &ca_subject,
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            &p(".key"),
            "-out",
            &p(".csr"),
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        p(".ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p(".csr"),
        "-CA",
        &p("-ca.pem"),
        "-CAkey",
        &p("-ca.key"),
        "-CAcreateserial",
        "-out",
        &p(".pem"),
        "-days",
        "2",
        "-extfile",
        &p(".ext"),
    ]);
    (p("-ca.pem"), p(".pem"), p(".key"))
}
