//! Sign-in with a name and password (and a TOTP code when the operator has
//! one): the rules, apart from any web page.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::limit::SignInLimiter;
use crate::model::{AccountKind, Operator};
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
    #[error("this account is disabled")]
    Disabled,
    #[error("this account signs in through the directory (LDAP), which is not configured")]
    NoDirectory,
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
            SignInError::Disabled => "disabled",
            SignInError::NoDirectory => "no-directory",
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
    if let Some(s) = &op.totp_secret {
        let Some(code) = a.totp.filter(|c| !c.trim().is_empty()) else {
            return Err(SignInError::TotpNeeded);
        };
        if !secret::check_totp(s, code, now.timestamp().max(0) as u64) {
            limiter.failed(a.name, a.source);
            return Err(SignInError::WrongTotp);
        }
    }
    if op.disabled {
        return Err(SignInError::Disabled);
    }
    limiter.succeeded(a.name);
    Ok(op)
}
