//! The RADIUS accounting server (RFC 2866) on UDP.
//!
//! One task receives: it finds the NAS by the source address, checks the
//! packet and its Request Authenticator, recognizes retransmissions, turns
//! the request into a [`BindingEvent`] and queues it with its ready-made
//! Accounting-Response. A second task commits: it takes what is queued (a
//! batch of up to [`ServerConfig::max_batch`], gathered for at most
//! [`ServerConfig::batch_window`]), hands it to the [`AccountingSink`] on a
//! blocking thread, and only when the sink says the batch is stored sends
//! the batch's responses (RFC 2866 §4: no response unless the record was
//! recorded). While the sink works, the next batch gathers: the busier the
//! server, the bigger the batches (group commit).
//!
//! Batches are applied one at a time, in arrival order, so a session's
//! Start reaches the sink before its Stop.
//!
//! Nothing that fails a check is answered; each failure is counted by
//! reason in [`Counters`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use ipnet::IpNet;
use kanki_directory::{BindingEvent, SessionEvent, SessionPhase, Subject};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::attr::{AccountingRequest, StatusType};
use crate::packet::{self, Packet, code};
use crate::replay::{Record, ReplayGuard};
use crate::{DecodeError, accounting_response};

/// Where the server puts what it received.
pub trait AccountingSink: Send + Sync + 'static {
    /// Applies a batch durably (blocking; runs on a blocking thread). The
    /// server answers the requests of a batch only after this returns Ok;
    /// on Err it answers none of them (the NAS retransmits).
    ///
    /// The same event can arrive twice (a NAS that retransmits after the
    /// server's short duplicate cache forgot the request, or that resends
    /// with a new Acct-Delay-Time, which makes it a new request): applying
    /// must be idempotent.
    fn apply(&self, events: Vec<BindingEvent>) -> Result<(), String>;
}

/// One NAS (or a network of them) allowed to send accounting, with the
/// secret it shares with the server, and the identities it may claim.
///
/// A request names its NAS with NAS-IP-Address, NAS-IPv6-Address or
/// NAS-Identifier, and an Accounting-On/Off closes every session of the
/// NAS it names. So a request is taken only when every identity it claims
/// is this entry's: a NAS-IP-Address or NAS-IPv6-Address equal to the
/// request's source address or within [`NasConfig::nas_ip_addresses`], a
/// NAS-Identifier listed in [`NasConfig::nas_identifiers`]. A NAS holding
/// one secret cannot speak for another.
#[derive(Clone)]
pub struct NasConfig {
    /// The NAS's source address, or a network holding several NASes.
    pub address: IpNet,
    secret: Arc<[u8]>,
    /// NAS-IP-Address / NAS-IPv6-Address values it may send besides its
    /// own source address (a loopback or management address).
    pub nas_ip_addresses: Vec<IpNet>,
    /// NAS-Identifier values it may send.
    pub nas_identifiers: Vec<String>,
}

impl NasConfig {
    /// `address` is an IP address (`192.0.2.1`, `2001:db8::1`) or a
    /// network (`192.0.2.0/24`); `secret` must not be empty.
    pub fn new(address: &str, secret: impl Into<Vec<u8>>) -> Result<NasConfig, ConfigError> {
        let address = parse_net(address)?;
        let secret = secret.into();
        if secret.is_empty() {
            return Err(ConfigError::EmptySecret(address));
        }
        Ok(NasConfig {
            address,
            secret: secret.into(),
            nas_ip_addresses: Vec::new(),
            nas_identifiers: Vec::new(),
        })
    }

