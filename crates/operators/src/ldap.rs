//! Sign-in against the ISP's LDAP directory: a simple bind as the operator
//! over TLS (`ldaps://`, or `ldap://` upgraded with StartTLS), then a search
//! for the groups naming them, mapped to roles (`[operators.ldap]`).
//!
//! The password goes to the directory and nowhere else: it is neither kept
//! nor logged. An empty password is refused here, before any bind, since
//! LDAP takes a simple bind with a DN and no password as an
//! unauthenticated bind and answers it with success (RFC 4513 5.1.2).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kanki_config::LdapConfig;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::model::Roles;

/// `invalidCredentials` (RFC 4511 4.1.9): the name or the password is
/// wrong.
const INVALID_CREDENTIALS: u32 = 49;

/// Why the directory gave no groups.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory refused the name and password.
    #[error("the directory refused the name and password")]
    Refused,
    /// The directory could not be asked (down, TLS failed, timed out).
    #[error("the directory could not be reached: {0}")]
    Unavailable(String),
}

/// The directory as configured: where to bind, where the groups are and
/// what roles they give.
pub struct Directory {
    url: String,
    starttls: bool,
    bind_dn: String,
    group_base: String,
    group_filter: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// Group DNs (lower case) and the roles each gives.
    roles: Vec<(String, Roles)>,
}

/// The CA certificates of `ca_file` as a TLS client configuration.
fn tls_trusting(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let bad =
        |e: &dyn std::fmt::Display| format!("operators.ldap.ca_file {}: {e}", ca_file.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no PEM certificate in it"));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A DN compared as the directory would, near enough: case and the
/// spaces around separators do not count.
fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

impl Directory {
    /// The directory of `[operators.ldap]`; an error names the key at fault.
    pub fn from_config(c: &LdapConfig) -> Result<Directory, String> {
        let roles = c
            .roles
            .iter()
            .map(|(group, roles)| {
                roles
                    .parse::<Roles>()
                    .map(|r| (dn_key(group), r))
                    .map_err(|e| format!("operators.ldap.roles {group:?}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Directory {
            url: c.url.clone(),
            starttls: c.starttls,
            bind_dn: c.bind_dn.clone(),
            group_base: c.group_base.clone(),
            group_filter: c.group_filter.clone(),
            tls: c.ca_file.as_deref().map(tls_trusting).transpose()?,
            timeout: c.timeout.0,
            roles,
        })
    }

    /// The roles the groups give: every mapped group's roles together.
    pub fn roles_of(&self, groups: &[String]) -> Roles {
        let groups: Vec<String> = groups.iter().map(|g| dn_key(g)).collect();
        self.roles
            .iter()
            .filter(|(g, _)| groups.contains(g))
            .map(|(_, r)| *r)
            .fold(Roles::default(), Roles::union)
    }

    /// Binds as `name` with `password` and returns the DNs of the groups
    /// that name them. Refused when the directory refuses the bind.
    pub async fn groups_of(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        if password.is_empty() || crate::accounts::check_name(name).is_err() {
            return Err(DirectoryError::Refused);
        }
        tokio::time::timeout(self.timeout, self.ask(name, password))
            .await
            .unwrap_or_else(|_| {
                Err(DirectoryError::Unavailable(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            })
    }

    async fn ask(&self, name: &str, password: &str) -> Result<Vec<String>, DirectoryError> {
        let unavailable = |e: ldap3::LdapError| DirectoryError::Unavailable(e.to_string());
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(unavailable)?;
        ldap3::drive!(conn);
        let dn = self.bind_dn.replace("{name}", &dn_escape(name));
        let bound = ldap.simple_bind(&dn, password).await.map_err(unavailable)?;
        match bound.rc {
            0 => {}
            INVALID_CREDENTIALS => return Err(DirectoryError::Refused),
            rc => {
                return Err(DirectoryError::Unavailable(format!(
                    "the bind was answered with result code {rc}: {}",
                    bound.text
                )));
            }
        }
        let filter = self
            .group_filter
            .replace("{dn}", &ldap_escape(&dn))
            .replace("{name}", &ldap_escape(name));
        // "1.1": no attributes, the DNs are all that is needed.
        let (entries, _) = ldap
            .search(&self.group_base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .and_then(|r| r.success())
            .map_err(unavailable)?;
        let _ = ldap.unbind().await;
        Ok(entries
            .into_iter()
            .map(|e| SearchEntry::construct(e).dn)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(roles: &[(&str, &str)]) -> Directory {
        Directory::from_config(&LdapConfig::new(
            "ldaps://ldap.example.jp",
            "uid={name},ou=people,dc=example,dc=jp",
            "ou=groups,dc=example,dc=jp",
            roles,
        ))
        .unwrap()
    }

    #[test]
    fn groups_map_to_roles_whatever_their_spelling() {
        let d = directory(&[
            ("cn=soc,ou=groups,dc=example,dc=jp", "analyst"),
            (
                "cn=leads,ou=groups,dc=example,dc=jp",
                "attribution-officer,viewer",
            ),
        ]);
        let r = d.roles_of(&["CN=SOC, ou=groups, dc=example, dc=jp".into()]);
        assert_eq!(r.to_string(), "analyst");
        let both = d.roles_of(&[
            "cn=soc,ou=groups,dc=example,dc=jp".into(),
            "cn=leads,ou=groups,dc=example,dc=jp".into(),
        ]);
        assert_eq!(both.to_string(), "viewer,analyst,attribution-officer");
        assert!(
            d.roles_of(&["cn=canteen,ou=groups,dc=example,dc=jp".into()])
                .is_empty()
        );
        assert!(d.roles_of(&[]).is_empty());
    }

    #[test]
    fn an_unknown_role_is_refused_at_start() {
        let c = LdapConfig::new("ldaps://x", "uid={name}", "dc=x", &[("cn=x", "root")]);
        let e = Directory::from_config(&c).err().unwrap();
        assert!(
            e.contains("operators.ldap.roles") && e.contains("root"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_empty_password_never_reaches_the_directory() {
        // An empty password would be an unauthenticated bind, which a
        // directory answers with success. Nothing listens at this address:
        // a bind attempt would say "unavailable", not "refused".
        let d = directory(&[("cn=soc", "analyst")]);
        assert!(matches!(
            d.groups_of("hanako", "").await,
            Err(DirectoryError::Refused)
        ));
        assert!(matches!(
            d.groups_of("a,b=c", "pw").await,
            Err(DirectoryError::Refused)
        ));
    }
}
