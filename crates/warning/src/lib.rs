//! The warning page: where the DNS front sends a consenting subscriber who
//! asked for a listed name, and where a subscriber in the walled garden
//! lands whatever they ask for.
//!
//! * `GET` any path, any Host: the page for that name, in Japanese or
//!   English (Accept-Language, `[warning] language`, and a switch). It says
//!   what was blocked and why (category, sources, first seen, evidence,
//!   indicator ids) and offers *go back*, *proceed once* and *report a
//!   false positive*. A subscriber in the walled garden sees their notice
//!   and how to leave instead.
//! * `GET /_kanki/warning?lang=&path=`: the same page in a chosen language.
//! * `POST /_kanki/proceed`: grants the client a pass for the name
//!   ([`Passes`], honoured by the DNS front) and redirects to the URL asked
//!   for. `POST /_kanki/report`: stores a false-positive report.
//!   Each form carries a token bound to the client and the name
//!   ([`token`]), so no other site can post them for the subscriber.
//! * The countermeasure site under `/countermeasures` of every name (given
//!   by the removal part): the garden page's "I have cleaned my machine"
//!   posts there, the one place kanki takes it.
//! * The reset listener (`[warning] reset_listen`): port 443 of the warning
//!   address, where every connection is reset at once ([`reset`]).
//!
//! Hits are counted per indicator per day in memory and written to the
//! store every `hits_flush_every`; nothing about the client is kept.

