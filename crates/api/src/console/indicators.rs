//! Indicators: the search with a manual add, an indicator's page (its
//! sources' rows, its evidence, the warning page's hits per day, its
//! history with who made each change, and a status change with a reason)
//! and the false-positive queue with approve and reject.

use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use kanki_html::{esc, safe_href};
use kanki_indicators::{Category, Indicator, Kind, Status, Tlp};
use kanki_operators::Permission;
use kanki_store::{
    HitsQuery, IndicatorChange, NewIndicator, ReportOutcome, ReportQuery, ReportStatus,
};
use serde::Deserialize;

use super::Console;
use super::query::{IndicatorQuery, moment_field};
use crate::ApiState;

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// A URL from a feed or a crawl: a link only when it is `http(s)` with a
/// host, else inert text; the text always escaped.
fn link_or_text(url: &str) -> String {
    match safe_href(url) {
        Some(href) => format!(
            "<a href=\"{href}\" rel=\"noreferrer noopener\" target=\"_blank\">{}</a>",
            esc(url)
        ),
        None => format!("<span class=\"inert\">{}</span>", esc(url)),
    }
}

pub(super) fn select<'a>(
    name: &str,
    label: &str,
    any: &str,
    all: impl Iterator<Item = &'a str>,
    chosen: Option<&str>,
) -> String {
    let options: String = all
        .map(|v| {
            format!(
                "<option value=\"{v}\"{}>{v}</option>",
                if Some(v) == chosen { " selected" } else { "" }
            )
        })
        .collect();
    format!(
        "<label>{label} <select name=\"{name}\"><option value=\"\">{any}</option>{options}</select></label>"
    )
}

/// `GET /indicators`: the search.
pub(super) async fn search(
    State(st): State<ApiState>,
    c: Console,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match IndicatorQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(problems) => {
            return c.bad_query(
                c.tr(
                    "Indicators: the query is not valid",
                    "指標: 指定が正しくありません",
                ),
                &problems,
                "/indicators",
            );
        }
    };
    let list = q.list();
    let k = st.kanki.clone();
    let page = match c.blocking(move || k.store.list_indicators(&list)).await {
        Ok(p) => p,
        Err(failed) => return failed,
    };
    let any = c.tr("any", "すべて");
    let mut body = format!(
        "<form id=\"filter\" class=\"filters\" method=\"get\" action=\"/indicators\" role=\"search\">\
<label>{ql} <input name=\"q\" data-search value=\"{qv}\" maxlength=\"200\" placeholder=\"/\"></label>\
<label>{sl} <input name=\"source\" value=\"{sv}\" maxlength=\"200\"></label>{cat}{status}{kind}{tlp}\
<label>{since_l} <input name=\"since\" value=\"{since}\" placeholder=\"2026-12-01\"></label>\
<label>{until_l} <input name=\"until\" value=\"{until}\" placeholder=\"2026-12-31\"></label>\
<button id=\"apply-filter\">{apply}</button></form><p id=\"total\">{total_l}: {total}{more}</p>",
        ql = c.tr("Name or URL contains", "名前・URL に含む"),
        qv = esc(q.q.as_deref().unwrap_or("")),
        sl = c.tr("Source", "情報源"),
        sv = esc(q.source.as_deref().unwrap_or("")),
        cat = select(
            "category",
            c.tr("Category", "種別"),
            any,
            Category::ALL.iter().map(|x| x.as_str()),
            q.category.map(|x| x.as_str())
        ),
        status = select(
            "status",
            c.tr("Status", "状態"),
            any,
            Status::ALL.iter().map(|x| x.as_str()),
            q.status.map(|x| x.as_str())
        ),
        kind = select(
            "kind",
            c.tr("Kind", "形式"),
            any,
            Kind::ALL.iter().map(|x| x.as_str()),
            q.kind.map(|x| x.as_str())
        ),
        tlp = select(
            "tlp",
            "TLP",
            any,
            Tlp::ALL.iter().map(|x| x.as_str()),
            q.tlp.map(|x| x.as_str())
        ),
        since_l = c.tr("First seen from (UTC)", "初回確認 開始（UTC）"),
        since = esc(&moment_field(q.since)),
        until_l = c.tr("to (UTC)", "終了（UTC）"),
        until = esc(&moment_field(q.until)),
        apply = c.tr("Search", "検索"),
        total_l = c.tr("Matching", "該当"),
        total = page.total,
        more = if page.total_at_least { "+" } else { "" },
    );
    body.push_str(&format!(
        "<table id=\"indicators\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">TLP</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Value", "値"),
        c.tr("Category", "種別"),
        c.tr("Status", "状態"),
        c.tr("Sources", "情報源"),
        c.tr("First seen (UTC)", "初回確認 (UTC)"),
        c.tr("Last seen (UTC)", "最終確認 (UTC)"),
    ));
    for i in &page.items {
        let sources: Vec<&str> = i.sources.iter().map(|s| s.source.as_str()).collect();
        body.push_str(&format!(
            "<tr><td><a href=\"/indicators/{id}\">#{id}</a></td><td class=\"value\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.value),
            i.category.as_str(),
            i.status.as_str(),
            i.tlp.as_str(),
            esc(&sources.join(", ")),
            when(i.first_seen),
            when(i.last_seen),
            id = i.id,
        ));
    }
    body.push_str("</tbody></table>");
    if let Some(next) = page.next_after {
        body.push_str(&format!(
            "<p class=\"pager\"><a id=\"next-page\" rel=\"next\" href=\"/indicators?{}\">{}</a></p>",
            esc(&q.with_after(Some(next))),
            c.tr("Next page", "次のページ")
        ));
    }
    if c.may_call(&Method::POST, "/indicators") {
        body.push_str(&add_form(&c));
    }
    c.page(c.tr("Indicators", "指標"), &body)
}

