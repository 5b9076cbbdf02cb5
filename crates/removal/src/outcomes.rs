//! Outcomes of the removal loop, for `kanki report` and `/metrics`:
//! infected subscribers per 10,000, notices by channel, the
//! acknowledgement rate, the time-to-clean distribution, the reinfection
//! rate, and why events were not attributed.

use std::sync::atomic::AtomicU64;

use kanki_service::{Kanki, ServiceError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcomes {
    pub subscribers: u64,
    pub infected_subscribers: u64,
    pub infected_per_10000: f64,
    pub cases_by_state: Vec<(String, u64)>,
    /// (channel, status, notices)
    pub notices: Vec<(String, String, u64)>,
    pub notified_cases: u64,
    pub acknowledged_cases: u64,
    /// Acknowledged among notified cases.
    pub acknowledgement_rate: f64,
    pub resolved_cases: u64,
    /// Days from a case's opening to its resolution: quantiles.
    pub time_to_clean_days: Vec<(f64, f64)>,
    pub reinfected_cases: u64,
    /// Reinfected among cases that were resolved.
    pub reinfection_rate: f64,
    pub events: u64,
    pub unattributed_by_reason: Vec<(String, u64)>,
}

const QUANTILES: [f64; 4] = [0.25, 0.5, 0.75, 0.9];

pub fn outcomes(k: &Kanki) -> Result<Outcomes, ServiceError> {
    let s = k.store.removal().removal_stats()?;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut ttc = s.time_to_clean.clone();
    ttc.sort_unstable();
    let time_to_clean_days = if ttc.is_empty() {
        Vec::new()
    } else {
        QUANTILES
            .iter()
            .map(|&q| {
                let i = ((ttc.len() - 1) as f64 * q).round() as usize;
                (q, ttc[i] as f64 / 86400.0)
            })
            .collect()
    };
    Ok(Outcomes {
        subscribers: s.subscribers,
        infected_subscribers: s.infected_subscribers,
        infected_per_10000: 10_000.0 * ratio(s.infected_subscribers, s.subscribers),
        cases_by_state: s
            .cases_by_state
            .iter()
            .map(|(st, n)| (st.to_string(), *n))
            .collect(),
        notices: s
            .notices_by_channel
            .iter()
            .map(|(c, st, n)| (c.to_string(), st.to_string(), *n))
            .collect(),
        notified_cases: s.notified_cases,
        acknowledged_cases: s.acknowledged_cases,
        acknowledgement_rate: ratio(s.acknowledged_cases, s.notified_cases),
        resolved_cases: s.resolved_cases,
        time_to_clean_days,
        reinfected_cases: s.reinfected_cases,
        reinfection_rate: ratio(s.reinfected_cases, s.resolved_cases),
        events: s.events,
        unattributed_by_reason: s.unattributed_by_reason,
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    channel: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    quantile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The outcomes as Prometheus gauges, set at each scrape.
#[derive(Default)]
pub struct OutcomeGauges {
    infected_per_10000: FloatGauge,
    cases: Family<StateLabels, Gauge>,
    notices: Family<NoticeLabels, Gauge>,
    acknowledgement_rate: FloatGauge,
    reinfection_rate: FloatGauge,
    time_to_clean: Family<QuantileLabels, FloatGauge>,
    unattributed: Family<ReasonLabels, Gauge>,
    events: Gauge,
}

impl OutcomeGauges {
    pub fn register(registry: &mut Registry) -> OutcomeGauges {
        let g = OutcomeGauges::default();
        let r = registry.sub_registry_with_prefix("removal");
        r.register(
            "infected_subscribers_per_10000",
            "Subscribers with an open case, per 10,000 subscribers",
            g.infected_per_10000.clone(),
        );
        r.register("cases", "Cases by state", g.cases.clone());
        r.register(
            "notices",
            "Notices by channel and status",
            g.notices.clone(),
        );
        r.register(
            "acknowledgement_ratio",
            "Acknowledged among notified cases",
            g.acknowledgement_rate.clone(),
        );
        r.register(
            "reinfection_ratio",
            "Reinfected among resolved cases",
            g.reinfection_rate.clone(),
        );
        r.register(
            "time_to_clean_days",
            "Days from a case's opening to its resolution, by quantile",
            g.time_to_clean.clone(),
        );
        r.register(
            "unattributed_events",
            "Events not attributed to a subscriber, by reason",
            g.unattributed.clone(),
        );
        r.register("events", "Events stored", g.events.clone());
        g
    }

    pub fn set(&self, o: &Outcomes) {
        self.infected_per_10000.set(o.infected_per_10000);
        for (state, n) in &o.cases_by_state {
            self.cases
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(*n as i64);
        }
        for (channel, status, n) in &o.notices {
            self.notices
                .get_or_create(&NoticeLabels {
                    channel: channel.clone(),
                    status: status.clone(),
                })
                .set(*n as i64);
        }
        self.acknowledgement_rate.set(o.acknowledgement_rate);
        self.reinfection_rate.set(o.reinfection_rate);
        for (q, d) in &o.time_to_clean_days {
            self.time_to_clean
                .get_or_create(&QuantileLabels {
                    quantile: q.to_string(),
                })
                .set(*d);
        }
        for (reason, n) in &o.unattributed_by_reason {
            self.unattributed
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .set(*n as i64);
        }
        self.events.set(o.events as i64);
    }
}
