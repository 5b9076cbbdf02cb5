//! Authentication of requests: a token or a session cookie to a
//! [`Principal`], in microseconds.
//!
//! Tokens, their owners and sessions are held in memory, loaded from the
//! store and reloaded by [`Authenticator::refresh`] (`kanki serve` calls it
//! every `operators.refresh_every`, so a token revoked or an operator
//! disabled by `kanki tokens revoke` in another process stops working
//! within that time; a change made through this process's API takes effect
//! at once). Last-used times are kept in memory and written at each
//! refresh: a request writes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use crate::model::{Operator, Principal, Roles, Session, Token};
use crate::secret::{self, Malformed, PresentedToken};
use crate::store::{OperatorStore, StorageError};

/// Why a request is not authenticated (answered 401, counted by reason).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send \"Authorization: Bearer <token>\" or sign in")]
    Missing,
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("unknown token")]
    UnknownToken,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token has expired")]
    Expired,
    #[error("the token may not be used from this address")]
    SourceNotAllowed,
    #[error("the operator is disabled")]
    Disabled,
    #[error("the session is unknown or was ended: sign in again")]
    UnknownSession,
    #[error("the session has expired: sign in again")]
    SessionExpired,
}

impl AuthError {
    /// The label `/metrics` counts it under.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnknownToken => "unknown-token",
            AuthError::Revoked => "revoked",
            AuthError::Expired => "expired",
            AuthError::SourceNotAllowed => "source-not-allowed",
            AuthError::Disabled => "disabled",
            AuthError::UnknownSession => "unknown-session",
            AuthError::SessionExpired => "session-expired",
        }
    }
}

/// Session lifetimes.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub absolute: Duration,
}

struct CachedToken {
    token: Token,
    /// Unix seconds of the last use not yet written; 0: none.
    used: AtomicI64,
}

struct CachedSession {
    session: Session,
    /// Unix seconds of the last use.
    last_seen: AtomicI64,
    /// Unix seconds of the last use not yet written; 0: none.
    unwritten: AtomicI64,
}

#[derive(Clone)]
struct CachedOperator {
    name: String,
    roles: Roles,
    disabled: bool,
}

#[derive(Default)]
struct Cache {
    tokens: HashMap<String, CachedToken>,
    operators: HashMap<i64, CachedOperator>,
    sessions: HashMap<[u8; 32], CachedSession>,
}

/// A token's id and when it was last used.
type TokenUse = (String, DateTime<Utc>);
/// A session's hash and when it was last seen.
type SessionUse = ([u8; 32], DateTime<Utc>);

/// Checks tokens and session cookies against what is in memory.
pub struct Authenticator {
    cache: RwLock<Cache>,
    limits: SessionLimits,
    /// When the cache was last reloaded because of an unknown token.
    last_miss_reload: Mutex<Option<Instant>>,
}

/// Reloads for unknown tokens are at most this frequent (a stream of
/// made-up tokens must not turn into a stream of store reads).
const MISS_RELOAD_EVERY: Duration = Duration::from_secs(1);

