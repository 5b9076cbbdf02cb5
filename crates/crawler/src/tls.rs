//! TLS that records instead of refusing: a malware site's certificate is
//! evidence whether it is valid or not, so the crawler verifies every
//! certificate against the system's roots, writes down the outcome and
//! the certificate's facts, and goes on either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the crawler recorded about a server's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFacts {
    /// SHA-256 of the leaf certificate (DER).
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    /// DNS names of the subject alternative name extension.
    pub dns_names: Vec<String>,
    /// Whether the chain verified against the system's roots for this name.
    pub valid: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Outcomes of the verifications, by leaf certificate hash, until the
/// response that used the connection reads them.
type Outcomes = Mutex<HashMap<[u8; 32], Option<String>>>;

#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    outcomes: Outcomes,
}

impl RecordingVerifier {
    /// The outcome of verifying `der` (`None`: valid, `Some(why)`: not).
    fn outcome(&self, der: &[u8]) -> Option<Option<String>> {
        let key: [u8; 32] = Sha256::digest(der).into();
        let map = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key).cloned()
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let problem = match &self.inner {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .err()
                .map(|e| e.to_string()),
            None => Some("no trust anchors on this machine".into()),
        };
        let key: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        let mut map = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a crawl process meets many certificates over its life.
        if map.len() > 4096 {
            map.clear();
        }
        map.insert(key, problem);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration (ring) that verifies, records and accepts.
pub(crate) fn client_config() -> (rustls::ClientConfig, Arc<RecordingVerifier>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .ok();
    let verifier = Arc::new(RecordingVerifier {
        inner,
        provider: provider.clone(),
        outcomes: Mutex::new(HashMap::new()),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (config, verifier)
}

/// The facts of a leaf certificate and what its verification said.
pub(crate) fn cert_facts(der: &[u8], verifier: &RecordingVerifier) -> CertFacts {
    CertFacts::of_der(der, verifier.outcome(der))
}

impl CertFacts {
    /// The facts of a leaf certificate (DER, as a crawled site sent it:
    /// anything) and its verification's outcome (`Some(None)`: valid,
    /// `Some(Some(why))`: not, `None`: not recorded).
    pub fn of_der(der: &[u8], outcome: Option<Option<String>>) -> CertFacts {
        facts_of(der, outcome)
    }
}

fn facts_of(der: &[u8], outcome: Option<Option<String>>) -> CertFacts {
    let sha256 = hex::encode(Sha256::digest(der));
    let (valid, problem) = match outcome {
        Some(None) => (true, None),
        Some(Some(p)) => (false, Some(p)),
        None => (false, Some("verification outcome not recorded".into())),
    };
    let mut facts = CertFacts {
        sha256,
        subject: String::new(),
        issuer: String::new(),
        serial: String::new(),
        not_before: String::new(),
        not_after: String::new(),
        dns_names: Vec::new(),
        valid,
        problem,
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            facts.subject = cert.subject().to_string();
            facts.issuer = cert.issuer().to_string();
            facts.serial = cert.raw_serial_as_string();
            let time = |t: i64| {
                chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default()
            };
            facts.not_before = time(cert.validity().not_before.timestamp());
            facts.not_after = time(cert.validity().not_after.timestamp());
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                        facts.dns_names.push((*n).to_string());
                    }
                }
            }
        }
        Err(e) => {
            facts.valid = false;
            facts.problem = Some(format!("unparsable certificate: {e}"));
        }
    }
    facts
}
