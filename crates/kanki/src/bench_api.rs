//! `kanki bench api-auth`: what authentication costs a request.
//!
//! Two measurements:
//! * the checks themselves, in this process: a token and a session cookie
//!   read from their headers and checked against an authenticator holding
//!   10,000 tokens (the work the API's middleware does per request);
//! * API throughput on one read route, `/metrics`, side by side in one
//!   run against a real `kanki serve` (this binary, started here): phases
//!   with a token and phases without one from a listed scraper prefix
//!   (`operators.metrics_scrapers`), alternating, with the same keep-alive
//!   connections; the difference in time per request is what the token
//!   check costs on the wire.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use kanki_operators::accounts::{self, TokenRequest};
use kanki_operators::{AccountKind, Authenticator, Role, SessionLimits, secret};
use kanki_service::Kanki;

use crate::bench::Report;

const TOKENS: usize = 10_000;

pub(crate) fn api_auth(requests: u64, r: &Report) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let config_path = tmp.path().join("kanki.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"warn\"\n[operators]\nmetrics_scrapers = [\"127.0.0.1/32\"]\n",
            tmp.path().join("data").display()
        ),
    )?;
    let config = crate::cli::load_config(Some(&config_path), None)?;
    let kanki = Kanki::open(config)?;
    let store = kanki.store.operators();
    let now = Utc::now();
    let op = accounts::add_operator(
        store,
        "bench",
        AccountKind::Machine,
        [Role::Viewer].into_iter().collect(),
        None,
        now,
    )?;
    let mut token = String::new();
    for i in 0..TOKENS {
        let (_, t) = accounts::create_token(
            store,
            &TokenRequest {
                operator: "bench".into(),
                name: format!("bench {i}"),
                scope: None,
                expires_at: None,
                sources: vec!["127.0.0.0/8".parse()?],
            },
            now,
        )?;
        token = t;
    }

    // The checks, in process.
    let limits = SessionLimits {
        idle: Duration::from_secs(3600),
        absolute: Duration::from_secs(3600),
    };
    let auth = Authenticator::load(store, limits, now)?;
    let header = format!("Bearer {token}");
    let source: IpAddr = "127.0.0.1".parse()?;
    let n = 200_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let p = secret::parse_authorization(black_box(header.as_bytes()))?;
        black_box(auth.authenticate_token(&p, source, Utc::now()).ok());
    }
    r.line(
        "token check (parse, hash, look up), per request",
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        "us",
        "<= 20",
    );
    let (cookie, _) = auth.start_session(store, &op, now)?;
    let cookie = format!("lang=ja; {}={cookie}", secret::SESSION_COOKIE);
    let t = Instant::now();
    for _ in 0..n {
        let h =
            secret::parse_session_cookie(black_box(cookie.as_bytes()))?.context("the cookie")?;
        black_box(auth.authenticate_session(&h, Utc::now()).ok());
    }
    r.line(
        "session check (parse, hash, look up), per request",
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        "us",
        "<= 20",
    );
    drop(auth);
    drop(kanki);

    // Throughput on /metrics, with and without a token, side by side.
    let mut server = std::process::Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting kanki serve")?;
    let result = throughput(port, &token, requests, r);
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn throughput(port: u16, token: &str, requests: u64, r: &Report) -> anyhow::Result<()> {
    const CONNECTIONS: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()?;
        let url = format!("http://127.0.0.1:{port}/metrics");
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(&url).send().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "kanki serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Four phases each, alternating, so that a busy machine skews both
        // alike, after one untimed warm-up phase.
        let mut secs = [0.0f64; 2];
        let per_phase = (requests / 8).max(CONNECTIONS as u64);
        for round in 0..9 {
            let with_token = round % 2 == 0;
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..CONNECTIONS {
                let (client, url) = (client.clone(), url.clone());
                let auth = with_token.then(|| format!("Bearer {token}"));
                let each = per_phase / CONNECTIONS as u64;
                tasks.push(tokio::spawn(async move {
                    for _ in 0..each {
                        let mut q = client.get(&url);
                        if let Some(a) = &auth {
                            q = q.header("Authorization", a);
                        }
                        let resp = q.send().await?;
                        anyhow::ensure!(resp.status() == 200, "answered {}", resp.status());
                        resp.bytes().await?;
                    }
                    Ok(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            if round > 0 {
                secs[with_token as usize] += t.elapsed().as_secs_f64();
            }
        }
        let done = (per_phase / CONNECTIONS as u64 * CONNECTIONS as u64 * 4) as f64;
        let (plain, token_rps) = (done / secs[0], done / secs[1]);
        r.line(
            "GET /metrics from a scraper prefix, no token",
            plain,
            "req/s",
            "-",
        );
        r.line("GET /metrics with a token", token_rps, "req/s", "-");
        // Time per request with one connection's view: connections / rate.
        let cost = (CONNECTIONS as f64 / token_rps - CONNECTIONS as f64 / plain) * 1e6;
        r.line("token check on the wire, per request", cost, "us", "<= 20");
        Ok(())
    })
}
