//! "Who held this address": the attribution form. It asks for the legal
//! ground and the purpose (and the case or event an emergency serves),
//! and calls the same service function as `POST /api/v1/who`, which
//! writes the audit record before it answers.

use std::net::IpAddr;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use kanki_audit::Ground;
use kanki_html::esc;
use kanki_service::directory::{Attribution, Cites, WhoQuery};
use serde::Deserialize;

use super::Console;
use crate::ApiState;

/// The form's values, as typed (shown again when something is wrong).
#[derive(Debug, Default, Deserialize)]
pub(super) struct WhoForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    ground: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    case: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    program: String,
}

fn ground_label(c: &Console, g: Ground) -> &'static str {
    match g {
        Ground::Consent => c.tr("consent", "同意"),
        Ground::LegitimateBusiness => c.tr("legitimate business act", "正当業務行為"),
        Ground::EmergencyEvacuation => c.tr("emergency evacuation", "緊急避難"),
    }
}

fn form_html(c: &Console, f: &WhoForm) -> String {
    let grounds: String = Ground::ALL
        .iter()
        .map(|g| {
            format!(
                "<option value=\"{v}\"{sel}>{}</option>",
                ground_label(c, *g),
                v = g.as_str(),
                sel = if f.ground == g.as_str() {
                    " selected"
                } else {
                    ""
                }
            )
        })
        .collect();
    format!(
        "<form id=\"who\" method=\"post\" action=\"/who\">{csrf}\
<p><label>{addr_l} <input name=\"address\" id=\"address\" required data-search value=\"{addr}\" placeholder=\"192.0.2.1\"></label></p>\
<p><label>{port_l} <input name=\"port\" id=\"port\" inputmode=\"numeric\" value=\"{port}\"></label></p>\
<p><label>{at_l} <input name=\"at\" id=\"at\" value=\"{at}\" placeholder=\"2026-12-01T09:30:00Z\"></label></p>\
<p><label>{ground_l} <select name=\"ground\" id=\"ground\" required><option value=\"\">—</option>{grounds}</select></label></p>\
<p><label>{purpose_l} <input name=\"purpose\" id=\"purpose\" required maxlength=\"500\" value=\"{purpose}\"></label></p>\
<p><label>{case_l} <input name=\"case\" id=\"case\" inputmode=\"numeric\" value=\"{case}\"></label> \
<label>{event_l} <input name=\"event\" id=\"event\" inputmode=\"numeric\" value=\"{event}\"></label></p>\
<p><label>{program_l} <input name=\"program\" id=\"program\" value=\"{program}\"></label></p>\
<p class=\"note\">{note}</p><p><button id=\"ask\">{ask}</button></p></form>",
        csrf = c.csrf_field(),
        addr_l = c.tr("Address", "アドレス"),
        addr = esc(&f.address),
        port_l = c.tr("Port (behind CGNAT)", "ポート（CGNAT の場合）"),
        port = esc(&f.port),
        at_l = c.tr("At (UTC, RFC 3339; empty: now)", "日時（UTC、RFC 3339。空欄なら現在）"),
        at = esc(&f.at),
        ground_l = c.tr("Legal ground", "法的根拠"),
        purpose_l = c.tr("Purpose", "目的"),
        purpose = esc(&f.purpose),
        case_l = c.tr("Case (for an emergency)", "事案（緊急避難の場合）"),
        case = esc(&f.case),
        event_l = c.tr("or event", "またはイベント"),
        event = esc(&f.event),
        program_l = c.tr("Program (for a legitimate business act)", "施策（正当業務行為の場合）"),
        program = esc(&f.program),
        note = c.tr(
            "The lookup and its answer are written to the audit log under your name before the answer is shown.",
            "照会とその結果は、表示の前にあなたの名前で監査ログに記録されます。"
        ),
        ask = c.tr("Look up", "照会する"),
    )
}

/// `GET /who`: the empty form.
pub(super) async fn form(c: Console) -> Response {
    c.page(
        c.tr("Who held this address", "アドレスの利用者"),
        &form_html(&c, &WhoForm::default()),
    )
}

