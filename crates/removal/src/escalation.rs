//! Escalation, when a case's notices go unacknowledged: the DNS front's
//! walled garden for a subscriber whose consent covers it; for others a
//! letter (when a postal address is known) or else a call-list entry.
//!
//! The walled garden is a channel of its own: escalation writes a notice
//! (channel `garden`, with a reference) and an escalation request, and
//! [`into_garden`] puts the subscriber in the garden with that notice,
//! through the same audited path as `kanki garden enter`. A run that stops
//! half-way leaves a queued garden notice the next run puts up.
//! Acknowledging any notice of the case on the countermeasure site (or the
//! case being resolved by re-observation) lets them out: [`release`].

use chrono::{DateTime, Utc};
use kanki_service::warning::GardenChange;
use kanki_service::{Kanki, ServiceError};
use kanki_store::{
    Case, CaseChange, CaseState, Channel, Delivery, EscalationKind, EscalationStatus, Notice,
    NoticeStatus, StoreError, Subscriber,
};

use crate::case;
use crate::notice::{Draft, SendSummary, Templates, write_notice};

/// The actor the removal loop writes in case histories and the audit log.
pub const ACTOR: &str = "removal";

/// Escalates a case whose notices went unacknowledged (or whose subscriber
/// has no address to write to). With `dry_run`, only lists the notice
/// that would go out.
pub fn escalate(
    kanki: &Kanki,
    templates: &Templates,
    c: &Case,
    sub: Option<&Subscriber>,
    dry_run: bool,
    now: DateTime<Utc>,
    sum: &mut SendSummary,
) -> Result<(), ServiceError> {
    escalate_by(kanki, templates, c, sub, ACTOR, None, dry_run, now, sum)
}

/// [`escalate`] by `actor` (an operator's escalation) with `reason` (none:
/// the notices left unacknowledged).
#[allow(clippy::too_many_arguments)] // the notice writer's own arguments, and who and why
pub fn escalate_by(
    kanki: &Kanki,
    templates: &Templates,
    c: &Case,
    sub: Option<&Subscriber>,
    actor: &str,
    reason: Option<&str>,
    dry_run: bool,
    now: DateTime<Utc>,
    sum: &mut SendSummary,
) -> Result<(), ServiceError> {
    let r = kanki.store.removal();
    let postal = sub
        .and_then(|s| s.postal_address.clone())
        .filter(|p| !p.trim().is_empty());
    let (kind, channel) = if sub.is_some_and(|s| s.consent) {
        (EscalationKind::WalledGarden, Some(Channel::Garden))
    } else if postal.is_some() {
        (EscalationKind::Letter, Some(Channel::Letter))
    } else {
        (EscalationKind::CallList, None)
    };
    let reason = reason.map_or_else(
        || {
            format!(
                "{} notice(s) about {} unacknowledged",
                c.unacknowledged, c.threat
            )
        },
        str::to_string,
    );
    let change = CaseChange {
        actor,
        action: "escalate",
        reason: Some(&reason),
    };
    sum.escalated += 1;
    let Some(channel) = channel else {
        // A person calls: the call list is the escalation queue itself.
        if !dry_run {
            r.request_escalation(c.id, &c.subscriber, kind, &reason, now)?;
            r.update_case(
                c.id,
                &change,
                &mut |x| {
                    case::on_escalated(x, now);
                    Ok(())
                },
                now,
            )?;
        }
        return Ok(());
    };
    let language = sub.map_or(kanki.config.notices.language.as_str(), |s| &s.language);
    let draft = Draft {
        channel,
        recipient: if channel == Channel::Letter {
            postal
        } else {
            None
        },
        language,
        template: (channel == Channel::Garden).then_some("walled-garden"),
    };
    // The request first: a run stopped between the two finds the case
    // still notified and escalates again, and the request is not doubled.
    if !dry_run {
        r.request_escalation(c.id, &c.subscriber, kind, &reason, now)?;
    }
    let written = write_notice(
        kanki,
        templates,
        c,
        draft,
        &change,
        &mut |x| {
            case::on_notice(x, now);
            case::on_escalated(x, now);
        },
        dry_run,
        now,
        sum,
    )?;
    let Some(notice) = written else {
        return Ok(());
    };
    match channel {
        Channel::Garden => into_garden(kanki, &notice, now, sum)?,
        _ => {
            // Carried out by the next letter export.
            sum.letters_queued += 1;
            set_open(kanki, c.id, kind, EscalationStatus::Active, now)?;
        }
    }
    Ok(())
}

