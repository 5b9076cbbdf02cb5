//! The DNS front: a forwarding resolver for the ISP's subscribers that
//! answers a consenting subscriber's query for a listed name with the
//! warning address, and everything else exactly as its upstreams do.
//!
//! * [`wire`]: the hot path's message reading and writing;
//! * [`cache`]: upstream answers, aged, never policy answers;
//! * [`upstream`]: forwarding with timeouts and failover;
//! * this module: the listeners (UDP, TCP), client checks, rate limits,
//!   the decision per query ([`Decider`], given by `kanki serve`), counters.
//!
//! Per query, the consent check is covered by the subscriber's consent and
//! is not written to the audit log; no query is logged (DESIGN.md) unless
//! an operator turns the debugging query log on.

pub mod cache;
mod query_log;
pub mod upstream;
pub mod wire;

use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use wire::Malformed;

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer as the upstreams do.
    Forward,
    /// Answer with the warning address: the name is listed (by these
    /// indicators) for a consenting subscriber, or the subscriber is in the
    /// walled garden.
    Warn {
        indicator: Option<i64>,
        garden: bool,
    },
}

/// Decides per query from the client address and the question name
/// (lower case, dotted, no final dot). Called on every query: it must not
/// block (lock-free snapshots, no I/O).
pub trait Decider: Send + Sync {
    fn decide(&self, client: IpAddr, name: &[u8]) -> Decision;
}

/// The front's settings (from `[dns]`).
#[derive(Debug, Clone)]
pub struct FrontOptions {
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    pub upstream_timeout: Duration,
    pub clients: Vec<(IpAddr, u8)>,
    pub warning_v4: Ipv4Addr,
    pub warning_v6: Ipv6Addr,
    pub ttl: u32,
    /// 17 (Filtered) or 15 (Blocked).
    pub ede_code: u16,
    pub cache_entries: usize,
    /// Queries per second per client /24 or /56; 0: unlimited.
    pub rate_limit: u32,
    /// Forwards waiting for an upstream at most; past it, SERVFAIL.
    pub max_forwards: usize,
    /// Sockets (random source ports) per upstream.
    pub upstream_ports: usize,
    /// Client TCP connections open at most; past it, new ones are closed.
    pub tcp_connections: usize,
    /// A client TCP connection with nothing to read or write this long is
    /// closed.
    pub tcp_idle_timeout: Duration,
    /// A debugging log of every query, and how long its files are kept.
    pub query_log: Option<(std::path::PathBuf, Duration)>,
}

