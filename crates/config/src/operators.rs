//! `[operators]`: sign-in, sessions and tokens of the operator API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{HumanDuration, Invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorsConfig {
    /// A browser session unused this long ends.
    pub session_idle: HumanDuration,
    /// A browser session ends this long after sign-in, however busy.
    pub session_absolute: HumanDuration,
    /// How often `kanki serve` reloads operators, tokens and sessions
    /// (a token revoked with `kanki tokens revoke` stops working within
    /// this time) and writes tokens' last-used times.
    pub refresh_every: HumanDuration,
    /// Source prefixes that may read `/metrics` without a token (a
    /// Prometheus server); empty: a token with the `metrics` permission is
    /// needed.
    pub metrics_scrapers: Vec<ipnet::IpNet>,
    /// Sign-in against the ISP's LDAP directory (`[operators.ldap]`);
    /// absent: only local accounts sign in with a password.
    pub ldap: Option<LdapConfig>,
}

/// `[operators.ldap]`: a simple bind over TLS as the operator, then their
/// groups, mapped to roles at each sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `starttls`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// The operator's DN, `{name}` standing for the sign-in name
    /// (`uid={name},ou=people,dc=example,dc=jp`).
    pub bind_dn: String,
    /// Where groups are searched (`ou=groups,dc=example,dc=jp`).
    pub group_base: String,
    /// The filter that finds the operator's groups: `{dn}` stands for the
    /// operator's DN, `{name}` for the sign-in name (both escaped).
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The CA certificates (PEM) the directory's certificate is checked
    /// against; absent: the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one sign-in may wait for the directory.
    #[serde(default = "default_ldap_timeout")]
    pub timeout: HumanDuration,
    /// Group DN to roles (`"cn=soc,ou=groups,dc=example,dc=jp" =
    /// "analyst,viewer"`). An operator in no listed group gets no access.
    pub roles: BTreeMap<String, String>,
}

fn default_group_filter() -> String {
    "(member={dn})".into()
}

fn default_ldap_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}

impl LdapConfig {
    /// A directory at `url` with the defaults for the rest: `(member={dn})`
    /// groups, the system's CAs, 5 s; `roles` maps group DNs to roles.
    pub fn new(url: &str, bind_dn: &str, group_base: &str, roles: &[(&str, &str)]) -> LdapConfig {
        LdapConfig {
            url: url.into(),
            starttls: false,
            bind_dn: bind_dn.into(),
            group_base: group_base.into(),
            group_filter: default_group_filter(),
            ca_file: None,
            timeout: default_ldap_timeout(),
            roles: roles
                .iter()
                .map(|(g, r)| (g.to_string(), r.to_string()))
                .collect(),
        }
    }
}

impl OperatorsConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let Some(l) = &self.ldap else {
            return Ok(());
        };
        let invalid =
            |key: &str, message: String| Err((format!("operators.ldap.{key}"), None, message));
        let lower = l.url.to_ascii_lowercase();
        if !(lower.starts_with("ldaps://") || (lower.starts_with("ldap://") && l.starttls)) {
            return invalid(
                "url",
                format!(
                    "{:?}: the password must cross the network encrypted: use ldaps://, or ldap:// with starttls = true",
                    l.url
                ),
            );
        }
        if lower.starts_with("ldaps://") && l.starttls {
            return invalid(
                "starttls",
                "starttls is for ldap:// (ldaps:// is TLS from the start)".into(),
            );
        }
        if !l.bind_dn.contains("{name}") {
            return invalid(
                "bind_dn",
                format!("{:?} does not contain {{name}}", l.bind_dn),
            );
        }
        if !l.group_filter.starts_with('(') || !l.group_filter.ends_with(')') {
            return invalid(
                "group_filter",
                format!("{:?} is not an LDAP filter in parentheses", l.group_filter),
            );
        }
        if l.roles.is_empty() {
            return invalid(
                "roles",
                "map at least one group to roles: nobody could sign in".into(),
            );
        }
        Ok(())
    }
}

impl Default for OperatorsConfig {
    fn default() -> Self {
        OperatorsConfig {
            session_idle: HumanDuration::secs(30 * 60),
            session_absolute: HumanDuration::secs(12 * 3600),
            refresh_every: HumanDuration::secs(2),
            metrics_scrapers: Vec::new(),
            ldap: None,
        }
    }
}
