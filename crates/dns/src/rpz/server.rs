//! The running primary: its zones, the listeners, the updater that
//! follows the list, and the NOTIFY sender.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::SOA};
use kanki_exports::{DnsList, IpTrigger, RpzOptions};
use kanki_store::Selection;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use super::content::{Content, ContentBuilder, EntryKind};
use super::handler::Reply;
use super::journal::Journal;
use super::scope::{ConsentSource, client_ip_owner, complement};
use super::tsig::{self, Signer, TsigKey};
use super::zone::{Diff, ZoneSettings, ZoneState, serial_gt};

/// Counters of the primary, exported at `/metrics` as `kanki_rpz_*`.
#[derive(Debug, Default, Clone)]
pub struct RpzStats {
    pub soa: Counter,
    pub axfr: Counter,
    pub ixfr: Counter,
    /// IXFR answered with the whole zone (serial older than the journal).
    pub ixfr_full: Counter,
    pub refused_acl: Counter,
    /// Requests for a zone kanki does not serve, a class or type it does
    /// not answer.
    pub refused_zone: Counter,
    /// Unsigned (or signed with another key) where the zone needs its key.
    pub tsig_required: Counter,
    /// Unknown key, bad MAC, or out of the time window.
    pub tsig_failed: Counter,
    /// Not a DNS request, unreadable, or malformed for its type.
    pub malformed: Counter,
    pub not_implemented: Counter,
    pub notify_sent: Counter,
    pub notify_acked: Counter,
    pub notify_failed: Counter,
    pub zone_updates: Counter,
}

impl RpzStats {
    /// Registers every counter (as `rpz_<name>`) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let all: [(&str, &str, &Counter); 14] = [
            ("rpz_soa_queries", "SOA queries answered", &self.soa),
            ("rpz_axfr", "AXFR requests served", &self.axfr),
            ("rpz_ixfr", "IXFR requests answered", &self.ixfr),
            (
                "rpz_ixfr_full",
                "IXFR requests answered with the whole zone",
                &self.ixfr_full,
            ),
            (
                "rpz_refused_acl",
                "Requests refused: address not in allow_transfer",
                &self.refused_acl,
            ),
            (
                "rpz_refused_zone",
                "Requests refused: zone, class or type not served",
                &self.refused_zone,
            ),
            (
                "rpz_tsig_required",
                "Requests refused: the zone's TSIG key missing",
                &self.tsig_required,
            ),
            (
                "rpz_tsig_failed",
                "Requests with a bad TSIG (key, MAC, time)",
                &self.tsig_failed,
            ),
            ("rpz_malformed", "Malformed requests", &self.malformed),
            (
                "rpz_not_implemented",
                "Requests with an opcode not implemented",
                &self.not_implemented,
            ),
            ("rpz_notify_sent", "NOTIFY messages sent", &self.notify_sent),
            (
                "rpz_notify_acked",
                "NOTIFY messages answered",
                &self.notify_acked,
            ),
            (
                "rpz_notify_failed",
                "NOTIFY messages never answered",
                &self.notify_failed,
            ),
            (
                "rpz_zone_updates",
                "New zone serials published",
                &self.zone_updates,
            ),
        ];
        for (name, help, c) in all {
            registry.register(name, help, c.clone());
        }
    }
}

/// What a zone holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneContent {
    /// Part (or all) of the list.
    List(Selection),
    /// `rpz-client-ip` passthru triggers: these blocks less the consenting.
    ClientScope(Vec<IpTrigger>),
}

/// One zone as configured.
pub struct ZoneSpec {
    /// Origin, SOA, TTL, action, wildcards.
    pub options: RpzOptions,
    pub shadow: bool,
    pub content: ZoneContent,
    pub consent: Option<Arc<dyn ConsentSource>>,
    pub notify: Vec<SocketAddr>,
    /// Addresses and prefix lengths allowed to transfer.
    pub allow_transfer: Vec<(IpAddr, u8)>,
    /// The key requests must be signed with (one of the server's keys).
    pub tsig_key: Option<Arc<TsigKey>>,
}

/// A served zone.
pub struct ZoneHandle {
    /// Lowercase, absolute.
    pub name: Name,
    pub(crate) acl: Vec<(IpAddr, u8)>,
    pub(crate) tsig_key: Option<Arc<TsigKey>>,
    pub notify: Vec<SocketAddr>,
    spec: ZoneSpec,
    settings: Arc<ZoneSettings>,
    depth: u64,
    state: RwLock<Option<Arc<ZoneState>>>,
    /// Serial to start from when the journal had no usable state.
    floor: Mutex<Option<u32>>,
    journal: Mutex<Option<Journal>>,
    changed: watch::Sender<u32>,
    /// Each secondary's last request for the zone, by address.
    secondaries: Mutex<std::collections::BTreeMap<IpAddr, SecondaryAsked>>,
}

