//! Operators, tokens and sessions on a real SQLite file, checked through
//! the operators part's own rules and authenticator.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use kanki_operators::accounts::{self, TokenRequest};
use kanki_operators::ldap::{Directory, DirectoryError};
use kanki_operators::{
    AccountError, AccountKind, Attempt, AuthError, Authenticator, Permission, Role, Roles,
    SessionLimits, SignInError, SignInLimiter, SignInLimits, StorageError, secret, signin,
};
use kanki_store::{SqliteOptions, Store};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open_sqlite(&dir.path().join("kanki.sqlite3"), &SqliteOptions::default()).unwrap()
}

fn at(s: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

const LIMITS: SessionLimits = SessionLimits {
    idle: Duration::from_secs(600),
    absolute: Duration::from_secs(3600),
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn operators_keep_their_roles_and_only_a_password_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ops = store.operators();
    let roles: Roles = "analyst,auditor".parse().unwrap();
    let alice = accounts::add_operator(
        ops,
        "alice",
        AccountKind::Local,
        roles,
        Some("a long enough password"),
        at(0),
    )
    .unwrap();
    assert_eq!(alice.roles, roles);
    let stored = ops.operator_named("alice").unwrap().unwrap();
    let hash = stored.password_hash.clone().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("a long enough password"));
    assert!(kanki_operators::secret::verify_password(
        "a long enough password",
        &hash
    ));
    // Names are unique, and plain.
    assert!(matches!(
        accounts::add_operator(ops, "alice", AccountKind::Machine, roles, None, at(1)),
        Err(AccountError::Storage(StorageError::Conflict(_)))
    ));
    assert!(matches!(
        accounts::add_operator(ops, "Bob Smith", AccountKind::Machine, roles, None, at(1)),
        Err(AccountError::Invalid(_))
    ));
    // Roles change; disabling; a new password.
    let r = accounts::set_roles(ops, "alice", "viewer".parse().unwrap(), at(2)).unwrap();
    assert_eq!(r.roles.iter().collect::<Vec<_>>(), [Role::Viewer]);
    accounts::set_disabled(ops, "alice", true, at(3)).unwrap();
    assert!(ops.operator_named("alice").unwrap().unwrap().disabled);
    accounts::reset_password(ops, "alice", "another long password", at(4)).unwrap();
    let h2 = ops
        .operator_named("alice")
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    assert!(kanki_operators::secret::verify_password(
        "another long password",
        &h2
    ));
    assert!(!kanki_operators::secret::verify_password(
        "a long enough password",
        &h2
    ));
}

