//! Subscribers and their consent: the list, and each subscriber's page
//! with their identity, identifiers, consent now and over time, the
//! addresses their identifiers held over time, their walled-garden state
//! and their cases. Every page names subscribers, so each is recorded in
//! the audit log as a view before anything is shown, as the API's reads
//! are. An operator allowed to manage subscribers records a consent given
//! or withdrawn (by phone, at the counter...), under the API's rule.

use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use kanki_html::esc;
use kanki_operators::Principal;
use kanki_service::Kanki;
use kanki_store::{Case, CaseFilter, GardenMember, StoreError, StoredBinding, Subscriber};
use serde::Deserialize;

use super::Console;
use super::query::{SubscriberQuery, SubscribersQuery};
use crate::ApiState;

/// The cases shown on a subscriber's page, newest first.
const CASES_SHOWN: u32 = 20;

/// The channels a consent is recorded through from the console.
const CHANNELS: &[(&str, &str, &str)] = &[
    ("phone", "By phone", "電話"),
    ("counter", "At the counter", "窓口"),
    ("written", "In writing", "書面"),
    ("web", "On the web", "ウェブ"),
    ("contract", "In the contract", "契約"),
];

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The path of a subscriber's page (the id escaped as a path segment).
pub(super) fn page_of(id: &str) -> String {
    format!(
        "/subscribers/{}",
        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    )
}

/// `GET /subscribers`: the list in id order, a page at a time, and a
/// field that opens one subscriber's page.
pub(super) async fn list(
    State(st): State<ApiState>,
    c: Console,
    RawQuery(raw): RawQuery,
) -> Response {
    let title = c.tr("Subscribers", "契約者");
    let q = match SubscribersQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(problems) => {
            return c.bad_query(
                c.tr(
                    "Subscribers: the query is not valid",
                    "契約者: 指定が正しくありません",
                ),
                &problems,
                "/subscribers",
            );
        }
    };
    if let Some(id) = &q.id {
        return Redirect::to(&page_of(id)).into_response();
    }
    let (k, who, after, size) = (st.kanki.clone(), c.who.clone(), q.after.clone(), q.size);
    let listed = c.blocking(move || {
        super::record_console_view(
            &k,
            &who,
            "subscriber-list",
            after.as_deref().unwrap_or(""),
            None,
        )?;
        k.store.directory().list_subscribers(after.as_deref(), size)
    });
    let subscribers = match listed.await {
        Ok(s) => s,
        Err(failed) => return failed,
    };
    let mut body = format!(
        "<form id=\"open\" class=\"filters\" method=\"get\" action=\"/subscribers\" role=\"search\">\
<label>{id_l} <input name=\"id\" data-search required maxlength=\"200\" placeholder=\"/\"></label>\
<button id=\"open-subscriber\">{open}</button></form>\
<p>{lead}</p>\
<table id=\"subscribers\"><thead><tr><th scope=\"col\">{id_l}</th><th scope=\"col\">{consent_l}</th><th scope=\"col\">{since_l}</th><th scope=\"col\">{lang_l}</th><th scope=\"col\">{plan_l}</th></tr></thead><tbody>",
        id_l = c.tr("Subscriber id", "契約者 ID"),
        open = c.tr("Open", "開く"),
        lead = c.tr(
            "Subscribers in id order. Each view of this list and of a subscriber is recorded in the audit log.",
            "契約者を ID 順に表示します。この一覧と契約者の表示はすべて監査ログに記録されます。"
        ),
        consent_l = c.tr("Consent", "同意"),
        since_l = c.tr("Since (UTC)", "変更日時 (UTC)"),
        lang_l = c.tr("Language", "言語"),
        plan_l = c.tr("Plan", "プラン"),
    );
    for s in &subscribers {
        body.push_str(&format!(
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&page_of(&s.id)),
            esc(&s.id),
            consent_word(&c, s.consent),
            s.consent_at.map_or_else(|| "—".into(), when),
            esc(&s.language),
            esc(s.plan.as_deref().unwrap_or("—")),
        ));
    }
    body.push_str("</tbody></table>");
    if subscribers.len() == q.size as usize
        && let Some(last) = subscribers.last()
    {
        body.push_str(&format!(
            "<p><a id=\"next\" rel=\"next\" href=\"/subscribers?{}\">{}</a></p>",
            esc(&q.with_after(Some(&last.id))),
            c.tr("Next page", "次のページ")
        ));
    }
    if subscribers.is_empty() {
        body.push_str(&format!(
            "<p id=\"none\">{}</p>",
            c.tr("No subscriber here.", "該当する契約者はいません。")
        ));
    }
    c.page(title, &body)
}