/// A secondary's last request for a zone: what the dashboard shows of the
/// zone's distribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondaryAsked {
    pub at: chrono::DateTime<chrono::Utc>,
    /// `axfr`, `ixfr` (changes since its serial), `ixfr-full` (a full zone
    /// because the journal no longer had its serial) or `up-to-date` (an
    /// IXFR that found nothing new).
    pub kind: &'static str,
    /// The secondary's serial, when it said (IXFR).
    pub had: Option<u32>,
    /// The serial it was given.
    pub serial: u32,
}

/// The most secondaries remembered per zone (transfers are limited to the
/// ACL's addresses; this bounds a wide ACL too).
const SECONDARIES_KEPT: usize = 1024;

impl ZoneHandle {
    /// The zone at its current serial; `None` until its first build.
    pub fn state(&self) -> Option<Arc<ZoneState>> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a secondary's request (see [`SecondaryAsked`]).
    pub(crate) fn asked(&self, peer: IpAddr, asked: SecondaryAsked) {
        let mut m = self.secondaries.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= SECONDARIES_KEPT && !m.contains_key(&peer) {
            // The one asking longest ago makes room.
            if let Some(oldest) = m.iter().min_by_key(|(_, a)| a.at).map(|(ip, _)| *ip) {
                m.remove(&oldest);
            }
        }
        m.insert(peer, asked);
    }

    /// Each secondary's last request, by address.
    pub fn secondaries(&self) -> Vec<(IpAddr, SecondaryAsked)> {
        let m = self.secondaries.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(ip, a)| (*ip, a.clone())).collect()
    }

    /// Follows serial changes (for NOTIFY).
    pub fn subscribe(&self) -> watch::Receiver<u32> {
        self.changed.subscribe()
    }

    /// What the zone should hold now, from the list (for list zones) or
    /// the consent source (for client-scope zones).
    pub fn build(&self, source: &dyn ListSource) -> Result<Content, String> {
        match &self.spec.content {
            ZoneContent::List(sel) => {
                let list = source.list(sel)?;
                let mut b = ContentBuilder::with_capacity(list.names.len() + list.ips.len(), 0);
                kanki_exports::for_each_rpz_entry(&list, &self.spec.options, |owner, kind| {
                    b.push(
                        match kind {
                            kanki_exports::RpzEntryKind::Name => EntryKind::Name,
                            kanki_exports::RpzEntryKind::Exception => EntryKind::Exception,
                            kanki_exports::RpzEntryKind::Ip => EntryKind::Ip,
                        },
                        owner,
                    );
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
                Ok(b.finish())
            }
            ZoneContent::ClientScope(pools) => {
                let consenting = match &self.spec.consent {
                    Some(c) => c
                        .consenting()
                        .map_err(|e| format!("reading consent: {e}"))?,
                    None => Vec::new(),
                };
                let blocks = complement(pools, &consenting);
                let owners: Vec<String> = blocks.iter().map(client_ip_owner).collect();
                Ok(Content::from_entries(
                    owners.iter().map(|o| (EntryKind::ClientIp, o.as_str())),
                ))
            }
        }
    }

    /// The consent source's version, for client-scope zones.
    pub fn consent_version(&self) -> u64 {
        self.spec.consent.as_ref().map_or(0, |c| c.version())
    }

    /// Publishes `content` if it differs from the current zone: a new
    /// serial (the list `generation` when that is ahead, else one more),
    /// journaled before it is served. Returns the new serial.
    pub fn update(&self, content: Content, generation: u64) -> io::Result<Option<u32>> {
        let current = self.state();
        let candidate = generation as u32;
        let next = |after: u32| {
            if serial_gt(candidate, after) {
                candidate
            } else {
                after.wrapping_add(1)
            }
        };
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        let new_state = match &current {
            Some(cur) => {
                if *cur.content == content {
                    return Ok(None);
                }
                let (removed, added) = cur.content.diff(&content);
                let serial = next(cur.serial);
                let diff = Arc::new(Diff {
                    from: cur.serial,
                    to: serial,
                    removed,
                    added,
                });
                let mut history = cur.history.clone();
                history.push(diff.clone());
                let mut kept: u64 = history.iter().map(|d| d.changes()).sum();
                while kept > self.depth && !history.is_empty() {
                    kept -= history.remove(0).changes();
                }
                if let Some(j) = journal.as_mut() {
                    j.append(&diff, &content, &history)?;
                }
                ZoneState {
                    serial,
                    settings: self.settings.clone(),
                    content: Arc::new(content),
                    history,
                }
            }
            None => {
                let floor = *self.floor.lock().unwrap_or_else(|p| p.into_inner());
                let serial = match floor {
                    Some(f) => next(f),
                    None => candidate.max(1),
                };
                if let Some(j) = journal.as_mut() {
                    j.rewrite(serial, &content, &[])?;
                }
                ZoneState {
                    serial,
                    settings: self.settings.clone(),
                    content: Arc::new(content),
                    history: Vec::new(),
                }
            }
        };
        let serial = new_state.serial;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(new_state));
        drop(journal);
        self.changed.send_replace(serial);
        Ok(Some(serial))
    }
}