    /// Adds the NAS-IP-Address / NAS-IPv6-Address values (addresses or
    /// networks) and NAS-Identifier values this NAS may claim.
    pub fn claiming(
        mut self,
        nas_ip_addresses: &[impl AsRef<str>],
        nas_identifiers: &[impl AsRef<str>],
    ) -> Result<NasConfig, ConfigError> {
        for a in nas_ip_addresses {
            self.nas_ip_addresses.push(parse_net(a.as_ref())?);
        }
        for id in nas_identifiers {
            let id = id.as_ref();
            if id.is_empty() {
                return Err(ConfigError::EmptyIdentifier(self.address));
            }
            self.nas_identifiers.push(id.to_string());
        }
        Ok(self)
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether every NAS identity `r` claims is this entry's, for a
    /// request from `src`.
    pub fn owns_claims(&self, r: &AccountingRequest<'_>, src: IpAddr) -> bool {
        let src = src.to_canonical();
        let owns_ip = |ip: IpAddr| {
            let ip = ip.to_canonical();
            ip == src || self.nas_ip_addresses.iter().any(|n| n.contains(&ip))
        };
        r.nas_ip.is_none_or(|ip| owns_ip(IpAddr::V4(ip)))
            && r.nas_ipv6.is_none_or(|ip| owns_ip(IpAddr::V6(ip)))
            && r.nas_identifier
                .is_none_or(|id| self.nas_identifiers.iter().any(|n| n == id))
    }
}

/// An IP address (`192.0.2.1`, `2001:db8::1`, as a one-address network)
/// or a network (`192.0.2.0/24`, host bits cleared).
fn parse_net(text: &str) -> Result<IpNet, ConfigError> {
    let a = text.trim();
    match a.parse::<IpNet>() {
        Ok(net) => Ok(net.trunc()),
        Err(_) => a
            .parse::<IpAddr>()
            .map(|ip| IpNet::from(ip.to_canonical()))
            .map_err(|_| ConfigError::BadAddress(text.to_string())),
    }
}

impl fmt::Debug for NasConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NasConfig")
            .field("address", &self.address)
            .field("secret", &"<redacted>")
            .field("nas_ip_addresses", &self.nas_ip_addresses)
            .field("nas_identifiers", &self.nas_identifiers)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("NAS address {0:?} is neither an IP address nor a network")]
    BadAddress(String),
    #[error("NAS {0}: the shared secret is empty")]
    EmptySecret(IpNet),
    #[error("NAS {0} is configured twice")]
    DuplicateNas(IpNet),
    #[error("NAS {0}: an empty NAS-Identifier")]
    EmptyIdentifier(IpNet),
}

/// What the server needs. [`ServerConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP address to listen on (1813 is accounting's port).
    pub listen: SocketAddr,
    /// Who may send accounting. A source matching several entries takes
    /// the longest prefix.
    pub nas: Vec<NasConfig>,
    /// How long the committer waits for more requests after the first one
    /// of a batch. Default 1 ms.
    pub batch_window: Duration,
    /// The most requests in one `apply`. Default 4096.
    pub max_batch: usize,
    /// Requests verified but not yet applied, at most; past it new
    /// requests are dropped (counted as `overloaded`) and the NAS
    /// retransmits. Default 65,536.
    pub queue: usize,
    /// How long an answered request is remembered to answer its
    /// retransmissions without applying it again. Default 10 s (NASes
    /// retransmit every few seconds).
    pub duplicate_window: Duration,
    /// The most requests remembered for that. Default 262,144.
    pub duplicate_capacity: usize,
    /// The socket's receive buffer, in octets: what absorbs a burst (all
    /// NASes resending after an outage) while the server catches up.
    /// Default 4 MiB; Linux caps it at `net.core.rmem_max`.
    pub receive_buffer: usize,
    /// A record whose Event-Timestamp is older than this is refused
    /// (dropped unanswered, counted as `stale_record`): a replay of an old
    /// capture, or a NAS clock far off. Records of a session are also
    /// checked against the session's newest record for this long (see
    /// [`crate::replay`]). Default 24 hours.
    pub max_record_age: Duration,
    /// Refuse records without Event-Timestamp (counted as
    /// `missing_event_timestamp`): they cannot be dated by the NAS, so a
    /// replayed Accounting-On/Off without one cannot be told from a new
    /// one. Default false.
    pub require_event_timestamp: bool,
    /// Sessions whose newest record is kept for replay detection, at most.
    /// Default 1,000,000.
    pub tracked_sessions: usize,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, nas: Vec<NasConfig>) -> ServerConfig {
        ServerConfig {
            listen,
            nas,
            batch_window: Duration::from_millis(1),
            max_batch: 4096,
            queue: 65_536,
            duplicate_window: Duration::from_secs(10),
            duplicate_capacity: 262_144,
            receive_buffer: 4 << 20,
            max_record_age: Duration::from_secs(86_400),
            require_event_timestamp: false,
            tracked_sessions: 1_000_000,
        }
    }
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident = $label:literal,)*) => {
        /// Why a datagram was dropped unanswered.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DropReason { $($(#[$doc])* $name,)* }

        impl DropReason {
            pub const ALL: &[DropReason] = &[$(DropReason::$name,)*];

            /// A stable label, for metrics.
            pub fn as_str(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }
        }
    };
}

