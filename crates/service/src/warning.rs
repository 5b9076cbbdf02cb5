//! The walled garden and the false-positive queue as the command line, the
//! API and the warning page use them: each change made once, here.

use chrono::Utc;
use kanki_audit::{AuditEntry, AuditRecord, Ground};
use kanki_indicators::Status;
use kanki_store::{FalsePositiveReport, GardenMember, ReportOutcome, StoreError};
use serde_json::json;

use crate::{Kanki, ServiceError};

/// Why a subscriber enters or leaves the garden, and on whose word.
#[derive(Clone, Debug)]
pub struct GardenChange {
    pub subscriber: String,
    pub ground: Ground,
    /// Recorded in the audit log as the purpose.
    pub reason: String,
    pub actor: String,
}

impl GardenChange {
    fn check(&self) -> Result<(), ServiceError> {
        if self.reason.trim().is_empty() {
            return Err(ServiceError::Invalid(
                "the walled garden needs a reason (and a ground): say why".into(),
            ));
        }
        if self.actor.trim().is_empty() {
            return Err(ServiceError::Invalid(
                "a garden change needs an actor".into(),
            ));
        }
        Ok(())
    }

    fn audit(&self, action: &str, input: serde_json::Value) -> AuditEntry {
        AuditEntry {
            at: Utc::now(),
            actor: self.actor.clone(),
            action: action.into(),
            ground: Some(self.ground),
            purpose: self.reason.clone(),
            input: input.to_string(),
            result: String::new(),
        }
    }
}

impl Kanki {
    /// Puts a subscriber in the walled garden, with the notice they are
    /// shown and, when the removal loop escalates a case, that notice's
    /// reference (acknowledging it lets them out). `None` when they were
    /// inside already (nothing recorded); `Store(NotFound)` for an unknown
    /// subscriber.
    pub fn garden_enter(
        &self,
        c: &GardenChange,
        notice: Option<&str>,
        reference: Option<&str>,
    ) -> Result<Option<AuditRecord>, ServiceError> {
        c.check()?;
        let notice = notice.map(str::trim).filter(|n| !n.is_empty());
        let audit = c.audit(
            "garden-enter",
            json!({ "subscriber": c.subscriber, "notice": notice, "reference": reference }),
        );
        let member = GardenMember {
            subscriber: c.subscriber.clone(),
            ground: c.ground,
            reason: c.reason.clone(),
            notice: notice.map(str::to_string),
            entered_at: audit.at,
            entered_by: c.actor.clone(),
            leave_requested_at: None,
            leave_request_note: None,
            reference: reference.map(str::to_string),
        };
        Ok(self.store.warning().garden_enter(&member, &audit)?)
    }

    /// Lets a subscriber out. `None` when they were not inside.
    pub fn garden_leave(&self, c: &GardenChange) -> Result<Option<AuditRecord>, ServiceError> {
        c.check()?;
        let audit = c.audit("garden-leave", json!({ "subscriber": c.subscriber }));
        Ok(self.store.warning().garden_leave(&c.subscriber, &audit)?)
    }

    /// The subscriber's own "I have cleaned my machine", from the warning
    /// page, for an operator to check. Recorded under the ground they are
    /// in the garden on; `None` when they are not inside.
    pub fn garden_leave_request(
        &self,
        subscriber: &str,
        note: &str,
    ) -> Result<Option<AuditRecord>, ServiceError> {
        let w = self.store.warning();
        let Some(m) = w.garden_member(subscriber)? else {
            return Ok(None);
        };
        let c = GardenChange {
            subscriber: subscriber.into(),
            ground: m.ground,
            reason: "the subscriber says the machine is clean and asks to leave the walled garden"
                .into(),
            actor: "subscriber".into(),
        };
        let audit = c.audit(
            "garden-leave-request",
            json!({ "subscriber": subscriber, "note": note }),
        );
        Ok(w.garden_leave_request(subscriber, note, &audit)?)
    }

    /// Judges a report. `FalsePositive` also marks each indicator it names
    /// false-positive (off the list at the next snapshot), with the note.
    pub fn review_report(
        &self,
        id: i64,
        outcome: ReportOutcome,
        note: &str,
        actor: &str,
    ) -> Result<FalsePositiveReport, ServiceError> {
        let now = Utc::now();
        let report = self
            .store
            .warning()
            .review_report(id, outcome, note, actor, now)?;
        if outcome == ReportOutcome::FalsePositive {
            let reason = format!("false-positive report {id} reviewed by {actor}: {note}");
            for &ind in &report.indicator_ids {
                match self
                    .store
                    .set_status(ind, Status::FalsePositive, &reason, actor, now)
                {
                    // Deleted since the report: nothing left to mark.
                    Ok(_) | Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(report)
    }
}