/// The longest reason a console form takes.
const MOST_REASON: usize = 500;

/// The manual add: a value, its category and why.
fn add_form(c: &Console) -> String {
    format!(
        "<section id=\"add\"><h2>{title}</h2><form method=\"post\" action=\"/indicators\" id=\"add-form\">{csrf}\
<label>{vl} <input name=\"value\" id=\"add-value\" required maxlength=\"2000\"></label>\
<label>{cl} <select name=\"category\" id=\"add-category\">{cats}</select></label>\
<label>{rl} <input name=\"reason\" id=\"add-reason\" required maxlength=\"{MOST_REASON}\"></label>\
<button id=\"add-apply\">{add}</button></form></section>",
        title = c.tr("Add an indicator", "指標を追加"),
        csrf = c.csrf_field(),
        vl = c.tr("Name, URL or address", "名前・URL・アドレス"),
        cl = c.tr("Category", "種別"),
        cats = Category::ALL
            .iter()
            .map(|x| format!("<option value=\"{0}\">{0}</option>", x.as_str()))
            .collect::<String>(),
        rl = c.tr("Reason", "理由"),
        add = c.tr("Add to the list", "リストに追加"),
    )
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    value: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    reason: String,
}

/// `POST /indicators`: as `POST /api/v1/indicators`, with a reason; to
/// the indicator's page.
pub(super) async fn add(
    State(st): State<ApiState>,
    c: Console,
    Form(f): Form<AddForm>,
) -> Response {
    let title = c.tr("Add an indicator", "指標を追加");
    let category = f.category.parse::<Category>().ok();
    let mut problems = Vec::new();
    if f.value.trim().is_empty() {
        problems.push(c.tr(
            "Give a name, URL or address.",
            "名前・URL・アドレスを入力してください。",
        ));
    }
    if category.is_none() {
        problems.push(c.tr("Choose a category.", "種別を選んでください。"));
    }
    if f.reason.trim().is_empty() || f.reason.chars().count() > MOST_REASON {
        problems.push(c.tr(
            "Give a reason of at most 500 characters.",
            "理由を 500 文字以内で入力してください。",
        ));
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems.into_iter().map(String::from).collect();
        return c.message(StatusCode::BAD_REQUEST, title, &lines, "/indicators");
    }
    let new = NewIndicator {
        value: f.value.trim().to_string(),
        category,
        reason: Some(f.reason.trim().to_string()),
        ..NewIndicator::default()
    };
    let (k, who) = (st.kanki.clone(), c.who.actor());
    match tokio::task::spawn_blocking(move || k.store.add_indicator(&new, &who, Utc::now())).await {
        Ok(Ok((i, _))) => {
            st.list_changed.notify_one();
            Redirect::to(&format!("/indicators/{}", i.id)).into_response()
        }
        Ok(Err(e)) => c.message(
            StatusCode::UNPROCESSABLE_ENTITY,
            title,
            &[e.to_string()],
            "/indicators",
        ),
        Err(e) => c.failed(&e.to_string()),
    }
}

/// The statuses an operator sets by hand.
const OPERATOR_STATUSES: [Status; 3] = [Status::Delisted, Status::FalsePositive, Status::Active];

#[derive(Deserialize)]
pub(super) struct StatusForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
}