drop_reasons! {
    /// The source address matches no configured NAS.
    UnknownNas = "unknown_nas",
    /// Not an Accounting-Request (an Access-Request, a Status-Server...).
    NotAccountingRequest = "not_accounting_request",
    /// The Request Authenticator does not match the NAS's secret.
    BadAuthenticator = "bad_authenticator",
    ShortDatagram = "short_datagram",
    LengthBelowHeader = "length_below_header",
    LengthAboveMax = "length_above_max",
    Truncated = "truncated",
    AttributeHeader = "attribute_header",
    AttributeLength = "attribute_length",
    AttributeOverrun = "attribute_overrun",
    BadValue = "bad_value",
    BadPrefix = "bad_prefix",
    InvalidText = "invalid_text",
    DuplicateAttribute = "duplicate_attribute",
    MissingStatusType = "missing_status_type",
    UnknownStatusType = "unknown_status_type",
    MissingSessionId = "missing_session_id",
    MissingUserName = "missing_user_name",
    /// The queue to the sink was full.
    Overloaded = "overloaded",
    /// The request names a NAS (NAS-IP-Address, NAS-IPv6-Address,
    /// NAS-Identifier) that is not the sender's entry.
    ForeignNas = "foreign_nas",
    /// Event-Timestamp older than `max_record_age`.
    StaleRecord = "stale_record",
    /// No Event-Timestamp, and `require_event_timestamp` is set.
    MissingEventTimestamp = "missing_event_timestamp",
}

impl From<DecodeError> for DropReason {
    fn from(e: DecodeError) -> DropReason {
        match e {
            DecodeError::ShortDatagram => DropReason::ShortDatagram,
            DecodeError::LengthBelowHeader => DropReason::LengthBelowHeader,
            DecodeError::LengthAboveMax => DropReason::LengthAboveMax,
            DecodeError::Truncated => DropReason::Truncated,
            DecodeError::AttributeHeader => DropReason::AttributeHeader,
            DecodeError::AttributeLength => DropReason::AttributeLength,
            DecodeError::AttributeOverrun => DropReason::AttributeOverrun,
            DecodeError::BadValue(_) => DropReason::BadValue,
            DecodeError::BadPrefix(_) => DropReason::BadPrefix,
            DecodeError::InvalidText(_) => DropReason::InvalidText,
            DecodeError::Duplicate(_) => DropReason::DuplicateAttribute,
            DecodeError::MissingStatusType => DropReason::MissingStatusType,
            DecodeError::UnknownStatusType(_) => DropReason::UnknownStatusType,
            DecodeError::MissingSessionId => DropReason::MissingSessionId,
            DecodeError::MissingUserName => DropReason::MissingUserName,
        }
    }
}

const REASONS: usize = DropReason::ALL.len();

/// The server's counters, monotonic, for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Accounting-Responses sent, retransmissions' included.
    pub answered: AtomicU64,
    /// Retransmissions recognized: answered again without a second apply,
    /// or ignored while the first copy waits for the sink.
    pub duplicates: AtomicU64,
    /// Calls of [`AccountingSink::apply`].
    pub batches: AtomicU64,
    /// Events the sink accepted.
    pub events: AtomicU64,
    /// Calls of `apply` that failed (their requests went unanswered).
    pub sink_errors: AtomicU64,
    /// Responses the socket refused to send.
    pub send_errors: AtomicU64,
    /// Replays recognized past the duplicate cache (a record not newer
    /// than its session's stored one): answered, not applied again.
    pub replays: AtomicU64,
    /// Sessions not tracked for replay detection because
    /// `tracked_sessions` were.
    pub untracked_sessions: AtomicU64,
    dropped: [AtomicU64; REASONS],
}

impl Counters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn count_drop(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }
}

/// A bound, not yet running, accounting server.
pub struct Server {
    socket: Arc<UdpSocket>,
    nas: NasTable,
    config: ServerConfig,
    counters: Arc<Counters>,
}

impl Server {
    /// Checks the configuration and binds the socket.
    pub async fn bind(config: ServerConfig) -> io::Result<Server> {
        let nas = NasTable::new(&config.nas)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let socket = bind_udp(config.listen, config.receive_buffer)?;
        Ok(Server {
            socket: Arc::new(socket),
            nas,
            config,
            counters: Arc::default(),
        })
    }