fn unix(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn from_unix(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap_or_default()
}

impl Authenticator {
    /// An authenticator loaded from the store.
    pub fn load(
        store: &dyn OperatorStore,
        limits: SessionLimits,
        now: DateTime<Utc>,
    ) -> Result<Authenticator, StorageError> {
        let a = Authenticator {
            cache: RwLock::new(Cache::default()),
            limits,
            last_miss_reload: Mutex::new(None),
        };
        a.refresh(store, now)?;
        Ok(a)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes last-used times, ends stale sessions and reloads tokens,
    /// operators and sessions from the store.
    pub fn refresh(
        &self,
        store: &dyn OperatorStore,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let (used, seen) = self.unwritten_use();
        if !used.is_empty() {
            store.record_token_use(&used)?;
        }
        if !seen.is_empty() {
            store.record_session_use(&seen)?;
        }
        let created_before = now - self.limits.absolute;
        let seen_before = now - self.limits.idle;
        store.end_stale_sessions(created_before, seen_before)?;
        let operators: HashMap<i64, CachedOperator> = store
            .operators()?
            .into_iter()
            .map(|o: Operator| {
                (
                    o.id,
                    CachedOperator {
                        name: o.name,
                        roles: o.roles,
                        disabled: o.disabled,
                    },
                )
            })
            .collect();
        let mut cache = self.write();
        let tokens = store
            .tokens()?
            .into_iter()
            .map(|t| {
                // A use not yet written survives the reload.
                let used = cache
                    .tokens
                    .get(&t.id)
                    .map_or(0, |c| c.used.load(Ordering::Relaxed));
                (
                    t.id.clone(),
                    CachedToken {
                        token: t,
                        used: AtomicI64::new(used),
                    },
                )
            })
            .collect();
        let sessions = store
            .sessions()?
            .into_iter()
            .map(|s| {
                let (last_seen, unwritten) =
                    cache
                        .sessions
                        .get(&s.secret_hash)
                        .map_or((unix(s.last_seen_at), 0), |c| {
                            (
                                c.last_seen.load(Ordering::Relaxed),
                                c.unwritten.load(Ordering::Relaxed),
                            )
                        });
                (
                    s.secret_hash,
                    CachedSession {
                        session: s,
                        last_seen: AtomicI64::new(last_seen),
                        unwritten: AtomicI64::new(unwritten),
                    },
                )
            })
            .collect();
        *cache = Cache {
            tokens,
            operators,
            sessions,
        };
        Ok(())
    }

    /// Whether an unknown token may trigger a reload now (at most once a
    /// second): a token made a moment ago by `kanki tokens create` works at
    /// once.
    pub fn reload_for_miss_due(&self) -> bool {
        let mut last = self
            .last_miss_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= MISS_RELOAD_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    fn unwritten_use(&self) -> (Vec<TokenUse>, Vec<SessionUse>) {
        let cache = self.read();
        let used = cache
            .tokens
            .values()
            .filter_map(|c| {
                let t = c.used.swap(0, Ordering::Relaxed);
                (t != 0).then(|| (c.token.id.clone(), from_unix(t)))
            })
            .collect();
        let seen = cache
            .sessions
            .values()
            .filter_map(|c| {
                let t = c.unwritten.swap(0, Ordering::Relaxed);
                (t != 0).then(|| (c.session.secret_hash, from_unix(t)))
            })
            .collect();
        (used, seen)
    }

    fn principal(
        cache: &Cache,
        operator_id: i64,
        scope: Option<Roles>,
        token: Option<&str>,
        csrf: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let op = cache
            .operators
            .get(&operator_id)
            .ok_or(AuthError::Disabled)?;
        if op.disabled {
            return Err(AuthError::Disabled);
        }
        let roles = scope.map_or(op.roles, |s| s.intersect(op.roles));
        Ok(Principal {
            operator_id,
            operator: op.name.clone(),
            token: token.map(str::to_string),
            roles,
            permissions: roles.permissions(),
            csrf: csrf.map(str::to_string),
        })
    }

    /// Checks a presented token: known, its secret right, not revoked, not
    /// expired, used from one of its prefixes, its owner enabled.
    pub fn authenticate_token(
        &self,
        presented: &PresentedToken,
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let cache = self.read();
        let c = cache
            .tokens
            .get(&presented.id)
            .filter(|c| secret::same_hash(&c.token.secret_hash, &presented.secret_hash))
            .ok_or(AuthError::UnknownToken)?;
        let t = &c.token;
        if t.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if t.expires_at.is_some_and(|e| e <= now) {
            return Err(AuthError::Expired);
        }
        let source = canonical(source);
        if !t.sources.is_empty() && !t.sources.iter().any(|p| p.contains(&source)) {
            return Err(AuthError::SourceNotAllowed);
        }
        let p = Self::principal(&cache, t.operator_id, Some(t.scope), Some(&t.id), None)?;
        c.used.store(unix(now), Ordering::Relaxed);
        Ok(p)
    }

    /// Checks a session cookie's hash: known, neither idle nor too old, its
    /// operator enabled.
    pub fn authenticate_session(
        &self,
        secret_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let cache = self.read();
        let c = cache
            .sessions
            .get(secret_hash)
            .ok_or(AuthError::UnknownSession)?;
        let now_s = unix(now);
        let idle = now_s - c.last_seen.load(Ordering::Relaxed);
        let age = now - c.session.created_at;
        if idle > self.limits.idle.as_secs() as i64
            || age.to_std().is_ok_and(|a| a > self.limits.absolute)
        {
            return Err(AuthError::SessionExpired);
        }
        let p = Self::principal(
            &cache,
            c.session.operator_id,
            None,
            None,
            Some(&c.session.csrf),
        )?;
        c.last_seen.store(now_s, Ordering::Relaxed);
        c.unwritten.store(now_s, Ordering::Relaxed);
        Ok(p)
    }

    /// Starts a session for an operator who has just signed in; returns
    /// the cookie's value (given to the browser, never stored) and the
    /// session.
    pub fn start_session(
        &self,
        store: &dyn OperatorStore,
        operator: &Operator,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), StorageError> {
        let (cookie, secret_hash) = secret::new_session_secret();
        let session = Session {
            secret_hash,
            operator_id: operator.id,
            csrf: secret::new_csrf_token(),
            created_at: now,
            last_seen_at: now,
        };
        store.add_session(&session)?;
        let mut cache = self.write();
        cache.operators.insert(
            operator.id,
            CachedOperator {
                name: operator.name.clone(),
                roles: operator.roles,
                disabled: operator.disabled,
            },
        );
        cache.sessions.insert(
            secret_hash,
            CachedSession {
                session: session.clone(),
                last_seen: AtomicI64::new(unix(now)),
                unwritten: AtomicI64::new(0),
            },
        );
        Ok((cookie, session))
    }

    /// Ends a session (sign-out): its cookie no longer works, here at once
    /// and elsewhere at the next refresh.
    pub fn end_session(
        &self,
        store: &dyn OperatorStore,
        secret_hash: &[u8; 32],
    ) -> Result<bool, StorageError> {
        self.write().sessions.remove(secret_hash);
        store.end_session(secret_hash)
    }

    /// Forgets a revoked token at once (in this process).
    pub fn forget_token(&self, id: &str) {
        if let Some(c) = self.write().tokens.get_mut(id) {
            c.token.revoked_at = Some(Utc::now());
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a dual-stack
/// listener reports IPv4 clients so).
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}
