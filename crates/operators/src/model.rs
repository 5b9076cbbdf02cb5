//! Operators, roles, permissions, tokens and sessions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What a route needs. Every route of the API declares one (the API's
/// route table); a role is a set of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Anyone, signed in or not: `/healthz`, the warning page and the
    /// countermeasure site. Never held; a route needing it is not checked.
    Public,
    /// Any signed-in operator or token (the API description, sign-out).
    SignedIn,
    /// `/metrics` (also open to the configured scraper prefixes).
    Metrics,
    /// Dashboards and counts: no subscriber identity in any answer.
    ViewCounts,
    /// Reading the list: indicators, allowlist, host marks, imports,
    /// exports, crawls.
    ReadList,
    /// Changing the list: indicators, allowlist, host marks, the
    /// false-positive queue.
    CurateList,
    /// Feeding reports and lists in through the API (imports, events).
    Ingest,
    /// Cases and events, subscribers by pseudonym.
    ReadCases,
    /// Acting on cases: review, hold, close, escalations, acknowledgements,
    /// the walled garden.
    ActOnCases,
    /// Subscriber identities (e-mail, postal address, consent history).
    ReadSubscribers,
    /// `who`: tying an address and a time to a subscriber.
    Attribute,
    /// Importing subscribers and changing their consent.
    ManageSubscribers,
    /// The audit log and its verification.
    ReadAudit,
    /// Operators, tokens, configuration.
    Administer,
}

impl Permission {
    pub const ALL: [Permission; 14] = [
        Permission::Public,
        Permission::SignedIn,
        Permission::Metrics,
        Permission::ViewCounts,
        Permission::ReadList,
        Permission::CurateList,
        Permission::Ingest,
        Permission::ReadCases,
        Permission::ActOnCases,
        Permission::ReadSubscribers,
        Permission::Attribute,
        Permission::ManageSubscribers,
        Permission::ReadAudit,
        Permission::Administer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Public => "public",
            Permission::SignedIn => "signed-in",
            Permission::Metrics => "metrics",
            Permission::ViewCounts => "view-counts",
            Permission::ReadList => "read-list",
            Permission::CurateList => "curate-list",
            Permission::Ingest => "ingest",
            Permission::ReadCases => "read-cases",
            Permission::ActOnCases => "act-on-cases",
            Permission::ReadSubscribers => "read-subscribers",
            Permission::Attribute => "attribute",
            Permission::ManageSubscribers => "manage-subscribers",
            Permission::ReadAudit => "read-audit",
            Permission::Administer => "administer",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown permission {s:?}"))
    }
}

/// A set of permissions, one bit each: checking one is a mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u32);

impl Permissions {
    pub fn contains(self, p: Permission) -> bool {
        // Anyone signed in holds `SignedIn`; nobody needs to hold `Public`.
        matches!(p, Permission::Public | Permission::SignedIn) || self.0 & p.bit() != 0
    }

    pub fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | p.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.0 & p.bit() != 0)
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(it: I) -> Self {
        it.into_iter()
            .fold(Permissions::default(), Permissions::with)
    }
}

/// A role: what a person on the abuse desk does, as a set of permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Dashboards and counts, no subscriber identities.
    Viewer,
    /// Cases, events and the list, subscribers by pseudonym.
    Analyst,
    /// `who` and subscriber identities, always with ground and purpose.
    AttributionOfficer,
    /// Indicators, allowlist, false-positive queue, feeds, crawls.
    ListCurator,
    /// Sending and holding notices, the walled garden.
    NoticesOfficer,
    /// The audit log and its verification, nothing else.
    Auditor,
    /// Operators, tokens, configuration.
    Administrator,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Viewer,
        Role::Analyst,
        Role::AttributionOfficer,
        Role::ListCurator,
        Role::NoticesOfficer,
        Role::Auditor,
        Role::Administrator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::AttributionOfficer => "attribution-officer",
            Role::ListCurator => "list-curator",
            Role::NoticesOfficer => "notices-officer",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }

    /// The permissions the role grants. Separation of duties: the
    /// administrator manages accounts but neither attributes nor reads the
    /// audit log; the auditor reads the log and nothing else.
    pub fn permissions(self) -> Permissions {
        use Permission::*;
        let list: &[Permission] = match self {
            Role::Viewer => &[ViewCounts, Metrics],
            Role::Analyst => &[ViewCounts, ReadList, ReadCases, Ingest],
            Role::AttributionOfficer => &[
                ViewCounts,
                ReadCases,
                ReadSubscribers,
                Attribute,
                ManageSubscribers,
            ],
            Role::ListCurator => &[ViewCounts, ReadList, CurateList, Ingest],
            Role::NoticesOfficer => &[ViewCounts, ReadCases, ActOnCases],
            Role::Auditor => &[ReadAudit],
            Role::Administrator => &[ViewCounts, Metrics, Administer],
        };
        list.iter().copied().collect()
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}: one of viewer, analyst, attribution-officer, list-curator, notices-officer, auditor, administrator"
                )
            })
    }
}

