//! Who may call which route: the route table, and the middleware that
//! authenticates every request (a Bearer token or a session cookie) and
//! authorizes it by that table.
//!
//! [`ROUTES`] is the one place a route's permission is declared: the
//! middleware reads it for every request (a route missing from it is
//! refused, never let through) and the tests read it to walk
//! `docs/openapi.json` with every role.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kanki_operators::secret::{parse_authorization, parse_session_cookie};
use kanki_operators::{AuthError, Permission, Principal};

use crate::{ApiError, ApiState, metrics};

use Permission::*;

/// One route a line, `METHOD "path" => Permission`, made into
/// `(method, path, permission)`.
macro_rules! routes {
    ($($method:ident $path:literal => $permission:ident,)*) => {
        &[$((stringify!($method), $path, $permission)),*]
    };
}

/// Every route of the operator API with the permission it needs:
/// (method, path as in `docs/openapi.json`, permission).
pub const ROUTES: &[(&str, &str, Permission)] = routes![
    GET "/healthz" => Public,
    // Signing in needs no credentials; the setup page only works on a
    // first run, with the code `kanki serve` printed.
    GET "/sign-in" => Public,
    POST "/sign-in" => Public,
    GET "/setup" => Public,
    POST "/setup" => Public,
    POST "/api/v1/session" => Public,
    GET "/api/v1/session" => SignedIn,
    DELETE "/api/v1/session" => SignedIn,
    GET "/metrics" => Metrics,
    GET "/api/v1/openapi.json" => SignedIn,
    GET "/api/v1/operators" => Administer,
    POST "/api/v1/operators/{name}/disabled" => Administer,
    POST "/api/v1/operators/{name}/roles" => Administer,
    GET "/api/v1/tokens" => Administer,
    DELETE "/api/v1/tokens/{id}" => Administer,
    GET "/api/v1/config" => Administer,
    GET "/api/v1/dashboard" => ViewCounts,
    GET "/api/v1/feeds" => ViewCounts,
    POST "/api/v1/feeds/{name}/run" => Ingest,
    GET "/api/v1/indicators" => ReadList,
    POST "/api/v1/indicators" => CurateList,
    GET "/api/v1/indicators/{id}" => ReadList,
    DELETE "/api/v1/indicators/{id}" => CurateList,
    POST "/api/v1/indicators/{id}/false-positive" => CurateList,
    POST "/api/v1/indicators/{id}/allowlist" => CurateList,
    POST "/api/v1/indicators/{id}/status" => CurateList,
    GET "/api/v1/indicators/{id}/history" => ReadList,
    POST "/api/v1/indicators/{id}/evidence" => CurateList,
    GET "/api/v1/lookup" => ReadList,
    GET "/api/v1/allowlist" => ReadList,
    POST "/api/v1/allowlist" => CurateList,
    DELETE "/api/v1/allowlist/{id}" => CurateList,
    GET "/api/v1/host-marks" => ReadList,
    POST "/api/v1/host-marks" => CurateList,
    DELETE "/api/v1/host-marks/{host}" => CurateList,
    GET "/api/v1/imports" => ReadList,
    POST "/api/v1/imports" => Ingest,
    GET "/api/v1/exports/{format}" => ReadList,
    GET "/api/v1/subscribers" => ReadSubscribers,
    POST "/api/v1/subscribers" => ManageSubscribers,
    GET "/api/v1/subscribers/{id}" => ReadSubscribers,
    GET "/api/v1/subscribers/{id}/bindings" => ReadSubscribers,
    POST "/api/v1/subscribers/{id}/consent" => ManageSubscribers,
    POST "/api/v1/who" => Attribute,
    GET "/api/v1/audit" => ReadAudit,
    GET "/api/v1/audit/verify" => ReadAudit,
    GET "/api/v1/directory" => ViewCounts,
    POST "/api/v1/events" => Ingest,
    GET "/api/v1/events/{id}" => ReadCases,
    GET "/api/v1/cases" => ReadCases,
    GET "/api/v1/cases/{id}" => ReadCases,
    POST "/api/v1/cases/{id}/actions" => ActOnCases,
    GET "/api/v1/escalations" => ReadCases,
    POST "/api/v1/escalations/{id}" => ActOnCases,
    POST "/api/v1/notices/{reference}/acknowledge" => ActOnCases,
    GET "/api/v1/removal/report" => ViewCounts,
    GET "/api/v1/false-positives" => ReadList,
    GET "/api/v1/false-positives/{id}" => ReadList,
    POST "/api/v1/false-positives/{id}/review" => CurateList,
    GET "/api/v1/garden" => ReadCases,
    POST "/api/v1/garden/{subscriber}" => ActOnCases,
    DELETE "/api/v1/garden/{subscriber}" => ActOnCases,
    GET "/api/v1/warning/hits" => ViewCounts,
    GET "/api/v1/crawls" => ReadList,
    GET "/api/v1/crawls/{id}" => ReadList,
    GET "/api/v1/crawl-sites" => ReadList,
    GET "/api/v1/crawl-notices" => ReadList,
    // The console (HTML pages; tag `console` in docs/openapi.json): each
    // page and action with the permission of the API route it serves.
    GET "/static/console.css" => Public,
    GET "/" => SignedIn,
    POST "/language" => SignedIn,
    POST "/sign-out" => SignedIn,
    GET "/cases" => ReadCases,
    GET "/cases/{id}" => ReadCases,
    POST "/cases/actions" => ActOnCases,
    GET "/who" => Attribute,
    POST "/who" => Attribute,
    GET "/indicators" => ReadList,
    POST "/indicators" => CurateList,
    GET "/indicators/{id}" => ReadList,
    POST "/indicators/{id}/status" => CurateList,
    GET "/false-positives" => ReadList,
    POST "/false-positives/{id}/review" => CurateList,
    GET "/dashboard" => ViewCounts,
    GET "/dashboard/{file}" => ViewCounts,
    GET "/feeds" => ViewCounts,
    POST "/feeds/{name}/run" => Ingest,
    GET "/subscribers" => ReadSubscribers,
    GET "/subscribers/{id}" => ReadSubscribers,
    POST "/subscribers/{id}/consent" => ManageSubscribers,
    GET "/admin" => Administer,
    GET "/admin/config" => Administer,
    POST "/admin/operators/{name}/disabled" => Administer,
    POST "/admin/operators/{name}/roles" => Administer,
    POST "/admin/tokens/{id}/revoke" => Administer,
    GET "/audit" => ReadAudit,
    GET "/audit/verify" => ReadAudit,
];

