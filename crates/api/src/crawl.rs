//! `/api/v1/crawls`, `/api/v1/crawl-sites` and `/api/v1/crawl-notices`:
//! the crawler's evidence. An indicator the crawler listed links to its
//! node as `/api/v1/crawls/ID#PROFILE/NODE`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use kanki_store::{CrawlRecord, CrawlSite, SiteNotice, StoreError};
use serde::Deserialize;

use crate::{ApiError, ApiState, Params, blocking};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limit {
    limit: Option<u32>,
}

pub(crate) async fn list_crawls(
    State(st): State<ApiState>,
    Params(p): Params<Limit>,
) -> Result<Json<Vec<CrawlRecord>>, ApiError> {
    let limit = p.limit.unwrap_or(100).min(10_000);
    Ok(Json(
        blocking(&st, move |k| Ok(k.store.crawl().recent_crawls(limit)?)).await?,
    ))
}

/// The stored report as the crawler wrote it: every profile's tree.
pub(crate) async fn get_crawl(
    State(st): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let (_, report) = blocking(&st, move |k| {
        Ok(k.store.crawl().get_crawl(id)?.ok_or(StoreError::NotFound)?)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], report).into_response())
}

pub(crate) async fn list_sites(
    State(st): State<ApiState>,
    Params(p): Params<Limit>,
) -> Result<Json<Vec<CrawlSite>>, ApiError> {
    let limit = p.limit.unwrap_or(1000).min(100_000);
    Ok(Json(
        blocking(&st, move |k| Ok(k.store.crawl().sites(limit)?)).await?,
    ))
}

pub(crate) async fn list_notices(
    State(st): State<ApiState>,
    Params(p): Params<Limit>,
) -> Result<Json<Vec<SiteNotice>>, ApiError> {
    let limit = p.limit.unwrap_or(100).min(10_000);
    Ok(Json(
        blocking(&st, move |k| Ok(k.store.crawl().site_notices(limit)?)).await?,
    ))
}
