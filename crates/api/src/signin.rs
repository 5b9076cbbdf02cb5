//! Browser sign-in and sign-out, and the first run's setup page.
//!
//! A session lives in a cookie that is HttpOnly and SameSite=Strict (and
//! Secure when the API is served over TLS); it ends after
//! `operators.session_idle` unused or `operators.session_absolute` after
//! sign-in, or at sign-out. The pages are plain server-rendered HTML in
//! kanki's page shell, under its strict Content-Security-Policy (only the
//! response's nonce's style, forms only to this origin), escaped
//! throughout. A signed-in browser goes to the console at `/`.

use std::net::IpAddr;
use std::sync::Mutex;

use axum::Form;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use kanki_operators::ldap::DirectoryError;
use kanki_operators::secret::{self, SESSION_COOKIE};
use kanki_operators::{AccountKind, Attempt, Operator, Role, SignInError, StorageError, signin};
use serde::Deserialize;
use serde_json::json;

use kanki_html::{esc as escape, same_origin};

use crate::auth::{Caller, source};
use crate::{ApiError, ApiState, Body_, metrics};

/// Largest sign-in or setup form accepted (413 beyond).
pub const FORM_LIMIT: usize = 16 * 1024;

/// The first run's one-time setup code (its hash), while no operator
/// exists.
#[derive(Default)]
pub struct Setup(Mutex<Option<[u8; 32]>>);

impl Setup {
    /// Makes the code to print on the terminal.
    pub fn begin(&self) -> String {
        let code = secret::new_csrf_token();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(secret::secret_hash(code.as_bytes()));
        code
    }

    fn matches(&self, code: &str) -> bool {
        let h = secret::secret_hash(code.as_bytes());
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|want| secret::same_hash(&want, &h))
    }

    fn pending(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn done(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A sign-in or setup page: kanki's page shell and headers
/// ([`kanki_html`]), in English (the operator's language is known only
/// once signed in).
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let nonce = kanki_html::headers::nonce();
    let head = kanki_html::style(&nonce, crate::console::SIGN_IN_STYLE);
    let body = format!(
        "<main id=\"main\"><h1>{}</h1>\n{body}\n</main>",
        escape(title)
    );
    let html = kanki_html::Document {
        lang: kanki_html::Lang::En,
        title: &format!("{title} · kanki"),
        head: &head,
        body: &body,
    }
    .render();
    let mut r = (status, Html(html)).into_response();
    kanki_html::headers::apply(r.headers_mut(), &nonce);
    r
}

/// The page after setup, for a setup link used again.
fn setup_done() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Setup",
        "<p>Setup is done: sign in at <a href=\"/sign-in\">/sign-in</a>.</p>",
    )
}

/// The page refusing a form posted from another site.
fn cross_site(st: &ApiState, title: &str) -> Response {
    crate::auth::count_forbidden(st, "origin");
    page(
        StatusCode::FORBIDDEN,
        title,
        "<p role=\"alert\">A form posted from another site is refused.</p>",
    )
}

fn sign_in_form(message: Option<&str>) -> String {
    let msg = message.map_or_else(String::new, |m| {
        format!("<p role=\"alert\">{}</p>\n", escape(m))
    });
    format!(
        "{msg}<form method=\"post\" action=\"/sign-in\">\n<p><label>Name <input name=\"name\" autocomplete=\"username\" required></label></p>\n<p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\n<p><label>TOTP code <input name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\"></label></p>\n<p><button>Sign in</button></p>\n</form>"
    )
}

/// `GET /sign-in`.
pub(crate) async fn sign_in_page() -> Response {
    page(StatusCode::OK, "Sign in", &sign_in_form(None))
}

fn session_cookie(st: &ApiState, value: &str) -> HeaderValue {
    let max_age = st.kanki.config.operators.session_absolute.0.as_secs();
    let secure = if st.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("a cookie of base64url characters")
}

fn count_failure(st: &ApiState, e: &SignInError) {
    st.metrics
        .sign_in_failures
        .get_or_create(&metrics::ReasonLabels {
            reason: e.reason().to_string(),
        })
        .inc();
}

