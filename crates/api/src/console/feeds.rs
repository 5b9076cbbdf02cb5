//! Feeds and sensors: each scheduled feed's last run (rows taken, rejects
//! by reason), the run under way with its progress, its next run, and a
//! button to run it now; the latest report ingests (uploads, the watched
//! directory, the sensor) with their counts and rejects; the watched
//! directory's files and the sensor's counters; and a report upload with a
//! progress bar, made through `POST /api/v1/events`. The same data as
//! `GET /api/v1/feeds`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use kanki_html::esc;

use super::Console;
use crate::ApiState;
use crate::feeds::{Count, FeedState, IngestState, InputsState, inputs_now};

/// How often the page reloads while a feed runs (seconds).
const RELOAD_WHILE_RUNNING: u32 = 2;

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "—".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn rejects(c: &Console, r: &BTreeMap<String, u64>) -> String {
    if r.is_empty() {
        return c.tr("none", "なし").to_string();
    }
    let items: Vec<String> = r
        .iter()
        .map(|(reason, n)| format!("<li>{}: {n}</li>", esc(reason)))
        .collect();
    format!("<ul class=\"rejects\">{}</ul>", items.join(""))
}

fn count(c: &Count) -> String {
    if c.more {
        format!("{}+", c.count)
    } else {
        c.count.to_string()
    }
}

/// `GET /feeds`.
pub(super) async fn page(State(st): State<ApiState>, c: Console) -> Response {
    let state = st.clone();
    let now = match c
        .blocking(move || inputs_now(&state, &state.kanki).map_err(|e| e.1))
        .await
    {
        Ok(n) => n,
        Err(failed) => return failed,
    };
    let mut body = feeds_table(&c, &now);
    if c.may_call(&Method::POST, "/api/v1/events") {
        body.push_str(&upload_form(&c));
    }
    body.push_str(&ingests_table(&c, &now.ingests));
    body.push_str(&watched_and_sensor(&c, &now));
    let title = c.tr("Feeds and sensors", "フィードとセンサー");
    if st.inputs.any_running() {
        c.page_reloading(title, &body, RELOAD_WHILE_RUNNING)
    } else {
        c.page(title, &body)
    }
}

fn feeds_table(c: &Console, now: &InputsState) -> String {
    let may_run = c.may_call(&Method::POST, "/feeds/{name}/run");
    let mut out = format!(
        "<section id=\"feeds\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Indicator feeds", "指標フィード"),
        c.tr("Feed", "フィード"),
        c.tr("Source and schedule", "取得元と間隔"),
        c.tr("Now", "現在"),
        c.tr("Last run (UTC)", "前回 (UTC)"),
        c.tr("Rows taken", "取り込んだ行"),
        c.tr("Rejected, by reason", "除外（理由別）"),
        c.tr("Next run (UTC)", "次回 (UTC)"),
    );
    for f in &now.feeds {
        out.push_str(&feed_row(c, f, may_run));
    }
    if now.feeds.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"7\">{}</td></tr>",
            c.tr(
                "No feed is configured ([[feeds]] in the configuration).",
                "フィードは設定されていません（設定の [[feeds]]）。"
            )
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

