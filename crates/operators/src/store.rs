//! What the operators part needs from storage. A backend implements it and
//! holds no rule: validation, hashing, scopes and expiry are decided here
//! in this crate before anything is written.

use chrono::{DateTime, Utc};

use crate::model::{NewOperator, Operator, Session, Token};

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A name or id already taken.
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("storage: {0}")]
    Backend(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Operators, tokens and sessions as stored. Every method is one atomic,
/// durable change.
pub trait OperatorStore: Send + Sync {
    fn add_operator(&self, new: &NewOperator, now: DateTime<Utc>) -> StorageResult<Operator>;
    /// Every operator, by name.
    fn operators(&self) -> StorageResult<Vec<Operator>>;
    fn operator_named(&self, name: &str) -> StorageResult<Option<Operator>>;
    /// Writes an operator's roles, kind, disabled flag, password hash and
    /// TOTP secret.
    fn update_operator(&self, op: &Operator, now: DateTime<Utc>) -> StorageResult<()>;
    /// Records `step` as the last TOTP time step the operator signed in
    /// with, only if it is later than the one recorded; false (nothing
    /// written) when it is not. One atomic compare-and-set, so that two
    /// sign-ins racing with one code cannot both succeed.
    fn accept_totp_step(&self, operator_id: i64, step: u64) -> StorageResult<bool>;

    /// The installation's pseudonym key: the one stored, or `fresh`,
    /// stored now, when there is none yet (the first caller wins).
    fn pseudonym_key(&self, fresh: &[u8; 32]) -> StorageResult<Vec<u8>>;

    /// The console language an operator chose (`ja` or `en`); `None`
    /// before they chose one.
    fn console_language(&self, operator_id: i64) -> StorageResult<Option<String>>;
    /// Remembers an operator's console language.
    fn set_console_language(&self, operator_id: i64, language: &str) -> StorageResult<()>;

    fn add_token(&self, token: &Token) -> StorageResult<()>;
    /// Every token, revoked and expired ones included, newest first, with
    /// their owners' names.
    fn tokens(&self) -> StorageResult<Vec<Token>>;
    /// Marks a token revoked; false when there is no such token or it was
    /// already revoked.
    fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> StorageResult<bool>;
    /// Records when tokens were last used (batched by the caller).
    fn record_token_use(&self, used: &[(String, DateTime<Utc>)]) -> StorageResult<()>;

    fn add_session(&self, session: &Session) -> StorageResult<()>;
    fn sessions(&self) -> StorageResult<Vec<Session>>;
    /// Records when sessions were last seen (batched by the caller).
    fn record_session_use(&self, seen: &[([u8; 32], DateTime<Utc>)]) -> StorageResult<()>;
    fn end_session(&self, secret_hash: &[u8; 32]) -> StorageResult<bool>;
    /// Ends every session of one operator (disabled, password reset).
    fn end_sessions_of(&self, operator_id: i64) -> StorageResult<u64>;
    /// Removes sessions created before `created_before` or last seen
    /// before `seen_before`.
    fn end_stale_sessions(
        &self,
        created_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StorageResult<u64>;
}
