//! The accounting server against its real peer, FreeRADIUS's `radclient`
//! (Debian package `freeradius-utils`), on loopback.
//!
//! These tests need `radclient`; without it they fail, by design.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::DateTime;
use ipnet::IpNet;
use kanki_directory::{BindingEvent, SessionEvent, SessionPhase, Subject};
use kanki_radius::server::{AccountingSink, Counters, DropReason, NasConfig, Server, ServerConfig};
use kanki_radius::{AccountingRequest, Packet, PacketWriter, attr, packet::code};
use tokio::sync::oneshot;

const SECRET: &str = "testing123";

fn radclient() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let p = Path::new(dir).join("radclient");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "radclient not found: these tests send real packets with FreeRADIUS's radclient; \
         install it with `apt-get install freeradius-utils` (scripts/test.sh does)"
    );
}

/// Records what it is given; can be told to fail or to be slow.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<BindingEvent>>,
    applies: AtomicUsize,
    fail: AtomicBool,
    /// Milliseconds the next apply sleeps before storing.
    slow_once_ms: AtomicUsize,
}

impl AccountingSink for Recorder {
    fn apply(&self, events: Vec<BindingEvent>) -> Result<(), String> {
        self.applies.fetch_add(1, SeqCst);
        let ms = self.slow_once_ms.swap(0, SeqCst);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms as u64));
        }
        if self.fail.load(SeqCst) {
            return Err("the store is down".into());
        }
        self.events.lock().unwrap().extend(events);
        Ok(())
    }
}

impl Recorder {
    fn events(&self) -> Vec<BindingEvent> {
        self.events.lock().unwrap().clone()
    }
}

struct Running {
    addr: SocketAddr,
    counters: Arc<Counters>,
    sink: Arc<Recorder>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(nas: &str) -> Running {
        Running::start_on("127.0.0.1:0", nas).await
    }

    async fn start_on(listen: &str, nas: &str) -> Running {
        Running::start_with(ServerConfig::new(
            listen.parse().unwrap(),
            vec![NasConfig::new(nas, SECRET).unwrap()],
        ))
        .await
    }

