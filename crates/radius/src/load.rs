//! A load generator for an accounting server, and an in-memory sink, for
//! benchmarks.
//!
//! [`run`] plays many NASes' worth of traffic from one host: it keeps
//! `window` Accounting-Requests outstanding (over `ceil(window / 256)`
//! sockets, since an Identifier is one octet per source port), checks
//! every Accounting-Response's authenticator, and counts a request with no
//! answer within `timeout` as lost. Requests cycle Start, Interim-Update,
//! Stop over distinct sessions, each with User-Name, NAS-IP-Address,
//! Acct-Session-Id, Framed-IP-Address, Delegated-IPv6-Prefix, Class and
//! Event-Timestamp, like a broadband NAS's.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;
use kanki_directory::{BindingEvent, SessionEvent, SessionPhase};
use tokio::net::UdpSocket;

use crate::attr;
use crate::packet::{Packet, PacketWriter, code};
use crate::server::{AccountingSink, Counters, NasConfig, Server, ServerConfig};

/// What to send, where.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: SocketAddr,
    pub secret: Vec<u8>,
    /// Requests to send in all.
    pub requests: u64,
    /// Requests outstanding at once.
    pub window: usize,
    /// How long to wait for an answer before counting a request lost.
    pub timeout: Duration,
    /// Requests per second to send at most, spread evenly (a NAS fleet's
    /// steady feed); `None` sends as fast as the window allows.
    pub rate: Option<u64>,
}

/// What came back.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub sent: u64,
    /// Responses that matched an outstanding request and verified.
    pub answered: u64,
    /// Requests with no answer within the timeout.
    pub lost: u64,
    /// Datagrams that were no valid answer to an outstanding request.
    pub bad_responses: u64,
    /// From the first request sent to the last answer (or timeout).
    pub elapsed: Duration,
    /// Latency of the answered requests.
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
}

impl LoadReport {
    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What [`bench()`] measured: the generator's report and the server's
/// counters after it stopped.
#[derive(Debug)]
pub struct BenchReport {
    pub load: LoadReport,
    pub server: Arc<Counters>,
}

/// Starts an accounting server on 127.0.0.1 (an ephemeral port, its own
/// two-worker runtime) in front of `sink`, runs the generator beside it on
/// its own thread and single-threaded runtime, then stops the server
/// (which applies and answers what it still holds).
///
/// Blocking: call it from outside any runtime (or in `spawn_blocking`).
pub fn bench(
    sink: Arc<dyn AccountingSink>,
    requests: u64,
    window: usize,
) -> io::Result<BenchReport> {
    bench_at_rate(sink, requests, window, None)
}

/// [`bench`], sending at most `rate` requests per second.
pub fn bench_at_rate(
    sink: Arc<dyn AccountingSink>,
    requests: u64,
    window: usize,
    rate: Option<u64>,
) -> io::Result<BenchReport> {
    const SECRET: &str = "bench-secret";
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("radius-server")
        .enable_all()
        .build()?;
    // The generator's requests name NASes 192.0.2.1 to .16 (see
    // `request`), all sent from 127.0.0.1.
    let nas = NasConfig::new("127.0.0.1", SECRET)
        .and_then(|n| n.claiming(&["192.0.2.0/27"], &[] as &[&str]))
        .map_err(io::Error::other)?;
    let config = ServerConfig::new((Ipv4Addr::LOCALHOST, 0).into(), vec![nas]);
    let server = server_rt.block_on(Server::bind(config))?;
    let target = server.local_addr()?;
    let counters = server.counters();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(server.run(sink, async move {
        let _ = stopped.await;
    }));
    let config = LoadConfig {
        target,
        secret: SECRET.into(),
        requests,
        window,
        timeout: Duration::from_secs(2),
        rate,
    };
    let load = std::thread::Builder::new()
        .name("radius-load".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(run(&config))
        })?
        .join()
        .map_err(|_| io::Error::other("the load generator panicked"))?;
    let _ = stop.send(());
    server_rt.block_on(serving).map_err(io::Error::other)??;
    Ok(BenchReport {
        load: load?,
        server: counters,
    })
}