#[test]
fn a_token_acts_within_its_scope_prefixes_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ops = store.operators();
    accounts::add_operator(
        ops,
        "ingest-bot",
        AccountKind::Machine,
        "list-curator,analyst".parse().unwrap(),
        None,
        at(0),
    )
    .unwrap();
    // A scope beyond the owner's roles is refused.
    let wide = TokenRequest {
        operator: "ingest-bot".into(),
        name: "too wide".into(),
        scope: Some("administrator".parse().unwrap()),
        expires_at: None,
        sources: vec![],
    };
    assert!(matches!(
        accounts::create_token(ops, &wide, at(0)),
        Err(AccountError::Invalid(_))
    ));
    let req = TokenRequest {
        operator: "ingest-bot".into(),
        name: "ci".into(),
        scope: Some("list-curator".parse().unwrap()),
        expires_at: Some(at(100)),
        sources: vec!["192.0.2.0/24".parse().unwrap()],
    };
    let (token, secret) = accounts::create_token(ops, &req, at(0)).unwrap();
    // Only a hash is stored.
    let raw: Vec<u8> = {
        let c = rusqlite::Connection::open(dir.path().join("kanki.sqlite3")).unwrap();
        c.query_row("SELECT * FROM api_tokens", [], |r| {
            let mut all = Vec::new();
            for i in 0..11 {
                if let Ok(v) = r.get::<_, rusqlite::types::Value>(i) {
                    all.extend(format!("{v:?}").into_bytes());
                }
            }
            Ok(all)
        })
        .unwrap()
    };
    // kanki_<id>_<secret>: the secret is base64url, which has '_' in its
    // alphabet (its last piece alone could be two characters long).
    let secret_part = secret.splitn(3, '_').nth(2).unwrap();
    assert!(secret_part.len() >= 40, "{secret}");
    assert!(!String::from_utf8_lossy(&raw).contains(secret_part));

    let auth = Authenticator::load(ops, LIMITS, at(1)).unwrap();
    let presented = kanki_operators::secret::parse_token(&secret).unwrap();
    let p = auth
        .authenticate_token(&presented, ip("192.0.2.7"), at(5))
        .unwrap();
    assert_eq!(p.operator, "ingest-bot");
    assert_eq!(p.actor(), format!("ingest-bot token {}", token.id));
    assert!(p.may(Permission::CurateList));
    assert!(p.may(Permission::Ingest));
    // The scope leaves out the owner's analyst role.
    assert!(!p.may(Permission::ReadCases));
    // An IPv4-mapped source counts as its IPv4 address.
    assert!(
        auth.authenticate_token(&presented, ip("::ffff:192.0.2.9"), at(5))
            .is_ok()
    );
    assert_eq!(
        auth.authenticate_token(&presented, ip("198.51.100.1"), at(5)),
        Err(AuthError::SourceNotAllowed)
    );
    assert_eq!(
        auth.authenticate_token(&presented, ip("192.0.2.7"), at(100)),
        Err(AuthError::Expired)
    );
    // A forged secret with a real id.
    let forged =
        kanki_operators::secret::parse_token(&format!("kanki_{}_{}", token.id, "A".repeat(43)))
            .unwrap();
    assert_eq!(
        auth.authenticate_token(&forged, ip("192.0.2.7"), at(5)),
        Err(AuthError::UnknownToken)
    );
    // Last use is written at refresh.
    auth.refresh(ops, at(6)).unwrap();
    let listed = ops.tokens().unwrap();
    assert_eq!(listed[0].last_used_at, Some(at(5)));

    // The owner loses a role: the token loses it too.
    accounts::set_roles(ops, "ingest-bot", "analyst".parse().unwrap(), at(7)).unwrap();
    auth.refresh(ops, at(7)).unwrap();
    let p = auth
        .authenticate_token(&presented, ip("192.0.2.7"), at(8))
        .unwrap();
    assert!(!p.may(Permission::CurateList));

    // Disabled owner, then revoked token.
    accounts::set_disabled(ops, "ingest-bot", true, at(9)).unwrap();
    auth.refresh(ops, at(9)).unwrap();
    assert_eq!(
        auth.authenticate_token(&presented, ip("192.0.2.7"), at(9)),
        Err(AuthError::Disabled)
    );
    accounts::set_disabled(ops, "ingest-bot", false, at(10)).unwrap();
    accounts::revoke_token(ops, &token.id, at(10)).unwrap();
    auth.refresh(ops, at(10)).unwrap();
    assert_eq!(
        auth.authenticate_token(&presented, ip("192.0.2.7"), at(11)),
        Err(AuthError::Revoked)
    );
    assert!(accounts::revoke_token(ops, &token.id, at(12)).is_err());
}