/// `POST /indicators/{id}/status`: as `POST /api/v1/indicators/{id}/status`
/// (delist, false positive, or back to active, with a reason); back to the
/// indicator's page.
pub(super) async fn set_status(
    State(st): State<ApiState>,
    c: Console,
    Path(id): Path<i64>,
    Form(f): Form<StatusForm>,
) -> Response {
    let title = c.tr("Change the status", "状態を変更");
    let back = format!("/indicators/{id}");
    let Some(status) = f
        .status
        .parse::<Status>()
        .ok()
        .filter(|s| OPERATOR_STATUSES.contains(s))
    else {
        return c.message(
            StatusCode::BAD_REQUEST,
            title,
            &[c.tr(
                "Choose delisted, false-positive or active.",
                "delisted、false-positive、active のいずれかを選んでください。",
            )
            .to_string()],
            &back,
        );
    };
    if f.reason.trim().is_empty() || f.reason.chars().count() > MOST_REASON {
        return c.message(
            StatusCode::BAD_REQUEST,
            title,
            &[c.tr(
                "Give a reason of at most 500 characters.",
                "理由を 500 文字以内で入力してください。",
            )
            .to_string()],
            &back,
        );
    }
    let (k, who) = (st.kanki.clone(), c.who.actor());
    let reason = f.reason.trim().to_string();
    let done = tokio::task::spawn_blocking(move || {
        k.store.set_status(id, status, &reason, &who, Utc::now())
    })
    .await;
    match done {
        Ok(Ok(_)) => {
            st.list_changed.notify_one();
            Redirect::to(&back).into_response()
        }
        Ok(Err(e)) => c.message(
            StatusCode::UNPROCESSABLE_ENTITY,
            title,
            &[e.to_string()],
            &back,
        ),
        Err(e) => c.failed(&e.to_string()),
    }
}

/// The status form of an indicator's page.
fn status_form(c: &Console, i: &Indicator) -> String {
    let choices: String = OPERATOR_STATUSES
        .iter()
        .filter(|s| **s != i.status)
        .map(|s| format!("<option value=\"{0}\">{0}</option>", s.as_str()))
        .collect();
    format!(
        "<form method=\"post\" action=\"/indicators/{id}/status\" id=\"status-form\">{csrf}\
<label>{sl} <select name=\"status\" id=\"status-choice\">{choices}</select></label>\
<label>{rl} <input name=\"reason\" id=\"status-reason\" required maxlength=\"{MOST_REASON}\"></label>\
<button id=\"status-apply\">{apply}</button></form>",
        id = i.id,
        csrf = c.csrf_field(),
        sl = c.tr("New status", "新しい状態"),
        rl = c.tr("Reason", "理由"),
        apply = c.tr("Change", "変更"),
    )
}

