//! The dashboard: both loops at a glance, for `GET /api/v1/dashboard`
//! and the console's `/dashboard`. Counts only, no subscriber named.
//!
//! * Charts over the last hour, day, week or month, in buckets (5 minutes,
//!   an hour, 6 hours, a day): events stored and records rejected by
//!   format, cases opened by severity and resolved, notices sent and
//!   bounced by channel and acknowledged, the warning page's hits and
//!   proceeds by day. Each exports as CSV and as SVG (drawn here).
//! * The removal loop's outcomes (infected subscribers per 10,000,
//!   acknowledgement and reinfection rates, time-to-clean quantiles).
//! * The list's size by status, category and source (a full scan of the
//!   list, so kept until the list changes, at most [`LIST_COUNTS_FOR`]);
//!   the outcomes likewise, at most [`OUTCOMES_FOR`].
//! * Live: feed runs and ingests under way, notices waiting and failed, the
//!   sensor's counters.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use kanki_html::esc;
use kanki_removal::outcomes::Outcomes;
use kanki_service::Kanki;
use kanki_store::{ActivityCount, ListCounts};
use serde::Serialize;

use crate::inputs::SensorNow;
use crate::{ApiError, ApiState};

/// How long the list's counts are kept while the list does not change.
pub const LIST_COUNTS_FOR: Duration = Duration::from_secs(300);

/// The window a chart covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Range {
    Hour,
    Day,
    Week,
    Month,
}

impl Range {
    pub const ALL: [Range; 4] = [Range::Hour, Range::Day, Range::Week, Range::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Range::Hour => "hour",
            Range::Day => "day",
            Range::Week => "week",
            Range::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Range> {
        Range::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Seconds per bucket, and buckets in the window.
    pub fn buckets(self) -> (i64, usize) {
        match self {
            Range::Hour => (300, 12),
            Range::Day => (3600, 24),
            Range::Week => (6 * 3600, 28),
            Range::Month => (86_400, 30),
        }
    }

    /// The first bucket's start: the window ends with the bucket holding
    /// `now`, buckets aligned on their size (UTC).
    pub fn since(self, now: DateTime<Utc>) -> i64 {
        let (step, n) = self.buckets();
        let current = now.timestamp().div_euclid(step) * step;
        current - (n as i64 - 1) * step
    }
}

/// One chart: a line per label over the window's buckets.
#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    pub name: &'static str,
    pub title: &'static str,
    /// Each bucket's start (Unix seconds).
    pub starts: Vec<i64>,
    /// (label, a count per bucket)
    pub lines: Vec<(String, Vec<u64>)>,
}

/// The charts, their titles (English; the console has both languages)
/// and the activity series each draws.
pub const CHARTS: &[(&str, &str, &str)] = &[
    (
        "events",
        "Events stored, by format",
        "保存したイベント（形式別）",
    ),
    (
        "rejected",
        "Records rejected, by format",
        "除外したレコード（形式別）",
    ),
    (
        "cases",
        "Cases opened, by severity, and resolved",
        "開いた事案（重大度別）と解決した事案",
    ),
    (
        "notices",
        "Notices sent and bounced, by channel, and acknowledged",
        "送った通知・不達（手段別）と対策完了の連絡",
    ),
    (
        "warning",
        "Warning page shown and proceed-once taken, by day",
        "警告ページの表示と「一度だけ進む」（日別）",
    ),
    ("dns", "DNS front: queries", "DNS フロント: 問い合わせ"),
    (
        "policy",
        "Policy hits, warning pages shown and proceed-once taken",
        "ポリシー該当・警告ページの表示・「一度だけ進む」",
    ),
    (
        "radius",
        "RADIUS accounting requests received",
        "受信した RADIUS アカウンティング要求",
    ),
];

/// The running server's counters kept per 5-minute bucket (see
/// [`CounterSampler`]): the name kept, the chart that draws it, the series
/// of the metrics exposition it is read from, and a label the series must
/// carry (empty: the sum over its labels).
pub const KEPT_COUNTERS: &[(&str, &str, &str, &str)] = &[
    ("dns-queries", "dns", "kanki_dns_queries_total", ""),
    ("policy-hits", "policy", "kanki_dns_policy_hits_total", ""),
    (
        "warning-pages",
        "policy",
        "kanki_warning_pages_total",
        "page=\"warning\"",
    ),
    ("proceed-once", "policy", "kanki_warning_proceeds_total", ""),
    (
        "radius-requests",
        "radius",
        "kanki_radius_requests_total",
        "outcome=\"received\"",
    ),
];

/// The size of a kept counter's bucket, in seconds.
pub const COUNTER_BUCKET: i64 = 300;

/// The kept counters' totals read from the server's own metrics
/// exposition (`/metrics`' text): one place for counters that live in
/// different parts (the DNS front, the warning page, the RADIUS server).
pub fn counter_totals(exposition: &str) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        for (kept, _, from, label) in KEPT_COUNTERS {
            if name == *from && (label.is_empty() || labels.contains(label)) {
                *out.entry(*kept).or_insert(0) += value as u64;
            }
        }
    }
    out
}