    /// The bound address (the port chosen when `listen` said 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Serves until `shutdown` completes; then stops receiving, applies and
    /// answers what was already queued, and returns.
    pub async fn run(
        self,
        sink: Arc<dyn AccountingSink>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        let Server {
            socket,
            nas,
            config,
            counters,
        } = self;
        tracing::info!(
            listen = %socket.local_addr()?,
            nas = nas.len(),
            "radius accounting server listening"
        );
        let duplicates = Arc::new(Mutex::new(DuplicateCache::new(
            config.duplicate_window,
            config.duplicate_capacity,
        )));
        let replays = Arc::new(Mutex::new(ReplayGuard::new(
            config.max_record_age.as_secs() as i64,
            config.tracked_sessions,
        )));
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let committer = tokio::spawn(commit(
            rx,
            sink,
            socket.clone(),
            duplicates.clone(),
            replays.clone(),
            counters.clone(),
            (config.batch_window, config.max_batch.max(1)),
        ));
        let receiver = Receiver {
            socket,
            nas,
            counters,
            duplicates,
            replays,
            max_record_age: config.max_record_age,
            require_event_timestamp: config.require_event_timestamp,
            queue: tx,
        };
        let result = receiver.run(shutdown).await;
        // The receiver dropped its sender: the committer drains the queue
        // and ends.
        if let Err(e) = committer.await {
            tracing::error!(error = %e, "radius committer task failed");
        }
        tracing::info!("radius accounting server stopped");
        result
    }
}

/// A request verified, converted, and waiting for the sink.
struct Pending {
    event: BindingEvent,
    key: DuplicateKey,
    response: Vec<u8>,
    /// What the replay guard remembers once the event is stored.
    record: Option<Record>,
}

struct Receiver {
    socket: Arc<UdpSocket>,
    nas: NasTable,
    counters: Arc<Counters>,
    duplicates: Arc<Mutex<DuplicateCache>>,
    replays: Arc<Mutex<ReplayGuard>>,
    max_record_age: Duration,
    require_event_timestamp: bool,
    queue: mpsc::Sender<Pending>,
}

// Returned once per datagram and taken apart at once; boxing `Queue` would
// cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Drop(DropReason),
    /// A retransmission of an answered request: answer again.
    Answer(Vec<u8>),
    /// A retransmission of a request still waiting for the sink.
    InFlight,
    /// A record already stored (or older than its session's stored one):
    /// answered, not applied again.
    Replay(Vec<u8>),
    Queue(Pending),
}

impl Receiver {
    async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        tokio::pin!(shutdown);
        // Octets past 4096 are padding at best (RFC 2865 §3): the kernel
        // may discard them.
        let mut buf = vec![0u8; packet::MAX_LEN];
        loop {
            let (n, src) = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    // Linux reports an ICMP error for an earlier send on the
                    // next receive; nothing to do about it here.
                    Err(e) if is_transient(&e) => {
                        tracing::debug!(error = %e, "radius: transient receive error");
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            self.counters.received.fetch_add(1, Relaxed);
            match self.handle(&buf[..n], src) {
                Outcome::Drop(reason) => {
                    self.counters.count_drop(reason);
                    tracing::debug!(%src, reason = reason.as_str(), "radius: dropped");
                }
                Outcome::Answer(response) => {
                    self.counters.duplicates.fetch_add(1, Relaxed);
                    send(&self.socket, &self.counters, &response, src).await;
                }
                Outcome::InFlight => {
                    self.counters.duplicates.fetch_add(1, Relaxed);
                }
                Outcome::Replay(response) => {
                    self.counters.replays.fetch_add(1, Relaxed);
                    tracing::debug!(%src, "radius: a replayed record, answered and not applied");
                    send(&self.socket, &self.counters, &response, src).await;
                }
                Outcome::Queue(pending) => {
                    match self.queue.try_send(pending) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(p)) => {
                            lock(&self.duplicates).forget(&p.key);
                            self.counters.count_drop(DropReason::Overloaded);
                            tracing::debug!(%src, "radius: queue full, dropped");
                        }
                        // The committer ends only after the receiver, unless
                        // it panicked: nothing would be answered any more.
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            return Err(io::Error::other("the radius committer stopped"));
                        }
                    }
                }
            }
        }
    }

    fn handle(&self, datagram: &[u8], src: SocketAddr) -> Outcome {
        // An unknown sender's datagram is not even parsed.
        let Some(nas) = self.nas.entry_for(src.ip()) else {
            return Outcome::Drop(DropReason::UnknownNas);
        };
        let secret = nas.secret();
        let packet = match Packet::parse(datagram) {
            Ok(p) => p,
            Err(e) => return Outcome::Drop(e.into()),
        };
        if packet.code() != code::ACCOUNTING_REQUEST {
            return Outcome::Drop(DropReason::NotAccountingRequest);
        }
        // Verified before the duplicate cache is consulted, so a forged
        // copy of a real request's header gets nothing.
        if !packet.verify_accounting_request(secret) {
            return Outcome::Drop(DropReason::BadAuthenticator);
        }
        let key = DuplicateKey {
            src,
            identifier: packet.identifier(),
            authenticator: packet.authenticator(),
        };
        let now = Instant::now();
        match lock(&self.duplicates).seen(key, now) {
            Seen::Answered => return Outcome::Answer(accounting_response(&packet, secret)),
            Seen::InFlight => return Outcome::InFlight,
            Seen::New => {}
        }
        let checked = AccountingRequest::decode(&packet)
            .map_err(DropReason::from)
            .and_then(|r| self.admit(nas, &r, src).map(|()| r))
            .and_then(|r| {
                let event = to_binding_event(&r, src.ip(), Utc::now())?;
                let record = replay_record(&r, &event);
                Ok((event, record))
            });
        let (event, record) = match checked {
            Ok(x) => x,
            Err(reason) => {
                lock(&self.duplicates).forget(&key);
                return Outcome::Drop(reason);
            }
        };
        if record
            .as_ref()
            .is_some_and(|r| lock(&self.replays).is_replay(r))
        {
            lock(&self.duplicates).answered(&key);
            return Outcome::Replay(accounting_response(&packet, secret));
        }
        Outcome::Queue(Pending {
            event,
            key,
            response: accounting_response(&packet, secret),
            record,
        })
    }

    /// The checks of what a verified request says: the NAS it names is
    /// the sender's, and its Event-Timestamp is recent enough.
    fn admit(
        &self,
        nas: &NasConfig,
        r: &AccountingRequest<'_>,
        src: SocketAddr,
    ) -> Result<(), DropReason> {
        if !nas.owns_claims(r, src.ip()) {
            tracing::warn!(
                %src,
                nas_ip_address = ?r.nas_ip,
                nas_ipv6_address = ?r.nas_ipv6,
                nas_identifier = ?r.nas_identifier,
                "radius: a request names a NAS that is not its sender's entry; refused \
                 (list the NAS's own identities in nas_ip_addresses / nas_identifiers)"
            );
            return Err(DropReason::ForeignNas);
        }
        match r.event_timestamp {
            Some(ts) => {
                let age = Utc::now().timestamp() - i64::from(ts);
                if age > self.max_record_age.as_secs() as i64 {
                    tracing::warn!(%src, age_seconds = age, "radius: a record older than max_record_age; refused");
                    return Err(DropReason::StaleRecord);
                }
            }
            None if self.require_event_timestamp => {
                return Err(DropReason::MissingEventTimestamp);
            }
            None => {}
        }
        Ok(())
    }
}