/// Sends `config.requests` Accounting-Requests to `config.target` and
/// waits for their answers.
pub async fn run(config: &LoadConfig) -> io::Result<LoadReport> {
    let window = config.window.max(1);
    let sockets = window.div_ceil(256);
    let per_socket = window.div_ceil(sockets);
    let remaining = Arc::new(AtomicU64::new(config.requests));
    let next_seq = Arc::new(AtomicU64::new(0));
    let bind: SocketAddr = if config.target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let socket = crate::server::bind_udp(bind, 1 << 20)?;
        socket.connect(config.target).await?;
        let worker = Worker {
            socket,
            secret: config.secret.clone(),
            slots: per_socket.min(256),
            timeout: config.timeout,
            remaining: remaining.clone(),
            next_seq: next_seq.clone(),
            pace: config.rate.map(|r| (start, r.max(1) as f64)),
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    for t in tasks {
        let w = t.await.map_err(io::Error::other)??;
        report.sent += w.sent;
        report.answered += w.answered;
        report.lost += w.lost;
        report.bad_responses += w.bad;
        latencies.extend(w.latencies_us);
    }
    report.elapsed = start.elapsed();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(Duration::ZERO, |&us| Duration::from_micros(u64::from(us)))
    };
    report.latency_p50 = pick(0.5);
    report.latency_p99 = pick(0.99);
    report.latency_max = pick(1.0);
    Ok(report)
}

struct Worker {
    socket: UdpSocket,
    secret: Vec<u8>,
    slots: usize,
    timeout: Duration,
    remaining: Arc<AtomicU64>,
    next_seq: Arc<AtomicU64>,
    /// When sending began and the requests per second all workers share.
    pace: Option<(Instant, f64)>,
}

/// The longest a paced worker waits before looking whether it may send.
const PACE_TICK: Duration = Duration::from_millis(1);

#[derive(Default)]
struct WorkerReport {
    sent: u64,
    answered: u64,
    lost: u64,
    bad: u64,
    latencies_us: Vec<u32>,
}

struct Outstanding {
    sent_at: Instant,
    authenticator: [u8; 16],
}

