//! Administration: operators with their roles and second factor, tokens
//! with their scope and state, each changed by a form that makes exactly
//! the API's change (`/api/v1/operators/...`, `/api/v1/tokens/...`), and
//! the configuration in effect, its secrets redacted.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use kanki_html::esc;
use kanki_operators::{Role, Roles};

use super::Console;
use crate::ApiState;
use crate::admin::{AccountChange, ListedOperator, ListedToken, change_account};

fn when(t: Option<DateTime<Utc>>, never: &str) -> String {
    t.map_or_else(
        || never.to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// A name as a path segment.
fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET /admin`: operators and tokens.
pub(super) async fn page(State(st): State<ApiState>, c: Console) -> Response {
    let k = st.kanki.clone();
    let listed = c.blocking(move || {
        Ok::<_, String>((
            crate::admin::operators_now(&k).map_err(|e| e.1)?,
            crate::admin::tokens_now(&k).map_err(|e| e.1)?,
        ))
    });
    let (operators, tokens) = match listed.await {
        Ok(l) => l,
        Err(failed) => return failed,
    };
    let mut body = format!(
        "<p>{} <a id=\"config\" href=\"/admin/config\">{}</a></p>",
        c.tr(
            "Changes here are recorded in the audit log and take effect at once: a disabled operator's sessions end, a revoked token stops working. New operators and tokens are made with kanki operators add and kanki tokens create on the server.",
            "ここでの変更は監査ログに記録され、すぐに有効になります。無効にしたオペレーターのセッションは終了し、失効させたトークンは使えなくなります。オペレーターとトークンの新規作成はサーバーで kanki operators add と kanki tokens create を使います。"
        ),
        c.tr("The configuration in effect", "現在の設定"),
    );
    body.push_str(&operators_table(&c, &operators));
    body.push_str(&tokens_table(&c, &tokens));
    c.page(c.tr("Administration", "管理"), &body)
}

fn operators_table(c: &Console, operators: &[ListedOperator]) -> String {
    let mut out = format!(
        "<section id=\"operators\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        c.tr("Operators", "オペレーター"),
        c.tr("Name", "名前"),
        c.tr("Account", "種別"),
        c.tr("State", "状態"),
        c.tr("Second factor", "二要素認証"),
        c.tr("Roles", "ロール"),
        c.tr("Change", "変更"),
    );
    let csrf = c.csrf_field();
    for l in operators {
        let o = &l.operator;
        let name = segment(&o.name);
        let mut boxes = String::new();
        for r in Role::ALL {
            boxes.push_str(&format!(
                "<label class=\"role\"><input type=\"checkbox\" name=\"role\" value=\"{r}\"{}> {r}</label> ",
                if o.roles.contains(r) { " checked" } else { "" },
            ));
        }
        let (flip, flip_label) = if o.disabled {
            ("no", c.tr("Enable", "有効にする"))
        } else {
            ("yes", c.tr("Disable", "無効にする"))
        };
        out.push_str(&format!(
            "<tr class=\"operator\" id=\"operator-{id}\"><td>{n}</td><td>{kind}</td><td class=\"state\">{state}</td><td>{totp}</td>\
<td><form method=\"post\" action=\"/admin/operators/{name}/roles\">{csrf}<fieldset><legend>{n}</legend>{boxes}</fieldset><button>{set}</button></form></td>\
<td><form method=\"post\" action=\"/admin/operators/{name}/disabled\">{csrf}<input type=\"hidden\" name=\"disabled\" value=\"{flip}\"><button>{flip_label}</button></form></td></tr>",
            id = o.id,
            n = esc(&o.name),
            kind = o.kind.as_str(),
            state = if o.disabled {
                c.tr("disabled", "無効")
            } else {
                c.tr("enabled", "有効")
            },
            totp = if l.totp { "TOTP" } else { "—" },
            set = c.tr("Set roles", "ロールを設定"),
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

fn tokens_table(c: &Console, tokens: &[ListedToken]) -> String {
    let mut out = format!(
        "<section id=\"tokens\"><h2>{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\"></th></tr></thead><tbody>",
        c.tr("API tokens", "API トークン"),
        c.tr("Id", "ID"),
        c.tr("For", "用途"),
        c.tr("Owner", "所有者"),
        c.tr("Scope", "範囲"),
        c.tr("State", "状態"),
        c.tr("Expires (UTC)", "期限 (UTC)"),
        c.tr("Last used (UTC)", "最終使用 (UTC)"),
        c.tr("From", "接続元"),
    );
    let never = c.tr("never", "なし");
    for l in tokens {
        let t = &l.token;
        let sources: Vec<String> = t.sources.iter().map(ToString::to_string).collect();
        let revoke = if l.state == "revoked" {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/admin/tokens/{}/revoke\">{}<button>{}</button></form>",
                segment(&t.id),
                c.csrf_field(),
                c.tr("Revoke", "失効させる")
            )
        };
        out.push_str(&format!(
            "<tr class=\"token\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"state\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
            esc(&t.id),
            esc(&t.name),
            esc(&t.operator),
            t.scope,
            l.state,
            when(t.expires_at, never),
            when(t.last_used_at, never),
            if sources.is_empty() {
                c.tr("anywhere", "制限なし").to_string()
            } else {
                esc(&sources.join(", "))
            },
        ));
    }
    if tokens.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"9\">{}</td></tr>",
            c.tr("No token.", "トークンはありません。")
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

/// `GET /admin/config`: the configuration in effect, as TOML, secrets
/// redacted (as `GET /api/v1/config`).
pub(super) async fn config(State(st): State<ApiState>, c: Console) -> Response {
    let text = toml::to_string_pretty(&st.kanki.config.redacted())
        .unwrap_or_else(|e| format!("# cannot be shown: {e}"));
    let body = format!(
        "<p>{}</p><pre id=\"effective-config\">{}</pre><p><a href=\"/admin\">{}</a></p>",
        c.tr(
            "The configuration this server runs with (its file and defaults), secrets shown as (redacted).",
            "このサーバーが動作している設定（設定ファイルと既定値）です。秘密の値は (redacted) と表示します。"
        ),
        esc(&text),
        c.tr("Back to administration", "管理に戻る"),
    );
    c.page(c.tr("Configuration in effect", "現在の設定"), &body)
}

/// Makes an account change and returns to `/admin`, or says why not.
async fn change(st: ApiState, c: Console, change: AccountChange) -> Response {
    let (k, by, state) = (st.kanki.clone(), c.who.clone(), st.clone());
    let done = tokio::task::spawn_blocking(move || change_account(&state, &k, &by, &change)).await;
    match done {
        Ok(Ok(_)) => Redirect::to("/admin").into_response(),
        Ok(Err(e)) if e.0.is_client_error() => c.message(
            e.0,
            c.tr("Administration: not changed", "管理: 変更できません"),
            &[e.1],
            "/admin",
        ),
        Ok(Err(e)) => c.failed(&e.1),
        Err(e) => c.failed(&e.to_string()),
    }
}

/// The values of `name` in a posted form.
fn values(form: &[u8], name: &str) -> Vec<String> {
    url::form_urlencoded::parse(form)
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// `POST /admin/operators/{name}/disabled` (`disabled=yes|no`): as
/// `POST /api/v1/operators/{name}/disabled`.
pub(super) async fn disabled(
    State(st): State<ApiState>,
    c: Console,
    Path(name): Path<String>,
    form: Bytes,
) -> Response {
    let which = match values(&form, "disabled").last().map(String::as_str) {
        Some("yes") => AccountChange::Disable(name),
        Some("no") => AccountChange::Enable(name),
        _ => {
            return c.message(
                StatusCode::BAD_REQUEST,
                c.tr("Administration", "管理"),
                &[c.tr(
                    "disabled must be yes or no.",
                    "disabled は yes か no です。",
                )
                .into()],
                "/admin",
            );
        }
    };
    change(st, c, which).await
}

/// `POST /admin/operators/{name}/roles` (one `role` field per role): as
/// `POST /api/v1/operators/{name}/roles`.
pub(super) async fn roles(
    State(st): State<ApiState>,
    c: Console,
    Path(name): Path<String>,
    form: Bytes,
) -> Response {
    let asked = values(&form, "role").join(",");
    let roles: Roles = match asked.parse() {
        Ok(r) => r,
        Err(e) => {
            return c.message(
                StatusCode::BAD_REQUEST,
                c.tr("Administration", "管理"),
                &[e],
                "/admin",
            );
        }
    };
    change(st, c, AccountChange::SetRoles(name, roles)).await
}

/// `POST /admin/tokens/{id}/revoke`: as `DELETE /api/v1/tokens/{id}`.
pub(super) async fn revoke(
    State(st): State<ApiState>,
    c: Console,
    Path(id): Path<String>,
) -> Response {
    change(st, c, AccountChange::RevokeToken(id)).await
}
