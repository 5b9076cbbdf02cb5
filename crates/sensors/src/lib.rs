//! kanki's own low-interaction sensor: TCP listeners on configured ports
//! (e.g. 23, 2323, 445, 8080) that record each connection's source address
//! and port, its first bytes and their SHA-256, and the credentials a
//! telnet-style login or an HTTP Basic header offers; on SSH ports, the
//! client's identification line and the HASSH of its key-exchange offer
//! ([`observe_ssh`]). It only ever accepts: it never connects out. Each
//! source is rate-limited, connections are capped and time out, and
//! whatever arrives is only parsed by [`observe`] and [`observe_ssh`],
//! which cannot fail.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kanki_events::Event;
use md5::Md5;
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
    clip_to(s, 128)
}

fn clip_to(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// What the sensor says on an SSH port: an OpenSSH server's identification
/// (RFC 4253 §4.2), as bots expect.
pub const SSH_SERVER_ID: &[u8] = b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10\r\n";

/// What an SSH client shows before anything is encrypted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshClient {
    /// Its identification line (`SSH-2.0-libssh2_1.10.0`, ...).
    pub banner: Option<String>,
    /// HASSH: the MD5 of the key-exchange, encryption, MAC and compression
    /// algorithms (client to server) it offers, `;`-separated: a
    /// fingerprint of the client software.
    pub hassh: Option<String>,
    /// The string HASSH is taken of.
    pub hassh_algorithms: Option<String>,
}

/// Reads an SSH client's identification line and its first binary packet,
/// SSH_MSG_KEXINIT (RFC 4253 §6, §7.1). The user name and password come
/// only after the key exchange, encrypted: a low-interaction sensor cannot
/// see them. Never fails.
pub fn observe_ssh(bytes: &[u8]) -> SshClient {
    let mut out = SshClient::default();
    // Lines before the identification are allowed (§4.2); at most a few.
    let mut rest = bytes;
    for _ in 0..8 {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return out;
        };
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        if line.starts_with(b"SSH-") {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.banner = Some(clip_to(&String::from_utf8_lossy(line), 255));
            break;
        }
    }
    if out.banner.is_none() {
        return out;
    }
    if let Some(lists) = kexinit_lists(rest) {
        let algorithms = format!("{};{};{};{}", lists[0], lists[2], lists[4], lists[6]);
        out.hassh = Some(hex::encode(Md5::digest(algorithms.as_bytes())));
        out.hassh_algorithms = Some(clip_to(&algorithms, 4096));
    }
    out
}