fn consent_word(c: &Console, granted: bool) -> &'static str {
    if granted {
        c.tr("given", "同意あり")
    } else {
        c.tr("not given", "同意なし")
    }
}

/// What a subscriber's page shows.
struct Loaded {
    subscriber: Subscriber,
    garden: Option<GardenMember>,
    bindings: Vec<StoredBinding>,
    /// `None`: the operator may not read cases.
    cases: Option<Vec<Case>>,
}

fn load(
    k: &Kanki,
    who: &Principal,
    id: &str,
    q: &SubscriberQuery,
    with_cases: bool,
) -> Result<Option<Loaded>, StoreError> {
    let d = k.store.directory();
    let Some(subscriber) = d.get_subscriber(id)? else {
        return Ok(None);
    };
    super::record_console_view(k, who, "subscriber", id, Some(id))?;
    let bindings = d.subscriber_bindings(id, q.after, q.size)?;
    let garden = k.store.warning().garden_member(id)?;
    let cases = if with_cases {
        Some(k.store.removal().list_cases(&CaseFilter {
            subscriber: Some(id.to_string()),
            newest_first: true,
            limit: Some(CASES_SHOWN),
            ..CaseFilter::default()
        })?)
    } else {
        None
    };
    Ok(Some(Loaded {
        subscriber,
        garden,
        bindings,
        cases,
    }))
}

/// `GET /subscribers/{id}`: one subscriber.
pub(super) async fn subscriber(
    State(st): State<ApiState>,
    c: Console,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let title = c.tr("Subscriber", "契約者");
    let q = match SubscriberQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(problems) => return c.bad_query(title, &problems, &page_of(&id)),
    };
    let with_cases = c.may_call(&Method::GET, "/cases/{id}");
    let (k, who, wanted, query) = (st.kanki.clone(), c.who.clone(), id.clone(), q.clone());
    let loaded = match c
        .blocking(move || load(&k, &who, &wanted, &query, with_cases))
        .await
    {
        Ok(Some(l)) => l,
        Ok(None) => {
            return c.message(
                StatusCode::NOT_FOUND,
                title,
                &[format!(
                    "{} {:?}",
                    c.tr("No such subscriber:", "該当する契約者がいません:"),
                    id.chars().take(200).collect::<String>()
                )],
                "/subscribers",
            );
        }
        Err(failed) => return failed,
    };
    let s = &loaded.subscriber;
    let none = "—".to_string();
    let mut body = format!(
        "<section id=\"identity\"><dl>\
<dt>{}</dt><dd id=\"subscriber\">{}</dd><dt>{}</dt><dd id=\"email\">{}</dd><dt>{}</dt><dd>{}</dd>\
<dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd id=\"consent\">{}</dd><dt>{}</dt><dd>{}</dd></dl>",
        c.tr("Subscriber id", "契約者 ID"),
        esc(&s.id),
        c.tr("E-mail", "メール"),
        s.email.as_deref().map_or_else(|| none.clone(), esc),
        c.tr("Postal address", "住所"),
        s.postal_address
            .as_deref()
            .map_or_else(|| none.clone(), esc),
        c.tr("Language", "言語"),
        esc(&s.language),
        c.tr("Plan", "プラン"),
        s.plan.as_deref().map_or_else(|| none.clone(), esc),
        c.tr("Consent", "同意"),
        consent_word(&c, s.consent),
        c.tr("Consent changed (UTC)", "同意の変更 (UTC)"),
        s.consent_at.map_or_else(|| none.clone(), when),
    );
    body.push_str(&format!(
        "<h2>{}</h2><ul id=\"identifiers\">",
        c.tr("Identifiers", "識別子")
    ));
    for i in &s.identifiers {
        body.push_str(&format!(
            "<li><code>{}:{}</code></li>",
            i.kind.as_str(),
            esc(&i.value)
        ));
    }
    body.push_str("</ul></section>");
    if c.may_call(&Method::POST, "/subscribers/{id}/consent") {
        body.push_str(&consent_form(&c, s));
    }
    // Consent over time.
    body.push_str(&format!(
        "<section id=\"consent-history\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Consent history", "同意の履歴"),
        c.tr("At (UTC)", "日時 (UTC)"),
        c.tr("Change", "変更"),
        c.tr("Channel", "経路"),
        c.tr("By", "実行者"),
    ));
    for e in s.consent_history.iter().rev() {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(e.at),
            if e.granted {
                c.tr("given", "同意")
            } else {
                c.tr("withdrawn", "撤回")
            },
            esc(&e.channel),
            esc(&e.actor),
        ));
    }
    body.push_str("</tbody></table></section>");
    body.push_str(&garden(&c, loaded.garden.as_ref()));
    body.push_str(&bindings(&c, s, &q, &loaded.bindings));
    if let Some(cases) = &loaded.cases {
        body.push_str(&format!(
            "<section id=\"cases\"><h2>{}</h2><ul>",
            c.tr("Cases, newest first", "事案（新しい順）")
        ));
        for case in cases {
            body.push_str(&format!(
                "<li><a href=\"/cases/{id}\">#{id}</a> · {} · {} · {}</li>",
                esc(&kanki_removal::site::shown_name(&case.threat)),
                case.state.as_str(),
                when(case.first_seen),
                id = case.id,
            ));
        }
        if cases.is_empty() {
            body.push_str(&format!("<li>{}</li>", c.tr("None.", "ありません。")));
        }
        body.push_str("</ul></section>");
    }
    c.page(&format!("{title} {}", s.id), &body)
}

