//! kanki's operator HTTP API.
//!
//! Everything under `/api/v1` is described by the OpenAPI document served at
//! `/api/v1/openapi.json` (kept in `docs/openapi.json`). Store calls run on
//! the blocking pool so that a long import never stalls other requests.

mod admin;
pub mod auth;
pub mod console;
mod crawl;
pub mod dashboard;
mod directory;
mod feeds;
pub mod inputs;
pub mod listen;
pub mod metrics;
mod removal;
pub mod signin;
pub mod tls;
mod warning;

use std::sync::Arc;

use auth::Caller;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use kanki_exports::ExportFormat;
use kanki_feeds::Format;
use kanki_indicators::{AllowEntry, AllowKind, Category, Indicator, Kind, Status, Tlp};
use kanki_policy::{PolicyHandle, Verdict};
use kanki_service::{Kanki, ServiceError};
use kanki_store::{HostMark, ListQuery, NewEvidence, NewIndicator, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

pub use metrics::Metrics;

/// The OpenAPI description of `/api/v1`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub kanki: Arc<Kanki>,
    pub policy: Arc<PolicyHandle>,
    pub metrics: Arc<Metrics>,
    /// Woken after a change so the policy snapshot is rebuilt at once.
    pub list_changed: Arc<Notify>,
    /// The subscriber directory: bindings index and consent.
    pub directory: Arc<kanki_service::directory::Directory>,
    /// The walled garden the DNS front and the warning page read; reloaded
    /// at once when the API changes it.
    pub garden: Arc<kanki_service::front::Garden>,
    /// Tokens, operators and sessions, checked in memory.
    pub auth: Arc<kanki_operators::Authenticator>,
    /// What the feeds and the sensor are doing now.
    pub inputs: Arc<inputs::Inputs>,
    /// The RPZ primary, when zones are configured: its zones' serials and
    /// each secondary's last transfer, for the dashboard.
    pub rpz: Option<Arc<kanki_dns::rpz::RpzServer>>,
    /// The list's size and the removal outcomes, kept between dashboards
    /// and scrapes.
    pub kept: Arc<dashboard::KeptFigures>,
    /// The console's audit chain check, run in the background.
    pub audit_checks: Arc<console::audit::Checks>,
    /// Failed sign-ins per account and per source.
    pub limiter: Arc<kanki_operators::SignInLimiter>,
    /// The LDAP directory operators may sign in against
    /// (`[operators.ldap]`).
    pub ldap: Option<Arc<kanki_operators::ldap::Directory>>,
    /// Subscribers named by pseudonym to whoever may not see identities.
    pub pseudonyms: Arc<kanki_operators::pseudonym::Pseudonyms>,
    /// The first run's setup code, while no operator exists.
    pub setup: Arc<signin::Setup>,
    /// Session cookies are marked Secure (the API is served over TLS).
    pub secure_cookies: bool,
}