/// The ten name-lists of an unencrypted SSH_MSG_KEXINIT packet.
fn kexinit_lists(packet: &[u8]) -> Option<Vec<String>> {
    const SSH_MSG_KEXINIT: u8 = 20;
    let length = u32::from_be_bytes(packet.get(..4)?.try_into().ok()?) as usize;
    let padding = *packet.get(4)? as usize;
    let payload = packet.get(5..4usize.checked_add(length)?)?;
    let payload = payload.get(..payload.len().checked_sub(padding)?)?;
    if *payload.first()? != SSH_MSG_KEXINIT {
        return None;
    }
    // The message number and a 16-byte cookie, then the lists.
    let mut p = payload.get(17..)?;
    let mut lists = Vec::with_capacity(10);
    for _ in 0..10 {
        let n = u32::from_be_bytes(p.get(..4)?.try_into().ok()?) as usize;
        let list = p.get(4..4usize.checked_add(n)?)?;
        lists.push(String::from_utf8_lossy(list).into_owned());
        p = &p[4 + n..];
    }
    Some(lists)
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
    /// Ports where it plays an SSH server up to the key exchange.
    pub ssh_ports: Vec<u16>,
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

/// Bytes read on an SSH port at most, whatever `first_bytes` says: enough
/// for a client's identification and key-exchange offer.
const SSH_READ_MAX: usize = 8192;

async fn handle(mut s: TcpStream, peer: SocketAddr, o: &SensorOptions) -> Option<Event> {
    let local = s.local_addr().ok()?;
    let telnet = o.telnet_ports.contains(&local.port());
    let ssh = !telnet && o.ssh_ports.contains(&local.port());
    let limit = if ssh {
        o.first_bytes.max(SSH_READ_MAX)
    } else {
        o.first_bytes
    };
    let at = chrono::Utc::now();
    let mut buf = Vec::with_capacity(limit.min(4096));
    let deadline = tokio::time::Instant::now() + o.timeout;
    let mut chunk = [0u8; 1024];
    if telnet {
        let _ = s.write_all(b"\r\nlogin: ").await;
    }
    if ssh {
        let _ = s.write_all(SSH_SERVER_ID).await;
    }
    let mut lines_wanted = if telnet { 2 } else { 0 };
    while buf.len() < limit {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        let take = n.min(limit - buf.len());
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
        // The client's key-exchange offer is all an SSH port waits for.
        if ssh && observe_ssh(&buf).hassh.is_some() {
            break;
        }
        if !telnet && !ssh && buf.windows(4).any(|w| w == b"\r\n\r\n") {
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
    e.identifier = Some(
        if telnet {
            "telnet"
        } else if ssh {
            "ssh"
        } else {
            "tcp"
        }
        .into(),
    );
    e.extra
        .insert("extra.payload_sha256".into(), digest.clone());
    let ssh_seen = if ssh {
        observe_ssh(&buf)
    } else {
        SshClient::default()
    };
    if let Some(b) = &ssh_seen.banner {
        e.extra.insert("extra.ssh_client".into(), b.clone());
    }
    if let Some(h) = &ssh_seen.hassh {
        e.extra.insert("extra.hassh".into(), h.clone());
    }
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
        "ssh_client": ssh_seen.banner,
        "hassh": ssh_seen.hassh,
        "hassh_algorithms": ssh_seen.hassh_algorithms,
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

    /// An SSH client's first bytes: its identification and a KEXINIT.
    fn ssh_client_hello(lists: [&str; 10]) -> Vec<u8> {
        let mut payload = vec![20u8];
        payload.extend_from_slice(&[7u8; 16]);
        for l in lists {
            payload.extend_from_slice(&(l.len() as u32).to_be_bytes());
            payload.extend_from_slice(l.as_bytes());
        }
        payload.extend_from_slice(&[0, 0, 0, 0, 0]); // first_kex_packet_follows, reserved
        let padding = 8 - (payload.len() + 5) % 8 + 4;
        let mut out = b"SSH-2.0-Go\r\n".to_vec();
        out.extend_from_slice(&((payload.len() + padding + 1) as u32).to_be_bytes());
        out.push(padding as u8);
        out.extend_from_slice(&payload);
        out.extend(std::iter::repeat_n(0u8, padding));
        out
    }

    #[test]
    fn an_ssh_client_s_banner_and_hassh() {
        let lists = [
            "curve25519-sha256,ecdh-sha2-nistp256",
            "ssh-ed25519",
            "aes128-gcm@openssh.com,aes128-ctr",
            "aes128-gcm@openssh.com,aes128-ctr",
            "hmac-sha2-256",
            "hmac-sha2-256",
            "none",
            "none",
            "",
            "",
        ];
        let o = observe_ssh(&ssh_client_hello(lists));
        assert_eq!(o.banner.as_deref(), Some("SSH-2.0-Go"));
        let algorithms = "curve25519-sha256,ecdh-sha2-nistp256;aes128-gcm@openssh.com,aes128-ctr;hmac-sha2-256;none";
        assert_eq!(o.hassh_algorithms.as_deref(), Some(algorithms));
        assert_eq!(
            o.hassh,
            Some(hex::encode(Md5::digest(algorithms.as_bytes())))
        );
        // Cut short, or not SSH at all: what there is, no more.
        let hello = ssh_client_hello(lists);
        let o = observe_ssh(&hello[..40]);
        assert_eq!((o.banner.is_some(), o.hassh), (true, None));
        assert_eq!(observe_ssh(b"GET / HTTP/1.1\r\n\r\n"), SshClient::default());
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
            ssh_ports: vec![22],
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