/// Puts the subscriber of a queued garden notice in the walled garden with
/// it (the DNS front follows within `directory.refresh_every`), unless its
/// case has moved on meanwhile.
pub fn into_garden(
    kanki: &Kanki,
    n: &Notice,
    now: DateTime<Utc>,
    sum: &mut SendSummary,
) -> Result<(), ServiceError> {
    let r = kanki.store.removal();
    let failed = |why: &str| {
        r.set_delivery(
            n.id,
            &Delivery {
                status: NoticeStatus::Failed,
                error: Some(why.to_string()),
                next_attempt_at: None,
            },
            now,
        )
    };
    let escalated = r
        .get_case(n.case_id)?
        .is_some_and(|c| c.state == CaseState::Escalated);
    if !escalated {
        failed("the case moved on before the subscriber was put in the walled garden")?;
        return Ok(());
    }
    let change = GardenChange {
        subscriber: n.subscriber.clone(),
        ground: kanki.config.notices.garden_ground,
        reason: format!(
            "case {}: notices unacknowledged; walled-garden notice {}",
            n.case_id, n.reference
        ),
        actor: ACTOR.into(),
    };
    match kanki.garden_enter(&change, Some(&n.body), Some(&n.reference)) {
        // Inside now, or already (an operator, or a run that stopped after
        // this step): the notice is up either way.
        Ok(_) => {}
        Err(ServiceError::Store(StoreError::NotFound)) => {
            failed("the subscriber is no longer in the directory")?;
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    r.set_delivery(
        n.id,
        &Delivery {
            status: NoticeStatus::Sent,
            error: None,
            next_attempt_at: None,
        },
        now,
    )?;
    set_open(
        kanki,
        n.case_id,
        EscalationKind::WalledGarden,
        EscalationStatus::Active,
        now,
    )?;
    sum.gardened += 1;
    tracing::info!(subscriber = %n.subscriber, case = n.case_id, notice = %n.reference, "put in the walled garden");
    Ok(())
}

/// The case is acknowledged or resolved: its walled-garden escalation is
/// done, and the subscriber leaves the garden (audited, as `kanki garden
/// leave`) unless another case keeps them there or an operator, not the
/// removal loop, put them inside. Returns whether they left.
pub fn release(
    kanki: &Kanki,
    c: &Case,
    actor: &str,
    why: &str,
    now: DateTime<Utc>,
) -> Result<bool, ServiceError> {
    let r = kanki.store.removal();
    if set_open(
        kanki,
        c.id,
        EscalationKind::WalledGarden,
        EscalationStatus::Done,
        now,
    )? == 0
    {
        return Ok(false);
    }
    let mut kept = false;
    for status in [EscalationStatus::Requested, EscalationStatus::Active] {
        kept |= r
            .list_escalations(Some(status))?
            .iter()
            .any(|e| e.subscriber == c.subscriber && e.kind == EscalationKind::WalledGarden);
    }
    if kept {
        return Ok(false);
    }
    let Some(m) = kanki.store.warning().garden_member(&c.subscriber)? else {
        return Ok(false);
    };
    if m.entered_by != ACTOR {
        return Ok(false);
    }
    let left = kanki.garden_leave(&GardenChange {
        subscriber: c.subscriber.clone(),
        ground: m.ground,
        reason: why.to_string(),
        actor: actor.to_string(),
    })?;
    if left.is_some() {
        tracing::info!(subscriber = %c.subscriber, case = c.id, "left the walled garden");
    }
    Ok(left.is_some())
}

fn is_open(s: EscalationStatus) -> bool {
    matches!(s, EscalationStatus::Requested | EscalationStatus::Active)
}

/// Sets the open escalations of `kind` of a case to `status`; how many.
fn set_open(
    kanki: &Kanki,
    case_id: i64,
    kind: EscalationKind,
    status: EscalationStatus,
    now: DateTime<Utc>,
) -> Result<usize, ServiceError> {
    let r = kanki.store.removal();
    let open: Vec<_> = r
        .case_escalations(case_id)?
        .into_iter()
        .filter(|e| e.kind == kind && is_open(e.status) && e.status != status)
        .collect();
    for e in &open {
        r.set_escalation_status(e.id, status, now)?;
    }
    Ok(open.len())
}