pub mod lang;
pub mod page;
pub mod request;
pub mod reset;
mod token;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{NaiveDate, Utc};
use kanki_indicators::Indicator;
use kanki_policy::{PolicyHandle, Verdict};
use kanki_service::Kanki;
use kanki_service::directory::Directory;
use kanki_service::front::{Garden, Passes, client_prefix};
use kanki_store::{GardenMember, HitCount, HitsQuery, NewReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use kanki_html::headers;

use crate::lang::{Lang, Texts};
use crate::page::{Frame, GardenView, IndicatorView, Listing, Site};
use crate::request::{Host, clean_path, clean_text, host_of};
use crate::token::Tokens;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PageLabels {
    /// warning, garden, pass, not-listed
    page: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IndicatorLabels {
    indicator: String,
}

/// The page's counters, registered in `kanki serve`'s `/metrics`.
#[derive(Clone, Default)]
pub struct Counters {
    pages: Family<PageLabels, Counter>,
    proceeds: Counter,
    reports: Family<OutcomeLabels, Counter>,
    rejected: Family<OutcomeLabels, Counter>,
    resets: Counter,
    hits_today: Family<IndicatorLabels, Gauge>,
}

impl Counters {
    pub fn register(registry: &mut Registry) -> Counters {
        let c = Counters::default();
        registry.register(
            "warning_pages",
            "Warning-address pages shown, by page (warning, garden, pass, not-listed)",
            c.pages.clone(),
        );
        registry.register(
            "warning_proceeds",
            "Proceed-once passes granted",
            c.proceeds.clone(),
        );
        registry.register(
            "warning_false_positive_reports",
            "False-positive reports from the page, by outcome (stored, rate-limited, invalid)",
            c.reports.clone(),
        );
        registry.register(
            "warning_rejected_forms",
            "Form posts refused, by reason (token, origin, garden, form)",
            c.rejected.clone(),
        );
        registry.register(
            "warning_tls_resets",
            "Connections to the reset listener (port 443) reset",
            c.resets.clone(),
        );
        registry.register(
            "warning_indicator_hits_today",
            "Warning pages shown today (UTC) per indicator, as stored",
            c.hits_today.clone(),
        );
        c
    }
}

/// What the page shares with the rest of `kanki serve`.
pub struct Shared {
    pub kanki: Arc<Kanki>,
    pub policy: Arc<PolicyHandle>,
    pub directory: Arc<Directory>,
    pub passes: Arc<Passes>,
    pub garden: Arc<Garden>,
}

/// Counts waiting to be written: (indicator, day) → (hits, proceeds).
type Tally = HashMap<(i64, NaiveDate), (u64, u64)>;

/// The warning page's state.
pub struct Warning {
    shared: Shared,
    counters: Counters,
    tokens: Tokens,
    tally: Mutex<Tally>,
    /// The day `hits_today` shows.
    tally_day: Mutex<Option<NaiveDate>>,
    reports: ReportLimit,
}

impl Warning {
    pub fn new(shared: Shared, counters: Counters) -> Arc<Warning> {
        let per_hour = shared.kanki.config.warning.reports_per_hour;
        let total_per_hour = shared.kanki.config.warning.reports_per_hour_total;
        Arc::new(Warning {
            shared,
            counters,
            tokens: Tokens::new(),
            tally: Mutex::new(HashMap::new()),
            tally_day: Mutex::new(None),
            reports: ReportLimit::new(per_hour, total_per_hour),
        })
    }

    /// The page's HTTP surface, with the countermeasure site `site` under
    /// `/countermeasures` (reachable from the walled garden under every
    /// name). Serve it with client addresses:
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(self: &Arc<Self>, site: Router) -> Router {
        Router::new()
            .route("/_kanki/warning", get(page_in))
            .route("/_kanki/proceed", post(proceed))
            .route("/_kanki/report", post(report))
            .fallback(page)
            .layer(DefaultBodyLimit::max(16 * 1024))
            .with_state(self.clone())
            .nest(COUNTERMEASURES, site)
            // The site's index is at /countermeasures; the slash form is a link too.
            .route(
                "/countermeasures/",
                get(|uri: Uri| async move {
                    let q = uri.query().map_or(String::new(), |q| format!("?{q}"));
                    Redirect::permanent(&format!("{COUNTERMEASURES}{q}"))
                }),
            )
    }

    /// Writes the counted hits to the store, and refreshes today's gauges.
    /// Counts that cannot be written are kept for the next time.
    pub fn flush_hits(&self) -> Result<(), kanki_store::StoreError> {
        let today = Utc::now().date_naive();
        let pending = std::mem::take(&mut *lock(&self.tally));
        let new_day = lock(&self.tally_day).is_none_or(|d| d != today);
        if pending.is_empty() && !new_day {
            return Ok(());
        }
        let counts: Vec<HitCount> = pending
            .iter()
            .map(|(&(indicator_id, day), &(hits, proceeds))| HitCount {
                indicator_id,
                day,
                hits,
                proceeds,
            })
            .collect();
        let store = &self.shared.kanki.store;
        if let Err(e) = store.warning().add_hits(&counts) {
            let mut t = lock(&self.tally);
            for (k, (h, p)) in pending {
                let e = t.entry(k).or_default();
                e.0 += h;
                e.1 += p;
            }
            return Err(e);
        }
        let stored = store.warning().hits(&HitsQuery {
            since: Some(today),
            until: Some(today),
            ..Default::default()
        })?;
        self.counters.hits_today.clear();
        for h in stored {
            self.counters
                .hits_today
                .get_or_create(&IndicatorLabels {
                    indicator: h.indicator_id.to_string(),
                })
                .set(h.hits as i64);
        }
        *lock(&self.tally_day) = Some(today);
        Ok(())
    }

    fn count(&self, ids: &[i64], hits: u64, proceeds: u64) {
        let day = Utc::now().date_naive();
        let mut t = lock(&self.tally);
        for &id in ids {
            let e = t.entry((id, day)).or_default();
            e.0 += hits;
            e.1 += proceeds;
        }
    }

    /// The subscriber behind `client` now, if they are in the walled garden.
    pub fn gardened(&self, client: IpAddr) -> Option<String> {
        let s = &self.shared;
        if s.garden.is_empty() {
            return None;
        }
        let c = s.directory.compiled();
        c.subscriber_now(client, Utc::now().timestamp())
            .filter(|sub| s.garden.contains(sub))
            .map(str::to_string)
    }

    /// The listed name matching `name` and its indicators, if it is listed.
    fn listed(&self, name: &str) -> Option<(String, Vec<i64>)> {
        match self.shared.policy.load().lookup(name.as_bytes()) {
            Verdict::Listed {
                matched,
                indicators,
            } => Some((matched.to_string(), indicators.to_vec())),
            _ => None,
        }
    }

    fn frame<'a>(&self, lang: Lang, nonce: &'a str, path: Option<&str>) -> Frame<'a> {
        Frame {
            lang,
            nonce,
            switch: path.map(|p| {
                format!(
                    "/_kanki/warning?lang={}&path={}",
                    lang.other().code(),
                    page::query_value(p)
                )
            }),
        }
    }

    fn default_lang(&self) -> Lang {
        Lang::parse(&self.shared.kanki.config.warning.language).unwrap_or(Lang::Ja)
    }

    fn minutes(&self) -> u64 {
        self.shared.passes.ttl().as_secs().div_ceil(60)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// At most `per_hour` reports per client (its [`client_prefix`]: an IPv6
/// /56) per hour, and at most `total_per_hour` from everyone: the queue is
/// the operators' time, and many addresses must not fill it either. The
/// map is swept of quiet clients when it grows, and never holds more than
/// [`ReportLimit::MAX_CLIENTS`].
struct ReportLimit {
    per_hour: u32,
    total_per_hour: u32,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    by_client: HashMap<IpAddr, Vec<Instant>>,
    all: std::collections::VecDeque<Instant>,
}

impl ReportLimit {
    const HOUR: Duration = Duration::from_secs(3600);
    const MAX_CLIENTS: usize = 10_000;

    fn new(per_hour: u32, total_per_hour: u32) -> ReportLimit {
        ReportLimit {
            per_hour,
            total_per_hour,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn allow(&self, client: IpAddr, now: Instant) -> bool {
        if self.per_hour == 0 {
            return false;
        }
        let client = client_prefix(client);
        let recent = |t: &Instant| now.duration_since(*t) < Self::HOUR;
        let mut seen = lock(&self.seen);
        let Seen { by_client, all } = &mut *seen;
        while all.front().is_some_and(|t| !recent(t)) {
            all.pop_front();
        }
        if all.len() >= self.total_per_hour as usize {
            return false;
        }
        if by_client.len() >= Self::MAX_CLIENTS && !by_client.contains_key(&client) {
            by_client.retain(|_, v| {
                v.retain(recent);
                !v.is_empty()
            });
            if by_client.len() >= Self::MAX_CLIENTS {
                return false;
            }
        }
        let v = by_client.entry(client).or_default();
        v.retain(recent);
        if v.len() >= self.per_hour as usize {
            return false;
        }
        v.push(now);
        all.push_back(now);
        true
    }
}

/// An HTML response with the headers every page carries ([`headers`]).
fn html(status: StatusCode, nonce: &str, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers::apply(h, nonce);
    r
}

/// The request's Host, from the header (or an absolute request URI).
fn host(headers: &HeaderMap, uri: &Uri) -> Option<Host> {
    let raw = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    host_of(raw)
}

fn lang_of(w: &Warning, headers: &HeaderMap, asked: Option<&str>) -> Lang {
    asked
        .and_then(Lang::parse)
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::negotiate)
        })
        .unwrap_or_else(|| w.default_lang())
}

fn site(host: &Host, path: &str) -> Site {
    Site {
        name: host.name.clone(),
        url: format!("http://{}{}", host.authority, path),
        path: path.to_string(),
    }
}

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    w: &Arc<Warning>,
    f: impl FnOnce(&Warning) -> T + Send + 'static,
) -> Option<T> {
    let w = w.clone();
    match tokio::task::spawn_blocking(move || f(&w)).await {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(error = %e, "warning page worker failed");
            None
        }
    }
}

