//! kanki's crawler: a honeyclient that follows seed URLs along the chain
//! *entrance site → redirects → exploit site → distribution site* and keeps
//! what it saw as evidence an operator can defend.
//!
//! A crawl of one seed under one profile is a [`Tree`] of [`Node`]s, each
//! reached from its parent by a typed edge ([`EdgeKind`]) and carrying the
//! facts of its response ([`Fetched`]), its [`Triage`] and its [`Verdict`].
//! Under several profiles the trees are compared for cloaking
//! ([`CloakingSignal`]). The pieces, in the order a crawl uses them:
//!
//! - [`guard`]: the SSRF guard (resolve, check, pin);
//! - [`fetch`]: one request under a profile, with limits;
//! - [`extract`] and [`js`]: the typed edges out of a response;
//! - [`triage`] and [`yara`]: what a body is;
//! - [`verdict`]: what a node is, with reasons;
//! - [`lab`]: the loopback lab of realistic chains for tests and benchmarks.

pub mod extract;
pub mod fetch;
pub mod guard;
pub mod js;
pub mod lab;
pub mod notice;
mod render;
mod tls;
pub mod triage;
pub mod verdict;
pub mod yara;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kanki_config::CrawlerConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use url::Url;

pub use extract::{EdgeKind, Link};
pub use fetch::{Fetched, Fetcher};
pub use render::render_text;
pub use tls::CertFacts;
pub use triage::{HashList, Magic, Triage, Triager};
pub use verdict::Verdict;

/// One response of a crawl and how the crawler got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Index in the tree's nodes; children come after their parent.
    pub id: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    pub edge: EdgeKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edge_flags: Vec<String>,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// Levels of embedded content (frames, scripts, objects) above it.
    pub depth: u32,
    /// Redirects in a row that led to it.
    pub hops: u32,
    /// Milliseconds from the start of the crawl to its request.
    pub started_ms: u64,
    pub fetch: Fetched,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<Triage>,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl Node {
    fn pending(
        id: usize,
        parent: Option<usize>,
        link: &Link,
        referer: Option<String>,
        depth: u32,
        hops: u32,
    ) -> Node {
        Node {
            id,
            parent,
            edge: link.edge,
            edge_flags: link.flags.clone(),
            url: link.url.clone(),
            referer,
            depth,
            hops,
            started_ms: 0,
            fetch: Fetched::default(),
            triage: None,
            verdict: Verdict::Unknown,
            reasons: Vec::new(),
        }
    }
}

/// The crawl of one seed under one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub seed: String,
    pub profile: String,
    pub started_at: DateTime<Utc>,
    pub elapsed_ms: u64,
    /// The worst verdict of its nodes.
    pub verdict: Verdict,
    /// Why the crawl ended before every edge was followed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub nodes: Vec<Node>,
}

/// Two profiles saw different things at the same seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloakingSignal {
    pub profiles: [String; 2],
    pub verdicts: [Verdict; 2],
    /// URLs reached under the first profile only, and under the second only.
    pub only_first: Vec<String>,
    pub only_second: Vec<String>,
}

/// A seed crawled under one or more profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlReport {
    pub seed: String,
    /// The worst verdict of every tree.
    pub verdict: Verdict,
    pub trees: Vec<Tree>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cloaking: Vec<CloakingSignal>,
}

/// One host's slots for requests in flight, and when it was last asked.
type HostSlot = (Arc<Semaphore>, Arc<tokio::sync::Mutex<Option<Instant>>>);

/// Requests in flight per host, and when each host was last asked.
struct HostGate {
    per_host: usize,
    delay: Duration,
    hosts: Mutex<HashMap<String, HostSlot>>,
}

impl HostGate {
    fn slot(&self, host: &str) -> HostSlot {
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (s, _)| Arc::strong_count(s) > 1);
        }
        map.entry(host.to_string())
            .or_insert_with(|| {
                (
                    Arc::new(Semaphore::new(self.per_host)),
                    Arc::new(tokio::sync::Mutex::new(None)),
                )
            })
            .clone()
    }
}

struct Inner {
    config: CrawlerConfig,
    fetchers: HashMap<String, Arc<Fetcher>>,
    triager: Triager,
    gate: HostGate,
    in_flight: Semaphore,
}

/// The crawler: fetchers per profile, the triage rules, the limits.
#[derive(Clone)]
pub struct Crawler {
    inner: Arc<Inner>,
}

/// What a finished fetch hands back to the crawl loop.
struct Done {
    id: usize,
    started_ms: u64,
    fetch: Fetched,
    triage: Option<Triage>,
    links: Vec<Link>,
}