/// The form's values checked: every problem, in the page's language.
fn query(c: &Console, f: &WhoForm) -> Result<WhoQuery, Vec<String>> {
    let mut problems = Vec::new();
    let address = f.address.trim().parse::<IpAddr>().map_err(|_| {
        problems.push(format!(
            "{} {:?}",
            c.tr("Not an IP address:", "IP アドレスではありません:"),
            f.address.chars().take(60).collect::<String>()
        ))
    });
    let port = match f.port.trim() {
        "" => Ok(None),
        p => p.parse::<u16>().map(Some).map_err(|_| {
            problems.push(
                c.tr(
                    "The port must be a number from 0 to 65535.",
                    "ポートは 0 から 65535 の数で指定してください。",
                )
                .to_string(),
            )
        }),
    };
    let at = match f.at.trim() {
        "" => Ok(Utc::now()),
        t => DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M").map(|d| d.and_utc()))
            .map_err(|_| {
                problems.push(
                    c.tr(
                        "The time must be RFC 3339, such as 2026-12-01T09:30:00Z.",
                        "日時は 2026-12-01T09:30:00Z のような RFC 3339 形式で指定してください。",
                    )
                    .to_string(),
                )
            }),
    };
    let ground = f.ground.parse::<Ground>().map_err(|_| {
        problems.push(
            c.tr("Choose the legal ground.", "法的根拠を選んでください。")
                .to_string(),
        )
    });
    if f.purpose.trim().is_empty() {
        problems.push(
            c.tr("State the purpose.", "目的を入力してください。")
                .to_string(),
        );
    }
    let id = |v: &str, what: &str, problems: &mut Vec<String>| match v.trim() {
        "" => None,
        v => match v.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                problems.push(format!(
                    "{what}: {:?}",
                    v.chars().take(40).collect::<String>()
                ));
                None
            }
        },
    };
    let case = id(
        &f.case,
        c.tr("Not a case number", "事案番号ではありません"),
        &mut problems,
    );
    let event = id(
        &f.event,
        c.tr("Not an event number", "イベント番号ではありません"),
        &mut problems,
    );
    if ground == Ok(Ground::EmergencyEvacuation) && case.is_none() && event.is_none() {
        problems.push(
            c.tr(
                "An emergency evacuation cites the case or event it serves.",
                "緊急避難では対象の事案またはイベントを指定してください。",
            )
            .to_string(),
        );
    }
    match (address, port, at, ground) {
        (Ok(address), Ok(port), Ok(at), Ok(ground)) if problems.is_empty() => Ok(WhoQuery {
            address,
            port,
            at,
            ground,
            purpose: f.purpose.trim().to_string(),
            actor: c.who.actor(),
            cites: Cites {
                case,
                event,
                program: Some(f.program.trim().to_string()).filter(|p| !p.is_empty()),
            },
        }),
        _ => Err(problems),
    }
}

/// `POST /who`: the lookup, audited, and its answer.
pub(super) async fn ask(
    State(st): State<ApiState>,
    c: Console,
    Form(f): Form<WhoForm>,
) -> Response {
    let title = c.tr("Who held this address", "アドレスの利用者");
    let q = match query(&c, &f) {
        Ok(q) => q,
        Err(problems) => {
            let mut body = String::from("<div class=\"message\" role=\"alert\"><ul>");
            for p in &problems {
                body.push_str(&format!("<li>{}</li>", esc(p)));
            }
            body.push_str("</ul></div>");
            body.push_str(&form_html(&c, &f));
            return c.page_with(StatusCode::BAD_REQUEST, title, &body);
        }
    };
    let compiled = st.directory.compiled();
    let k = st.kanki.clone();
    let answer = tokio::task::spawn_blocking(move || k.who(&compiled, &q)).await;
    let body = match answer {
        Ok(Ok(a)) => format!("{}{}", answer_html(&c, &a), form_html(&c, &f)),
        Ok(Err(e)) => {
            return c.page_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                title,
                &format!(
                    "<div class=\"message\" role=\"alert\"><p>{}</p></div>{}",
                    esc(&e.to_string()),
                    form_html(&c, &f)
                ),
            );
        }
        Err(e) => return c.failed(&e.to_string()),
    };
    c.page(title, &body)
}

fn answer_html(c: &Console, a: &Attribution) -> String {
    let holders: String = a
        .holders
        .iter()
        .map(|h| {
            format!(
                "<li>{}{}</li>",
                h.subscriber.as_deref().map_or_else(
                    || c.tr("(no subscriber mapped)", "（契約者に対応なし）")
                        .to_string(),
                    |s| c.subscriber(s)
                ),
                if h.near_boundary {
                    format!(
                        " · {}",
                        c.tr("near a session boundary", "セッション境界付近")
                    )
                } else {
                    String::new()
                }
            )
        })
        .collect();
    format!(
        "<section id=\"answer\" aria-live=\"polite\"><h2>{}</h2><dl>\
<dt>{}</dt><dd id=\"answer-subscriber\">{}</dd><dt>{}</dt><dd id=\"confidence\">{}</dd>\
<dt>{}</dt><dd id=\"audit-record\">#{}</dd></dl>{}</section>",
        c.tr("Answer", "結果"),
        c.tr("Subscriber", "契約者"),
        a.subscriber.as_deref().map_or_else(
            || c.tr("none found", "該当なし").to_string(),
            |s| c.subscriber(s)
        ),
        c.tr("Confidence", "確度"),
        a.confidence.as_str(),
        c.tr("Audit record", "監査記録"),
        a.audit_seq,
        if holders.is_empty() {
            String::new()
        } else {
            format!("<ul id=\"holders\">{holders}</ul>")
        },
    )
}