/// What the replay guard knows a request by.
fn replay_record(r: &AccountingRequest<'_>, event: &BindingEvent) -> Option<Record> {
    Some(match event {
        // Never made by `to_binding_event`.
        BindingEvent::Binding(_) => return None,
        BindingEvent::Session(s) => Record::session(
            &s.nas,
            &s.session_id,
            match s.phase {
                SessionPhase::Start => 0,
                SessionPhase::Interim => 1,
                SessionPhase::Stop => 2,
            },
            r.event_timestamp,
            r.session_time,
        ),
        BindingEvent::NasReset { nas, .. } => Record::reset(nas, r.event_timestamp),
    })
}

async fn commit(
    mut rx: mpsc::Receiver<Pending>,
    sink: Arc<dyn AccountingSink>,
    socket: Arc<UdpSocket>,
    duplicates: Arc<Mutex<DuplicateCache>>,
    replays: Arc<Mutex<ReplayGuard>>,
    counters: Arc<Counters>,
    (window, max_batch): (Duration, usize),
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + window;
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if window.is_zero() {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(p)) => batch.push(p),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }

        let mut events = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        for p in batch {
            events.push(p.event);
            replies.push((p.key, p.response));
            records.push(p.record);
        }
        let n = events.len() as u64;
        let sink = sink.clone();
        counters.batches.fetch_add(1, Relaxed);
        let result = match tokio::task::spawn_blocking(move || sink.apply(events)).await {
            Ok(r) => r,
            Err(e) => Err(format!("the sink panicked: {e}")),
        };
        match result {
            Ok(()) => {
                counters.events.fetch_add(n, Relaxed);
                {
                    let mut d = lock(&duplicates);
                    for (key, _) in &replies {
                        d.answered(key);
                    }
                }
                {
                    let now = Utc::now().timestamp();
                    let mut g = lock(&replays);
                    for r in records.iter().flatten() {
                        g.stored(r, now);
                    }
                    counters.untracked_sessions.store(g.untracked, Relaxed);
                }
                // Answered on their own task, so the next batch is applied
                // while these go out.
                let (socket, counters) = (socket.clone(), counters.clone());
                tokio::spawn(async move {
                    for (key, response) in &replies {
                        send(&socket, &counters, response, key.src).await;
                    }
                });
            }
            Err(e) => {
                counters.sink_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, requests = n, "radius: the sink failed; requests left unanswered");
                let mut d = lock(&duplicates);
                for (key, _) in &replies {
                    d.forget(key);
                }
            }
        }
    }
}

