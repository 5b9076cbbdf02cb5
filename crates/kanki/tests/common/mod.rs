//! Running the real `kanki` binary in tests.
#![allow(dead_code)]

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
}

impl Env {
    /// A data directory and a configuration with a free API port.
    pub fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("kanki.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[policy]\nrefresh_every = \"200ms\"\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        Env {
            dir,
            config,
            api: format!("http://127.0.0.1:{port}"),
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

    pub fn serve(&self) -> Server {
        let child = self
            .cmd(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            api: self.api.clone(),
        };
        server.wait_healthy();
        server
    }
}

pub struct Server {
    pub child: Child,
    pub api: String,
}

impl Server {
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = client();
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/healthz", self.api)).send()
                && r.status().is_success()
            {
                return;
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
    pub fn sigterm(mut self) -> std::process::ExitStatus {
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

pub fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
