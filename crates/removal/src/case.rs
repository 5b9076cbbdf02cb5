//! How a case moves: *new → notified → acknowledged → quiet → resolved*,
//! or *reinfected* / *escalated*; an operator may hold or close it. The
//! store keeps cases; these functions are the only place their state
//! changes.

use chrono::{DateTime, Duration, Utc};
use kanki_store::{Case, CaseDelta, CaseState, StoreError};

/// An open case with a batch's events appended (the store opens a case
/// not open yet). Events reported late (from before the case last changed
/// state) add to the counts without moving the state.
pub fn on_events(c: &mut Case, d: &CaseDelta, now: DateTime<Utc>) {
    c.events += d.events;
    c.first_seen = c.first_seen.min(d.first_seen);
    c.last_seen = c.last_seen.max(d.last_seen);
    c.severity = c.severity.max_with(d.severity);
    c.updated_at = now;
    let after = |t: Option<DateTime<Utc>>| t.is_some_and(|t| d.last_seen > t);
    match c.state {
        // Cleaned, said so, or went quiet, and yet seen again.
        CaseState::Resolved if after(c.resolved_at) => {
            c.state = CaseState::Reinfected;
            c.reinfections += 1;
            c.unacknowledged = 0;
        }
        CaseState::Acknowledged if after(c.acknowledged_at) => c.state = CaseState::Notified,
        CaseState::Quiet if after(c.quiet_at) => c.state = CaseState::Notified,
        _ => {}
    }
}

/// A notice went out (or was queued for the post).
pub fn on_notice(c: &mut Case, now: DateTime<Utc>) {
    c.notices += 1;
    c.unacknowledged += 1;
    c.last_notice_at = Some(now);
    if matches!(
        c.state,
        CaseState::New | CaseState::Reinfected | CaseState::Quiet
    ) {
        c.state = CaseState::Notified;
    }
}

/// The subscriber says they cleaned up (on the countermeasure site).
pub fn on_acknowledged(c: &mut Case, now: DateTime<Utc>) -> Result<(), StoreError> {
    if matches!(c.state, CaseState::Closed | CaseState::Resolved) {
        return Err(StoreError::Invalid(format!(
            "case {} is {}: nothing to acknowledge",
            c.id, c.state
        )));
    }
    c.acknowledged_at = Some(now);
    c.unacknowledged = 0;
    c.state = CaseState::Acknowledged;
    Ok(())
}

pub fn on_escalated(c: &mut Case, now: DateTime<Utc>) {
    c.state = CaseState::Escalated;
    c.escalated_at = Some(now);
}

/// Time passing: a notified case without events for `quiet_after` goes
/// quiet, and once none for `resolve_after` it is resolved. Returns
/// whether the case changed.
pub fn on_tick(
    c: &mut Case,
    now: DateTime<Utc>,
    quiet_after: Duration,
    resolve_after: Duration,
) -> bool {
    let notified = c.last_notice_at.is_some();
    match c.state {
        CaseState::Notified | CaseState::Acknowledged | CaseState::Escalated
            if notified && c.last_seen + quiet_after <= now =>
        {
            c.state = CaseState::Quiet;
            c.quiet_at = Some(now);
            true
        }
        CaseState::Quiet if c.last_seen + resolve_after <= now => {
            c.state = CaseState::Resolved;
            c.resolved_at = Some(now);
            true
        }
        _ => false,
    }
}

pub fn hold(c: &mut Case, reason: &str) -> Result<(), StoreError> {
    if c.state == CaseState::Closed {
        return Err(StoreError::Invalid(format!("case {} is closed", c.id)));
    }
    c.held = true;
    c.hold_reason = Some(reason.to_string());
    Ok(())
}

pub fn release(c: &mut Case) -> Result<(), StoreError> {
    c.held = false;
    c.hold_reason = None;
    Ok(())
}

pub fn close(c: &mut Case, reason: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    if c.state == CaseState::Closed {
        return Err(StoreError::Invalid(format!(
            "case {} is closed already",
            c.id
        )));
    }
    c.state = CaseState::Closed;
    c.closed_at = Some(now);
    c.close_reason = Some(reason.to_string());
    Ok(())
}

