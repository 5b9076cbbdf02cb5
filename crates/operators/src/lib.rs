//! kanki's operators: who may do what.
//!
//! * [`model`]: operators (local, LDAP or machine accounts), the roles they
//!   hold, the [`Permission`]s a role grants, API tokens and browser
//!   sessions, and the [`Principal`] an authenticated request acts as (the
//!   audit log's actor).
//! * [`secret`]: token and cookie formats (parsing and hashing: only a
//!   SHA-256 of a 256-bit secret is stored), argon2id passwords and RFC 6238
//!   TOTP codes.
//! * [`accounts`]: the rules for adding operators, roles, passwords and
//!   tokens (scope within the owner's roles, expiry, source prefixes).
//! * [`auth`]: checking a request's token or session cookie in memory.
//! * [`signin`] and [`limit`]: signing in with a password and TOTP code,
//!   and the rate limits on failed attempts; [`ldap`]: the password checked
//!   by the ISP's directory instead, and roles from its groups.
//! * [`pseudonym`]: subscribers named by a keyed pseudonym to whoever may
//!   not see their identity.
//! * [`store`]: the storage this part needs ([`OperatorStore`]), which a
//!   backend implements without rules of its own.

pub mod accounts;
pub mod auth;
pub mod ldap;
pub mod limit;
pub mod listener;
pub mod model;
pub mod pseudonym;
pub mod secret;
pub mod signin;
pub mod store;

pub use accounts::{AccountError, TokenRequest};
pub use auth::{AuthError, Authenticator, SessionLimits};
pub use limit::{SignInLimiter, SignInLimits};
pub use model::{
    AccountKind, NewOperator, Operator, Permission, Permissions, Principal, Role, Roles, Session,
    Token,
};
pub use signin::{Attempt, SignInError};
pub use store::{OperatorStore, StorageError, StorageResult};

/// The actor the one-shot command line records: the operating-system user
/// running it (`os:alice`), since `kanki <command>` acts as the machine's
/// local administrator.
pub fn os_actor() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    let by_uid = uid.as_deref().and_then(|uid| {
        std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
    });
    let name = by_uid
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| uid.map(|u| format!("uid{u}")))
        .unwrap_or_else(|| "unknown".into());
    format!("os:{name}")
}
