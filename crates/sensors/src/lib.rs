//! kanki's own low-interaction sensor: TCP listeners on configured ports
//! (e.g. 23, 2323, 445, 8080) that record each connection's source address
//! and port, its first bytes and their SHA-256, and the credentials a
//! telnet-style login or an HTTP Basic header offers. It only ever accepts:
//! it never connects out. Each source is rate-limited, connections are
//! capped and time out, and whatever arrives is only parsed by
//! [`observe`], which cannot fail.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kanki_events::Event;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// Connections handled at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 512;

/// What was read from a connection, as far as it can be understood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub username: Option<String>,
    pub password: Option<String>,
    /// The first line of text (an HTTP request line, a shell command).
    pub first_line: Option<String>,
}

/// Understands what a client sent: telnet option negotiation is dropped,
/// the first two lines of a telnet login are the user name and password,
/// an HTTP request's `Authorization: Basic` header gives both. Never fails.
pub fn observe(bytes: &[u8], telnet: bool) -> Observed {
    let text = strip_telnet(bytes);
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .split(['\n', '\r', '\0'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut o = Observed {
        first_line: lines.first().map(|l| clip(l)),
        ..Default::default()
    };
    if telnet {
        o.username = lines.first().map(|l| clip(l));
        o.password = lines.get(1).map(|l| clip(l));
        return o;
    }
    for l in &lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("authorization") {
            continue;
        }
        let value = value.trim();
        let Some(b64) = value
            .get(..6)
            .filter(|p| p.eq_ignore_ascii_case("basic "))
            .map(|_| value[6..].trim())
        else {
            continue;
        };
        if let Ok(raw) = data_encoding::BASE64.decode(b64.as_bytes()) {
            let cred = String::from_utf8_lossy(&raw).into_owned();
            let (u, p) = cred.split_once(':').unwrap_or((&cred, ""));
            o.username = Some(clip(u));
            o.password = Some(clip(p));
        }
    }
    o
}

fn clip(s: &str) -> String {
    s.chars().take(128).collect()
}

/// Drops telnet commands (IAC ... sequences) from a byte stream.
fn strip_telnet(b: &[u8]) -> Vec<u8> {
    const IAC: u8 = 255;
    const SB: u8 = 250;
    const SE: u8 = 240;
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != IAC {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            Some(&SB) => {
                // Subnegotiation: up to IAC SE.
                i += 2;
                while i < b.len() && !(b[i] == IAC && b.get(i + 1) == Some(&SE)) {
                    i += 1;
                }
                i += 2;
            }
            Some(251..=254) => i += 3, // WILL, WONT, DO, DONT + option
            Some(_) => i += 2,
            None => i += 1,
        }
    }
    out
}

/// The sensor's settings.
#[derive(Clone, Debug)]
pub struct SensorOptions {
    pub first_bytes: usize,
    pub timeout: Duration,
    pub per_source_per_minute: u32,
    /// Ports where the sensor plays a telnet login (bots wait for the prompt).
    pub telnet_ports: Vec<u16>,
}

/// Counters for `/metrics` and the logs.
#[derive(Debug, Default)]
pub struct SensorCounters {
    pub connections: AtomicU64,
    pub recorded: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// Per-source admission: at most `limit` connections a minute.
struct RateLimit {
    limit: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimit {
    fn admit(&self, ip: IpAddr) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if seen.len() > 100_000 {
            seen.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let e = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= self.limit
    }
}

/// Binds every address (failing on the first that cannot be bound).
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(TcpListener::bind(a).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("sensor cannot listen on {a}: {e}"))
        })?);
    }
    Ok(out)
}

