//! Plays the synthetic day against `kanki serve`, through its real
//! listeners only: RADIUS accounting packets from the NAS, DNS queries
//! and warning-page visits from each subscriber's own loopback address,
//! sinkhole reports posted to the API, acknowledgements on the
//! countermeasure site.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use kanki_radius::attr;
use kanki_radius::packet::{Packet, PacketWriter, code};
use serde::{Deserialize, Serialize};

use super::config::LabPorts;
use super::peers::Delivered;
use super::scenario::{Behaviour, DAY_MINUTES, LabSubscriber, Rng, Scenario};

/// What the lab did and saw, for the status line.
#[derive(Default)]
pub struct Counters {
    pub radius: AtomicU64,
    pub radius_lost: AtomicU64,
    pub queries: AtomicU64,
    pub warned: AtomicU64,
    pub proceeded: AtomicU64,
    pub reports: AtomicU64,
    pub report_rows: AtomicU64,
    pub cases_opened: AtomicU64,
    pub notices: AtomicU64,
    pub acks: AtomicU64,
    pub reinfections: AtomicU64,
    pub errors: AtomicU64,
}

/// Where an infected subscriber is, as the lab plays it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Seen by the sinkhole; no notice read yet.
    Infected,
    /// Read notice `reference`; acknowledges at minute `ack_at`.
    Notified { reference: String, ack_at: u64 },
    /// Cleaned up; infected again at minute `reinfect_at`.
    Clean { reinfect_at: Option<u64> },
}

/// What a restart resumes from (`lab.json` in the lab's directory).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub seed: u64,
    pub subscribers: u32,
    /// Minutes of synthetic time played since the lab's first start.
    pub minute: u64,
    pub radius_secret: String,
    pub phases: HashMap<String, Phase>,
    /// Subscribers infected again once already (they are not a third time).
    pub reinfected: Vec<String>,
}

pub struct Driver {
    pub scenario: Arc<Scenario>,
    pub state: LabState,
    pub counters: Arc<Counters>,
    ports: LabPorts,
    api: reqwest::Client,
    token: String,
    nas: tokio::net::UdpSocket,
    /// When each online subscriber's current session was started (real
    /// time), so that a report names it only once the index has it.
    started: HashMap<usize, Instant>,
    /// Bounds the DNS queries and page visits in flight.
    in_flight: Arc<tokio::sync::Semaphore>,
    first_step: bool,
}

/// How long after a RADIUS Start the lab waits before a sinkhole report
/// names that subscriber: the DNS front and the attribution see a new
/// binding after `directory.refresh_every`.
const BINDING_SETTLE: Duration = Duration::from_secs(2);

