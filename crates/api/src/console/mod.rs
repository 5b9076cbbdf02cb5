//! The operator console: server-rendered pages at `/` on the operator
//! listener, in Japanese and English, usable with the keyboard alone.
//!
//! * Every page is a route of [`crate::auth::ROUTES`] with the permission
//!   its API twin declares: the same middleware authenticates it (a
//!   browser without a session is sent to `/sign-in`) and refuses what the
//!   operator's roles do not allow. The navigation lists only the pages the
//!   roles allow, read from that same table.
//! * Every action is a form posted with the session's CSRF token to a
//!   console route that calls exactly the service function of the API
//!   route, under the same permission.
//! * Every response carries kanki's page headers ([`kanki_html::headers`]):
//!   a Content-Security-Policy whose only inline script and style are the
//!   response's nonce's, the console's one stylesheet (cached long), no
//!   framing, no sniffing, no caching.
//!
//! To add a page: a module here with its handler (taking [`Console`] and
//! answering [`Console::page`]), its route in [`router`], its row in
//! `ROUTES` and docs/openapi.json (tag `console`), its entry in [`NAV`] if
//! it is a top-level page, and its texts through [`tr`].

mod admin;
pub mod audit;
mod cases;
mod crawl_tree;
mod dashboard;
mod feeds;
mod home;
mod indicators;
pub mod query;
mod subscribers;
mod who;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use kanki_html::{Lang, Nonce, esc};
use kanki_operators::{Permission, Principal};
use serde::Deserialize;

use crate::ApiState;

/// The console's stylesheet, served at [`STYLESHEET`] with a long cache.
const CSS: &str = include_str!("console.css");

/// The sign-in and setup pages' inline style (under their nonce).
pub(crate) const SIGN_IN_STYLE: &str = "body{font-family:system-ui,'Hiragino Sans','Noto Sans CJK JP',sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;line-height:1.6}\
label{display:block}input{font:inherit;width:100%;box-sizing:border-box;padding:.4rem}button{font:inherit;padding:.5rem 1.2rem}\
:focus-visible{outline:3px solid #0b57d0;outline-offset:2px}";

/// Where the stylesheet is served; its query names the content's hash,
/// so a new build's file is fetched anew despite the year-long cache.
pub const STYLESHEET: &str = "/static/console.css";

/// FNV-1a of the stylesheet, at compile time: the cache-busting version.
const CSS_VERSION: u64 = {
    let b = CSS.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
};

/// One text in both languages: `tr(lang, "Cases", "事案")`.
pub fn tr(l: Lang, en: &'static str, ja: &'static str) -> &'static str {
    match l {
        Lang::En => en,
        Lang::Ja => ja,
    }
}

/// A top-level page in the navigation: shown only to an operator whose
/// roles grant the permission [`crate::auth::ROUTES`] declares for its
/// `GET`.
pub struct NavItem {
    pub path: &'static str,
    pub en: &'static str,
    pub ja: &'static str,
    /// The access key (with the browser's modifier: Alt, or Alt+Shift in
    /// Firefox).
    pub key: char,
}

pub const NAV: &[NavItem] = &[
    NavItem {
        path: "/",
        en: "Home",
        ja: "ホーム",
        key: 'h',
    },
    NavItem {
        path: "/dashboard",
        en: "Dashboard",
        ja: "ダッシュボード",
        key: 'b',
    },
    NavItem {
        path: "/cases",
        en: "Cases",
        ja: "事案",
        key: 'c',
    },
    NavItem {
        path: "/indicators",
        en: "Indicators",
        ja: "指標",
        key: 'i',
    },
    NavItem {
        path: "/false-positives",
        en: "False-positive reports",
        ja: "誤検知の報告",
        key: 'f',
    },
    NavItem {
        path: "/who",
        en: "Who held this address",
        ja: "アドレスの利用者",
        key: 'w',
    },
    NavItem {
        path: "/feeds",
        en: "Feeds and sensors",
        ja: "フィードとセンサー",
        key: 'e',
    },
    NavItem {
        path: "/subscribers",
        en: "Subscribers",
        ja: "契約者",
        key: 's',
    },
    NavItem {
        path: "/audit",
        en: "Audit log",
        ja: "監査ログ",
        key: 'a',
    },
    NavItem {
        path: "/admin",
        en: "Administration",
        ja: "管理",
        key: 'm',
    },
];

/// Whether a path is a console page (HTML for a browser) rather than the
/// JSON API: an unauthenticated request is sent to sign in, a refusal is a
/// page.
pub(crate) fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/") || path == "/metrics" || path == "/healthz")
}