fn feed_row(c: &Console, f: &FeedState, may_run: bool) -> String {
    let state = if !f.enabled {
        c.tr("disabled", "無効").to_string()
    } else if let Some(r) = &f.run.running {
        format!(
            "<progress aria-label=\"{label}\"></progress> <span class=\"running\">{} {} · {} {}</span>",
            r.rows_read,
            c.tr("rows read", "行を読み込み"),
            r.skipped,
            c.tr("skipped", "行を除外"),
            label = c.tr("Running", "実行中"),
        )
    } else if let Some(e) = &f.run.last_error {
        format!(
            "<span class=\"error\">{} {}: {}</span>",
            c.tr("failed", "失敗"),
            when(Some(e.at)),
            esc(&e.error)
        )
    } else if let Some(at) = f.run.last_not_modified {
        format!("{} {}", c.tr("not modified", "更新なし"), when(Some(at)))
    } else {
        c.tr("waiting", "待機中").to_string()
    };
    let last = f.last_import.as_ref().map_or_else(
        || (c.tr("never", "なし").to_string(), "—".to_string()),
        |i| {
            (
                format!("{} · {}", when(Some(i.started_at)), esc(&i.status)),
                match c.lang {
                    kanki_html::Lang::En => format!(
                        "{} read: {} added, {} updated, {} unchanged",
                        i.rows_read, i.added, i.updated, i.unchanged
                    ),
                    kanki_html::Lang::Ja => format!(
                        "{} 行: 追加 {}、更新 {}、変更なし {}",
                        i.rows_read, i.added, i.updated, i.unchanged
                    ),
                },
            )
        },
    );
    let run = if may_run && f.enabled && f.run.running.is_none() {
        format!(
            "<form method=\"post\" action=\"/feeds/{}/run\">{}<button>{}</button></form>",
            url::form_urlencoded::byte_serialize(f.name.as_bytes()).collect::<String>(),
            c.csrf_field(),
            c.tr("Run now", "今すぐ実行"),
        )
    } else {
        String::new()
    };
    format!(
        "<tr class=\"feed\"><th scope=\"row\">{}</th><td><code>{}</code> {} · {} {}</td><td class=\"now\">{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{run}</td></tr>",
        esc(&f.name),
        esc(&f.source),
        f.format,
        c.tr("every", "間隔"),
        esc(&f.every),
        last.0,
        last.1,
        rejects(c, &f.rejects),
        when(f.run.next_run),
    )
}

fn upload_form(c: &Console) -> String {
    let mut formats = String::new();
    for f in kanki_events::Format::ALL {
        formats.push_str(&format!("<option value=\"{0}\">{0}</option>", f.as_str()));
    }
    let csrf = c.who.csrf.as_deref().unwrap_or("");
    format!(
        "<section id=\"upload\"><h2>{}</h2><form id=\"upload-form\" data-csrf=\"{}\">\
<label>{} <input type=\"file\" name=\"file\" id=\"report-file\" required></label> \
<label>{} <select name=\"format\" id=\"report-format\">{formats}</select></label> \
<button id=\"upload-report\">{}</button></form>\
<p><progress id=\"upload-progress\" max=\"100\" value=\"0\" hidden></progress> <span id=\"upload-status\" role=\"status\"></span></p>\
<noscript><p>{}</p></noscript></section>{}",
        c.tr("Upload a report", "レポートのアップロード"),
        esc(csrf),
        c.tr("Report file", "レポートファイル"),
        c.tr("Format", "形式"),
        c.tr("Upload and ingest", "アップロードして取り込む"),
        c.tr(
            "The upload needs JavaScript; without it, use POST /api/v1/events or the watched directory.",
            "アップロードには JavaScript が必要です。使えない場合は POST /api/v1/events か監視ディレクトリを使ってください。"
        ),
        c.script(&upload_script(c)),
    )
}

/// Sends the chosen file to `POST /api/v1/events` with the session's CSRF
/// header, showing the upload's progress, then the ingest's counts.
fn upload_script(c: &Console) -> String {
    let uploading = c.tr("Uploading…", "アップロード中…");
    let ingesting = c.tr("Ingesting…", "取り込み中…");
    let done = c.tr("Ingested: events stored", "取り込み完了: 保存したイベント");
    let failed = c.tr("Refused:", "拒否されました:");
    format!(
        "(function(){{var f=document.getElementById('upload-form');if(!f)return;\
var bar=document.getElementById('upload-progress'),st=document.getElementById('upload-status');\
f.addEventListener('submit',function(e){{e.preventDefault();var file=document.getElementById('report-file').files[0];if(!file)return;\
var fmt=document.getElementById('report-format').value;var x=new XMLHttpRequest();\
x.open('POST','/api/v1/events?format='+encodeURIComponent(fmt)+'&name='+encodeURIComponent(file.name));\
x.setRequestHeader('X-CSRF-Token',f.dataset.csrf);bar.hidden=false;bar.value=0;st.textContent={uploading:?};\
x.upload.onprogress=function(p){{if(p.lengthComputable){{bar.value=Math.round(100*p.loaded/p.total)}}}};\
x.upload.onload=function(){{bar.value=100;st.textContent={ingesting:?}}};\
x.onload=function(){{var r;try{{r=JSON.parse(x.responseText)}}catch(_){{r={{}}}}\
if(x.status===200){{st.textContent={done:?}+' '+r.events+' / '+r.records;setTimeout(function(){{location.reload()}},1500)}}\
else{{st.textContent={failed:?}+' '+(r.error||x.status)}}}};\
x.onerror=function(){{st.textContent={failed:?}}};x.send(file)}})}})();"
    )
}