impl Driver {
    pub async fn new(
        scenario: Arc<Scenario>,
        state: LabState,
        ports: LabPorts,
        token: String,
    ) -> anyhow::Result<Driver> {
        let nas = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        nas.connect(ports.radius).await?;
        Ok(Driver {
            scenario,
            state,
            counters: Arc::new(Counters::default()),
            api: api_client()?,
            token,
            ports,
            nas,
            started: HashMap::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(64)),
            first_step: true,
        })
    }

    /// Imports the scenario's subscribers through the API (an upsert: a
    /// restart changes nothing).
    pub async fn import_subscribers(&self) -> anyhow::Result<()> {
        let r = self
            .api
            .post(format!("{}/api/v1/subscribers", self.ports.api_url()))
            .bearer_auth(&self.token)
            .header("content-type", "text/csv")
            .body(self.scenario.subscribers_csv())
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "importing the lab's subscribers: HTTP {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Plays minute `self.state.minute` of the synthetic time, then moves on.
    /// `queries` is false while catching up (a slow machine): sessions
    /// and reports are played, lookups only for the minutes on time.
    pub async fn step(&mut self, queries: bool) -> anyhow::Result<()> {
        let abs = self.state.minute;
        let m = (abs % u64::from(DAY_MINUTES)) as u32;
        let day = abs / u64::from(DAY_MINUTES);
        self.sessions(day, m).await;
        self.infections(abs);
        if queries {
            self.lookups(abs, m);
        }
        self.acknowledge(abs).await;
        if m.is_multiple_of(self.scenario.config.report_every_minutes.max(1))
            && let Err(e) = self.report(abs, m).await
        {
            self.counters.errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %format!("{e:#}"), "lab: a sinkhole report was not taken");
        }
        self.state.minute += 1;
        self.first_step = false;
        Ok(())
    }

    /// RADIUS Start, Interim-Update and Stop for the sessions that begin,
    /// go on and end at minute `m` of day `day`.
    async fn sessions(&mut self, day: u64, m: u32) {
        let mut packets = Vec::new();
        let now = unix_now();
        let scenario = self.scenario.clone();
        for (i, s) in scenario.subscribers.iter().enumerate() {
            let (prev_day, prev_m) = if m == 0 {
                (day.wrapping_sub(1), DAY_MINUTES - 1)
            } else {
                (day, m - 1)
            };
            let fresh = self.first_step || (day == 0 && m == 0);
            let was = (!fresh).then(|| s.session_at(prev_m)).flatten();
            let is = s.session_at(m);
            let same = was.is_some() && was == is && m != 0;
            if let Some(k) = was.filter(|_| !same) {
                packets.push(session_packet(s, prev_day, k, 2, now));
            }
            if let Some(k) = is {
                if !same {
                    packets.push(session_packet(s, day, k, 1, now));
                    self.started.insert(i, Instant::now());
                } else if (m - s.sessions[k].0).is_multiple_of(60) {
                    packets.push(session_packet(s, day, k, 3, now));
                }
            } else {
                self.started.remove(&i);
            }
        }
        let sent = packets.len() as u64;
        let lost = self.send_radius(packets).await;
        self.counters.radius.fetch_add(sent - lost, Relaxed);
        self.counters.radius_lost.fetch_add(lost, Relaxed);
    }

    /// Sends Accounting-Requests in windows of up to 128 outstanding,
    /// resending those unanswered (twice); returns how many stayed
    /// unanswered.
    async fn send_radius(&self, packets: Vec<PacketSpec>) -> u64 {
        let secret = self.state.radius_secret.as_bytes();
        let mut lost = 0;
        for chunk in packets.chunks(128) {
            let mut pending: HashMap<u8, Vec<u8>> = chunk
                .iter()
                .enumerate()
                .map(|(id, p)| (id as u8, p.encode(id as u8, secret)))
                .collect();
            for _attempt in 0..3 {
                for bytes in pending.values() {
                    let _ = self.nas.send(bytes).await;
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                let mut buf = [0u8; 4096];
                while !pending.is_empty() {
                    let Ok(Ok(n)) =
                        tokio::time::timeout_at(deadline, self.nas.recv(&mut buf)).await
                    else {
                        break;
                    };
                    let Ok(p) = Packet::parse(&buf[..n]) else {
                        continue;
                    };
                    let id = p.identifier();
                    let ok = pending.get(&id).is_some_and(|req| {
                        let mut auth = [0u8; 16];
                        auth.copy_from_slice(&req[4..20]);
                        p.code() == code::ACCOUNTING_RESPONSE
                            && p.verify_accounting_response(&auth, secret)
                    });
                    if ok {
                        pending.remove(&id);
                    }
                }
                if pending.is_empty() {
                    break;
                }
            }
            lost += pending.len() as u64;
        }
        lost
    }

    /// Reinfections that are due.
    fn infections(&mut self, abs: u64) {
        for (id, phase) in self.state.phases.iter_mut() {
            if let Phase::Clean {
                reinfect_at: Some(t),
                ..
            } = phase
                && *t <= abs
            {
                *phase = Phase::Infected;
                self.state.reinfected.push(id.clone());
                self.counters.reinfections.fetch_add(1, Relaxed);
            }
        }
    }

    /// Whether subscriber `s` is infected (seen by the sinkhole) at `abs`.
    fn infected(&self, s: &LabSubscriber, abs: u64) -> bool {
        let Some(inf) = &s.infection else {
            return false;
        };
        if abs < u64::from(inf.from_minute) {
            return false;
        }
        !matches!(self.state.phases.get(&s.id), Some(Phase::Clean { .. }))
    }

    /// This minute's DNS queries, each from its subscriber's address, and
    /// the warning pages they lead to.
    fn lookups(&self, abs: u64, m: u32) {
        let c = &self.scenario.config;
        let per_minute = f64::from(c.queries_per_hour) / 60.0;
        for (i, s) in self.scenario.subscribers.iter().enumerate() {
            if s.session_at(m).is_none() {
                continue;
            }
            let mut rng = Rng::derive(c.seed, &[abs, i as u64]);
            // Poisson-like: whole queries, then the fraction by chance.
            let mut n = per_minute.floor() as u32;
            if rng.chance(per_minute.fract()) {
                n += 1;
            }
            for _ in 0..n {
                let listed = rng.chance(c.listed_query_ratio);
                let name = if listed {
                    &self.scenario.listed[rng.below(self.scenario.listed.len() as u32) as usize]
                } else {
                    &self.scenario.ordinary[rng.below(self.scenario.ordinary.len() as u32) as usize]
                };
                let proceed = rng.chance(c.proceed_ratio);
                let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                    // The machine is behind: this query is not made.
                    continue;
                };
                let visit = Visit {
                    from: s.address,
                    name: name.clone(),
                    proceed,
                    language: s.language,
                    ports: self.ports.clone(),
                    counters: self.counters.clone(),
                };
                tokio::spawn(async move {
                    visit.run().await;
                    drop(permit);
                });
            }
        }
    }

    /// Subscribers who read their notice acknowledge it when their time
    /// comes, on the countermeasure site, from their own address.
    async fn acknowledge(&mut self, abs: u64) {
        let due: Vec<(String, String)> = self
            .state
            .phases
            .iter()
            .filter_map(|(id, p)| match p {
                Phase::Notified { reference, ack_at } if *ack_at <= abs => {
                    Some((id.clone(), reference.clone()))
                }
                _ => None,
            })
            .collect();
        for (id, reference) in due {
            let Some(s) = self.scenario.subscriber(&id) else {
                continue;
            };
            let (address, infection) = (s.address, s.infection.clone());
            let acked = self.post_ack(address, &reference).await;
            let Some(inf) = infection else { continue };
            match acked {
                Ok(()) => {
                    self.counters.acks.fetch_add(1, Relaxed);
                    let again = inf.behaviour == Behaviour::CleansThenReinfected
                        && !self.state.reinfected.contains(&id);
                    self.state.phases.insert(
                        id,
                        Phase::Clean {
                            reinfect_at: again
                                .then(|| abs + u64::from(inf.reinfected_after_minutes)),
                        },
                    );
                }
                Err(e) => {
                    // A notice of a case already resolved or closed: the
                    // subscriber cleans up all the same.
                    tracing::debug!(error = %format!("{e:#}"), "lab: acknowledgement refused");
                    self.state
                        .phases
                        .insert(id, Phase::Clean { reinfect_at: None });
                }
            }
        }
    }

    async fn post_ack(&self, from: Ipv4Addr, reference: &str) -> anyhow::Result<()> {
        let client = subscriber_client(from)?;
        let r = client
            .post(format!("{}/ack", self.ports.countermeasures_url()))
            .form(&[("reference", reference)])
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "HTTP {}", r.status());
        Ok(())
    }

    /// A mail reached the lab's mail server: a notice to subscribers, or
    /// one to a compromised site's contact (not counted as a notice).
    pub fn delivered(&mut self, d: Delivered) {
        let to_subscriber =
            d.to.iter()
                .any(|to| self.scenario.subscribers.iter().any(|s| &s.email == to));
        if to_subscriber {
            self.counters.notices.fetch_add(1, Relaxed);
        }
        let abs = self.state.minute;
        for to in &d.to {
            let Some(s) = self.scenario.subscribers.iter().find(|s| &s.email == to) else {
                continue;
            };
            let (Some(inf), Some(reference)) = (&s.infection, &d.reference) else {
                continue;
            };
            if inf.behaviour == Behaviour::Ignores {
                continue;
            }
            let phase = self
                .state
                .phases
                .entry(s.id.clone())
                .or_insert(Phase::Infected);
            if *phase == Phase::Infected {
                *phase = Phase::Notified {
                    reference: reference.clone(),
                    ack_at: abs + u64::from(inf.ack_after_minutes),
                };
            }
        }
    }

    /// The sinkhole's report of the infected subscribers online now (two
    /// connections each to the C&C sinkhole), posted to the API as a
    /// Shadowserver `event4_sinkhole` report.
    async fn report(&mut self, abs: u64, m: u32) -> anyhow::Result<()> {
        let now = chrono::Utc::now();
        let at = now.format("%Y-%m-%d %H:%M:%S").to_string();
        let mut csv = String::from(
            "\"timestamp\",\"protocol\",\"src_ip\",\"src_port\",\"dst_ip\",\"dst_port\",\"infection\",\"family\",\"tag\"\n",
        );
        let mut rows = 0u64;
        let mut rng = Rng::derive(self.scenario.config.seed, &[abs, 0x5157]);
        for (i, s) in self.scenario.subscribers.iter().enumerate() {
            let settled = self
                .started
                .get(&i)
                .is_some_and(|t| t.elapsed() >= BINDING_SETTLE);
            if !settled || s.session_at(m).is_none() || !self.infected(s, abs) {
                continue;
            }
            let family = s.infection.as_ref().map_or("unknown", |i| i.family);
            for _ in 0..2 {
                csv.push_str(&format!(
                    "\"{at}\",\"tcp\",\"{}\",{},\"198.51.100.{}\",443,\"{family}\",\"{family}\",\n",
                    s.address,
                    32768 + rng.below(28000),
                    1 + rng.below(200),
                ));
                rows += 1;
            }
        }
        if rows == 0 {
            return Ok(());
        }
        let name = format!("{}-event4_sinkhole-asn-lab.csv", now.format("%Y-%m-%d"));
        let r = self
            .api
            .post(format!(
                "{}/api/v1/events?format=shadowserver&name={name}",
                self.ports.api_url()
            ))
            .bearer_auth(&self.token)
            .body(csv)
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "HTTP {status}: {body}");
        self.counters.reports.fetch_add(1, Relaxed);
        self.counters.report_rows.fetch_add(rows, Relaxed);
        self.counters
            .cases_opened
            .fetch_add(body["cases_opened"].as_u64().unwrap_or(0), Relaxed);
        Ok(())
    }

    /// One line: where the day is and what both loops did.
    pub fn status(&self) -> String {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Relaxed);
        let abs = self.state.minute;
        let m = abs % u64::from(DAY_MINUTES);
        format!(
            "day {} {:02}:{:02} | prevention: queries {} warned {} proceeded {} | removal: RADIUS {} reports {} ({} rows) cases {} notices {} acks {} reinfections {}{}",
            abs / u64::from(DAY_MINUTES) + 1,
            m / 60,
            m % 60,
            g(&c.queries),
            g(&c.warned),
            g(&c.proceeded),
            g(&c.radius),
            g(&c.reports),
            g(&c.report_rows),
            g(&c.cases_opened),
            g(&c.notices),
            g(&c.acks),
            g(&c.reinfections),
            match (g(&c.radius_lost), g(&c.errors)) {
                (0, 0) => String::new(),
                (l, e) => format!(" | lost RADIUS {l} errors {e}"),
            }
        )
    }
}

