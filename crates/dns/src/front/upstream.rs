//! Forwarding to the upstream resolvers: tried in order from the one that
//! last answered, each with a timeout; over UDP with a random id on one of
//! several sockets per upstream (so a forged answer must guess both), or
//! over TCP for a client that asked over TCP. An answer is taken only from
//! the upstream asked, with the id sent and the question asked.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

use super::wire::{Query, ResponseFacts, response_facts};

const SOCKETS_PER_UPSTREAM: usize = 4;

type Waiting = Mutex<HashMap<u16, (Box<[u8]>, oneshot::Sender<Vec<u8>>)>>;

struct Socket {
    socket: Arc<UdpSocket>,
    /// Sent id → (the question name asked, who waits).
    waiting: Arc<Waiting>,
}

struct Upstream {
    addr: SocketAddr,
    sockets: Vec<Socket>,
}

pub struct Upstreams {
    servers: Vec<Upstream>,
    timeout: Duration,
    /// The upstream tried first: the last one that answered.
    preferred: AtomicUsize,
    ids: Mutex<u64>,
}

/// An upstream's answer, with what the cache needs of it.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub facts: ResponseFacts,
    pub elapsed: Duration,
}

impl Upstreams {
    /// Opens the sockets and starts their readers (call inside a runtime).
    pub async fn connect(addrs: &[SocketAddr], timeout: Duration) -> io::Result<Upstreams> {
        let mut servers = Vec::new();
        for &addr in addrs {
            let mut sockets = Vec::new();
            for _ in 0..SOCKETS_PER_UPSTREAM {
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let socket = Arc::new(UdpSocket::bind(local).await?);
                socket.connect(addr).await?;
                let waiting: Arc<Waiting> = Arc::default();
                tokio::spawn(read_answers(socket.clone(), waiting.clone()));
                sockets.push(Socket { socket, waiting });
            }
            servers.push(Upstream { addr, sockets });
        }
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 1u8);
        Ok(Upstreams {
            servers,
            timeout,
            preferred: AtomicUsize::new(0),
            ids: Mutex::new(seed | 1),
        })
    }

    fn random(&self) -> u64 {
        // xorshift64*, seeded per process: unpredictable enough for ids
        // and socket choice on the ISP's own network to its resolvers.
        let mut s = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Forwards `packet` (the client's query `q`), failing over on timeout
    /// or error; `None` when no upstream answered.
    pub async fn forward(&self, packet: &[u8], q: &Query<'_>, tcp: bool) -> Option<Answer> {
        let n = self.servers.len();
        let first = self.preferred.load(Relaxed);
        for i in 0..n {
            let k = (first + i) % n;
            let started = Instant::now();
            let got = if tcp {
                self.over_tcp(k, packet).await
            } else {
                self.over_udp(k, packet, q).await
            };
            let Some(bytes) = got else {
                tracing::debug!(upstream = %self.servers[k].addr, "upstream did not answer; trying the next");
                continue;
            };
            let Some(facts) = response_facts(&bytes, q) else {
                continue;
            };
            if facts.rcode == super::wire::RCODE_SERVFAIL && i + 1 < n {
                continue;
            }
            if k != first {
                self.preferred.store(k, Relaxed);
            }
            return Some(Answer {
                bytes,
                facts,
                elapsed: started.elapsed(),
            });
        }
        None
    }

    async fn over_udp(&self, k: usize, packet: &[u8], q: &Query<'_>) -> Option<Vec<u8>> {
        let up = &self.servers[k];
        let r = self.random();
        let s = &up.sockets[(r >> 32) as usize % up.sockets.len()];
        let (tx, rx) = oneshot::channel();
        let mut id = r as u16;
        {
            let mut w = s.waiting.lock().unwrap_or_else(|e| e.into_inner());
            while w.contains_key(&id) {
                id = id.wrapping_add(1);
            }
            w.insert(id, (q.qname.to_ascii_lowercase().into(), tx));
        }
        let mut out = packet.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        let answered = match s.socket.send(&out).await {
            Ok(_) => tokio::time::timeout(self.timeout, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        s.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let mut bytes = answered?;
        bytes[..2].copy_from_slice(&packet[..2]);
        Some(bytes)
    }

    async fn over_tcp(&self, k: usize, packet: &[u8]) -> Option<Vec<u8>> {
        let addr = self.servers[k].addr;
        let exchange = async {
            let mut c = TcpStream::connect(addr).await?;
            let mut out = Vec::with_capacity(packet.len() + 2);
            out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
            out.extend_from_slice(packet);
            c.write_all(&out).await?;
            let len = c.read_u16().await? as usize;
            let mut bytes = vec![0; len];
            c.read_exact(&mut bytes).await?;
            io::Result::Ok(bytes)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(b)) if b.len() >= 12 && b[..2] == packet[..2] => Some(b),
            _ => None,
        }
    }
}

/// Hands each answer on a socket to whoever waits for its id, if its
/// question is the one asked; anything else is dropped.
async fn read_answers(socket: Arc<UdpSocket>, waiting: Arc<Waiting>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // A refused port (ICMP) shows up here; keep reading.
                tracing::trace!(error = %e, "upstream socket");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let b = &buf[..n];
        if n < 12 {
            continue;
        }
        let id = u16::from_be_bytes([b[0], b[1]]);
        let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
        let matches = w.get(&id).is_some_and(|(name, _)| {
            b.get(12..12 + name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        if matches && let Some((_, tx)) = w.remove(&id) {
            let _ = tx.send(b.to_vec());
        }
    }
}
