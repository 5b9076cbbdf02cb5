//! `kanki serve`: the long-running parts, on one tokio runtime.
//!
//! * the HTTP API, `/metrics` and `/healthz` (over TLS when
//!   `api.tls_cert_file` is set, the certificate reloaded when it changes);
//! * the countermeasure site on its own listener
//!   (`countermeasure_site.listen`);
//! * the policy refresher: rebuilds, persists and swaps the snapshot when
//!   the list's generation moves (checked every `policy.refresh_every`, and
//!   at once when the API changes something);
//! * the expiry job, every `indicators.expire_every`;
//! * one scheduled import per enabled `[[feeds]]` entry;
//! * the subscriber directory: its binding index and consent set, reloaded
//!   when the store's directory generation moves, and the retention purge;
//! * the RPZ primary when `[[rpz.zones]]` are configured (`rpz.rs`);
//! * scheduled crawls and re-checks when `[crawler.schedule]` asks for them
//!   (`crawl_serve.rs`);
//! * the warning page and its port-443 reset listener when `[warning]`
//!   sets them (kanki_warning), with the proceed-once passes and the
//!   walled garden it shares with the DNS front.
//!
//! Start-up loads the persisted snapshot first, so answers are ready before
//! any rebuild. Every acknowledged change is already committed to the
//! store, so SIGKILL loses nothing acknowledged; SIGINT/SIGTERM stop
//! accepting requests, let those in flight finish, and exit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use kanki_api::{ApiState, Metrics};
use kanki_config::{Config, FeedConfig};
use kanki_policy::{PolicyHandle, Snapshot};
use kanki_service::Kanki;
use kanki_service::directory::Directory;
use kanki_service::front::{Garden, Passes};
use tokio::sync::Notify;

