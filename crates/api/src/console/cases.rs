//! The case queue, a case's page and the queue's bulk actions.

use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use kanki_html::esc;
use kanki_operators::{Permission, Principal};
use kanki_removal::case::Action;
use kanki_service::Kanki;
use kanki_store::{Case, CaseLogEntry, CaseState, Notice, Severity, StoreError, StoredEvent};

use super::Console;
use super::query::{CaseQuery, MAX_PAGE};
use crate::ApiState;

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn when_opt(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".into(), when)
}

/// `<option>`s of `all`, the `selected` ones marked.
fn options<'a>(all: impl Iterator<Item = (&'a str, &'a str)>, selected: &[&str]) -> String {
    all.map(|(value, label)| {
        format!(
            "<option value=\"{}\"{}>{}</option>",
            esc(value),
            if selected.contains(&value) {
                " selected"
            } else {
                ""
            },
            esc(label)
        )
    })
    .collect()
}

/// `GET /cases`: the queue, filtered, ordered and paged on the server.
pub(super) async fn queue(
    State(st): State<ApiState>,
    c: Console,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match CaseQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(problems) => {
            return c.bad_query(
                c.tr(
                    "Cases: the query is not valid",
                    "事案: 指定が正しくありません",
                ),
                &problems,
                "/cases",
            );
        }
    };
    let filter = q.filter(Utc::now());
    let k = st.kanki.clone();
    let (mut cases, feeds) = match c
        .blocking(move || {
            let removal = k.store.removal();
            Ok::<_, StoreError>((
                removal.list_cases(&filter)?,
                removal.case_feed_names(FEED_CHOICES)?,
            ))
        })
        .await
    {
        Ok(found) => found,
        Err(page) => return page,
    };
    let more = cases.len() > q.size as usize;
    cases.truncate(q.size as usize);
    let act = c.may(Permission::ActOnCases);
    let mut body = filter_form(&c, &q, &feeds);
    if cases.is_empty() {
        body.push_str(&format!(
            "<p id=\"no-cases\">{}</p>",
            c.tr("No case matches.", "該当する事案はありません。")
        ));
    } else {
        if act {
            body.push_str(&format!(
                "<form id=\"bulk\" method=\"post\" action=\"/cases/actions\">{}",
                c.csrf_field()
            ));
        }
        body.push_str(&format!(
            "<table id=\"cases\"><caption>{}</caption><thead><tr>{}<th scope=\"col\">#</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            c.tr("Cases", "事案"),
            if act { "<th scope=\"col\"><span class=\"sr\">✓</span></th>" } else { "" },
            c.tr("Subscriber", "契約者"),
            c.tr("Threat", "脅威"),
            c.tr("Severity", "重大度"),
            c.tr("State", "状態"),
            c.tr("Events", "イベント"),
            c.tr("Notices", "通知"),
            c.tr("Last seen (UTC)", "最終観測 (UTC)"),
        ));
        for case in &cases {
            body.push_str(&row(&c, case, act));
        }
        body.push_str("</tbody></table>");
        if act {
            body.push_str(&bulk_controls(&c));
            body.push_str("</form>");
        }
    }
    if more && let Some(last) = cases.last() {
        body.push_str(&format!(
            "<p class=\"pager\"><a id=\"next-page\" rel=\"next\" href=\"/cases?{}\">{}</a></p>",
            esc(&q.after_case(last)),
            c.tr("Next page", "次のページ")
        ));
    }
    c.page(c.tr("Cases", "事案"), &body)
}

/// The most feeds the queue's filter offers to choose from.
const FEED_CHOICES: u32 = 200;

