//! The audit log: a search by operator, action, ground, what a record
//! mentions (a subscriber, an address) and time, newest first; the chain's
//! verification (streamed, in bounded memory); and the same records as
//! JSON from `GET /api/v1/audit` for export.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kanki_audit::Ground;
use kanki_audit::{Broken, Verified};
use kanki_html::esc;
use kanki_service::Kanki;

use super::Console;
use super::indicators::select;
use super::query::{AuditQuery, moment_field};
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
    let mut body = format!(
        "<form id=\"filter\" class=\"filters\" method=\"get\" action=\"/audit\" role=\"search\">\
<label>{actor_l} <input name=\"actor\" value=\"{actor}\" maxlength=\"200\"></label>\
<label>{action_l} <input name=\"action\" value=\"{action}\" maxlength=\"200\" placeholder=\"who\"></label>{ground}\
<label>{mentions_l} <input name=\"mentions\" data-search value=\"{mentions}\" maxlength=\"200\" placeholder=\"/\"></label>\
<label>{purpose_l} <input name=\"purpose\" value=\"{purpose}\" maxlength=\"200\"></label>\
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
        purpose_l = c.tr("Purpose contains", "目的に含む語"),
        purpose = esc(q.purpose.as_deref().unwrap_or("")),
        since_l = c.tr("From (UTC)", "開始（UTC）"),
        since = esc(&moment_field(q.since)),
        until_l = c.tr("Until (UTC)", "終了（UTC）"),
        until = esc(&moment_field(q.until)),
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

/// The console's chain check: one at a time, run in the background with
/// its progress, so a log of millions of records shows how far it is
/// rather than holding a request open.
#[derive(Default)]
pub struct Checks(Mutex<Check>);

/// The last check started.
#[derive(Clone, Default)]
struct Check {
    /// Its number (0: none yet).
    id: u64,
    /// The record reached, and the head when it started.
    reached: i64,
    head: i64,
    started: Option<Instant>,
    /// `None` while it runs.
    result: Option<Result<Result<Verified, Broken>, String>>,
}

impl Checks {
    fn now(&self) -> Check {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts a check unless one runs; the number of the one that runs.
    fn start(self: &Arc<Self>, k: Arc<Kanki>) -> u64 {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if c.id > 0 && c.result.is_none() {
            return c.id;
        }
        let head = k.audit_head().map_or(0, |(seq, _)| seq);
        *c = Check {
            id: c.id + 1,
            reached: 0,
            head,
            started: Some(Instant::now()),
            result: None,
        };
        let id = c.id;
        let checks = self.clone();
        std::thread::spawn(move || {
            let mut progress = |seq: i64| {
                checks.0.lock().unwrap_or_else(|p| p.into_inner()).reached = seq;
            };
            let result = k
                .verify_audit_with(&[], &mut progress)
                .map_err(|e| e.to_string());
            let mut c = checks.0.lock().unwrap_or_else(|p| p.into_inner());
            if c.id == id {
                c.result = Some(result);
            }
        });
        id
    }
}

/// How long a request that starts a check waits for its result before it
/// shows the progress instead.
const WAIT_FOR_RESULT: Duration = Duration::from_secs(2);

/// `GET /audit/verify`: starts a check of the whole chain, record by record
/// (as `GET /api/v1/audit/verify`), in bounded memory, and shows its
/// result, or its progress until it ends. `?check=N` shows check N.
pub(super) async fn verify(
    State(st): State<ApiState>,
    c: Console,
    RawQuery(raw): RawQuery,
) -> Response {
    let asked: Option<u64> = raw
        .as_deref()
        .and_then(|q| q.strip_prefix("check="))
        .and_then(|n| n.parse().ok());
    let checks = st.audit_checks.clone();
    let id = match asked {
        Some(id) => id,
        None => checks.start(st.kanki.clone()),
    };
    let waited = Instant::now();
    let mut check = checks.now();
    while check.id == id
        && check.result.is_none()
        && waited.elapsed() < WAIT_FOR_RESULT
        && asked.is_none()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        check = checks.now();
    }
    let title = c.tr("Audit chain", "監査チェーン");
    if check.id != id {
        return c.message(
            StatusCode::NOT_FOUND,
            title,
            &[c.tr(
                "That check is not the last one; verify again.",
                "その検証は最新ではありません。もう一度検証してください。",
            )
            .to_string()],
            "/audit/verify",
        );
    }
    let body = match &check.result {
        None => {
            let secs = check.started.map_or(0, |s| s.elapsed().as_secs());
            let body = match c.lang {
                kanki_html::Lang::En => format!(
                    "<p id=\"checking\" role=\"status\"><progress id=\"check-progress\" max=\"{head}\" value=\"{reached}\"></progress> Verifying: record {reached} of {head}, {secs} s so far. This page follows it.</p>",
                    head = check.head,
                    reached = check.reached,
                ),
                kanki_html::Lang::Ja => format!(
                    "<p id=\"checking\" role=\"status\"><progress id=\"check-progress\" max=\"{head}\" value=\"{reached}\"></progress> 検証中: {head} 件中 {reached} 件目（{secs} 秒経過）。このページは自動で更新されます。</p>",
                    head = check.head,
                    reached = check.reached,
                ),
            };
            return c.page_reloading_to(title, &body, 1, &format!("/audit/verify?check={id}"));
        }
        Some(Err(e)) => return c.failed(e),
        Some(Ok(Ok(v))) => match c.lang {
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
        Some(Ok(Err(b))) => match c.lang {
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
        "{body}<p><a href=\"/audit/verify\" id=\"verify-again\">{}</a> · <a href=\"/audit\">{}</a></p>",
        c.tr("Verify again", "もう一度検証する"),
        c.tr("Back to the audit log", "監査ログに戻る")
    );
    c.page(title, &body)
}
