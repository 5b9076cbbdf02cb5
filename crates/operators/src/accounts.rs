//! The rules for accounts and tokens: names, passwords, roles, scopes,
//! expiry and source prefixes, decided before anything is stored.

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::model::{AccountKind, NewOperator, Operator, Roles, Token};
use crate::secret::{self, WeakPassword};
use crate::store::{OperatorStore, StorageError};

/// Why an account or token change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    WeakPassword(#[from] WeakPassword),
    #[error("no operator named {0:?}")]
    NoSuchOperator(String),
    #[error("no token {0:?} (or it is already revoked)")]
    NoSuchToken(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An operator name: 1 to 64 of `a-z 0-9 . _ @ -`, starting with a letter
/// or digit (it is the audit log's actor, so it must read plainly).
pub fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "operator name {name:?}: 1 to 64 of a-z, 0-9, '.', '_', '@', '-', starting with a letter or digit"
        )))
    }
}

/// Adds an operator. A local account's password is hashed here (slowly:
/// call this on a blocking thread); an LDAP or machine account has none.
pub fn add_operator(
    store: &dyn OperatorStore,
    name: &str,
    kind: AccountKind,
    roles: Roles,
    password: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Operator, AccountError> {
    check_name(name)?;
    if roles.is_empty() {
        return Err(AccountError::Invalid(
            "an operator holds at least one role".into(),
        ));
    }
    let password_hash = match (kind, password) {
        (AccountKind::Local, Some(p)) => Some(secret::hash_password(p)?),
        (AccountKind::Local, None) => None,
        (_, Some(_)) => {
            return Err(AccountError::Invalid(format!(
                "a {} account has no password kept by kanki",
                kind.as_str()
            )));
        }
        (_, None) => None,
    };
    Ok(store.add_operator(
        &NewOperator {
            name: name.to_string(),
            kind,
            roles,
            password_hash,
            totp_secret: None,
        },
        now,
    )?)
}

pub fn operator(store: &dyn OperatorStore, name: &str) -> Result<Operator, AccountError> {
    store
        .operator_named(name)?
        .ok_or_else(|| AccountError::NoSuchOperator(name.to_string()))
}

/// Disables (or enables again) an operator; a disabled one's sessions end
/// and its tokens stop working.
pub fn set_disabled(
    store: &dyn OperatorStore,
    name: &str,
    disabled: bool,
    now: DateTime<Utc>,
) -> Result<Operator, AccountError> {
    let mut op = operator(store, name)?;
    op.disabled = disabled;
    store.update_operator(&op, now)?;
    if disabled {
        store.end_sessions_of(op.id)?;
    }
    Ok(op)
}

/// Refuses a change an administrator makes to their own account that
/// would lock them out: disabling it, or taking away its administrator
/// role (another administrator, or the CLI on the server, must do that).
pub fn refuse_own_lockout(
    by: i64,
    target: &Operator,
    disabled: bool,
    roles: Roles,
) -> Result<(), AccountError> {
    if by != target.id {
        return Ok(());
    }
    if disabled {
        return Err(AccountError::Invalid(format!(
            "{} cannot disable their own account",
            target.name
        )));
    }
    if !roles.contains(crate::model::Role::Administrator) {
        return Err(AccountError::Invalid(format!(
            "{} cannot take the administrator role from their own account",
            target.name
        )));
    }
    Ok(())
}

/// Sets a new password (hashed here: call on a blocking thread); the
/// operator's sessions end.
pub fn reset_password(
    store: &dyn OperatorStore,
    name: &str,
    password: &str,
    now: DateTime<Utc>,
) -> Result<Operator, AccountError> {
    let mut op = operator(store, name)?;
    if op.kind != AccountKind::Local {
        return Err(AccountError::Invalid(format!(
            "{name} is a {} account: its password is not kept by kanki",
            op.kind.as_str()
        )));
    }
    op.password_hash = Some(secret::hash_password(password)?);
    store.update_operator(&op, now)?;
    store.end_sessions_of(op.id)?;
    Ok(op)
}

/// Replaces an operator's roles. Tokens narrow with it at once (a token
/// acts with its scope and its owner's roles both).
pub fn set_roles(
    store: &dyn OperatorStore,
    name: &str,
    roles: Roles,
    now: DateTime<Utc>,
) -> Result<Operator, AccountError> {
    if roles.is_empty() {
        return Err(AccountError::Invalid(
            "an operator holds at least one role".into(),
        ));
    }
    let mut op = operator(store, name)?;
    op.roles = roles;
    store.update_operator(&op, now)?;
    Ok(op)
}

/// Turns on TOTP for an operator and returns the new secret.
pub fn enroll_totp(
    store: &dyn OperatorStore,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(Operator, Vec<u8>), AccountError> {
    let mut op = operator(store, name)?;
    let s = secret::new_totp_secret();
    op.totp_secret = Some(s.clone());
    store.update_operator(&op, now)?;
    Ok((op, s))
}

/// What a new token is to be.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub operator: String,
    pub name: String,
    /// `None`: the owner's roles.
    pub scope: Option<Roles>,
    pub expires_at: Option<DateTime<Utc>>,
    pub sources: Vec<IpNet>,
}

/// Creates a token: returns it as stored and the token string, which is
/// shown this once and never stored.
pub fn create_token(
    store: &dyn OperatorStore,
    req: &TokenRequest,
    now: DateTime<Utc>,
) -> Result<(Token, String), AccountError> {
    register_token(store, req, None, now)
}

/// [`create_token`], or, given `existing` (a token string made by an
/// earlier `create_token`, in its exact format), registers that token
/// again: for moving a machine client's token to a rebuilt server without
/// handing the client a new one.
pub fn register_token(
    store: &dyn OperatorStore,
    req: &TokenRequest,
    existing: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Token, String), AccountError> {
    let op = operator(store, &req.operator)?;
    if op.disabled {
        return Err(AccountError::Invalid(format!(
            "{} is disabled: it cannot have a new token",
            op.name
        )));
    }
    let scope = req.scope.unwrap_or(op.roles);
    if scope.is_empty() || !scope.is_subset(op.roles) {
        return Err(AccountError::Invalid(format!(
            "a token's scope is its owner's roles or fewer: {} holds {}, not {scope}",
            op.name, op.roles
        )));
    }
    if req.expires_at.is_some_and(|e| e <= now) {
        return Err(AccountError::Invalid(
            "the token would expire before it is made".into(),
        ));
    }
    if req.name.trim().is_empty() || req.name.len() > 128 {
        return Err(AccountError::Invalid(
            "a token's name says what it is for: 1 to 128 characters".into(),
        ));
    }
    let made = match existing {
        None => secret::new_token(),
        Some(t) => {
            let p =
                secret::parse_token(t.trim()).map_err(|e| AccountError::Invalid(e.to_string()))?;
            secret::NewTokenSecret {
                id: p.id,
                token: t.trim().to_string(),
                secret_hash: p.secret_hash,
            }
        }
    };
    let token = Token {
        id: made.id,
        name: req.name.trim().to_string(),
        operator_id: op.id,
        operator: op.name,
        scope,
        expires_at: req.expires_at,
        sources: req.sources.iter().map(IpNet::trunc).collect(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
        secret_hash: made.secret_hash,
    };
    store.add_token(&token)?;
    Ok((token, made.token))
}

pub fn revoke_token(
    store: &dyn OperatorStore,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    if store.revoke_token(id, now)? {
        Ok(())
    } else {
        Err(AccountError::NoSuchToken(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    #[test]
    fn an_administrator_cannot_lock_themselves_out_but_may_change_others() {
        let admin = Operator {
            id: 7,
            name: "ada".into(),
            kind: AccountKind::Local,
            roles: [Role::Administrator, Role::Viewer].into_iter().collect(),
            disabled: false,
            password_hash: None,
            totp_secret: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        assert!(refuse_own_lockout(7, &admin, true, admin.roles).is_err());
        assert!(refuse_own_lockout(7, &admin, false, Role::Viewer.into()).is_err());
        refuse_own_lockout(7, &admin, false, Role::Administrator.into()).unwrap();
        refuse_own_lockout(8, &admin, true, Role::Viewer.into()).unwrap();
    }
}