/// The history section: each change, newest first, with who made it.
fn history_section(c: &Console, history: &[IndicatorChange]) -> String {
    let mut out = format!(
        "<section id=\"history\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("History", "履歴"),
        c.tr("When (UTC)", "日時 (UTC)"),
        c.tr("Change", "変更"),
        c.tr("By", "実施者"),
        c.tr("Detail", "詳細"),
    );
    for h in history {
        out.push_str(&format!(
            "<tr class=\"change\"><td>{}</td><td>{}</td><td class=\"actor\">{}</td><td>{}</td></tr>",
            when(h.at),
            esc(&h.change),
            esc(h.actor.as_deref().unwrap_or("—")),
            esc(h.detail.as_deref().unwrap_or("")),
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The most changes an indicator's page shows (the API gives more).
const SHOWN_HISTORY: u32 = 50;

/// The newest crawl with a node at `url`: its id, the profile of that
/// node's tree, and its report.
fn newest_crawl(
    k: &kanki_service::Kanki,
    url: &str,
) -> Result<Option<(i64, String, serde_json::Value)>, kanki_store::StoreError> {
    let crawls = k.store.crawl();
    let Some((id, node)) = crawls.nodes_for_url(url, 1)?.into_iter().next() else {
        return Ok(None);
    };
    Ok(crawls.get_crawl(id)?.and_then(|(_, report)| {
        serde_json::from_str(&report)
            .ok()
            .map(|r| (id, node.profile, r))
    }))
}

/// `GET /indicators/{id}`: one indicator, its feed rows, evidence,
/// warning-page hits per day and history.
pub(super) async fn indicator(
    State(st): State<ApiState>,
    c: Console,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return c.message(
            StatusCode::BAD_REQUEST,
            c.tr("Indicator", "指標"),
            &[format!(
                "{} {:?}",
                c.tr("Not an indicator number:", "指標番号ではありません:"),
                id.chars().take(40).collect::<String>()
            )],
            "/indicators",
        );
    };
    let k = st.kanki.clone();
    let hits_allowed = c.may(Permission::ViewCounts);
    let found = tokio::task::spawn_blocking(move || {
        let ind = k.store.get_indicator(id)?;
        let history = match &ind {
            Some(_) => k.store.indicator_history(id, SHOWN_HISTORY)?,
            None => Vec::new(),
        };
        let hits = if hits_allowed && ind.is_some() {
            k.store.warning().hits(&HitsQuery {
                indicator: Some(id),
                limit: Some(31),
                ..HitsQuery::default()
            })?
        } else {
            Vec::new()
        };
        // The newest crawl that reached it, for its evidence chain.
        let crawl = match &ind {
            Some(i) => newest_crawl(&k, &i.value)?,
            None => None,
        };
        Ok::<_, kanki_store::StoreError>((ind, hits, crawl, history))
    })
    .await;
    let (ind, hits, crawl, history) = match found {
        Ok(Ok((Some(i), hits, crawl, history))) => (i, hits, crawl, history),
        Ok(Ok((None, ..))) => {
            return c.message(
                StatusCode::NOT_FOUND,
                c.tr("Indicator", "指標"),
                &[format!(
                    "{} #{id}",
                    c.tr("No such indicator:", "該当する指標がありません:")
                )],
                "/indicators",
            );
        }
        Ok(Err(e)) => return c.failed(&e.to_string()),
        Err(e) => return c.failed(&e.to_string()),
    };
    let mut body = summary(&c, &ind);
    if c.may_call(&Method::POST, "/indicators/{id}/status") {
        body.push_str(&status_form(&c, &ind));
    }
    body.push_str(&format!(
        "<section id=\"sources\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Feed rows", "フィードの行"),
        c.tr("Source", "情報源"),
        c.tr("Its id", "情報源の ID"),
        c.tr("Reference", "参照"),
        c.tr("Category", "種別"),
        c.tr("Confidence", "確度"),
        c.tr("Seen (UTC)", "確認 (UTC)"),
    ));
    for s in &ind.sources {
        body.push_str(&format!(
            "<tr class=\"source\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td></tr>",
            esc(&s.source),
            esc(s.source_id.as_deref().unwrap_or("—")),
            s.reference_url.as_deref().map_or_else(|| "—".into(), link_or_text),
            s.category.as_str(),
            s.confidence,
            when(s.first_seen),
            when(s.last_seen),
        ));
    }
    body.push_str("</tbody></table></section>");
    body.push_str(&format!(
        "<section id=\"evidence\"><h2>{}</h2><ul>",
        c.tr("Evidence", "証拠")
    ));
    for e in &ind.evidence {
        body.push_str(&format!(
            "<li class=\"evidence\"><strong>{}</strong> {} {}{}</li>",
            esc(&e.kind),
            link_or_text(&e.uri),
            e.note
                .as_deref()
                .map_or(String::new(), |n| format!("· {}", esc(n))),
            e.sha256.as_deref().map_or(String::new(), |h| format!(
                " · sha256 <code>{}</code>",
                esc(h)
            )),
        ));
    }
    body.push_str("</ul></section>");
    body.push_str(&super::crawl_tree::section(&c, crawl, &ind.value));
    if hits_allowed {
        body.push_str(&format!(
            "<section id=\"hits\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
            c.tr("Warning-page hits per day", "警告ページの表示数（日別）"),
            c.tr("Day", "日"),
            c.tr("Shown", "表示"),
            c.tr("Proceeded once", "一度だけ進んだ"),
        ));
        for h in &hits {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                h.day, h.hits, h.proceeds
            ));
        }
        body.push_str("</tbody></table></section>");
    }
    body.push_str(&history_section(&c, &history));
    c.page(&format!("{} #{}", c.tr("Indicator", "指標"), ind.id), &body)
}

fn summary(c: &Console, i: &Indicator) -> String {
    format!(
        "<section id=\"summary\"><dl><dt>{}</dt><dd id=\"value\">{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd>\
<dt>{}</dt><dd id=\"status\">{}{}</dd><dt>TLP</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{} – {}</dd><dt>{}</dt><dd>{}</dd></dl></section>",
        c.tr("Value", "値"),
        esc(&i.value),
        c.tr("Kind", "形式"),
        i.kind.as_str(),
        c.tr("Category", "種別"),
        i.category.as_str(),
        c.tr("Status", "状態"),
        i.status.as_str(),
        i.status_reason
            .as_deref()
            .map_or(String::new(), |r| format!(" ({})", esc(r))),
        i.tlp.as_str(),
        c.tr("Confidence", "確度"),
        i.confidence,
        c.tr("Seen (UTC)", "確認 (UTC)"),
        when(i.first_seen),
        when(i.last_seen),
        c.tr("Tags", "タグ"),
        esc(&i.tags.join(", ")),
    )
}

