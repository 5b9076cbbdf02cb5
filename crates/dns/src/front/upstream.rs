//! Forwarding to the upstream resolvers: tried in order from the one that
//! last answered, each with a timeout; over UDP, or over TCP for a client
//! that asked over TCP.
//!
//! A forged UDP answer must guess everything an answer is checked
//! against ([`reply_matches`]): it must come from the upstream's address
//! and port, to the port the query left from, with the id sent and the
//! question asked. Each upstream has a pool of sockets
//! ([`UpstreamOptions::ports`]) bound to ports drawn at random from the
//! system's ephemeral range; each socket carries at most
//! [`QUERIES_PER_PORT`] queries and is then replaced by one on a fresh
//! random port, so the ports in use keep moving. Ids and ports come from a
//! CSPRNG (`rand`'s thread-local ChaCha generator, seeded from the OS: no
//! lock per query).
//!
//! Each socket holds at most [`IDS_PER_PORT`] queries at once, and a free
//! id is drawn a bounded number of times: a busy socket makes the query
//! try another socket, never wait or loop. The front caps the forwards in
//! flight overall (`dns.max_forwards`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::RngExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, oneshot};

use super::wire::{Query, ResponseFacts, reply_answers, response_facts};

/// Queries a socket carries before a fresh random port replaces it.
pub const QUERIES_PER_PORT: u32 = 1024;
/// Queries waiting on one socket at most.
pub const IDS_PER_PORT: usize = 4096;
/// Random ids tried for a query before its socket counts as busy.
const ID_TRIES: usize = 8;
/// Sockets tried for a query before it fails (then SERVFAIL).
const PORT_TRIES: usize = 4;

/// How the upstreams are reached.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    pub timeout: Duration,
    /// Sockets (random source ports) per upstream.
    pub ports: usize,
}

/// Whether a datagram `reply` that came from `from` answers the query sent
/// to `upstream` with `id` and `question` (the question section as sent:
/// name, type and class): same address and port, same id, a response with
/// exactly that question (the name in any case).
pub fn reply_matches(
    reply: &[u8],
    from: SocketAddr,
    upstream: SocketAddr,
    id: u16,
    question: &[u8],
) -> bool {
    from.port() == upstream.port()
        && from.ip().to_canonical() == upstream.ip().to_canonical()
        && reply_answers(reply, id, question)
}

/// Who waits for the answer to one query on a socket.
struct Waiter {
    /// The question sent, lower case.
    question: Box<[u8]>,
    tx: oneshot::Sender<Vec<u8>>,
}

/// One socket on one random port.
struct Port {
    socket: UdpSocket,
    /// Sent id → who waits.
    waiting: Mutex<HashMap<u16, Waiter, foldhash::fast::RandomState>>,
    /// Queries sent on it.
    sent: AtomicU32,
    retired: AtomicBool,
    retire: Notify,
}

struct Upstream {
    addr: SocketAddr,
    ports: Vec<ArcSwap<Port>>,
}

pub struct Upstreams {
    servers: Vec<Upstream>,
    timeout: Duration,
    /// The upstream tried first: the last one that answered.
    preferred: AtomicUsize,
    /// The system's ephemeral port range, where ports are drawn from.
    port_range: (u16, u16),
}

/// An upstream's answer, with what the cache needs of it.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub facts: ResponseFacts,
    pub elapsed: Duration,
}

/// The range the kernel takes ephemeral ports from (Linux), so a random
/// port never takes one a service on the host expects to bind.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| 1024 <= *lo && lo < hi)
        .unwrap_or((32768, 60999))
}

impl Upstreams {
    /// Opens the sockets and starts their readers (call inside a runtime).
    pub async fn connect(addrs: &[SocketAddr], opts: &UpstreamOptions) -> io::Result<Upstreams> {
        let port_range = ephemeral_range();
        let mut servers = Vec::new();
        for &addr in addrs {
            let mut ports = Vec::new();
            for _ in 0..opts.ports.max(1) {
                ports.push(ArcSwap::new(open_port(addr, port_range, opts.timeout)?));
            }
            servers.push(Upstream { addr, ports });
        }
        Ok(Upstreams {
            servers,
            timeout: opts.timeout,
            preferred: AtomicUsize::new(0),
            port_range,
        })
    }