#[test]
fn sessions_end_when_idle_too_old_or_signed_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ops = store.operators();
    let op = accounts::add_operator(
        ops,
        "carol",
        AccountKind::Machine,
        "notices-officer".parse().unwrap(),
        None,
        at(0),
    )
    .unwrap();
    let auth = Authenticator::load(ops, LIMITS, at(0)).unwrap();
    let (cookie, session) = auth.start_session(ops, &op, at(0)).unwrap();
    let header = format!("{}={cookie}", kanki_operators::secret::SESSION_COOKIE);
    let hash = kanki_operators::secret::parse_session_cookie(header.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(hash, session.secret_hash);
    let p = auth.authenticate_session(&hash, at(500)).unwrap();
    assert_eq!(p.operator, "carol");
    assert_eq!(p.csrf.as_deref(), Some(session.csrf.as_str()));
    assert!(p.may(Permission::ActOnCases));
    // Used at 500, so still alive at 1000 (idle 600), and survives a
    // reload from the store (another process, a restart).
    auth.refresh(ops, at(1000)).unwrap();
    let again = Authenticator::load(ops, LIMITS, at(1000)).unwrap();
    assert!(again.authenticate_session(&hash, at(1000)).is_ok());
    assert!(auth.authenticate_session(&hash, at(1000)).is_ok());
    // Idle for more than 600 s.
    assert_eq!(
        auth.authenticate_session(&hash, at(1700)),
        Err(AuthError::SessionExpired)
    );
    // A fresh session, kept busy, still ends after an hour.
    let (cookie2, s2) = auth.start_session(ops, &op, at(2000)).unwrap();
    for t in (2000..5600).step_by(300) {
        assert!(auth.authenticate_session(&s2.secret_hash, at(t)).is_ok());
    }
    assert_eq!(
        auth.authenticate_session(&s2.secret_hash, at(5700)),
        Err(AuthError::SessionExpired)
    );
    // Sign-out.
    let (_, s3) = auth.start_session(ops, &op, at(6000)).unwrap();
    assert!(auth.end_session(ops, &s3.secret_hash).unwrap());
    assert_eq!(
        auth.authenticate_session(&s3.secret_hash, at(6001)),
        Err(AuthError::UnknownSession)
    );
    assert!(!cookie2.is_empty());
    // Stale sessions are removed from the store at refresh.
    auth.refresh(ops, at(9000)).unwrap();
    assert!(ops.sessions().unwrap().is_empty());
}

fn attempt<'a>(name: &'a str, password: &'a str, totp: Option<&'a str>) -> Attempt<'a> {
    Attempt {
        name,
        password,
        totp,
        source: ip("192.0.2.7"),
    }
}

#[test]
fn a_totp_code_signs_in_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ops = store.operators();
    let limiter = SignInLimiter::new(SignInLimits::default());
    let pw = "carol's long password";
    accounts::add_operator(
        ops,
        "carol",
        AccountKind::Local,
        Role::Analyst.into(),
        Some(pw),
        at(0),
    )
    .unwrap();
    let (_, s) = accounts::enroll_totp(ops, "carol", at(0)).unwrap();
    let now = at(100);
    let code = secret::totp_code(&s, now.timestamp() as u64);
    let sign_in = |code: &str, when| {
        signin::sign_in_local(ops, &limiter, &attempt("carol", pw, Some(code)), when)
    };
    assert!(sign_in(&code, now).is_ok());
    // The same code again, in its window: refused.
    assert!(matches!(sign_in(&code, now), Err(SignInError::TotpReused)));
    assert!(matches!(
        sign_in(&code, now + chrono::Duration::seconds(25)),
        Err(SignInError::TotpReused)
    ));
    // The code of the step before (still within the skew allowed): refused.
    let earlier = secret::totp_code(&s, now.timestamp() as u64 - 30);
    if earlier != code {
        assert!(matches!(
            sign_in(&earlier, now),
            Err(SignInError::TotpReused)
        ));
    }
    // The next step's code works, once.
    let later = now + chrono::Duration::seconds(30);
    let next = secret::totp_code(&s, later.timestamp() as u64);
    assert!(sign_in(&next, later).is_ok());
    assert!(matches!(
        sign_in(&next, later),
        Err(SignInError::TotpReused)
    ));
    // A wrong code is wrong, not reused.
    let wrong = if next == "000000" { "111111" } else { "000000" };
    assert!(matches!(sign_in(wrong, later), Err(SignInError::WrongTotp)));
}

