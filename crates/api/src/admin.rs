//! Administration: `/api/v1/operators`, `/api/v1/tokens` and
//! `/api/v1/config`. Accounts and tokens are listed without their secrets
//! (never stored in the clear); each change is decided by the operators
//! part's rules, recorded in the audit log under the administrator's name,
//! and in force at once (the authenticator reloads). The configuration is
//! the one in effect, its secrets redacted.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use kanki_audit::AuditEntry;
use kanki_operators::accounts::{self, AccountError};
use kanki_operators::{Operator, Principal, Roles, Token};
use kanki_service::Kanki;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Caller;
use crate::{ApiError, ApiState, blocking};

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NoSuchOperator(_) | AccountError::NoSuchToken(_) => {
                ApiError(StatusCode::NOT_FOUND, e.to_string())
            }
            AccountError::Invalid(_) | AccountError::WeakPassword(_) => {
                ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            AccountError::Storage(s) => {
                tracing::error!(error = %s, "operator store error");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, s.to_string())
            }
        }
    }
}

/// An operator as listed: the account without its secrets, and whether it
/// has a second factor.
#[derive(Serialize)]
pub(crate) struct ListedOperator {
    #[serde(flatten)]
    pub operator: Operator,
    pub roles_list: Vec<&'static str>,
    pub totp: bool,
}

/// A token as listed, with its state now (`active`, `expired`, `revoked`).
#[derive(Serialize)]
pub(crate) struct ListedToken {
    #[serde(flatten)]
    pub token: Token,
    pub state: &'static str,
}

pub(crate) fn operators_now(k: &Kanki) -> Result<Vec<ListedOperator>, ApiError> {
    Ok(k.store
        .operators()
        .operators()
        .map_err(AccountError::from)?
        .into_iter()
        .map(|o| ListedOperator {
            roles_list: o.roles.iter().map(|r| r.as_str()).collect(),
            totp: o.has_totp(),
            operator: o,
        })
        .collect())
}

pub(crate) fn tokens_now(k: &Kanki) -> Result<Vec<ListedToken>, ApiError> {
    let now = Utc::now();
    Ok(k.store
        .operators()
        .tokens()
        .map_err(AccountError::from)?
        .into_iter()
        .map(|t| ListedToken {
            state: if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at.is_some_and(|e| e <= now) {
                "expired"
            } else {
                "active"
            },
            token: t,
        })
        .collect())
}

pub(crate) async fn list_operators(
    State(st): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let items = blocking(&st, operators_now).await?;
    Ok(Json(json!({ "items": items })))
}

pub(crate) async fn list_tokens(
    State(st): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let items = blocking(&st, tokens_now).await?;
    Ok(Json(json!({ "items": items })))
}

/// A change an administrator makes to an account or a token.
#[derive(Clone, Debug)]
pub(crate) enum AccountChange {
    Disable(String),
    Enable(String),
    SetRoles(String, Roles),
    RevokeToken(String),
}

/// Makes `change` as `by`: the operators part's rules decide, the audit
/// log records it, and the authenticator reloads so it is in force for
/// the next request (a disabled operator's sessions have ended).
pub(crate) fn change_account(
    st: &ApiState,
    k: &Kanki,
    by: &Principal,
    change: &AccountChange,
) -> Result<serde_json::Value, ApiError> {
    let store = k.store.operators();
    let now = Utc::now();
    let (action, input, result) = match change {
        AccountChange::Disable(name) | AccountChange::Enable(name) => {
            let disabled = matches!(change, AccountChange::Disable(_));
            let target = accounts::operator(store, name)?;
            accounts::refuse_own_lockout(by.operator_id, &target, disabled, target.roles)?;
            let op = accounts::set_disabled(store, name, disabled, now)?;
            (
                if disabled {
                    "account-disable"
                } else {
                    "account-enable"
                },
                json!({ "operator": name }),
                json!({ "operator": op.name, "disabled": op.disabled }),
            )
        }
        AccountChange::SetRoles(name, roles) => {
            let target = accounts::operator(store, name)?;
            accounts::refuse_own_lockout(by.operator_id, &target, false, *roles)?;
            let op = accounts::set_roles(store, name, *roles, now)?;
            (
                "account-roles",
                json!({ "operator": name, "roles": roles.to_string() }),
                json!({ "operator": op.name, "roles": op.roles.to_string() }),
            )
        }
        AccountChange::RevokeToken(id) => {
            accounts::revoke_token(store, id, now)?;
            (
                "token-revoke",
                json!({ "token": id }),
                json!({ "token": id, "revoked": true }),
            )
        }
    };
    let entry = AuditEntry::account_change(now, &by.actor(), action, input, result.clone());
    k.store.directory().audit_append(&entry)?;
    st.auth.refresh(store, now).map_err(AccountError::from)?;
    Ok(result)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisabledBody {
    disabled: bool,
}

pub(crate) async fn set_disabled(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Caller(caller): Caller,
    Json(b): Json<DisabledBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let change = if b.disabled {
        AccountChange::Disable(name)
    } else {
        AccountChange::Enable(name)
    };
    let state = st.clone();
    blocking(&st, move |k| change_account(&state, k, &caller, &change))
        .await
        .map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolesBody {
    /// `analyst,viewer`: at least one.
    roles: String,
}

pub(crate) async fn set_roles(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Caller(caller): Caller,
    Json(b): Json<RolesBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let roles: Roles = b
        .roles
        .parse()
        .map_err(|e: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let change = AccountChange::SetRoles(name, roles);
    let state = st.clone();
    blocking(&st, move |k| change_account(&state, k, &caller, &change))
        .await
        .map(Json)
}

pub(crate) async fn revoke_token(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Caller(caller): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id
        .trim()
        .trim_start_matches(kanki_operators::secret::TOKEN_PREFIX)
        .to_string();
    let change = AccountChange::RevokeToken(id);
    let state = st.clone();
    blocking(&st, move |k| change_account(&state, k, &caller, &change))
        .await
        .map(Json)
}

/// The configuration in effect, secrets redacted.
pub(crate) async fn config(State(st): State<ApiState>) -> Json<toml::Table> {
    Json(st.kanki.config.redacted())
}
