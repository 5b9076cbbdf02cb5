//! `/api/v1/feeds`: every input's state at a glance: each configured feed
//! (its source, schedule, the run under way, its last run with the rows
//! taken and the rejects by reason, its next run), the latest report
//! ingests (uploads, the watched directory, the sensor) with their counts
//! and rejects, the watched directory's waiting files and the sensor's
//! counters. Counts only: no subscriber is named. And a feed run started
//! at once.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kanki_store::{ImportRecord, IngestRecord};
use serde::Serialize;
use serde_json::json;

use crate::inputs::{FeedRun, RunNow, SensorNow};
use crate::{ApiError, ApiState, blocking};

/// The report ingests listed.
pub(crate) const INGESTS_SHOWN: u32 = 20;

/// The most directory entries counted (a directory holding more says
/// "at least").
const COUNTED_MOST: usize = 10_000;

/// One configured feed as the page and the API show it.
#[derive(Serialize)]
pub(crate) struct FeedState {
    pub name: String,
    pub format: &'static str,
    /// The file read, or the URL fetched (its secrets redacted).
    pub source: String,
    pub every: String,
    pub enabled: bool,
    #[serde(flatten)]
    pub run: FeedRun,
    pub last_import: Option<ImportRecord>,
    /// The last finished run's skipped rows, by reason.
    pub rejects: BTreeMap<String, u64>,
}

/// An ingest run with its summary read.
#[derive(Serialize)]
pub(crate) struct IngestState {
    #[serde(flatten)]
    pub run: IngestRecord,
    pub records: u64,
    pub events: u64,
    pub duplicates: u64,
    pub attributed: u64,
    pub rejects: BTreeMap<String, u64>,
}

/// A watched directory's files.
#[derive(Serialize)]
pub(crate) struct WatchedState {
    pub path: String,
    pub waiting: Count,
    pub done: Count,
    pub failed: Count,
}

/// How many entries a directory holds, up to [`COUNTED_MOST`].
#[derive(Clone, Copy, Serialize)]
pub(crate) struct Count {
    pub count: usize,
    /// More than `count` (counting stopped).
    pub more: bool,
}

#[derive(Serialize)]
pub(crate) struct InputsState {
    pub feeds: Vec<FeedState>,
    pub ingests: Vec<IngestState>,
    pub watched: Option<WatchedState>,
    pub sensor: Option<SensorNow>,
    pub at: DateTime<Utc>,
}

/// Reasons with their counts from a summary's `{reason: {count, ..}}`.
fn reasons(v: Option<&serde_json::Value>) -> BTreeMap<String, u64> {
    v.and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["count"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn count(dir: &FsPath, files: impl Fn(&FsPath) -> bool) -> Count {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if files(&e.path()) {
                n += 1;
                if n > COUNTED_MOST {
                    return Count {
                        count: COUNTED_MOST,
                        more: true,
                    };
                }
            }
        }
    }
    Count {
        count: n,
        more: false,
    }
}

/// Everything the feeds page shows, read now.
pub(crate) fn inputs_now(st: &ApiState, k: &kanki_service::Kanki) -> Result<InputsState, ApiError> {
    let mut feeds = Vec::new();
    for f in &k.config.feeds {
        let last = k.store.last_import_of(&f.name)?;
        let rejects = last
            .as_ref()
            .and_then(|(_, s)| s.as_deref())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .map(|s| reasons(s.get("skipped_by_reason")))
            .unwrap_or_default();
        let source = match (&f.path, &f.url) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(url)) => kanki_config::redact_url(url),
            (None, None) => String::new(),
        };
        feeds.push(FeedState {
            name: f.name.clone(),
            format: f.format.0.as_str(),
            source,
            every: f.every.to_string(),
            enabled: f.enabled,
            run: st.inputs.feed(&f.name),
            last_import: last.map(|(r, _)| r),
            rejects,
        });
    }
    let ingests = k
        .store
        .removal()
        .recent_ingests(INGESTS_SHOWN)?
        .into_iter()
        .map(|run| {
            let s: serde_json::Value = run
                .summary
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            IngestState {
                records: s["records"].as_u64().unwrap_or(0),
                events: s["events"].as_u64().unwrap_or(0),
                duplicates: s["duplicates"].as_u64().unwrap_or(0),
                attributed: s["attributed"].as_u64().unwrap_or(0),
                rejects: reasons(s.get("skipped")),
                run,
            }
        })
        .collect();
    let watched = k.config.removal.watch_dir.as_ref().map(|dir| {
        // A report written beside each moved file is not a file.
        let moved = |p: &FsPath| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".summary.json") || n.ends_with(".error.txt"))
        };
        WatchedState {
            path: dir.display().to_string(),
            waiting: count(dir, kanki_removal::ingest::waiting_report),
            done: count(&dir.join("done"), moved),
            failed: count(&dir.join("failed"), moved),
        }
    });
    Ok(InputsState {
        feeds,
        ingests,
        watched,
        sensor: st.inputs.sensor(),
        at: Utc::now(),
    })
}

pub(crate) async fn list(State(st): State<ApiState>) -> Result<Json<InputsState>, ApiError> {
    let state = st.clone();
    blocking(&st, move |k| inputs_now(&state, k))
        .await
        .map(Json)
}

impl From<RunNow> for ApiError {
    fn from(e: RunNow) -> Self {
        let status = match e {
            RunNow::Unknown(_) => StatusCode::NOT_FOUND,
            RunNow::Disabled(_) | RunNow::Running(_) => StatusCode::CONFLICT,
        };
        ApiError(status, e.to_string())
    }
}

/// Starts a feed's run now (the schedule goes on from its end).
pub(crate) async fn run(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    st.inputs.run_now(&name)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "feed": name, "started": true })),
    ))
}