/// The whole HTTP surface: `/api/v1`, `/healthz`, `/metrics`. Every
/// request is first checked by [`listen::guard`] (its Host, the client
/// behind a trusted proxy).
pub fn router(state: ApiState) -> Router {
    let upload_limit = state.kanki.config.api.max_upload_bytes as usize;
    let hosts = Arc::new(kanki_operators::listener::Hosts::new(
        &state.kanki.config.api.allowed_hosts(),
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/sign-in",
            get(signin::sign_in_page)
                .post(signin::sign_in_form_post)
                .layer(DefaultBodyLimit::max(signin::FORM_LIMIT)),
        )
        .route(
            "/setup",
            get(signin::setup_page)
                .post(signin::setup_post)
                .layer(DefaultBodyLimit::max(signin::FORM_LIMIT)),
        )
        .route(
            "/api/v1/session",
            get(signin::whoami)
                .post(signin::sign_in_json)
                .delete(signin::sign_out)
                .layer(DefaultBodyLimit::max(signin::FORM_LIMIT)),
        )
        .route("/metrics", get(metrics_text))
        .route("/api/v1/operators", get(admin::list_operators))
        .route(
            "/api/v1/operators/{name}/disabled",
            post(admin::set_disabled),
        )
        .route("/api/v1/operators/{name}/roles", post(admin::set_roles))
        .route("/api/v1/tokens", get(admin::list_tokens))
        .route("/api/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/api/v1/config", get(admin::config))
        .route("/api/v1/dashboard", get(dashboard_json))
        .route("/api/v1/feeds", get(feeds::list))
        .route("/api/v1/feeds/{name}/run", post(feeds::run))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/indicators",
            get(list_indicators).post(add_indicator),
        )
        .route(
            "/api/v1/indicators/{id}",
            get(get_indicator).delete(delete_indicator),
        )
        .route(
            "/api/v1/indicators/{id}/false-positive",
            post(mark_false_positive),
        )
        .route(
            "/api/v1/indicators/{id}/allowlist",
            post(allowlist_indicator),
        )
        .route("/api/v1/indicators/{id}/status", post(set_status))
        .route("/api/v1/indicators/{id}/history", get(indicator_history))
        .route("/api/v1/indicators/{id}/evidence", post(add_evidence))
        .route("/api/v1/lookup", get(lookup))
        .route("/api/v1/allowlist", get(list_allow).post(add_allow))
        .route("/api/v1/allowlist/{id}", delete(remove_allow))
        .route("/api/v1/host-marks", get(list_marks).post(add_mark))
        .route("/api/v1/host-marks/{host}", delete(remove_mark))
        .route("/api/v1/imports", get(list_imports).post(upload_import))
        .route("/api/v1/exports/{format}", get(export))
        .route(
            "/api/v1/subscribers",
            get(directory::list_subscribers).post(directory::import_subscribers),
        )
        .route("/api/v1/subscribers/{id}", get(directory::get_subscriber))
        .route(
            "/api/v1/subscribers/{id}/bindings",
            get(directory::subscriber_bindings),
        )
        .route(
            "/api/v1/subscribers/{id}/consent",
            post(directory::set_consent),
        )
        .route("/api/v1/who", post(directory::who))
        .route("/api/v1/directory", get(directory::status))
        .route("/api/v1/audit", get(directory::audit))
        .route("/api/v1/audit/verify", get(directory::audit_verify))
        .route("/api/v1/events", post(removal::ingest))
        .route("/api/v1/events/{id}", get(removal::get_event))
        .route("/api/v1/cases", get(removal::list_cases))
        .route("/api/v1/cases/{id}", get(removal::get_case))
        .route("/api/v1/cases/{id}/actions", post(removal::case_action))
        .route("/api/v1/escalations", get(removal::list_escalations))
        .route("/api/v1/escalations/{id}", post(removal::set_escalation))
        .route(
            "/api/v1/notices/{reference}/acknowledge",
            post(removal::acknowledge),
        )
        .route("/api/v1/removal/report", get(removal::report))
        .route("/api/v1/false-positives", get(warning::list_reports))
        .route("/api/v1/false-positives/{id}", get(warning::get_report))
        .route(
            "/api/v1/false-positives/{id}/review",
            post(warning::review_report),
        )
        .route("/api/v1/garden", get(warning::list_garden))
        .route(
            "/api/v1/garden/{subscriber}",
            post(warning::enter_garden).delete(warning::leave_garden),
        )
        .route("/api/v1/warning/hits", get(warning::hits))
        .route("/api/v1/crawls", get(crawl::list_crawls))
        .route("/api/v1/crawls/{id}", get(crawl::get_crawl))
        .route("/api/v1/crawl-sites", get(crawl::list_sites))
        .route("/api/v1/crawl-notices", get(crawl::list_notices))
        .merge(console::router())
        // Every matched route is authenticated and authorized by auth::ROUTES.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(upload_limit))
        .layer(middleware::from_fn_with_state(
            (state.clone(), hosts),
            listen::guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let resp = next.run(req).await;
    // A change made here (a case acted on, a notice acknowledged) shows on
    // the next dashboard, not a minute later.
    if !matches!(method.as_str(), "GET" | "HEAD")
        && (resp.status().is_success() || resp.status().is_redirection())
    {
        st.kept.changed();
    }
    st.metrics
        .http_requests
        .get_or_create(&metrics::HttpLabels {
            method,
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

/// An error answered as `{"error": "..."}` with a fitting status.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError(StatusCode::NOT_FOUND, "not found".into()),
            StoreError::Invalid(m) | StoreError::Input(m) => {
                ApiError(StatusCode::UNPROCESSABLE_ENTITY, m)
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(s) => s.into(),
            ServiceError::Feed(f) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, f.to_string()),
            ServiceError::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            other => ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// Why a page naming a subscriber is read (`?purpose=`), for its view
/// record.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewParams {
    purpose: Option<String>,
}

impl ViewParams {
    pub(crate) fn purpose(&self) -> &str {
        self.purpose
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or("viewed through the API")
    }
}

/// Records one view of data naming a subscriber (see
/// [`kanki_audit::AuditEntry::view`]); the data is not answered unless the
/// record is written.
pub(crate) fn record_view(
    k: &Kanki,
    caller: &kanki_operators::Principal,
    what: &str,
    id: &str,
    subscriber: Option<&str>,
    view: &ViewParams,
) -> Result<(), ApiError> {
    let entry = kanki_audit::AuditEntry::view(
        Utc::now(),
        &caller.actor(),
        what,
        id,
        subscriber,
        view.purpose(),
    );
    k.store.directory().audit_append(&entry)?;
    Ok(())
}

fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

/// An upload on its way to a parser: written to an unnamed temporary file
/// in the data directory as it arrives, never held in memory whole, and
/// refused past `api.max_upload_bytes`.
pub(crate) struct Upload {
    file: tokio::fs::File,
    len: u64,
    max: u64,
}

impl Upload {
    pub(crate) async fn new(st: &ApiState) -> Result<Upload, ApiError> {
        let dir = st.kanki.config.data_dir.clone();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
            .await
            .map_err(|e| internal(format!("worker failed: {e}")))?
            .map_err(|e| internal(format!("cannot spool the upload: {e}")))?;
        Ok(Upload {
            file: tokio::fs::File::from_std(file),
            len: 0,
            max: st.kanki.config.api.max_upload_bytes,
        })
    }

    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        use tokio::io::AsyncWriteExt;
        self.len += chunk.len() as u64;
        if self.len > self.max {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the upload is larger than {} bytes (api.max_upload_bytes)",
                    self.max
                ),
            ));
        }
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| internal(format!("cannot spool the upload: {e}")))
    }

    /// Writes a whole request body.
    pub(crate) async fn write_body(&mut self, mut body: Body) -> Result<(), ApiError> {
        use axum::body::HttpBody;
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| bad_request(format!("reading the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                self.write(&data).await?;
            }
        }
        Ok(())
    }

    /// The upload, to be read from its start.
    pub(crate) async fn finish(self) -> Result<std::fs::File, ApiError> {
        use tokio::io::AsyncSeekExt;
        let mut file = self.file;
        file.rewind()
            .await
            .map_err(|e| internal(format!("cannot read the spooled upload: {e}")))?;
        Ok(file.into_std().await)
    }
}