/// Checks an attempt and starts a session; returns the operator, the
/// cookie and the session's CSRF token. A local password is checked on the
/// blocking pool (argon2id is slow on purpose); a directory operator's by
/// a bind to the directory, under the same rate limits.
async fn attempt(
    st: &ApiState,
    name: String,
    password: String,
    totp: Option<String>,
    from: IpAddr,
) -> Result<(Operator, String, String), SignInError> {
    let result: Result<(Operator, String, String), SignInError> = async {
        let directory = match &st.ldap {
            Some(d) => {
                let (k, n) = (st.kanki.clone(), name.clone());
                let by_directory = tokio::task::spawn_blocking(move || {
                    signin::by_directory(k.store.operators(), &n)
                })
                .await
                .unwrap_or_else(|e| Err(StorageError::Backend(e.to_string())))?;
                by_directory.then(|| d.clone())
            }
            None => None,
        };
        // The directory's answer, asked under the rate limits (a guessing run
        // does not reach the directory).
        let answer = match directory {
            None => None,
            Some(d) => {
                if !st.limiter.allowed(&name, from) {
                    return Err(SignInError::RateLimited);
                }
                let groups = d.groups_of(&name, &password).await;
                if let Err(DirectoryError::Unavailable(e)) = &groups {
                    tracing::error!(error = %e, "the LDAP directory could not be asked");
                }
                Some((d, groups))
            }
        };
        let (k, auth, limiter) = (st.kanki.clone(), st.auth.clone(), st.limiter.clone());
        tokio::task::spawn_blocking(move || {
            let store = k.store.operators();
            let now = Utc::now();
            let a = Attempt {
                name: &name,
                password: &password,
                totp: totp.as_deref(),
                source: from,
            };
            let op = match answer {
                None => signin::sign_in_local(store, &limiter, &a, now)?,
                Some((d, groups)) => {
                    signin::sign_in_directory(store, &limiter, &d, &a, groups, now)?
                }
            };
            let (cookie, session) = auth.start_session(store, &op, now)?;
            Ok((op, cookie, session.csrf))
        })
        .await
        .unwrap_or_else(|e| Err(SignInError::Storage(StorageError::Backend(e.to_string()))))
    }
    .await;
    if let Err(e) = &result {
        count_failure(st, e);
    }
    result
}

fn status_of(e: &SignInError) -> StatusCode {
    match e {
        SignInError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        SignInError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        SignInError::DirectoryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        SignInError::NoRole => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    }
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    name: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

/// `POST /sign-in`: the page's form. On success the session cookie is
/// set and the browser is sent to the console at `/`.
pub(crate) async fn sign_in_form_post(State(st): State<ApiState>, req: Request) -> Response {
    if !same_origin(req.headers()) {
        return cross_site(&st, "Sign in");
    }
    let from = source(req.extensions());
    let form = match Form::<SignInForm>::from_request(req, &st).await {
        Ok(Form(f)) => f,
        Err(e) => {
            let status = e.status();
            return page(
                status,
                "Sign in",
                &sign_in_form(Some("The form was not understood.")),
            );
        }
    };
    match attempt(&st, form.name, form.password, form.totp, from).await {
        Ok((_, cookie, _)) => {
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&st, &cookie));
            r
        }
        Err(e) => page(
            status_of(&e),
            "Sign in",
            &sign_in_form(Some(&e.to_string())),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInBody {
    name: String,
    password: String,
    totp: Option<String>,
}

/// `POST /api/v1/session`: sign-in for a script or a console, as JSON.
pub(crate) async fn sign_in_json(
    State(st): State<ApiState>,
    headers: HeaderMap,
    crate::listen::Client(from): crate::listen::Client,
    Body_(b): Body_<SignInBody>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        crate::auth::count_forbidden(&st, "origin");
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "a sign-in from another site is refused".into(),
        ));
    }
    match attempt(&st, b.name, b.password, b.totp, from).await {
        Ok((op, cookie, csrf)) => {
            let mut r = axum::Json(json!({
                "operator": op.name,
                "roles": op.roles,
                "csrf_token": csrf,
            }))
            .into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&st, &cookie));
            Ok(r)
        }
        Err(e) => Err(ApiError(status_of(&e), e.to_string())),
    }
}

