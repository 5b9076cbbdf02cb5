//! The dashboard page: both loops at a glance over the last hour, day,
//! week or month (as `GET /api/v1/dashboard`), each chart drawn as SVG
//! with its numbers in a table beside it, and exported as CSV or SVG.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kanki_html::esc;

use super::Console;
use super::query::DashboardQuery;
use crate::ApiState;
use crate::dashboard::{CHARTS, Chart, Dashboard, Range, chart_csv, chart_svg, dashboard};

fn title(c: &Console, name: &str) -> &'static str {
    CHARTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, en, ja)| c.tr(en, ja))
}

fn range_name(c: &Console, r: Range) -> &'static str {
    match r {
        Range::Hour => c.tr("Last hour", "直近 1 時間"),
        Range::Day => c.tr("Last day", "直近 1 日"),
        Range::Week => c.tr("Last week", "直近 1 週間"),
        Range::Month => c.tr("Last month", "直近 1 か月"),
    }
}

async fn load(st: &ApiState, c: &Console, raw: Option<&str>) -> Result<Dashboard, Response> {
    let q = DashboardQuery::parse(raw.unwrap_or("")).map_err(|problems| {
        c.bad_query(
            c.tr(
                "Dashboard: the query is not valid",
                "ダッシュボード: 指定が正しくありません",
            ),
            &problems,
            "/dashboard",
        )
    })?;
    let state = st.clone();
    c.blocking(move || dashboard(&state, &state.kanki, q.range).map_err(|e| e.1))
        .await
}

/// `GET /dashboard`.
pub(super) async fn page(
    State(st): State<ApiState>,
    c: Console,
    RawQuery(raw): RawQuery,
) -> Response {
    let d = match load(&st, &c, raw.as_deref()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let r = d.range.as_str();
    let mut body = String::from("<nav class=\"ranges\" aria-label=\"range\"><ul>");
    for x in Range::ALL {
        body.push_str(&format!(
            "<li><a href=\"/dashboard?range={0}\"{1}>{2}</a></li>",
            x.as_str(),
            if x == d.range {
                " aria-current=\"page\""
            } else {
                ""
            },
            range_name(&c, x)
        ));
    }
    body.push_str("</ul></nav>");
    body.push_str(&outcomes(&c, &d));
    body.push_str(&live(&c, &d));
    body.push_str("<section id=\"charts\">");
    for chart in &d.charts {
        body.push_str(&figure(&c, chart, r));
    }
    body.push_str("</section>");
    body.push_str(&list(&c, &d));
    body.push_str(&rpz(&c, &d));
    c.page(c.tr("Dashboard", "ダッシュボード"), &body)
}

fn outcomes(c: &Console, d: &Dashboard) -> String {
    let o = &d.outcomes;
    let quantiles: Vec<String> = o
        .time_to_clean_days
        .iter()
        .map(|(q, days)| format!("p{:.0} {days:.1}", q * 100.0))
        .collect();
    let states: Vec<String> = o
        .cases_by_state
        .iter()
        .map(|(s, n)| format!("{} {n}", esc(s)))
        .collect();
    format!(
        "<section id=\"outcomes\"><h2>{}</h2><dl>\
<dt>{}</dt><dd id=\"infected-per-10000\">{:.2}</dd><dt>{}</dt><dd>{} / {}</dd>\
<dt>{}</dt><dd id=\"acknowledgement-rate\">{:.0}%</dd><dt>{}</dt><dd id=\"reinfection-rate\">{:.0}%</dd>\
<dt>{}</dt><dd>{}</dd><dt>{}</dt><dd id=\"cases-by-state\">{}</dd><dt>{}</dt><dd>{}</dd></dl></section>",
        c.tr("Outcomes", "成果"),
        c.tr(
            "Infected subscribers per 10,000",
            "1 万契約あたりの感染契約者"
        ),
        o.infected_per_10000,
        c.tr("Infected subscribers / subscribers", "感染契約者 / 契約者"),
        o.infected_subscribers,
        o.subscribers,
        c.tr(
            "Notified cases acknowledged",
            "通知した事案のうち対策完了の連絡"
        ),
        100.0 * o.acknowledgement_rate,
        c.tr("Resolved cases reinfected", "解決した事案のうち再感染"),
        100.0 * o.reinfection_rate,
        c.tr(
            "Time to clean, days (quantiles)",
            "駆除までの日数（分位点）"
        ),
        if quantiles.is_empty() {
            "—".into()
        } else {
            quantiles.join(" · ")
        },
        c.tr("Cases by state", "状態別の事案"),
        if states.is_empty() {
            "—".into()
        } else {
            states.join(" · ")
        },
        c.tr("Events stored", "保存したイベント"),
        o.events,
    )
}

fn live(c: &Console, d: &Dashboard) -> String {
    let l = &d.live;
    let feeds: Vec<String> = l
        .feeds_running
        .iter()
        .map(|(f, rows)| format!("{} ({rows})", esc(f)))
        .collect();
    let sensor = l.sensor.map_or_else(
        || "—".to_string(),
        |s| format!("{} / {} / {}", s.connections, s.recorded, s.rate_limited),
    );
    format!(
        "<section id=\"live\"><h2>{}</h2><dl>\
<dt>{}</dt><dd id=\"feeds-running\">{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd id=\"notices-queued\">{}</dd>\
<dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd></dl>{}<p><a href=\"/feeds\">{}</a></p></section>",
        c.tr("Now", "現在"),
        c.tr(
            "Feed runs under way (rows read)",
            "実行中のフィード（読み込んだ行）"
        ),
        if feeds.is_empty() {
            c.tr("none", "なし").to_string()
        } else {
            feeds.join(", ")
        },
        c.tr("Report ingests under way", "取り込み中のレポート"),
        l.ingests_running,
        c.tr("Notices waiting to be sent", "送信待ちの通知"),
        l.notices_queued,
        c.tr("Notices failed", "送信に失敗した通知"),
        l.notices_failed,
        c.tr(
            "Sensor: connections / recorded / rate-limited",
            "センサー: 接続 / 記録 / レート制限"
        ),
        sensor,
        rates(c, &l.rates),
        c.tr("Feeds and sensors", "フィードとセンサー"),
    )
}

/// A stage's name on the page.
fn stage_name(c: &Console, part: &str, stage: &str) -> &'static str {
    match (part, stage) {
        ("ingest", "read") => c.tr("Ingest: records read", "取り込み: 読み込んだレコード"),
        ("ingest", "rejected") => c.tr("Ingest: rejected", "取り込み: 不採用"),
        ("ingest", "duplicate") => c.tr("Ingest: stored before", "取り込み: 保存済み"),
        ("ingest", "attributed") => c.tr("Ingest: attributed", "取り込み: 契約者を特定"),
        ("ingest", "unattributed") => {
            c.tr("Ingest: not attributed", "取り込み: 契約者を特定できず")
        }
        ("ingest", "stored") => c.tr("Ingest: events stored", "取り込み: 保存したイベント"),
        ("ingest", "cases-opened") => c.tr("Ingest: cases opened", "取り込み: 開始した事案"),
        ("ingest", "cases-updated") => c.tr("Ingest: cases updated", "取り込み: 更新した事案"),
        ("notices", "mailed") => c.tr("Notices: mailed", "通知: メール送信"),
        ("notices", "letters") => c.tr("Notices: letters queued", "通知: 郵送待ち"),
        ("notices", "failed") => c.tr("Notices: failed", "通知: 失敗"),
        ("notices", "bounced") => c.tr("Notices: bounced", "通知: 不達"),
        ("notices", "retry-later") => c.tr("Notices: to retry", "通知: 再送待ち"),
        _ => "",
    }
}