/// The roles an operator holds (or a token's scope), one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    pub fn contains(self, r: Role) -> bool {
        self.0 & r.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every role of `self` is also in `other`.
    pub fn is_subset(self, other: Roles) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn intersect(self, other: Roles) -> Roles {
        Roles(self.0 & other.0)
    }

    pub fn union(self, other: Roles) -> Roles {
        Roles(self.0 | other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    pub fn permissions(self) -> Permissions {
        self.iter().fold(Permissions::default(), |acc, r| {
            Permissions(acc.0 | r.permissions().0)
        })
    }

    /// The stored form: the bit mask.
    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> Roles {
        Roles(bits & ((1 << Role::ALL.len()) - 1))
    }
}

impl From<Role> for Roles {
    fn from(r: Role) -> Roles {
        Roles(r.bit())
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(it: I) -> Self {
        Roles(it.into_iter().fold(0, |acc, r| acc | r.bit()))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// `viewer,analyst`: a comma-separated list, at least one.
impl FromStr for Roles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let roles = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Roles, String>>()?;
        if roles.is_empty() {
            return Err("name at least one role".into());
        }
        Ok(roles)
    }
}

impl Serialize for Roles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Role>::deserialize(d)?.into_iter().collect())
    }
}

/// Where an operator's password is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountKind {
    /// A password (argon2id) kept by kanki, optionally with TOTP.
    Local,
    /// The ISP's LDAP directory; roles follow its groups at each sign-in.
    Ldap,
    /// A machine client: no password, only tokens.
    Machine,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Local => "local",
            AccountKind::Ldap => "ldap",
            AccountKind::Machine => "machine",
        }
    }
}

impl FromStr for AccountKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(AccountKind::Local),
            "ldap" => Ok(AccountKind::Ldap),
            "machine" => Ok(AccountKind::Machine),
            _ => Err(format!(
                "unknown account kind {s:?}: local, ldap or machine"
            )),
        }
    }
}

/// An operator account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub id: i64,
    /// The sign-in name; also the audit log's actor.
    pub name: String,
    pub kind: AccountKind,
    pub roles: Roles,
    pub disabled: bool,
    /// The argon2id PHC string; `None` for LDAP and machine accounts and
    /// before a password is set.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// The TOTP shared secret (raw bytes); `None`: no second factor.
    #[serde(skip)]
    pub totp_secret: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Operator {
    pub fn has_totp(&self) -> bool {
        self.totp_secret.is_some()
    }
}

/// An operator to add.
#[derive(Clone, Debug)]
pub struct NewOperator {
    pub name: String,
    pub kind: AccountKind,
    pub roles: Roles,
    pub password_hash: Option<String>,
    pub totp_secret: Option<Vec<u8>>,
}

/// An API token as stored: its secret only as a hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Token {
    /// The public part of the token (`kanki_<id>_...`), shown in lists.
    pub id: String,
    /// What it is for (`ci-ingest`, `grafana`).
    pub name: String,
    pub operator_id: i64,
    /// Its owner's name (filled in when read).
    pub operator: String,
    /// The roles it acts with: its owner's or fewer. What the owner has
    /// lost since is lost by the token too.
    pub scope: Roles,
    pub expires_at: Option<DateTime<Utc>>,
    /// Source prefixes it may be used from; empty: from anywhere.
    pub sources: Vec<IpNet>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// SHA-256 of the secret part.
    #[serde(skip)]
    pub secret_hash: [u8; 32],
}

/// A browser session as stored: its cookie only as a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie's secret.
    pub secret_hash: [u8; 32],
    pub operator_id: i64,
    /// The CSRF token every state-changing form of this session carries.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Who is asking, once authenticated: the audit log's actor and what they
/// may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub operator_id: i64,
    pub operator: String,
    /// The token's id when the request came with a token.
    pub token: Option<String>,
    pub roles: Roles,
    pub permissions: Permissions,
    /// The session's CSRF token when the request came with a session.
    pub csrf: Option<String>,
}

impl Principal {
    /// The audit log's actor: the operator's name, and the token's id when
    /// a token was used (`alice` or `alice token 1f2e3d4c5b6a7988`).
    pub fn actor(&self) -> String {
        match &self.token {
            Some(t) => format!("{} token {t}", self.operator),
            None => self.operator.clone(),
        }
    }

    pub fn may(&self, p: Permission) -> bool {
        self.permissions.contains(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_print_and_combine() {
        let r: Roles = "viewer, auditor".parse().unwrap();
        assert_eq!(r.to_string(), "viewer,auditor");
        assert!(r.permissions().contains(Permission::ReadAudit));
        assert!(!r.permissions().contains(Permission::Attribute));
        assert!("viewer,root".parse::<Roles>().is_err());
        assert!("".parse::<Roles>().is_err());
        let all: Roles = Role::ALL.into_iter().collect();
        assert!(r.is_subset(all));
        assert!(!all.is_subset(r));
        assert_eq!(Roles::from_bits(all.bits()), all);
    }

    #[test]
    fn separation_of_duties() {
        let admin = Role::Administrator.permissions();
        assert!(!admin.contains(Permission::Attribute));
        assert!(!admin.contains(Permission::ReadAudit));
        let auditor = Role::Auditor.permissions();
        assert_eq!(auditor.iter().collect::<Vec<_>>(), [Permission::ReadAudit]);
        let viewer = Role::Viewer.permissions();
        assert!(!viewer.contains(Permission::ReadSubscribers));
        assert!(!viewer.contains(Permission::ReadCases));
    }
}
