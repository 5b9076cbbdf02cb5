//! The audit log: a search by operator, action, ground, what a record
//! mentions (a subscriber, an address) and time, newest first; the chain's
//! verification (streamed, in bounded memory); and the same records as
//! JSON from `GET /api/v1/audit` for export.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use kanki_audit::Ground;
use kanki_html::esc;

use super::Console;
use super::indicators::select;
use super::query::AuditQuery;
use crate::ApiState;

/// The most characters of a record's input or result shown in the table
/// (the JSON export has them whole).
const SHOWN_CHARS: usize = 300;

fn clipped(s: &str) -> String {
    let mut out: String = s.chars().take(SHOWN_CHARS).collect();
    if s.chars().count() > SHOWN_CHARS {
        out.push('…');
    }
    esc(&out)
}

/// `GET /audit`: the search.
pub(super) async fn search(
    State(st): State<ApiState>,
    c: Console,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match AuditQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(problems) => {
            return c.bad_query(
                c.tr(
                    "Audit log: the query is not valid",
                    "監査ログ: 指定が正しくありません",
                ),
                &problems,
                "/audit",
            );
        }
    };
    let filter = q.filter();
    let k = st.kanki.clone();
    let found = c.blocking(move || {
        let mut out = Vec::new();
        k.store
            .directory()
            .audit_records(&filter, &mut |r| out.push(r))
            .map(|()| out)
    });
    let records = match found.await {
        Ok(r) => r,
        Err(failed) => return failed,
    };
    let day = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or(String::new(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
    };
    let mut body = format!(
        "<form id=\"filter\" class=\"filters\" method=\"get\" action=\"/audit\" role=\"search\">\
<label>{actor_l} <input name=\"actor\" value=\"{actor}\" maxlength=\"200\"></label>\
<label>{action_l} <input name=\"action\" value=\"{action}\" maxlength=\"200\" placeholder=\"who\"></label>{ground}\
<label>{mentions_l} <input name=\"mentions\" data-search value=\"{mentions}\" maxlength=\"200\" placeholder=\"/\"></label>\
<label>{since_l} <input name=\"since\" value=\"{since}\" placeholder=\"2026-12-01\"></label>\
<label>{until_l} <input name=\"until\" value=\"{until}\" placeholder=\"2026-12-31\"></label>\
<button id=\"apply-filter\">{apply}</button></form>\
<p>{newest} <a id=\"export\" href=\"/api/v1/audit?{api}\">{export}</a></p>\
<form id=\"verify\" method=\"get\" action=\"/audit/verify\"><button id=\"verify-chain\">{verify}</button></form>",
        actor_l = c.tr("Operator or token", "オペレーター・トークン"),
        actor = esc(q.actor.as_deref().unwrap_or("")),
        action_l = c.tr("Action", "操作"),
        action = esc(q.action.as_deref().unwrap_or("")),
        ground = select(
            "ground",
            c.tr("Ground", "法的根拠"),
            c.tr("any", "すべて"),
            Ground::ALL.iter().map(|g| g.as_str()),
            q.ground.map(|g| g.as_str()),
        ),
        mentions_l = c.tr(
            "Mentions (subscriber, address)",
            "含む語（契約者、アドレス）"
        ),
        mentions = esc(q.mentions.as_deref().unwrap_or("")),
        since_l = c.tr("From (UTC)", "開始（UTC）"),
        since = esc(&day(q.since)),
        until_l = c.tr("Until (UTC)", "終了（UTC）"),
        until = esc(&day(q.until)),
        apply = c.tr("Search", "検索"),
        newest = esc(&match c.lang {
            kanki_html::Lang::En => format!("Matching records, newest first, {} a page.", q.size),
            kanki_html::Lang::Ja =>
                format!("条件に合う記録を新しい順に {} 件ずつ表示します。", q.size),
        }),
        api = esc(&q.api_query()),
        export = c.tr("These records as JSON", "この記録を JSON で"),
        verify = c.tr("Verify the chain", "チェーンを検証する"),
    );
    body.push_str(&format!(
        "<table id=\"records\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("At (UTC)", "日時 (UTC)"),
        c.tr("Actor", "実行者"),
        c.tr("Action", "操作"),
        c.tr("Ground", "法的根拠"),
        c.tr("Purpose", "目的"),
        c.tr("Input", "入力"),
        c.tr("Result", "結果"),
    ));
    // The store gives the page oldest first.
    for r in records.iter().rev() {
        let e = &r.entry;
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            r.seq,
            e.at.format("%Y-%m-%d %H:%M:%S"),
            esc(&e.actor),
            esc(&e.action),
            e.ground.map_or("—", Ground::as_str),
            esc(&e.purpose),
            clipped(&e.input),
            clipped(&e.result),
        ));
    }
    body.push_str("</tbody></table>");
    // A full page may have older records after it: they are those before
    // its oldest.
    if records.len() == q.size as usize
        && let Some(oldest) = records.first()
    {
        body.push_str(&format!(
            "<p><a id=\"older\" rel=\"next\" href=\"/audit?{}\">{}</a></p>",
            esc(&q.with_before(Some(oldest.seq))),
            c.tr("Older records", "さらに古い記録")
        ));
    }
    if records.is_empty() {
        body.push_str(&format!(
            "<p id=\"none\">{}</p>",
            c.tr("No record matches.", "該当する記録はありません。")
        ));
    }
    c.page(c.tr("Audit log", "監査ログ"), &body)
}

/// `GET /audit/verify`: the whole chain checked record by record (as
/// `GET /api/v1/audit/verify`), in bounded memory.
pub(super) async fn verify(State(st): State<ApiState>, c: Console) -> Response {
    let k = st.kanki.clone();
    let checked = match c.blocking(move || k.verify_audit(&[])).await {
        Ok(v) => v,
        Err(failed) => return failed,
    };
    let body = match checked {
        Ok(v) => match c.lang {
            kanki_html::Lang::En => format!(
                "<p id=\"intact\" role=\"status\">The chain is intact: {} records verified. Its head (the last record's hash): <code id=\"head\">{}</code></p>",
                v.records,
                esc(&v.head)
            ),
            kanki_html::Lang::Ja => format!(
                "<p id=\"intact\" role=\"status\">チェーンは改ざんされていません: {} 件を検証しました。先頭（最後の記録のハッシュ）: <code id=\"head\">{}</code></p>",
                v.records,
                esc(&v.head)
            ),
        },
        Err(b) => match c.lang {
            kanki_html::Lang::En => format!(
                "<p id=\"broken\" role=\"alert\">The chain is broken at record {}: {}</p>",
                b.seq,
                esc(&b.reason)
            ),
            kanki_html::Lang::Ja => format!(
                "<p id=\"broken\" role=\"alert\">チェーンは記録 {} で壊れています: {}</p>",
                b.seq,
                esc(&b.reason)
            ),
        },
    };
    let body = format!(
        "{body}<p><a href=\"/audit\">{}</a></p>",
        c.tr("Back to the audit log", "監査ログに戻る")
    );
    c.page(c.tr("Audit chain", "監査チェーン"), &body)
}