/// Each stage's rate now and over five minutes, and its total since the
/// server started.
fn rates(c: &Console, rates: &[crate::dashboard::StageRate]) -> String {
    let per_second = |r: Option<f64>| r.map_or_else(|| "—".to_string(), |r| format!("{r:.1}"));
    let mut out = format!(
        "<table id=\"rates\"><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr(
            "Live rates per stage (this server)",
            "段階ごとの処理速度（このサーバー）"
        ),
        c.tr("Stage", "段階"),
        c.tr("Per second, last 10 s", "毎秒（直近 10 秒）"),
        c.tr("Per second, last 5 min", "毎秒（直近 5 分）"),
        c.tr("Since the server started", "起動以来"),
    );
    for r in rates {
        out.push_str(&format!(
            "<tr id=\"rate-{}-{}\"><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td class=\"total\">{}</td></tr>",
            r.part,
            r.stage,
            stage_name(c, r.part, r.stage),
            per_second(r.per_second),
            per_second(r.per_second_5m),
            r.total,
        ));
    }
    out.push_str("</tbody></table>");
    out
}

fn figure(c: &Console, chart: &Chart, range: &str) -> String {
    let t = title(c, chart.name);
    let mut table = format!(
        "<table><thead><tr><th scope=\"col\">{}</th>",
        c.tr("From (UTC)", "開始 (UTC)")
    );
    for (label, _) in &chart.lines {
        table.push_str(&format!("<th scope=\"col\">{}</th>", esc(label)));
    }
    table.push_str("</tr></thead><tbody>");
    for (i, start) in chart.starts.iter().enumerate() {
        let shown = chrono::DateTime::from_timestamp(*start, 0)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M").to_string());
        table.push_str(&format!("<tr><td>{shown}</td>"));
        for (_, counts) in &chart.lines {
            table.push_str(&format!("<td>{}</td>", counts.get(i).copied().unwrap_or(0)));
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    format!(
        "<figure class=\"chart\" id=\"chart-{name}\"><figcaption>{t}</figcaption>\
<img src=\"/dashboard/{name}.svg?range={range}\" alt=\"{t}\" width=\"640\" height=\"260\">\
<p><a class=\"csv\" href=\"/dashboard/{name}.csv?range={range}\" download>CSV</a> · <a class=\"svg\" href=\"/dashboard/{name}.svg?range={range}\" download>SVG</a></p>\
<details><summary>{numbers}</summary>{table}</details></figure>",
        name = chart.name,
        numbers = c.tr("The numbers", "数値"),
    )
}

fn list(c: &Console, d: &Dashboard) -> String {
    let mut out = format!(
        "<section id=\"list\"><h2>{}</h2><table id=\"list-by-status\"><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("The list", "リスト"),
        c.tr("Status", "状態"),
        c.tr("Category", "種別"),
        c.tr("Indicators", "指標"),
    );
    for (status, category, n) in &d.list.by_status_category {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{n}</td></tr>",
            esc(status),
            esc(category)
        ));
    }
    out.push_str(&format!(
        "</tbody></table><table id=\"list-by-source\"><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Source", "情報源"),
        c.tr("Active indicators it lists", "掲載中の指標"),
    ));
    for (source, n) in &d.list.active_by_source {
        out.push_str(&format!("<tr><td>{}</td><td>{n}</td></tr>", esc(source)));
    }
    out.push_str("</tbody></table></section>");
    out
}

