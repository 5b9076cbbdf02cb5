//! The reset listener: port 443 of the warning address.
//!
//! The DNS front sends a consenting subscriber's browser to the warning
//! address for a listed name, whatever the scheme. Over `https://` kanki
//! cannot answer: it holds no valid certificate for the listed name (nor
//! should anyone), so a TLS handshake could only end in a certificate error
//! (and, for a name with HSTS, one the browser does not let the subscriber
//! pass). A silently dropped connection would hang the browser until its
//! timeout. So every connection here is accepted and closed at once with
//! SO_LINGER 0, which sends a TCP reset: the browser fails at once with a
//! connection error (Chromium: ERR_CONNECTION_RESET) and the subscriber
//! can open the `http://` address to see why.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;

/// Binds every address (an error names the one that failed).
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for &a in addrs {
        out.push(TcpListener::bind(a).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {a} (warning.reset_listen): {e}"),
            )
        })?);
    }
    Ok(out)
}

/// Resets every connection to these listeners, counting them.
pub fn spawn(listeners: Vec<TcpListener>, resets: Counter) {
    for l in listeners {
        let resets = resets.clone();
        if let Ok(a) = l.local_addr() {
            tracing::info!(listen = %a, "resetting connections (the warning address's port 443)");
        }
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, _)) => {
                        // Dropped with a zero linger: a reset, not a FIN.
                        if let Err(e) = stream.set_zero_linger() {
                            tracing::debug!(error = %e, "cannot set SO_LINGER 0");
                        }
                        drop(stream);
                        resets.inc();
                    }
                    Err(e) => {
                        // Out of descriptors, most likely: let some close.
                        tracing::warn!(error = %e, "reset listener cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
}