fn directory() -> Directory {
    Directory::from_config(&kanki_config::LdapConfig::new(
        "ldaps://ldap.example.jp",
        "uid={name},ou=people,dc=example,dc=jp",
        "ou=groups,dc=example,dc=jp",
        &[
            ("cn=soc,ou=groups,dc=example,dc=jp", "analyst"),
            ("cn=leads,ou=groups,dc=example,dc=jp", "attribution-officer"),
        ],
    ))
    .unwrap()
}

#[test]
fn a_directory_operator_gets_the_roles_of_their_groups_at_each_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ops = store.operators();
    let limiter = SignInLimiter::new(SignInLimits::default());
    let d = directory();
    let a = attempt("hanako", "directory password", None);
    let groups = |g: &[&str]| -> Result<Vec<String>, DirectoryError> {
        Ok(g.iter().map(|s| s.to_string()).collect())
    };
    let sign_in = |a: &Attempt<'_>, groups: Result<Vec<String>, DirectoryError>, when: i64| {
        signin::sign_in_directory(ops, &limiter, &d, a, groups, at(when))
    };
    assert!(signin::by_directory(ops, "hanako").unwrap());
    // First sign-in: the account is made, an LDAP one, with its group's role.
    let op = sign_in(&a, groups(&["cn=soc,ou=groups,dc=example,dc=jp"]), 0).unwrap();
    assert_eq!(op.kind, AccountKind::Ldap);
    assert_eq!(op.roles.to_string(), "analyst");
    assert!(op.password_hash.is_none());
    // The directory moved her: the next sign-in has the new role only.
    let op = sign_in(&a, groups(&["cn=leads,ou=groups,dc=example,dc=jp"]), 10).unwrap();
    assert_eq!(op.roles.to_string(), "attribution-officer");
    assert_eq!(
        ops.operator_named("hanako").unwrap().unwrap().roles,
        op.roles
    );
    // In no mapped group: no access, and the stored roles are gone too.
    assert!(matches!(
        sign_in(&a, groups(&["cn=canteen,ou=groups,dc=example,dc=jp"]), 20),
        Err(SignInError::NoRole)
    ));
    assert!(
        ops.operator_named("hanako")
            .unwrap()
            .unwrap()
            .roles
            .is_empty()
    );
    // A local disable wins over the directory.
    accounts::set_disabled(ops, "hanako", true, at(30)).unwrap();
    assert!(matches!(
        sign_in(&a, groups(&["cn=soc,ou=groups,dc=example,dc=jp"]), 40),
        Err(SignInError::Disabled)
    ));
    // Refused by the directory: wrong credentials. Unknown and unmapped:
    // no account is made.
    assert!(matches!(
        sign_in(&a, Err(DirectoryError::Refused), 50),
        Err(SignInError::WrongCredentials)
    ));
    let taro = attempt("taro", "directory password", None);
    assert!(matches!(
        sign_in(&taro, groups(&[]), 60),
        Err(SignInError::NoRole)
    ));
    assert!(ops.operator_named("taro").unwrap().is_none());
    // A local account of the same name is never taken over by the directory.
    accounts::add_operator(
        ops,
        "jiro",
        AccountKind::Local,
        Role::Viewer.into(),
        Some("jiro's long password"),
        at(70),
    )
    .unwrap();
    assert!(!signin::by_directory(ops, "jiro").unwrap());
    let jiro = attempt("jiro", "directory password", None);
    assert!(matches!(
        sign_in(&jiro, groups(&["cn=leads,ou=groups,dc=example,dc=jp"]), 80),
        Err(SignInError::WrongCredentials)
    ));
    assert_eq!(
        ops.operator_named("jiro")
            .unwrap()
            .unwrap()
            .roles
            .to_string(),
        "viewer"
    );
}