    async fn start_with(config: ServerConfig) -> Running {
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let counters = server.counters();
        let sink = Arc::new(Recorder::default());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(sink.clone(), async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            counters,
            sink,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    fn dropped(&self, r: DropReason) -> u64 {
        self.counters.dropped(r)
    }
}

struct Reply {
    answered: bool,
    output: String,
}

/// Sends one Accounting-Request with radclient; `tries` sends in all,
/// `timeout` seconds each.
async fn radclient_send(
    addr: SocketAddr,
    secret: &str,
    attrs: &str,
    tries: u32,
    timeout: f64,
) -> Reply {
    let bin = radclient();
    let (addr, secret, attrs) = (addr.to_string(), secret.to_string(), attrs.to_string());
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(bin)
            .args([
                "-x",
                "-r",
                &tries.to_string(),
                "-t",
                &timeout.to_string(),
                &addr,
                "acct",
                &secret,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run radclient");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(attrs.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Reply {
            answered: out.status.success() && output.contains("Received Accounting-Response"),
            output,
        }
    })
    .await
    .unwrap()
}

/// A counter's value once it reaches `want`, or after 2 s. Answers are
/// counted after they are sent, so a client can read its answer a moment
/// before the count moves.
async fn settled(counter: &std::sync::atomic::AtomicU64, want: u64) -> u64 {
    for _ in 0..200 {
        if counter.load(SeqCst) == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    counter.load(SeqCst)
}

fn session(e: &BindingEvent) -> &SessionEvent {
    match e {
        BindingEvent::Session(s) => s,
        other => panic!("not a session event: {other:?}"),
    }
}

fn nets(s: &[&str]) -> Vec<IpNet> {
    s.iter().map(|s| s.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_interim_stop_and_nas_reboot() {
    // radclient sends from 127.0.0.1; the NAS names itself 192.0.2.10
    // (its loopback address), which its entry lists.
    let srv = Running::start_with(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            NasConfig::new("127.0.0.1", SECRET)
                .unwrap()
                .claiming(&["192.0.2.10"], &[] as &[&str])
                .unwrap(),
        ],
    ))
    .await;
    let t0 = chrono::Utc::now().timestamp() - 3600;
    let (t1, t2, t3) = (t0 + 300, t0 + 600, t0 + 700);
    let requests = [
        format!(
            "User-Name = \"alice@isp.example\", Acct-Status-Type = Start, Acct-Session-Id = \"0000A1\", \
         NAS-IP-Address = 192.0.2.10, Framed-IP-Address = 198.51.100.7, \
         Framed-IPv6-Prefix = 2001:db8:1:2::/64, Delegated-IPv6-Prefix = 2001:db8:ff00::/56, \
         Event-Timestamp = {t0}, Class = 0xcafe01, Acct-Delay-Time = 0"
        ),
        format!(
            "User-Name = \"alice@isp.example\", Acct-Status-Type = Interim-Update, Acct-Session-Id = \"0000A1\", \
         NAS-IP-Address = 192.0.2.10, Framed-IP-Address = 198.51.100.7, \
         Delegated-IPv6-Prefix = 2001:db8:ff00::/56, Event-Timestamp = {t1}, \
         Acct-Session-Time = 300, Acct-Interim-Interval = 300, Acct-Input-Octets = 12345, \
         Proxy-State = 0x01020304"
        ),
        format!(
            "User-Name = \"alice@isp.example\", Acct-Status-Type = Stop, Acct-Session-Id = \"0000A1\", \
         NAS-IP-Address = 192.0.2.10, Framed-IP-Address = 198.51.100.7, \
         Event-Timestamp = {t2}, Acct-Session-Time = 600, Acct-Terminate-Cause = User-Request"
        ),
        format!(
            "Acct-Status-Type = Accounting-On, NAS-IP-Address = 192.0.2.10, Event-Timestamp = {t3}"
        ),
        // No NAS attribute and no Event-Timestamp: the source address and
        // the time of receipt less Acct-Delay-Time.
        "Acct-Status-Type = Accounting-Off, Acct-Session-Id = \"0\", Acct-Delay-Time = 3600"
            .to_string(),
    ];
    for r in &requests {
        let reply = radclient_send(srv.addr, SECRET, r, 1, 3.0).await;
        assert!(
            reply.answered,
            "no Accounting-Response for {r}:\n{}",
            reply.output
        );
    }
    let events = srv.sink.events();
    assert_eq!(events.len(), 5, "{events:#?}");

    let start = session(&events[0]);
    assert_eq!(start.phase, SessionPhase::Start);
    assert_eq!(start.nas, "192.0.2.10");
    assert_eq!(start.session_id, "0000A1");
    assert_eq!(start.subject, Subject::login("alice@isp.example").unwrap());
    assert_eq!(
        start.prefixes,
        nets(&["198.51.100.7/32", "2001:db8:1:2::/64", "2001:db8:ff00::/56"])
    );
    assert_eq!(start.at, DateTime::from_timestamp(t0, 0).unwrap());
    assert_eq!(start.class.as_deref(), Some("cafe01"));
    assert_eq!(start.session_time, None);

    let interim = session(&events[1]);
    assert_eq!(interim.phase, SessionPhase::Interim);
    assert_eq!(interim.session_time, Some(300));
    assert_eq!(
        interim.prefixes,
        nets(&["198.51.100.7/32", "2001:db8:ff00::/56"])
    );
    assert_eq!(interim.at.timestamp(), t1);

    let stop = session(&events[2]);
    assert_eq!(stop.phase, SessionPhase::Stop);
    assert_eq!(stop.session_time, Some(600));
    assert_eq!(stop.at.timestamp(), t2);

    assert_eq!(
        events[3],
        BindingEvent::NasReset {
            nas: "192.0.2.10".into(),
            at: DateTime::from_timestamp(t3, 0).unwrap()
        }
    );
    let BindingEvent::NasReset { nas, at } = &events[4] else {
        panic!("not a NAS reset: {:?}", events[4]);
    };
    assert_eq!(nas, "127.0.0.1");
    let ago = chrono::Utc::now() - *at;
    assert!(
        (3590..=3700).contains(&ago.num_seconds()),
        "Acct-Delay-Time not subtracted: {at}"
    );

    let c = &srv.counters;
    assert_eq!(c.received.load(SeqCst), 5);
    assert_eq!(settled(&c.answered, 5).await, 5);
    assert_eq!(c.events.load(SeqCst), 5);
    assert_eq!(c.dropped_total(), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_nas() {
    let srv = Running::start_on("[::1]:0", "::1/128").await;
    let reply = radclient_send(
        srv.addr,
        SECRET,
        "User-Name = \"v6user\", Acct-Status-Type = Start, Acct-Session-Id = \"V6\", \
         Delegated-IPv6-Prefix = 2001:db8:abcd:1200::/56, Framed-IPv6-Prefix = 2001:db8:0:1::/64",
        1,
        3.0,
    )
    .await;
    assert!(reply.answered, "{}", reply.output);
    let events = srv.sink.events();
    let s = session(&events[0]);
    // No NAS attribute: the source address names the NAS.
    assert_eq!(s.nas, "::1");
    assert_eq!(
        s.prefixes,
        nets(&["2001:db8:0:1::/64", "2001:db8:abcd:1200::/56"])
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_gets_no_answer() {
    let srv = Running::start("127.0.0.1").await;
    let reply = radclient_send(
        srv.addr,
        "not-the-secret",
        "User-Name = \"bob\", Acct-Status-Type = Start, Acct-Session-Id = \"1\"",
        2,
        0.4,
    )
    .await;
    assert!(
        !reply.answered,
        "answered a forged request:\n{}",
        reply.output
    );
    assert!(reply.output.contains("No reply"), "{}", reply.output);
    assert_eq!(srv.dropped(DropReason::BadAuthenticator), 2);
    assert_eq!(srv.counters.answered.load(SeqCst), 0);
    assert!(srv.sink.events().is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_nas_gets_no_answer() {
    // Only 192.0.2.0/24 may send; radclient sends from 127.0.0.1.
    let srv = Running::start("192.0.2.0/24").await;
    let reply = radclient_send(
        srv.addr,
        SECRET,
        "User-Name = \"bob\", Acct-Status-Type = Start, Acct-Session-Id = \"1\"",
        1,
        0.4,
    )
    .await;
    assert!(
        !reply.answered,
        "answered an unknown NAS:\n{}",
        reply.output
    );
    assert_eq!(srv.dropped(DropReason::UnknownNas), 1);
    assert_eq!(srv.counters.sink_errors.load(SeqCst), 0);
    assert!(srv.sink.events().is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_while_in_flight_is_applied_once() {
    let srv = Running::start("127.0.0.1").await;
    // The first apply takes 2 s; radclient retransmits (same Identifier
    // and authenticator) every 0.3 s meanwhile, for up to 3 s. (With 0.8 s,
    // a loaded machine sometimes let radclient's first retransmission
    // come after the answer.)
    srv.sink.slow_once_ms.store(2000, SeqCst);
    let reply = radclient_send(
        srv.addr,
        SECRET,
        "User-Name = \"carol\", Acct-Status-Type = Start, Acct-Session-Id = \"C1\", Framed-IP-Address = 203.0.113.9",
        10,
        0.3,
    )
    .await;
    assert!(reply.answered, "{}", reply.output);
    assert!(
        reply.output.matches("Sent Accounting-Request").count() >= 2,
        "radclient did not retransmit:\n{}",
        reply.output
    );
    assert_eq!(srv.sink.events().len(), 1);
    assert_eq!(srv.sink.applies.load(SeqCst), 1);
    assert!(srv.counters.duplicates.load(SeqCst) >= 1);
    srv.stop().await;
}

/// A NAS whose answer got lost retransmits the very same datagram: it is
/// answered again, identically, and not applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmission_after_answer_is_answered_from_the_cache() {
    let srv = Running::start("127.0.0.1").await;
    let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 42);
    w.u32(attr::ACCT_STATUS_TYPE, 1).unwrap();
    w.attribute(attr::USER_NAME, b"dave").unwrap();
    w.attribute(attr::ACCT_SESSION_ID, b"D1").unwrap();
    let request = w.finish_accounting_request(SECRET.as_bytes());
    let addr = srv.addr;
    let sent = request.clone();
    let (first, second) = tokio::task::spawn_blocking(move || {
        let s = nas_socket(addr);
        s.send(&sent).unwrap();
        let a = recv(&s).expect("an answer");
        s.send(&sent).unwrap();
        let b = recv(&s).expect("an answer to the retransmission");
        (a, b)
    })
    .await
    .unwrap();
    assert_eq!(first, second);
    let p = Packet::parse(&first).unwrap();
    assert_eq!(p.code(), code::ACCOUNTING_RESPONSE);
    assert!(p.verify_accounting_response(&request[4..20].try_into().unwrap(), SECRET.as_bytes()));
    assert_eq!(srv.sink.events().len(), 1);
    assert_eq!(srv.counters.duplicates.load(SeqCst), 1);
    assert_eq!(settled(&srv.counters.answered, 2).await, 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_error_gets_no_answer_until_it_recovers() {
    let srv = Running::start("127.0.0.1").await;
    srv.sink.fail.store(true, SeqCst);
    let attrs = "User-Name = \"erin\", Acct-Status-Type = Start, Acct-Session-Id = \"E1\", Framed-IP-Address = 203.0.113.10";
    let reply = radclient_send(srv.addr, SECRET, attrs, 1, 0.5).await;
    assert!(
        !reply.answered,
        "answered what was not stored:\n{}",
        reply.output
    );
    assert!(srv.counters.sink_errors.load(SeqCst) >= 1);
    assert_eq!(srv.counters.answered.load(SeqCst), 0);

    // Once the store is back, the NAS's next try is stored and answered
    // (the failed request was not remembered as a duplicate).
    srv.sink.fail.store(false, SeqCst);
    let reply = radclient_send(srv.addr, SECRET, attrs, 1, 2.0).await;
    assert!(reply.answered, "{}", reply.output);
    assert_eq!(srv.sink.events().len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_dropped_and_counted() {
    let srv = Running::start("127.0.0.1").await;
    let secret = SECRET.as_bytes();
    let valid = |build: &dyn Fn(&mut PacketWriter)| {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        build(&mut w);
        w.finish_accounting_request(secret)
    };
    let start = valid(&|w| {
        w.u32(attr::ACCT_STATUS_TYPE, 1).unwrap();
        w.attribute(attr::USER_NAME, b"frank").unwrap();
        w.attribute(attr::ACCT_SESSION_ID, b"F1").unwrap();
    });
    let mut short_length = start.clone();
    short_length[2..4].copy_from_slice(&10u16.to_be_bytes());
    let mut overrun = start.clone();
    let last = overrun.len() - 4; // Acct-Session-Id's length octet
    overrun[last + 1] = 40;
    let mut access = start.clone();
    access[0] = code::ACCESS_REQUEST;
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (start[..12].to_vec(), DropReason::ShortDatagram),
        (short_length, DropReason::LengthBelowHeader),
        (start[..start.len() - 1].to_vec(), DropReason::Truncated),
        (overrun, DropReason::AttributeOverrun),
        (access, DropReason::NotAccountingRequest),
        (
            valid(&|w| {
                w.u32(attr::ACCT_STATUS_TYPE, 1).unwrap();
                w.attribute(attr::FRAMED_IP_ADDRESS, &[1, 2, 3]).unwrap();
            }),
            DropReason::BadValue,
        ),
        (
            valid(&|w| {
                w.attribute(attr::USER_NAME, b"frank").unwrap();
            }),
            DropReason::MissingStatusType,
        ),
        (
            valid(&|w| {
                w.u32(attr::ACCT_STATUS_TYPE, 1).unwrap();
                w.attribute(attr::ACCT_SESSION_ID, b"F2").unwrap();
            }),
            DropReason::MissingUserName,
        ),
    ];
    let addr = srv.addr;
    let cases2 = cases.clone();
    tokio::task::spawn_blocking(move || {
        let s = nas_socket(addr);
        for (datagram, reason) in &cases2 {
            s.send(datagram).unwrap();
            assert!(recv(&s).is_none(), "{reason:?} was answered");
        }
    })
    .await
    .unwrap();
    for (_, reason) in &cases {
        assert_eq!(srv.dropped(*reason), 1, "{reason:?}");
    }
    assert_eq!(srv.counters.dropped_total(), cases.len() as u64);
    assert_eq!(srv.counters.answered.load(SeqCst), 0);
    assert!(srv.sink.events().is_empty());
    srv.stop().await;
}

/// Past `queue` requests waiting for the sink, new ones are dropped as
/// overloaded, unanswered (the NAS retransmits later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_drops_and_counts() {
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![NasConfig::new("127.0.0.1", SECRET).unwrap()],
    );
    config.queue = 1;
    config.max_batch = 1;
    let srv = Running::start_with(config).await;
    srv.sink.slow_once_ms.store(500, SeqCst);
    let requests: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, i);
            w.u32(attr::ACCT_STATUS_TYPE, 1).unwrap();
            w.attribute(attr::USER_NAME, b"gina").unwrap();
            w.attribute(attr::ACCT_SESSION_ID, &[b'G', b'0' + i])
                .unwrap();
            w.finish_accounting_request(SECRET.as_bytes())
        })
        .collect();
    let addr = srv.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let s = nas_socket(addr);
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        for r in &requests {
            s.send(r).unwrap();
        }
        let mut n = 0;
        while recv(&s).is_some() {
            n += 1;
        }
        n
    })
    .await
    .unwrap();
    let overloaded = srv.dropped(DropReason::Overloaded);
    // The first is with the (slow) sink, the second waits in the queue;
    // the third and fourth find it full (or the second too, if it came
    // before the committer took the first).
    assert!((2..=3).contains(&overloaded), "{overloaded} overloaded");
    assert_eq!(answers, 4 - overloaded);
    assert_eq!(srv.sink.events().len() as u64, 4 - overloaded);
    srv.stop().await;
}

/// One NAS's secret does not let it speak for another: a request that
/// names another NAS (NAS-Identifier, NAS-IP-Address), such as an
/// Accounting-On that would close every session of that NAS, is refused
/// unanswered; naming itself, it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nas_claiming_another_nas_is_refused() {
    let srv = Running::start_with(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            NasConfig::new("127.0.0.1", "secret-of-a")
                .unwrap()
                .claiming(&[] as &[&str], &["bras-a"])
                .unwrap(),
            NasConfig::new("192.0.2.20", "secret-of-b")
                .unwrap()
                .claiming(&["198.51.100.20"], &["bras-b"])
                .unwrap(),
        ],
    ))
    .await;
    let now = chrono::Utc::now().timestamp();
    for claim in [
        "NAS-Identifier = \"bras-b\"",
        "NAS-IP-Address = 192.0.2.20",
        "NAS-IP-Address = 198.51.100.20",
        // Its own address, and another's identifier beside it.
        "NAS-IP-Address = 127.0.0.1, NAS-Identifier = \"bras-b\"",
    ] {
        let reply = radclient_send(
            srv.addr,
            "secret-of-a",
            &format!("Acct-Status-Type = Accounting-On, {claim}, Event-Timestamp = {now}"),
            1,
            0.5,
        )
        .await;
        assert!(
            !reply.answered,
            "answered a request claiming another NAS ({claim}):\n{}",
            reply.output
        );
    }
    assert_eq!(srv.dropped(DropReason::ForeignNas), 4);
    assert!(srv.sink.events().is_empty(), "{:#?}", srv.sink.events());
    // A session record naming another NAS is refused too.
    let reply = radclient_send(
        srv.addr,
        "secret-of-a",
        "User-Name = \"mallory\", Acct-Status-Type = Stop, Acct-Session-Id = \"B-1\", NAS-Identifier = \"bras-b\"",
        1,
        0.5,
    )
    .await;
    assert!(!reply.answered, "{}", reply.output);
    assert_eq!(srv.dropped(DropReason::ForeignNas), 5);

    // Naming itself (its identifier, its own address): answered.
    let reply = radclient_send(
        srv.addr,
        "secret-of-a",
        &format!(
            "Acct-Status-Type = Accounting-On, NAS-Identifier = \"bras-a\", NAS-IP-Address = 127.0.0.1, Event-Timestamp = {now}"
        ),
        1,
        3.0,
    )
    .await;
    assert!(reply.answered, "{}", reply.output);
    assert_eq!(
        srv.sink.events(),
        [BindingEvent::NasReset {
            nas: "127.0.0.1".into(),
            at: DateTime::from_timestamp(now, 0).unwrap()
        }]
    );
    srv.stop().await;
}

/// A record whose Event-Timestamp is older than the window is refused; a
/// record sent again after the duplicate cache forgot it (a replayed
/// capture) is answered but not applied again, even after its session
/// ended; so is a replayed Accounting-On.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_replayed_records_are_not_applied() {
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![NasConfig::new("127.0.0.1", SECRET).unwrap()],
    );
    // The duplicate cache forgets at once: every resend is a replay here.
    config.duplicate_window = Duration::ZERO;
    config.max_record_age = Duration::from_secs(3600);
    let srv = Running::start_with(config).await;
    let now = chrono::Utc::now().timestamp();
    let addr = srv.addr;
    let send = |attrs: String| async move { radclient_send(addr, SECRET, &attrs, 1, 2.0).await };

    let old = now - 7200;
    let reply = send(format!(
        "User-Name = \"olga\", Acct-Status-Type = Start, Acct-Session-Id = \"OLD\", \
         Framed-IP-Address = 203.0.113.40, Event-Timestamp = {old}"
    ))
    .await;
    assert!(
        !reply.answered,
        "answered a stale record:\n{}",
        reply.output
    );
    assert_eq!(srv.dropped(DropReason::StaleRecord), 1);

    let start = format!(
        "User-Name = \"peter\", Acct-Status-Type = Start, Acct-Session-Id = \"P1\", \
         Framed-IP-Address = 203.0.113.41, Event-Timestamp = {}",
        now - 60
    );
    let stop = format!(
        "User-Name = \"peter\", Acct-Status-Type = Stop, Acct-Session-Id = \"P1\", \
         Framed-IP-Address = 203.0.113.41, Acct-Session-Time = 30, Event-Timestamp = {}",
        now - 30
    );
    let on = format!(
        "Acct-Status-Type = Accounting-On, Event-Timestamp = {}",
        now - 10
    );
    for (attrs, applied, replays) in [
        (&start, 1, 0),
        (&start, 1, 1),
        (&stop, 2, 1),
        (&start, 2, 2),
        (&stop, 2, 3),
        (&on, 3, 3),
        (&on, 3, 4),
    ] {
        let reply = send(attrs.clone()).await;
        assert!(reply.answered, "{attrs}:\n{}", reply.output);
        assert_eq!(
            srv.sink.events().len(),
            applied,
            "{attrs}: {:#?}",
            srv.sink.events()
        );
        assert_eq!(srv.counters.replays.load(SeqCst), replays, "{attrs}");
    }
    srv.stop().await;
}

/// The requests radclient sent (captured into the fuzz seeds) decode and
/// verify with the secret they were sent with.
#[test]
fn captured_radclient_packets_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/radius");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let p = Packet::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            p.verify_accounting_request(SECRET.as_bytes()),
            "{}",
            path.display()
        );
        AccountingRequest::decode(&p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 5, "only {n} captured packets in {}", dir.display());
}

fn nas_socket(server: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}