/// How many indicators of one name the page shows in full.
const SHOWN_INDICATORS: usize = 3;
/// How many pieces of evidence of one indicator it describes.
const SHOWN_EVIDENCE: usize = 3;

fn view(i: Indicator) -> IndicatorView {
    let mut sources: Vec<String> = Vec::new();
    for s in &i.sources {
        if !sources.contains(&s.source) {
            sources.push(s.source.clone());
        }
    }
    let evidence = i
        .evidence
        .iter()
        .take(SHOWN_EVIDENCE)
        .map(|e| {
            let mut d = e.kind.clone();
            if let Some(n) = e.note.as_deref().filter(|n| !n.trim().is_empty()) {
                d.push_str(": ");
                d.push_str(&n.chars().take(300).collect::<String>());
            }
            if let Some(h) = &e.sha256 {
                d.push_str(&format!(" (SHA-256 {}…)", &h[..h.len().min(16)]));
            }
            d.push_str(&format!(" — {}", e.created_at.format("%Y-%m-%d")));
            d
        })
        .collect();
    IndicatorView {
        id: i.id,
        category: i.category,
        tlp: i.tlp,
        sources,
        first_seen: i.first_seen,
        evidence,
        evidence_total: i.evidence.len(),
    }
}

/// What the store knows of the first few indicators listing a name.
fn listing(w: &Warning, matched: String, ids: Vec<i64>) -> Listing {
    let indicators = ids
        .iter()
        .take(SHOWN_INDICATORS)
        .filter_map(|&id| match w.shared.kanki.store.get_indicator(id) {
            Ok(i) => i.map(view),
            Err(e) => {
                tracing::warn!(indicator = id, error = %e, "cannot read an indicator for the warning page");
                None
            }
        })
        .collect();
    Listing {
        matched,
        ids,
        indicators,
    }
}