fn filter_form(c: &Console, q: &CaseQuery, feeds: &[String]) -> String {
    let states: Vec<&str> = q.states.iter().map(|s| s.as_str()).collect();
    let severity: Vec<&str> = q.severity.iter().map(|s| s.as_str()).collect();
    let age = q.age.as_deref().unwrap_or("");
    let mut ages = vec![
        ("", c.tr("any", "すべて")),
        ("24h", "24h"),
        ("7d", "7d"),
        ("30d", "30d"),
    ];
    if !age.is_empty() && !ages.iter().any(|a| a.0 == age) {
        ages.push((age, age));
    }
    let feed = q.feed.as_deref().unwrap_or("");
    let mut feed_choices: Vec<(&str, &str)> = vec![("", c.tr("any", "すべて"))];
    feed_choices.extend(feeds.iter().map(|f| (f.as_str(), f.as_str())));
    if !feed.is_empty() && !feeds.iter().any(|f| f == feed) {
        feed_choices.push((feed, feed));
    }
    format!(
        "<form id=\"filter\" class=\"filters\" method=\"get\" action=\"/cases\" role=\"search\">\
<label>{state_l} <select name=\"state\" multiple size=\"4\">{state_o}</select></label>\
<label>{sev_l} <select name=\"severity\"><option value=\"\">{any}</option>{sev_o}</select></label>\
<label>{threat_l} <input name=\"threat\" data-search value=\"{threat}\" maxlength=\"{max}\" placeholder=\"/\"></label>\
<label>{feed_l} <select name=\"feed\">{feed_o}</select></label>\
<label>{age_l} <select name=\"age\">{age_o}</select></label>\
<label>{sort_l} <select name=\"sort\">{sort_o}</select></label>\
<input type=\"hidden\" name=\"size\" value=\"{size}\">\
<button id=\"apply-filter\">{apply}</button></form>",
        state_l = c.tr("State", "状態"),
        state_o = options(
            CaseState::ALL.iter().map(|s| (s.as_str(), s.as_str())),
            &states
        ),
        sev_l = c.tr("Severity", "重大度"),
        any = c.tr("any", "すべて"),
        sev_o = options(
            Severity::ALL.iter().map(|s| (s.as_str(), s.as_str())),
            &severity
        ),
        threat_l = c.tr("Threat", "脅威"),
        threat = esc(q.threat.as_deref().unwrap_or("")),
        max = super::query::MAX_TEXT,
        feed_l = c.tr("Feed", "フィード"),
        feed_o = options(feed_choices.into_iter(), &[feed]),
        age_l = c.tr("Opened within", "開始からの期間"),
        age_o = options(ages.into_iter(), &[age]),
        sort_l = c.tr("Order", "並び順"),
        sort_o = options(
            [
                ("newest", c.tr("newest first", "新しい順")),
                ("oldest", c.tr("oldest first", "古い順")),
                (
                    "seen",
                    c.tr("most recently seen first", "最終観測の新しい順")
                )
            ]
            .into_iter(),
            &[q.sort.as_str()]
        ),
        size = q.size.min(MAX_PAGE),
        apply = c.tr("Filter", "絞り込む"),
    )
}

fn row(c: &Console, case: &Case, act: bool) -> String {
    let check = if act {
        format!(
            "<td><input type=\"checkbox\" name=\"case\" value=\"{id}\" id=\"pick-{id}\" aria-label=\"{} #{id}\"></td>",
            c.tr("Select case", "事案を選択"),
            id = case.id
        )
    } else {
        String::new()
    };
    format!(
        "<tr>{check}<td><a href=\"/cases/{id}\">#{id}</a></td><td>{sub}</td><td class=\"threat\">{threat}</td><td class=\"sev-{sev}\">{sev}</td><td class=\"state\">{state}{held}</td><td>{events}</td><td>{notices}</td><td>{last}</td></tr>",
        id = case.id,
        sub = c.subscriber(&case.subscriber),
        threat = esc(&kanki_removal::site::shown_name(&case.threat)),
        sev = case.severity.as_str(),
        state = case.state.as_str(),
        held = if case.held {
            format!(" <span class=\"held\">({})</span>", c.tr("held", "保留中"))
        } else {
            String::new()
        },
        events = case.events,
        notices = case.notices,
        last = when(case.last_seen),
    )
}