/// The console's routes (their permissions are in `ROUTES`).
pub(crate) fn router() -> Router<ApiState> {
    let pages = Router::new()
        .route("/", get(home::page))
        .route("/cases", get(cases::queue))
        .route("/cases/actions", post(cases::bulk))
        .route("/cases/{id}", get(cases::case))
        .route("/who", get(who::form).post(who::ask))
        .route("/indicators", get(indicators::search).post(indicators::add))
        .route("/indicators/{id}", get(indicators::indicator))
        .route("/indicators/{id}/status", post(indicators::set_status))
        .route("/false-positives", get(indicators::false_positives))
        .route("/false-positives/{id}/review", post(indicators::review))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/{file}", get(dashboard::export))
        .route("/feeds", get(feeds::page))
        .route("/feeds/{name}/run", post(feeds::run))
        .route("/subscribers", get(subscribers::list))
        .route("/subscribers/{id}", get(subscribers::subscriber))
        .route("/subscribers/{id}/consent", post(subscribers::consent))
        .route("/audit", get(audit::search))
        .route("/audit/verify", get(audit::verify))
        .route("/admin", get(admin::page))
        .route("/admin/config", get(admin::config))
        .route("/admin/operators/{name}/disabled", post(admin::disabled))
        .route("/admin/operators/{name}/roles", post(admin::roles))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke))
        .route("/language", post(language))
        .route("/sign-out", post(sign_out))
        .layer(middleware::from_fn(headers));
    Router::new()
        .route(STYLESHEET, get(stylesheet))
        .merge(pages)
}

/// Every console response, whatever the handler (a page, a redirect, an
/// error), with the page headers and a fresh nonce for its inline script.
async fn headers(mut req: Request, next: Next) -> Response {
    let n = kanki_html::headers::nonce();
    req.extensions_mut().insert(Nonce(n.clone()));
    let mut r = next.run(req).await;
    kanki_html::headers::apply_policy(
        r.headers_mut(),
        &kanki_html::headers::policy_with_own_files(&n),
    );
    r
}