fn internal(m: String) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, m)
}

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    st: &ApiState,
    f: impl FnOnce(&Kanki) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let kanki = st.kanki.clone();
    tokio::task::spawn_blocking(move || f(&kanki))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("worker failed: {e}"),
            )
        })?
}

async fn healthz(State(st): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let snap = st.policy.load();
    let generation = blocking(&st, |k| Ok(k.store.generation()?)).await?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "list_generation": generation,
        "policy_generation": snap.generation(),
        "policy_names": snap.listed_names(),
    })))
}

async fn metrics_text(State(st): State<ApiState>) -> Result<Response, ApiError> {
    st.metrics.sync_radius();
    st.metrics.sync_jobs();
    let c = st.directory.compiled();
    st.metrics.directory_bindings.set(c.bindings() as i64);
    st.metrics
        .directory_changed
        .set(c.changed_since_built() as i64);
    for (event, n) in st.directory.events() {
        let counter = st
            .metrics
            .directory_events
            .get_or_create(&metrics::EventLabels { event });
        counter.inc_by(n.saturating_sub(counter.get()));
    }
    st.metrics
        .directory_consenting
        .set(st.directory.consenting_count() as i64);
    let kept = st.kept.clone();
    let (counts, outcomes) = blocking(&st, move |k| {
        Ok((k.store.counts_by_status()?, kept.outcomes(k)?))
    })
    .await?;
    st.metrics.removal.set(&outcomes);
    for (status, n) in counts {
        st.metrics
            .indicators
            .get_or_create(&metrics::StatusLabels {
                status: status.to_string(),
            })
            .set(n as i64);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response())
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    kind: Option<Kind>,
    category: Option<Category>,
    status: Option<Status>,
    source: Option<String>,
    tag: Option<String>,
    q: Option<String>,
    tlp: Option<Tlp>,
    /// First seen at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// First seen before (RFC 3339).
    until: Option<DateTime<Utc>>,
    after: Option<i64>,
    limit: Option<u32>,
}