/// `GET` anything: the page for the Host asked for.
async fn page(
    State(w): State<Arc<Warning>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = clean_path(uri.path_and_query().map_or("/", |p| p.as_str()));
    let lang = lang_of(&w, &headers, None);
    show(w, peer.ip(), host(&headers, &uri), path, lang).await
}

#[derive(Deserialize)]
struct PageParams {
    lang: Option<String>,
    path: Option<String>,
}

/// `GET /_kanki/warning?lang=en&path=/x`: the page in a chosen language.
async fn page_in(
    State(w): State<Arc<Warning>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Response {
    let p = params.ok().map(|Query(p)| p);
    let path = clean_path(p.as_ref().and_then(|p| p.path.as_deref()).unwrap_or("/"));
    let lang = lang_of(&w, &headers, p.as_ref().and_then(|p| p.lang.as_deref()));
    show(w, peer.ip(), host(&headers, &uri), path, lang).await
}

async fn show(
    w: Arc<Warning>,
    client: IpAddr,
    host: Option<Host>,
    path: String,
    lang: Lang,
) -> Response {
    let nonce = headers::nonce();
    let frame = w.frame(lang, &nonce, Some(&path));
    let site = host.as_ref().map(|h| site(h, &path));
    let listed = host.as_ref().and_then(|h| w.listed(&h.name));

    if let Some(subscriber) = w.gardened(client) {
        let inside = listed.clone();
        let (member, listing) = blocking(&w, move |w| {
            let member = w.shared.kanki.store.warning().garden_member(&subscriber);
            (member, inside.map(|(m, ids)| listing(w, m, ids)))
        })
        .await
        .unwrap_or((Ok(None), None));
        match member {
            Ok(Some(member)) => {
                return garden_page(&w, &frame, &member, site.as_ref(), listing.as_ref());
            }
            // Left the garden a moment ago: the page as for anyone.
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the walled garden");
                return html(StatusCode::INTERNAL_SERVER_ERROR, &nonce, String::new());
            }
        }
    }

    let (Some(site), Some((matched, ids))) = (site, listed) else {
        let name = host.map(|h| Site {
            name: h.name,
            url: String::new(),
            path: String::new(),
        });
        return not_listed_page(&w, &frame, name.as_ref());
    };
    if w.shared.passes.allows(client, &site.name, Instant::now()) {
        w.counters
            .pages
            .get_or_create(&PageLabels { page: "pass" })
            .inc();
        return html(
            StatusCode::OK,
            &nonce,
            page::pass(&frame, &site, w.minutes()),
        );
    }
    w.count(&ids, 1, 0);
    w.counters
        .pages
        .get_or_create(&PageLabels { page: "warning" })
        .inc();
    let Some(l) = blocking(&w, move |w| listing(w, matched, ids)).await else {
        return html(StatusCode::INTERNAL_SERVER_ERROR, &nonce, String::new());
    };
    let token = w.tokens.issue(client, &site.name, Utc::now().timestamp());
    // 403: a downloader that follows the name must not take the page for
    // the file it asked for.
    html(
        StatusCode::FORBIDDEN,
        &nonce,
        page::warning(&frame, &site, &l, &token, w.minutes()),
    )
}

fn not_listed_page(w: &Warning, frame: &Frame, site: Option<&Site>) -> Response {
    w.counters
        .pages
        .get_or_create(&PageLabels { page: "not-listed" })
        .inc();
    let frame = Frame {
        switch: None,
        ..*frame
    };
    html(
        StatusCode::OK,
        frame.nonce,
        page::not_listed(&frame, site.map(|s| s.name.as_str())),
    )
}

fn garden_page(
    w: &Warning,
    frame: &Frame,
    member: &GardenMember,
    site: Option<&Site>,
    listing: Option<&Listing>,
) -> Response {
    w.counters
        .pages
        .get_or_create(&PageLabels { page: "garden" })
        .inc();
    let config = &w.shared.kanki.config;
    let view = GardenView {
        member,
        site,
        listing,
        countermeasure: Some(
            config
                .warning
                .countermeasure_url
                .as_deref()
                .unwrap_or(COUNTERMEASURES),
        ),
        allowed: &config.dns.garden_allow,
    };
    html(
        StatusCode::FORBIDDEN,
        frame.nonce,
        page::garden(frame, &view),
    )
}