pub fn run(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kanki")
        .build()?;
    let result = rt.block_on(serve(config));
    // An import still running on the blocking pool is cut off here; its
    // committed chunks stay and the run is marked interrupted at next start.
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let listen = config.api.listen;
    let kanki = Arc::new(tokio::task::spawn_blocking(move || Kanki::open(config)).await??);
    let mut metrics = Metrics::new();
    let rpz = crate::rpz::setup(&kanki, &mut metrics.registry)?;
    let front_stats = crate::front::stats(&kanki.config, &mut metrics.registry);
    let w = &kanki.config.warning;
    let warning_counters = (w.listen.is_some() || !w.reset_listen.is_empty())
        .then(|| kanki_warning::Counters::register(&mut metrics.registry));
    let metrics = Arc::new(metrics);

    let snapshot = {
        let k = kanki.clone();
        tokio::task::spawn_blocking(move || initial_snapshot(&k)).await??
    };
    metrics.record_snapshot(&snapshot, None);
    tracing::info!(
        names = snapshot.listed_names(),
        generation = snapshot.generation(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "policy snapshot ready"
    );
    let policy = Arc::new(PolicyHandle::new(snapshot));
    let list_changed = Arc::new(Notify::new());
    let directory = {
        let k = kanki.clone();
        let t = Instant::now();
        let d = tokio::task::spawn_blocking(move || {
            Directory::load_with(&k.store, Utc::now(), k.config.directory.overlay_most)
        })
        .await??;
        let c = d.compiled();
        tracing::info!(
            bindings = c.bindings(),
            memory_bytes = c.memory_bytes(),
            elapsed_ms = t.elapsed().as_millis() as u64,
            "subscriber directory ready"
        );
        Arc::new(d)
    };
    // Shared by the DNS front and the warning page.
    let passes = Arc::new(Passes::new(kanki.config.warning.proceed_for.0));
    let garden = Arc::new(Garden::new(kanki.config.dns.garden_allow.iter().cloned()));
    {
        let (k, g) = (kanki.clone(), garden.clone());
        tokio::task::spawn_blocking(move || g.reload(&k.store)).await??;
    }
    let auth = {
        let k = kanki.clone();
        let o = &k.config.operators;
        let limits = kanki_operators::SessionLimits {
            idle: o.session_idle.0,
            absolute: o.session_absolute.0,
        };
        let k2 = k.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                kanki_operators::Authenticator::load(k2.store.operators(), limits, Utc::now())
            })
            .await??,
        )
    };
    // First run: no operator yet. A one-time link on this terminal (not in
    // the log) lets whoever started kanki create the first administrator.
    let setup = Arc::new(kanki_api::signin::Setup::default());
    {
        let k = kanki.clone();
        let none = tokio::task::spawn_blocking(move || k.store.operators().operators())
            .await??
            .is_empty();
        if none {
            let code = setup.begin();
            let api = &kanki.config.api;
            let scheme = if api.clients_use_tls() {
                "https"
            } else {
                "http"
            };
            let host = api
                .hostnames
                .first()
                .cloned()
                .unwrap_or_else(|| listen.to_string());
            eprintln!(
                "kanki: first run, no operator yet. Create the first administrator at:\n  {scheme}://{host}/setup?code={code}\n(or on this machine: kanki operators add NAME --roles administrator)"
            );
        }
    }
    let pseudonyms = {
        use kanki_operators::pseudonym::Pseudonyms;
        let k = kanki.clone();
        let key = tokio::task::spawn_blocking(move || {
            k.store.operators().pseudonym_key(&Pseudonyms::new_key())
        })
        .await??;
        Arc::new(Pseudonyms::new(&key))
    };
    // An unusable certificate stops the start, with the reason.
    let certificates = match (
        &kanki.config.api.tls_cert_file,
        &kanki.config.api.tls_key_file,
    ) {
        (Some(cert), Some(key)) => Some(Arc::new(
            kanki_api::tls::Certificates::load(cert, key).map_err(anyhow::Error::msg)?,
        )),
        _ => None,
    };
    let state = ApiState {
        auth,
        pseudonyms,
        limiter: Arc::new(kanki_operators::SignInLimiter::new(
            kanki_operators::SignInLimits::default(),
        )),
        setup,
        ldap: kanki
            .config
            .operators
            .ldap
            .as_ref()
            .map(kanki_operators::ldap::Directory::from_config)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .map(Arc::new),
        secure_cookies: kanki.config.api.clients_use_tls(),
        kanki: kanki.clone(),
        policy: policy.clone(),
        metrics: metrics.clone(),
        list_changed: list_changed.clone(),
        directory: directory.clone(),
        garden: garden.clone(),
        inputs: Arc::new(kanki_api::inputs::Inputs::new(&kanki.config.feeds)),
        kept: Arc::default(),
        audit_checks: Arc::default(),
        rpz: rpz.as_ref().map(|(server, _)| server.clone()),
    };
    // The background jobs, each under the supervisor (started again after
    // a panic, stopped together at shutdown).
    let jobs = kanki_jobs::Supervisor::new();
    let _ = metrics.jobs_source.set(jobs.states());
    let mut gardened: Option<kanki_removal::site::GardenedClient> = None;
    let warning = match warning_counters {
        Some(counters) => {
            let shared = kanki_warning::Shared {
                kanki: kanki.clone(),
                policy: policy.clone(),
                directory: directory.clone(),
                passes: passes.clone(),
                garden: garden.clone(),
            };
            let w = kanki_warning::Warning::new(shared, counters);
            // The countermeasure site, reachable from the walled garden
            // under every name.
            let client_gardened: kanki_removal::site::GardenedClient = {
                let w = w.clone();
                Arc::new(move |client| w.gardened(client))
            };
            gardened = Some(client_gardened.clone());
            let site =
                kanki_removal::site::router(kanki.clone(), garden.clone(), Some(client_gardened));
            kanki_warning::spawn(w.clone(), site).await?;
            let flushed = w.clone();
            jobs.spawn("warning-page hits", move |stop| {
                kanki_warning::flush_hits_loop(flushed.clone(), stop)
            });
            Some(w)
        }
        None => None,
    };
    // The countermeasure site on its own listener, for the links in
    // notices: subscribers never reach the operator API.
    if let Some(listen) = kanki.config.countermeasure_site.listen {
        let site = kanki_removal::site::router(kanki.clone(), garden.clone(), gardened);
        kanki_removal::site::spawn(listen, site).await?;
    }
    if let Some(stats) = front_stats {
        let decider = crate::front::PolicyDecider {
            policy: policy.clone(),
            directory: directory.clone(),
            passes: passes.clone(),
            garden: garden.clone(),
        };
        crate::front::spawn(&kanki.config, decider, stats).await?;
    }

    if let Some((server, opts)) = rpz {
        crate::rpz::spawn(server, opts, kanki.clone(), policy.clone()).await?;
    }
    jobs.spawn("policy refresher", with_state(&state, refresher));
    jobs.spawn("listing expiry", with_state(&state, expirer));
    jobs.spawn(
        "directory refresher",
        with_state(&state, directory_refresher),
    );
    jobs.spawn(
        "directory rebuilder",
        with_state(&state, directory_rebuilder),
    );
    if let Some(listen) = kanki.config.radius.listen {
        let server = radius_server(&kanki.config, listen).await?;
        let _ = metrics.radius_source.set(server.counters());
        let sink = Arc::new(StoreSink {
            kanki: kanki.clone(),
            directory: directory.clone(),
        });
        let mut stop = jobs.stop();
        jobs.spawn_until_stop("RADIUS accounting", async move {
            if let Err(e) = server.run(sink, async move { stop.stopping().await }).await {
                tracing::error!(error = %e, "the RADIUS accounting server stopped");
            }
        });
    }
    for f in &kanki.config.directory.follow {
        let (st, f) = (state.clone(), f.clone());
        jobs.spawn(format!("following {}", f.path.display()), move |stop| {
            follow_loop(st.clone(), f.clone(), stop)
        });
    }
    jobs.spawn("directory purge", with_state(&state, purger));
    jobs.spawn(
        "operators refresher",
        with_state(&state, operators_refresher),
    );
    jobs.spawn("counter keeper", with_state(&state, counter_keeper));
    jobs.spawn("stage sampler", with_state(&state, stage_sampler));
    {
        let k = kanki.clone();
        jobs.spawn("audit checkpoints", move |stop| {
            crate::checkpoint::run(k.clone(), stop)
        });
    }
    crate::crawl_serve::spawn(&jobs, kanki.clone(), list_changed.clone())?;
    for feed in kanki.config.feeds.iter().filter(|f| f.enabled) {
        let (st, feed) = (state.clone(), feed.clone());
        jobs.spawn(format!("feed {}", feed.name), move |stop| {
            feed_loop(st.clone(), feed.clone(), stop)
        });
    }

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (api.listen)"))?;
    tracing::info!(%listen, tls = certificates.is_some(), elapsed_ms = started.elapsed().as_millis() as u64, "kanki serving the API");
    let app = kanki_api::router(state.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    crate::removal_serve::spawn(&jobs, &state).await?;
    match certificates {
        Some(certs) => {
            use axum::serve::ListenerExt;
            let c = certs.clone();
            jobs.spawn("API certificate watcher", move |stop| {
                kanki_api::tls::watch(c.clone(), stop)
            });
            // tap_io: axum gives the peer's address (ConnectInfo) for any
            // listener it wraps so, not for a listener of our own.
            let tls = kanki_api::tls::TlsListener::new(listener, &certs)?.tap_io(|_| {});
            axum::serve(tls, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?
        }
    }
    // The API has stopped taking requests: the jobs end their turns
    // under way (a batch stored, a notice sent) and stop.
    jobs.shutdown(JOBS_GRACE).await;
    if let Some(w) = warning
        && let Err(e) = tokio::task::spawn_blocking(move || w.flush_hits()).await?
    {
        tracing::error!(error = %e, "warning-page hits not written at shutdown");
    }
    tracing::info!("kanki stopped");
    Ok(())
}

/// The persisted snapshot when there is one (a stale one is replaced by the
/// refresher moments later); built now on a first start.
fn initial_snapshot(kanki: &Kanki) -> anyhow::Result<Snapshot> {
    let path = kanki.config.snapshot_path();
    match Snapshot::load(&path) {
        Ok(s) => Ok(s),
        Err(e) => {
            if path.exists() {
                tracing::warn!(file = %path.display(), error = %e, "persisted policy snapshot unusable; rebuilding");
            }
            let s = kanki.build_snapshot()?;
            s.save(&path)
                .with_context(|| format!("cannot save {}", path.display()))?;
            Ok(s)
        }
    }
}

/// A background job of the server's state: `job` called with a copy of
/// it at each start.
pub(crate) fn with_state<F, Fut>(
    st: &ApiState,
    job: F,
) -> impl FnMut(kanki_jobs::Stop) -> Fut + use<F, Fut>
where
    F: Fn(ApiState, kanki_jobs::Stop) -> Fut,
{
    let st = st.clone();
    move |stop| job(st.clone(), stop)
}

/// How long a shutdown waits for the background jobs' turns under way.
const JOBS_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}

