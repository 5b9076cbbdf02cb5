//! The drill ISP's synthetic day: who its subscribers are, when each is
//! online, what they look up, who is infected and how each infected
//! subscriber behaves once notified.
//!
//! Everything here is a plan, computed from [`ScenarioConfig`] alone, so
//! that a seed gives the same ISP and the same day every time; the lab's
//! driver (`drive.rs`) plays the plan against `kanki serve`.

use std::net::Ipv4Addr;

/// Minutes in the synthetic day.
pub const DAY_MINUTES: u32 = 24 * 60;

/// What the synthetic ISP looks like. Each field has a default that shows
/// both loops within a minute at `--speed 60`.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    pub seed: u64,
    /// Subscribers in the directory (at most 62,500: each gets its own
    /// 127.x.y.z address).
    pub subscribers: u32,
    /// Share of subscribers who consent to be warned.
    pub consent_ratio: f64,
    /// Share of subscribers infected at some time of the day.
    pub infected_ratio: f64,
    /// Distribution sites the lab's feed lists.
    pub listed_sites: u32,
    /// DNS queries each online subscriber makes per hour of the day.
    pub queries_per_hour: u32,
    /// Share of queries that are for a listed name.
    pub listed_query_ratio: f64,
    /// Share of warning pages on which the subscriber proceeds once.
    pub proceed_ratio: f64,
    /// Sinkhole reports arrive every this many minutes of the day.
    pub report_every_minutes: u32,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            seed: 1,
            subscribers: 200,
            consent_ratio: 0.7,
            infected_ratio: 0.1,
            listed_sites: 40,
            queries_per_hour: 30,
            listed_query_ratio: 0.03,
            proceed_ratio: 0.25,
            report_every_minutes: 15,
        }
    }
}

/// The largest number of subscribers the 127.0.0.0/8 plan addresses.
pub const MAX_SUBSCRIBERS: u32 = 250 * 250;

/// How an infected subscriber answers a notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Acknowledges on the countermeasure site and cleans up.
    Cleans,
    /// Cleans up, and is infected again some hours later.
    CleansThenReinfected,
    /// Never acknowledges; the machine stays infected.
    Ignores,
}

/// One infection in the plan.
#[derive(Clone, Debug)]
pub struct Infection {
    pub family: &'static str,
    /// Minute of the day from which the sinkhole sees the machine.
    pub from_minute: u32,
    pub behaviour: Behaviour,
    /// Minutes between the notice arriving and the acknowledgement.
    pub ack_after_minutes: u32,
    /// Minutes between cleaning up and the reinfection.
    pub reinfected_after_minutes: u32,
}

#[derive(Clone, Debug)]
pub struct LabSubscriber {
    pub id: String,
    pub email: String,
    pub language: &'static str,
    pub consent: bool,
    /// Its own loopback address: the RADIUS Framed-IP-Address of its
    /// sessions and the source of its DNS queries and page visits.
    pub address: Ipv4Addr,
    /// Online intervals of the day, in minutes `[start, end)`, in order.
    pub sessions: Vec<(u32, u32)>,
    pub infection: Option<Infection>,
}

impl LabSubscriber {
    /// The session (its index) open at `minute`, if any.
    pub fn session_at(&self, minute: u32) -> Option<usize> {
        self.sessions
            .iter()
            .position(|&(s, e)| s <= minute && minute < e)
    }
}

/// The planned day.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub config: ScenarioConfig,
    pub subscribers: Vec<LabSubscriber>,
    /// Names the feed lists as malware distribution sites.
    pub listed: Vec<String>,
    /// Ordinary names subscribers look up.
    pub ordinary: Vec<String>,
}

const FAMILIES: [&str; 4] = ["mirai", "emotet", "qakbot", "gamut"];
const ORDINARY: [&str; 12] = [
    "www.example.jp",
    "news.example.jp",
    "mail.example.jp",
    "shop.example.com",
    "video.example.net",
    "search.example.com",
    "bank.example.jp",
    "weather.example.jp",
    "maps.example.com",
    "cdn.example.net",
    "sns.example.com",
    "games.example.org",
];