/// Fields every form carries.
#[derive(Deserialize)]
struct FormBase {
    #[serde(default)]
    path: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    contact: String,
}

/// A form post checked: same origin, a token this process gave this client
/// for this name. On refusal, the response to send.
struct Checked {
    client: IpAddr,
    host: Option<Host>,
    path: String,
    lang: Lang,
    note: String,
    contact: String,
}

fn check_form(
    w: &Warning,
    peer: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
    form: Result<Form<FormBase>, FormRejection>,
) -> Result<Checked, Box<Response>> {
    let host = host(headers, uri);
    let lang_hint = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Lang::negotiate)
        .unwrap_or_else(|| w.default_lang());
    let refuse = |reason: &'static str, status: StatusCode, lang: Lang| {
        w.counters
            .rejected
            .get_or_create(&OutcomeLabels { outcome: reason })
            .inc();
        let nonce = headers::nonce();
        let frame = w.frame(lang, &nonce, None);
        let t = lang.text();
        html(
            status,
            &nonce,
            page::message(&frame, "bad-form", t.bad_form_title, t.bad_form, "/"),
        )
    };
    let Ok(Form(f)) = form else {
        return Err(Box::new(refuse("form", StatusCode::BAD_REQUEST, lang_hint)));
    };
    let lang = Lang::parse(&f.lang).unwrap_or(lang_hint);
    // A browser says where a post comes from: it must be this very name.
    let expected = host.as_ref().map(|h| format!("http://{}", h.authority));
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|o| Some(o) == expected.as_deref())
        && headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|s| s == "same-origin");
    if !origin_ok {
        return Err(Box::new(refuse("origin", StatusCode::FORBIDDEN, lang)));
    }
    let name = host.as_ref().map_or("", |h| h.name.as_str());
    if !w
        .tokens
        .verify(&f.token, peer.ip(), name, Utc::now().timestamp())
    {
        return Err(Box::new(refuse("token", StatusCode::FORBIDDEN, lang)));
    }
    let note = clean_text(&f.note);
    let contact = clean_text(&f.contact);
    if note.chars().count() > page::NOTE_MAX || contact.chars().count() > page::CONTACT_MAX {
        return Err(Box::new(refuse("form", StatusCode::BAD_REQUEST, lang)));
    }
    Ok(Checked {
        client: peer.ip(),
        host,
        path: clean_path(&f.path),
        lang,
        note,
        contact,
    })
}