async fn send(socket: &UdpSocket, counters: &Counters, response: &[u8], to: SocketAddr) {
    match socket.send_to(response, to).await {
        Ok(_) => {
            counters.answered.fetch_add(1, Relaxed);
        }
        Err(e) => {
            counters.send_errors.fetch_add(1, Relaxed);
            tracing::debug!(%to, error = %e, "radius: send failed");
        }
    }
}

/// A non-blocking UDP socket with a receive buffer of (up to) `buffer`
/// octets.
pub(crate) fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = s.set_recv_buffer_size(buffer) {
        tracing::warn!(error = %e, buffer, "radius: cannot size the receive buffer");
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error().is_some_and(
        |c| c == 113 /* EHOSTUNREACH */ || c == 101, /* ENETUNREACH */
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded state stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns a verified request from `src`, received at `now`, into what the
/// directory stores.
///
/// The time is Event-Timestamp when the NAS sent one; otherwise the time
/// of receipt less Acct-Delay-Time. Acct-Delay-Time is not subtracted from
/// Event-Timestamp: RFC 2869 §5.3 makes Event-Timestamp the time of the
/// event itself, and RFC 2866 §5.2 defines the delay against the time of
/// arrival. (Subtracting it from both would also date one event
/// differently in each resend, since a NAS updates Acct-Delay-Time when it
/// retries.)
pub fn to_binding_event(
    r: &AccountingRequest<'_>,
    src: IpAddr,
    now: DateTime<Utc>,
) -> Result<BindingEvent, DecodeError> {
    let nas = if let Some(ip) = r.nas_ip {
        ip.to_string()
    } else if let Some(ip) = r.nas_ipv6 {
        ip.to_string()
    } else if let Some(id) = r.nas_identifier {
        id.to_string()
    } else {
        src.to_canonical().to_string()
    };
    let at = match r.event_timestamp {
        Some(ts) => DateTime::from_timestamp(i64::from(ts), 0).unwrap_or(now),
        None => now - TimeDelta::seconds(i64::from(r.delay_time.unwrap_or(0))),
    };
    let phase = match r.status {
        Some(StatusType::Start) => SessionPhase::Start,
        Some(StatusType::InterimUpdate) => SessionPhase::Interim,
        Some(StatusType::Stop) => SessionPhase::Stop,
        Some(StatusType::AccountingOn | StatusType::AccountingOff) => {
            return Ok(BindingEvent::NasReset { nas, at });
        }
        None => return Err(DecodeError::MissingStatusType),
    };
    let session_id = r.session_id.ok_or(DecodeError::MissingSessionId)?;
    let subject = r
        .user_name
        .and_then(Subject::login)
        .ok_or(DecodeError::MissingUserName)?;
    let mut prefixes =
        Vec::with_capacity(1 + r.framed_ipv6_prefixes.len() + r.delegated_ipv6_prefixes.len());
    // 255.255.255.255 ("the user chooses") and 255.255.255.254 ("the NAS
    // chooses") are requests, not addresses (RFC 2865 §5.8).
    if let Some(ip) = r.framed_ip.filter(|ip| is_real_address(*ip)) {
        prefixes.push(IpNet::from(IpAddr::V4(ip)));
    }
    prefixes.extend(r.framed_ipv6_prefixes.iter().map(|&n| IpNet::V6(n)));
    prefixes.extend(r.delegated_ipv6_prefixes.iter().map(|&n| IpNet::V6(n)));
    let class = (!r.classes.is_empty()).then(|| {
        r.classes
            .iter()
            .map(hex::encode)
            .collect::<Vec<_>>()
            .join(",")
    });
    Ok(BindingEvent::Session(SessionEvent {
        phase,
        nas,
        session_id: session_id.to_string(),
        subject,
        prefixes,
        at,
        session_time: r.session_time,
        class,
    }))
}

fn is_real_address(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip == Ipv4Addr::new(255, 255, 255, 254))
}

/// The configured NASes: exact addresses in a map, networks by longest
/// prefix.
struct NasTable {
    exact: HashMap<IpAddr, Arc<NasConfig>, foldhash::fast::RandomState>,
    /// Longest prefix first.
    networks: Vec<(IpNet, Arc<NasConfig>)>,
}

impl NasTable {
    fn new(nas: &[NasConfig]) -> Result<NasTable, ConfigError> {
        let mut exact = HashMap::default();
        let mut networks: Vec<(IpNet, Arc<NasConfig>)> = Vec::new();
        for n in nas {
            if n.secret.is_empty() {
                return Err(ConfigError::EmptySecret(n.address));
            }
            let net = n.address.trunc();
            let dup = if net.prefix_len() == net.max_prefix_len() {
                exact.insert(net.addr(), Arc::new(n.clone())).is_some()
            } else if networks.iter().any(|(m, _)| *m == net) {
                true
            } else {
                networks.push((net, Arc::new(n.clone())));
                false
            };
            if dup {
                return Err(ConfigError::DuplicateNas(net));
            }
        }
        networks.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Ok(NasTable { exact, networks })
    }

    fn len(&self) -> usize {
        self.exact.len() + self.networks.len()
    }

    fn entry_for(&self, ip: IpAddr) -> Option<&NasConfig> {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if let Some(s) = self.exact.get(&ip) {
            return Some(s);
        }
        self.networks
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(_, s)| &**s)
    }

    #[cfg(test)]
    fn secret_for(&self, ip: IpAddr) -> Option<&[u8]> {
        self.entry_for(ip).map(NasConfig::secret)
    }
}

