//! Delivery of notices: SMTP mail through `lettre` (plain, STARTTLS or
//! TLS from the first byte, with authentication; the server's certificate
//! checked against the web roots and `smtp.ca_file`), and letter exports
//! ready for a postal mail merge. Rendering and deciding what to send
//! belong to the removal part.

use std::io::Write;
use std::time::Duration;

use kanki_config::{SmtpConfig, SmtpTls};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

/// Why a mail was not delivered.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// The server refused it for good (5xx): a bounce, not worth a retry.
    pub permanent: bool,
    pub message: String,
}

pub mod dsn;

/// A mail to send.
#[derive(Clone, Debug)]
pub struct Mail<'a> {
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// A notice's reference: the mail's `Message-ID` is made of it (see
    /// [`message_id`]), so that a bounce arriving later names the notice.
    pub reference: Option<&'a str>,
}

/// The `Message-ID` (without `<>`) of the mail of the notice `reference`
/// sent from `from_domain`.
pub fn message_id(reference: &str, from_domain: &str) -> String {
    format!("{reference}.notice@{from_domain}")
}

/// The notice reference a `Message-ID` (without `<>`) made by
/// [`message_id`] names.
pub fn reference_of_message_id(id: &str) -> Option<&str> {
    let (local, _) = id.rsplit_once('@')?;
    local.strip_suffix(".notice").filter(|r| !r.is_empty())
}

/// An SMTP connection (pooled by lettre) to the configured server.
pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
}

impl Mailer {
    pub fn new(c: &SmtpConfig) -> Result<Mailer, String> {
        let (host, port) = match c.server.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| format!("smtp.server {:?}: the port is not a number", c.server))?,
            ),
            None => (c.server.as_str(), 25),
        };
        let tls = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(host.to_string());
            if let Some(f) = &c.ca_file {
                let bad = |e: &dyn std::fmt::Display| format!("smtp.ca_file {}: {e}", f.display());
                let pem = std::fs::read(f).map_err(|e| bad(&e))?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(bad(&"no PEM certificate in it"));
                }
                b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| bad(&e))?);
            }
            b.build_rustls().map_err(|e| format!("smtp: {e}"))
        };
        let builder = SmtpTransport::builder_dangerous(host).tls(match c.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls()?),
            SmtpTls::Tls => Tls::Wrapper(tls()?),
        });
        let mut builder = builder.port(port).timeout(Some(c.timeout.0));
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        let from = c
            .from
            .parse()
            .map_err(|e| format!("smtp.from {:?}: {e}", c.from))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Hands one mail to the server.
    pub fn send(&self, m: &Mail<'_>) -> Result<(), SendError> {
        let to: Mailbox = m.to.parse().map_err(|e| SendError {
            permanent: true,
            message: format!("recipient {:?}: {e}", m.to),
        })?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(
                m.reference
                    .map(|r| format!("<{}>", message_id(r, self.from.email.domain()))),
            )
            .subject(m.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(m.body.to_string())
            .map_err(|e| SendError {
                permanent: true,
                message: e.to_string(),
            })?;
        self.transport
            .send(&msg)
            .map(|_| ())
            .map_err(|e| SendError {
                permanent: e.is_permanent(),
                message: e.to_string(),
            })
    }
}

/// What one delivery attempt came to, under a retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Refused for good (5xx).
    Bounced(String),
    /// A passing failure with no attempts left.
    Failed(String),
    /// A passing failure: try again after `wait`.
    Retry {
        error: String,
        wait: Duration,
    },
}

impl Mailer {
    /// Sends `m`, which already had `attempts` tries; at most `max_attempts`
    /// in all, waiting [`backoff`] from `base` between them.
    pub fn attempt(
        &self,
        m: &Mail<'_>,
        attempts: u32,
        max_attempts: u32,
        base: Duration,
    ) -> Attempt {
        match self.send(m) {
            Ok(()) => Attempt::Sent,
            Err(e) if e.permanent => Attempt::Bounced(e.message),
            Err(e) if attempts + 1 >= max_attempts => Attempt::Failed(e.message),
            Err(e) => Attempt::Retry {
                error: e.message,
                wait: backoff(base, attempts + 1),
            },
        }
    }
}

/// The wait before retry number `attempt` (1-based): `base`, doubled each
/// time, at most a day.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(Duration::from_secs(86400))
}

/// One letter of an export.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Letter<'a> {
    pub reference: &'a str,
    pub subscriber: &'a str,
    pub postal_address: &'a str,
    pub language: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Writes letters as CSV with a header (UTF-8 with a BOM, which spreadsheet
/// and mail-merge programs need to read Japanese): one row per letter.
pub fn write_letters<'a>(
    w: &mut dyn Write,
    letters: impl IntoIterator<Item = Letter<'a>>,
) -> Result<u64, std::io::Error> {
    w.write_all("\u{feff}".as_bytes())?;
    let mut out = csv::Writer::from_writer(w);
    let mut n = 0;
    for l in letters {
        out.serialize(l).map_err(std::io::Error::other)?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_a_day() {
        let b = Duration::from_secs(300);
        assert_eq!(backoff(b, 1), b);
        assert_eq!(backoff(b, 3), b * 4);
        assert_eq!(backoff(b, 30), Duration::from_secs(86400));
    }

    #[test]
    fn letters_are_csv_with_a_bom() {
        let mut out = Vec::new();
        let n = write_letters(
            &mut out,
            [Letter {
                reference: "K-1",
                subscriber: "S1",
                postal_address: "東京都千代田区1-1",
                language: "ja",
                subject: "件名",
                body: "本文,改行\nあり",
            }],
        )
        .unwrap();
        assert_eq!(n, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("\u{feff}reference,subscriber,postal_address"));
        assert!(text.contains("\"本文,改行\nあり\""));
    }
}