async fn stylesheet() -> Response {
    let mut r = (StatusCode::OK, CSS).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A console request: who asks, in which language, and the response's
/// nonce. A handler takes it as an extractor.
pub struct Console {
    pub who: Principal,
    pub lang: Lang,
    /// The installation's subscriber pseudonyms (the API's).
    pseudonyms: std::sync::Arc<kanki_operators::pseudonym::Pseudonyms>,
    nonce: String,
    /// The request's path and query, for the language switch to return to.
    here: String,
}

impl FromRequestParts<ApiState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, Response> {
        let Some(who) = parts.extensions.get::<Principal>().cloned() else {
            return Err(Redirect::to("/sign-in").into_response());
        };
        let nonce = parts
            .extensions
            .get::<Nonce>()
            .map_or_else(kanki_html::headers::nonce, |n| n.0.clone());
        let (k, id) = (st.kanki.clone(), who.operator_id);
        let stored = tokio::task::spawn_blocking(move || k.store.operators().console_language(id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let lang = stored
            .as_deref()
            .and_then(Lang::parse)
            .or_else(|| accepted(&parts.headers))
            .unwrap_or(Lang::Ja);
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        Ok(Console {
            who,
            lang,
            pseudonyms: st.pseudonyms.clone(),
            nonce,
            here,
        })
    }
}

fn accepted(h: &HeaderMap) -> Option<Lang> {
    h.get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Lang::negotiate)
}

impl Console {
    /// Whether the operator's roles grant `p`.
    pub fn may(&self, p: Permission) -> bool {
        self.who.may(p)
    }

    /// Whether the operator may call `method path` (a route of `ROUTES`).
    pub fn may_call(&self, method: &Method, path: &str) -> bool {
        crate::auth::permission(method, path).is_some_and(|p| self.may(p))
    }

    /// A subscriber as this operator may see them: the identifier to a
    /// role allowed subscriber identities, else the pseudonym the API
    /// gives (the same subscriber, the same pseudonym, so an analyst can
    /// follow one across cases without knowing who it is). The one place
    /// the console decides this.
    pub fn subscriber(&self, id: &str) -> String {
        if self.may(Permission::ReadSubscribers) {
            format!("<span class=\"subscriber\">{}</span>", esc(id))
        } else {
            format!(
                "<span class=\"subscriber withheld\" title=\"{}\">{}</span>",
                self.tr(
                    "A pseudonym: your roles do not include subscriber identities",
                    "仮名: 契約者情報の権限がありません"
                ),
                esc(&self.pseudonyms.of(id))
            )
        }
    }

    pub fn tr(&self, en: &'static str, ja: &'static str) -> &'static str {
        tr(self.lang, en, ja)
    }

    /// The hidden field every form that changes something carries: the
    /// session's CSRF token (none for a request made with an API token).
    pub fn csrf_field(&self) -> String {
        self.who.csrf.as_deref().map_or(String::new(), |t| {
            format!(
                "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
                esc(t)
            )
        })
    }

    /// A page: the layout (skip link, navigation, language switch,
    /// sign-out) around `body`, with status 200.
    pub fn page(&self, title: &str, body: &str) -> Response {
        self.page_with(StatusCode::OK, title, body)
    }

    pub fn page_with(&self, status: StatusCode, title: &str, body: &str) -> Response {
        self.render(status, title, body, None)
    }

    /// A page that reloads itself every `seconds` (while something it
    /// shows is under way).
    pub fn page_reloading(&self, title: &str, body: &str, seconds: u32) -> Response {
        self.render(StatusCode::OK, title, body, Some((seconds, "")))
    }

    /// A page that goes to `to` (on this site) after `seconds`: a check
    /// under way followed until it ends.
    pub fn page_reloading_to(&self, title: &str, body: &str, seconds: u32, to: &str) -> Response {
        self.render(StatusCode::OK, title, body, Some((seconds, local_path(to))))
    }

    /// An inline script under this response's nonce.
    pub fn script(&self, js: &str) -> String {
        kanki_html::script(&self.nonce, js)
    }

    /// `reload`: after how many seconds the page loads again, and where
    /// (empty: itself).
    fn render(
        &self,
        status: StatusCode,
        title: &str,
        body: &str,
        reload: Option<(u32, &str)>,
    ) -> Response {
        let l = self.lang;
        let mut nav = String::new();
        for item in NAV {
            if !self.may_call(&Method::GET, item.path) {
                continue;
            }
            let current = if self.here.split('?').next() == Some(item.path)
                || (item.path != "/" && self.here.starts_with(&format!("{}/", item.path)))
            {
                " aria-current=\"page\""
            } else {
                ""
            };
            nav.push_str(&format!(
                "<li><a href=\"{}\" accesskey=\"{}\"{current}>{}</a></li>",
                item.path,
                item.key,
                tr(l, item.en, item.ja)
            ));
        }
        let csrf = self.csrf_field();
        let mut head =
            format!("<link rel=\"stylesheet\" href=\"{STYLESHEET}?v={CSS_VERSION:016x}\">");
        match reload {
            Some((s, "")) => {
                head.push_str(&format!("<meta http-equiv=\"refresh\" content=\"{s}\">"));
            }
            Some((s, to)) => head.push_str(&format!(
                "<meta http-equiv=\"refresh\" content=\"{s}; url={}\">",
                esc(to)
            )),
            None => {}
        }
        let body = format!(
            "<a class=\"skip\" href=\"#main\">{skip}</a>\
<header class=\"bar\"><span class=\"brand\">kanki</span>\
<nav aria-label=\"{navlabel}\"><ul>{nav}</ul></nav>\
<div class=\"me\"><span id=\"operator\">{who}</span>\
<form method=\"post\" action=\"/language\">{csrf}<input type=\"hidden\" name=\"lang\" value=\"{other}\">\
<input type=\"hidden\" name=\"back\" value=\"{back}\"><button id=\"lang-switch\" lang=\"{other}\" accesskey=\"l\">{other_name}</button></form>\
<form method=\"post\" action=\"/sign-out\">{csrf}<button id=\"sign-out\">{signout}</button></form></div></header>\
<main id=\"main\" tabindex=\"-1\"><h1>{title}</h1>{body}</main>{script}",
            skip = tr(l, "Skip to the content", "本文へ移動"),
            navlabel = tr(l, "Console", "コンソール"),
            who = esc(&format!("{} ({})", self.who.actor(), self.who.roles)),
            other = l.other().code(),
            other_name = l.other_name(),
            back = esc(&self.here),
            signout = tr(l, "Sign out", "サインアウト"),
            title = esc(title),
            script = kanki_html::script(&self.nonce, KEYS_JS),
        );
        let html = kanki_html::Document {
            lang: l,
            title: &format!("{title} · kanki"),
            head: &head,
            body: &body,
        }
        .render();
        (status, Html(html)).into_response()
    }

    /// The 400 page for a query string out of range: each problem named,
    /// in the operator's language, with a link `back` to the page.
    pub fn bad_query(&self, title: &str, problems: &[query::Problem], back: &str) -> Response {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| p.text(self.lang).to_string())
            .collect();
        self.message(StatusCode::BAD_REQUEST, title, &lines, back)
    }

    /// A clear message on a page of its own (an out-of-range query, a
    /// refusal), with a link back.
    pub fn message(
        &self,
        status: StatusCode,
        title: &str,
        lines: &[String],
        back: &str,
    ) -> Response {
        let mut body = String::from("<div class=\"message\" role=\"alert\"><ul>");
        for m in lines {
            body.push_str(&format!("<li>{}</li>", esc(m)));
        }
        body.push_str(&format!(
            "</ul><p><a href=\"{}\">{}</a></p></div>",
            esc(back),
            self.tr("Back", "戻る")
        ));
        self.page_with(status, title, &body)
    }
}