fn rpz(c: &Console, d: &Dashboard) -> String {
    let mut out = format!(
        "<section id=\"rpz\"><h2>{}</h2>",
        c.tr("RPZ zones and their secondaries", "RPZ ゾーンとセカンダリ")
    );
    if d.rpz.is_empty() {
        out.push_str(&format!(
            "<p>{}</p></section>",
            c.tr(
                "No RPZ zone is served ([rpz]).",
                "RPZ ゾーンは配信していません（[rpz]）。"
            )
        ));
        return out;
    }
    out.push_str(&format!(
        "<table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Zone", "ゾーン"),
        c.tr("Serial", "シリアル"),
        c.tr("Secondary", "セカンダリ"),
        c.tr("Last asked (UTC)", "最終要求 (UTC)"),
        c.tr("Transfer", "転送"),
        c.tr("Serial given", "渡したシリアル"),
    ));
    for z in &d.rpz {
        let serial = z.serial.map_or_else(|| "—".to_string(), |s| s.to_string());
        if z.secondaries.is_empty() {
            out.push_str(&format!(
                "<tr class=\"rpz-zone\"><td>{}</td><td>{serial}</td><td colspan=\"4\">{}</td></tr>",
                esc(&z.zone),
                c.tr("no transfer yet", "転送はまだありません"),
            ));
        }
        for s in &z.secondaries {
            out.push_str(&format!(
                "<tr class=\"rpz-secondary\"><td>{}</td><td>{serial}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                esc(&z.zone),
                s.address,
                s.at.format("%Y-%m-%d %H:%M:%S"),
                s.kind,
                s.given,
                if s.behind {
                    format!(" <span class=\"error\">({})</span>", c.tr("behind", "遅れ"))
                } else {
                    String::new()
                },
            ));
        }
    }
    out.push_str("</tbody></table></section>");
    out
}

/// `GET /dashboard/{chart}.csv` and `GET /dashboard/{chart}.svg`: a chart
/// exported, for the `range` asked.
pub(super) async fn export(
    State(st): State<ApiState>,
    c: Console,
    Path(file): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some((name, kind)) = file
        .rsplit_once('.')
        .filter(|(n, k)| CHARTS.iter().any(|(x, _, _)| x == n) && matches!(*k, "csv" | "svg"))
    else {
        let names: Vec<&str> = CHARTS.iter().map(|(n, _, _)| *n).collect();
        return c.message(
            StatusCode::NOT_FOUND,
            c.tr("Dashboard", "ダッシュボード"),
            &[format!(
                "{} {}.csv | .svg",
                c.tr(
                    "No such chart; the charts are",
                    "そのグラフはありません。グラフ:"
                ),
                names.join(", ")
            )],
            "/dashboard",
        );
    };
    let d = match load(&st, &c, raw.as_deref()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(chart) = d.charts.iter().find(|x| x.name == name) else {
        return c.failed("the chart was not drawn");
    };
    let (body, content_type) = if kind == "csv" {
        (chart_csv(chart), "text/csv; charset=utf-8")
    } else {
        // Titled in the operator's language.
        let t = format!("{} ({})", title(&c, name), range_name(&c, d.range));
        (chart_svg(chart, &t), "image/svg+xml")
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename=\"kanki-{name}-{}.{kind}\"",
        d.range.as_str()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
