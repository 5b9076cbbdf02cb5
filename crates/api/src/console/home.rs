//! `/`: where an operator lands after signing in: the pages their roles
//! allow, each with what it is for.

use axum::http::Method;
use axum::response::Response;

use super::{Console, NAV, tr};

/// What each page is for, by path.
fn purpose(c: &Console, path: &str) -> &'static str {
    match path {
        "/dashboard" => c.tr(
            "Both loops at a glance over the last hour, day, week or month: events, rejects, cases, notices, the warning page, outcomes, the list's size and what is under way; each chart as CSV or SVG.",
            "直近 1 時間・1 日・1 週間・1 か月の両ループの概況: イベント、除外、事案、通知、警告ページ、成果、リストの規模、実行中の処理。グラフは CSV と SVG で出力できます。",
        ),
        "/cases" => c.tr(
            "The case queue: filter, review, hold, close; each case's events, attributions and notices.",
            "事案の一覧: 絞り込み、確認、保留、終了。事案ごとのイベント、利用者特定、通知。",
        ),
        "/who" => c.tr(
            "Find the subscriber who held an address at a moment, under a legal ground and purpose (audited).",
            "ある時刻にアドレスを利用していた契約者を、法的根拠と目的を示して照会します（監査記録あり）。",
        ),
        "/indicators" => c.tr(
            "Search the list by name, URL, source, category, status and kind; each indicator's feed rows, evidence and warning-page hits.",
            "名前、URL、情報源、種別、状態、形式でリストを検索。指標ごとのフィードの行、証拠、警告ページの表示数。",
        ),
        "/false-positives" => c.tr(
            "Reports from the warning page that a site is listed wrongly: approve (delist) or reject.",
            "警告ページから届いた誤検知の報告: 承認（リストから外す）または却下。",
        ),
        "/feeds" => c.tr(
            "Each feed's last run with its rejects by reason, the run under way, the next run and a run now; the latest reports ingested; the watched directory and the sensor; a report upload with a progress bar.",
            "フィードごとの前回の実行と除外理由、実行中の進捗、次回の実行、今すぐ実行。最近取り込んだレポート、監視ディレクトリとセンサー、進捗表示つきのレポートのアップロード。",
        ),
        "/subscribers" => c.tr(
            "Subscribers: identity, consent and its history, the addresses they held over time, the walled garden and their cases (each view audited).",
            "契約者: 本人情報、同意とその履歴、割り当てられたアドレスの推移、隔離の状態、事案（表示はすべて監査記録あり）。",
        ),
        "/audit" => c.tr(
            "The audit log: every lookup of a subscriber and change of consent, searched by operator, ground, subscriber and time; the chain verified; the records exported as JSON.",
            "監査ログ: 契約者の照会と同意の変更のすべてを、オペレーター、法的根拠、契約者、期間で検索。チェーンの検証、記録の JSON 出力。",
        ),
        "/admin" => c.tr(
            "Operators, their roles and second factor, and API tokens: disable, enable, set roles, revoke (audited, in force at once); the configuration in effect, secrets redacted.",
            "オペレーターとそのロール・二要素認証、API トークン: 無効化、有効化、ロールの設定、失効（監査記録あり、即時に有効）。現在の設定（秘密の値は伏せて表示）。",
        ),
        _ => "",
    }
}

pub(super) async fn page(c: Console) -> Response {
    let mut body = format!(
        "<p>{}</p><ul class=\"cards\" id=\"pages\">",
        c.tr(
            "The pages your roles allow. Keys: Alt+B dashboard, Alt+C cases, Alt+I indicators, Alt+F false-positive reports, Alt+W who held an address, Alt+E feeds and sensors, Alt+S subscribers, Alt+A audit log, Alt+M administration, Alt+L language, / the page's search field.",
            "あなたのロールで使えるページです。キー: Alt+B ダッシュボード、Alt+C 事案、Alt+I 指標、Alt+F 誤検知の報告、Alt+W アドレスの利用者、Alt+E フィードとセンサー、Alt+S 契約者、Alt+A 監査ログ、Alt+M 管理、Alt+L 言語、/ ページの検索欄。"
        )
    );
    for item in NAV.iter().filter(|i| i.path != "/") {
        if !c.may_call(&Method::GET, item.path) {
            continue;
        }
        body.push_str(&format!(
            "<li><a href=\"{}\">{}</a><p>{}</p></li>",
            item.path,
            tr(c.lang, item.en, item.ja),
            purpose(&c, item.path)
        ));
    }
    body.push_str("</ul>");
    c.page(c.tr("kanki console", "kanki コンソール"), &body)
}
