//! The countermeasure site (対策サイト): a page per malware family with the
//! configured guidance and tool links, in Japanese and English, and the
//! "I have cleaned my machine" acknowledgement, which takes a notice
//! reference and nothing else (the site never asks for a credential).
//!
//! An axum [`Router`] for the warning server to mount (until it exists,
//! `kanki serve` mounts it under `/countermeasures` of the API server).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use kanki_config::CountermeasureConfig;
use kanki_service::Kanki;
use kanki_store::CaseChange;
use serde::Deserialize;

use crate::case;

/// The site's routes, relative to where it is mounted.
pub fn router(kanki: Arc<Kanki>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ack", get(ack_form).post(ack))
        .route("/{family}", get(family_page))
        .with_state(kanki)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Ja,
    En,
}

#[derive(Debug, Deserialize)]
struct LangParam {
    lang: Option<String>,
    reference: Option<String>,
}

/// `?lang=` first, then the browser's Accept-Language, Japanese by default.
fn lang(p: &LangParam, h: &HeaderMap) -> Lang {
    match p.lang.as_deref() {
        Some("en") => Lang::En,
        Some("ja") => Lang::Ja,
        _ => {
            let accept = h
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.trim_start().starts_with("en") {
                Lang::En
            } else {
                Lang::Ja
            }
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(l: Lang, title: &str, body: &str) -> Html<String> {
    let (lang, other, other_name) = match l {
        Lang::Ja => ("ja", "en", "English"),
        Lang::En => ("en", "ja", "日本語"),
    };
    Html(format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em;line-height:1.6}}input{{font-size:1.2em}}</style></head>\
         <body><p style=\"text-align:right\"><a href=\"?lang={other}\">{other_name}</a></p><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
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
        Lang::Ja => "<p>対策が終わったら、<a href=\"ack?lang=ja\">お知らせ番号を入力してお知らせください</a>。</p>".into(),
        Lang::En => "<p>When you have cleaned your device, <a href=\"ack?lang=en\">tell us with your notice reference</a>.</p>".into(),
    }
}

const NO_CREDENTIALS_JA: &str =
    "<p><small>このサイトがパスワードやカード番号をお尋ねすることはありません。</small></p>";
const NO_CREDENTIALS_EN: &str =
    "<p><small>This site never asks for a password or a card number.</small></p>";

async fn index(
    State(k): State<Arc<Kanki>>,
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
            "<li><a href=\"{}\">{}</a></li>",
            esc(&c.family),
            esc(t)
        ));
    }
    body.push_str("</ul>");
    body.push_str(&ack_link(l));
    page(l, title, &body)
}

async fn family_page(
    State(k): State<Arc<Kanki>>,
    Path(family): Path<String>,
    Query(p): Query<LangParam>,
    h: HeaderMap,
) -> Html<String> {
    let l = lang(&p, &h);
    let found: Option<&CountermeasureConfig> = k
        .config
        .countermeasures
        .iter()
        .find(|c| c.family.eq_ignore_ascii_case(&family));
    let (title, text, tools) = match found {
        Some(c) if l == Lang::Ja => (c.title_ja.clone(), c.guidance_ja.clone(), &c.tools[..]),
        Some(c) => (c.title_en.clone(), c.guidance_en.clone(), &c.tools[..]),
        None => {
            let (t, g) = general(l);
            let t = format!("{t} ({family})");
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
    page(l, &title, &body)
}

async fn ack_form(Query(p): Query<LangParam>, h: HeaderMap) -> Html<String> {
    let l = lang(&p, &h);
    let reference = esc(p.reference.as_deref().unwrap_or(""));
    let (title, label, button, note) = match l {
        Lang::Ja => (
            "対策が終わったことのお知らせ",
            "お知らせに書かれたお知らせ番号",
            "対策が終わりました",
            NO_CREDENTIALS_JA,
        ),
        Lang::En => (
            "I have cleaned my machine",
            "The notice reference from your notice",
            "I have cleaned my machine",
            NO_CREDENTIALS_EN,
        ),
    };
    let lang = if l == Lang::Ja { "ja" } else { "en" };
    page(
        l,
        title,
        &format!(
            "<form method=\"post\" action=\"ack?lang={lang}\"><p><label>{label}<br><input name=\"reference\" value=\"{reference}\" autocomplete=\"off\" required></label></p>\
             <p><button type=\"submit\">{button}</button></p></form>{note}"
        ),
    )
}

#[derive(Debug, Deserialize)]
struct AckForm {
    reference: String,
}

async fn ack(
    State(k): State<Arc<Kanki>>,
    Query(p): Query<LangParam>,
    h: HeaderMap,
    Form(f): Form<AckForm>,
) -> Response {
    let l = lang(&p, &h);
    let reference = f.reference.trim().to_ascii_uppercase();
    let result = tokio_blocking(k.clone(), move |k| acknowledge(&k, &reference)).await;
    match result {
        Ok(true) => page(
            l,
            if l == Lang::Ja { "ありがとうございました" } else { "Thank you" },
            if l == Lang::Ja {
                "<p>お知らせを受け付けました。当社では引き続き観測を続け、問題の通信が止まったことを確認します。</p>"
            } else {
                "<p>We have your acknowledgement. We keep watching, and will confirm that the problem traffic has stopped.</p>"
            },
        )
        .into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            page(
                l,
                if l == Lang::Ja { "お知らせ番号が見つかりません" } else { "Unknown notice reference" },
                if l == Lang::Ja {
                    "<p>お知らせに書かれた番号をもう一度お確かめください。</p>"
                } else {
                    "<p>Please check the reference written in your notice.</p>"
                },
            ),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "acknowledgement failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the acknowledgement could not be recorded; please try again").into_response()
        }
    }
}

async fn tokio_blocking<T: Send + 'static>(
    k: Arc<Kanki>,
    f: impl FnOnce(Arc<Kanki>) -> Result<T, kanki_store::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(move || f(k)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Records "I have cleaned my machine" for the case of a notice; `false`
/// for an unknown reference. Acknowledging twice is harmless.
pub fn acknowledge(k: &Kanki, reference: &str) -> Result<bool, kanki_store::StoreError> {
    let now = Utc::now();
    let r = k.store.removal();
    let Some(n) = r.acknowledge_notice(reference, now)? else {
        return Ok(false);
    };
    let done = r.update_case(
        n.case_id,
        &CaseChange {
            actor: "subscriber",
            action: "acknowledged",
            reason: Some(&n.reference),
        },
        &mut |c| case::on_acknowledged(c, now),
        now,
    );
    match done {
        Ok(_) | Err(kanki_store::StoreError::Invalid(_)) => Ok(true),
        Err(e) => Err(e),
    }
}