/// Turns the counters' running totals into counts per bucket: each
/// sample adds what each counter grew since the one before to the bucket
/// of its time (the first, what it grew since the server started).
#[derive(Default)]
pub struct CounterSampler {
    last: BTreeMap<&'static str, u64>,
}

impl CounterSampler {
    pub fn sample(
        &mut self,
        now: DateTime<Utc>,
        totals: &BTreeMap<&'static str, u64>,
    ) -> Vec<(i64, &'static str, u64)> {
        let bucket = now.timestamp().div_euclid(COUNTER_BUCKET) * COUNTER_BUCKET;
        let mut out = Vec::new();
        for (name, total) in totals {
            let before = self.last.insert(name, *total).unwrap_or(0);
            let grew = total.saturating_sub(before);
            if grew > 0 {
                out.push((bucket, *name, grew));
            }
        }
        out
    }
}

/// Which chart and line a count belongs to (none: a series no chart
/// draws).
fn place(c: &ActivityCount) -> Option<(&'static str, String)> {
    Some(match c.series {
        "events" => ("events", c.label.clone()),
        "rejected" => ("rejected", c.label.clone()),
        "cases-opened" => ("cases", format!("opened: {}", c.label)),
        "cases-resolved" => ("cases", "resolved".into()),
        "notices-sent" => ("notices", format!("sent: {}", c.label)),
        "notices-bounced" => ("notices", format!("bounced: {}", c.label)),
        "notices-acknowledged" => ("notices", "acknowledged".into()),
        kept => KEPT_COUNTERS
            .iter()
            .find(|(name, ..)| *name == kept)
            .map(|(name, chart, ..)| (*chart, (*name).to_string()))?,
    })
}