impl FrontOptions {
    pub fn from_config(c: &kanki_config::DnsConfig) -> Result<FrontOptions, String> {
        Ok(FrontOptions {
            listen: c.listen.clone(),
            upstreams: c.upstreams.clone(),
            upstream_timeout: c.upstream_timeout.0,
            clients: c
                .clients
                .iter()
                .map(|p| kanki_config::parse_prefix(p))
                .collect::<Result<_, _>>()?,
            warning_v4: c.warning_v4,
            warning_v6: c.warning_v6,
            ttl: c.ttl,
            ede_code: if c.ede == "blocked" { 15 } else { 17 },
            cache_entries: c.cache_entries,
            rate_limit: c.rate_limit,
            max_forwards: c.max_forwards,
            upstream_ports: c.upstream_ports,
            tcp_connections: c.tcp_connections,
            tcp_idle_timeout: c.tcp_idle_timeout.0,
            query_log: c.query_log.clone().map(|p| (p, c.query_log_retention.0)),
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// The front's counters (`kanki_dns_*` in /metrics).
pub struct FrontStats {
    queries: Family<TransportLabel, Counter>,
    answers: Family<KindLabel, Counter>,
    policy_hits: Counter,
    forwards: Counter,
    cache_hits: Counter,
    refused: Counter,
    rate_limited: Counter,
    forward_overflow: Counter,
    tcp_refused: Counter,
    malformed: Counter,
    upstream_seconds: Histogram,
    // Hot counters fetched once from their families.
    udp: Counter,
    tcp: Counter,
    forwarded: Counter,
    cached: Counter,
    warned: Counter,
    garden: Counter,
    servfail: Counter,
    errors: Counter,
}

impl Default for FrontStats {
    fn default() -> Self {
        let queries = Family::<TransportLabel, Counter>::default();
        let answers = Family::<KindLabel, Counter>::default();
        let t = |t| {
            queries
                .get_or_create(&TransportLabel { transport: t })
                .clone()
        };
        let a = |k| answers.get_or_create(&KindLabel { kind: k }).clone();
        FrontStats {
            udp: t("udp"),
            tcp: t("tcp"),
            forwarded: a("forwarded"),
            cached: a("cached"),
            warned: a("warning"),
            garden: a("garden"),
            servfail: a("servfail"),
            errors: a("error"),
            queries,
            answers,
            policy_hits: Counter::default(),
            forwards: Counter::default(),
            cache_hits: Counter::default(),
            refused: Counter::default(),
            rate_limited: Counter::default(),
            forward_overflow: Counter::default(),
            tcp_refused: Counter::default(),
            malformed: Counter::default(),
            upstream_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        }
    }
}

impl FrontStats {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "dns_queries",
            "DNS front queries received",
            self.queries.clone(),
        );
        r.register(
            "dns_answers",
            "DNS front answers by kind (forwarded, cached, warning, garden, servfail, error)",
            self.answers.clone(),
        );
        r.register(
            "dns_policy_hits",
            "Queries answered with the warning address for a listed name",
            self.policy_hits.clone(),
        );
        r.register(
            "dns_forwards",
            "Queries sent to an upstream",
            self.forwards.clone(),
        );
        r.register(
            "dns_cache_hits",
            "Queries answered from the response cache",
            self.cache_hits.clone(),
        );
        r.register(
            "dns_refused",
            "Queries refused (client outside dns.clients, or not class IN)",
            self.refused.clone(),
        );
        r.register(
            "dns_rate_limited",
            "Queries dropped by the per-prefix rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "dns_forward_overflow",
            "Queries answered SERVFAIL because dns.max_forwards forwards were in flight",
            self.forward_overflow.clone(),
        );
        r.register(
            "dns_tcp_refused",
            "Client TCP connections closed at once because dns.tcp_connections were open",
            self.tcp_refused.clone(),
        );
        r.register(
            "dns_malformed",
            "Malformed messages, dropped or answered FORMERR/NOTIMP/BADVERS",
            self.malformed.clone(),
        );
        r.register(
            "dns_upstream_seconds",
            "Upstream answer latency",
            self.upstream_seconds.clone(),
        );
    }
}

/// The rate limit per client prefix (a /24 for IPv4, a /56 for IPv6):
/// `rate` queries a second, in bursts of up to twice that.
///
/// A fixed table of atomic slots, one word each, indexed by a keyed hash
/// of the prefix: no lock and no allocation per query, and memory bounded
/// whatever the number of clients. Each slot holds a tag (more bits of the
/// hash, to tell prefixes sharing a slot apart) and the prefix's
/// theoretical arrival time (GCRA, the generic cell rate algorithm, which
/// is a token bucket kept as one time). A prefix that finds its slot held
/// by another starts afresh; with 65,536 slots that is rare among the
/// prefixes active at once, and it only ever errs towards answering.
struct RateLimiter {
    /// Microseconds between queries at the rate.
    interval: u64,
    /// How far ahead of now a prefix's arrival time may run: the burst.
    tolerance: u64,
    start: Instant,
    hasher: foldhash::fast::RandomState,
    slots: Box<[AtomicU64]>,
}

const LIMITER_SLOTS: usize = 1 << 16;
/// A slot: the tag in the high 20 bits, the arrival time (microseconds
/// since `start`, modulo 2^44, about 203 days) in the low 44.
const TIME_BITS: u32 = 44;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// How far apart two threads' clocks may read for the same prefix (a
/// query timed just before another is counted just after it).
const LIMITER_SLACK_MICROS: u64 = 1_000_000;

impl RateLimiter {
    fn new(rate: u32) -> RateLimiter {
        let interval = (1_000_000 / u64::from(rate.max(1))).max(1);
        RateLimiter {
            interval,
            tolerance: interval * (2 * u64::from(rate.max(1)) - 1),
            start: Instant::now(),
            hasher: foldhash::fast::RandomState::default(),
            slots: (0..LIMITER_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let key = match client.to_canonical() {
            IpAddr::V4(a) => u128::from(u32::from(a) & 0xffff_ff00),
            IpAddr::V6(a) => (u128::from(a) & !((1u128 << 72) - 1)) | 1,
        };
        let h = self.hasher.hash_one(key);
        let slot = &self.slots[h as usize % LIMITER_SLOTS];
        let tag = h >> TIME_BITS;
        let t = now.saturating_duration_since(self.start).as_micros() as u64 & TIME_MASK;
        let mut cur = slot.load(Relaxed);
        loop {
            // How far the prefix's arrival time runs ahead of now: none
            // for a new prefix, or one whose time has passed (which reads
            // as far ahead, modulo 2^44).
            let ahead = cur.wrapping_sub(t) & TIME_MASK;
            let fresh = self.tolerance + self.interval + LIMITER_SLACK_MICROS;
            let ahead = if cur >> TIME_BITS != tag || ahead > fresh {
                0
            } else {
                ahead
            };
            if ahead > self.tolerance {
                return false;
            }
            let next = (tag << TIME_BITS) | ((t + ahead + self.interval) & TIME_MASK);
            match slot.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// A forward in flight, counted in [`Front::forwarding`] until dropped.
struct ForwardSlot<F: Deref<Target = Front>>(F);

impl<F: Deref<Target = Front>> Drop for ForwardSlot<F> {
    fn drop(&mut self) {
        self.0.forwarding.fetch_sub(1, Relaxed);
    }
}

/// The front: everything a listener needs to answer.
pub struct Front {
    opts: FrontOptions,
    decider: Arc<dyn Decider>,
    cache: cache::Cache,
    upstreams: upstream::Upstreams,
    limiter: Option<RateLimiter>,
    /// Forwards in flight (at most `opts.max_forwards`).
    forwarding: AtomicUsize,
    tcp_slots: Arc<Semaphore>,
    query_log: Option<query_log::QueryLog>,
    pub stats: Arc<FrontStats>,
}

/// What a listener does with one packet.
enum Step {
    /// Send the reply written into the listener's buffer.
    Reply,
    Forward,
    Nothing,
}

impl Front {
    /// Opens the upstream sockets (inside a runtime).
    pub async fn new(
        opts: FrontOptions,
        decider: Arc<dyn Decider>,
        stats: Arc<FrontStats>,
    ) -> io::Result<Front> {
        let upstreams = upstream::Upstreams::connect(
            &opts.upstreams,
            &upstream::UpstreamOptions {
                timeout: opts.upstream_timeout,
                ports: opts.upstream_ports,
            },
        )
        .await?;
        Ok(Front {
            cache: cache::Cache::new(opts.cache_entries),
            limiter: (opts.rate_limit > 0).then(|| RateLimiter::new(opts.rate_limit)),
            forwarding: AtomicUsize::new(0),
            tcp_slots: Arc::new(Semaphore::new(opts.tcp_connections.max(1))),
            query_log: opts
                .query_log
                .clone()
                .map(|(path, keep)| query_log::QueryLog::start(path, keep)),
            upstreams,
            decider,
            stats,
            opts,
        })
    }

    fn client_allowed(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.opts
            .clients
            .iter()
            .any(|&(net, len)| match (net, client) {
                (IpAddr::V4(n), IpAddr::V4(c)) => {
                    len == 0 || (u32::from(n) ^ u32::from(c)) >> (32 - len.min(32) as u32) == 0
                }
                (IpAddr::V6(n), IpAddr::V6(c)) => {
                    len == 0 || (u128::from(n) ^ u128::from(c)) >> (128 - len.min(128) as u32) == 0
                }
                _ => false,
            })
    }

    /// Everything but forwarding: checks, the decision, the cache. A
    /// reply is written into `out`, which a listener reuses from one query
    /// to the next (no allocation per answer).
    fn step(&self, packet: &[u8], client: IpAddr, tcp: bool, out: &mut Vec<u8>) -> Step {
        let error = |out: &mut Vec<u8>, rcode| match wire::error_answer(packet, rcode) {
            Some(e) => {
                *out = e;
                Step::Reply
            }
            None => Step::Nothing,
        };
        let q = match wire::parse_query(packet) {
            Ok(q) => q,
            Err(Malformed::Drop) => {
                self.stats.malformed.inc();
                return Step::Nothing;
            }
            Err(Malformed::Answer(rcode)) => {
                if rcode == wire::RCODE_REFUSED {
                    self.stats.refused.inc();
                } else {
                    self.stats.malformed.inc();
                }
                self.stats.errors.inc();
                return error(out, rcode);
            }
        };
        if !self.client_allowed(client) {
            self.stats.refused.inc();
            self.stats.errors.inc();
            return error(out, wire::RCODE_REFUSED);
        }
        let now = Instant::now();
        if let Some(l) = &self.limiter
            && !l.allow(client, now)
        {
            self.stats.rate_limited.inc();
            return Step::Nothing;
        }
        let mut buf = [0u8; 256];
        if let Some(name) = wire::dotted(q.qname, &mut buf)
            && let Decision::Warn { indicator, garden } = self.decider.decide(client, name)
        {
            self.log(client, &q, if garden { "garden" } else { "warning" });
            if garden {
                self.stats.garden.inc();
            } else {
                self.stats.policy_hits.inc();
                self.stats.warned.inc();
            }
            wire::warning_answer(
                out,
                packet,
                &q,
                self.opts.warning_v4,
                self.opts.warning_v6,
                self.opts.ttl,
                self.opts.ede_code,
                |text| write_warning_text(text, name, indicator, garden),
            );
            return Step::Reply;
        }
        if self.cache.get(packet, &q, now, out) {
            if !tcp && out.len() > q.udp_limit() {
                wire::truncated_answer(out, packet, &q);
                return Step::Reply;
            }
            self.stats.cache_hits.inc();
            self.stats.cached.inc();
            self.log(client, &q, "cached");
            return Step::Reply;
        }
        Step::Forward
    }

    fn log(&self, client: IpAddr, q: &wire::Query<'_>, answer: &'static str) {
        if let Some(l) = &self.query_log {
            l.record(client, q.qname, q.qtype, answer);
        }
    }

    /// The upstreams (for tests: the source ports in use).
    pub fn upstreams(&self) -> &upstream::Upstreams {
        &self.upstreams
    }

    /// A place among the forwards in flight; `None` (counted) when all
    /// `max_forwards` are taken.
    fn forward_slot<F: Deref<Target = Front>>(front: F) -> Option<ForwardSlot<F>> {
        if front.forwarding.fetch_add(1, Relaxed) >= front.opts.max_forwards {
            front.forwarding.fetch_sub(1, Relaxed);
            front.stats.forward_overflow.inc();
            front.stats.servfail.inc();
            return None;
        }
        Some(ForwardSlot(front))
    }

    /// The answer to a query to forward (`None`: not even SERVFAIL can be
    /// written, so nothing is sent).
    async fn forward(&self, packet: &[u8], client: IpAddr, tcp: bool) -> Option<Vec<u8>> {
        let q = wire::parse_query(packet).ok()?;
        self.stats.forwards.inc();
        self.log(client, &q, "forwarded");
        match self.upstreams.forward(packet, &q, tcp).await {
            Some(a) => {
                self.stats.upstream_seconds.observe(a.elapsed.as_secs_f64());
                self.cache.put(&q, &a.bytes, &a.facts, Instant::now());
                self.stats.forwarded.inc();
                if !tcp && a.bytes.len() > q.udp_limit() {
                    let mut t = Vec::new();
                    wire::truncated_answer(&mut t, packet, &q);
                    return Some(t);
                }
                Some(a.bytes)
            }
            None => {
                self.stats.servfail.inc();
                wire::error_answer(packet, wire::RCODE_SERVFAIL)
            }
        }
    }

    /// Answers one message the way a listener would; for tests and the
    /// fuzz target (which passes a front with no reachable upstream).
    pub async fn answer(&self, packet: &[u8], client: IpAddr, tcp: bool) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match self.step(packet, client, tcp, &mut out) {
            Step::Reply => Some(out),
            Step::Nothing => None,
            Step::Forward => match Front::forward_slot(self) {
                Some(_slot) => self.forward(packet, client, tcp).await,
                None => wire::error_answer(packet, wire::RCODE_SERVFAIL),
            },
        }
    }
}

/// The Extended DNS Error text: the indicator, and a structured error
/// (draft-ietf-dnsop-structured-dns-error) pointing at the warning page.
/// `name` is a question name as [`wire::dotted`] gives it (letters,
/// digits, `-`, `_`, `*`, dots), so it needs no escaping in JSON.
fn write_warning_text(out: &mut Vec<u8>, name: &[u8], indicator: Option<i64>, garden: bool) {
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"{\"c\":[\"http://");
    out.extend_from_slice(name);
    out.extend_from_slice(b"/\"],\"j\":\"");
    match (garden, indicator) {
        (true, _) => out.extend_from_slice(b"walled garden: this line has a security notice"),
        (false, Some(i)) => {
            out.extend_from_slice(b"listed by kanki, indicator ");
            out.extend_from_slice(number.format(i).as_bytes());
        }
        (false, None) => out.extend_from_slice(b"listed by kanki"),
    }
    out.extend_from_slice(b"\",\"o\":\"kanki\"");
    if let Some(i) = indicator {
        out.extend_from_slice(b",\"i\":");
        out.extend_from_slice(number.format(i).as_bytes());
    }
    out.push(b'}');
}

/// Runs the front on every `listen` address, UDP and TCP; fails at once if
/// one cannot be bound.
pub async fn run(front: Arc<Front>) -> io::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for &addr in &front.opts.listen.clone() {
        // One UDP socket per core on the same address (SO_REUSEPORT), each
        // with its own receive loop.
        for _ in 0..threads {
            let socket = Arc::new(bind_udp(addr)?);
            tokio::spawn(serve_udp(front.clone(), socket));
        }
        let listener = TcpListener::bind(addr).await?;
        tokio::spawn(serve_tcp(front.clone(), listener));
        tracing::info!(%addr, "DNS front listening (UDP, TCP)");
    }
    Ok(())
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

async fn serve_udp(front: Arc<Front>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    let mut reply = Vec::with_capacity(4096);
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS front: receive failed");
                continue;
            }
        };
        front.stats.udp.inc();
        let packet = &buf[..n];
        match front.step(packet, from.ip(), false, &mut reply) {
            Step::Reply => {
                let _ = socket.send_to(&reply, from).await;
            }
            Step::Nothing => {}
            Step::Forward => match Front::forward_slot(front.clone()) {
                Some(slot) => {
                    let (socket, packet) = (socket.clone(), packet.to_vec());
                    tokio::spawn(async move {
                        if let Some(r) = slot.0.forward(&packet, from.ip(), false).await {
                            let _ = socket.send_to(&r, from).await;
                        }
                    });
                }
                None => {
                    if let Some(r) = wire::error_answer(packet, wire::RCODE_SERVFAIL) {
                        let _ = socket.send_to(&r, from).await;
                    }
                }
            },
        }
    }
}

async fn serve_tcp(front: Arc<Front>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((conn, from)) => match front.tcp_slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(serve_tcp_connection(front.clone(), conn, from, permit));
                }
                Err(_) => {
                    // Full: closed at once, so a flood of idle connections
                    // cannot hold the front's memory or its descriptors.
                    front.stats.tcp_refused.inc();
                    drop(conn);
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "DNS front: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Messages on one connection, answered in turn; closed when a message
/// or an answer takes longer than `tcp_idle_timeout` to read or write, or
/// nothing comes for that long. Holds one of the `tcp_connections` slots.
async fn serve_tcp_connection(
    front: Arc<Front>,
    mut conn: TcpStream,
    from: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let idle = front.opts.tcp_idle_timeout;
    loop {
        let len = match tokio::time::timeout(idle, conn.read_u16()).await {
            Ok(Ok(l)) => l as usize,
            _ => return,
        };
        let mut packet = vec![0u8; len];
        if !matches!(
            tokio::time::timeout(idle, conn.read_exact(&mut packet)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        front.stats.tcp.inc();
        let Some(r) = front.answer(&packet, from.ip(), true).await else {
            continue;
        };
        let mut out = Vec::with_capacity(r.len() + 2);
        out.extend_from_slice(&(r.len() as u16).to_be_bytes());
        out.extend_from_slice(&r);
        if !matches!(
            tokio::time::timeout(idle, conn.write_all(&out)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_over_its_rate_is_limited_and_its_neighbours_are_not() {
        let l = RateLimiter::new(10);
        let t0 = Instant::now();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        // A burst of twice the rate, then nothing until tokens come back.
        assert_eq!((0..30).filter(|_| l.allow(a, t0)).count(), 20);
        // The same /24 shares the bucket; the next /24 has its own.
        assert!(!l.allow("198.51.100.200".parse().unwrap(), t0));
        assert!(l.allow("198.51.101.7".parse().unwrap(), t0));
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..30).filter(|_| l.allow(a, t1)).count(), 10);
        // IPv6: the /56 shares, the next /56 does not; a mapped IPv4
        // address is its IPv4 prefix.
        let v6: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!((0..30).filter(|_| l.allow(v6, t1)).count(), 20);
        assert!(!l.allow("2001:db8:0:ff::2".parse().unwrap(), t1));
        assert!(l.allow("2001:db8:0:100::1".parse().unwrap(), t1));
        assert!(!l.allow("::ffff:198.51.100.9".parse().unwrap(), t1));
        // A query timed a moment before the last one (another thread's
        // clock) is still limited.
        assert!(!l.allow(a, t1 - Duration::from_millis(5)));
        // Hours later (the time kept wraps round), a full burst again.
        let t2 = t0 + Duration::from_secs(6 * 3600);
        assert_eq!((0..30).filter(|_| l.allow(a, t2)).count(), 20);
    }
}
