//! The DNS front against a scripted upstream on loopback that misbehaves
//! as an attacker would make it: a referral to a recursion-less query, a
//! forged answer from another port and one for another question, an
//! upstream that never answers; and client TCP connections past the cap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use kanki_dns::front::{Decider, Decision, Front, FrontOptions, FrontStats, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

struct ForwardAll;

impl Decider for ForwardAll {
    fn decide(&self, _: IpAddr, _: &[u8]) -> Decision {
        Decision::Forward
    }
}

fn options(upstream: SocketAddr) -> FrontOptions {
    FrontOptions {
        listen: Vec::new(),
        upstreams: vec![upstream],
        upstream_timeout: Duration::from_secs(2),
        clients: vec![("127.0.0.0".parse().unwrap(), 8)],
        warning_v4: Ipv4Addr::LOCALHOST,
        warning_v6: "::1".parse().unwrap(),
        ttl: 60,
        ede_code: 17,
        cache_entries: 1000,
        rate_limit: 0,
        max_forwards: 100,
        upstream_ports: 4,
        tcp_connections: 10,
        tcp_idle_timeout: Duration::from_secs(10),
        query_log: None,
    }
}

fn query(id: u16, name: &str, rd: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// A response to `q` (its question as sent) with one A record, or with
/// one NS record in the authority section (a referral) when `a` is None.
fn response(q: &[u8], a: Option<[u8; 4]>) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80;
    r[3] |= 0x80;
    match a {
        Some(addr) => {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
            r.extend_from_slice(&addr);
        }
        None => {
            r[9] = 1;
            r.extend_from_slice(&[0, 0, 2, 0, 1, 0, 0, 1, 44, 0, 2, 0xc0, 12]);
        }
    }
    r
}

fn name_of(q: &[u8]) -> String {
    Message::from_vec(q).unwrap().queries[0].name.to_ascii()
}

fn answer_a(bytes: &[u8]) -> (ResponseCode, Vec<Ipv4Addr>) {
    let m = Message::from_vec(bytes).unwrap();
    let a = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    (m.metadata.response_code, a)
}

/// The scripted upstream: answers by name, counts what it received.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            count.fetch_add(1, SeqCst);
            let q = buf[..n].to_vec();
            let rd = q[2] & 1 != 0;
            match name_of(&q).as_str() {
                // A recursion-less query gets a referral, an ordinary one
                // the address.
                "rd.example." if !rd => {
                    socket.send_to(&response(&q, None), from).await.unwrap();
                }
                "rd.example." => {
                    socket
                        .send_to(&response(&q, Some([10, 0, 0, 1])), from)
                        .await
                        .unwrap();
                }
                // First a forged answer from another port (right id and
                // question), then one from the right port for another
                // question (AAAA), then the real one.
                "spoof.example." => {
                    let forged = response(&q, Some([6, 6, 6, 6]));
                    forger.send_to(&forged, from).await.unwrap();
                    let mut other = forged.clone();
                    let t = 12 + "spoof.example.".len() + 1;
                    other[t + 1] = 28;
                    socket.send_to(&other, from).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    socket
                        .send_to(&response(&q, Some([10, 0, 0, 2])), from)
                        .await
                        .unwrap();
                }
                // Never answered.
                "slow.example." => {}
                _ => {
                    socket
                        .send_to(&response(&q, Some([10, 0, 0, 9])), from)
                        .await
                        .unwrap();
                }
            }
        }
    });
    (addr, received)
}

async fn front(opts: FrontOptions) -> (Arc<Front>, Arc<FrontStats>) {
    let stats = Arc::new(FrontStats::default());
    let f = Front::new(opts, Arc::new(ForwardAll), stats.clone())
        .await
        .unwrap();
    (Arc::new(f), stats)
}

