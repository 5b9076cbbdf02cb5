//! Secrets kept out of the configuration file (`secret_file`,
//! `password_file`), and the warnings a configuration earns: a file
//! holding a secret that others can read, an RPZ zone open to transfer
//! from beyond loopback without a TSIG key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Config;

/// The longest secret file read, in bytes.
const SECRET_MAX: u64 = 4096;

/// A secret file's text without its trailing newline.
fn read_secret(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > SECRET_MAX {
        return Err(format!(
            "{} is {} bytes, too long for a secret",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret)
}

/// Fills a required secret from its file: exactly one of the two is given.
fn required(at: &str, secret: &mut String, file: Option<&Path>) -> Result<(), (String, String)> {
    match (secret.is_empty(), file) {
        (false, Some(_)) => Err((
            format!("{at}.secret_file"),
            "give secret or secret_file, not both".into(),
        )),
        (true, Some(f)) => {
            *secret = read_secret(f).map_err(|e| (format!("{at}.secret_file"), e))?;
            Ok(())
        }
        (true, None) => Err((
            format!("{at}.secret"),
            "secret or secret_file is required".into(),
        )),
        (false, None) => Ok(()),
    }
}

/// Whether anyone but the owner may read the file at `path`.
fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

fn is_loopback(prefix: &str) -> bool {
    let addr = prefix.split('/').next().unwrap_or(prefix);
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
}

impl Config {
    /// Reads every `*_file` secret into its option (called on load).
    pub(crate) fn read_secret_files(&mut self) -> Result<(), (String, String)> {
        for (i, k) in self.rpz.tsig.iter_mut().enumerate() {
            required(
                &format!("rpz.tsig[{i}]"),
                &mut k.secret,
                k.secret_file.as_deref(),
            )?;
        }
        for (i, n) in self.radius.nas.iter_mut().enumerate() {
            required(
                &format!("radius.nas[{i}]"),
                &mut n.secret,
                n.secret_file.as_deref(),
            )?;
        }
        if let Some(f) = &self.smtp.password_file {
            if self.smtp.password.is_some() {
                return Err((
                    "smtp.password_file".into(),
                    "give password or password_file, not both".into(),
                ));
            }
            self.smtp.password =
                Some(read_secret(f).map_err(|e| ("smtp.password_file".into(), e))?);
        }
        Ok(())
    }

    /// The secrets written in the configuration itself, by key.
    fn inline_secrets(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for (i, k) in self.rpz.tsig.iter().enumerate() {
            if k.secret_file.is_none() {
                keys.push(format!("rpz.tsig[{i}].secret"));
            }
        }
        for (i, n) in self.radius.nas.iter().enumerate() {
            if n.secret_file.is_none() {
                keys.push(format!("radius.nas[{i}].secret"));
            }
        }
        if self.smtp.password.is_some() && self.smtp.password_file.is_none() {
            keys.push("smtp.password".into());
        }
        keys
    }

    /// What an operator should fix though kanki runs: the configuration
    /// file `file` (as loaded) or a secret file readable by others, an RPZ
    /// zone that can be transferred from beyond loopback without TSIG.
    pub fn warnings(&self, file: Option<&Path>) -> Vec<String> {
        let mut out = Vec::new();
        let inline = self.inline_secrets();
        if let Some(f) = file
            && !inline.is_empty()
            && readable_by_others(f)
        {
            out.push(format!(
                "{} holds secrets ({}) and others can read it: chmod 600 it, or move them to *_file options",
                f.display(),
                inline.join(", ")
            ));
        }
        let files = self
            .rpz
            .tsig
            .iter()
            .filter_map(|k| k.secret_file.as_deref())
            .chain(
                self.radius
                    .nas
                    .iter()
                    .filter_map(|n| n.secret_file.as_deref()),
            )
            .chain(self.smtp.password_file.as_deref())
            .chain(self.api.tls_key_file.as_deref());
        for f in files {
            if readable_by_others(f) {
                out.push(format!(
                    "the secret file {} can be read by others: chmod 600 it",
                    f.display()
                ));
            }
        }
        for z in &self.rpz.zones {
            if z.tsig_key.is_none() && !z.allow_transfer.iter().all(|p| is_loopback(p)) {
                out.push(format!(
                    "RPZ zone {} may be transferred from {} without a TSIG key: set tsig_key",
                    z.name,
                    z.allow_transfer.join(", ")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn secrets_are_read_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let tsig = write(dir.path(), "tsig", "c2VjcmV0c2VjcmV0c2VjcmV0\n", 0o600);
        let nas = write(dir.path(), "nas", "testing123\n", 0o600);
        let smtp = write(dir.path(), "smtp", "hunter2\n", 0o600);
        let text = format!(
            "[[rpz.tsig]]\nname = \"k\"\nsecret_file = \"{}\"\n\n[radius]\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret_file = \"{}\"\n\n[smtp]\nusername = \"u\"\npassword_file = \"{}\"\ntls = \"starttls\"\n",
            tsig.display(),
            nas.display(),
            smtp.display()
        );
        let c = Config::from_toml_str(&text, None).unwrap();
        assert_eq!(c.rpz.tsig[0].secret, "c2VjcmV0c2VjcmV0c2VjcmV0");
        assert_eq!(c.radius.nas[0].secret, "testing123");
        assert_eq!(c.smtp.password.as_deref(), Some("hunter2"));
        let conf = write(dir.path(), "kanki.toml", &text, 0o644);
        assert!(
            c.warnings(Some(&conf)).is_empty(),
            "{:?}",
            c.warnings(Some(&conf))
        );

        // Both, or neither: refused with the key.
        let both = "[radius]\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret = \"x\"\nsecret_file = \"/nonexistent\"\n";
        let e = Config::from_toml_str(both, None).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("radius.nas[0].secret_file"), "{e}");
        let neither = "[radius]\n[[radius.nas]]\naddress = \"127.0.0.1\"\n";
        let e = Config::from_toml_str(neither, None).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("radius.nas[0].secret"), "{e}");
        let missing =
            "[radius]\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret_file = \"/nonexistent/x\"\n";
        let e = Config::from_toml_str(missing, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x"), "{e}");
    }

    #[test]
    fn a_secret_others_can_read_and_an_open_transfer_are_warned_of() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[radius]\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n";
        let c = Config::from_toml_str(text, None).unwrap();
        let open = write(dir.path(), "open.toml", text, 0o644);
        let w = c.warnings(Some(&open));
        assert!(
            w.len() == 1
                && w[0].contains("radius.nas[0].secret")
                && w[0].contains("others can read"),
            "{w:?}"
        );
        let closed = write(dir.path(), "closed.toml", text, 0o600);
        assert!(c.warnings(Some(&closed)).is_empty());
        let shared = write(dir.path(), "nas", "testing123", 0o640);
        let text = format!(
            "[radius]\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret_file = \"{}\"\n",
            shared.display()
        );
        let c = Config::from_toml_str(&text, None).unwrap();
        assert!(c.warnings(None)[0].contains("can be read by others"));

        let zone = |acl: &str, key: &str| {
            format!(
                "[[rpz.tsig]]\nname = \"k\"\nsecret = \"c2VjcmV0c2VjcmV0c2VjcmV0\"\n\n[[rpz.zones]]\nname = \"rpz.kanki.example\"\nallow_transfer = [{acl}]\n{key}"
            )
        };
        let warned = |text: &str| {
            Config::from_toml_str(text, None)
                .unwrap()
                .warnings(None)
                .iter()
                .any(|w| w.contains("without a TSIG key"))
        };
        assert!(warned(&zone("\"192.0.2.53/32\"", "")));
        assert!(!warned(&zone("\"192.0.2.53/32\"", "tsig_key = \"k\"\n")));
        assert!(!warned(&zone("\"127.0.0.1/32\", \"::1\"", "")));
    }
}
