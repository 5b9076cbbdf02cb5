//! Sign-in with a name and password (and a TOTP code when the operator has
//! one): the rules, apart from any web page.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::ldap::{Directory, DirectoryError};
use crate::limit::SignInLimiter;
use crate::model::{AccountKind, NewOperator, Operator};
use crate::secret;
use crate::store::{OperatorStore, StorageError};

/// Why a sign-in failed. The message never says whether the name exists.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("too many failed sign-ins: wait and try again later")]
    RateLimited,
    #[error("wrong name or password")]
    WrongCredentials,
    #[error("a TOTP code from the authenticator app is needed")]
    TotpNeeded,
    #[error("wrong TOTP code")]
    WrongTotp,
    #[error("this TOTP code was used already: wait for the next one")]
    TotpReused,
    #[error("this account is disabled")]
    Disabled,
    #[error("this account signs in through the directory (LDAP), which is not configured")]
    NoDirectory,
    #[error("the directory (LDAP) could not be asked: try again later")]
    DirectoryUnavailable,
    #[error("none of your directory groups gives a role in kanki")]
    NoRole,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl SignInError {
    /// The label `/metrics` counts it under.
    pub fn reason(&self) -> &'static str {
        match self {
            SignInError::RateLimited => "rate-limited",
            SignInError::WrongCredentials => "wrong-credentials",
            SignInError::TotpNeeded => "totp-needed",
            SignInError::WrongTotp => "wrong-totp",
            SignInError::TotpReused => "totp-reused",
            SignInError::Disabled => "disabled",
            SignInError::NoDirectory => "no-directory",
            SignInError::DirectoryUnavailable => "directory-unavailable",
            SignInError::NoRole => "no-role",
            SignInError::Storage(_) => "storage",
        }
    }
}

/// A sign-in attempt.
pub struct Attempt<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub totp: Option<&'a str>,
    pub source: IpAddr,
}

/// A hash of a password nobody has, checked when the name is unknown so
/// that an unknown name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        secret::hash_password("a decoy nobody can sign in with").expect("a long enough password")
    })
}

/// Checks a local account's password (argon2id: slow on purpose, call it
/// on a blocking thread) and TOTP code, under the rate limits. LDAP
/// accounts are checked by the directory, not here.
pub fn sign_in_local(
    store: &dyn OperatorStore,
    limiter: &SignInLimiter,
    a: &Attempt<'_>,
    now: DateTime<Utc>,
) -> Result<Operator, SignInError> {
    if !limiter.allowed(a.name, a.source) {
        return Err(SignInError::RateLimited);
    }
    let op = store.operator_named(a.name)?;
    let hash = op
        .as_ref()
        .filter(|o| o.kind == AccountKind::Local)
        .and_then(|o| o.password_hash.clone());
    let has_hash = hash.is_some();
    let password_ok = secret::verify_password(a.password, hash.as_deref().unwrap_or(decoy_hash()));
    let Some(op) = op.filter(|_| password_ok && has_hash) else {
        limiter.failed(a.name, a.source);
        return Err(SignInError::WrongCredentials);
    };
    second_factor_and_admit(store, limiter, a, op, now)
}

/// Whether a name's password is checked by the directory: an LDAP account,
/// or a name kanki does not know yet while a directory is configured (its
/// first sign-in makes the account).
pub fn by_directory(store: &dyn OperatorStore, name: &str) -> Result<bool, StorageError> {
    Ok(store
        .operator_named(name)?
        .is_none_or(|o| o.kind == AccountKind::Ldap))
}

/// Finishes a sign-in whose password the directory checked: `groups` is
/// its answer. The operator gets the roles of their groups now (the
/// account is made at the first sign-in, its roles rewritten at each one);
/// a local disable still wins; an operator in no mapped group gets no
/// access (and loses the roles of an earlier sign-in). Storage calls:
/// call it on a blocking thread.
pub fn sign_in_directory(
    store: &dyn OperatorStore,
    limiter: &SignInLimiter,
    directory: &Directory,
    a: &Attempt<'_>,
    groups: Result<Vec<String>, DirectoryError>,
    now: DateTime<Utc>,
) -> Result<Operator, SignInError> {
    let groups = match groups {
        Ok(g) => g,
        Err(DirectoryError::Refused) => {
            limiter.failed(a.name, a.source);
            return Err(SignInError::WrongCredentials);
        }
        Err(DirectoryError::Unavailable(_)) => return Err(SignInError::DirectoryUnavailable),
    };
    let roles = directory.roles_of(&groups);
    let op = match store.operator_named(a.name)? {
        // A local or machine account of that name is not the directory's.
        Some(op) if op.kind != AccountKind::Ldap => {
            limiter.failed(a.name, a.source);
            return Err(SignInError::WrongCredentials);
        }
        Some(mut op) => {
            if op.roles != roles {
                op.roles = roles;
                store.update_operator(&op, now)?;
            }
            op
        }
        None if roles.is_empty() => return Err(SignInError::NoRole),
        None => store.add_operator(
            &NewOperator {
                name: a.name.to_string(),
                kind: AccountKind::Ldap,
                roles,
                password_hash: None,
                totp_secret: None,
            },
            now,
        )?,
    };
    if roles.is_empty() {
        return Err(SignInError::NoRole);
    }
    second_factor_and_admit(store, limiter, a, op, now)
}

/// The steps after a right password: the TOTP code when the operator has
/// one (each code accepted once), and a disabled account refused.
fn second_factor_and_admit(
    store: &dyn OperatorStore,
    limiter: &SignInLimiter,
    a: &Attempt<'_>,
    op: Operator,
    now: DateTime<Utc>,
) -> Result<Operator, SignInError> {
    if let Some(s) = &op.totp_secret {
        let Some(code) = a.totp.filter(|c| !c.trim().is_empty()) else {
            return Err(SignInError::TotpNeeded);
        };
        let Some(step) = secret::totp_step(s, code, now.timestamp().max(0) as u64) else {
            limiter.failed(a.name, a.source);
            return Err(SignInError::WrongTotp);
        };
        if !store.accept_totp_step(op.id, step)? {
            limiter.failed(a.name, a.source);
            return Err(SignInError::TotpReused);
        }
    }
    if op.disabled {
        return Err(SignInError::Disabled);
    }
    limiter.succeeded(a.name);
    Ok(op)
}