/// The permission a route needs, from [`ROUTES`]; `None` for a route not
/// in the table.
pub fn permission(method: &Method, path: &str) -> Option<Permission> {
    static TABLE: OnceLock<HashMap<(&'static str, &'static str), Permission>> = OnceLock::new();
    let table = TABLE.get_or_init(|| ROUTES.iter().map(|&(m, p, perm)| ((m, p), perm)).collect());
    // HEAD is answered by the GET route.
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    table.get(&(m, path)).copied()
}

/// Counts a request refused as cross-site or without a permission.
pub(crate) fn count_forbidden(st: &ApiState, label: &str) {
    st.metrics
        .forbidden
        .get_or_create(&metrics::PermissionLabels {
            permission: label.to_string(),
        })
        .inc();
}

fn refuse(st: &ApiState, status: StatusCode, label: &str, message: String) -> Response {
    refuse_as(st, status, label, message, false)
}

/// As [`refuse`]; for a console page (`page`), a browser without a valid
/// session is sent to sign in and a refusal is a page.
fn refuse_as(
    st: &ApiState,
    status: StatusCode,
    label: &str,
    message: String,
    page: bool,
) -> Response {
    let unauthorized = status == StatusCode::UNAUTHORIZED;
    if unauthorized {
        st.metrics
            .auth_failures
            .get_or_create(&metrics::ReasonLabels {
                reason: label.to_string(),
            })
            .inc();
    } else {
        count_forbidden(st, label);
    }
    match (page, unauthorized) {
        (true, true) => axum::response::Redirect::to("/sign-in").into_response(),
        (true, false) => crate::console::refusal(status, &message),
        (false, true) => {
            let mut r = ApiError(status, message).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kanki\""),
            );
            r
        }
        (false, false) => ApiError(status, message).into_response(),
    }
}

/// The address the request came from: the client a trusted proxy
/// forwarded ([`crate::listen::Client`]), else the listener's peer.
pub(crate) fn source(req_extensions: &axum::http::Extensions) -> IpAddr {
    if let Some(c) = req_extensions.get::<crate::listen::Client>() {
        return c.0;
    }
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Authenticates a request from its headers: the `Authorization` header
/// if there is one, else the session cookie.
pub(crate) async fn authenticate(
    st: &ApiState,
    headers: &HeaderMap,
    source: IpAddr,
) -> Result<Principal, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let presented = parse_authorization(value.as_bytes())?;
        let first = st.auth.authenticate_token(&presented, source, Utc::now());
        if first != Err(AuthError::UnknownToken) || !st.auth.reload_for_miss_due() {
            return first;
        }
        // Perhaps made a moment ago by `kanki tokens create`.
        let (k, auth) = (st.kanki.clone(), st.auth.clone());
        let reloaded =
            tokio::task::spawn_blocking(move || auth.refresh(k.store.operators(), Utc::now()))
                .await;
        if !matches!(reloaded, Ok(Ok(()))) {
            tracing::error!("reloading operators and tokens failed");
        }
        return st.auth.authenticate_token(&presented, source, Utc::now());
    }
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if let Some(value) = cookies.next() {
        if cookies.next().is_some() {
            return Err(kanki_operators::secret::Malformed::Cookie.into());
        }
        if let Some(hash) = parse_session_cookie(value.as_bytes())? {
            return st.auth.authenticate_session(&hash, Utc::now());
        }
    }
    Err(AuthError::Missing)
}

