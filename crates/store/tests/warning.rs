//! The warning page's state on a real SQLite file: hit counts, the
//! false-positive queue, and the walled garden with its audit records.

use chrono::{NaiveDate, TimeZone, Utc};
use kanki_audit::{AuditEntry, GENESIS, Ground, verify};
use kanki_store::{
    AuditFilter, GardenMember, HitCount, HitsQuery, NewReport, ReportOutcome, ReportQuery,
    ReportStatus, SqliteOptions, Store, StoreError, SubscriberRecord,
};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open_sqlite(&dir.path().join("kanki.sqlite3"), &SqliteOptions::default()).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

#[test]
fn hits_add_up_per_indicator_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(&dir);
    let w = w.warning();
    let h = |indicator_id, d, hits, proceeds| HitCount {
        indicator_id,
        day: day(d),
        hits,
        proceeds,
    };
    w.add_hits(&[h(7, 1, 3, 0), h(8, 1, 1, 1)]).unwrap();
    w.add_hits(&[h(7, 1, 2, 1), h(7, 2, 5, 0)]).unwrap();
    let all = w.hits(&HitsQuery::default()).unwrap();
    assert_eq!(all, vec![h(7, 2, 5, 0), h(7, 1, 5, 1), h(8, 1, 1, 1)]);
    let q = HitsQuery {
        indicator: Some(7),
        until: Some(day(1)),
        ..Default::default()
    };
    assert_eq!(w.hits(&q).unwrap(), vec![h(7, 1, 5, 1)]);
}

#[test]
fn reports_queue_until_reviewed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let w = store.warning();
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let r = w
        .add_report(
            &NewReport {
                name: "www.shop.example".into(),
                matched: Some("shop.example".into()),
                indicator_ids: vec![3, 9],
                url: "http://www.shop.example/cart".into(),
                note: "これは私の店です".into(),
                contact: Some("owner@shop.example".into()),
                language: "ja".into(),
            },
            now,
        )
        .unwrap();
    assert_eq!(r.status, ReportStatus::Open);
    assert_eq!(r.indicator_ids, vec![3, 9]);
    let open_q = ReportQuery {
        status: Some(ReportStatus::Open),
        ..Default::default()
    };
    assert_eq!(w.reports(&open_q).unwrap(), vec![r.clone()]);

    let done = w
        .review_report(
            r.id,
            ReportOutcome::FalsePositive,
            "the shop is clean",
            "ops",
            now,
        )
        .unwrap();
    assert_eq!(done.status, ReportStatus::Reviewed);
    assert_eq!(done.outcome, Some(ReportOutcome::FalsePositive));
    assert_eq!(done.reviewed_by.as_deref(), Some("ops"));
    assert!(w.reports(&open_q).unwrap().is_empty());
    assert_eq!(w.reports(&ReportQuery::default()).unwrap(), vec![done]);
    assert!(matches!(
        w.review_report(r.id, ReportOutcome::Confirmed, "", "ops", now),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        w.review_report(999, ReportOutcome::Confirmed, "", "ops", now),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn entering_and_leaving_the_garden_move_its_generation_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    store
        .directory()
        .upsert_subscribers(
            &[SubscriberRecord {
                id: "S1".into(),
                language: "ja".into(),
                ..Default::default()
            }],
            "import",
            "test",
            now,
        )
        .unwrap();
    let w = store.warning();
    let audit = |action: &str| AuditEntry {
        at: now,
        actor: "ops".into(),
        action: action.into(),
        ground: Some(Ground::EmergencyEvacuation),
        purpose: "bot seen talking to a C&C server".into(),
        input: r#"{"subscriber":"S1"}"#.into(),
        result: String::new(),
    };
    let member = |id: &str| GardenMember {
        subscriber: id.into(),
        ground: Ground::EmergencyEvacuation,
        reason: "bot seen talking to a C&C server".into(),
        notice: Some("お使いのパソコンが感染しています".into()),
        entered_at: now,
        entered_by: "ops".into(),
        leave_requested_at: None,
        leave_request_note: None,
        reference: None,
    };
    let g0 = w.garden_generation().unwrap();
    assert!(matches!(
        w.garden_enter(&member("nobody"), &audit("garden-enter")),
        Err(StoreError::NotFound)
    ));
    assert!(
        w.garden_enter(&member("S1"), &audit("garden-enter"))
            .unwrap()
            .is_some()
    );
    assert!(
        w.garden_enter(&member("S1"), &audit("garden-enter"))
            .unwrap()
            .is_none(),
        "entering twice records nothing"
    );
    let g1 = w.garden_generation().unwrap();
    assert!(g1 > g0);
    assert_eq!(w.garden().unwrap(), vec![member("S1")]);

    let req = AuditEntry {
        actor: "subscriber".into(),
        ..audit("garden-leave-request")
    };
    assert!(
        w.garden_leave_request("S1", "ran the cleaner", &req)
            .unwrap()
            .is_some()
    );
    let m = w.garden_member("S1").unwrap().unwrap();
    assert_eq!(m.leave_request_note.as_deref(), Some("ran the cleaner"));
    assert_eq!(m.leave_requested_at, Some(now));

    assert!(
        w.garden_leave("S1", &audit("garden-leave"))
            .unwrap()
            .is_some()
    );
    assert!(
        w.garden_leave("S1", &audit("garden-leave"))
            .unwrap()
            .is_none()
    );
    assert!(w.garden_generation().unwrap() > g1);
    assert!(w.garden().unwrap().is_empty());
    assert!(
        w.garden_leave_request("S1", "x", &req).unwrap().is_none(),
        "no request from outside"
    );

    let mut records = Vec::new();
    store
        .directory()
        .audit_records(&AuditFilter::default(), &mut |r| records.push(r))
        .unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(
        actions,
        ["garden-enter", "garden-leave-request", "garden-leave"]
    );
    verify(&records, GENESIS).unwrap();
}