/// Where the list comes from.
pub trait ListSource: Send + Sync {
    /// A value that moves whenever the list may have changed.
    fn generation(&self) -> u64;
    /// The DNS-level list cut by `sel`.
    fn list(&self, sel: &Selection) -> Result<DnsList, String>;
}

/// A fixed list, for tests and benchmarks.
pub struct StaticList {
    pub generation: std::sync::atomic::AtomicU64,
    pub list: RwLock<DnsList>,
}

impl StaticList {
    pub fn new(list: DnsList, generation: u64) -> StaticList {
        StaticList {
            generation: generation.into(),
            list: RwLock::new(list),
        }
    }

    /// Replaces the list and moves the generation.
    pub fn set(&self, list: DnsList) {
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = list;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl ListSource for StaticList {
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn list(&self, _sel: &Selection) -> Result<DnsList, String> {
        Ok(self.list.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The primary: its zones and keys; see the module documentation.
pub struct RpzServer {
    pub zones: Vec<Arc<ZoneHandle>>,
    pub(crate) keys: Vec<Arc<TsigKey>>,
    pub stats: RpzStats,
}

impl RpzServer {
    /// Sets the zones up; with `journal_dir`, each zone's journal lives
    /// there (`<zone>.journal`) and a restarted server serves the zone it
    /// last published at once.
    pub fn new(
        specs: Vec<ZoneSpec>,
        keys: Vec<Arc<TsigKey>>,
        journal_dir: Option<&Path>,
        depth: u64,
    ) -> Result<RpzServer, String> {
        let mut zones = Vec::new();
        for spec in specs {
            let settings = Arc::new(ZoneSettings::new(&spec.options, spec.shadow)?);
            let name = settings.origin.clone();
            let (journal, loaded) = match journal_dir {
                Some(dir) => {
                    let file = dir.join(format!("{}journal", name.to_ascii()));
                    let (j, l) = Journal::open(&file, settings.fingerprint(), depth)
                        .map_err(|e| format!("journal {}: {e}", file.display()))?;
                    (Some(j), l)
                }
                None => (None, Default::default()),
            };
            let (state, floor) = match (loaded.state, loaded.last_serial) {
                (Some((content, history)), Some(serial)) => (
                    Some(Arc::new(ZoneState {
                        serial,
                        settings: settings.clone(),
                        content: Arc::new(content),
                        history,
                    })),
                    None,
                ),
                (_, last) => (None, last),
            };
            let (changed, _) = watch::channel(state.as_ref().map_or(0, |s| s.serial));
            zones.push(Arc::new(ZoneHandle {
                name,
                acl: spec.allow_transfer.clone(),
                tsig_key: spec.tsig_key.clone(),
                notify: spec.notify.clone(),
                spec,
                settings,
                depth,
                state: RwLock::new(state),
                floor: Mutex::new(floor),
                journal: Mutex::new(journal),
                changed,
                secondaries: Mutex::new(std::collections::BTreeMap::new()),
            }));
        }
        Ok(RpzServer {
            zones,
            keys,
            stats: RpzStats::default(),
        })
    }

    /// Builds every zone whose input moved since `last` (list generation,
    /// consent versions) and publishes the changed ones. Blocking: run it
    /// off the async threads.
    pub fn refresh(&self, source: &dyn ListSource, last: &mut Option<(u64, Vec<u64>)>) {
        let generation = source.generation();
        let consent: Vec<u64> = self.zones.iter().map(|z| z.consent_version()).collect();
        let (prev_gen, prev_consent) = match last {
            Some((g, c)) => (Some(*g), Some(c.clone())),
            None => (None, None),
        };
        let mut all_ok = true;
        for (i, zone) in self.zones.iter().enumerate() {
            let list_moved =
                prev_gen != Some(generation) && matches!(zone.spec.content, ZoneContent::List(_));
            let consent_moved = prev_consent.as_ref().map(|c| c[i]) != Some(consent[i])
                && matches!(zone.spec.content, ZoneContent::ClientScope(_));
            if !list_moved && !consent_moved {
                continue;
            }
            let started = Instant::now();
            let built = zone.build(source);
            let result = built.and_then(|content| {
                let entries = content.len();
                zone.update(content, generation)
                    .map(|s| (s, entries))
                    .map_err(|e| format!("journal: {e}"))
            });
            match result {
                Ok((Some(serial), entries)) => {
                    self.stats.zone_updates.inc();
                    tracing::info!(zone = %zone.name, serial, entries, elapsed_ms = started.elapsed().as_millis() as u64, "RPZ zone updated");
                }
                Ok((None, _)) => {}
                Err(e) => {
                    all_ok = false;
                    tracing::error!(zone = %zone.name, error = %e, "RPZ zone update failed; the previous serial stays");
                }
            }
        }
        if all_ok {
            *last = Some((generation, consent));
        }
    }
}

/// Listener and timing settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub listen: SocketAddr,
    pub notify_interval: Duration,
    pub max_transfers: usize,
    pub idle_timeout: Duration,
    /// How often the updater looks at the list's generation.
    pub check_every: Duration,
}

/// Runs the primary until the future is dropped: TCP and UDP listeners,
/// the updater and a NOTIFY sender per zone with secondaries to notify.
/// Fails at once if it cannot listen.
pub async fn run(
    server: Arc<RpzServer>,
    source: Arc<dyn ListSource>,
    opts: RunOptions,
) -> io::Result<()> {
    start(server, source, opts).await?.await;
    Ok(())
}

/// Binds the listeners and builds every zone once, then returns the
/// primary's running future. Awaiting this before saying a server is up
/// means that a secondary asking at once gets the zone, not SERVFAIL;
/// requests that arrive during the first build wait in the sockets'
/// queues. A zone whose first build fails stays SERVFAIL until the
/// updater builds it.
pub async fn start(
    server: Arc<RpzServer>,
    source: Arc<dyn ListSource>,
    opts: RunOptions,
) -> io::Result<impl std::future::Future<Output = ()>> {
    let tcp = TcpListener::bind(opts.listen).await?;
    let udp = Arc::new(UdpSocket::bind(opts.listen).await?);
    let (s, src) = (server.clone(), source.clone());
    let last = tokio::task::spawn_blocking(move || {
        let mut last = None;
        s.refresh(&*src, &mut last);
        last
    })
    .await
    .map_err(io::Error::other)?;
    tracing::info!(listen = %opts.listen, zones = server.zones.len(), "RPZ primary listening (TCP and UDP)");

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(updater(server.clone(), source, opts.check_every, last));
    for zone in &server.zones {
        if !zone.notify.is_empty() {
            tasks.spawn(notifier(
                server.clone(),
                zone.clone(),
                opts.listen.ip(),
                opts.notify_interval,
            ));
        }
    }
    tasks.spawn(serve_udp(server.clone(), udp));
    tasks.spawn(serve_tcp(
        server,
        tcp,
        opts.max_transfers,
        opts.idle_timeout,
    ));
    Ok(async move { while tasks.join_next().await.is_some() {} })
}

/// Follows the list and consent after the first build (`last`).
async fn updater(
    server: Arc<RpzServer>,
    source: Arc<dyn ListSource>,
    every: Duration,
    mut last: Option<(u64, Vec<u64>)>,
) {
    loop {
        tokio::time::sleep(every).await;
        let s = server.clone();
        let src = source.clone();
        let l = last.take();
        match tokio::task::spawn_blocking(move || {
            let mut l = l;
            s.refresh(&*src, &mut l);
            l
        })
        .await
        {
            Ok(l) => last = l,
            Err(e) => tracing::error!(error = %e, "RPZ zone update panicked"),
        }
    }
}

async fn serve_udp(server: Arc<RpzServer>, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "RPZ UDP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let reply = match server.handle(&buf[..n], peer.ip(), false) {
            Reply::Drop => continue,
            Reply::Message(m) => m,
            // Over UDP only single-message answers (SOA, NS) are made.
            Reply::Transfer(mut t) => match t.next_message() {
                Some(m) => m,
                None => continue,
            },
        };
        let _ = sock.send_to(&reply, peer).await;
    }
}

async fn serve_tcp(server: Arc<RpzServer>, listener: TcpListener, max: usize, idle: Duration) {
    let permits = Arc::new(Semaphore::new(max.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "RPZ TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = server.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            if let Err(e) = connection(&server, stream, peer, idle).await {
                tracing::debug!(%peer, error = %e, "RPZ TCP connection ended");
            }
        });
    }
}