async fn refresher(st: ApiState, mut stop: kanki_jobs::Stop) {
    let every = st.kanki.config.policy.refresh_every.0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = st.list_changed.notified() => {}
            _ = stop.stopping() => return,
        }
        let current = st.policy.load().generation();
        let k = st.kanki.clone();
        let rebuilt =
            tokio::task::spawn_blocking(move || -> anyhow::Result<Option<(Snapshot, f64)>> {
                if k.store.generation()? == current {
                    return Ok(None);
                }
                let t = Instant::now();
                let s = k.build_snapshot()?;
                let secs = t.elapsed().as_secs_f64();
                let path = k.config.snapshot_path();
                s.save(&path)
                    .with_context(|| format!("cannot save {}", path.display()))?;
                Ok(Some((s, secs)))
            })
            .await;
        match rebuilt {
            Ok(Ok(Some((s, secs)))) => {
                st.metrics.record_snapshot(&s, Some(secs));
                tracing::info!(
                    generation = s.generation(),
                    names = s.listed_names(),
                    "policy snapshot swapped"
                );
                st.policy.store(s);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "policy snapshot rebuild failed; the previous one stays in use")
            }
            Err(e) => tracing::error!(error = %e, "policy snapshot rebuild panicked"),
        }
    }
}

/// Runs `work` off the async threads, for one turn of a background task
/// of serve. A failure or a panic is logged (`"{what} failed"`,
/// `"{what} panicked"`) and gives `None`: the task tries again at its
/// next turn.
pub(crate) async fn background_turn<T, E>(
    what: &str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Option<T>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{what} failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "{what} panicked");
            None
        }
    }
}