fn consent_form(c: &Console, s: &Subscriber) -> String {
    let (granted, button) = if s.consent {
        (
            "no",
            c.tr("Record the withdrawal of consent", "同意の撤回を記録する"),
        )
    } else {
        ("yes", c.tr("Record the consent given", "同意を記録する"))
    };
    let mut channels = String::new();
    for (value, en, ja) in CHANNELS {
        channels.push_str(&format!(
            "<option value=\"{value}\">{}</option>",
            super::tr(c.lang, en, ja)
        ));
    }
    format!(
        "<form id=\"consent-change\" method=\"post\" action=\"{action}/consent\">{csrf}\
<input type=\"hidden\" name=\"granted\" value=\"{granted}\">\
<label>{channel_l} <select name=\"channel\" id=\"channel\">{channels}</select></label> \
<button id=\"change-consent\">{button}</button></form>",
        action = esc(&page_of(&s.id)),
        csrf = c.csrf_field(),
        channel_l = c.tr("How the subscriber said so", "受付の経路"),
    )
}

fn garden(c: &Console, m: Option<&GardenMember>) -> String {
    let Some(m) = m else {
        return format!(
            "<section id=\"garden\"><h2>{}</h2><p id=\"garden-state\">{}</p></section>",
            c.tr("Walled garden", "隔離"),
            c.tr("Not in the walled garden.", "隔離されていません。")
        );
    };
    let leave = m.leave_requested_at.map_or_else(String::new, |at| {
        format!(
            "<dt>{}</dt><dd>{} {}</dd>",
            c.tr("Asked to leave (UTC)", "解除の申し出 (UTC)"),
            when(at),
            esc(m.leave_request_note.as_deref().unwrap_or(""))
        )
    });
    format!(
        "<section id=\"garden\"><h2>{}</h2><p id=\"garden-state\">{}</p><dl>\
<dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd>{leave}</dl></section>",
        c.tr("Walled garden", "隔離"),
        c.tr("In the walled garden.", "隔離中です。"),
        c.tr("Since (UTC)", "開始 (UTC)"),
        when(m.entered_at),
        c.tr("By", "実行者"),
        esc(&m.entered_by),
        c.tr("Ground", "法的根拠"),
        m.ground.as_str(),
        c.tr("Reason", "理由"),
        esc(&m.reason),
    )
}