    /// The source ports in use now for upstream `k` (for tests).
    pub fn ports(&self, k: usize) -> Vec<u16> {
        self.servers[k]
            .ports
            .iter()
            .filter_map(|p| p.load().socket.local_addr().ok().map(|a| a.port()))
            .collect()
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
                self.over_tcp(k, packet, q).await
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

    /// A socket of upstream `k` with a free id, the query registered on
    /// it; `None` when every socket tried is busy.
    fn register(
        &self,
        k: usize,
        q: &Query<'_>,
        packet: &[u8],
    ) -> Option<(Arc<Port>, u16, oneshot::Receiver<Vec<u8>>)> {
        let up = &self.servers[k];
        let mut rng = rand::rng();
        for _ in 0..PORT_TRIES {
            let slot = &up.ports[rng.random_range(0..up.ports.len())];
            let port = slot.load_full();
            if port.sent.fetch_add(1, Relaxed) + 1 == QUERIES_PER_PORT {
                // This port has carried its share: a fresh one takes its
                // slot; this query still leaves from the old one, which
                // keeps reading until its last query has timed out.
                match open_port(up.addr, self.port_range, self.timeout) {
                    Ok(fresh) => {
                        slot.store(fresh);
                        port.retired.store(true, Relaxed);
                        port.retire.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "DNS front: cannot open an upstream port; keeping the old one");
                        port.sent.store(0, Relaxed);
                    }
                }
            }
            let mut w = port.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if w.len() >= IDS_PER_PORT {
                continue;
            }
            for _ in 0..ID_TRIES {
                let id: u16 = rng.random();
                if let std::collections::hash_map::Entry::Vacant(v) = w.entry(id) {
                    let (tx, rx) = oneshot::channel();
                    v.insert(Waiter {
                        question: q.question(packet).to_ascii_lowercase().into(),
                        tx,
                    });
                    drop(w);
                    return Some((port, id, rx));
                }
            }
        }
        None
    }

