#![no_main]
//! The console's query strings, the case queue's (`/cases?state=..&size=..`,
//! `/cases?sort=seen&after=SEEN.ID`), the indicator search's
//! (`/indicators?tlp=..&since=..`),
//! the audit search's (`/audit?since=..&mentions=..`), the subscribers'
//! (`/subscribers?after=..`, `/subscribers/{id}?after=START.ID`) and the
//! dashboard's (`/dashboard?range=..`): any input gives
//! either a query within its bounds or clear messages in both languages,
//! never a panic. A query that parses gives the same query again when
//! written back (the pager's next-page link) and read again.

use kanki_api::console::query::{
    AuditQuery, CaseQuery, DashboardQuery, IndicatorQuery, MAX_PAGE, MAX_TEXT, SubscriberQuery,
    SubscribersQuery,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match CaseQuery::parse(raw) {
        Ok(q) => {
            assert!((1..=MAX_PAGE).contains(&q.size));
            assert!(q.after.is_none_or(|a| a > 0));
            assert!(q.seen_after.is_none_or(|(_, id)| id > 0));
            assert!(q.after.is_none() || q.seen_after.is_none());
            assert!(
                q.threat
                    .as_ref()
                    .is_none_or(|t| t.chars().count() <= MAX_TEXT)
            );
            let link = q.link();
            assert_eq!(CaseQuery::parse(&link).as_ref(), Ok(&q), "{link}");
            let f = q.filter(chrono::Utc::now());
            assert_eq!(f.limit, Some(q.size + 1));
            assert_eq!(f.seen_before.is_some(), q.seen_after.is_some());
        }
        Err(problems) => named(&problems),
    }
    match AuditQuery::parse(raw) {
        Ok(q) => {
            assert!((1..=MAX_PAGE).contains(&q.size));
            for t in [&q.actor, &q.action, &q.mentions, &q.purpose] {
                assert!(t.as_ref().is_none_or(|t| t.chars().count() <= MAX_TEXT));
            }
            if let (Some(since), Some(until)) = (q.since, q.until) {
                assert!(since < until);
            }
            assert_eq!(q.filter().limit, Some(q.size));
            let link = q.with_before(q.before);
            assert_eq!(AuditQuery::parse(&link).as_ref(), Ok(&q), "{link}");
            let _ = q.api_query();
        }
        Err(problems) => named(&problems),
    }
    match SubscribersQuery::parse(raw) {
        Ok(q) => {
            assert!((1..=MAX_PAGE).contains(&q.size));
            for t in [&q.id, &q.after] {
                assert!(t.as_ref().is_none_or(|t| t.chars().count() <= MAX_TEXT));
            }
            let link = q.with_after(q.after.as_deref());
            assert_eq!(SubscribersQuery::parse(&link).as_ref(), Ok(&q), "{link}");
        }
        Err(problems) => named(&problems),
    }
    match IndicatorQuery::parse(raw) {
        Ok(q) => {
            assert!((1..=MAX_PAGE).contains(&q.size));
            for t in [&q.q, &q.source] {
                assert!(t.as_ref().is_none_or(|t| t.chars().count() <= MAX_TEXT));
            }
            if let (Some(since), Some(until)) = (q.since, q.until) {
                assert!(since < until);
            }
            let link = q.with_after(q.after);
            assert_eq!(IndicatorQuery::parse(&link).as_ref(), Ok(&q), "{link}");
            let list = q.list();
            assert_eq!(list.limit, Some(q.size));
            assert_eq!(list.tlp, q.tlp);
        }
        Err(problems) => named(&problems),
    }
    match DashboardQuery::parse(raw) {
        Ok(q) => {
            let (step, n) = q.range.buckets();
            assert!(step > 0 && n > 0);
        }
        Err(problems) => named(&problems),
    }
    match SubscriberQuery::parse(raw) {
        Ok(q) => {
            assert!((1..=MAX_PAGE).contains(&q.size));
            let link = q.with_after(q.after);
            assert_eq!(SubscriberQuery::parse(&link).as_ref(), Ok(&q), "{link}");
        }
        Err(problems) => named(&problems),
    }
});

fn named(problems: &[kanki_api::console::query::Problem]) {
    assert!(!problems.is_empty());
    assert!(
        problems
            .iter()
            .all(|p| !p.en.is_empty() && !p.ja.is_empty())
    );
}
