//! Indicators: the search, an indicator's page (its sources' rows, its
//! evidence, the warning page's hits per day) and the false-positive
//! queue with approve and reject.

use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use kanki_html::{esc, safe_href};
use kanki_indicators::{Category, Indicator, Kind, Status};
use kanki_operators::Permission;
use kanki_store::{HitsQuery, ReportOutcome, ReportQuery, ReportStatus};
use serde::Deserialize;

use super::Console;
use super::query::IndicatorQuery;
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
<label>{sl} <input name=\"source\" value=\"{sv}\" maxlength=\"200\"></label>{cat}{status}{kind}\
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
        apply = c.tr("Search", "検索"),
        total_l = c.tr("Matching", "該当"),
        total = page.total,
        more = if page.total_at_least { "+" } else { "" },
    );
    body.push_str(&format!(
        "<table id=\"indicators\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">TLP</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Value", "値"),
        c.tr("Category", "種別"),
        c.tr("Status", "状態"),
        c.tr("Sources", "情報源"),
        c.tr("Last seen (UTC)", "最終確認 (UTC)"),
    ));
    for i in &page.items {
        let sources: Vec<&str> = i.sources.iter().map(|s| s.source.as_str()).collect();
        body.push_str(&format!(
            "<tr><td><a href=\"/indicators/{id}\">#{id}</a></td><td class=\"value\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.value),
            i.category.as_str(),
            i.status.as_str(),
            i.tlp.as_str(),
            esc(&sources.join(", ")),
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
    c.page(c.tr("Indicators", "指標"), &body)
}

/// `GET /indicators/{id}`: one indicator, its feed rows, evidence and
/// warning-page hits per day.
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
        Ok::<_, kanki_store::StoreError>((ind, hits, crawl))
    })
    .await;
    let (ind, hits, crawl) = match found {
        Ok(Ok((Some(i), hits, crawl))) => (i, hits, crawl),
        Ok(Ok((None, _, _))) => {
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