impl Worker {
    async fn run(self) -> io::Result<WorkerReport> {
        let mut r = WorkerReport::default();
        let mut slots: Vec<Option<Outstanding>> = (0..self.slots).map(|_| None).collect();
        let mut free: Vec<u8> = (0..self.slots as u16).rev().map(|i| i as u8).collect();
        let mut outstanding = 0usize;
        let mut buf = vec![0u8; 4096];
        let mut last_scan = Instant::now();
        loop {
            while let Some(&id) = free.last() {
                if !self.may_send() || !claim(&self.remaining) {
                    break;
                }
                free.pop();
                let seq = self.next_seq.fetch_add(1, Relaxed);
                let request = build_request(seq, id, &self.secret);
                let mut authenticator = [0; 16];
                authenticator.copy_from_slice(&request[4..20]);
                self.socket.send(&request).await?;
                slots[usize::from(id)] = Some(Outstanding {
                    sent_at: Instant::now(),
                    authenticator,
                });
                outstanding += 1;
                r.sent += 1;
            }
            if outstanding == 0 && self.remaining.load(Relaxed) == 0 {
                return Ok(r);
            }
            // Take every answer already there, then send again; wait only
            // when nothing came.
            let mut got = 0;
            loop {
                match self.socket.try_recv(&mut buf) {
                    Ok(n) => {
                        got += 1;
                        let ok = Packet::parse(&buf[..n]).ok().and_then(|p| {
                            let id = p.identifier();
                            let o = slots.get(usize::from(id))?.as_ref()?;
                            (p.code() == code::ACCOUNTING_RESPONSE
                                && p.verify_accounting_response(&o.authenticator, &self.secret))
                            .then_some((id, o.sent_at))
                        });
                        match ok {
                            Some((id, sent_at)) => {
                                slots[usize::from(id)] = None;
                                free.push(id);
                                outstanding -= 1;
                                r.answered += 1;
                                let us = sent_at.elapsed().as_micros().min(u128::from(u32::MAX));
                                r.latencies_us.push(us as u32);
                            }
                            None => r.bad += 1,
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // Loopback ICMP "port unreachable" while the server is
                    // not up: the requests will time out.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e),
                }
            }
            let mut timed_out = false;
            if got == 0 {
                // Paced, with a slot free: wake soon to send the next.
                let wait = match self.pace {
                    Some(_) if !free.is_empty() => PACE_TICK,
                    _ => self.timeout,
                };
                match tokio::time::timeout(wait, self.socket.readable()).await {
                    Ok(r) => r?,
                    Err(_) => timed_out = wait == self.timeout,
                }
            }
            // Requests past their timeout are lost; their ids are free
            // again. Looked for now and then, not after every answer.
            let now = Instant::now();
            if timed_out || now.duration_since(last_scan) >= self.timeout / 4 {
                last_scan = now;
                for (id, slot) in slots.iter_mut().enumerate() {
                    if slot
                        .as_ref()
                        .is_some_and(|o| now.duration_since(o.sent_at) >= self.timeout)
                    {
                        *slot = None;
                        free.push(id as u8);
                        outstanding -= 1;
                        r.lost += 1;
                    }
                }
            }
        }
    }
}

impl Worker {
    /// Whether the next request is due (always, unpaced): request `n` is
    /// due `n / rate` seconds after sending began.
    fn may_send(&self) -> bool {
        self.pace.is_none_or(|(start, rate)| {
            self.next_seq.load(Relaxed) as f64 <= start.elapsed().as_secs_f64() * rate
        })
    }
}

fn claim(remaining: &AtomicU64) -> bool {
    remaining
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Request `seq`: session `seq / 3`, in phase Start, Interim-Update or Stop.
fn build_request(seq: u64, identifier: u8, secret: &[u8]) -> Vec<u8> {
    let session = seq / 3;
    let status = [1u32, 3, 2][(seq % 3) as usize];
    let s = session as u32;
    let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, identifier);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    // Every value here fits its attribute; the results are ignored only
    // to keep the generator free of unwraps.
    let _ = w.u32(attr::ACCT_STATUS_TYPE, status);
    let _ = w.attribute(
        attr::USER_NAME,
        format!("sub{session:08}@isp.example").as_bytes(),
    );
    let _ = w.attribute(attr::NAS_IP_ADDRESS, &[192, 0, 2, (s % 16) as u8 + 1]);
    let _ = w.attribute(attr::ACCT_SESSION_ID, format!("{session:016X}").as_bytes());
    let _ = w.attribute(
        attr::FRAMED_IP_ADDRESS,
        &Ipv4Addr::from(0x6440_0000 | (s & 0x3f_ffff)).octets(),
    );
    let delegated = Ipv6Net::new(
        Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | (u128::from(s) << 72)),
        56,
    );
    if let Ok(net) = delegated {
        let _ = w.ipv6_prefix(attr::DELEGATED_IPV6_PREFIX, net);
    }
    let _ = w.attribute(attr::CLASS, &session.to_be_bytes());
    // As a NAS reports a session: the Interim-Update 300 s after the Start
    // and the Stop 300 s later, each with its Acct-Session-Time, so all
    // three date the same start (sent at once, so dated in the past).
    let _ = w.u32(
        attr::EVENT_TIMESTAMP,
        now.saturating_sub(600) + 300 * (seq % 3) as u32,
    );
    let _ = w.u32(attr::ACCT_DELAY_TIME, 0);
    if status != 1 {
        let _ = w.u32(attr::ACCT_SESSION_TIME, 300 * (seq % 3) as u32);
    }
    w.finish_accounting_request(secret)
}

/// A sink that keeps open sessions in memory, as a directory would: a
/// Start or Interim-Update records the session, a Stop removes it, a NAS
/// reset removes the NAS's sessions. Stands in for a store in benchmarks.
#[derive(Debug, Default)]
pub struct MemorySink {
    sessions: Mutex<HashMap<(String, String), SessionEvent>>,
    events: AtomicU64,
}

impl MemorySink {
    /// Events applied so far.
    pub fn events(&self) -> u64 {
        self.events.load(Relaxed)
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }
}

impl AccountingSink for MemorySink {
    fn apply(&self, events: Vec<BindingEvent>) -> Result<(), String> {
        let n = events.len() as u64;
        let mut sessions = self.sessions.lock().map_err(|e| e.to_string())?;
        for e in events {
            match e {
                BindingEvent::Session(s) => {
                    let key = (s.nas.clone(), s.session_id.clone());
                    if s.phase == SessionPhase::Stop {
                        sessions.remove(&key);
                    } else {
                        sessions.insert(key, s);
                    }
                }
                BindingEvent::NasReset { nas, .. } => sessions.retain(|(n, _), _| *n != nas),
                BindingEvent::Binding(_) => {}
            }
        }
        self.events.fetch_add(n, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AccountingRequest;

    #[test]
    fn generated_requests_decode() {
        for seq in 0..6 {
            let b = build_request(seq, seq as u8, b"s");
            let p = Packet::parse(&b).unwrap();
            assert!(p.verify_accounting_request(b"s"));
            let r = AccountingRequest::decode(&p).unwrap();
            assert_eq!(r.session_id.unwrap(), format!("{:016X}", seq / 3));
            assert_eq!(r.delegated_ipv6_prefixes.len(), 1);
        }
    }
}
