//! The background jobs of `kanki serve` under one supervisor.
//!
//! A job is an async loop (refresh the policy, send notices, purge old
//! events, …) that takes a [`Stop`] and returns when it says so. The
//! [`Supervisor`]:
//!
//! - gives every job the same stop signal, raised once at shutdown;
//! - starts a job that panicked again after a pause (1 s, doubling up to
//!   a minute), so one bad turn does not end a loop for the life of the
//!   process;
//! - at shutdown, wakes every job from its sleep and waits for the turns
//!   under way to end, up to a grace period, and names the jobs that did
//!   not.
//!
//! A job's turn runs to its end: the stop is seen between turns, so work
//! begun (a batch stored, a notice sent) is finished rather than cut.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// The first pause before a job that panicked starts again; each further
/// panic doubles it, up to [`MOST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MOST_PAUSE: Duration = Duration::from_secs(60);

/// What a job watches to know when to end.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown begins (at once if it has).
    pub async fn stopping(&mut self) {
        // An error means the supervisor is gone, which is a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `d`, or less if shutdown begins: true when the whole
    /// time passed, false when the job should end.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_stopping(),
            _ = self.stopping() => false,
        }
    }
}

/// The jobs of one process.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
    states: Arc<JobStates>,
}

/// What the jobs are doing, for `/metrics`: shared with whoever reads it.
#[derive(Default)]
pub struct JobStates {
    /// Jobs started, by name (a name may be given to several), with how
    /// many run now.
    running: Mutex<BTreeMap<String, usize>>,
    /// Starts after a panic, by name.
    restarts: Mutex<BTreeMap<String, u64>>,
}

impl JobStates {
    /// Every job started, by name, with how many of that name run now
    /// (0: it ended).
    pub fn running(&self) -> BTreeMap<String, usize> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How often each job was started again after a panic.
    pub fn restarts(&self) -> BTreeMap<String, u64> {
        self.restarts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor {
            stop: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            states: Arc::default(),
        }
    }

    /// The stop signal, for a listener or a job started elsewhere.
    pub fn stop(&self) -> Stop {
        Stop(self.stop.subscribe())
    }

    /// Runs `job` until it returns, starting it again after a pause when
    /// it panics (unless shutdown has begun). Call from within a Tokio
    /// runtime.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, mut job: F)
    where
        F: FnMut(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let mut stop = self.stop();
        let running = Running::enter(&self.states, &name);
        let states = self.states.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.spawn(async move {
            let _running = running;
            let mut pause = FIRST_PAUSE;
            loop {
                match tokio::spawn(job(stop.clone())).await {
                    Ok(()) => {
                        tracing::debug!(job = %name, "background job ended");
                        return;
                    }
                    Err(e) if e.is_panic() && !stop.is_stopping() => {
                        tracing::error!(
                            job = %name,
                            restart_in_s = pause.as_secs(),
                            "background job panicked; starting it again"
                        );
                        if !stop.sleep(pause).await {
                            return;
                        }
                        *states
                            .restarts
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(name.clone())
                            .or_default() += 1;
                        pause = (pause * 2).min(MOST_PAUSE);
                    }
                    Err(_) => return,
                }
            }
        });
    }

    /// Runs `task` (a listener, a pipeline fed by a channel) once, until
    /// it ends or shutdown begins, when it is dropped where it waits.
    pub fn spawn_until_stop<Fut>(&self, name: impl Into<String>, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut task = Some(task);
        self.spawn(name, move |mut stop| {
            let task = task.take();
            async move {
                // Started again after a panic: the task is gone, and so is
                // what it served.
                let Some(task) = task else { return };
                tokio::select! {
                    () = task => {}
                    () = stop.stopping() => {}
                }
            }
        });
    }

    /// Jobs running now, by name.
    pub fn running(&self) -> BTreeMap<String, usize> {
        let mut running = self.states.running();
        running.retain(|_, n| *n > 0);
        running
    }