async fn connection(
    server: &RpzServer,
    mut stream: TcpStream,
    peer: SocketAddr,
    idle: Duration,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        buf.resize(usize::from(u16::from_be_bytes(len)), 0);
        tokio::time::timeout(idle, stream.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request cut short"))??;
        match server.handle(&buf, peer.ip(), true) {
            Reply::Drop => return Ok(()),
            Reply::Message(m) => write_framed(&mut stream, &m).await?,
            Reply::Transfer(mut t) => {
                let started = Instant::now();
                let mut out = Vec::with_capacity(64 * 1024);
                while let Some(m) = t.next_message() {
                    out.clear();
                    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
                    out.extend_from_slice(&m);
                    stream.write_all(&out).await?;
                }
                if t.messages > 1 {
                    tracing::info!(%peer, messages = t.messages, records = t.records, elapsed_ms = started.elapsed().as_millis() as u64, "RPZ transfer sent");
                }
            }
        }
    }
}

async fn write_framed(stream: &mut TcpStream, m: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(m.len() + 2);
    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    out.extend_from_slice(m);
    stream.write_all(&out).await
}

/// Sends NOTIFY for `zone` whenever its serial moves, at most once per
/// `interval`: changes during the wait are announced together.
async fn notifier(
    server: Arc<RpzServer>,
    zone: Arc<ZoneHandle>,
    source_ip: IpAddr,
    interval: Duration,
) {
    let mut rx = zone.subscribe();
    loop {
        if rx.changed().await.is_err() {
            return;
        }
        let Some(state) = zone.state() else { continue };
        for target in &zone.notify {
            send_notify(&server, &zone, &state, source_ip, *target).await;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The NOTIFY message (RFC 1996) for a zone at `serial`, signed with the
/// zone's key if it has one.
pub fn notify_message(zone: &ZoneHandle, state: &ZoneState, id: u16) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Notify);
    msg.metadata.authoritative = true;
    msg.add_query(Query::query(zone.name.clone(), RecordType::SOA));
    let s = &state.settings;
    let soa = SOA::new(
        Name::root(),
        Name::root(),
        state.serial,
        s.refresh as i32,
        s.retry as i32,
        s.expire as i32,
        s.minimum,
    );
    msg.add_answer(Record::from_rdata(
        zone.name.clone(),
        s.ttl,
        RData::SOA(soa),
    ));
    let mut bytes = msg.to_vec().expect("a NOTIFY encodes");
    if let Some(key) = &zone.tsig_key {
        Signer::request(key.clone(), tsig::now()).sign(&mut bytes);
    }
    bytes
}

async fn send_notify(
    server: &RpzServer,
    zone: &ZoneHandle,
    state: &ZoneState,
    source_ip: IpAddr,
    target: SocketAddr,
) {
    let bind: SocketAddr = match (source_ip, target) {
        (IpAddr::V4(_), SocketAddr::V4(_)) | (IpAddr::V6(_), SocketAddr::V6(_)) => {
            (source_ip, 0).into()
        }
        (_, SocketAddr::V4(_)) => (IpAddr::from([0u8; 4]), 0).into(),
        (_, SocketAddr::V6(_)) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a socket for NOTIFY");
            return;
        }
    };
    let id: u16 = rand_id();
    let msg = notify_message(zone, state, id);
    let mut buf = [0u8; 2048];
    for _attempt in 0..3 {
        server.stats.notify_sent.inc();
        if sock.send_to(&msg, target).await.is_err() {
            break;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) if from == target && n >= 12 && buf[..2] == id.to_be_bytes() => {
                    server.stats.notify_acked.inc();
                    tracing::info!(zone = %zone.name, serial = state.serial, %target, "NOTIFY answered");
                    return;
                }
                Ok(Ok(_)) => continue,
                _ => break,
            }
        }
    }
    server.stats.notify_failed.inc();
    tracing::warn!(zone = %zone.name, serial = state.serial, %target, "NOTIFY not answered");
}

/// A message ID that a bystander cannot guess easily.
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}
