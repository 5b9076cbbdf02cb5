//! `kanki lab`: a drill ISP on loopback.
//!
//! It starts `kanki serve` (this same binary, as a child process) in a
//! data directory of its own, with a configuration that puts every
//! listener on a free loopback port (`config.rs`), runs the ISP's own
//! peers (a mail server for the notices, a web server for the threat
//! feed, a resolver behind the DNS front: `peers.rs`; the web of attack
//! chains serve's crawler visits: `crawl.rs`), and replays a
//! synthetic day (`scenario.rs`) at the chosen speed through serve's real
//! listeners and inputs (`drive.rs`), until interrupted. A second start on
//! the same directory resumes the day where it stopped.

mod config;
mod crawl;
mod drive;
mod peers;
mod scenario;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;

use scenario::ScenarioConfig;

#[derive(Args, Debug)]
pub struct LabArgs {
    /// How many times faster than real time the synthetic day runs
    /// (60: a day in 24 minutes, an hour in a minute).
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// The synthetic ISP's seed: the same seed, the same subscribers and
    /// the same day.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Subscribers of the synthetic ISP (each gets its own 127.x.y.z).
    #[arg(long, default_value_t = 200)]
    subscribers: u32,
}

/// The lab's data directory when `--data-dir` is not given.
const DEFAULT_DIR: &str = "kanki-lab";
/// The operator the trainee signs in as.
const ADMIN: &str = "lab-admin";
/// The machine operator the lab's driver posts reports as.
const DRIVER: &str = "lab-driver";

pub fn run(data_dir: Option<&Path>, a: &LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.speed.is_finite() && (0.1..=100_000.0).contains(&a.speed),
        "--speed must be between 0.1 and 100000"
    );
    // Once per process; a second call only says a provider is already there.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = data_dir.map_or_else(|| PathBuf::from(DEFAULT_DIR), Path::to_path_buf);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    let scenario = Arc::new(
        ScenarioConfig {
            seed: a.seed,
            subscribers: a.subscribers,
            ..Default::default()
        }
        .build()?,
    );
    let state_path = dir.join("lab.json");
    let (state, resumed) = match std::fs::read(&state_path) {
        Ok(bytes) => {
            let s: drive::LabState = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a lab state", state_path.display()))?;
            anyhow::ensure!(
                s.seed == a.seed && s.subscribers == a.subscribers,
                "{} holds a lab of seed {} with {} subscribers; give those, or another --data-dir",
                dir.display(),
                s.seed,
                s.subscribers
            );
            (s, true)
        }
        Err(_) => (
            drive::LabState {
                seed: a.seed,
                subscribers: a.subscribers,
                minute: 0,
                radius_secret: kanki_operators::secret::new_session_secret().0,
                phases: Default::default(),
                reinfected: Vec::new(),
            },
            false,
        ),
    };
    let ports = config::LabPorts::pick()?;
    let crawl_lab = crawl::CrawlLab::start().context("cannot start the crawler lab")?;
    let seeds = dir.join("crawl-seeds.txt");
    write_private(&seeds, &crawl_lab.seeds())?;
    let config_path = dir.join("kanki.toml");
    let crawl_seeds = config::CrawlSeeds {
        lab: crawl_lab.addr(),
        file: &seeds,
    };
    write_private(
        &config_path,
        &config::serve_toml(
            &dir.join("data"),
            &ports,
            &crawl_seeds,
            &state.radius_secret,
            a.speed,
        ),
    )?;
    let config = kanki_config::Config::load(&config_path)?;
    let token_path = dir.join("lab-token");
    let password = if resumed && token_path.exists() {
        None
    } else {
        Some(create_operators(config, &token_path)?)
    };
    let token = std::fs::read_to_string(&token_path)?.trim().to_string();
    save_state(&state_path, &state)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("kanki-lab")
        .build()?;
    let lab = Lab {
        dir,
        config_path,
        state_path,
        ports,
        crawl_lab,
        speed: a.speed,
    };
    rt.block_on(lab.run(scenario, state, token, password, resumed))?;
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}