    /// What the jobs are doing, to be read while they run.
    pub fn states(&self) -> Arc<JobStates> {
        self.states.clone()
    }

    /// Raises the stop signal and waits up to `grace` for every job to
    /// end; returns the names of those that had not (they are aborted at
    /// their next await; a blocking turn of theirs still runs to its end).
    pub async fn shutdown(&self, grace: Duration) -> Vec<String> {
        self.stop.send_replace(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let all_ended = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_ended).await.is_ok() {
            tracing::info!("background jobs stopped");
            return Vec::new();
        }
        let late: Vec<String> = self.running().into_keys().collect();
        tracing::warn!(jobs = ?late, grace_s = grace.as_secs(), "background jobs still running at the end of the grace period; stopped");
        tasks.abort_all();
        late
    }
}

/// A job's count in [`JobStates::running`], taken back when its task
/// ends however it ends.
struct Running {
    of: Arc<JobStates>,
    name: String,
}

impl Running {
    fn enter(of: &Arc<JobStates>, name: &str) -> Running {
        *of.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default() += 1;
        Running {
            of: of.clone(),
            name: name.to_string(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut of = self.of.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = of.get_mut(&self.name) {
            *n -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loop asleep between turns ends as soon as shutdown begins, not
    /// at the end of its sleep.
    #[tokio::test(start_paused = true)]
    async fn a_sleeping_job_ends_at_once_on_shutdown() {
        let jobs = Supervisor::new();
        let turns = Arc::new(AtomicUsize::new(0));
        let t = turns.clone();
        jobs.spawn("hourly", move |mut stop| {
            let t = t.clone();
            async move {
                while stop.sleep(Duration::from_secs(3600)).await {
                    t.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(jobs.running().get("hourly"), Some(&1));
        let started = tokio::time::Instant::now();
        assert!(jobs.shutdown(Duration::from_secs(30)).await.is_empty());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(turns.load(Ordering::SeqCst), 0);
        assert!(jobs.running().is_empty());
    }

    /// A turn under way at shutdown runs to its end within the grace
    /// period; one longer than the grace is named and stopped.
    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_the_turn_under_way_up_to_the_grace() {
        let jobs = Supervisor::new();
        let finished = Arc::new(AtomicUsize::new(0));
        for (name, turn) in [("short", 5), ("long", 120)] {
            let f = finished.clone();
            jobs.spawn(name, move |stop| {
                let f = f.clone();
                async move {
                    while !stop.is_stopping() {
                        // A turn's work, which the stop does not cut.
                        tokio::time::sleep(Duration::from_secs(turn)).await;
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        tokio::task::yield_now().await;
        let late = jobs.shutdown(Duration::from_secs(30)).await;
        assert_eq!(late, ["long"]);
        assert_eq!(finished.load(Ordering::SeqCst), 1, "the short turn ended");
    }

    /// A job that panics is started again after a pause that doubles; a
    /// job that returns is not.
    #[tokio::test(start_paused = true)]
    async fn a_job_that_panics_starts_again_and_one_that_returns_does_not() {
        let jobs = Supervisor::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let s = starts.clone();
        jobs.spawn("flaky", move |mut stop| {
            let n = s.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("a bad turn");
                }
                stop.stopping().await;
            }
        });
        let once = Arc::new(AtomicUsize::new(0));
        let o = once.clone();
        jobs.spawn("once", move |_| {
            o.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        // 1 s, then 2 s, of pause.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 2, "the second pause is 2 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert_eq!(once.load(Ordering::SeqCst), 1);
        assert_eq!(jobs.running().keys().collect::<Vec<_>>(), ["flaky"]);
        assert_eq!(
            jobs.states().restarts().into_iter().collect::<Vec<_>>(),
            [("flaky".to_string(), 2)]
        );
        assert!(jobs.shutdown(Duration::from_secs(5)).await.is_empty());
    }
}