async fn expirer(st: ApiState, mut stop: kanki_jobs::Stop) {
    let every = st.kanki.config.indicators.expire_every.0;
    loop {
        if !stop.sleep(every).await {
            return;
        }
        let k = st.kanki.clone();
        match background_turn("expiry", move || k.store.expire(Utc::now())).await {
            None | Some(0) => {}
            Some(n) => {
                st.metrics.expired.inc_by(n);
                tracing::info!(expired = n, "listings expired");
                st.list_changed.notify_one();
            }
        }
    }
}

async fn radius_server(
    config: &Config,
    listen: std::net::SocketAddr,
) -> anyhow::Result<kanki_radius::server::Server> {
    use kanki_radius::server::{NasConfig, Server, ServerConfig};
    let nas = config
        .radius
        .nas
        .iter()
        .map(|n| {
            NasConfig::new(&n.address, n.secret.as_bytes())
                .and_then(|c| c.claiming(&n.nas_ip_addresses, &n.nas_identifiers))
                .with_context(|| format!("radius.nas {}", n.address))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if nas.is_empty() {
        anyhow::bail!("radius.listen is set but no [[radius.nas]] may send accounting");
    }
    let mut server = ServerConfig::new(listen, nas);
    server.max_record_age = config.radius.max_record_age.0;
    server.require_event_timestamp = config.radius.require_event_timestamp;
    server.tracked_sessions = config.radius.tracked_sessions;
    Server::bind(server)
        .await
        .with_context(|| format!("cannot listen on {listen} (radius.listen)"))
}

/// Where the RADIUS server's batches go: one store transaction each,
/// idempotent (sessions are keyed by NAS, Acct-Session-Id and prefix).
/// What is stored reaches the DNS front within `directory.refresh_every`
/// (the refresher lays the store's changes over the index).
pub(crate) struct StoreSink {
    pub(crate) kanki: Arc<Kanki>,
    pub(crate) directory: Arc<Directory>,
}

impl kanki_radius::server::AccountingSink for StoreSink {
    fn apply(&self, events: Vec<kanki_directory::BindingEvent>) -> Result<(), String> {
        let (counts, _) = self
            .kanki
            .store
            .directory()
            .apply_bindings(kanki_directory::BindingOrigin::Radius, &events, Utc::now())
            .map_err(|e| e.to_string())?;
        self.directory
            .count("radius: stop without start", counts.stops_without_start);
        Ok(())
    }
}

/// Follows one lease or accounting file (`[[directory.follow]]`) with the
/// follower `kanki bindings follow` runs too, a look every `every`.
async fn follow_loop(st: ApiState, f: kanki_config::FollowConfig, mut stop: kanki_jobs::Stop) {
    use kanki_config::FollowFormat;
    use kanki_directory::BindingOrigin;
    let origin = match f.format {
        FollowFormat::Kea => BindingOrigin::Kea,
        FollowFormat::Dhcpd => BindingOrigin::Dhcpd,
        FollowFormat::Detail => BindingOrigin::Detail,
    };
    let follower = Arc::new(std::sync::Mutex::new(crate::follow::Follower::open(
        &st.kanki.config.data_dir,
        origin,
        &f.path,
    )));
    let what = format!("following {}", f.path.display());
    loop {
        if !stop.sleep(f.every.0).await {
            return;
        }
        let (k, d, t) = (st.kanki.clone(), st.directory.clone(), follower.clone());
        background_turn(&what, move || {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            t.look(&k, &|reason, n| d.count(reason, n))
        })
        .await;
    }
}

/// Picks up directory changes (consent, subscribers, bindings) made by
/// any process or by the API: consent and changed bindings every
/// `refresh_every`; and the walled garden, changed by `kanki garden` in
/// another process. The index is rebuilt by `directory_rebuilder`, on its
/// own task, so that changes keep arriving while it runs.
async fn directory_refresher(st: ApiState, mut stop: kanki_jobs::Stop) {
    // A look starts every `refresh_every`, or at once when the one before
    // took longer: a change then waits for at most the look under way and
    // the next, not for a pause after a slow look too.
    let mut tick = tokio::time::interval(st.kanki.config.directory.refresh_every.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.stopping() => return,
        }
        let k = st.kanki.clone();
        let (d, g) = (st.directory.clone(), st.garden.clone());
        let refreshed = move || {
            if g.refresh(&k.store)? {
                tracing::debug!(inside = g.len(), "walled garden reloaded");
            }
            d.refresh(&k.store, Utc::now())
        };
        match tokio::task::spawn_blocking(refreshed).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "directory refresh failed; the previous one stays in use")
            }
            Err(e) => tracing::error!(error = %e, "directory refresh panicked"),
        }
    }
}