fn ingests_table(c: &Console, ingests: &[IngestState]) -> String {
    let mut out = format!(
        "<section id=\"ingests\"><h2>{}</h2><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr(
            "Reports and sensor events, latest first",
            "レポートとセンサーのイベント（新しい順）"
        ),
        c.tr("Started (UTC)", "開始 (UTC)"),
        c.tr("Input", "入力"),
        c.tr("State", "状態"),
        c.tr("Records", "レコード"),
        c.tr("Stored · duplicates · attributed", "保存・重複・特定"),
        c.tr("Rejected, by reason", "除外（理由別）"),
    );
    for i in ingests {
        out.push_str(&format!(
            "<tr class=\"ingest\"><td>{}</td><td>{}</td><td>{} · <code>{}</code>{}</td><td>{}</td><td>{}</td><td>{} · {} · {}</td><td>{}</td></tr>",
            i.run.id,
            when(Some(i.run.started_at)),
            esc(&i.run.format),
            esc(&i.run.origin),
            i.run
                .report_type
                .as_deref()
                .map_or(String::new(), |t| format!(" · {}", esc(t))),
            esc(&i.run.status),
            i.records,
            i.events,
            i.duplicates,
            i.attributed,
            rejects(c, &i.rejects),
        ));
    }
    if ingests.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"7\">{}</td></tr>",
            c.tr("Nothing ingested yet.", "まだ何も取り込んでいません。")
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

fn watched_and_sensor(c: &Console, now: &InputsState) -> String {
    let watched = now.watched.as_ref().map_or_else(
        || {
            c.tr(
                "No watched directory (removal.watch_dir).",
                "監視ディレクトリはありません（removal.watch_dir）。",
            )
            .to_string()
        },
        |w| {
            format!(
                "<dl id=\"watched\"><dt>{}</dt><dd><code>{}</code></dd><dt>{}</dt><dd id=\"waiting\">{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd></dl>",
                c.tr("Directory", "ディレクトリ"),
                esc(&w.path),
                c.tr("Waiting", "待機中"),
                count(&w.waiting),
                c.tr("Done", "完了"),
                count(&w.done),
                c.tr("Failed", "失敗"),
                count(&w.failed),
            )
        },
    );
    let sensor = now.sensor.map_or_else(
        || {
            c.tr(
                "kanki's sensor is not listening (sensor.listen).",
                "kanki のセンサーは動作していません（sensor.listen）。",
            )
            .to_string()
        },
        |s| {
            format!(
                "<dl id=\"sensor\"><dt>{}</dt><dd id=\"sensor-connections\">{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd></dl>",
                c.tr("Connections", "接続"),
                s.connections,
                c.tr("Recorded as events", "イベントとして記録"),
                s.recorded,
                c.tr("Turned away by the rate limit", "レート制限で拒否"),
                s.rate_limited,
            )
        },
    );
    format!(
        "<section id=\"watch\"><h2>{}</h2>{watched}</section><section id=\"sensors\"><h2>{}</h2>{sensor}<p>{} {}</p></section>",
        c.tr("Watched directory", "監視ディレクトリ"),
        c.tr(
            "Sensor (since the server started)",
            "センサー（サーバー起動以降）"
        ),
        c.tr("As of", "時点:"),
        when(Some(now.at)),
    )
}

/// `POST /feeds/{name}/run`: as `POST /api/v1/feeds/{name}/run`; back to
/// the page, where the run shows its progress.
pub(super) async fn run(
    State(st): State<ApiState>,
    c: Console,
    Path(name): Path<String>,
) -> Response {
    match st.inputs.run_now(&name) {
        Ok(()) => Redirect::to("/feeds").into_response(),
        Err(e) => {
            let e = crate::ApiError::from(e);
            c.message(
                e.0,
                c.tr("Feeds: not started", "フィード: 開始できません"),
                &[e.1],
                "/feeds",
            )
        }
    }
}
