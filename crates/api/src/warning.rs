//! `/api/v1/false-positives`, `/api/v1/garden` and `/api/v1/warning/hits`:
//! the operators' side of the warning page.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use kanki_audit::Ground;
use kanki_service::ServiceError;
use kanki_service::warning::GardenChange;
use kanki_store::{
    FalsePositiveReport, GardenMember, HitCount, HitsQuery, ReportOutcome, ReportQuery,
    ReportStatus, StoreError,
};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::{ApiError, ApiState, Body_, Params, blocking};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportParams {
    /// open (default), reviewed or all.
    status: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

pub(crate) async fn list_reports(
    State(st): State<ApiState>,
    Params(p): Params<ReportParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = match p.status.as_deref().unwrap_or("open") {
        "all" => None,
        s => Some(
            s.parse::<ReportStatus>()
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}, or all")))?,
        ),
    };
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let q = ReportQuery {
        status,
        after: p.after,
        limit: Some(limit),
    };
    let items = blocking(&st, move |k| Ok(k.store.warning().reports(&q)?)).await?;
    let next = (items.len() == limit as usize).then(|| items.last().map(|r| r.id));
    Ok(Json(
        json!({ "items": items, "next_after": next.flatten() }),
    ))
}

pub(crate) async fn get_report(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<FalsePositiveReport>, ApiError> {
    blocking(&st, move |k| {
        k.store
            .warning()
            .get_report(id)?
            .map(Json)
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no report {id}")))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Review {
    outcome: ReportOutcome,
    note: String,
}

/// Judges a report; `false-positive` also takes its indicators off the list.
pub(crate) async fn review_report(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
    Caller(caller): Caller,
    Body_(r): Body_<Review>,
) -> Result<Json<FalsePositiveReport>, ApiError> {
    let who = caller.actor();
    let report = blocking(&st, move |k| {
        k.review_report(id, r.outcome, &r.note, &who)
            .map_err(|e| match e {
                ServiceError::Store(StoreError::NotFound) => {
                    ApiError(StatusCode::NOT_FOUND, format!("no report {id}"))
                }
                ServiceError::Store(StoreError::Invalid(m)) => ApiError(StatusCode::CONFLICT, m),
                e => e.into(),
            })
    })
    .await?;
    if report.outcome == Some(ReportOutcome::FalsePositive) {
        st.list_changed.notify_one();
    }
    Ok(Json(report))
}

pub(crate) async fn list_garden(
    State(st): State<ApiState>,
    Caller(caller): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let members: Vec<GardenMember> = blocking(&st, |k| Ok(k.store.warning().garden()?)).await?;
    Ok(Json(st.pseudonyms.shown_to(&caller, json!(members))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GardenBody {
    ground: Ground,
    reason: String,
    /// Shown to the subscriber (entering only).
    notice: Option<String>,
}

/// Puts a subscriber in the walled garden; the DNS front and the warning
/// page follow at once.
pub(crate) async fn enter_garden(
    State(st): State<ApiState>,
    Path(subscriber): Path<String>,
    Caller(caller): Caller,
    Body_(b): Body_<GardenBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let change = GardenChange {
        subscriber: subscriber.clone(),
        ground: b.ground,
        reason: b.reason,
        actor: caller.actor(),
    };
    let garden = st.garden.clone();
    blocking(&st, move |k| {
        let record = k
            .garden_enter(&change, b.notice.as_deref(), None)
            .map_err(|e| match e {
                ServiceError::Store(StoreError::NotFound) => {
                    ApiError(StatusCode::NOT_FOUND, format!("no subscriber {subscriber}"))
                }
                e => e.into(),
            })?;
        garden.reload(&k.store)?;
        Ok(match record {
            Some(r) => (
                StatusCode::CREATED,
                Json(json!({ "subscriber": subscriber, "entered": true, "audit_seq": r.seq })),
            ),
            None => (
                StatusCode::OK,
                Json(json!({ "subscriber": subscriber, "entered": false, "note": "already in the walled garden; nothing recorded" })),
            ),
        })
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaveBody {
    ground: Ground,
    reason: String,
}

pub(crate) async fn leave_garden(
    State(st): State<ApiState>,
    Path(subscriber): Path<String>,
    Caller(caller): Caller,
    Body_(b): Body_<LeaveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let change = GardenChange {
        subscriber: subscriber.clone(),
        ground: b.ground,
        reason: b.reason,
        actor: caller.actor(),
    };
    let garden = st.garden.clone();
    blocking(&st, move |k| {
        let Some(r) = k.garden_leave(&change)? else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("{subscriber} is not in the walled garden"),
            ));
        };
        garden.reload(&k.store)?;
        Ok(Json(
            json!({ "subscriber": subscriber, "left": true, "audit_seq": r.seq }),
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HitsParams {
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
    indicator: Option<i64>,
    limit: Option<u32>,
}

/// Warning-page hits per indicator per day, newest day first.
pub(crate) async fn hits(
    State(st): State<ApiState>,
    Params(p): Params<HitsParams>,
) -> Result<Json<Vec<HitCount>>, ApiError> {
    let q = HitsQuery {
        since: p.since,
        until: p.until,
        indicator: p.indicator,
        limit: Some(p.limit.unwrap_or(1000).clamp(1, 100_000)),
    };
    Ok(Json(
        blocking(&st, move |k| Ok(k.store.warning().hits(&q)?)).await?,
    ))
}