/// Rebuilds the binding index when it is due (`rebuild_every` while
/// bindings change), folding in the changes laid over it, and trims the
/// store's change log now and then.
async fn directory_rebuilder(st: ApiState, mut stop: kanki_jobs::Stop) {
    let every = st.kanki.config.directory.refresh_every.0;
    let rebuild = st.kanki.config.directory.rebuild_every.0;
    let mut last_trim = Instant::now();
    loop {
        if !stop.sleep(every).await {
            return;
        }
        let trim = last_trim.elapsed() >= CHANGE_LOG_KEPT / 10;
        if trim {
            last_trim = Instant::now();
        }
        let (k, d) = (st.kanki.clone(), st.directory.clone());
        let rebuilt = move || -> Result<bool, kanki_service::ServiceError> {
            if trim {
                let kept = CHANGE_LOG_KEPT.max(rebuild * 10);
                let before = Utc::now() - chrono::Duration::from_std(kept).unwrap_or_default();
                k.store.directory().trim_binding_changes(before)?;
            }
            d.rebuild_if_due(&k.store, Utc::now(), rebuild)
        };
        if let Some(true) = background_turn("directory rebuild", rebuilt).await {
            tracing::debug!("subscriber directory rebuilt");
        }
    }
}

/// How long the store's log of binding changes is kept (at least ten
/// rebuilds): a process further behind than this rebuilds its index.
const CHANGE_LOG_KEPT: Duration = Duration::from_secs(600);