/// The trainee's administrator (a password printed once) and the driver's
/// machine operator with its token (kept in `lab-token`, mode 0600), made
/// as `kanki operators add` and `kanki tokens create` make them.
fn create_operators(config: kanki_config::Config, token_path: &Path) -> anyhow::Result<String> {
    use kanki_operators::accounts::{self, TokenRequest};
    use kanki_operators::{AccountKind, Roles};
    let kanki = kanki_service::Kanki::open(config)?;
    let store = kanki.store.operators();
    let now = Utc::now();
    let all: Roles =
        "viewer,analyst,attribution-officer,list-curator,notices-officer,auditor,administrator"
            .parse()
            .map_err(|e| anyhow::anyhow!("roles: {e}"))?;
    let password = kanki_operators::secret::new_session_secret().0;
    if accounts::operator(store, ADMIN).is_ok() {
        accounts::reset_password(store, ADMIN, &password, now)?;
    } else {
        accounts::add_operator(
            store,
            ADMIN,
            AccountKind::Local,
            all,
            Some(password.as_str()),
            now,
        )?;
    }
    if accounts::operator(store, DRIVER).is_err() {
        let driver: Roles = "analyst,attribution-officer,list-curator,notices-officer,viewer"
            .parse()
            .map_err(|e| anyhow::anyhow!("roles: {e}"))?;
        accounts::add_operator(store, DRIVER, AccountKind::Machine, driver, None, now)?;
    }
    let req = TokenRequest {
        operator: DRIVER.into(),
        name: format!("lab-{}", now.timestamp()),
        scope: None,
        expires_at: None,
        sources: vec!["127.0.0.0/8".parse()?],
    };
    let (_, text) = accounts::register_token(store, &req, None, now)?;
    write_private(token_path, &format!("{text}\n"))?;
    Ok(password)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn save_state(path: &Path, state: &drive::LabState) -> anyhow::Result<()> {
    write_private(path, &serde_json::to_string_pretty(state)?)
}

struct Lab {
    dir: PathBuf,
    config_path: PathBuf,
    state_path: PathBuf,
    ports: config::LabPorts,
    crawl_lab: crawl::CrawlLab,
    speed: f64,
}

impl Lab {
    async fn run(
        self,
        scenario: Arc<scenario::Scenario>,
        state: drive::LabState,
        token: String,
        password: Option<String>,
        resumed: bool,
    ) -> anyhow::Result<()> {
        let (mail_tx, mut mail_rx) = tokio::sync::mpsc::unbounded_channel();
        peers::smtp_sink(self.ports.smtp, self.dir.join("mail"), mail_tx).await?;
        peers::feed_server(self.ports.feed, scenario.feed()).await?;
        peers::upstream_resolver(self.ports.upstream).await?;

        let mut serve = self.start_serve()?;
        let played = self
            .play(
                &mut serve,
                &scenario,
                state,
                token,
                password,
                resumed,
                &mut mail_rx,
            )
            .await;
        // Stopped however the play ended: serve is never left behind.
        stop(&mut serve).await;
        played
    }

    #[allow(clippy::too_many_arguments)]
    async fn play(
        &self,
        serve: &mut std::process::Child,
        scenario: &Arc<scenario::Scenario>,
        state: drive::LabState,
        token: String,
        password: Option<String>,
        resumed: bool,
        mail_rx: &mut tokio::sync::mpsc::UnboundedReceiver<peers::Delivered>,
    ) -> anyhow::Result<()> {
        self.wait_healthy(serve).await?;
        let mut driver =
            drive::Driver::new(scenario.clone(), state, self.ports.clone(), token).await?;
        driver.import_subscribers().await?;
        self.banner(scenario, password.as_deref(), resumed);

        let tick = Duration::from_secs_f64((60.0 / self.speed).clamp(0.05, 1.0));
        let started = Instant::now();
        let first = driver.state.minute;
        let mut last_status = Instant::now();
        let mut last_save = driver.state.minute;
        let terminal = std::io::stdout().is_terminal();
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => break,
                _ = term.recv() => break,
                Some(d) = mail_rx.recv() => { driver.delivered(d); continue; }
                _ = ticker.tick() => {}
            }
            if let Some(status) = serve.try_wait()? {
                anyhow::bail!(
                    "kanki serve stopped ({status}); see {}",
                    self.dir.join("serve.log").display()
                );
            }
            let due = first + (started.elapsed().as_secs_f64() * self.speed / 60.0) as u64;
            // From 14:00 of the first day on (also after a resume).
            if driver.state.minute >= u64::from(crawl::CLEAN_UP_MINUTE) {
                self.crawl_lab.clean_up();
            }
            while driver.state.minute < due {
                // Minutes more than five behind are played without lookups.
                let on_time = due - driver.state.minute <= 5;
                driver.step(on_time).await?;
            }
            if driver.state.minute >= last_save + 30 {
                last_save = driver.state.minute;
                save_state(&self.state_path, &driver.state)?;
            }
            if last_status.elapsed() >= Duration::from_secs(if terminal { 1 } else { 5 }) {
                last_status = Instant::now();
                let line = driver.status();
                let mut out = std::io::stdout().lock();
                if terminal {
                    let _ = write!(out, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
        }
        save_state(&self.state_path, &driver.state)?;
        println!("\n{}", driver.status());
        println!(
            "kanki lab: stopping kanki serve; `kanki lab --data-dir {} --seed {} --subscribers {}` resumes at this point of the day",
            self.dir.display(),
            scenario.config.seed,
            scenario.config.subscribers
        );
        Ok(())
    }

    fn start_serve(&self) -> anyhow::Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))?;
        let exe = std::env::current_exe()?;
        let child = std::process::Command::new(exe)
            .arg("--config")
            .arg(&self.config_path)
            .arg("serve")
            .env_remove("KANKI_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            // Ctrl-C in the terminal reaches the lab, which stops serve
            // after saving its place: serve gets no signal of its own.
            .process_group(0)
            .spawn()
            .context("cannot start kanki serve")?;
        Ok(child)
    }

    async fn wait_healthy(&self, serve: &mut std::process::Child) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.ports.api_url());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = serve.try_wait()? {
                anyhow::bail!(
                    "kanki serve exited at start ({status}); see {}",
                    self.dir.join("serve.log").display()
                );
            }
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("kanki serve did not answer {url} within a minute")
    }

    fn banner(&self, scenario: &scenario::Scenario, password: Option<&str>, resumed: bool) {
        let p = &self.ports;
        let c = &scenario.config;
        let consenting = scenario.subscribers.iter().filter(|s| s.consent).count();
        let infected = scenario
            .subscribers
            .iter()
            .filter(|s| s.infection.is_some())
            .count();
        println!(
            "kanki lab: a drill ISP on loopback, in {} ({})",
            self.dir.display(),
            if resumed { "resumed" } else { "new" }
        );
        println!("  console      {}/", p.api_url());
        match password {
            Some(pw) => println!(
                "  sign in      as {ADMIN} with password {pw}\n               (shown once; `kanki --config {} operators reset-password {ADMIN}` sets another)",
                self.config_path.display()
            ),
            None => println!(
                "  sign in      as {ADMIN} with the password shown at the first start\n               (`kanki --config {} operators reset-password {ADMIN}` sets another)",
                self.config_path.display()
            ),
        }
        println!(
            "  API token    in {} (operator {DRIVER})",
            self.dir.join("lab-token").display()
        );
        println!(
            "  DNS front    {} (dig -b 127.1.0.1 -p {} @127.0.0.1 {})",
            p.dns,
            p.dns.port(),
            scenario.listed[0]
        );
        println!("  warning page {}", p.warning);
        println!("  RADIUS       {} (accounting)", p.radius);
        println!("  RPZ          {} (zone malware.rpz.lab.kanki)", p.rpz);
        println!(
            "  crawler lab  {} and four more sites (crawled every 6 hours of the day; the shop is cleaned up at {:02}:00)",
            self.crawl_lab.entrance_url(),
            crawl::CLEAN_UP_MINUTE / 60
        );
        println!(
            "  notices to   {} (mail server of the lab)",
            self.dir.join("mail/new").display()
        );
        println!("  serve log    {}", self.dir.join("serve.log").display());
        println!(
            "playing the day of seed {} at {}x: {} subscribers ({consenting} consenting, {infected} infected), {} listed sites from the feed; a sinkhole report every {} minutes of the day. Ctrl-C stops; a second start resumes.",
            c.seed,
            self.speed,
            c.subscribers,
            scenario.listed.len(),
            c.report_every_minutes
        );
        let _ = std::io::stdout().flush();
    }
}

/// Stops serve as SIGINT does, waiting for it to finish what it holds.
async fn stop(serve: &mut std::process::Child) {
    if let Ok(None) = serve.try_wait() {
        // SAFETY: signals our own child, not yet reaped, so its pid is
        // still its own.
        unsafe { libc::kill(serve.id() as libc::pid_t, libc::SIGINT) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if !matches!(serve.try_wait(), Ok(None)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = serve.kill();
    let _ = serve.wait();
}
