//! The countermeasure site (対策サイト): a page per malware family with the
//! configured guidance and tool links, in Japanese and English, and the
//! one "I have cleaned my machine" of kanki: it takes a notice reference
//! (and nothing secret: the site never asks for a credential).
//!
//! Acknowledging a notice moves its case on and, when the removal loop put
//! the subscriber in the walled garden for that case, lets them out at
//! once. The walled garden's page posts its "I have cleaned my machine" to
//! this same route; a subscriber an operator put inside, with no
//! reference, gets a leave request recorded for the operator instead.
//!
//! `verify` answers the other question a notice raises: is it really
//! from the ISP? A subscriber types the site's address and the notice's
//! reference, and is told when and how that notice was sent, or that no
//! notice of ours has that reference (then the message is a fake).
//!
//! An axum [`Router`]: `kanki serve` mounts it under `/countermeasures` of
//! the warning page (under every name, so reachable from the garden) and
//! of its own listener ([`spawn`], `[countermeasure_site] listen`), never
//! of the operator API's: the API does not face subscribers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Extension, Form, Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use kanki_config::CountermeasureConfig;
use kanki_html::{Lang, Nonce, esc, same_origin};
use kanki_service::front::Garden;
use kanki_service::{Kanki, ServiceError};
use kanki_store::{CaseChange, Channel};
use serde::Deserialize;

use crate::{case, escalation};

/// The subscriber in the walled garden behind a client address, if any.
/// Only a server that sees subscribers' own addresses (the warning page)
/// can tell.
pub type GardenedClient = Arc<dyn Fn(IpAddr) -> Option<String> + Send + Sync>;

/// Where `kanki serve` mounts the site (on the warning page and its own
/// listener alike): its links are absolute under it, as its index has no
/// trailing slash to be relative to.
const SITE: &str = kanki_warning::COUNTERMEASURES;

#[derive(Clone)]
struct Site {
    kanki: Arc<Kanki>,
    garden: Arc<Garden>,
    gardened: Option<GardenedClient>,
}

/// The site's routes, relative to where it is mounted. `garden` is the
/// walled garden the DNS front reads, reloaded at once when someone leaves.
pub fn router(kanki: Arc<Kanki>, garden: Arc<Garden>, gardened: Option<GardenedClient>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ack", get(ack_form).post(ack))
        .route("/verify", get(verify))
        .route("/{family}", get(family_page))
        .with_state(Site {
            kanki,
            garden,
            gardened,
        })
        // Every response of the site, a page or an error, with the warning
        // page's headers (CSP, no framing, no sniffing, no caching).
        .layer(axum::middleware::from_fn(kanki_html::headers::layer))
}

/// Binds the site's own listener (so that a taken port stops `kanki
/// serve` at start) and serves `site` there under `/countermeasures`, with
/// `/` and `/countermeasures/` leading to its index.
pub async fn spawn(listen: SocketAddr, site: Router) -> std::io::Result<()> {
    use axum::http::Uri;
    use axum::response::Redirect;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {listen} (countermeasure_site.listen): {e}"),
        )
    })?;
    let index = get(|uri: Uri| async move {
        let q = uri.query().map_or(String::new(), |q| format!("?{q}"));
        Redirect::permanent(&format!("{SITE}{q}"))
    });
    // The redirects get the page headers here; the site's own responses
    // get them from `site` (once: a second layer would replace the CSP
    // nonce its pages were written with).
    let app = Router::new()
        .route("/", index.clone())
        .route("/countermeasures/", index)
        .layer(axum::middleware::from_fn(kanki_html::headers::layer))
        .nest(SITE, site)
        .into_make_service_with_connect_info::<SocketAddr>();
    tracing::info!(%listen, "countermeasure site serving");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the countermeasure site stopped");
        }
    });
    Ok(())
}

/// The configured countermeasure page of `family`, if there is one. Only
/// these are ever linked: a family name comes from reports (anyone's
/// text), and a link made of it could point anywhere.
fn configured<'a>(k: &'a Kanki, family: &str) -> Option<&'a CountermeasureConfig> {
    k.config
        .countermeasures
        .iter()
        .find(|c| c.family.eq_ignore_ascii_case(family))
}

/// The longest family name shown, in characters.
const SHOWN_NAME_MAX: usize = 64;