impl From<ListParams> for ListQuery {
    fn from(p: ListParams) -> Self {
        ListQuery {
            kind: p.kind,
            category: p.category,
            status: p.status,
            source: p.source,
            tag: p.tag,
            q: p.q,
            tlp: p.tlp,
            first_seen_since: p.since,
            first_seen_until: p.until,
            after: p.after,
            limit: p.limit,
        }
    }
}

/// Query-string errors answered as 400 with the reason.
struct Params<T>(T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Params(t))
            .map_err(|e| bad_request(e.body_text()))
    }
}

/// JSON body errors answered as 400/422 with the reason.
struct Body_<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body_<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(t)| Body_(t))
            .map_err(|e| ApiError(e.status(), e.body_text()))
    }
}

async fn list_indicators(
    State(st): State<ApiState>,
    Params(p): Params<ListParams>,
) -> Result<Json<kanki_store::Page>, ApiError> {
    if let (Some(since), Some(until)) = (p.since, p.until)
        && since >= until
    {
        return Err(bad_request("since must come before until"));
    }
    let q: ListQuery = p.into();
    Ok(Json(
        blocking(&st, move |k| Ok(k.store.list_indicators(&q)?)).await?,
    ))
}

async fn add_indicator(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Body_(new): Body_<NewIndicator>,
) -> Result<(StatusCode, Json<Indicator>), ApiError> {
    let (ind, created) = blocking(&st, move |k| {
        Ok(k.store.add_indicator(&new, &caller.actor(), Utc::now())?)
    })
    .await?;
    st.list_changed.notify_one();
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(ind)))
}

