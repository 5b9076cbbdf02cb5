//! `/api/v1/events`, `/api/v1/cases` and `/api/v1/escalations`: the
//! removal loop. The escalation queue is what the DNS front's walled
//! garden (and the letter desk, the call centre) consumes.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use kanki_events::Format;
use kanki_removal::case::Action;
use kanki_removal::ingest::Source;
use kanki_store::{CaseFilter, CaseState, EscalationStatus};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::{ApiError, ApiState, Params, Upload, ViewParams, bad_request, blocking, record_view};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IngestParams {
    format: Format,
    report_type: Option<String>,
    mapping: Option<String>,
    /// A file name, for the report type and the ingest's record.
    name: Option<String>,
}

/// The body is one input (a report, a log); it is ingested with attribution.
pub(crate) async fn ingest(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Params(p): Params<IngestParams>,
    body: Body,
) -> Result<Json<kanki_removal::ingest::IngestSummary>, ApiError> {
    let mut upload = Upload::new(&st).await?;
    upload.write_body(body).await?;
    let body = upload.finish().await?;
    let compiled = st.directory.compiled();
    let source = Source {
        format: p.format,
        report_type: p.report_type,
        mapping: p.mapping,
        origin: p.name.unwrap_or_else(|| "http".into()),
        actor: caller.actor(),
    };
    let mut meter = crate::metrics::IngestMeter::new(st.metrics.clone());
    blocking(&st, move |k| {
        let s = kanki_removal::ingest::ingest(k, &compiled, &source, Box::new(body), &mut |s| {
            meter.progress(s)
        })?;
        meter.progress(&s);
        Ok(Json(s))
    })
    .await
}

/// An event, with one view record (it may name its subscriber).
pub(crate) async fn get_event(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
    Caller(caller): Caller,
    Params(view): Params<ViewParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pseudonyms = st.pseudonyms.clone();
    blocking(&st, move |k| {
        let e = k
            .store
            .removal()
            .get_event(id)?
            .ok_or(kanki_store::StoreError::NotFound)?;
        let subscriber = e.attribution.as_ref().map(|a| a.subscriber.as_str());
        record_view(k, &caller, "event", &id.to_string(), subscriber, &view)?;
        Ok(Json(pseudonyms.shown_to(&caller, json!(e))))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseParams {
    state: Option<String>,
    subscriber: Option<String>,
    threat: Option<String>,
    feed: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

pub(crate) async fn list_cases(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Params(p): Params<CaseParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let states = p
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.parse::<CaseState>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad_request)?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let items = blocking(&st, move |k| {
        Ok(k.store.removal().list_cases(&CaseFilter {
            states,
            subscriber: p.subscriber,
            threat: p.threat,
            feed: p.feed,
            after: p.after,
            limit: Some(limit),
            ..Default::default()
        })?)
    })
    .await?;
    let next = (items.len() == limit as usize)
        .then(|| items.last().map(|c| c.id))
        .flatten();
    let answer = json!({ "items": items, "next_after": next });
    Ok(Json(st.pseudonyms.shown_to(&caller, answer)))
}

/// A case with its history, notices and events, with one view record.
pub(crate) async fn get_case(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
    Caller(caller): Caller,
    Params(view): Params<ViewParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pseudonyms = st.pseudonyms.clone();
    blocking(&st, move |k| {
        let r = k.store.removal();
        let case = r.get_case(id)?.ok_or(kanki_store::StoreError::NotFound)?;
        record_view(
            k,
            &caller,
            "case",
            &id.to_string(),
            Some(&case.subscriber),
            &view,
        )?;
        let answer = json!({
            "case": case,
            "history": r.case_log(id)?,
            "notices": r.case_notices(id)?,
            "events": r.case_events(id, 20)?,
        });
        Ok(Json(pseudonyms.shown_to(&caller, answer)))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// review, hold, release, close, escalate or send-now.
    action: String,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn case_action(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
    Caller(caller): Caller,
    Json(b): Json<ActionBody>,
) -> Result<Json<kanki_store::Case>, ApiError> {
    let action = match b.action.as_str() {
        "review" => Action::Review(b.reason),
        "hold" => Action::Hold(b.reason),
        "release" => Action::Release,
        "close" => Action::Close(b.reason),
        "escalate" => Action::Escalate(b.reason),
        "send-now" => Action::SendNow(b.reason),
        other => {
            return Err(bad_request(format!(
                "unknown action {other:?}: one of review, hold, release, close, escalate, send-now"
            )));
        }
    };
    let who = caller.actor();
    let garden = st.garden.clone();
    blocking(&st, move |k| {
        let case = kanki_removal::case::act(k, id, &action, &who)?;
        // Closing may have let the subscriber out of the walled garden.
        garden.refresh(&k.store)?;
        Ok(Json(case))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscalationParams {
    status: Option<EscalationStatus>,
}

pub(crate) async fn list_escalations(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Params(p): Params<EscalationParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let items = blocking(&st, move |k| {
        Ok(k.store.removal().list_escalations(p.status)?)
    })
    .await?;
    Ok(Json(st.pseudonyms.shown_to(&caller, json!(items))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscalationBody {
    status: EscalationStatus,
}

pub(crate) async fn set_escalation(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
    Json(b): Json<EscalationBody>,
) -> Result<Json<kanki_store::Escalation>, ApiError> {
    blocking(&st, move |k| {
        Ok(Json(k.store.removal().set_escalation_status(
            id,
            b.status,
            chrono::Utc::now(),
        )?))
    })
    .await
}

/// Acknowledgement by notice reference, for a helpdesk taking it by phone:
/// the same as the countermeasure site's, walled garden included.
pub(crate) async fn acknowledge(
    State(st): State<ApiState>,
    Path(reference): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use kanki_removal::site::Acknowledged;
    let garden = st.garden.clone();
    blocking(&st, move |k| {
        let reference = reference.trim().to_ascii_uppercase();
        match kanki_removal::site::acknowledge(k, &reference, "")? {
            Acknowledged::Case { left_garden } => {
                if left_garden {
                    garden.reload(&k.store)?;
                }
                Ok(Json(
                    json!({ "acknowledged": reference, "left_walled_garden": left_garden }),
                ))
            }
            _ => Err(kanki_store::StoreError::NotFound.into()),
        }
    })
    .await
}

/// The removal outcomes (as in `kanki report`), as the dashboard has
/// them: at most a minute old, computed again after any change made
/// through the API or the console.
pub(crate) async fn report(
    State(st): State<ApiState>,
) -> Result<Json<kanki_removal::outcomes::Outcomes>, ApiError> {
    let kept = st.kept.clone();
    blocking(&st, move |k| Ok(Json(kept.outcomes(k)?))).await
}