/// Records that `who` viewed `what` `id` (naming `subscriber`) in the
/// console, before it is shown, as the API's reads do.
pub(crate) fn record_console_view(
    k: &kanki_service::Kanki,
    who: &Principal,
    what: &str,
    id: &str,
    subscriber: Option<&str>,
) -> Result<(), kanki_store::StoreError> {
    let purpose = crate::ViewParams {
        purpose: Some("viewed in the console".into()),
    };
    crate::record_view(k, who, what, id, subscriber, &purpose)
        .map_err(|e| kanki_store::StoreError::Backend(e.1))
}

/// The form field carrying the session's CSRF token on a console form.
pub const CSRF_FIELD: &str = "csrf_token";

/// `/` focuses the page's search field (marked `data-search`), unless
/// typing in a field already; Escape leaves the field.
const KEYS_JS: &str = "document.addEventListener('keydown',function(e){var t=e.target,f=t&&(t.tagName==='INPUT'||t.tagName==='TEXTAREA'||t.tagName==='SELECT');if(e.key==='/'&&!f&&!e.ctrlKey&&!e.metaKey&&!e.altKey){var s=document.querySelector('[data-search]');if(s){e.preventDefault();s.focus()}}else if(e.key==='Escape'&&f){t.blur()}});";

/// What an operator who lacks a page's permission sees instead (a page,
/// not the API's JSON).
pub(crate) fn refusal(status: StatusCode, message: &str) -> Response {
    let (title, lead) = if status == StatusCode::FORBIDDEN {
        (
            "Not allowed · 権限がありません",
            "Your roles do not allow this page or action. · このページまたは操作の権限がありません。",
        )
    } else {
        (
            "Refused · 拒否されました",
            "This request was refused. · この要求は拒否されました。",
        )
    };
    let nonce = kanki_html::headers::nonce();
    let head = kanki_html::style(&nonce, SIGN_IN_STYLE);
    let body = format!(
        "<main id=\"main\"><h1>{title}</h1><p role=\"alert\">{lead}</p><p class=\"detail\">{}</p><p><a href=\"/\">kanki</a></p></main>",
        esc(message)
    );
    let html = kanki_html::Document {
        lang: Lang::En,
        title,
        head: &head,
        body: &body,
    }
    .render();
    let mut r = (status, Html(html)).into_response();
    kanki_html::headers::apply(r.headers_mut(), &nonce);
    r
}

#[derive(Deserialize)]
struct LanguageForm {
    lang: String,
    #[serde(default)]
    back: String,
}

/// `POST /language`: remembers the operator's language and returns to
/// the page.
async fn language(State(st): State<ApiState>, c: Console, Form(f): Form<LanguageForm>) -> Response {
    let Some(lang) = Lang::parse(&f.lang) else {
        return c.message(
            StatusCode::BAD_REQUEST,
            c.tr("Language", "言語"),
            &[format!("unknown language {:?}: ja or en", f.lang)],
            "/",
        );
    };
    let (k, id) = (st.kanki.clone(), c.who.operator_id);
    let saved = tokio::task::spawn_blocking(move || {
        k.store.operators().set_console_language(id, lang.code())
    })
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::error!("saving an operator's console language failed");
    }
    Redirect::to(local_path(&f.back)).into_response()
}

/// A path on this site to return to: only one that starts with a single
/// `/` (never another site's address).
fn local_path(back: &str) -> &str {
    if back.starts_with('/')
        && !back.starts_with("//")
        && !back.contains('\\')
        && !back.chars().any(char::is_control)
    {
        back
    } else {
        "/"
    }
}

/// `POST /sign-out`: the session ends and the browser goes to sign-in.
async fn sign_out(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    match crate::signin::end_session(&st, &headers).await {
        Ok(()) => {
            let mut r = Redirect::to("/sign-in").into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, crate::signin::cleared_cookie());
            r
        }
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_switch_returns_only_to_this_site() {
        assert_eq!(local_path("/cases?state=new"), "/cases?state=new");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
        assert_eq!(local_path(""), "/");
    }

    #[test]
    fn every_navigation_page_is_a_declared_route() {
        for item in NAV {
            assert!(
                crate::auth::permission(&Method::GET, item.path).is_some(),
                "{} is in the navigation but not in auth::ROUTES",
                item.path
            );
        }
    }
}