    async fn over_udp(&self, k: usize, packet: &[u8], q: &Query<'_>) -> Option<Vec<u8>> {
        let Some((port, id, rx)) = self.register(k, q, packet) else {
            tracing::debug!("DNS front: every upstream socket tried is busy");
            return None;
        };
        let mut out = packet.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        let answered = match port.socket.send(&out).await {
            Ok(_) => tokio::time::timeout(self.timeout, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        port.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let mut bytes = answered?;
        bytes[..2].copy_from_slice(&packet[..2]);
        Some(bytes)
    }

    async fn over_tcp(&self, k: usize, packet: &[u8], q: &Query<'_>) -> Option<Vec<u8>> {
        let addr = self.servers[k].addr;
        let id: u16 = rand::rng().random();
        let exchange = async {
            let mut c = TcpStream::connect(addr).await?;
            let mut out = Vec::with_capacity(packet.len() + 2);
            out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
            out.extend_from_slice(packet);
            out[2..4].copy_from_slice(&id.to_be_bytes());
            c.write_all(&out).await?;
            let len = c.read_u16().await? as usize;
            let mut bytes = vec![0; len];
            c.read_exact(&mut bytes).await?;
            io::Result::Ok(bytes)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(mut b)) if reply_answers(&b, id, q.question(packet)) => {
                b[..2].copy_from_slice(&packet[..2]);
                Some(b)
            }
            _ => None,
        }
    }
}

/// A socket on a random port of `range`, connected to `upstream`, with its
/// reader running.
fn open_port(upstream: SocketAddr, range: (u16, u16), linger: Duration) -> io::Result<Arc<Port>> {
    let any: IpAddr = if upstream.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let mut rng = rand::rng();
    let mut last = None;
    let mut socket = None;
    for _ in 0..16 {
        let p = rng.random_range(range.0..=range.1);
        match std::net::UdpSocket::bind(SocketAddr::new(any, p)) {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let socket = match socket {
        Some(s) => s,
        // Sixteen ports taken in a row: the range is nearly full; let the
        // kernel pick (it also picks at random).
        None => {
            tracing::debug!(error = ?last, "DNS front: no free random port; the kernel picks one");
            std::net::UdpSocket::bind(SocketAddr::new(any, 0))?
        }
    };
    socket.connect(upstream)?;
    socket.set_nonblocking(true)?;
    let port = Arc::new(Port {
        socket: UdpSocket::from_std(socket)?,
        waiting: Mutex::new(HashMap::default()),
        sent: AtomicU32::new(0),
        retired: AtomicBool::new(false),
        retire: Notify::new(),
    });
    tokio::spawn(read_answers(port.clone(), upstream, linger));
    Ok(port)
}

/// Hands each answer on a socket to whoever waits for its id, if it
/// matches ([`reply_matches`]); anything else is dropped. Once the socket
/// is retired, reads for one more timeout (its last queries' answers),
/// then ends, closing the socket.
async fn read_answers(port: Arc<Port>, upstream: SocketAddr, linger: Duration) {
    let mut buf = vec![0u8; 65_535];
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let received = match deadline {
            None => tokio::select! {
                r = port.socket.recv_from(&mut buf) => r,
                () = port.retire.notified() => {
                    deadline = Some(tokio::time::Instant::now() + linger);
                    continue;
                }
            },
            Some(d) => match tokio::time::timeout_at(d, port.socket.recv_from(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        let (n, from) = match received {
            Ok(x) => x,
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
        let mut w = port.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if w.get(&id)
            .is_some_and(|x| reply_matches(b, from, upstream, id, &x.question))
            && let Some(x) = w.remove(&id)
        {
            let _ = x.tx.send(b.to_vec());
        }
        if port.retired.load(Relaxed) && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + linger);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_matches_only_from_the_upstream_with_the_id_and_question() {
        // A query for a.example A, id 0x1234.
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
        let question = &q[12..];
        let mut reply = q.clone();
        reply[2] |= 0x80;
        let up: SocketAddr = "192.0.2.53:53".parse().unwrap();
        assert!(reply_matches(&reply, up, up, 0x1234, question));
        // The name in another case still matches; v4-mapped source too.
        let mut upper = reply.clone();
        upper[13] = b'A';
        let mapped: SocketAddr = "[::ffff:192.0.2.53]:53".parse().unwrap();
        assert!(reply_matches(&upper, mapped, up, 0x1234, question));
        // Another port, another address, another id.
        assert!(!reply_matches(
            &reply,
            "192.0.2.53:54".parse().unwrap(),
            up,
            0x1234,
            question
        ));
        assert!(!reply_matches(
            &reply,
            "192.0.2.54:53".parse().unwrap(),
            up,
            0x1234,
            question
        ));
        assert!(!reply_matches(&reply, up, up, 0x1235, question));
        // Another type (AAAA), another class, a query not a response.
        let mut aaaa = reply.clone();
        let t = aaaa.len() - 3;
        aaaa[t] = 28;
        assert!(!reply_matches(&aaaa, up, up, 0x1234, question));
        let mut chaos = reply.clone();
        let c = chaos.len() - 1;
        chaos[c] = 3;
        assert!(!reply_matches(&chaos, up, up, 0x1234, question));
        assert!(!reply_matches(&q, up, up, 0x1234, question));
        // Type 0x0061 is not type 0x0041, whatever the case folding.
        let mut qa = q.clone();
        let t = qa.len() - 3;
        qa[t] = 0x41;
        let mut ra = qa.clone();
        ra[2] |= 0x80;
        ra[t] = 0x61;
        assert!(!reply_matches(&ra, up, up, 0x1234, &qa[12..]));
        // Two questions, or a cut-off one.
        let mut two = reply.clone();
        two[5] = 2;
        assert!(!reply_matches(&two, up, up, 0x1234, question));
        assert!(!reply_matches(
            &reply[..reply.len() - 1],
            up,
            up,
            0x1234,
            question
        ));
    }
}