fn state_changing(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Whether a console form's `csrf_token` field is the session's token.
/// The form (at most [`crate::signin::FORM_LIMIT`] bytes, larger is
/// refused) is read here and handed on intact.
async fn form_csrf_ok(p: &Principal, req: Request) -> (bool, Request) {
    let Some(expected) = p.csrf.as_deref() else {
        return (true, req);
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::signin::FORM_LIMIT).await else {
        return (false, Request::from_parts(parts, axum::body::Body::empty()));
    };
    let ok = url::form_urlencoded::parse(&bytes)
        .any(|(k, v)| k == crate::console::CSRF_FIELD && v.as_bytes() == expected.as_bytes());
    (
        ok,
        Request::from_parts(parts, axum::body::Body::from(bytes)),
    )
}

/// For a request made with a session cookie (a browser): a state-changing
/// request carries a JSON body (which a cross-site form cannot send) or
/// the session's CSRF token in `X-CSRF-Token`.
fn csrf_ok(p: &Principal, headers: &HeaderMap) -> bool {
    let Some(expected) = &p.csrf else {
        // A token in the Authorization header: a browser never adds one
        // to a cross-site request by itself.
        return true;
    };
    if is_json(headers) {
        return true;
    }
    headers
        .get("x-csrf-token")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes())
}

/// The middleware: every matched route is authenticated and authorized by
/// [`ROUTES`]; the [`Principal`] goes into the request for the handler.
pub(crate) async fn authorize(
    State(st): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let needed = path.as_deref().and_then(|p| permission(req.method(), p));
    let Some(needed) = needed else {
        tracing::error!(method = %req.method(), path = ?path, "a route without a declared permission was refused");
        return refuse(
            &st,
            StatusCode::FORBIDDEN,
            "undeclared",
            "this route declares no permission".into(),
        );
    };
    if needed == Public {
        return next.run(req).await;
    }
    let page = path.as_deref().is_some_and(crate::console::is_page);
    let source = source(req.extensions());
    let principal = match authenticate(&st, req.headers(), source).await {
        Ok(p) => p,
        Err(AuthError::Missing)
            if needed == Metrics
                && st
                    .kanki
                    .config
                    .operators
                    .metrics_scrapers
                    .iter()
                    .any(|n| n.contains(&source)) =>
        {
            return next.run(req).await;
        }
        Err(e) => {
            return refuse_as(
                &st,
                StatusCode::UNAUTHORIZED,
                e.reason(),
                e.to_string(),
                page,
            );
        }
    };
    if !principal.may(needed) {
        return refuse_as(
            &st,
            StatusCode::FORBIDDEN,
            needed.as_str(),
            format!(
                "{} may not do this: it needs the permission {needed}, which none of the roles {} grants",
                principal.actor(),
                if principal.roles.is_empty() {
                    "(none)".to_string()
                } else {
                    principal.roles.to_string()
                }
            ),
            page,
        );
    }
    if state_changing(req.method()) && !csrf_ok(&principal, req.headers()) {
        // A console form carries the token as a field instead.
        let (ok, back) = if page && is_form(req.headers()) {
            form_csrf_ok(&principal, req).await
        } else {
            (false, req)
        };
        if !ok {
            return refuse_as(
                &st,
                StatusCode::FORBIDDEN,
                "csrf",
                "a change made from a browser session needs a JSON body, the session's X-CSRF-Token header, or (a console form) its csrf_token field".into(),
                page,
            );
        }
        req = back;
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The authenticated caller, for a handler: its actor goes into the audit
/// log and the consent history.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "not signed in".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/openapi.json and [`ROUTES`] name the same routes with the same
    /// permissions: a route in one and not the other fails here.
    #[test]
    fn the_route_table_and_the_api_description_agree() {
        let doc: serde_json::Value = serde_json::from_str(crate::OPENAPI_JSON).unwrap();
        let mut described = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let declared = op["x-kanki-permission"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no x-kanki-permission"));
                let table = permission(&m, path)
                    .unwrap_or_else(|| panic!("{method} {path} is not in auth::ROUTES"));
                assert_eq!(declared, table.as_str(), "{method} {path}");
                let security = op["security"].as_array().unwrap();
                assert_eq!(
                    security.is_empty(),
                    table == Public,
                    "{method} {path}: security"
                );
                described.push((m.to_string(), path.clone()));
            }
        }
        for (m, p, _) in ROUTES {
            assert!(
                described.contains(&(m.to_string(), p.to_string())),
                "{m} {p} is in auth::ROUTES but not in docs/openapi.json"
            );
        }
        assert_eq!(described.len(), ROUTES.len());
    }

    #[test]
    fn only_health_and_signing_in_are_public() {
        let public: Vec<_> = ROUTES
            .iter()
            .filter(|r| r.2 == Public)
            .map(|r| (r.0, r.1))
            .collect();
        assert_eq!(
            public,
            [
                ("GET", "/healthz"),
                ("GET", "/sign-in"),
                ("POST", "/sign-in"),
                ("GET", "/setup"),
                ("POST", "/setup"),
                ("POST", "/api/v1/session"),
                ("GET", "/static/console.css"),
            ]
        );
        assert_eq!(permission(&Method::HEAD, "/metrics"), Some(Metrics));
        assert_eq!(permission(&Method::PUT, "/api/v1/who"), None);
    }
}