impl Crawler {
    /// Builds fetchers for every configured and built-in profile, compiles
    /// the YARA rules and reads the hash lists.
    pub fn new(config: &CrawlerConfig) -> Result<Crawler, String> {
        let rules = yara::Rules::load(&config.yara_rules)?;
        let (known_bad, bad_lines) = HashList::load(&config.known_bad_hashes)?;
        if bad_lines > 0 {
            tracing::warn!(
                bad_lines,
                "lines of the known-bad hash lists that are not a SHA-256 were ignored"
            );
        }
        let triager = Triager::new(
            rules,
            known_bad,
            config.archive_depth,
            config.yara_timeout.0,
        );
        let mut fetchers = HashMap::new();
        let names: BTreeSet<String> = kanki_config::builtin_profiles()
            .into_iter()
            .map(|p| p.name)
            .chain(config.profile.iter().map(|p| p.name.clone()))
            .collect();
        for name in names {
            let p = config.profile_named(&name).expect("listed above");
            fetchers.insert(name, Arc::new(Fetcher::new(config, p)?));
        }
        Ok(Crawler {
            inner: Arc::new(Inner {
                config: config.clone(),
                fetchers,
                triager,
                gate: HostGate {
                    per_host: config.per_host_concurrency as usize,
                    delay: config.host_delay.0,
                    hosts: Mutex::new(HashMap::new()),
                },
                in_flight: Semaphore::new(config.concurrency as usize),
            }),
        })
    }

    /// How many YARA rules and known-bad hashes triage uses.
    pub fn rule_counts(&self) -> (usize, usize) {
        let t = &self.inner.triager;
        (t.rules.as_ref().map_or(0, |r| r.len()), t.known_bad.len())
    }

    /// The fetcher of a profile.
    pub fn fetcher(&self, profile: &str) -> Option<Arc<Fetcher>> {
        self.inner.fetchers.get(profile).cloned()
    }

    /// The profiles a crawl uses when none are named.
    pub fn default_profiles(&self) -> Vec<String> {
        self.inner.config.profiles.clone()
    }