async fn get_indicator(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<Indicator>, ApiError> {
    blocking(&st, move |k| {
        k.store
            .get_indicator(id)?
            .ok_or(StoreError::NotFound.into())
    })
    .await
    .map(Json)
}

/// The most entries of an indicator's history an answer holds.
pub(crate) const HISTORY_MOST: u32 = 200;

/// An indicator's history, newest first: each change with who made it.
async fn indicator_history(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(&st, move |k| {
        if k.store.get_indicator(id)?.is_none() {
            return Err(StoreError::NotFound.into());
        }
        let items = k.store.indicator_history(id, HISTORY_MOST)?;
        Ok(serde_json::json!({ "items": items }))
    })
    .await
    .map(Json)
}

async fn delete_indicator(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let removed = blocking(&st, move |k| {
        Ok(k.store.delete_indicator(id, &caller.actor(), Utc::now())?)
    })
    .await?;
    if !removed {
        return Err(StoreError::NotFound.into());
    }
    st.list_changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

async fn mark_false_positive(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Body_(r): Body_<Reason>,
) -> Result<Json<Indicator>, ApiError> {
    let ind = blocking(&st, move |k| {
        let by = caller.actor();
        Ok(k.store
            .set_status(id, Status::FalsePositive, &r.reason, &by, Utc::now())?)
    })
    .await?;
    st.list_changed.notify_one();
    Ok(Json(ind))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: Status,
    reason: String,
}

async fn set_status(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Body_(c): Body_<StatusChange>,
) -> Result<Json<Indicator>, ApiError> {
    let ind = blocking(&st, move |k| {
        Ok(k.store
            .set_status(id, c.status, &c.reason, &caller.actor(), Utc::now())?)
    })
    .await?;
    st.list_changed.notify_one();
    Ok(Json(ind))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowIndicator {
    reason: String,
    #[serde(default)]
    kind: Option<AllowKind>,
}

#[derive(Serialize)]
struct AllowedIndicator {
    allowlist_entry: kanki_store::StoredAllowEntry,
    indicator: Indicator,
}

async fn allowlist_indicator(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
    Body_(a): Body_<AllowIndicator>,
) -> Result<Json<AllowedIndicator>, ApiError> {
    let out = blocking(&st, move |k| {
        let ind = k.store.get_indicator(id)?.ok_or(StoreError::NotFound)?;
        let name = match ind.kind {
            Kind::Ip => ind.value.clone(),
            _ => ind
                .host
                .clone()
                .ok_or_else(|| bad_request("this indicator has no host name to allowlist"))?,
        };
        let entry = AllowEntry::new(
            a.kind.unwrap_or(AllowKind::Exact),
            &name,
            a.reason,
            "operator",
        )
        .map_err(|e| bad_request(e.to_string()))?;
        let stored = k.store.add_allow(&entry, Utc::now())?;
        let indicator = k.store.get_indicator(id)?.ok_or(StoreError::NotFound)?;
        Ok(AllowedIndicator {
            allowlist_entry: stored,
            indicator,
        })
    })
    .await?;
    st.list_changed.notify_one();
    Ok(Json(out))
}

async fn add_evidence(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
    Body_(e): Body_<NewEvidence>,
) -> Result<(StatusCode, Json<Indicator>), ApiError> {
    let ind = blocking(&st, move |k| {
        k.store.add_evidence(id, &e, Utc::now())?;
        k.store
            .get_indicator(id)?
            .ok_or(StoreError::NotFound.into())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(ind)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupParams {
    name: String,
}

async fn lookup(
    State(st): State<ApiState>,
    Params(p): Params<LookupParams>,
) -> Json<serde_json::Value> {
    let snap = st.policy.load();
    let verdict = match snap.lookup(p.name.as_bytes()) {
        Verdict::NotListed => json!({ "verdict": "not-listed" }),
        Verdict::Listed {
            matched,
            indicators,
        } => {
            json!({ "verdict": "listed", "matched": matched, "indicators": indicators })
        }
        Verdict::Allowed {
            allow_entry,
            matched_allow,
            listed,
        } => json!({
            "verdict": "allowed", "allowlist_entry": allow_entry, "matched_allow": matched_allow, "overrides": listed
        }),
    };
    let mut v = verdict;
    v["name"] = json!(p.name);
    v["generation"] = json!(snap.generation());
    Json(v)
}

async fn list_allow(
    State(st): State<ApiState>,
) -> Result<Json<Vec<kanki_store::StoredAllowEntry>>, ApiError> {
    Ok(Json(blocking(&st, |k| Ok(k.store.allowlist()?)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAllow {
    name: String,
    reason: String,
    #[serde(default)]
    kind: Option<AllowKind>,
}

async fn add_allow(
    State(st): State<ApiState>,
    Body_(a): Body_<NewAllow>,
) -> Result<(StatusCode, Json<kanki_store::StoredAllowEntry>), ApiError> {
    let e = blocking(&st, move |k| {
        let entry = AllowEntry::new(
            a.kind.unwrap_or(AllowKind::Exact),
            &a.name,
            a.reason,
            "operator",
        )
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        Ok(k.store.add_allow(&entry, Utc::now())?)
    })
    .await?;
    st.list_changed.notify_one();
    Ok((StatusCode::CREATED, Json(e)))
}

async fn remove_allow(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if !blocking(&st, move |k| Ok(k.store.remove_allow(id, Utc::now())?)).await? {
        return Err(StoreError::NotFound.into());
    }
    st.list_changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

async fn list_marks(State(st): State<ApiState>) -> Result<Json<Vec<HostMark>>, ApiError> {
    Ok(Json(blocking(&st, |k| Ok(k.store.host_marks()?)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMark {
    host: String,
    reason: String,
}

async fn add_mark(
    State(st): State<ApiState>,
    Body_(m): Body_<NewMark>,
) -> Result<StatusCode, ApiError> {
    blocking(&st, move |k| {
        Ok(k.store.set_host_mark(&HostMark {
            host: m.host,
            reason: m.reason,
            origin: "operator".into(),
            created_at: Utc::now(),
        })?)
    })
    .await?;
    st.list_changed.notify_one();
    Ok(StatusCode::CREATED)
}

async fn remove_mark(
    State(st): State<ApiState>,
    Path(host): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !blocking(&st, move |k| {
        Ok(k.store.remove_host_mark(&host, Utc::now())?)
    })
    .await?
    {
        return Err(StoreError::NotFound.into());
    }
    st.list_changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

async fn list_imports(
    State(st): State<ApiState>,
) -> Result<Json<Vec<kanki_store::ImportRecord>>, ApiError> {
    Ok(Json(
        blocking(&st, |k| Ok(k.store.recent_imports(100)?)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    format: String,
    source: Option<String>,
}

/// Accepts the file as the raw request body, or as the first file field of
/// a `multipart/form-data` form (`curl -F file=@urlhaus.csv`).
async fn upload_import(
    State(st): State<ApiState>,
    Params(p): Params<ImportParams>,
    headers: HeaderMap,
    req: Request,
) -> Result<Json<kanki_store::ImportSummary>, ApiError> {
    let format: Format = p.format.parse().map_err(bad_request)?;
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut spool = Upload::new(&st).await?;
    let origin = if is_multipart {
        let mut form = Multipart::from_request(req, &st)
            .await
            .map_err(|e| bad_request(e.body_text()))?;
        // The first file field; plain text fields before it are ignored.
        loop {
            let mut field = form
                .next_field()
                .await
                .map_err(|e| bad_request(e.body_text()))?
                .ok_or_else(|| bad_request("the form has no file field"))?;
            if let Some(name) = field.file_name().map(str::to_string) {
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| bad_request(e.body_text()))?
                {
                    spool.write(&chunk).await?;
                }
                break name;
            }
        }
    } else {
        spool.write_body(req.into_body()).await?;
        "upload".to_string()
    };
    let data = spool.finish().await?;
    let summary = blocking(&st, move |k| {
        let origin = format!("api:{origin}");
        Ok(k.import_reader(
            format,
            p.source.as_deref(),
            Box::new(data),
            &origin,
            &mut |_| {},
        )?)
    })
    .await?;
    st.metrics.record_import(&summary);
    if !summary.changed_nothing() {
        st.list_changed.notify_one();
    }
    Ok(Json(summary))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    status: Option<Status>,
    kind: Option<Kind>,
    source: Option<String>,
}

async fn export(
    State(st): State<ApiState>,
    Path(format): Path<String>,
    Params(p): Params<ExportParams>,
) -> Result<Response, ApiError> {
    let format: ExportFormat = format
        .parse()
        .map_err(|e: String| ApiError(StatusCode::NOT_FOUND, e))?;
    let filter = ListQuery {
        status: p.status,
        kind: p.kind,
        source: p.source,
        ..Default::default()
    };
    let body = blocking(&st, move |k| {
        let mut out = Vec::new();
        k.export(format, &filter, &mut out)?;
        Ok(out)
    })
    .await?;
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardParams {
    range: Option<String>,
}

/// `GET /api/v1/dashboard?range=hour|day|week|month` (default day).
async fn dashboard_json(
    State(st): State<ApiState>,
    Params(p): Params<DashboardParams>,
) -> Result<Json<dashboard::Dashboard>, ApiError> {
    let range = match p.range.as_deref() {
        None => dashboard::Range::Day,
        Some(r) => dashboard::Range::parse(r)
            .ok_or_else(|| bad_request(format!("range {r:?}: hour, day, week or month")))?,
    };
    let state = st.clone();
    blocking(&st, move |k| dashboard::dashboard(&state, k, range))
        .await
        .map(Json)
}