/// `GET /api/v1/session`: who is signed in, and the session's CSRF token.
pub(crate) async fn whoami(Caller(p): Caller) -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "operator": p.operator,
        "token": p.token,
        "roles": p.roles,
        "permissions": p.permissions.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "csrf_token": p.csrf,
    }))
}

/// Ends the session a request's cookie names, if any: a copy of the
/// cookie no longer works either.
pub(crate) async fn end_session(st: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let hash = headers
        .get(header::COOKIE)
        .and_then(|v| secret::parse_session_cookie(v.as_bytes()).ok().flatten());
    if let Some(hash) = hash {
        let (k, auth) = (st.kanki.clone(), st.auth.clone());
        tokio::task::spawn_blocking(move || auth.end_session(k.store.operators(), &hash))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok(())
}

/// The `Set-Cookie` that clears the session cookie.
pub(crate) fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("kanki_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// `DELETE /api/v1/session`: sign-out. The cookie is cleared and the
/// session ended.
pub(crate) async fn sign_out(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    end_session(&st, &headers).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, cleared_cookie());
    Ok(r)
}

#[derive(Deserialize)]
pub(crate) struct SetupQuery {
    code: Option<String>,
}

/// `GET /setup?code=...`: the first administrator's form, while no
/// operator exists and with the code `kanki serve` printed.
pub(crate) async fn setup_page(
    State(st): State<ApiState>,
    Query(q): Query<SetupQuery>,
) -> Response {
    let code = q.code.unwrap_or_default();
    if !st.setup.pending() {
        return setup_done();
    }
    if !st.setup.matches(&code) {
        return page(
            StatusCode::FORBIDDEN,
            "Setup",
            "<p role=\"alert\">Use the link <code>kanki serve</code> printed on its terminal.</p>",
        );
    }
    page(
        StatusCode::OK,
        "Create the first administrator",
        &format!(
            "<form method=\"post\" action=\"/setup\">\n<input type=\"hidden\" name=\"code\" value=\"{}\">\n<p><label>Name <input name=\"name\" autocomplete=\"username\" required></label></p>\n<p><label>Password (12 characters or more) <input name=\"password\" type=\"password\" autocomplete=\"new-password\" minlength=\"12\" required></label></p>\n<p><button>Create</button></p>\n</form>",
            escape(&code)
        ),
    )
}

#[derive(Deserialize)]
pub(crate) struct SetupForm {
    code: String,
    name: String,
    password: String,
}

/// `POST /setup`: creates the first administrator and signs them in; the
/// code works once.
pub(crate) async fn setup_post(State(st): State<ApiState>, req: Request) -> Response {
    if !same_origin(req.headers()) {
        return cross_site(&st, "Setup");
    }
    let form = match Form::<SetupForm>::from_request(req, &st).await {
        Ok(Form(f)) => f,
        Err(e) => {
            return page(
                e.status(),
                "Setup",
                "<p role=\"alert\">The form was not understood.</p>",
            );
        }
    };
    if !st.setup.pending() {
        return setup_done();
    }
    if !st.setup.matches(&form.code) {
        return page(
            StatusCode::FORBIDDEN,
            "Setup",
            "<p role=\"alert\">This setup link is not valid (any more).</p>",
        );
    }
    let (k, auth) = (st.kanki.clone(), st.auth.clone());
    let made = tokio::task::spawn_blocking(move || {
        let store = k.store.operators();
        if !store.operators().map_err(|e| e.to_string())?.is_empty() {
            return Err("an operator exists already".to_string());
        }
        let now = Utc::now();
        let op = kanki_operators::accounts::add_operator(
            store,
            &form.name,
            AccountKind::Local,
            [Role::Administrator].into_iter().collect(),
            Some(&form.password),
            now,
        )
        .map_err(|e| e.to_string())?;
        let (cookie, _) = auth
            .start_session(store, &op, now)
            .map_err(|e| e.to_string())?;
        Ok(cookie)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match made {
        Ok(cookie) => {
            st.setup.done();
            tracing::info!("the first administrator was created through the setup page");
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&st, &cookie));
            r
        }
        Err(m) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Create the first administrator",
            &format!("<p role=\"alert\">{}</p>", escape(&m)),
        ),
    }
}