/// `GET /false-positives`: the open reports from the warning page, each
/// with approve and reject for a curator.
pub(super) async fn false_positives(State(st): State<ApiState>, c: Console) -> Response {
    let k = st.kanki.clone();
    let q = ReportQuery {
        status: Some(ReportStatus::Open),
        after: None,
        limit: Some(200),
    };
    let reports = match c.blocking(move || k.store.warning().reports(&q)).await {
        Ok(r) => r,
        Err(failed) => return failed,
    };
    let curate = c.may_call(&Method::POST, "/false-positives/{id}/review");
    let mut body = String::new();
    if reports.is_empty() {
        body.push_str(&format!(
            "<p id=\"no-reports\">{}</p>",
            c.tr("No open report.", "未処理の報告はありません。")
        ));
    }
    for r in &reports {
        let indicators: String = r
            .indicator_ids
            .iter()
            .map(|id| format!("<a href=\"/indicators/{id}\">#{id}</a> "))
            .collect();
        body.push_str(&format!(
            "<section class=\"report\" id=\"report-{id}\"><h2>#{id} {name}</h2><dl><dt>URL</dt><dd><span class=\"inert\">{url}</span></dd><dt>{il}</dt><dd>{indicators}</dd>\
<dt>{nl}</dt><dd class=\"note\">{note}</dd><dt>{rl}</dt><dd>{at}</dd></dl>",
            id = r.id,
            name = esc(&r.name),
            url = esc(&r.url),
            il = c.tr("Indicators", "指標"),
            nl = c.tr("Reporter's note", "報告者のメモ"),
            note = esc(&r.note),
            rl = c.tr("Reported (UTC)", "報告日時 (UTC)"),
            at = when(r.reported_at),
        ));
        if curate {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/false-positives/{id}/review\">{csrf}\
<label>{nl} <input name=\"note\" id=\"review-note-{id}\" required maxlength=\"500\"></label> \
<button name=\"outcome\" value=\"false-positive\" id=\"approve-{id}\">{approve}</button> \
<button name=\"outcome\" value=\"confirmed\" id=\"reject-{id}\">{reject}</button></form>",
                id = r.id,
                csrf = c.csrf_field(),
                nl = c.tr("Review note", "判断メモ"),
                approve = c.tr("Approve: delist it", "承認: リストから外す"),
                reject = c.tr("Reject: the listing stands", "却下: 掲載を続ける"),
            ));
        }
        body.push_str("</section>");
    }
    c.page(c.tr("False-positive reports", "誤検知の報告"), &body)
}

#[derive(Deserialize)]
pub(super) struct ReviewForm {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    note: String,
}

/// `POST /false-positives/{id}/review`: as
/// `POST /api/v1/false-positives/{id}/review`.
pub(super) async fn review(
    State(st): State<ApiState>,
    c: Console,
    Path(id): Path<i64>,
    Form(f): Form<ReviewForm>,
) -> Response {
    let title = c.tr("False-positive reports", "誤検知の報告");
    let Ok(outcome) = f.outcome.parse::<ReportOutcome>() else {
        return c.message(
            StatusCode::BAD_REQUEST,
            title,
            &[
                c.tr("Choose approve or reject.", "承認か却下を選んでください。")
                    .to_string(),
            ],
            "/false-positives",
        );
    };
    if f.note.trim().is_empty() {
        return c.message(
            StatusCode::BAD_REQUEST,
            title,
            &[c.tr("Write a review note.", "判断メモを入力してください。")
                .to_string()],
            "/false-positives",
        );
    }
    let (k, who) = (st.kanki.clone(), c.who.actor());
    let note: String = f.note.chars().take(500).collect();
    let done = tokio::task::spawn_blocking(move || k.review_report(id, outcome, &note, &who)).await;
    match done {
        Ok(Ok(r)) => {
            if r.outcome == Some(ReportOutcome::FalsePositive) {
                st.list_changed.notify_one();
            }
            c.message(
                StatusCode::OK,
                title,
                &[format!("#{id}: {}", r.outcome.map_or("", |o| o.as_str()))],
                "/false-positives",
            )
        }
        Ok(Err(e)) => c.message(
            StatusCode::UNPROCESSABLE_ENTITY,
            title,
            &[e.to_string()],
            "/false-positives",
        ),
        Err(e) => c.failed(&e.to_string()),
    }
}