fn bindings(c: &Console, s: &Subscriber, q: &SubscriberQuery, bs: &[StoredBinding]) -> String {
    let mut out = format!(
        "<section id=\"bindings\"><h2>{}</h2><p>{}</p><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Addresses held", "割り当てられたアドレス"),
        c.tr(
            "The addresses the subscriber's identifiers held, latest first.",
            "契約者の識別子に割り当てられたアドレスを新しい順に表示します。"
        ),
        c.tr("Address or prefix", "アドレス・プレフィックス"),
        c.tr("From (UTC)", "開始 (UTC)"),
        c.tr("Until (UTC)", "終了 (UTC)"),
        c.tr("Identifier", "識別子"),
        c.tr("Source", "情報源"),
        c.tr("Reported by", "報告元"),
    );
    for b in bs {
        let held = &b.binding;
        out.push_str(&format!(
            "<tr class=\"binding\"><td><code>{}{}</code></td><td>{}</td><td>{}</td><td><code>{}:{}</code></td><td>{}</td><td>{}</td></tr>",
            held.prefix,
            held.ports
                .map_or(String::new(), |p| format!(" ports {}-{}", p.first, p.last)),
            when(held.from),
            held.to.map_or_else(|| c.tr("held now", "割り当て中").to_string(), when),
            held.subject.kind.as_str(),
            esc(&held.subject.value),
            held.origin.as_str(),
            esc(held.reporter.as_deref().unwrap_or("—")),
        ));
    }
    out.push_str("</tbody></table>");
    if bs.len() == q.size as usize
        && let Some(last) = bs.last()
    {
        out.push_str(&format!(
            "<p><a id=\"older\" rel=\"next\" href=\"{}?{}\">{}</a></p>",
            esc(&page_of(&s.id)),
            esc(&q.with_after(Some((last.binding.from.timestamp(), last.id)))),
            c.tr("Older addresses", "さらに古いアドレス")
        ));
    }
    if bs.is_empty() {
        out.push_str(&format!(
            "<p id=\"no-bindings\">{}</p>",
            c.tr("No address recorded.", "記録されたアドレスはありません。")
        ));
    }
    out.push_str("</section>");
    out
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    granted: String,
    channel: String,
}

/// `POST /subscribers/{id}/consent`: as
/// `POST /api/v1/subscribers/{id}/consent`.
pub(super) async fn consent(
    State(st): State<ApiState>,
    c: Console,
    Path(id): Path<String>,
    Form(f): Form<ConsentForm>,
) -> Response {
    let title = c.tr("Consent", "同意");
    let back = page_of(&id);
    let granted = match f.granted.as_str() {
        "yes" => true,
        "no" => false,
        _ => {
            return c.message(
                StatusCode::BAD_REQUEST,
                title,
                &[
                    c.tr("granted must be yes or no.", "granted は yes か no です。")
                        .into(),
                ],
                &back,
            );
        }
    };
    if !CHANNELS.iter().any(|(v, _, _)| *v == f.channel) {
        let names: Vec<&str> = CHANNELS.iter().map(|(v, _, _)| *v).collect();
        return c.message(
            StatusCode::BAD_REQUEST,
            title,
            &[format!(
                "{} {}",
                c.tr("Choose the channel:", "経路を選んでください:"),
                names.join(", ")
            )],
            &back,
        );
    }
    let (who, directory, k) = (c.who.actor(), st.directory.clone(), st.kanki.clone());
    let (wanted, channel) = (id.clone(), f.channel.clone());
    let changed = tokio::task::spawn_blocking(move || {
        crate::directory::change_consent(&k, &directory, &wanted, granted, &channel, &who)
    })
    .await;
    match changed {
        Ok(Ok(_)) => Redirect::to(&back).into_response(),
        Ok(Err(e)) if e.0 == StatusCode::NOT_FOUND => {
            c.message(StatusCode::NOT_FOUND, title, &[e.1], "/subscribers")
        }
        Ok(Err(e)) => c.failed(&e.1),
        Err(e) => c.failed(&e.to_string()),
    }
}