/// The actions of the queue's bulk form (those of
/// `POST /api/v1/cases/{id}/actions`).
const ACTIONS: &[(&str, &str, &str)] = &[
    ("hold", "Hold notices", "通知を保留"),
    ("release", "Release the hold", "保留を解除"),
    ("review", "Mark reviewed", "確認済みにする"),
    ("close", "Close", "終了"),
    ("send-now", "Send a notice now", "今すぐ通知を送る"),
    ("escalate", "Escalate now", "今すぐエスカレーション"),
    (
        "garden-release",
        "Release the subscriber from the walled garden",
        "契約者の隔離を解除",
    ),
];

/// What the bulk form does to each selected case.
enum Bulk {
    /// A case action, as `POST /api/v1/cases/{id}/actions`.
    Case(Action),
    /// The case's subscriber let out of the walled garden under the ground
    /// they were put in under, with the reason, as
    /// `DELETE /api/v1/garden/{subscriber}`.
    GardenRelease(String),
}

/// The case's subscriber out of the walled garden.
fn release_from_garden(k: &Kanki, id: i64, reason: &str, who: &str) -> Result<CaseState, String> {
    let case = k
        .store
        .removal()
        .get_case(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no case #{id}"))?;
    let member = k
        .store
        .warning()
        .garden_member(&case.subscriber)
        .map_err(|e| e.to_string())?
        .ok_or("the subscriber is not in the walled garden")?;
    let change = kanki_service::warning::GardenChange {
        subscriber: case.subscriber.clone(),
        ground: member.ground,
        reason: reason.to_string(),
        actor: who.to_string(),
    };
    k.garden_leave(&change).map_err(|e| e.to_string())?;
    Ok(case.state)
}

fn bulk_controls(c: &Console) -> String {
    let actions: String = ACTIONS
        .iter()
        .map(|(v, en, ja)| format!("<option value=\"{v}\">{}</option>", c.tr(en, ja)))
        .collect();
    format!(
        "<fieldset class=\"bulk\"><legend>{legend}</legend>\
<label>{action_l} <select name=\"action\" id=\"bulk-action\">{actions}</select></label>\
<label>{reason_l} <input name=\"reason\" id=\"bulk-reason\" maxlength=\"500\"></label>\
<button id=\"bulk-apply\">{apply}</button></fieldset>",
        legend = c.tr("Selected cases", "選択した事案"),
        action_l = c.tr("Action", "操作"),
        reason_l = c.tr(
            "Reason (hold, review, close, garden release)",
            "理由（保留・確認・終了・隔離の解除）"
        ),
        apply = c.tr("Apply", "実行"),
    )
}

/// `POST /cases/actions`: one action on the selected cases, each through
/// the same service function as `POST /api/v1/cases/{id}/actions`.
pub(super) async fn bulk(
    State(st): State<ApiState>,
    c: Console,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let mut ids = Vec::new();
    let (mut action, mut reason) = (String::new(), String::new());
    let mut problems = Vec::new();
    for (k, v) in &form {
        match k.as_str() {
            "case" => match v.parse::<i64>() {
                Ok(id) if id > 0 && ids.len() < MAX_PAGE as usize => ids.push(id),
                Ok(_) if ids.len() >= MAX_PAGE as usize => {}
                _ => problems.push(format!(
                    "{}: {:?}",
                    c.tr("not a case number", "事案番号ではありません"),
                    v.chars().take(40).collect::<String>()
                )),
            },
            "action" => action = v.clone(),
            "reason" => reason = v.chars().take(500).collect(),
            // The CSRF token (checked before), and anything else.
            _ => {}
        }
    }
    let action = match action.as_str() {
        "review" => Some(Bulk::Case(Action::Review(reason))),
        "hold" => Some(Bulk::Case(Action::Hold(reason))),
        "release" => Some(Bulk::Case(Action::Release)),
        "close" => Some(Bulk::Case(Action::Close(reason))),
        "escalate" => Some(Bulk::Case(Action::Escalate(reason))),
        "send-now" => Some(Bulk::Case(Action::SendNow(reason))),
        "garden-release" if reason.trim().is_empty() => {
            problems.push(
                c.tr(
                    "Give the reason for releasing from the walled garden.",
                    "隔離を解除する理由を入力してください。",
                )
                .to_string(),
            );
            None
        }
        "garden-release" => Some(Bulk::GardenRelease(reason)),
        _ => {
            problems.push(
                c.tr(
                    "Choose an action: hold, release, review, close, send now, escalate or release from the walled garden.",
                    "操作（保留・保留解除・確認・終了・今すぐ通知・エスカレーション・隔離の解除）を選んでください。",
                )
                .to_string(),
            );
            None
        }
    };
    if ids.is_empty() {
        problems.push(
            c.tr(
                "Select at least one case.",
                "事案を一つ以上選んでください。",
            )
            .to_string(),
        );
    }
    let Some(action) = action.filter(|_| problems.is_empty()) else {
        return c.message(
            StatusCode::BAD_REQUEST,
            c.tr("Cases", "事案"),
            &problems,
            "/cases",
        );
    };
    let who = c.who.actor();
    let garden = st.garden.clone();
    let k = st.kanki.clone();
    let results = tokio::task::spawn_blocking(move || {
        let out: Vec<(i64, Result<CaseState, String>)> = ids
            .iter()
            .map(|&id| {
                let done = match &action {
                    Bulk::Case(a) => kanki_removal::case::act(&k, id, a, &who)
                        .map(|case| case.state)
                        .map_err(|e| e.to_string()),
                    Bulk::GardenRelease(reason) => release_from_garden(&k, id, reason, &who),
                };
                (id, done)
            })
            .collect();
        // Closing, or a release, may have let a subscriber out of the
        // walled garden.
        if let Err(e) = garden.refresh(&k.store) {
            tracing::error!(error = %e, "refreshing the walled garden after a bulk action failed");
        }
        out
    })
    .await
    .unwrap_or_default();
    let mut body = String::from("<ul id=\"bulk-results\">");
    for (id, r) in &results {
        match r {
            Ok(state) => body.push_str(&format!(
                "<li><a href=\"/cases/{id}\">#{id}</a>: {} ({})</li>",
                c.tr("done", "完了"),
                state.as_str()
            )),
            Err(e) => body.push_str(&format!(
                "<li class=\"failed\"><a href=\"/cases/{id}\">#{id}</a>: {}</li>",
                esc(e)
            )),
        }
    }
    body.push_str(&format!(
        "</ul><p><a id=\"back-to-queue\" href=\"/cases\">{}</a></p>",
        c.tr("Back to the queue", "事案一覧へ戻る")
    ));
    let status = if results.iter().all(|r| r.1.is_ok()) {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    c.page_with(
        status,
        c.tr("Cases: action taken", "事案: 操作の結果"),
        &body,
    )
}

/// The raw records shown per event, at most this many bytes each.
const RAW_SHOWN: usize = 4096;

/// `GET /cases/{id}`: a case with its timeline, attributions, notices and
/// outcome. Like `GET /api/v1/cases/{id}`, it names a subscriber: the view
/// is recorded in the audit log before anything is shown.
pub(super) async fn case(
    State(st): State<ApiState>,
    c: Console,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return c.message(
            StatusCode::BAD_REQUEST,
            c.tr("Case", "事案"),
            &[format!(
                "{} {:?}",
                c.tr("Not a case number:", "事案番号ではありません:"),
                id.chars().take(40).collect::<String>()
            )],
            "/cases",
        );
    };
    let (k, who) = (st.kanki.clone(), c.who.clone());
    let found = tokio::task::spawn_blocking(move || load(&k, &who, id)).await;
    let (case, log, notices, events) = match found {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => {
            return c.message(
                StatusCode::NOT_FOUND,
                c.tr("Case", "事案"),
                &[format!(
                    "{} #{id}",
                    c.tr("No such case:", "該当する事案がありません:")
                )],
                "/cases",
            );
        }
        Ok(Err(e)) => return c.failed(&e.to_string()),
        Err(e) => return c.failed(&e.to_string()),
    };
    let mut body = format!(
        "<section id=\"summary\"><dl>\
<dt>{}</dt><dd id=\"subscriber\">{}</dd><dt>{}</dt><dd id=\"threat\">{}</dd><dt>{}</dt><dd>{}</dd>\
<dt>{}</dt><dd id=\"state\">{}{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{} – {}</dd>\
<dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd id=\"acknowledged\">{}</dd><dt>{}</dt><dd id=\"outcome\">{}</dd></dl></section>",
        c.tr("Subscriber", "契約者"),
        c.subscriber(&case.subscriber),
        c.tr("Threat", "脅威"),
        esc(&kanki_removal::site::shown_name(&case.threat)),
        c.tr("Class", "分類"),
        esc(&case.class),
        c.tr("State", "状態"),
        case.state.as_str(),
        if case.held {
            format!(
                " ({}: {})",
                c.tr("held", "保留中"),
                esc(case.hold_reason.as_deref().unwrap_or(""))
            )
        } else {
            String::new()
        },
        c.tr("Severity", "重大度"),
        case.severity.as_str(),
        c.tr("Seen (UTC)", "観測 (UTC)"),
        when(case.first_seen),
        when(case.last_seen),
        c.tr("Events", "イベント"),
        case.events,
        c.tr("Reinfections", "再感染"),
        case.reinfections,
        c.tr("Acknowledged", "対策完了の連絡"),
        when_opt(case.acknowledged_at),
        c.tr("Outcome", "結果"),
        outcome(&c, &case),
    );
    if c.may_call(&Method::POST, "/cases/actions") {
        body.push_str(&format!(
            "<form id=\"case-action\" method=\"post\" action=\"/cases/actions\">{}<input type=\"hidden\" name=\"case\" value=\"{}\">{}</form>",
            c.csrf_field(),
            case.id,
            bulk_controls(&c)
        ));
    }
    // The timeline: events with their raw records and attributions.
    body.push_str(&format!(
        "<section id=\"events\"><h2>{}</h2><ol class=\"timeline\">",
        c.tr("Events", "イベント")
    ));
    for e in &events {
        let ev = &e.event;
        let attribution = e.attribution.as_ref().map_or_else(
            || c.tr("not attributed", "未特定").to_string(),
            |a| {
                format!(
                    "{} {} · {} <span class=\"audit\">{} #{}</span>",
                    c.tr("attributed to", "特定:"),
                    c.subscriber(&a.subscriber),
                    esc(&a.confidence),
                    c.tr("audit record", "監査記録"),
                    a.audit_seq
                )
            },
        );
        let raw: String = e.raw.chars().take(RAW_SHOWN).collect();
        body.push_str(&format!(
            "<li class=\"event\"><p><time>{}</time> · <span class=\"feed\">{}</span> · {} {}{} · <span class=\"malware\">{}</span></p>\
<p class=\"attribution\">{}</p><details><summary>{}</summary><pre class=\"raw\">{}</pre></details></li>",
            when(ev.time_source),
            esc(&ev.feed_name),
            esc(&ev.class),
            ev.source_ip,
            ev.source_port.map_or(String::new(), |p| format!(":{p}")),
            esc(ev.malware.as_deref().unwrap_or("—")),
            attribution,
            c.tr("Raw record", "元の記録"),
            esc(&raw),
        ));
    }
    body.push_str("</ol></section>");
    // Notices and their delivery.
    body.push_str(&format!(
        "<section id=\"notices\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Notices", "通知"),
        c.tr("Reference", "お知らせ番号"),
        c.tr("Channel", "手段"),
        c.tr("Recipient", "宛先"),
        c.tr("Delivery", "配送"),
        c.tr("Sent (UTC)", "送信 (UTC)"),
        c.tr("Acknowledged (UTC)", "対策完了 (UTC)"),
    ));
    for n in &notices {
        let recipient = match &n.recipient {
            Some(r) if c.may(Permission::ReadSubscribers) => esc(r),
            Some(_) => c.tr("(hidden)", "（非表示）").to_string(),
            None => "—".into(),
        };
        body.push_str(&format!(
            "<tr class=\"notice\"><td>{}</td><td>{}</td><td>{recipient}</td><td class=\"delivery\">{}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.reference),
            n.channel.as_str(),
            n.status.as_str(),
            n.last_error.as_deref().map_or(String::new(), |e| format!(" <span class=\"error\">{}</span>", esc(e))),
            when_opt(n.sent_at),
            when_opt(n.acknowledged_at),
        ));
    }
    body.push_str("</tbody></table></section>");
    // The history, acknowledgements included.
    body.push_str(&format!(
        "<section id=\"history\"><h2>{}</h2><ol>",
        c.tr("History", "履歴")
    ));
    for h in &log {
        body.push_str(&format!(
            "<li><time>{}</time> · {} · <strong>{}</strong> → {}{}</li>",
            when(h.at),
            esc(&h.actor),
            esc(&h.action),
            h.state.as_str(),
            h.reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {}", esc(r)))
        ));
    }
    body.push_str("</ol></section>");
    c.page(&format!("{} #{}", c.tr("Case", "事案"), case.id), &body)
}