fn metric(stats: &FrontStats, name: &str) -> f64 {
    let mut r = prometheus_client::registry::Registry::with_prefix("kanki");
    stats.register(&mut r);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

#[tokio::test]
async fn a_referral_to_a_recursion_less_query_is_not_served_to_an_ordinary_one() {
    let (up, _) = upstream().await;
    let (f, _) = front(options(up)).await;
    // Client A asks without recursion: it gets the referral it asked for.
    let r = f
        .answer(&query(1, "rd.example.", false), A, false)
        .await
        .unwrap();
    assert_eq!(answer_a(&r), (ResponseCode::NoError, vec![]));
    // Client B asks normally: the address, not A's referral from a cache.
    let r = f
        .answer(&query(2, "rd.example.", true), B, false)
        .await
        .unwrap();
    assert_eq!(
        answer_a(&r),
        (ResponseCode::NoError, vec![Ipv4Addr::new(10, 0, 0, 1)])
    );
}

#[tokio::test]
async fn forged_answers_from_another_port_or_for_another_question_are_ignored() {
    let (up, received) = upstream().await;
    let (f, _) = front(options(up)).await;
    let r = f
        .answer(&query(7, "spoof.example.", true), A, false)
        .await
        .unwrap();
    assert_eq!(
        answer_a(&r),
        (ResponseCode::NoError, vec![Ipv4Addr::new(10, 0, 0, 2)])
    );
    assert_eq!(Message::from_vec(&r).unwrap().metadata.id, 7);
    assert_eq!(received.load(SeqCst), 1);
}

#[tokio::test]
async fn upstream_ports_are_random_and_rotate() {
    let (up, _) = upstream().await;
    let (f, _) = front(options(up)).await;
    let before = f.upstreams().ports(0);
    assert_eq!(before.len(), 4);
    let mut distinct = before.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{before:?}");
    assert!(before.iter().all(|&p| p >= 1024), "{before:?}");
    // Each query goes out on one of the four sockets; after 4 × 1024 at
    // least one socket has carried its share and moved to a fresh port.
    let n = 4 * upstream::QUERIES_PER_PORT as usize;
    for i in 0..n {
        let r = f
            .answer(&query(i as u16, &format!("n{i}.example."), true), A, false)
            .await
            .unwrap();
        assert_eq!(answer_a(&r).1, [Ipv4Addr::new(10, 0, 0, 9)]);
    }
    let after = f.upstreams().ports(0);
    assert!(
        after.iter().any(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );
}

#[tokio::test]
async fn forwards_past_the_cap_are_answered_servfail_and_counted() {
    let (up, received) = upstream().await;
    let mut o = options(up);
    o.max_forwards = 2;
    let (f, stats) = front(o).await;
    let mut waiting = Vec::new();
    for i in 0..2 {
        let f = f.clone();
        waiting.push(tokio::spawn(async move {
            f.answer(&query(i, "slow.example.", true), A, false).await
        }));
    }
    while received.load(SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = f
        .answer(&query(9, "clean.example.", true), B, false)
        .await
        .unwrap();
    assert_eq!(answer_a(&r), (ResponseCode::ServFail, vec![]));
    assert_eq!(received.load(SeqCst), 2, "the third query was forwarded");
    assert_eq!(metric(&stats, "kanki_dns_forward_overflow_total"), 1.0);
    // Once the two time out (SERVFAIL), forwarding works again.
    for w in waiting {
        let r = w.await.unwrap().unwrap();
        assert_eq!(answer_a(&r).0, ResponseCode::ServFail);
    }
    let r = f
        .answer(&query(10, "clean.example.", true), B, false)
        .await
        .unwrap();
    assert_eq!(answer_a(&r).1, [Ipv4Addr::new(10, 0, 0, 9)]);
}

/// One query over TCP, its answer.
async fn ask(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let q = query(5, "a.example.", true);
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    c.write_all(&out).await?;
    let len = c.read_u16().await?;
    let mut b = vec![0; len as usize];
    c.read_exact(&mut b).await?;
    Ok(b)
}

#[tokio::test]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    let (up, _) = upstream().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut o = options(up);
    o.listen = vec![port];
    o.tcp_connections = 2;
    o.tcp_idle_timeout = Duration::from_millis(300);
    // 127.0.0.1 is not a client: its queries are REFUSED without an
    // upstream, which shows a connection is served.
    o.clients = vec![("127.0.0.2".parse().unwrap(), 32)];
    let (f, stats) = front(o).await;
    kanki_dns::front::run(f.clone()).await.unwrap();
    let mut one = TcpStream::connect(port).await.unwrap();
    let mut two = TcpStream::connect(port).await.unwrap();
    let r = ask(&mut one).await.unwrap();
    assert_eq!(answer_a(&r).0, ResponseCode::Refused);
    ask(&mut two).await.unwrap();
    // A third while both are open: closed at once, and counted.
    let mut three = TcpStream::connect(port).await.unwrap();
    assert!(ask(&mut three).await.is_err());
    assert_eq!(metric(&stats, "kanki_dns_tcp_refused_total"), 1.0);
    // Left idle, the two are closed by the front (a read sees the end)...
    let mut b = [0u8; 1];
    for c in [&mut one, &mut two] {
        let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut b))
            .await
            .expect("an idle connection left open");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    // ...and their slots are free again.
    let mut four = TcpStream::connect(port).await.unwrap();
    let mut served = false;
    for _ in 0..50 {
        if ask(&mut four).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        four = TcpStream::connect(port).await.unwrap();
    }
    assert!(served, "no connection served after the idle ones closed");
}
