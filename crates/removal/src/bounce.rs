//! Bounces that come back by mail after a server accepted a notice:
//! delivery status notifications (RFC 3464) read from files or from the
//! maildir the abuse desk's mail server delivers them to.

use std::path::{Path, PathBuf};

use kanki_service::{Kanki, ServiceError};
use serde::Serialize;

/// What a bounce (a delivery status notification) said of a notice.
#[derive(Clone, Debug, Serialize)]
pub struct Bounce {
    pub reference: String,
    pub recipient: String,
    pub action: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
    /// Whether the notice is now `bounced` (a permanent failure); a delay
    /// changes nothing.
    pub recorded: bool,
}

/// Reads a bounce that came back by mail (RFC 3464; one message, as a
/// mailbox stores it) and marks the notice it names (by the `Message-ID`
/// its mail was sent with) bounced when delivery failed for good.
pub fn record_bounce_message(kanki: &Kanki, message: &[u8]) -> Result<Vec<Bounce>, ServiceError> {
    let dsn = kanki_notify::dsn::parse_dsn(message).map_err(ServiceError::Invalid)?;
    let id = dsn.original_message_id.as_deref().ok_or_else(|| {
        ServiceError::Invalid("the bounce does not quote the Message-ID of the mail".into())
    })?;
    let reference = kanki_notify::reference_of_message_id(id).ok_or_else(|| {
        ServiceError::Invalid(format!("Message-ID <{id}> is not one of a kanki notice"))
    })?;
    let r = kanki.store.removal();
    if r.notice_by_reference(reference)?.is_none() {
        return Err(ServiceError::Invalid(format!("no notice {reference}")));
    }
    let mut out = Vec::new();
    for rcpt in dsn.recipients {
        let recorded = rcpt.is_permanent_failure();
        if recorded {
            let reason = format!(
                "bounced later: {} {}: {}",
                rcpt.status,
                rcpt.recipient,
                rcpt.diagnostic.as_deref().unwrap_or("no diagnostic")
            );
            r.record_bounce(reference, &reason)?;
            tracing::warn!(notice = %reference, %reason, "notice bounced");
        }
        out.push(Bounce {
            reference: reference.to_string(),
            recipient: rcpt.recipient,
            action: rcpt.action,
            status: rcpt.status,
            diagnostic: rcpt.diagnostic,
            recorded,
        });
    }
    Ok(out)
}

/// What one pass over a bounce maildir did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MaildirPass {
    /// Messages read as bounces of kanki notices (moved to `cur/`, seen).
    pub bounces: u64,
    /// Notices now `bounced` (a message may name several recipients).
    pub notices_bounced: u64,
    /// Messages that are not bounces of kanki notices (moved to `cur/`,
    /// unseen, for the people who read the mailbox).
    pub other_messages: u64,
    /// Messages left in `new/` to be read again: the store or the file
    /// system failed.
    pub left: u64,
}

/// Reads each message delivered to `maildir/new/` (a mail server puts a
/// message there only once it is complete), records the bounces among
/// them, and moves every message read to `cur/`: bounces marked seen
/// (`:2,S`), other mail unseen (`:2,`) so that a person reading the
/// mailbox still sees it. A message is moved only after its bounce is
/// recorded; one read again after a crash records the same thing again.
pub fn read_maildir(kanki: &Kanki, maildir: &Path) -> Result<MaildirPass, ServiceError> {
    let new = maildir.join("new");
    let cur = maildir.join("cur");
    let io = |what: &Path| {
        let context = format!("cannot read {}", what.display());
        move |source| ServiceError::Io { context, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
        .map_err(io(&new))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    let mut pass = MaildirPass::default();
    for path in files {
        let result = std::fs::read(&path)
            .map_err(io(&path))
            .and_then(|m| record_bounce_message(kanki, &m));
        let flags = match result {
            Ok(bounces) => {
                pass.bounces += 1;
                pass.notices_bounced += bounces.iter().filter(|b| b.recorded).count() as u64;
                "S"
            }
            Err(ServiceError::Invalid(why)) => {
                pass.other_messages += 1;
                tracing::info!(file = %path.display(), %why, "not a bounce of a kanki notice; left unseen in cur/");
                ""
            }
            Err(e) => {
                pass.left += 1;
                tracing::error!(file = %path.display(), error = %e, "bounce not read; it stays in new/");
                continue;
            }
        };
        // A maildir name is `unique[:2,FLAGS]`; in new/ it has no flags.
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let unique = name.split(':').next().unwrap_or_default();
        let to = cur.join(format!("{unique}:2,{flags}"));
        if let Err(e) = std::fs::rename(&path, &to) {
            pass.left += 1;
            tracing::error!(file = %path.display(), to = %to.display(), error = %e, "cannot move a read message to cur/");
        }
    }
    Ok(pass)
}