/// The charts of a window from the store's activity counts (the kept
/// counters' among them, their series the counter's name) and the warning
/// page's days.
pub fn charts(
    range: Range,
    now: DateTime<Utc>,
    activity: &[ActivityCount],
    warning_days: &[(chrono::NaiveDate, u64, u64)],
) -> Vec<Chart> {
    let (step, n) = range.buckets();
    let since = range.since(now);
    let starts: Vec<i64> = (0..n as i64).map(|i| since + i * step).collect();
    let mut lines: BTreeMap<&'static str, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    for c in activity {
        let i = (c.bucket - since).div_euclid(step);
        if !(0..n as i64).contains(&i) {
            continue;
        }
        let Some((chart, label)) = place(c) else {
            continue;
        };
        lines
            .entry(chart)
            .or_default()
            .entry(label)
            .or_insert_with(|| vec![0; n])[i as usize] += c.count;
    }
    // The warning page counts by day: its chart is in days, over the
    // window's days (at least today).
    let first_day = Utc
        .timestamp_opt(since, 0)
        .single()
        .unwrap_or(now)
        .date_naive();
    let days: Vec<chrono::NaiveDate> = first_day
        .iter_days()
        .take_while(|d| *d <= now.date_naive())
        .collect();
    let mut hits = vec![0; days.len()];
    let mut proceeds = vec![0; days.len()];
    for (d, h, p) in warning_days {
        if let Some(i) = days.iter().position(|x| x == d) {
            hits[i] += h;
            proceeds[i] += p;
        }
    }
    CHARTS
        .iter()
        .map(|(name, title, _)| {
            if *name == "warning" {
                return Chart {
                    name,
                    title,
                    starts: days
                        .iter()
                        .map(|d| {
                            d.and_hms_opt(0, 0, 0)
                                .map_or(0, |t| t.and_utc().timestamp())
                        })
                        .collect(),
                    lines: vec![
                        ("shown".into(), hits.clone()),
                        ("proceeded".into(), proceeds.clone()),
                    ],
                };
            }
            Chart {
                name,
                title,
                starts: starts.clone(),
                lines: lines.remove(name).unwrap_or_default().into_iter().collect(),
            }
        })
        .collect()
}

/// What is under way now.
#[derive(Clone, Debug, Serialize)]
pub struct Live {
    /// (feed, rows read so far)
    pub feeds_running: Vec<(String, u64)>,
    pub ingests_running: u64,
    pub notices_queued: u64,
    pub notices_failed: u64,
    pub sensor: Option<SensorNow>,
    /// Each ingest and notice stage's rate, in the pipeline's order.
    pub rates: Vec<StageRate>,
}

/// How often the stage counters are sampled for their rates.
pub const RATE_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The "now" rate: over at least this much of the latest samples.
const RATE_NOW: Duration = Duration::from_secs(10);
/// The longer rate: over the samples of this much time.
const RATE_WINDOW: Duration = Duration::from_secs(300);

/// One stage's rate, per second, in this process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageRate {
    /// `ingest` or `notices`.
    pub part: &'static str,
    pub stage: &'static str,
    /// Over the last ten seconds or so (none before a sample that old).
    pub per_second: Option<f64>,
    /// Over the last five minutes, or since the first sample when the
    /// server is younger.
    pub per_second_5m: Option<f64>,
    /// Since the server started.
    pub total: u64,
}

/// The stage counters' recent samples (every [`RATE_SAMPLE_EVERY`], five
/// minutes of them), from which their rates are read.
#[derive(Default)]
pub struct StageRates {
    samples: Mutex<std::collections::VecDeque<(Instant, Vec<u64>)>>,
}

impl StageRates {
    /// Keeps the totals sampled at `at`, and no sample older than the
    /// window needs.
    pub fn sample(&self, at: Instant, totals: Vec<u64>) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((at, totals));
        while s.len() > 2
            && s.get(1)
                .is_some_and(|(t, _)| at.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            s.pop_front();
        }
    }

    /// Each stage's rates at `now`, given its totals then (the counters'
    /// order: [`INGEST_STAGES`](crate::metrics::INGEST_STAGES), then
    /// [`NOTICE_STAGES`](crate::metrics::NOTICE_STAGES)).
    pub fn rates(&self, now: Instant, totals: &[u64]) -> Vec<StageRate> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        // The newest sample at least RATE_NOW old, and the oldest one.
        let recent = s
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_duration_since(*t) >= RATE_NOW);
        let oldest = s
            .front()
            .filter(|(t, _)| now.saturating_duration_since(*t) >= RATE_NOW);
        let rate = |from: Option<&(Instant, Vec<u64>)>, i: usize, total: u64| {
            from.map(|(t, then)| {
                let secs = now.saturating_duration_since(*t).as_secs_f64();
                total.saturating_sub(then.get(i).copied().unwrap_or(0)) as f64 / secs
            })
        };
        let stages = crate::metrics::INGEST_STAGES
            .iter()
            .map(|s| ("ingest", *s))
            .chain(
                crate::metrics::NOTICE_STAGES
                    .iter()
                    .map(|s| ("notices", *s)),
            );
        stages
            .zip(totals)
            .enumerate()
            .map(|(i, ((part, stage), &total))| StageRate {
                part,
                stage,
                per_second: rate(recent, i, total),
                per_second_5m: rate(oldest, i, total),
                total,
            })
            .collect()
    }
}

