//! The middleware in front of every route of the API: the Host check and
//! the client's address behind a trusted proxy, read by
//! [`kanki_operators::listener`].

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kanki_operators::listener::{BadForwarded, Hosts, client_address};

use crate::{ApiError, ApiState};

/// The client's address, as the routes see it: the peer, or the address a
/// trusted proxy forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(crate::auth::source(&parts.extensions)))
    }
}

/// The middleware in front of every route: the Host check, then the
/// client's address behind a trusted proxy (for the routes, the token
/// prefixes and the sign-in limits).
pub(crate) async fn guard(
    State((st, hosts)): State<(ApiState, Arc<Hosts>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    // /healthz answers whatever name a load balancer's check uses; it
    // tells nothing.
    if req.uri().path() != "/healthz" && !authority.as_deref().is_some_and(|a| hosts.allows(a)) {
        crate::auth::count_forbidden(&st, "host");
        return ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "this server does not answer for the host {:?} (api.hostnames)",
                authority.unwrap_or_default()
            ),
        )
        .into_response();
    }
    let trusted = &st.kanki.config.api.trusted_proxies;
    if !trusted.is_empty() {
        let peer = crate::auth::source(req.extensions());
        let forwarded = client_address(
            peer,
            &values(req.headers(), header::FORWARDED),
            &values(req.headers(), HeaderName::from_static("x-forwarded-for")),
            trusted,
        );
        match forwarded {
            Ok(client) => {
                req.extensions_mut().insert(Client(client));
            }
            Err(BadForwarded) => {
                crate::auth::count_forbidden(&st, "forwarded");
                return ApiError(
                    StatusCode::BAD_REQUEST,
                    "the client address forwarded by the proxy cannot be read".into(),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// The values of every `name` header, in the order received.
fn values(headers: &HeaderMap, name: HeaderName) -> Vec<&[u8]> {
    headers.get_all(name).iter().map(|v| v.as_bytes()).collect()
}
