//! TLS for the operator API: rustls through tokio-rustls, the TLS stack the
//! workspace already builds (the crawler's lab speaks it, reqwest and
//! lettre use rustls), served by `axum::serve` through a [`Listener`].
//!
//! The certificate chain and key are PEM files (`api.tls_cert_file`,
//! `api.tls_key_file`). They are read at start, where an unusable pair
//! stops `kanki serve` with the reason, and again whenever either file
//! changes (looked at every [`RELOAD_EVERY`]) or at once on SIGHUP: a
//! renewed certificate is served to new connections without a restart. A
//! pair that fails to load then is logged and the previous one stays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// How often the certificate files are looked at for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A TLS handshake not done within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; past it new connections wait in the
/// kernel's accept queue (memory stays bounded however many connect).
const HANDSHAKES: usize = 512;

/// The certificate being served, and the files it comes from.
#[derive(Debug)]
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times and sizes of the two files when last loaded.
    stamp: Mutex<Option<Stamp>>,
}

type Stamp = [(SystemTime, u64); 2];

fn stamp(files: [&Path; 2]) -> Option<Stamp> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    Some([one(files[0])?, one(files[1])?])
}

/// Reads a certificate chain and its private key (PEM), and checks that
/// they belong together.
fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read the private key {}: {e}", key_file.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        format!(
            "the certificate {} and the key {} cannot be used together: {e}",
            cert_file.display(),
            key_file.display()
        )
    })
}

impl Certificates {
    /// Loads the pair; the error says which file and why.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Certificates, String> {
        let before = stamp([cert_file, key_file]);
        let key = load(cert_file, key_file)?;
        Ok(Certificates {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(Arc::new(key)),
            stamp: Mutex::new(before),
        })
    }

    /// Loads the files again if they changed since the last load (or
    /// always, `force`). `Ok(true)`: a new certificate is being served.
    pub fn reload(&self, force: bool) -> Result<bool, String> {
        let now = stamp([&self.cert_file, &self.key_file]);
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if !force && (now.is_none() || now == *last) {
            return Ok(false);
        }
        // Noted before loading: a pair half written (the key not yet
        // renewed) is retried when the other file changes too.
        *last = now;
        let key = load(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(true)
    }

    /// A rustls server configuration serving the current certificate.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // axum serves HTTP/1.1 here.
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Reloads the certificate when its files change, and on SIGHUP, until
/// `stop` (a background job of `kanki serve`).
pub async fn watch(certs: Arc<Certificates>, mut stop: kanki_jobs::Stop) {
    {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let forced = tokio::select! {
                _ = tokio::time::sleep(RELOAD_EVERY) => false,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                () = stop.stopping() => return,
            };
            #[cfg(not(unix))]
            let forced = {
                if !stop.sleep(RELOAD_EVERY).await {
                    return;
                }
                false
            };
            let c = certs.clone();
            match tokio::task::spawn_blocking(move || c.reload(forced)).await {
                Ok(Ok(true)) => {
                    tracing::info!(file = %certs.cert_file.display(), "API certificate reloaded")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "API certificate not reloaded; the previous one stays in use")
                }
                Err(e) => tracing::error!(error = %e, "API certificate reload panicked"),
            }
        }
    }
}

/// A [`Listener`] for `axum::serve` that hands over connections once their
/// TLS handshake is done. Handshakes run on their own tasks, so a slow
/// client delays no other.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, certs: &Arc<Certificates>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certs.server_config()));
        let (tx, ready) = mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum does.
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let tls =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    match tls {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "API TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "API TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task is gone (it never returns while the
            // listener lives): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