/// Serves the listeners until the task is dropped, sending one event per
/// recorded connection to `events`.
pub async fn run(
    listeners: Vec<TcpListener>,
    opts: SensorOptions,
    events: mpsc::Sender<Event>,
    counters: Arc<SensorCounters>,
) {
    let limit = Arc::new(RateLimit {
        limit: opts.per_source_per_minute,
        seen: Mutex::new(HashMap::new()),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        let (opts, events, counters, limit, slots) = (
            opts.clone(),
            events.clone(),
            counters.clone(),
            limit.clone(),
            slots.clone(),
        );
        tasks.spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match l.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "sensor accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                if !limit.admit(peer.ip()) {
                    counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                    continue; // dropped: closed at once
                }
                let (opts, events, counters) = (opts.clone(), events.clone(), counters.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Some(e) = handle(stream, peer, &opts).await
                        && events.send(e).await.is_ok()
                    {
                        counters.recorded.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn handle(mut s: TcpStream, peer: SocketAddr, o: &SensorOptions) -> Option<Event> {
    let local = s.local_addr().ok()?;
    let telnet = o.telnet_ports.contains(&local.port());
    let at = chrono::Utc::now();
    let mut buf = Vec::with_capacity(o.first_bytes.min(4096));
    let deadline = tokio::time::Instant::now() + o.timeout;
    let mut chunk = [0u8; 1024];
    if telnet {
        let _ = s.write_all(b"\r\nlogin: ").await;
    }
    let mut lines_wanted = if telnet { 2 } else { 0 };
    while buf.len() < o.first_bytes {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        let take = n.min(o.first_bytes - buf.len());
        buf.extend_from_slice(&chunk[..take]);
        if telnet && lines_wanted > 0 && chunk[..n].contains(&b'\n') {
            lines_wanted -= 1;
            let _ = s
                .write_all(if lines_wanted == 1 {
                    b"Password: "
                } else {
                    b"\r\n$ "
                })
                .await;
            if lines_wanted == 0 {
                // Keep what the bot types next (its first command).
                continue;
            }
        }
        if !telnet && (buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= o.first_bytes) {
            break;
        }
    }
    let _ = s.shutdown().await;
    let seen = observe(&buf, telnet);
    let digest = hex::encode(Sha256::digest(&buf));
    let class = if seen.username.is_some() {
        ("intrusion-attempts", "brute-force")
    } else {
        ("information-gathering", "scanner")
    };
    let mut e = Event::new(peer.ip(), at, class.0, class.1, "kanki-sensor", "kanki");
    e.source_port = Some(peer.port());
    e.destination_ip = Some(local.ip());
    e.destination_port = Some(local.port());
    e.transport = Some("tcp".into());
    e.identifier = Some(if telnet { "telnet" } else { "tcp" }.into());
    e.extra
        .insert("extra.payload_sha256".into(), digest.clone());
    if let Some(u) = &seen.username {
        e.extra.insert("destination.account".into(), u.clone());
    }
    if let Some(p) = &seen.password {
        e.extra.insert("extra.password".into(), p.clone());
    }
    e.raw = serde_json::json!({
        "time": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "src": peer.to_string(),
        "dst": local.to_string(),
        "first_bytes": data_encoding::BASE64.encode(&buf),
        "sha256": digest,
        "username": seen.username,
        "password": seen.password,
        "first_line": seen.first_line,
    })
    .to_string()
    .into_bytes();
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telnet_login_and_http_basic() {
        let o = observe(b"\xff\xfb\x01\xff\xfd\x03root\r\nxc3511\r\nsh\r\n", true);
        assert_eq!(o.username.as_deref(), Some("root"));
        assert_eq!(o.password.as_deref(), Some("xc3511"));
        let o = observe(
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n",
            false,
        );
        assert_eq!(o.first_line.as_deref(), Some("GET / HTTP/1.1"));
        assert_eq!(
            (o.username.as_deref(), o.password.as_deref()),
            (Some("admin"), Some("admin"))
        );
        assert_eq!(observe(b"\xff", true), Observed::default());
    }

    #[tokio::test]
    async fn a_bot_logging_in_is_recorded_and_a_flood_is_limited() {
        let ls = bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
        let addr = ls[0].local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let counters = Arc::new(SensorCounters::default());
        let opts = SensorOptions {
            first_bytes: 256,
            timeout: Duration::from_secs(2),
            per_source_per_minute: 2,
            telnet_ports: vec![23, 2323],
        };
        tokio::spawn(run(ls, opts, tx, counters.clone()));
        for _ in 0..3 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(
                b"GET /shell?cd+/tmp HTTP/1.1\r\nAuthorization: Basic cm9vdDp2aXp4dg==\r\n\r\n",
            )
            .await
            .unwrap();
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink).await;
        }
        let e = rx.recv().await.unwrap();
        assert_eq!(e.source_ip.to_string(), "127.0.0.1");
        assert_eq!(e.destination_port, Some(addr.port()));
        assert_eq!(e.class, "brute-force");
        assert_eq!(e.extra["destination.account"], "root");
        assert_eq!(e.extra["extra.password"], "vizxv");
        assert_eq!(e.extra["extra.payload_sha256"].len(), 64);
        assert!(rx.recv().await.is_some());
        assert_eq!(counters.rate_limited.load(Ordering::Relaxed), 1);
    }
}
