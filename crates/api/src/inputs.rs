//! What the inputs of `kanki serve` are doing now, kept in memory for the
//! feeds page and `GET /api/v1/feeds`: each scheduled feed's run under way
//! (rows read so far), its next run, its last error or "not modified", and
//! a way to start a run at once; kanki's own sensor's counters. What a run
//! did when it finished is in the store (imports and ingests); this is
//! what only the running server knows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use kanki_config::FeedConfig;
use kanki_sensors::SensorCounters;
use serde::Serialize;
use tokio::sync::Notify;

/// A feed's state in this server.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FeedRun {
    /// The run under way, if any.
    pub running: Option<RunProgress>,
    /// When the next scheduled run starts.
    pub next_run: Option<DateTime<Utc>>,
    /// The last run's failure (cleared by a run that succeeds).
    pub last_error: Option<RunError>,
    /// When the source last answered "not modified" (nothing imported).
    pub last_not_modified: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunProgress {
    pub started_at: DateTime<Utc>,
    /// Rows read so far (records and skipped rows).
    pub rows_read: u64,
    pub skipped: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunError {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// Why a run cannot start now.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunNow {
    #[error("no feed named {0:?} is configured")]
    Unknown(String),
    #[error("the feed {0:?} is disabled (enabled = false)")]
    Disabled(String),
    #[error("a run of {0:?} is under way")]
    Running(String),
}

/// The board of every input's state.
#[derive(Default)]
pub struct Inputs {
    feeds: Mutex<BTreeMap<String, FeedRun>>,
    /// Wakes an enabled feed's loop for a run now.
    wake: BTreeMap<String, Arc<Notify>>,
    configured: Vec<String>,
    sensor: OnceLock<Arc<SensorCounters>>,
}

impl Inputs {
    pub fn new(feeds: &[FeedConfig]) -> Inputs {
        Inputs {
            feeds: Mutex::new(BTreeMap::new()),
            wake: feeds
                .iter()
                .filter(|f| f.enabled)
                .map(|f| (f.name.clone(), Arc::new(Notify::new())))
                .collect(),
            configured: feeds.iter().map(|f| f.name.clone()).collect(),
            sensor: OnceLock::new(),
        }
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut FeedRun) -> T) -> T {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        f(feeds.entry(name.to_string()).or_default())
    }

    /// What wakes `name`'s loop (an enabled feed's).
    pub fn wake_of(&self, name: &str) -> Option<Arc<Notify>> {
        self.wake.get(name).cloned()
    }

    /// Asks `name`'s loop to run now.
    pub fn run_now(&self, name: &str) -> Result<(), RunNow> {
        if !self.configured.iter().any(|n| n == name) {
            return Err(RunNow::Unknown(name.to_string()));
        }
        let Some(wake) = self.wake.get(name) else {
            return Err(RunNow::Disabled(name.to_string()));
        };
        if self.feed(name).running.is_some() {
            return Err(RunNow::Running(name.to_string()));
        }
        wake.notify_one();
        Ok(())
    }

    pub fn started(&self, name: &str, at: DateTime<Utc>) {
        self.with(name, |f| {
            f.running = Some(RunProgress {
                started_at: at,
                rows_read: 0,
                skipped: 0,
            });
            f.next_run = None;
        });
    }

    pub fn progress(&self, name: &str, rows_read: u64, skipped: u64) {
        self.with(name, |f| {
            if let Some(r) = f.running.as_mut() {
                r.rows_read = rows_read;
                r.skipped = skipped;
            }
        });
    }

    /// The run ended: with an error or not, "not modified" or not; the
    /// next starts at `next_run`.
    pub fn finished(
        &self,
        name: &str,
        outcome: Result<bool, String>,
        next_run: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        self.with(name, |f| {
            f.running = None;
            f.next_run = Some(next_run);
            match outcome {
                Ok(imported) => {
                    f.last_error = None;
                    if !imported {
                        f.last_not_modified = Some(now);
                    }
                }
                Err(error) => f.last_error = Some(RunError { at: now, error }),
            }
        });
    }

    pub fn feed(&self, name: &str) -> FeedRun {
        self.with(name, |f| f.clone())
    }

    /// Whether any feed is running now.
    pub fn any_running(&self) -> bool {
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.values().any(|f| f.running.is_some())
    }

    /// The sensor's counters, shared with it once it runs.
    pub fn set_sensor(&self, counters: Arc<SensorCounters>) {
        let _ = self.sensor.set(counters);
    }

    pub fn sensor(&self) -> Option<SensorNow> {
        use std::sync::atomic::Ordering::Relaxed;
        self.sensor.get().map(|c| SensorNow {
            connections: c.connections.load(Relaxed),
            recorded: c.recorded.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
        })
    }
}

/// The sensor's counters since the server started.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SensorNow {
    pub connections: u64,
    pub recorded: u64,
    pub rate_limited: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(name: &str, enabled: bool) -> FeedConfig {
        let mut f: FeedConfig = toml::from_str(&format!(
            "name = \"{name}\"\nformat = \"plain\"\npath = \"/dev/null\"\nevery = \"1h\"\n"
        ))
        .unwrap();
        f.enabled = enabled;
        f
    }

    #[test]
    fn a_run_is_asked_for_once_and_its_progress_and_outcome_kept() {
        let inputs = Inputs::new(&[feed("a", true), feed("off", false)]);
        assert_eq!(inputs.run_now("zz"), Err(RunNow::Unknown("zz".into())));
        assert_eq!(inputs.run_now("off"), Err(RunNow::Disabled("off".into())));
        inputs.run_now("a").unwrap();
        let now = Utc::now();
        inputs.started("a", now);
        assert!(inputs.any_running());
        assert_eq!(inputs.run_now("a"), Err(RunNow::Running("a".into())));
        inputs.progress("a", 500, 3);
        let r = inputs.feed("a").running.unwrap();
        assert_eq!((r.rows_read, r.skipped), (500, 3));
        inputs.finished("a", Err("connection refused".into()), now, now);
        let f = inputs.feed("a");
        assert!(f.running.is_none() && f.next_run == Some(now));
        assert_eq!(f.last_error.unwrap().error, "connection refused");
        inputs.finished("a", Ok(false), now, now);
        let f = inputs.feed("a");
        assert!(f.last_error.is_none() && f.last_not_modified == Some(now));
        assert!(!inputs.any_running());
    }
}