/// Whether an operator may escalate `c` now: an open case that is not
/// held and not escalated already.
pub fn may_escalate(c: &Case) -> Result<(), StoreError> {
    match c.state {
        CaseState::Escalated => Err(StoreError::Invalid(format!(
            "case {} is escalated already",
            c.id
        ))),
        CaseState::Quiet | CaseState::Resolved | CaseState::Closed => Err(StoreError::Invalid(
            format!("case {} is {}: nothing to escalate", c.id, c.state.as_str()),
        )),
        _ if c.held => Err(StoreError::Invalid(format!(
            "case {} is held: release it first",
            c.id
        ))),
        _ => Ok(()),
    }
}

/// Whether an operator may send a notice about `c` now, past the
/// throttles: a case a notice is for (new, notified, acknowledged,
/// reinfected) that is not held.
pub fn may_notify_now(c: &Case) -> Result<(), StoreError> {
    match c.state {
        CaseState::New | CaseState::Notified | CaseState::Acknowledged | CaseState::Reinfected
            if !c.held =>
        {
            Ok(())
        }
        _ if c.held => Err(StoreError::Invalid(format!(
            "case {} is held: release it first",
            c.id
        ))),
        s => Err(StoreError::Invalid(format!(
            "case {} is {}: no notice to send",
            c.id,
            s.as_str()
        ))),
    }
}

trait MaxWith {
    fn max_with(self, o: Self) -> Self;
}

impl MaxWith for kanki_store::Severity {
    fn max_with(self, o: Self) -> Self {
        use kanki_store::Severity::*;
        let rank = |s| match s {
            Low => 0,
            Medium => 1,
            High => 2,
        };
        if rank(o) > rank(self) { o } else { self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanki_store::Severity;

    fn delta(at: DateTime<Utc>) -> CaseDelta<'static> {
        CaseDelta {
            subscriber: "S1",
            threat: "mirai",
            class: "infected-system",
            severity: Severity::High,
            first_seen: at,
            last_seen: at,
            events: 2,
        }
    }

    #[test]
    fn the_lifecycle() {
        let t0 = Utc::now();
        let day = Duration::days(1);
        let mut c = Case::opened(&delta(t0), t0);
        assert_eq!(c.state, CaseState::New);
        on_notice(&mut c, t0 + day);
        assert_eq!((c.state, c.unacknowledged), (CaseState::Notified, 1));
        // Still infected after the notice: stays notified.
        on_events(&mut c, &delta(t0 + day * 2), t0 + day * 2);
        assert_eq!((c.state, c.events), (CaseState::Notified, 4));
        on_acknowledged(&mut c, t0 + day * 3).unwrap();
        assert_eq!((c.state, c.unacknowledged), (CaseState::Acknowledged, 0));
        // Not quiet yet after 6 days, quiet after 7, resolved after 14.
        assert!(!on_tick(&mut c, t0 + day * 8, day * 7, day * 14));
        assert!(on_tick(&mut c, t0 + day * 9, day * 7, day * 14));
        assert_eq!(c.state, CaseState::Quiet);
        assert!(on_tick(&mut c, t0 + day * 16, day * 7, day * 14));
        assert_eq!(c.state, CaseState::Resolved);
        // A late report from before the resolution changes nothing ...
        on_events(&mut c, &delta(t0 + day * 10), t0 + day * 17);
        assert_eq!(c.state, CaseState::Resolved);
        // ... new events reinfect.
        on_events(&mut c, &delta(t0 + day * 18), t0 + day * 18);
        assert_eq!((c.state, c.reinfections), (CaseState::Reinfected, 1));
        close(&mut c, "false positive", t0 + day * 19).unwrap();
        assert!(on_acknowledged(&mut c, t0 + day * 20).is_err());
    }

    #[test]
    fn an_operator_escalates_an_open_case_not_held_once() {
        let t0 = Utc::now();
        let mut c = Case::opened(&delta(t0), t0);
        may_escalate(&c).unwrap();
        on_notice(&mut c, t0);
        may_escalate(&c).unwrap();
        hold(&mut c, "customer called").unwrap();
        assert!(may_escalate(&c).unwrap_err().to_string().contains("held"));
        release(&mut c).unwrap();
        on_escalated(&mut c, t0);
        assert!(
            may_escalate(&c)
                .unwrap_err()
                .to_string()
                .contains("already")
        );
        close(&mut c, "done", t0).unwrap();
        assert!(may_escalate(&c).is_err());
    }

    #[test]
    fn a_notice_is_sent_now_for_an_open_case_not_held() {
        let t0 = Utc::now();
        let mut c = Case::opened(&delta(t0), t0);
        may_notify_now(&c).unwrap();
        on_notice(&mut c, t0);
        may_notify_now(&c).unwrap();
        hold(&mut c, "customer called").unwrap();
        assert!(may_notify_now(&c).unwrap_err().to_string().contains("held"));
        release(&mut c).unwrap();
        on_escalated(&mut c, t0);
        assert!(
            may_notify_now(&c)
                .unwrap_err()
                .to_string()
                .contains("escalated")
        );
    }
}

/// What an operator does to a case.
#[derive(Clone, Debug)]
pub enum Action {
    /// Reviewed it; the note goes to its history.
    Review(String),
    /// Stop notices until released.
    Hold(String),
    Release,
    Close(String),
    /// Escalate now, as the removal loop does when notices go
    /// unacknowledged: the walled garden for a consenting subscriber, else
    /// a letter, else the call list.
    Escalate(String),
    /// A notice now, past the per-case interval and the daily capacity.
    SendNow(String),
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Review(_) => "review",
            Action::Hold(_) => "hold",
            Action::Release => "release",
            Action::Close(_) => "close",
            Action::Escalate(_) => "escalate",
            Action::SendNow(_) => "send-now",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Action::Review(r)
            | Action::Hold(r)
            | Action::Close(r)
            | Action::Escalate(r)
            | Action::SendNow(r) => Some(r),
            Action::Release => None,
        }
    }
}