/// `POST /_kanki/proceed`: a pass for this client and name, then back to
/// the URL asked for.
async fn proceed(
    State(w): State<Arc<Warning>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<FormBase>, FormRejection>,
) -> Response {
    let c = match check_form(&w, peer, &headers, &uri, form) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Some(host) = c.host else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // No pass out of the walled garden.
    if w.gardened(c.client).is_some() {
        w.counters
            .rejected
            .get_or_create(&OutcomeLabels { outcome: "garden" })
            .inc();
        return (StatusCode::SEE_OTHER, [(header::LOCATION, c.path.clone())]).into_response();
    }
    if !w.shared.passes.grant(c.client, &host.name, Instant::now()) {
        // Every pass slot held by live passes: the warning stays.
        w.counters
            .rejected
            .get_or_create(&OutcomeLabels {
                outcome: "passes-full",
            })
            .inc();
        tracing::warn!("proceed-once refused: the pass table is full");
        return (StatusCode::SEE_OTHER, [(header::LOCATION, c.path.clone())]).into_response();
    }
    w.counters.proceeds.inc();
    if let Some((_, ids)) = w.listed(&host.name) {
        w.count(&ids, 0, 1);
    }
    tracing::debug!(name = %host.name, "proceed-once pass granted");
    let url = site(&host, &c.path).url;
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /_kanki/report`: a false-positive report, into the operators' queue.
async fn report(
    State(w): State<Arc<Warning>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<FormBase>, FormRejection>,
) -> Response {
    let c = match check_form(&w, peer, &headers, &uri, form) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let nonce = headers::nonce();
    let frame = w.frame(c.lang, &nonce, None);
    let t = c.lang.text();
    let back = format!(
        "/_kanki/warning?lang={}&path={}",
        c.lang.code(),
        page::query_value(&c.path)
    );
    let outcome = |o: &'static str| {
        w.counters
            .reports
            .get_or_create(&OutcomeLabels { outcome: o })
            .inc()
    };
    let Some(host) = c.host else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if c.note.is_empty() {
        outcome("invalid");
        return html(
            StatusCode::BAD_REQUEST,
            &nonce,
            page::message(&frame, "bad-form", t.bad_form_title, t.bad_form, &back),
        );
    }
    if !w.reports.allow(c.client, Instant::now()) {
        outcome("rate-limited");
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            &nonce,
            page::message(
                &frame,
                "report-limited",
                t.report_heading,
                t.report_limited,
                &back,
            ),
        );
    }
    let listed = w.listed(&host.name);
    let new = NewReport {
        url: site(&host, &c.path).url,
        name: host.name,
        matched: listed.as_ref().map(|(m, _)| m.clone()),
        indicator_ids: listed.map(|(_, ids)| ids).unwrap_or_default(),
        note: c.note,
        contact: Some(c.contact).filter(|s| !s.is_empty()),
        language: c.lang.code().into(),
    };
    let stored = blocking(&w, move |w| {
        w.shared.kanki.store.warning().add_report(&new, Utc::now())
    })
    .await;
    match stored {
        Some(Ok(r)) => {
            outcome("stored");
            tracing::info!(report = r.id, name = %r.name, "false-positive report received");
            let text = page::esc(&t.report_thanks.replace("{id}", &r.id.to_string()));
            html(
                StatusCode::OK,
                &nonce,
                page::message(&frame, "report-thanks", t.report_thanks_title, &text, &back),
            )
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot store a false-positive report");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Where the countermeasure site is mounted on the warning page.
pub const COUNTERMEASURES: &str = "/countermeasures";

/// Binds the page's listener and the reset listeners (so that a taken port
/// stops `kanki serve` at start), then runs them in the background (the
/// page with the countermeasure site `site`); [`flush_hits_loop`] writes
/// its hits.
pub async fn spawn(w: Arc<Warning>, site: Router) -> std::io::Result<()> {
    let config = w.shared.kanki.config.warning.clone();
    let resets = reset::bind(&config.reset_listen).await?;
    reset::spawn(resets, w.counters.resets.clone());
    let Some(listen) = config.listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {listen} (warning.listen): {e}"),
        )
    })?;
    tracing::info!(%listen, "warning page serving");
    let app = w
        .router(site)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the warning page stopped");
        }
    });
    Ok(())
}

/// Writes the page's hits every `warning.hits_flush_every`, until `stop`
/// (a background job of `kanki serve`, which writes the last hits after
/// it).
pub async fn flush_hits_loop(w: Arc<Warning>, mut stop: kanki_jobs::Stop) {
    let every = w.shared.kanki.config.warning.hits_flush_every.0;
    while stop.sleep(every).await {
        let w = w.clone();
        match tokio::task::spawn_blocking(move || w.flush_hits()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write warning-page hits; kept for the next try")
            }
            Err(e) => tracing::error!(error = %e, "warning-page hit flush panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_limits_hold_per_ipv6_56_and_for_everyone_together() {
        let l = ReportLimit::new(2, 5);
        let t0 = Instant::now();
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.allow(v6("2001:db8:0:100::1"), t0));
        assert!(l.allow(v6("2001:db8:0:1ff::2"), t0));
        // A third address of the same /56: the same client, over its limit.
        assert!(!l.allow(v6("2001:db8:0:180::3"), t0));
        // Other clients, up to the total.
        for i in 1..=3u32 {
            assert!(l.allow(IpAddr::V4(i.into()), t0));
        }
        assert!(!l.allow(IpAddr::V4(4.into()), t0), "the total is reached");
        // An hour on, room again.
        assert!(l.allow(IpAddr::V4(4.into()), t0 + ReportLimit::HOUR));
    }

    #[test]
    fn the_report_limits_map_stays_bounded() {
        let l = ReportLimit::new(1, u32::MAX);
        let t0 = Instant::now();
        for i in 0..ReportLimit::MAX_CLIENTS as u32 {
            assert!(l.allow(IpAddr::V4(i.into()), t0));
        }
        assert!(!l.allow(IpAddr::V4(u32::MAX.into()), t0));
        assert_eq!(lock(&l.seen).by_client.len(), ReportLimit::MAX_CLIENTS);
        assert!(l.allow(IpAddr::V4(u32::MAX.into()), t0 + ReportLimit::HOUR));
    }
}