/// One Accounting-Request to build.
struct PacketSpec {
    status: u32,
    user: String,
    session: String,
    address: Ipv4Addr,
    at: u32,
    session_time: Option<u32>,
}

impl PacketSpec {
    fn encode(&self, identifier: u8, secret: &[u8]) -> Vec<u8> {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, identifier);
        // Every value here fits its attribute.
        let _ = w.u32(attr::ACCT_STATUS_TYPE, self.status);
        let _ = w.attribute(attr::USER_NAME, self.user.as_bytes());
        let _ = w.attribute(attr::NAS_IP_ADDRESS, &[127, 0, 0, 1]);
        let _ = w.attribute(attr::ACCT_SESSION_ID, self.session.as_bytes());
        let _ = w.attribute(attr::FRAMED_IP_ADDRESS, &self.address.octets());
        let _ = w.u32(attr::EVENT_TIMESTAMP, self.at);
        let _ = w.u32(attr::ACCT_DELAY_TIME, 0);
        if let Some(t) = self.session_time {
            let _ = w.u32(attr::ACCT_SESSION_TIME, t);
        }
        w.finish_accounting_request(secret)
    }
}

/// Session `k` of subscriber `s` on day `day`; status 1 Start, 2 Stop,
/// 3 Interim-Update. The session id is the same for every packet of a
/// session, also after a restart of the lab (the store keeps sessions by
/// NAS and id, so a Start sent again changes nothing).
fn session_packet(s: &LabSubscriber, day: u64, k: usize, status: u32, now: u32) -> PacketSpec {
    PacketSpec {
        status,
        user: s.id.clone(),
        session: format!("{}-d{day}-s{k}", s.id),
        address: s.address,
        at: now,
        session_time: (status != 1).then_some(0),
    }
}

