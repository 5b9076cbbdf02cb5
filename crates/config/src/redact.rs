//! The effective configuration as an administrator may read it: every
//! secret replaced by [`REDACTED`]. Secrets are the values of keys that
//! name one (`secret`, `password`, `*_secret`, `*_password`; the paths of
//! `*_file` keys are kept, they are where a secret is, not the secret) and,
//! in any URL, the password of its user part and the values of its query
//! (where feed providers put their API keys).

use crate::Config;

/// What stands in for a secret.
pub const REDACTED: &str = "(redacted)";

impl Config {
    /// The configuration in effect, secrets redacted, as TOML values.
    pub fn redacted(&self) -> toml::Table {
        let mut v = toml::Table::try_from(self).unwrap_or_default();
        for (k, v) in v.iter_mut() {
            redact(k, v);
        }
        v
    }
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    !k.ends_with("_file")
        && (k == "secret" || k == "password" || k.ends_with("_secret") || k.ends_with("_password"))
}

fn redact(key: &str, v: &mut toml::Value) {
    match v {
        toml::Value::String(s) if is_secret_key(key) && !s.is_empty() => {
            *s = REDACTED.to_string();
        }
        toml::Value::String(s) => {
            if let Some(clean) = url_without_secrets(s) {
                *s = clean;
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|v| redact(key, v)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(k, v)| redact(k, v)),
        _ => {}
    }
}

/// A URL as the configuration shows it: its password and query values
/// redacted.
pub fn redact_url(url: &str) -> String {
    url_without_secrets(url).unwrap_or_else(|| url.to_string())
}

/// `text` (an error message, a log line) with every appearance of the URL
/// `url` redacted as the configuration shows it: an HTTP client's error
/// names the URL it fetched, query and all.
pub fn redact_url_in(text: &str, url: &str) -> String {
    let Some(clean) = url_without_secrets(url) else {
        return text.to_string();
    };
    let mut out = text.replace(url, &clean);
    // As a client writes it back (normalized: a path added, escapes).
    if let Ok(parsed) = url::Url::parse(url) {
        out = out.replace(parsed.as_str(), &clean);
    }
    out
}

/// A URL with its password and query values redacted; `None` when `s` is
/// not a URL with a host or holds nothing to redact.
fn url_without_secrets(s: &str) -> Option<String> {
    let mut u = url::Url::parse(s).ok()?;
    u.host_str()?;
    let mut changed = false;
    if u.password().is_some() {
        u.set_password(Some(REDACTED)).ok()?;
        changed = true;
    }
    if u.query().is_some_and(|q| !q.is_empty()) {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|k| (k.as_str(), REDACTED)));
        changed = true;
    }
    changed.then(|| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_redacted_and_the_rest_kept() {
        let c = Config::from_toml_str(
            r#"
[[radius.nas]]
address = "192.0.2.0/24"
secret = "nas-shared-secret"

[[rpz.tsig]]
name = "xfr"
secret = "c2VjcmV0LWtleS1ieXRlcy1mb3ItdHNpZw=="

[smtp]
server = "127.0.0.1:25"
from = "abuse@isp.example"
tls = "starttls"
username = "kanki"
password = "smtp-password"

[[feeds]]
name = "urlhaus"
format = "urlhaus"
url = "https://user:feed-password@feeds.example/csv?auth-key=feed-api-key&kind=recent"
every = "1h"
"#,
            None,
        )
        .unwrap();
        let shown = toml::to_string(&c.redacted()).unwrap();
        for secret in [
            "nas-shared-secret",
            "c2VjcmV0LWtleS1ieXRlcy1mb3ItdHNpZw==",
            "smtp-password",
            "feed-password",
            "feed-api-key",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
        assert!(shown.contains("192.0.2.0/24"), "{shown}");
        assert!(shown.contains("username = \"kanki\""), "{shown}");
        assert!(shown.contains("feeds.example/csv?auth-key="), "{shown}");
        assert!(
            shown.contains("kind="),
            "the query's names are kept: {shown}"
        );
        let nas = &c.redacted()["radius"]["nas"][0];
        assert_eq!(nas["secret"].as_str(), Some(REDACTED));
        // An error naming the feed's URL, as a client writes it.
        let url = "https://user:feed-password@feeds.example/csv?auth-key=feed-api-key";
        let said = redact_url_in(
            "error sending request for url (https://user:feed-password@feeds.example/csv?auth-key=feed-api-key)",
            url,
        );
        assert!(
            !said.contains("feed-api-key") && !said.contains("feed-password"),
            "{said}"
        );
        assert!(
            said.contains("feeds.example/csv?auth-key=(redacted)")
                || said.contains("feeds.example/csv?auth-key=%28redacted%29"),
            "{said}"
        );
        let said = redact_url_in(
            "failed: https://feeds.example?k=v",
            "https://feeds.example?k=v",
        );
        assert!(!said.contains("k=v"), "{said}");
        // A key that is not a secret, with no URL in it, is as it was.
        assert_eq!(
            c.redacted()["data_dir"].as_str(),
            Some(c.data_dir.to_str().unwrap())
        );
    }
}
