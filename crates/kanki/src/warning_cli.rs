//! The warning page's subcommands: the walled garden, and the queue of
//! false-positive reports.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use kanki_audit::Ground;
use kanki_config::Config;
use kanki_service::warning::GardenChange;
use kanki_service::{Kanki, ServiceError};
use kanki_store::{ReportOutcome, ReportQuery, ReportStatus, StoreError};

use crate::directory_cli::actor_default;

#[derive(Subcommand, Debug)]
pub enum GardenCommand {
    /// Put a subscriber in the walled garden: every name but the
    /// `[dns] garden_allow` sites leads to the warning page, which shows the
    /// notice and how to leave. Audited.
    Enter {
        #[command(flatten)]
        change: GardenArgs,
        /// What the subscriber is shown (default: a general notice).
        #[arg(long)]
        notice: Option<String>,
    },
    /// Let a subscriber out of the walled garden. Audited.
    Leave {
        #[command(flatten)]
        change: GardenArgs,
    },
    /// Who is in the walled garden, and who asked to leave.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct GardenArgs {
    subscriber: String,
    /// The legal ground: consent, legitimate-business or emergency-evacuation.
    #[arg(long)]
    ground: Ground,
    /// Why: recorded in the audit log.
    #[arg(long)]
    reason: String,
}

impl GardenArgs {
    fn change(self) -> GardenChange {
        GardenChange {
            subscriber: self.subscriber,
            ground: self.ground,
            reason: self.reason,
            actor: actor_default(),
        }
    }
}

pub fn garden(config: Config, c: GardenCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    match c {
        GardenCommand::Enter { change, notice } => {
            let c = change.change();
            match kanki.garden_enter(&c, notice.as_deref(), None) {
                Ok(Some(r)) => println!(
                    "{} is in the walled garden (audit record {}); kanki serve follows within directory.refresh_every",
                    c.subscriber, r.seq
                ),
                Ok(None) => println!(
                    "{} was in the walled garden already; nothing recorded",
                    c.subscriber
                ),
                Err(ServiceError::Store(StoreError::NotFound)) => {
                    bail!("no subscriber {}", c.subscriber)
                }
                Err(e) => return Err(e.into()),
            }
        }
        GardenCommand::Leave { change } => {
            let c = change.change();
            match kanki.garden_leave(&c)? {
                Some(r) => println!(
                    "{} has left the walled garden (audit record {})",
                    c.subscriber, r.seq
                ),
                None => bail!("{} is not in the walled garden", c.subscriber),
            }
        }
        GardenCommand::List { json } => {
            let members = kanki.store.warning().garden()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&members)?);
            } else {
                for m in members {
                    println!(
                        "{:<20} since {} by {} ({}): {}",
                        m.subscriber,
                        m.entered_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        m.entered_by,
                        m.ground,
                        m.reason
                    );
                    if let Some(at) = m.leave_requested_at {
                        println!(
                            "  asked to leave at {}: {}",
                            at.format("%Y-%m-%d %H:%M:%S UTC"),
                            m.leave_request_note.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum FalsePositivesCommand {
    /// The reports sent from the warning page ("this site is not malicious").
    List {
        /// open, reviewed or all.
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long)]
        json: bool,
    },
    /// Judge a report: `false-positive` marks its indicators false-positive
    /// (off the list at the next snapshot); `confirmed` keeps the listing.
    Review {
        id: i64,
        #[arg(long)]
        outcome: ReportOutcome,
        #[arg(long)]
        note: String,
    },
}

pub fn false_positives(config: Config, c: FalsePositivesCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    match c {
        FalsePositivesCommand::List { status, json } => {
            let status = match status.as_str() {
                "all" => None,
                s => Some(
                    s.parse::<ReportStatus>()
                        .map_err(|e| anyhow::anyhow!("{e}, or all"))?,
                ),
            };
            let reports = kanki.store.warning().reports(&ReportQuery {
                status,
                ..Default::default()
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for r in reports {
                    let ids: Vec<String> =
                        r.indicator_ids.iter().map(|i| format!("#{i}")).collect();
                    println!(
                        "{:>5} {} {:<8} {} [{}] {}",
                        r.id,
                        r.reported_at.format("%Y-%m-%d %H:%M:%S"),
                        r.status.as_str(),
                        r.name,
                        ids.join(" "),
                        r.url
                    );
                    println!("      note: {}", r.note.replace('\n', "\n            "));
                    if let Some(c) = &r.contact {
                        println!("      contact: {c}");
                    }
                    if let Some(o) = r.outcome {
                        println!(
                            "      reviewed: {} by {}: {}",
                            o.as_str(),
                            r.reviewed_by.as_deref().unwrap_or("?"),
                            r.review_note.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
        FalsePositivesCommand::Review { id, outcome, note } => {
            let actor = actor_default();
            let r = match kanki.review_report(id, outcome, &note, &actor) {
                Err(ServiceError::Store(StoreError::NotFound)) => bail!("no report {id}"),
                r => r?,
            };
            println!(
                "report {}: reviewed, {}{}",
                r.id,
                outcome.as_str(),
                if outcome == ReportOutcome::FalsePositive {
                    format!(
                        "; indicators {:?} marked false-positive (kanki serve drops them from the list at its next refresh)",
                        r.indicator_ids
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