fn unix_now() -> u32 {
    chrono::Utc::now().timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

fn api_client() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// A client whose connections come from a subscriber's own address.
fn subscriber_client(from: Ipv4Addr) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// One subscriber looking up a name, and visiting the warning page when
/// the DNS front sends it there.
struct Visit {
    from: Ipv4Addr,
    name: String,
    proceed: bool,
    language: &'static str,
    ports: LabPorts,
    counters: Arc<Counters>,
}

impl Visit {
    async fn run(self) {
        let answer = match dns_query(self.from, self.ports.dns, &self.name).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, name = %self.name, "lab: DNS query failed");
                self.counters.errors.fetch_add(1, Relaxed);
                return;
            }
        };
        self.counters.queries.fetch_add(1, Relaxed);
        // The front's warning address: a consenting subscriber asked for
        // a listed name.
        if answer != Some(Ipv4Addr::LOCALHOST) {
            return;
        }
        self.counters.warned.fetch_add(1, Relaxed);
        if let Err(e) = self.warning_page().await {
            tracing::debug!(error = %format!("{e:#}"), "lab: warning page visit failed");
            self.counters.errors.fetch_add(1, Relaxed);
        }
    }

    async fn warning_page(&self) -> anyhow::Result<()> {
        let client = subscriber_client(self.from)?;
        let host = format!("{}:{}", self.name, self.ports.warning.port());
        let base = format!("http://{}", self.ports.warning);
        let page = client
            .get(format!("{base}/download/setup.exe"))
            .header("host", &host)
            .header("accept-language", self.language)
            .send()
            .await?
            .text()
            .await?;
        if !self.proceed {
            return Ok(());
        }
        let token = attr_after(&page, "name=\"token\"", "value")
            .ok_or_else(|| anyhow::anyhow!("no proceed token on the warning page"))?;
        let r = client
            .post(format!("{base}/_kanki/proceed"))
            .header("host", &host)
            .header("origin", format!("http://{host}"))
            .form(&[
                ("path", "/download/setup.exe"),
                ("token", token.as_str()),
                ("lang", self.language),
            ])
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 303, "proceed: HTTP {}", r.status());
        self.counters.proceeded.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// The value of the first `attr="..."` after `marker` in a page.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let start = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let len = rest[start..].find('"')?;
    Some(rest[start..start + len].replace("&amp;", "&"))
}

/// An A query for `name` from `from` to the DNS front; the first A record
/// of the answer.
async fn dns_query(
    from: Ipv4Addr,
    front: SocketAddr,
    name: &str,
) -> anyhow::Result<Option<Ipv4Addr>> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let socket = tokio::net::UdpSocket::bind((from, 0)).await?;
    socket.connect(front).await?;
    let mut q = Message::query();
    let id = (unix_now() as u16) ^ (u16::from(from.octets()[3]) << 8) ^ name.len() as u16;
    q.metadata.id = id;
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    socket.send(&q.to_vec()?).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf)).await??;
    let m = Message::from_vec(&buf[..n])?;
    anyhow::ensure!(m.metadata.id == id, "an answer to another query");
    Ok(m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    }))
}