/// Keeps the dashboard's server counters (DNS queries, policy hits,
/// warning pages, proceed-once, RADIUS requests) per 5-minute bucket in
/// the store every 30 s, and the last 35 days of them (see
/// `kanki_api::dashboard::CounterSampler`). Counts a write could not store
/// are written with the next.
async fn counter_keeper(st: ApiState, mut stop: kanki_jobs::Stop) {
    const EVERY: Duration = Duration::from_secs(30);
    const KEEP_DAYS: i64 = 35;
    let mut sampler = kanki_api::dashboard::CounterSampler::default();
    let mut pending: Vec<(i64, &'static str, u64)> = Vec::new();
    let mut trimmed = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        if !stop.sleep(EVERY).await {
            return;
        }
        st.metrics.sync_radius();
        let totals = kanki_api::dashboard::counter_totals(&st.metrics.encode());
        let now = chrono::Utc::now();
        pending.extend(sampler.sample(now, &totals));
        let trim = trimmed.elapsed() >= Duration::from_secs(3600);
        let (k, counts) = (st.kanki.clone(), pending.clone());
        let write = move || {
            k.store.add_counter_counts(&counts)?;
            if trim {
                k.store
                    .trim_counter_counts((now - chrono::Duration::days(KEEP_DAYS)).timestamp())?;
            }
            Ok::<_, kanki_store::StoreError>(())
        };
        if background_turn("keeping the dashboard's counters", write)
            .await
            .is_some()
        {
            pending.clear();
            if trim {
                trimmed = std::time::Instant::now();
            }
        }
    }
}

/// Samples the ingest and notice stage counters for the dashboard's live
/// rates (see `kanki_api::dashboard::StageRates`).
async fn stage_sampler(st: ApiState, mut stop: kanki_jobs::Stop) {
    loop {
        st.metrics.sample_stages(std::time::Instant::now());
        if !stop.sleep(kanki_api::dashboard::RATE_SAMPLE_EVERY).await {
            return;
        }
    }
}

/// Reloads operators, tokens and sessions (changed by `kanki operators`
/// and `kanki tokens` in other processes) and writes last-used times.
async fn operators_refresher(st: ApiState, mut stop: kanki_jobs::Stop) {
    let every = st.kanki.config.operators.refresh_every.0;
    loop {
        if !stop.sleep(every).await {
            return;
        }
        let (k, auth) = (st.kanki.clone(), st.auth.clone());
        background_turn("operators reload", move || {
            auth.refresh(k.store.operators(), Utc::now())
        })
        .await;
    }
}

/// The retention purge of bindings and audit records, itself audited.
async fn purger(st: ApiState, mut stop: kanki_jobs::Stop) {
    let every = st.kanki.config.directory.purge_every.0;
    loop {
        let k = st.kanki.clone();
        let purge = move || k.purge_expired(Utc::now(), "retention");
        if let Some(c) = background_turn("retention purge", purge).await {
            tracing::info!(
                bindings = c.bindings,
                audit_records = c.audit_records,
                "retention purge done"
            );
        }
        if !stop.sleep(every).await {
            return;
        }
    }
}

/// Conditional-request state of a feed fetched by URL.
#[derive(Default)]
struct FetchState {
    etag: Option<String>,
    last_modified: Option<String>,
}