/// A family name from a report as it may be shown (on the site and in a
/// notice): letters, digits, `-`, `_`, `.`, `/` and spaces, every other
/// character as `_`, at most [`SHOWN_NAME_MAX`] characters. A name is
/// data, never markup or a link, whatever the report put in it.
pub fn shown_name(name: &str) -> String {
    name.chars()
        .take(SHOWN_NAME_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct LangParam {
    lang: Option<String>,
    reference: Option<String>,
}

/// `?lang=` first, then the browser's Accept-Language, Japanese by default.
fn lang(p: &LangParam, h: &HeaderMap) -> Lang {
    p.lang
        .as_deref()
        .and_then(Lang::parse)
        .or_else(|| {
            h.get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::negotiate)
        })
        .unwrap_or(Lang::Ja)
}

/// A page of the site. Its one style carries the response's CSP nonce
/// (from [`kanki_html::headers::layer`]).
fn page(l: Lang, nonce: &Nonce, title: &str, body: &str) -> Html<String> {
    let head = kanki_html::style(
        &nonce.0,
        "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em;line-height:1.6}input{font-size:1.2em}.lang{text-align:right}",
    );
    let body = format!(
        "<p class=\"lang\"><a href=\"?lang={other}\">{other_name}</a></p><h1>{t}</h1>{body}",
        other = l.other().code(),
        other_name = l.other_name(),
        t = esc(title),
    );
    Html(
        kanki_html::Document {
            lang: l,
            title,
            head: &head,
            body: &body,
        }
        .render(),
    )
}

fn general(l: Lang) -> (&'static str, &'static str) {
    match l {
        Lang::Ja => (
            "マルウェア感染の対策",
            "お使いのパソコンのセキュリティソフトを最新にして全体をスキャンしてください。ルータやカメラなどの機器は、電源を入れ直し、管理パスワードを初期設定から変更し、ファームウェアを更新してください。",
        ),
        Lang::En => (
            "Cleaning an infected device",
            "Update your computer's security software and run a full scan. For routers, cameras and similar devices: restart them, change their administrator password from the default, and update their firmware.",
        ),
    }
}

fn ack_link(l: Lang) -> String {
    match l {
        Lang::Ja => format!(
            "<p>対策が終わったら、<a href=\"{SITE}/ack?lang=ja\">お知らせ番号を入力してお知らせください</a>。</p>"
        ),
        Lang::En => format!(
            "<p>When you have cleaned your device, <a href=\"{SITE}/ack?lang=en\">tell us with your notice reference</a>.</p>"
        ),
    }
}

const NO_CREDENTIALS_JA: &str =
    "<p><small>このサイトがパスワードやカード番号をお尋ねすることはありません。</small></p>";
const NO_CREDENTIALS_EN: &str =
    "<p><small>This site never asks for a password or a card number.</small></p>";

async fn index(
    State(Site { kanki: k, .. }): State<Site>,
    Extension(nonce): Extension<Nonce>,
    Query(p): Query<LangParam>,
    h: HeaderMap,
) -> Html<String> {
    let l = lang(&p, &h);
    let (title, text) = general(l);
    let mut body = format!("<p>{}</p><ul>", esc(text));
    for c in &k.config.countermeasures {
        let t = if l == Lang::Ja {
            &c.title_ja
        } else {
            &c.title_en
        };
        body.push_str(&format!(
            "<li><a href=\"{SITE}/{}\">{}</a></li>",
            esc(&c.family),
            esc(t)
        ));
    }
    body.push_str("</ul>");
    body.push_str(&ack_link(l));
    body.push_str(&match l {
        Lang::Ja => format!("<p><a href=\"{SITE}/verify?lang=ja\">当社からのお知らせか確かめる</a></p>"),
        Lang::En => format!(
            "<p><a href=\"{SITE}/verify?lang=en\">Is a notice really from us? Check its reference</a></p>"
        ),
    });
    page(l, &nonce, title, &body)
}

async fn family_page(
    State(Site { kanki: k, .. }): State<Site>,
    Extension(nonce): Extension<Nonce>,
    Path(family): Path<String>,
    Query(p): Query<LangParam>,
    h: HeaderMap,
) -> Html<String> {
    let l = lang(&p, &h);
    let (title, text, tools) = match configured(&k, &family) {
        Some(c) if l == Lang::Ja => (c.title_ja.clone(), c.guidance_ja.clone(), &c.tools[..]),
        Some(c) => (c.title_en.clone(), c.guidance_en.clone(), &c.tools[..]),
        None => {
            let (t, g) = general(l);
            let t = format!("{t} ({})", shown_name(&family));
            (t, g.to_string(), &[][..])
        }
    };
    let mut body = format!("<p>{}</p>", esc(&text).replace('\n', "<br>"));
    if !tools.is_empty() {
        body.push_str("<ul>");
        for t in tools {
            body.push_str(&format!(
                "<li><a href=\"{}\">{}</a></li>",
                esc(&t.url),
                esc(&t.name)
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str(&ack_link(l));
    body.push_str(if l == Lang::Ja {
        NO_CREDENTIALS_JA
    } else {
        NO_CREDENTIALS_EN
    });
    page(l, &nonce, &title, &body)
}

async fn ack_form(
    Extension(nonce): Extension<Nonce>,
    Query(p): Query<LangParam>,
    h: HeaderMap,
) -> Html<String> {
    let l = lang(&p, &h);
    let reference = esc(p.reference.as_deref().unwrap_or(""));
    let (title, label, note_label, button, note) = match l {
        Lang::Ja => (
            "対策が終わったことのお知らせ",
            "お知らせに書かれたお知らせ番号",
            "行った対策（任意）",
            "対策が終わりました",
            NO_CREDENTIALS_JA,
        ),
        Lang::En => (
            "I have cleaned my machine",
            "The notice reference from your notice",
            "What you did (optional)",
            "I have cleaned my machine",
            NO_CREDENTIALS_EN,
        ),
    };
    let lang = if l == Lang::Ja { "ja" } else { "en" };
    page(
        l,
        &nonce,
        title,
        &format!(
            "<form id=\"cleaned\" method=\"post\" action=\"ack?lang={lang}\"><p><label>{label}<br><input id=\"reference\" name=\"reference\" value=\"{reference}\" autocomplete=\"off\" required></label></p>\
             <p><label>{note_label}<br><textarea id=\"cleaned-note\" name=\"note\" rows=\"2\" maxlength=\"{NOTE_MAX}\"></textarea></label></p>\
             <p><button id=\"send-cleaned\" type=\"submit\">{button}</button></p></form>{note}"
        ),
    )
}

/// What the site can say of a notice reference: nothing about the
/// subscriber, only what the notice itself says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub reference: String,
    pub sent_on: chrono::NaiveDate,
    pub channel: Channel,
    /// The family (or class) the notice is about.
    pub threat: String,
}

/// A notice reference as a subscriber typed it, as stored: spaces around
/// it and lower case are forgiven.
fn typed_reference(typed: &str) -> String {
    typed.trim().to_ascii_uppercase()
}

/// Looks a notice reference up (as a subscriber typed it); `None` when no
/// notice has it.
pub fn verify_reference(k: &Kanki, reference: &str) -> Result<Option<Verified>, ServiceError> {
    let reference = typed_reference(reference);
    if reference.is_empty() {
        return Ok(None);
    }
    let r = k.store.removal();
    let Some(n) = r.notice_by_reference(&reference)? else {
        return Ok(None);
    };
    let threat = r.get_case(n.case_id)?.map(|c| c.threat).unwrap_or_default();
    Ok(Some(Verified {
        sent_on: n.sent_at.unwrap_or(n.created_at).date_naive(),
        reference: n.reference,
        channel: n.channel,
        threat,
    }))
}

async fn verify(
    State(Site { kanki: k, .. }): State<Site>,
    Extension(nonce): Extension<Nonce>,
    Query(p): Query<LangParam>,
    h: HeaderMap,
) -> Response {
    let l = lang(&p, &h);
    let ja = l == Lang::Ja;
    let typed = p.reference.clone().unwrap_or_default();
    let form = |value: &str| {
        let (label, button) = if ja {
            ("お知らせに書かれたお知らせ番号", "確かめる")
        } else {
            ("The notice reference from your notice", "Check")
        };
        format!(
            "<form id=\"verify\" method=\"get\" action=\"verify\"><input type=\"hidden\" name=\"lang\" value=\"{}\">\
             <p><label>{label}<br><input id=\"reference\" name=\"reference\" value=\"{}\" autocomplete=\"off\" required></label></p>\
             <p><button id=\"send-verify\" type=\"submit\">{button}</button></p></form>",
            if ja { "ja" } else { "en" },
            esc(value)
        )
    };
    let no_credentials = if ja {
        NO_CREDENTIALS_JA
    } else {
        NO_CREDENTIALS_EN
    };
    if typed.trim().is_empty() {
        let (title, text) = if ja {
            (
                "当社からのお知らせか確かめる",
                "当社からのお知らせを名乗るメールや手紙が本物か、お知らせ番号で確かめられます。このページのアドレスはご自身で入力してください（届いたメールのリンクからではなく）。",
            )
        } else {
            (
                "Is this notice from us?",
                "Check a mail or letter that says it is our notice by its reference. Type this page's address yourself rather than following a link in the message.",
            )
        };
        let body = format!("<p>{text}</p>{}{no_credentials}", form(""));
        return page(l, &nonce, title, &body).into_response();
    }
    let k2 = k.clone();
    let looked = tokio::task::spawn_blocking(move || verify_reference(&k2, &typed))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let typed = p.reference.as_deref().unwrap_or_default().trim();
    match looked {
        Ok(Some(v)) => {
            let page_of = configured(&k, &v.threat);
            let about = page_of.map_or_else(
                || shown_name(&v.threat),
                |c| if ja { &c.title_ja } else { &c.title_en }.clone(),
            );
            let how = match (v.channel, ja) {
                (Channel::Mail, true) => "メール",
                (Channel::Letter, true) => "郵便",
                (Channel::Garden, true) => "接続制限中のお知らせページ",
                (Channel::Mail, false) => "e-mail",
                (Channel::Letter, false) => "post",
                (Channel::Garden, false) => "the page shown while your connection was restricted",
            };
            let (title, text) = if ja {
                (
                    "当社からのお知らせです",
                    format!(
                        "お知らせ番号 {} は、当社が {} に{}でお送りしたお知らせのものです（内容: {}）。",
                        esc(&v.reference),
                        v.sent_on,
                        how,
                        esc(&about)
                    ),
                )
            } else {
                (
                    "This notice is from us",
                    format!(
                        "Notice {} was sent by us on {} by {}, about {}.",
                        esc(&v.reference),
                        v.sent_on,
                        how,
                        esc(&about)
                    ),
                )
            };
            let guidance = if ja {
                "対策の手順"
            } else {
                "How to fix it"
            };
            // The family's own page when one is configured, else the
            // site's index with the general guidance.
            let guide = page_of.map_or(SITE.to_string(), |c| format!("{SITE}/{}", c.family));
            let body = format!(
                "<p id=\"genuine\">{text}</p><p><a id=\"guidance\" href=\"{}?lang={}\">{guidance}</a></p>{}{no_credentials}",
                esc(&guide),
                if ja { "ja" } else { "en" },
                ack_link(l)
            );
            page(l, &nonce, title, &body).into_response()
        }
        Ok(None) => {
            // What was typed, kept short and printable for the log.
            let logged: String = typed.chars().filter(|c| !c.is_control()).take(40).collect();
            tracing::info!(reference = %logged, "a notice reference that is not ours was checked");
            let (title, text) = if ja {
                (
                    "当社のお知らせではありません",
                    format!(
                        "お知らせ番号 {} のお知らせを当社はお送りしていません。書かれたとおりに入力したかお確かめください。それでも見つからない場合、そのメールや手紙は当社からのものではありません。リンクを開いたり情報を入力したりせず、当社サポート窓口にご相談ください。",
                        esc(typed)
                    ),
                )
            } else {
                (
                    "Not a notice of ours",
                    format!(
                        "We sent no notice with the reference {}. Check that you typed it exactly as written. If it is still not found, the message did not come from us: do not follow its links or give it any information, and tell our support desk.",
                        esc(typed)
                    ),
                )
            };
            let body = format!(
                "<p id=\"not-ours\">{text}</p>{}{no_credentials}",
                form(typed)
            );
            (StatusCode::NOT_FOUND, page(l, &nonce, title, &body)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "verifying a notice reference failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the reference could not be checked; please try again",
            )
                .into_response()
        }
    }
}

/// The longest note kept with an acknowledgement, in characters.
pub const NOTE_MAX: usize = 1000;

#[derive(Debug, Deserialize)]
struct AckForm {
    #[serde(default)]
    reference: String,
    #[serde(default)]
    note: String,
}

/// What an "I have cleaned my machine" did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledged {
    /// No notice has that reference.
    Unknown,
    /// The case is acknowledged; `left_garden` when that let the
    /// subscriber out of the walled garden.
    Case { left_garden: bool },
    /// No reference, from a subscriber an operator put in the garden: a
    /// leave request for the operator.
    LeaveRequested,
}

async fn ack(
    State(site): State<Site>,
    Extension(nonce): Extension<Nonce>,
    Query(p): Query<LangParam>,
    h: HeaderMap,
    ext: Extensions,
    Form(f): Form<AckForm>,
) -> Response {
    let l = lang(&p, &h);
    let ja = l == Lang::Ja;
    if !same_origin(&h) {
        return (StatusCode::FORBIDDEN, "cross-site post refused").into_response();
    }
    let reference = typed_reference(&f.reference);
    let note: String = f
        .note
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(NOTE_MAX)
        .collect();
    // Who is asking matters only without a reference.
    let gardened = match (&site.gardened, ext.get::<ConnectInfo<SocketAddr>>()) {
        (Some(who), Some(ConnectInfo(peer))) if reference.is_empty() => who(peer.ip()),
        _ => None,
    };
    let (k, garden) = (site.kanki.clone(), site.garden.clone());
    let result = tokio::task::spawn_blocking(move || match gardened {
        Some(subscriber) => k.garden_leave_request(&subscriber, &note).map(|r| match r {
            Some(_) => Acknowledged::LeaveRequested,
            None => Acknowledged::Unknown,
        }),
        None => {
            let done = acknowledge(&k, &reference, &note)?;
            if done == (Acknowledged::Case { left_garden: true }) {
                garden.reload(&k.store)?;
            }
            Ok(done)
        }
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let (status, title, text) = match result {
        Ok(Acknowledged::Case { left_garden }) => (
            StatusCode::OK,
            if ja {
                "ありがとうございました"
            } else {
                "Thank you"
            },
            match (ja, left_garden) {
                (true, true) => {
                    "<p id=\"cleaned-thanks\">お知らせを受け付け、インターネット接続の制限を解除しました（反映まで1分ほどかかることがあります）。当社では引き続き観測を続け、問題の通信が止まったことを確認します。</p>"
                }
                (true, false) => {
                    "<p id=\"cleaned-thanks\">お知らせを受け付けました。当社では引き続き観測を続け、問題の通信が止まったことを確認します。</p>"
                }
                (false, true) => {
                    "<p id=\"cleaned-thanks\">We have your acknowledgement and have lifted the restriction on your line (it may take a minute). We keep watching, and will confirm that the problem traffic has stopped.</p>"
                }
                (false, false) => {
                    "<p id=\"cleaned-thanks\">We have your acknowledgement. We keep watching, and will confirm that the problem traffic has stopped.</p>"
                }
            },
        ),
        Ok(Acknowledged::LeaveRequested) => (
            StatusCode::OK,
            if ja {
                "お知らせを受け付けました"
            } else {
                "Message received"
            },
            if ja {
                "<p id=\"leave-requested\">ありがとうございます。担当者が確認したうえで制限を解除します。</p>"
            } else {
                "<p id=\"leave-requested\">Thank you. An operator will check and lift the restriction.</p>"
            },
        ),
        Ok(Acknowledged::Unknown) => (
            StatusCode::NOT_FOUND,
            if ja {
                "お知らせ番号が見つかりません"
            } else {
                "Unknown notice reference"
            },
            if ja {
                "<p>お知らせに書かれた番号をもう一度お確かめください。</p>"
            } else {
                "<p>Please check the reference written in your notice.</p>"
            },
        ),
        Err(e) => {
            tracing::error!(error = %e, "acknowledgement failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the acknowledgement could not be recorded; please try again",
            )
                .into_response();
        }
    };
    (status, page(l, &nonce, title, text)).into_response()
}

/// Records "I have cleaned my machine" for the case of a notice, with the
/// subscriber's note in the case's history, and lets them out of the
/// walled garden when the case put them there. Acknowledging twice is
/// harmless.
pub fn acknowledge(k: &Kanki, reference: &str, note: &str) -> Result<Acknowledged, ServiceError> {
    let now = Utc::now();
    let r = k.store.removal();
    if reference.is_empty() {
        return Ok(Acknowledged::Unknown);
    }
    let Some(n) = r.acknowledge_notice(reference, now)? else {
        return Ok(Acknowledged::Unknown);
    };
    let reason = if note.trim().is_empty() {
        n.reference.clone()
    } else {
        format!("{}: {}", n.reference, note.trim())
    };
    let done = r.update_case(
        n.case_id,
        &CaseChange {
            actor: "subscriber",
            action: "acknowledged",
            reason: Some(&reason),
        },
        &mut |c| case::on_acknowledged(c, now),
        now,
    );
    let case = match done {
        Ok(c) => c,
        // Closed or resolved already: nothing to move.
        Err(kanki_store::StoreError::Invalid(_)) => {
            return Ok(Acknowledged::Case { left_garden: false });
        }
        Err(e) => return Err(e.into()),
    };
    let left_garden = escalation::release(
        k,
        &case,
        "subscriber",
        &format!(
            "the subscriber acknowledged notice {} on the countermeasure site",
            n.reference
        ),
        now,
    )?;
    Ok(Acknowledged::Case { left_garden })
}