/// A case with what its page shows: history, notices, events.
type Loaded = (Case, Vec<CaseLogEntry>, Vec<Notice>, Vec<StoredEvent>);

/// The events shown on a case's page, newest first.
const EVENTS_SHOWN: u32 = 50;

/// Loads a case for `who`, writing the view record first.
fn load(k: &Kanki, who: &Principal, id: i64) -> Result<Option<Loaded>, StoreError> {
    let r = k.store.removal();
    let Some(case) = r.get_case(id)? else {
        return Ok(None);
    };
    super::record_console_view(k, who, "case", &id.to_string(), Some(&case.subscriber))?;
    let (log, notices, events) = (
        r.case_log(id)?,
        r.case_notices(id)?,
        r.case_events(id, EVENTS_SHOWN)?,
    );
    Ok(Some((case, log, notices, events)))
}

fn outcome(c: &Console, case: &Case) -> String {
    match case.state {
        CaseState::Resolved => format!(
            "{} {}",
            c.tr("verified clean", "駆除を確認"),
            when_opt(case.resolved_at)
        ),
        CaseState::Closed => format!(
            "{} {}: {}",
            c.tr("closed", "終了"),
            when_opt(case.closed_at),
            esc(case.close_reason.as_deref().unwrap_or(""))
        ),
        CaseState::Escalated => format!(
            "{} {}",
            c.tr("escalated", "エスカレーション"),
            when_opt(case.escalated_at)
        ),
        CaseState::Reinfected => c.tr("reinfected", "再感染").to_string(),
        _ => c.tr("open", "対応中").to_string(),
    }
}

impl Console {
    /// A failure of the store, as a page.
    pub(super) fn failed(&self, e: &str) -> Response {
        tracing::error!(error = %e, "a console page failed");
        self.message(
            StatusCode::INTERNAL_SERVER_ERROR,
            self.tr("Something failed", "処理に失敗しました"),
            &[e.to_string()],
            "/",
        )
    }

    /// Runs a store call off the async runtime; its failure (or its
    /// thread's) is the [`failed`](Self::failed) page.
    pub(super) async fn blocking<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, Response>
    where
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(self.failed(&e.to_string())),
            Err(e) => Err(self.failed(&e.to_string())),
        }
    }
}