async fn feed_loop(st: ApiState, feed: FeedConfig, mut stop: kanki_jobs::Stop) {
    // Once per process; a second call only says a provider is already there.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("kanki/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(600))
        .build()
        .expect("HTTP client");
    let mut fetch = FetchState::default();
    let wake = st.inputs.wake_of(&feed.name);
    loop {
        st.inputs.started(&feed.name, chrono::Utc::now());
        // An error names the URL fetched: its secrets (a feed's API key in
        // its query) go neither to the log nor to the feeds page.
        let outcome = import_feed(&st, &feed, &client, &mut fetch)
            .await
            .map_err(|e| match &feed.url {
                Some(url) => kanki_config::redact_url_in(&format!("{e:#}"), url),
                None => format!("{e:#}"),
            });
        if let Err(e) = &outcome {
            tracing::error!(feed = %feed.name, error = %e, "feed import failed; will retry on schedule");
        }
        let now = chrono::Utc::now();
        let next = now + chrono::Duration::from_std(feed.every.0).unwrap_or(chrono::Duration::MAX);
        st.inputs.finished(&feed.name, outcome, next, now);
        // The schedule, or an operator's "run now" (console, API).
        match &wake {
            Some(w) => {
                tokio::select! {
                    () = tokio::time::sleep(feed.every.0) => {}
                    () = stop.stopping() => return,
                    () = w.notified() => {}
                }
            }
            None => {
                if !stop.sleep(feed.every.0).await {
                    return;
                }
            }
        }
    }
}

/// One run of a feed; whether it imported (false: "not modified").
async fn import_feed(
    st: &ApiState,
    feed: &FeedConfig,
    client: &reqwest::Client,
    fetch: &mut FetchState,
) -> anyhow::Result<bool> {
    let path: PathBuf = match (&feed.path, &feed.url) {
        (Some(p), _) => p.clone(),
        (None, Some(url)) => {
            let dir = st.kanki.config.data_dir.join("feeds");
            tokio::fs::create_dir_all(&dir).await?;
            let dest = dir.join(format!("{}.download", feed.name));
            let max = st.kanki.config.input.max_download_bytes;
            if !download(client, url, &dest, max, fetch).await? {
                tracing::info!(feed = %feed.name, "feed not modified since the last fetch");
                return Ok(false);
            }
            dest
        }
        (None, None) => unreachable!("the configuration requires a path or a url"),
    };
    let (k, inputs) = (st.kanki.clone(), st.inputs.clone());
    let f = feed.clone();
    let summary = tokio::task::spawn_blocking(move || {
        k.import_path(f.format.0, Some(&f.name), &path, &mut |p| {
            inputs.progress(&f.name, p.rows_read, p.skipped)
        })
    })
    .await??;
    st.metrics.record_import(&summary);
    tracing::info!(
        feed = %feed.name,
        rows = summary.rows_read,
        added = summary.added,
        updated = summary.updated,
        unchanged = summary.unchanged,
        skipped = summary.skipped,
        elapsed_ms = summary.elapsed_ms,
        "feed imported"
    );
    if !summary.changed_nothing() {
        st.list_changed.notify_one();
    }
    Ok(true)
}

/// Fetches `url` into `dest` (through a temporary file renamed at the end),
/// refusing a body larger than `max` bytes (`input.max_download_bytes`).
/// Returns false when the server says it has not changed.
async fn download(
    client: &reqwest::Client,
    url: &str,
    dest: &std::path::Path,
    max: u64,
    fetch: &mut FetchState,
) -> anyhow::Result<bool> {
    use tokio::io::AsyncWriteExt;
    let mut req = client.get(url);
    if let Some(e) = &fetch.etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, e);
    }
    if let Some(m) = &fetch.last_modified {
        req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(false);
    }
    if !resp.status().is_success() {
        anyhow::bail!("fetching {url}: HTTP {}", resp.status());
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let (etag, modified) = (
        header(reqwest::header::ETAG),
        header(reqwest::header::LAST_MODIFIED),
    );
    let too_large = || {
        anyhow::anyhow!(
            "fetching {url}: the body is larger than {max} bytes (input.max_download_bytes)"
        )
    };
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let tmp = dest.with_extension("part");
    let mut file = tokio::fs::File::create(&tmp).await?;
    let mut received = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        received += chunk.len() as u64;
        if received > max {
            drop(file);
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(too_large());
        }
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    tokio::fs::rename(&tmp, dest).await?;
    fetch.etag = etag;
    fetch.last_modified = modified;
    Ok(true)
}