    /// Crawls `seed` under each profile (the configured ones when empty)
    /// and compares the trees.
    pub async fn crawl(&self, seed: &str, profiles: &[String]) -> Result<CrawlReport, String> {
        let url = Url::parse(seed.trim()).map_err(|e| format!("{seed:?} is not a URL: {e}"))?;
        let profiles = if profiles.is_empty() {
            self.default_profiles()
        } else {
            profiles.to_vec()
        };
        let mut fetchers = Vec::new();
        for p in &profiles {
            let f = self.inner.fetchers.get(p).ok_or_else(|| {
                let mut known: Vec<&String> = self.inner.fetchers.keys().collect();
                known.sort();
                format!(
                    "unknown profile {p:?} (known: {})",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            fetchers.push(f.clone());
        }
        let trees =
            futures_util::future::join_all(fetchers.iter().map(|f| self.tree(&url, f.clone())))
                .await;
        let cloaking = compare(&trees);
        let verdict = trees
            .iter()
            .map(|t| t.verdict)
            .min()
            .unwrap_or(Verdict::Unknown);
        Ok(CrawlReport {
            seed: url.to_string(),
            verdict,
            trees,
            cloaking,
        })
    }

    async fn tree(&self, seed: &Url, fetcher: Arc<Fetcher>) -> Tree {
        let c = &self.inner.config;
        let started = Instant::now();
        let started_at = Utc::now();
        let deadline = tokio::time::Instant::now() + c.crawl_timeout.0;
        let seed_link = Link {
            url: seed.to_string(),
            edge: EdgeKind::Seed,
            flags: Vec::new(),
        };
        let mut nodes = vec![Node::pending(
            0,
            None,
            &seed_link,
            fetcher.profile().referer.clone(),
            0,
            0,
        )];
        let mut seen: HashSet<(String, bool)> = HashSet::new();
        seen.insert((seed_link.url.clone(), false));
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().fetch_node(fetcher.clone(), &nodes[0], started));
        let mut stopped = None;
        loop {
            let next = tokio::time::timeout_at(deadline, tasks.join_next()).await;
            let done = match next {
                Err(_) => {
                    stopped = Some(format!(
                        "crawl time limit of {} reached",
                        humantime::format_duration(c.crawl_timeout.0)
                    ));
                    tasks.abort_all();
                    for n in nodes.iter_mut().filter(|n| {
                        n.started_ms == 0 && n.fetch.status.is_none() && n.fetch.stopped.is_none()
                    }) {
                        n.fetch.stopped = Some("not answered within the crawl time limit".into());
                    }
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::warn!("a crawl task failed: {e}");
                    continue;
                }
                Ok(Some(Ok(done))) => done,
            };
            let id = done.id;
            nodes[id].started_ms = done.started_ms.max(1);
            nodes[id].fetch = done.fetch;
            nodes[id].triage = done.triage;
            for link in done.links {
                let parent = &nodes[id];
                let redirect = link.edge.is_redirect();
                let (depth, hops) = if redirect {
                    (parent.depth, parent.hops + 1)
                } else {
                    (parent.depth + 1, 0)
                };
                // A redirect keeps the referer of the request it answers;
                // anything else is asked for by the page it is on.
                let referer =
                    if matches!(link.edge, EdgeKind::HttpRedirect | EdgeKind::RefreshHeader) {
                        parent.referer.clone()
                    } else {
                        Some(parent.url.clone())
                    };
                let mut child = Node::pending(nodes.len(), Some(id), &link, referer, depth, hops);
                if redirect && chain_contains(&nodes, id, &link.url) {
                    child.fetch.stopped =
                        Some("redirect loop: the chain was already at this URL".into());
                } else if hops > c.max_hops {
                    child.fetch.stopped = Some(format!("hop limit of {} reached", c.max_hops));
                } else if depth > c.max_depth {
                    child.fetch.stopped = Some(format!("depth limit of {} reached", c.max_depth));
                } else if !seen.insert((link.url.clone(), redirect)) {
                    // Fetched already in this tree (a script on every page).
                    continue;
                }
                if nodes.len() >= c.max_nodes as usize {
                    stopped = Some(format!("node limit of {} reached", c.max_nodes));
                    break;
                }
                if child.fetch.stopped.is_none() {
                    tasks.spawn(self.clone().fetch_node(fetcher.clone(), &child, started));
                }
                nodes.push(child);
            }
        }
        verdict::judge(&mut nodes);
        Tree {
            seed: seed.to_string(),
            profile: fetcher.profile().name.clone(),
            started_at,
            elapsed_ms: started.elapsed().as_millis() as u64,
            verdict: nodes
                .iter()
                .map(|n| n.verdict)
                .min()
                .unwrap_or(Verdict::Unknown),
            stopped,
            nodes,
        }
    }

    /// The future that fetches, triages and reads one node (spawned).
    fn fetch_node(
        self,
        fetcher: Arc<Fetcher>,
        node: &Node,
        crawl_start: Instant,
    ) -> impl Future<Output = Done> + Send + 'static {
        let id = node.id;
        let url = node.url.clone();
        let referer = node.referer.clone();
        async move {
            let inner = &self.inner;
            let parsed = Url::parse(&url).ok();
            let host = parsed
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            let _global = inner.in_flight.acquire().await.ok();
            let (sem, last) = inner.gate.slot(&host);
            let _host = sem.acquire().await.ok();
            if !inner.gate.delay.is_zero() {
                let mut last = last.lock().await;
                if let Some(t) = *last {
                    let wait = inner.gate.delay.saturating_sub(t.elapsed());
                    tokio::time::sleep(wait).await;
                }
                *last = Some(Instant::now());
            }
            let started_ms = crawl_start.elapsed().as_millis() as u64;
            let fetch = match &parsed {
                Some(u) => fetcher.fetch(u, referer.as_deref()).await,
                None => Fetched {
                    stopped: Some("not a URL".into()),
                    ..Default::default()
                },
            };
            drop(_host);
            drop(_global);
            if fetch.status.is_none() {
                return Done {
                    id,
                    started_ms,
                    fetch,
                    triage: None,
                    links: Vec::new(),
                };
            }
            // Triage and extraction are CPU work (YARA, archives): off the
            // async workers.
            let this = self.clone();
            let parsed = parsed.expect("fetched, so parsed");
            tokio::task::spawn_blocking(move || {
                let ct = fetch.header("content-type").map(str::to_string);
                let triage = this
                    .inner
                    .triager
                    .triage(&fetch.body, ct.as_deref(), parsed.path());
                let kind = match triage.magic {
                    Magic::Html => extract::BodyKind::Html,
                    Magic::Javascript => extract::BodyKind::Script,
                    _ => extract::BodyKind::Other,
                };
                let links =
                    extract::links(&parsed, fetch.status, &fetch.headers, &fetch.body, kind);
                Done {
                    id,
                    started_ms,
                    fetch,
                    triage: Some(triage),
                    links,
                }
            })
            .await
            .unwrap_or_else(|e| Done {
                id,
                started_ms,
                fetch: Fetched {
                    stopped: Some(format!("triage failed: {e}")),
                    ..Default::default()
                },
                triage: None,
                links: Vec::new(),
            })
        }
    }
}

/// Whether the redirect chain ending at `id` has been at `url`.
fn chain_contains(nodes: &[Node], mut id: usize, url: &str) -> bool {
    loop {
        let n = &nodes[id];
        if n.url == url {
            return true;
        }
        match n.parent {
            Some(p) if n.edge.is_redirect() => id = p,
            _ => return false,
        }
    }
}

/// Cloaking: each profile's tree against the first one's.
fn compare(trees: &[Tree]) -> Vec<CloakingSignal> {
    let reached = |t: &Tree| -> BTreeSet<String> {
        t.nodes
            .iter()
            .filter(|n| n.fetch.status.is_some())
            .map(|n| n.url.clone())
            .collect()
    };
    let Some(first) = trees.first() else {
        return Vec::new();
    };
    let a = reached(first);
    trees
        .iter()
        .skip(1)
        .filter_map(|t| {
            let b = reached(t);
            let only_first: Vec<String> = a.difference(&b).cloned().collect();
            let only_second: Vec<String> = b.difference(&a).cloned().collect();
            (first.verdict != t.verdict || !only_first.is_empty() || !only_second.is_empty()).then(
                || CloakingSignal {
                    profiles: [first.profile.clone(), t.profile.clone()],
                    verdicts: [first.verdict, t.verdict],
                    only_first,
                    only_second,
                },
            )
        })
        .collect()
}
