//! `/api/v1/subscribers`, `/api/v1/who` and `/api/v1/audit`.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kanki_audit::Ground;
use kanki_directory::{SubscriberRow, read_subscribers};
use kanki_service::directory::WhoQuery;
use kanki_store::AuditFilter;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::{ApiError, ApiState, Params, ViewParams, bad_request, blocking, record_view};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageParams {
    after: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list_subscribers(
    State(st): State<ApiState>,
    Params(p): Params<PageParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let items = blocking(&st, move |k| {
        Ok(k.store
            .directory()
            .list_subscribers(p.after.as_deref(), limit)?)
    })
    .await?;
    let next = (items.len() == limit as usize).then(|| items.last().map(|s| s.id.clone()));
    Ok(Json(
        json!({ "items": items, "next_after": next.flatten() }),
    ))
}

/// A subscriber's record, with one view record.
pub(crate) async fn get_subscriber(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Caller(caller): Caller,
    Params(view): Params<ViewParams>,
) -> Result<Json<kanki_store::Subscriber>, ApiError> {
    blocking(&st, move |k| {
        let s = k
            .store
            .directory()
            .get_subscriber(&id)?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no subscriber {id}")))?;
        record_view(k, &caller, "subscriber", &id, Some(&id), &view)?;
        Ok(Json(s))
    })
    .await
}

/// Body: the subscriber CSV (see docs/bindings.md).
pub(crate) async fn import_subscribers(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = caller.actor();
    let directory = st.directory.clone();
    blocking(&st, move |k| {
        let rows = read_subscribers(&body[..]).map_err(bad_request)?;
        let (mut records, mut skipped) = (Vec::new(), Vec::new());
        for row in rows {
            match row.map_err(|e| bad_request(e.to_string()))? {
                SubscriberRow::Record(r) => records.push(r),
                SubscriberRow::Skip(s) => skipped.push(json!({"line": s.line, "reason": s.reason})),
            }
        }
        let counts = k
            .store
            .directory()
            .upsert_subscribers(&records, "api", &who, Utc::now())?;
        directory.reload_consent(&k.store)?;
        Ok(Json(json!({ "counts": counts, "skipped": skipped })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentBody {
    granted: bool,
    /// web, phone, contract, ...
    channel: Option<String>,
}

/// Grants or revokes; the DNS front sees the change at once.
pub(crate) async fn set_consent(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Caller(caller): Caller,
    Json(b): Json<ConsentBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = caller.actor();
    let directory = st.directory.clone();
    blocking(&st, move |k| {
        let channel = b.channel.unwrap_or_else(|| "api".into());
        let changed = change_consent(k, &directory, &id, b.granted, &channel, &who)?;
        Ok(Json(
            json!({ "subscriber": id, "consent": b.granted, "changed": changed }),
        ))
    })
    .await
}

/// A consent change as the API and the console make it: stored with its
/// audit record, then the DNS front's consent set reloaded, so the next
/// query sees it. Whether it changed anything (granting a consent already
/// given does not).
pub(crate) fn change_consent(
    k: &kanki_service::Kanki,
    directory: &kanki_service::directory::Directory,
    id: &str,
    granted: bool,
    channel: &str,
    who: &str,
) -> Result<bool, ApiError> {
    let changed = k
        .store
        .directory()
        .set_consent(id, granted, channel, who, Utc::now())
        .map_err(|e| match e {
            kanki_store::StoreError::NotFound => {
                ApiError(StatusCode::NOT_FOUND, format!("no subscriber {id}"))
            }
            other => other.into(),
        })?;
    directory.reload_consent(&k.store)?;
    Ok(changed)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindingPage {
    /// The last binding of the page before: `START.ID` (its start in Unix
    /// seconds and its id), as `next_after` gave it.
    after: Option<String>,
    limit: Option<u32>,
    purpose: Option<String>,
}

/// Reads `START.ID`, a binding page's position.
pub(crate) fn binding_position(s: &str) -> Option<(i64, i64)> {
    let (from, id) = s.split_once('.')?;
    Some((from.parse().ok()?, id.parse().ok()?))
}

/// The addresses a subscriber's identifiers held over time, latest first,
/// with one view record.
pub(crate) async fn subscriber_bindings(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Caller(caller): Caller,
    Params(p): Params<BindingPage>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let after = match p.after.as_deref() {
        None => None,
        Some(a) => Some(binding_position(a).ok_or_else(|| {
            bad_request(format!("after {a:?}: START.ID, as next_after gives it"))
        })?),
    };
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let view = ViewParams { purpose: p.purpose };
    blocking(&st, move |k| {
        let d = k.store.directory();
        if d.get_subscriber(&id)?.is_none() {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no subscriber {id}"),
            ));
        }
        record_view(k, &caller, "subscriber-bindings", &id, Some(&id), &view)?;
        let items = d.subscriber_bindings(&id, after, limit)?;
        let next = (items.len() == limit as usize)
            .then(|| items.last())
            .flatten()
            .map(|b| format!("{}.{}", b.binding.from.timestamp(), b.id));
        Ok(Json(json!({ "items": items, "next_after": next })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhoBody {
    address: IpAddr,
    port: Option<u16>,
    /// Default: now.
    at: Option<DateTime<Utc>>,
    ground: Ground,
    purpose: String,
    /// The case an emergency evacuation serves.
    case: Option<i64>,
    /// The event an emergency evacuation serves.
    event: Option<i64>,
    /// The program a legitimate business act belongs to.
    program: Option<String>,
}

/// An attribution: audited before it is answered, under the caller's
/// identity, its ground checked.
pub(crate) async fn who(
    State(st): State<ApiState>,
    Caller(caller): Caller,
    Json(b): Json<WhoBody>,
) -> Result<Json<kanki_service::directory::Attribution>, ApiError> {
    let q = WhoQuery {
        address: b.address,
        port: b.port,
        at: b.at.unwrap_or_else(Utc::now),
        ground: b.ground,
        purpose: b.purpose,
        actor: caller.actor(),
        cites: kanki_service::directory::Cites {
            case: b.case,
            event: b.event,
            program: b.program,
        },
    };
    let compiled = st.directory.compiled();
    blocking(&st, move |k| Ok(Json(k.who(&compiled, &q)?))).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    actor: Option<String>,
    action: Option<String>,
    ground: Option<Ground>,
    mentions: Option<String>,
    purpose: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub(crate) async fn audit(
    State(st): State<ApiState>,
    Params(p): Params<AuditParams>,
) -> Result<Json<Vec<kanki_audit::AuditRecord>>, ApiError> {
    let q = AuditFilter {
        since: p.since,
        until: p.until,
        actor: p.actor,
        action: p.action,
        ground: p.ground,
        mentions: p.mentions,
        purpose: p.purpose,
        before: p.before,
        limit: Some(p.limit.unwrap_or(100).clamp(1, 10_000)),
    };
    blocking(&st, move |k| {
        let mut out = Vec::new();
        k.store
            .directory()
            .audit_records(&q, &mut |r| out.push(r))?;
        Ok(Json(out))
    })
    .await
}

pub(crate) async fn audit_verify(
    State(st): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(&st, |k| {
        Ok(Json(match k.verify_audit(&[])? {
            Ok(v) => json!({ "intact": true, "records": v.records, "head": v.head }),
            Err(b) => json!({ "intact": false, "first_broken": b.seq, "reason": b.reason }),
        }))
    })
    .await
}

/// The directory as `kanki serve` holds it: sizes only, no identities.
pub(crate) async fn status(State(st): State<ApiState>) -> Json<serde_json::Value> {
    let c = st.directory.compiled();
    Json(json!({
        "generation": c.generation,
        "bindings": c.bindings(),
        "changed_since_built": c.changed_since_built(),
        "index_memory_bytes": c.memory_bytes(),
        "consenting_subscribers": st.directory.consenting_count(),
    }))
}
