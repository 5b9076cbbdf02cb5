//! One request, as a honeyclient makes it: through the SSRF guard, under a
//! profile, without following redirects, with the body cut at a limit
//! counted after decompression, and within a time limit. Everything seen
//! is returned, including why a fetch ended early.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kanki_config::{CrawlerConfig, ProfileConfig};
use reqwest::header::{ACCEPT, ACCEPT_LANGUAGE, HeaderMap, REFERER, USER_AGENT};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::guard::{AddressPolicy, GuardError, GuardedResolver};
use crate::tls::{CertFacts, RecordingVerifier, cert_facts};

/// What one request gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The address the connection went to (after the guard checked it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `HTTP/1.1`, `HTTP/2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    /// Response headers in order (names lower case).
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Bytes of body kept (after decompression).
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertFacts>,
    /// Milliseconds from the request to the response headers, and to the
    /// end of the body.
    pub headers_ms: u64,
    pub total_ms: u64,
    /// Why the fetch ended before a complete response, if it did: a refused
    /// address, a limit reached, a connection error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Whether it ended because the SSRF guard refused the destination.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

impl Fetched {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Makes requests for one profile.
pub struct Fetcher {
    client: reqwest::Client,
    profile: ProfileConfig,
    resolver: Arc<GuardedResolver>,
    verifier: Arc<RecordingVerifier>,
    max_body: u64,
    page_timeout: Duration,
}

impl Fetcher {
    pub fn new(config: &CrawlerConfig, profile: ProfileConfig) -> Result<Fetcher, String> {
        let policy = AddressPolicy::new(&config.lab_allow)?;
        let resolver = GuardedResolver::new(policy, &config.hosts);
        let (tls, verifier) = crate::tls::client_config();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(resolver.clone())
            .tls_backend_preconfigured(tls)
            .tls_info(true)
            .connect_timeout(config.page_timeout.0)
            .pool_max_idle_per_host(config.per_host_concurrency as usize);
        b = match &profile.proxy {
            Some(p) => b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy {p:?}: {e}"))?),
            None => b.no_proxy(),
        };
        let client = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Fetcher {
            client,
            profile,
            resolver,
            verifier,
            max_body: config.max_body_bytes,
            page_timeout: config.page_timeout.0,
        })
    }

    pub fn profile(&self) -> &ProfileConfig {
        &self.profile
    }

    /// Fetches `url` with `referer`; never fails: problems are in `stopped`.
    pub async fn fetch(&self, url: &Url, referer: Option<&str>) -> Fetched {
        let started = Instant::now();
        let mut out = Fetched::default();
        if !matches!(url.scheme(), "http" | "https") {
            out.stopped = Some(format!("not fetched: scheme {}", url.scheme()));
            return out;
        }
        let Some(host) = url.host_str() else {
            out.stopped = Some("not fetched: no host".into());
            return out;
        };
        // Addresses written in the URL never reach the resolver: check here.
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            && let Err(e) = self.resolver.policy().check(ip)
            && self.profile.proxy.is_none()
        {
            out.stopped = Some(e);
            out.refused = true;
            out.address = Some(ip.to_string());
            return out;
        }
        let mut req = self
            .client
            .get(url.clone())
            .header(USER_AGENT, &self.profile.user_agent)
            .header(ACCEPT_LANGUAGE, &self.profile.accept_language)
            .header(
                ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            );
        if let Some(r) = referer {
            req = req.header(REFERER, r);
        }
        let work = async {
            let mut resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    out.refused = is_refusal(&e);
                    out.stopped = Some(error_chain(&e));
                    return;
                }
            };
            out.headers_ms = started.elapsed().as_millis() as u64;
            out.address = resp.remote_addr().map(|a| a.ip().to_string());
            out.status = Some(resp.status().as_u16());
            out.http_version = Some(format!("{:?}", resp.version()));
            out.headers = header_list(resp.headers());
            if let Some(info) = resp.extensions().get::<reqwest::tls::TlsInfo>()
                && let Some(der) = info.peer_certificate()
            {
                out.cert = Some(cert_facts(der, &self.verifier));
            }
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = self.max_body.saturating_sub(out.body.len() as u64) as usize;
                        if chunk.len() > room {
                            out.body.extend_from_slice(&chunk[..room]);
                            out.stopped = Some(format!(
                                "body limit of {} bytes reached (after decompression)",
                                self.max_body
                            ));
                            break;
                        }
                        out.body.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.stopped = Some(format!("body broke off: {}", error_chain(&e)));
                        break;
                    }
                }
            }
        };
        if tokio::time::timeout(self.page_timeout, work).await.is_err() {
            out.stopped = Some(format!(
                "page time limit of {} reached",
                humantime::format_duration(self.page_timeout)
            ));
        }
        out.size = out.body.len() as u64;
        out.total_ms = started.elapsed().as_millis() as u64;
        out
    }
}

fn header_list(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Whether the SSRF guard is among an error's causes.
fn is_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<GuardError>().is_some_and(|g| g.refused) {
            return true;
        }
        cur = c.source();
    }
    false
}

/// An error with its causes, which is where the guard's reason ends up.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