impl ScenarioConfig {
    /// Plans the day. The same configuration gives the same plan.
    pub fn build(&self) -> anyhow::Result<Scenario> {
        anyhow::ensure!(
            (1..=MAX_SUBSCRIBERS).contains(&self.subscribers),
            "--subscribers must be between 1 and {MAX_SUBSCRIBERS}"
        );
        let mut rng = Rng::new(self.seed);
        let listed = (0..self.listed_sites.max(1))
            .map(|i| format!("dl{i}.{}.lab-malware.example", rng.word()))
            .collect();
        let mut subscribers = Vec::with_capacity(self.subscribers as usize);
        let mut infected = 0u32;
        for i in 0..self.subscribers {
            let id = format!("LAB{:05}", i + 1);
            let consent = rng.chance(self.consent_ratio);
            // The first infected subscribers are seen early in the day,
            // so a newcomer sees a case within a minute; at least one of
            // them consents (the warning loop) and the behaviours turn in
            // order, so that a short run has each of them.
            let infection = (i == 0 || rng.chance(self.infected_ratio)).then(|| {
                let behaviour = match infected % 3 {
                    0 => Behaviour::CleansThenReinfected,
                    1 => Behaviour::Cleans,
                    _ => Behaviour::Ignores,
                };
                let from_minute = if infected < 3 {
                    0
                } else {
                    rng.below(DAY_MINUTES - 240)
                };
                infected += 1;
                Infection {
                    family: FAMILIES[rng.below(FAMILIES.len() as u32) as usize],
                    from_minute,
                    behaviour,
                    ack_after_minutes: 15 + rng.below(45),
                    reinfected_after_minutes: 240 + rng.below(60),
                }
            });
            subscribers.push(LabSubscriber {
                email: format!("{}@subscribers.lab.example", id.to_lowercase()),
                language: if rng.chance(0.8) { "ja" } else { "en" },
                consent: consent || i == 0,
                address: Ipv4Addr::new(127, 1 + (i / 250) as u8, 0, 1 + (i % 250) as u8),
                sessions: plan_sessions(&mut rng, infection.as_ref()),
                infection,
                id,
            });
        }
        Ok(Scenario {
            config: self.clone(),
            subscribers,
            listed,
            ordinary: ORDINARY.iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// Online intervals over the day: sessions of 2 to 8 hours with gaps of
/// a quarter hour to 2 hours. Most subscribers are online at midnight
/// (always-on routers); an infected machine stays online while infected
/// (a bot keeps its router's session up), with short reconnects.
fn plan_sessions(rng: &mut Rng, infection: Option<&Infection>) -> Vec<(u32, u32)> {
    let mut sessions = Vec::new();
    let mut t = if infection.is_some() || rng.chance(0.8) {
        0
    } else {
        rng.below(180)
    };
    while t < DAY_MINUTES {
        let len = 120 + rng.below(360);
        let end = (t + len).min(DAY_MINUTES);
        sessions.push((t, end));
        let gap = if infection.is_some() {
            1
        } else {
            15 + rng.below(105)
        };
        t = end + gap;
    }
    sessions
}

impl Scenario {
    /// The subscriber of id `id`.
    pub fn subscriber(&self, id: &str) -> Option<&LabSubscriber> {
        self.subscribers.iter().find(|s| s.id == id)
    }

    /// The subscribers' CSV, as `kanki subscribers import` and the API take it.
    pub fn subscribers_csv(&self) -> String {
        let mut csv = String::from("id,email,language,consent\n");
        for s in &self.subscribers {
            csv.push_str(&format!(
                "{},{},{},{}\n",
                s.id,
                s.email,
                s.language,
                if s.consent { "yes" } else { "no" }
            ));
        }
        csv
    }

    /// The feed the lab's HTTP server serves: one listed name a line.
    pub fn feed(&self) -> String {
        let mut text = String::from("# kanki lab: malware distribution sites\n");
        for n in &self.listed {
            text.push_str(n);
            text.push('\n');
        }
        text
    }
}

/// A small deterministic generator (SplitMix64): the plan must be the
/// same for a seed on every platform and every version of a dependency,
/// which a general-purpose RNG crate does not promise.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6b61_6e6b_695f_6c61)
    }

    /// A generator for one (day, minute, subscriber) decision stream.
    pub fn derive(seed: u64, parts: &[u64]) -> Rng {
        let mut r = Rng::new(seed);
        for p in parts {
            r.0 ^= p.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            r.next_u64();
        }
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn word(&mut self) -> String {
        const SYL: [&str; 12] = [
            "ka", "ki", "ku", "ke", "ko", "sa", "shi", "ta", "na", "mo", "ri", "zu",
        ];
        (0..3).map(|_| SYL[self.below(12) as usize]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_day_and_another_seed_another() {
        let c = ScenarioConfig::default();
        let (a, b) = (c.build().unwrap(), c.build().unwrap());
        assert_eq!(a.subscribers_csv(), b.subscribers_csv());
        assert_eq!(a.listed, b.listed);
        assert_eq!(a.subscribers[7].sessions, b.subscribers[7].sessions);
        let other = ScenarioConfig { seed: 2, ..c }.build().unwrap();
        assert_ne!(a.listed, other.listed);
    }

    #[test]
    fn every_behaviour_is_planned_early_and_addresses_are_distinct() {
        let s = ScenarioConfig {
            subscribers: 1000,
            ..Default::default()
        }
        .build()
        .unwrap();
        let early: Vec<Behaviour> = s
            .subscribers
            .iter()
            .filter_map(|s| s.infection.as_ref())
            .filter(|i| i.from_minute == 0)
            .map(|i| i.behaviour)
            .collect();
        for b in [
            Behaviour::Cleans,
            Behaviour::CleansThenReinfected,
            Behaviour::Ignores,
        ] {
            assert!(early.contains(&b), "{b:?} not early: {early:?}");
        }
        let mut addrs: Vec<_> = s.subscribers.iter().map(|s| s.address).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 1000);
        assert!(s.subscribers[0].consent);
        // Infected machines are online from midnight on.
        for sub in s.subscribers.iter().filter(|s| s.infection.is_some()) {
            assert_eq!(sub.session_at(0), Some(0));
        }
        assert!(
            ScenarioConfig {
                subscribers: MAX_SUBSCRIBERS + 1,
                ..Default::default()
            }
            .build()
            .is_err()
        );
    }
}