/// RFC 5080 §2.2.2: a retransmission has the same source address and
/// port, Identifier and Request Authenticator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DuplicateKey {
    src: SocketAddr,
    identifier: u8,
    authenticator: [u8; 16],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    New,
    InFlight,
    Answered,
}

/// Requests seen recently. Only their state is kept: an answer is rebuilt
/// from the retransmitted request, which is cheaper than keeping every
/// response.
struct DuplicateCache {
    map: HashMap<DuplicateKey, (u64, bool), foldhash::fast::RandomState>,
    /// Insertion order, for expiry; an entry whose generation no longer
    /// matches the map's was forgotten or replaced.
    order: VecDeque<(DuplicateKey, u64, Instant)>,
    generation: u64,
    window: Duration,
    capacity: usize,
}

impl DuplicateCache {
    fn new(window: Duration, capacity: usize) -> DuplicateCache {
        DuplicateCache {
            map: HashMap::default(),
            order: VecDeque::new(),
            generation: 0,
            window,
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` was seen; if not, remembers it as in flight.
    fn seen(&mut self, key: DuplicateKey, now: Instant) -> Seen {
        self.expire(now);
        if let Some(&(_, answered)) = self.map.get(&key) {
            return if answered {
                Seen::Answered
            } else {
                Seen::InFlight
            };
        }
        self.generation += 1;
        self.map.insert(key, (self.generation, false));
        self.order.push_back((key, self.generation, now));
        Seen::New
    }

    fn answered(&mut self, key: &DuplicateKey) {
        if let Some(e) = self.map.get_mut(key) {
            e.1 = true;
        }
    }

    fn forget(&mut self, key: &DuplicateKey) {
        self.map.remove(key);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(key, generation, at)) = self.order.front() {
            let old = now.saturating_duration_since(at) >= self.window;
            if !old && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|e| e.0 == generation) {
                self.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr;
    use crate::packet::PacketWriter;

    fn decode(bytes: &[u8]) -> AccountingRequest<'_> {
        AccountingRequest::decode(&Packet::parse(bytes).unwrap()).unwrap()
    }

    #[test]
    fn session_event_from_request() {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        w.u32(attr::ACCT_STATUS_TYPE, 1).unwrap();
        w.attribute(attr::USER_NAME, b" alice ").unwrap();
        w.attribute(attr::ACCT_SESSION_ID, b"S1").unwrap();
        w.attribute(attr::NAS_IDENTIFIER, b"bras-7").unwrap();
        w.attribute(attr::FRAMED_IP_ADDRESS, &[198, 51, 100, 7])
            .unwrap();
        w.ipv6_prefix(
            attr::DELEGATED_IPV6_PREFIX,
            "2001:db8:100::/56".parse().unwrap(),
        )
        .unwrap();
        w.attribute(attr::CLASS, &[0xca, 0xfe]).unwrap();
        w.u32(attr::EVENT_TIMESTAMP, 1_700_000_000).unwrap();
        w.u32(attr::ACCT_DELAY_TIME, 30).unwrap();
        let b = w.finish_accounting_request(b"s");
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let BindingEvent::Session(e) = to_binding_event(&decode(&b), src, now).unwrap() else {
            panic!("not a session event")
        };
        assert_eq!(e.phase, SessionPhase::Start);
        assert_eq!(e.nas, "bras-7");
        assert_eq!(e.session_id, "S1");
        assert_eq!(e.subject, Subject::login("alice").unwrap());
        assert_eq!(
            e.prefixes,
            [
                "198.51.100.7/32".parse::<IpNet>().unwrap(),
                "2001:db8:100::/56".parse().unwrap()
            ]
        );
        // Event-Timestamp as sent: the delay is not subtracted from it.
        assert_eq!(e.at.timestamp(), 1_700_000_000);
        assert_eq!(e.class.as_deref(), Some("cafe"));
    }

    #[test]
    fn time_and_nas_fallbacks() {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        w.u32(attr::ACCT_STATUS_TYPE, 7).unwrap();
        w.u32(attr::ACCT_DELAY_TIME, 30).unwrap();
        let b = w.finish_accounting_request(b"s");
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let src: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            to_binding_event(&decode(&b), src, now).unwrap(),
            BindingEvent::NasReset {
                nas: "192.0.2.1".into(),
                at: DateTime::from_timestamp(1_800_000_000 - 30, 0).unwrap()
            }
        );

        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        w.u32(attr::ACCT_STATUS_TYPE, 3).unwrap();
        w.attribute(attr::ACCT_SESSION_ID, b"S1").unwrap();
        w.attribute(attr::NAS_IP_ADDRESS, &[10, 0, 0, 1]).unwrap();
        w.attribute(attr::FRAMED_IP_ADDRESS, &[255, 255, 255, 254])
            .unwrap();
        let b = w.finish_accounting_request(b"s");
        assert_eq!(
            to_binding_event(&decode(&b), src, now).unwrap_err(),
            DecodeError::MissingUserName
        );
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        w.u32(attr::ACCT_STATUS_TYPE, 2).unwrap();
        w.attribute(attr::USER_NAME, b"u").unwrap();
        let b = w.finish_accounting_request(b"s");
        assert_eq!(
            to_binding_event(&decode(&b), src, now).unwrap_err(),
            DecodeError::MissingSessionId
        );
    }

    #[test]
    fn nas_table_longest_prefix() {
        let t = NasTable::new(&[
            NasConfig::new("10.0.0.0/8", "wide").unwrap(),
            NasConfig::new("10.1.0.0/16", "narrow").unwrap(),
            NasConfig::new("10.1.2.3", "exact").unwrap(),
            NasConfig::new("2001:db8::/32", "v6").unwrap(),
        ])
        .unwrap();
        let s = |ip: &str| t.secret_for(ip.parse().unwrap()).map(|s| s.to_vec());
        assert_eq!(s("10.1.2.3").unwrap(), b"exact");
        assert_eq!(s("::ffff:10.1.2.3").unwrap(), b"exact");
        assert_eq!(s("10.1.9.9").unwrap(), b"narrow");
        assert_eq!(s("10.9.9.9").unwrap(), b"wide");
        assert_eq!(s("2001:db8::1").unwrap(), b"v6");
        assert!(s("192.0.2.1").is_none());
        assert!(matches!(
            NasTable::new(&[
                NasConfig::new("10.1.2.3", "a").unwrap(),
                NasConfig::new("10.1.2.3/32", "b").unwrap()
            ]),
            Err(ConfigError::DuplicateNas(_))
        ));
        assert!(NasConfig::new("10.0.0.1", "").is_err());
        assert!(NasConfig::new("nas.example", "x").is_err());
        assert!(!format!("{:?}", NasConfig::new("10.0.0.1", "hush").unwrap()).contains("hush"));
    }

    #[test]
    fn duplicate_cache_expires_and_forgets() {
        let key = |i: u8| DuplicateKey {
            src: "127.0.0.1:1".parse().unwrap(),
            identifier: i,
            authenticator: [i; 16],
        };
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(10), 2);
        assert_eq!(c.seen(key(1), t0), Seen::New);
        assert_eq!(c.seen(key(1), t0), Seen::InFlight);
        c.answered(&key(1));
        assert_eq!(c.seen(key(1), t0), Seen::Answered);
        c.forget(&key(1));
        assert_eq!(c.seen(key(1), t0), Seen::New);
        // Capacity 2: a third key pushes the oldest out.
        assert_eq!(c.seen(key(2), t0), Seen::New);
        assert_eq!(c.seen(key(3), t0), Seen::New);
        assert!(c.map.len() <= 2);
        // Past the window everything is new again.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(c.seen(key(3), later), Seen::New);
    }
}