/// An operator's escalation of case `id`, under the removal loop's rule
/// for the kind ([`crate::escalation::escalate_by`]).
fn escalate_now(
    kanki: &kanki_service::Kanki,
    id: i64,
    reason: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Case, kanki_service::ServiceError> {
    let r = kanki.store.removal();
    let c = r.get_case(id)?.ok_or(StoreError::NotFound)?;
    may_escalate(&c)?;
    let sub = kanki.store.directory().get_subscriber(&c.subscriber)?;
    let templates = crate::notice::Templates::load(kanki.config.notices.templates.as_deref())?;
    let mut sum = crate::notice::SendSummary::default();
    crate::escalation::escalate_by(
        kanki,
        &templates,
        &c,
        sub.as_ref(),
        actor,
        Some(reason),
        false,
        now,
        &mut sum,
    )?;
    Ok(r.get_case(id)?.ok_or(StoreError::NotFound)?)
}

/// Applies an operator's action, recorded in the case's history. Closing a
/// case the removal loop put in the walled garden lets the subscriber out.
pub fn act(
    kanki: &kanki_service::Kanki,
    id: i64,
    action: &Action,
    actor: &str,
) -> Result<Case, kanki_service::ServiceError> {
    if let Some(r) = action.reason()
        && r.trim().is_empty()
    {
        return Err(StoreError::Invalid(format!("{} needs a reason", action.name())).into());
    }
    let now = Utc::now();
    match action {
        Action::Escalate(reason) => return escalate_now(kanki, id, reason, actor, now),
        Action::SendNow(reason) => {
            // Without a usable mail server the notice is queued, and the
            // notice loop sends it.
            let mailer = kanki_notify::Mailer::new(&kanki.config.smtp).ok();
            crate::notice::send_now(kanki, mailer.as_ref(), id, actor, reason, now)?;
            return Ok(kanki
                .store
                .removal()
                .get_case(id)?
                .ok_or(StoreError::NotFound)?);
        }
        _ => {}
    }
    let change = kanki_store::CaseChange {
        actor,
        action: action.name(),
        reason: action.reason(),
    };
    let case = kanki.store.removal().update_case(
        id,
        &change,
        &mut |c| match action {
            Action::Review(_) => Ok(()),
            Action::Hold(r) => hold(c, r),
            Action::Release => release(c),
            Action::Close(r) => close(c, r, now),
            Action::Escalate(_) | Action::SendNow(_) => unreachable!("done above"),
        },
        now,
    )?;
    if let Action::Close(r) = action {
        crate::escalation::release(kanki, &case, actor, &format!("case {id} closed: {r}"), now)?;
    }
    Ok(case)
}
