//! `[api]`: where the operator API listens, and how it protects itself
//! there (TLS, the names it answers to, the reverse proxies it trusts).

use crate::{ApiConfig, Invalid};

impl ApiConfig {
    /// TLS is configured: the API is served over HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// Clients reach the API over TLS, kanki's own or a declared proxy's:
    /// session cookies are marked Secure.
    pub fn clients_use_tls(&self) -> bool {
        self.tls() || (self.proxy_tls && !self.trusted_proxies.is_empty())
    }

    /// The names a request's Host may carry: `hostnames`, or by default
    /// the listen address and, on loopback, `localhost`, `127.0.0.1` and
    /// `[::1]` (each with the listen port).
    pub fn allowed_hosts(&self) -> Vec<String> {
        if !self.hostnames.is_empty() {
            return self.hostnames.clone();
        }
        let (ip, port) = (self.listen.ip(), self.listen.port());
        let mut names = vec![self.listen.to_string()];
        if ip.is_loopback() {
            for n in ["localhost", "127.0.0.1", "[::1]"] {
                names.push(format!("{n}:{port}"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err((
                "api.tls_cert_file".into(),
                Some(("tls_".into(), 1)),
                "TLS needs both api.tls_cert_file and api.tls_key_file".into(),
            ));
        }
        if self.proxy_tls && self.trusted_proxies.is_empty() {
            return Err((
                "api.proxy_tls".into(),
                Some(("proxy_tls".into(), 1)),
                "proxy_tls declares that the reverse proxies in api.trusted_proxies speak TLS, but none is listed".into(),
            ));
        }
        for (i, h) in self.hostnames.iter().enumerate() {
            if h.is_empty()
                || h.contains(['/', '@', ' ', '?', '#'])
                || h.starts_with("http:")
                || h.starts_with("https:")
            {
                return Err((
                    format!("api.hostnames[{i}]"),
                    Some((format!("\"{h}\""), 1)),
                    format!("{h:?} is not a host name: give `name` or `name:port`"),
                ));
            }
        }
        let ip = self.listen.ip();
        let behind_tls_proxy = self.proxy_tls && !self.trusted_proxies.is_empty();
        if !ip.is_loopback() && !self.tls() && !behind_tls_proxy {
            return Err((
                "api.listen".into(),
                Some(("listen".into(), 1)),
                format!(
                    "the operator API would listen on {} beyond loopback in plain HTTP, where passwords, tokens and session cookies cross the network readable: set api.tls_cert_file and api.tls_key_file, or put it behind a TLS reverse proxy and set api.trusted_proxies to the proxy's prefixes and api.proxy_tls = true",
                    self.listen
                ),
            ));
        }
        if ip.is_unspecified() && self.hostnames.is_empty() {
            return Err((
                "api.hostnames".into(),
                Some(("listen".into(), 1)),
                format!(
                    "the operator API listens on every address ({}): list the names clients reach it by in api.hostnames (a request naming another Host is refused)",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn error(text: &str) -> crate::ConfigError {
        Config::from_toml_str(text, None).unwrap_err()
    }

    #[test]
    fn a_listen_beyond_loopback_needs_tls_or_a_declared_tls_proxy() {
        let e = error("[api]\nlisten = \"192.0.2.10:8080\"\n");
        assert_eq!(e.key.as_deref(), Some("api.listen"), "{e}");
        assert!(e.message.contains("beyond loopback in plain HTTP"), "{e}");
        // A trusted proxy alone is not enough: its TLS must be declared.
        let e =
            error("[api]\nlisten = \"192.0.2.10:8080\"\ntrusted_proxies = [\"192.0.2.1/32\"]\n");
        assert_eq!(e.key.as_deref(), Some("api.listen"), "{e}");
        let e = error("[api]\nlisten = \"192.0.2.10:8080\"\nproxy_tls = true\n");
        assert_eq!(e.key.as_deref(), Some("api.proxy_tls"), "{e}");
        let c = Config::from_toml_str(
            "[api]\nlisten = \"192.0.2.10:8080\"\ntrusted_proxies = [\"192.0.2.1/32\"]\nproxy_tls = true\n",
            None,
        )
        .unwrap();
        assert!(c.api.clients_use_tls());
        let c = Config::from_toml_str(
            "[api]\nlisten = \"[::]:8443\"\ntls_cert_file = \"/etc/kanki/api.pem\"\ntls_key_file = \"/etc/kanki/api.key\"\nhostnames = [\"kanki.isp.example\"]\n",
            None,
        )
        .unwrap();
        assert!(c.api.tls() && c.api.clients_use_tls());
        assert_eq!(c.api.allowed_hosts(), ["kanki.isp.example"]);
        // Every address, but no name to check the Host against.
        let e = error(
            "[api]\nlisten = \"0.0.0.0:8443\"\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\n",
        );
        assert_eq!(e.key.as_deref(), Some("api.hostnames"), "{e}");
        let e = error("[api]\ntls_cert_file = \"/c\"\n");
        assert_eq!(e.key.as_deref(), Some("api.tls_cert_file"), "{e}");
        let e = error("[api]\nhostnames = [\"https://kanki.isp.example/\"]\n");
        assert_eq!(e.key.as_deref(), Some("api.hostnames[0]"), "{e}");
    }

    #[test]
    fn loopback_answers_to_its_address_and_localhost() {
        let c = Config::default();
        assert!(!c.api.clients_use_tls());
        assert_eq!(
            c.api.allowed_hosts(),
            ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"]
        );
        let c = Config::from_toml_str("[api]\nlisten = \"[::1]:9000\"\n", None).unwrap();
        assert_eq!(
            c.api.allowed_hosts(),
            ["[::1]:9000", "localhost:9000", "127.0.0.1:9000"]
        );
    }
}