/// An RPZ zone as served now, and its secondaries.
#[derive(Clone, Debug, Serialize)]
pub struct RpzZone {
    pub zone: String,
    /// `None`: not built yet.
    pub serial: Option<u32>,
    pub secondaries: Vec<RpzSecondary>,
}

/// A secondary's last request for a zone.
#[derive(Clone, Debug, Serialize)]
pub struct RpzSecondary {
    pub address: std::net::IpAddr,
    pub at: DateTime<Utc>,
    /// `axfr`, `ixfr`, `ixfr-full` or `up-to-date`.
    pub kind: &'static str,
    /// Its serial when it asked (IXFR).
    pub had: Option<u32>,
    /// The serial it was given.
    pub given: u32,
    /// Whether the zone has moved on since.
    pub behind: bool,
}

/// The RPZ primary's zones and who transferred them.
pub fn rpz_now(server: &kanki_dns::rpz::RpzServer) -> Vec<RpzZone> {
    server
        .zones
        .iter()
        .map(|z| {
            let serial = z.state().map(|s| s.serial);
            RpzZone {
                zone: z.name.to_string(),
                serial,
                secondaries: z
                    .secondaries()
                    .into_iter()
                    .map(|(address, a)| RpzSecondary {
                        address,
                        at: a.at,
                        kind: a.kind,
                        had: a.had,
                        given: a.serial,
                        behind: serial.is_some_and(|s| s != a.serial),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct Dashboard {
    pub range: Range,
    pub at: DateTime<Utc>,
    pub charts: Vec<Chart>,
    pub outcomes: Outcomes,
    pub list: ListCounts,
    pub live: Live,
    /// The RPZ zones served (none without `[rpz]` zones).
    pub rpz: Vec<RpzZone>,
}

/// How long the removal loop's outcomes are kept: their computation reads
/// every case, so the dashboard and `/metrics` share one a minute, and a
/// change made through the API or the console drops it at once.
pub const OUTCOMES_FOR: Duration = Duration::from_secs(60);

/// A figure computed now and then and kept between requests: computed
/// again when `key` changes (the list's generation) or when it is older
/// than the age asked.
pub struct Kept<T>(Mutex<Option<(u64, Instant, T)>>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(Mutex::new(None))
    }
}

impl<T> Kept<T> {
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl<T: Clone> Kept<T> {
    pub fn get<E>(
        &self,
        key: u64,
        max_age: Duration,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, at, value)) = kept.as_ref()
            && *k == key
            && at.elapsed() < max_age
        {
            return Ok(value.clone());
        }
        let value = compute()?;
        *kept = Some((key, Instant::now(), value.clone()));
        Ok(value)
    }
}

/// The figures kept between dashboards and scrapes.
#[derive(Default)]
pub struct KeptFigures {
    pub list: Kept<ListCounts>,
    pub outcomes: Kept<Outcomes>,
}

impl KeptFigures {
    /// The list's size, computed again when the list changed and at most
    /// every [`LIST_COUNTS_FOR`].
    pub fn list(&self, k: &Kanki) -> Result<ListCounts, ApiError> {
        let generation = k.store.generation()?;
        self.list
            .get(generation, LIST_COUNTS_FOR, || k.store.list_counts())
            .map_err(ApiError::from)
    }

    /// Something changed through the API or the console: the outcomes
    /// are computed again for the next dashboard.
    pub fn changed(&self) {
        self.outcomes.forget();
    }

    /// The removal loop's outcomes, at most [`OUTCOMES_FOR`] old.
    pub fn outcomes(&self, k: &Kanki) -> Result<Outcomes, ApiError> {
        self.outcomes
            .get(0, OUTCOMES_FOR, || kanki_removal::outcomes::outcomes(k))
            .map_err(ApiError::from)
    }
}

/// The dashboard of `range` now.
pub fn dashboard(st: &ApiState, k: &Kanki, range: Range) -> Result<Dashboard, ApiError> {
    let now = Utc::now();
    let since = Utc
        .timestamp_opt(range.since(now), 0)
        .single()
        .unwrap_or(now);
    let mut activity = k.store.removal().activity(since, range.buckets().0)?;
    for (bucket, counter, count) in k.store.counter_counts(since.timestamp())? {
        if let Some((name, ..)) = KEPT_COUNTERS.iter().find(|(n, ..)| *n == counter) {
            activity.push(ActivityCount {
                bucket,
                series: name,
                label: String::new(),
                count,
            });
        }
    }
    let warning = k.store.warning().hits_by_day(since.date_naive())?;
    let outcomes = st.kept.outcomes(k)?;
    let count = |status: &str| {
        outcomes
            .notices
            .iter()
            .filter(|(_, s, _)| s == status)
            .map(|(_, _, n)| n)
            .sum()
    };
    let live = Live {
        feeds_running: k
            .config
            .feeds
            .iter()
            .filter_map(|f| {
                st.inputs
                    .feed(&f.name)
                    .running
                    .map(|r| (f.name.clone(), r.rows_read))
            })
            .collect(),
        ingests_running: k
            .store
            .removal()
            .recent_ingests(crate::feeds::INGESTS_SHOWN)?
            .iter()
            .filter(|i| i.status == "running" && i.format != "sensor")
            .count() as u64,
        notices_queued: count("queued"),
        notices_failed: count("failed"),
        sensor: st.inputs.sensor(),
        rates: st
            .metrics
            .stage_rates
            .rates(Instant::now(), &st.metrics.stage_totals()),
    };
    Ok(Dashboard {
        range,
        at: now,
        charts: charts(range, now, &activity, &warning),
        list: st.kept.list(k)?,
        rpz: st.rpz.as_deref().map(rpz_now).unwrap_or_default(),
        outcomes,
        live,
    })
}

fn stamp(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .single()
        .map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A chart as CSV: `start,label,count`, a row per bucket and line.
pub fn chart_csv(c: &Chart) -> String {
    let mut out = String::from("start,label,count\n");
    for (label, counts) in &c.lines {
        // A label is a format, channel or severity name; quoted anyway.
        let label = format!("\"{}\"", label.replace('"', "\"\""));
        for (start, n) in c.starts.iter().zip(counts) {
            out.push_str(&format!("{},{label},{n}\n", stamp(*start)));
        }
    }
    out
}

/// The lines' colours, in order (distinguishable in greyscale too).
const COLOURS: &[&str] = &[
    "#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d4880f", "#555555",
];

/// A chart as a standalone SVG: a line per label, the axes with the
/// largest count and the window's first and last bucket, and a legend.
pub fn chart_svg(c: &Chart, title: &str) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 260.0, 48.0, 12.0, 28.0, 64.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = c
        .lines
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let n = c.starts.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: u64| top + plot_h - plot_h * v as f64 / max as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\" font-family=\"sans-serif\" font-size=\"11\">\
<title>{t}</title><rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
<text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{t}</text>\
<line x1=\"{left}\" y1=\"{y0}\" x2=\"{xr}\" y2=\"{y0}\" stroke=\"#888\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#888\"/>\
<text x=\"{lt}\" y=\"{ty}\" text-anchor=\"end\">{max}</text><text x=\"{lt}\" y=\"{y0}\" text-anchor=\"end\">0</text>",
        t = esc(title),
        y0 = top + plot_h,
        xr = left + plot_w,
        lt = left - 4.0,
        ty = top + 4.0,
    );
    if let (Some(first), Some(last)) = (c.starts.first(), c.starts.last()) {
        svg.push_str(&format!(
            "<text x=\"{left}\" y=\"{ly}\">{}</text><text x=\"{xr}\" y=\"{ly}\" text-anchor=\"end\">{}</text>",
            stamp(*first),
            stamp(*last),
            ly = top + plot_h + 14.0,
            xr = left + plot_w,
        ));
    }
    for (i, (label, counts)) in c.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(j, v)| format!("{:.1},{:.1}", x(j), y(*v)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        ));
        let (lx, ly) = (
            left + (i % 3) as f64 * 190.0,
            h - 26.0 + (i / 3) as f64 * 14.0,
        );
        svg.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{ly}\">{} ({})</text>",
            ly - 9.0,
            lx + 14.0,
            esc(label),
            counts.iter().sum::<u64>(),
        ));
    }
    if c.lines.is_empty() {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">no data in this window</text>",
            left + plot_w / 2.0,
            top + plot_h / 2.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rates come from the samples: "now" over the newest sample at least
    /// ten seconds old, the longer one over the oldest kept; none before a
    /// sample is old enough; samples older than five minutes go.
    #[test]
    fn stage_rates_are_read_from_the_samples_and_the_window_slides() {
        let stages = crate::metrics::INGEST_STAGES.len() + crate::metrics::NOTICE_STAGES.len();
        let totals = |stored: u64| {
            let mut t = vec![0; stages];
            t[5] = stored; // ingest: stored
            t
        };
        let r = StageRates::default();
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        assert!(
            r.rates(t0, &totals(0))
                .iter()
                .all(|x| x.per_second.is_none())
        );
        // 0 stored at 0 s, 100 at 5 s, 200 at 10 s, 1,200 at 20 s.
        r.sample(secs(0), totals(0));
        r.sample(secs(5), totals(100));
        r.sample(secs(10), totals(200));
        let stored = |now: u64, total: u64| {
            let all = r.rates(secs(now), &totals(total));
            assert_eq!(all.len(), stages);
            all.into_iter().find(|x| x.stage == "stored").unwrap()
        };
        let now = stored(20, 1200);
        assert_eq!((now.part, now.total), ("ingest", 1200));
        assert_eq!(now.per_second, Some(100.0), "(1200 - 200) / 10 s");
        assert_eq!(now.per_second_5m, Some(60.0), "1200 / 20 s");
        assert_eq!(stored(9, 150).per_second, None, "no sample 10 s old");
        assert_eq!(
            r.rates(secs(20), &totals(1200))
                .iter()
                .find(|x| x.stage == "mailed")
                .unwrap()
                .per_second,
            Some(0.0)
        );
        // Later, the samples of more than five minutes before go (but the
        // one that covers the window's start).
        r.sample(secs(400), totals(2000));
        assert_eq!(stored(405, 2000).per_second_5m, Some(1800.0 / 395.0));
        r.sample(secs(710), totals(2000));
        assert_eq!(stored(715, 2000).per_second_5m, Some(0.0), "since 400 s");
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn counts_fall_in_their_buckets_and_outside_ones_are_left_out() {
        let now = at("2026-12-07T10:30:00Z");
        // A day: 24 hourly buckets, the last one holding now.
        let since = Range::Day.since(now);
        assert_eq!(since, at("2026-12-06T11:00:00Z").timestamp());
        let count = |bucket: i64, series: &'static str, label: &str, count: u64| ActivityCount {
            bucket,
            series,
            label: label.into(),
            count,
        };
        let activity = [
            count(since, "events", "shadowserver", 5),
            count(since, "events", "shadowserver", 2),
            count(since + 23 * 3600, "notices-sent", "mail", 3),
            count(since + 23 * 3600, "notices-acknowledged", "", 1),
            count(since - 3600, "events", "cowrie", 9),
            count(since + 24 * 3600, "events", "cowrie", 9),
        ];
        let charts = charts(Range::Day, now, &activity, &[(now.date_naive(), 4, 1)]);
        let chart = |name: &str| charts.iter().find(|c| c.name == name).unwrap();
        let events = chart("events");
        assert_eq!(events.starts.len(), 24);
        assert_eq!(events.lines.len(), 1, "cowrie fell outside: {events:?}");
        assert_eq!(events.lines[0].1[0], 7);
        let notices = chart("notices");
        let line = |l: &str| notices.lines.iter().find(|(x, _)| x == l).unwrap().1[23];
        assert_eq!((line("sent: mail"), line("acknowledged")), (3, 1));
        let warning = chart("warning");
        assert_eq!(warning.starts.len(), 2, "yesterday and today");
        assert_eq!(warning.lines[0].1, [0, 4]);
        let csv = chart_csv(notices);
        assert!(csv.starts_with("start,label,count\n"), "{csv}");
        assert!(
            csv.contains("2026-12-07T10:00:00Z,\"sent: mail\",3\n"),
            "{csv}"
        );
        assert!(chart("radius").lines.is_empty());
        let svg = chart_svg(events, "Events <&>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Events &lt;&amp;&gt;") && !svg.contains("<&>"));
        assert!(svg.contains("shadowserver (7)"), "{svg}");
    }

    #[test]
    fn counters_are_read_from_the_exposition_and_kept_as_what_they_grew() {
        let text = "# HELP kanki_dns_queries DNS front queries received\n\
kanki_dns_queries_total{transport=\"udp\"} 10\n\
kanki_dns_queries_total{transport=\"tcp\"} 2\n\
kanki_dns_policy_hits_total 3\n\
kanki_warning_pages_total{page=\"warning\"} 4\n\
kanki_warning_pages_total{page=\"garden\"} 50\n\
kanki_radius_requests_total{outcome=\"received\"} 7\n\
kanki_radius_requests_total{outcome=\"answered\"} 7\n";
        let totals = counter_totals(text);
        assert_eq!(totals["dns-queries"], 12);
        assert_eq!(
            totals["warning-pages"], 4,
            "the garden's pages are not warnings"
        );
        assert_eq!(totals["radius-requests"], 7);
        assert!(!totals.contains_key("proceed-once"));
        let mut sampler = CounterSampler::default();
        let now = at("2026-12-07T10:07:30Z");
        let first = sampler.sample(now, &totals);
        assert!(first.contains(&(at("2026-12-07T10:05:00Z").timestamp(), "dns-queries", 12)));
        let mut more = totals.clone();
        more.insert("dns-queries", 20);
        let second = sampler.sample(now + chrono::Duration::minutes(5), &more);
        assert_eq!(
            second,
            [(at("2026-12-07T10:10:00Z").timestamp(), "dns-queries", 8)]
        );
        // In the charts: the dns chart's hour bucket.
        let activity: Vec<ActivityCount> = first
            .iter()
            .chain(&second)
            .map(|(bucket, name, count)| ActivityCount {
                bucket: *bucket,
                series: name,
                label: String::new(),
                count: *count,
            })
            .collect();
        let charts = charts(
            Range::Day,
            now + chrono::Duration::minutes(5),
            &activity,
            &[],
        );
        let dns = charts.iter().find(|c| c.name == "dns").unwrap();
        assert_eq!(dns.lines[0].0, "dns-queries");
        assert_eq!(dns.lines[0].1.iter().sum::<u64>(), 20);
    }
}
