//! Notices: rendering from templates per class and family (Japanese and
//! English), deciding what is due under the throttles, delivery by mail
//! with retries, and letters for the post. Escalation, when notices go
//! unacknowledged, is [`crate::escalation`]'s.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use kanki_notify::{Attempt, Mail, Mailer};
use kanki_service::{Kanki, ServiceError};
use kanki_store::{
    Case, CaseChange, CaseFilter, CaseState, Channel, Delivery, NewNotice, Notice, NoticeStatus,
    StoredEvent, Subscriber,
};
use serde::Serialize;

use crate::{case, escalation};

/// The built-in templates: `{language}/{name}.txt`, the first line
/// `Subject: ...`, a blank line, the body.
const BUILTIN: &[(&str, &str)] = &[
    (
        "ja/default.txt",
        include_str!("../templates/ja/default.txt"),
    ),
    (
        "en/default.txt",
        include_str!("../templates/en/default.txt"),
    ),
    (
        "ja/infected-system.txt",
        include_str!("../templates/ja/infected-system.txt"),
    ),
    (
        "en/infected-system.txt",
        include_str!("../templates/en/infected-system.txt"),
    ),
    (
        "ja/brute-force.txt",
        include_str!("../templates/ja/brute-force.txt"),
    ),
    (
        "en/brute-force.txt",
        include_str!("../templates/en/brute-force.txt"),
    ),
    (
        "ja/vulnerable-system.txt",
        include_str!("../templates/ja/vulnerable-system.txt"),
    ),
    (
        "en/vulnerable-system.txt",
        include_str!("../templates/en/vulnerable-system.txt"),
    ),
    ("ja/mirai.txt", include_str!("../templates/ja/mirai.txt")),
    ("en/mirai.txt", include_str!("../templates/en/mirai.txt")),
    (
        "ja/walled-garden.txt",
        include_str!("../templates/ja/walled-garden.txt"),
    ),
    (
        "en/walled-garden.txt",
        include_str!("../templates/en/walled-garden.txt"),
    ),
];

/// What a template sees.
#[derive(Clone, Debug, Serialize)]
pub struct NoticeContext {
    pub reference: String,
    pub subscriber: String,
    pub family: String,
    pub class: String,
    pub severity: String,
    pub first_seen: String,
    pub last_seen: String,
    pub events: u64,
    /// The address of the latest event.
    pub address: String,
    pub evidence: Vec<Evidence>,
    /// The family's countermeasure page, and the acknowledgement page.
    pub page_url: String,
    pub ack_url: String,
    /// Where a subscriber checks that a notice is really the ISP's (the
    /// address only: they type the reference there themselves).
    pub verify_url: String,
    /// 1 for the first notice of the case.
    pub notice_number: u64,
    /// Notices since the last acknowledgement, before this one.
    pub unacknowledged: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub time: String,
    pub address: String,
    pub port: Option<u16>,
    pub feed: String,
}

/// A rendered notice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// The templates, built-in and overridden from a directory.
pub struct Templates {
    env: minijinja::Environment<'static>,
}

impl Templates {
    /// The built-in templates, with those of `dir` (same names) in front.
    pub fn load(dir: Option<&Path>) -> Result<Templates, ServiceError> {
        let mut env = minijinja::Environment::new();
        env.set_keep_trailing_newline(true);
        let mut sources: HashMap<String, String> = BUILTIN
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        if let Some(dir) = dir {
            for lang in ["ja", "en"] {
                let Ok(rd) = std::fs::read_dir(dir.join(lang)) else {
                    continue;
                };
                for f in rd.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".txt") {
                        let text =
                            std::fs::read_to_string(f.path()).map_err(|e| ServiceError::Io {
                                context: format!("cannot read template {}", f.path().display()),
                                source: e,
                            })?;
                        sources.insert(format!("{lang}/{name}"), text);
                    }
                }
            }
        }
        for (name, text) in sources {
            env.add_template_owned(name.clone(), text)
                .map_err(|e| ServiceError::Invalid(format!("template {name}: {e}")))?;
        }
        Ok(Templates { env })
    }

    /// Renders with the most specific template: the family's, the class's,
    /// the default, in `language` (else Japanese).
    pub fn render(&self, language: &str, ctx: &NoticeContext) -> Result<Rendered, ServiceError> {
        self.render_first(
            language,
            &[ctx.family.as_str(), ctx.class.as_str(), "default"],
            ctx,
        )
    }

    /// Renders with the first of the templates `names` there is.
    pub fn render_first(
        &self,
        language: &str,
        names: &[&str],
        ctx: &NoticeContext,
    ) -> Result<Rendered, ServiceError> {
        let lang = if language == "en" { "en" } else { "ja" };
        let t = names
            .iter()
            .find_map(|n| self.env.get_template(&format!("{lang}/{n}.txt")).ok())
            .ok_or_else(|| {
                ServiceError::Invalid(format!("no {lang}/{}.txt template", names.join("|")))
            })?;
        let text = t
            .render(ctx)
            .map_err(|e| ServiceError::Invalid(format!("template {}: {e}", t.name())))?;
        let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
        let subject = first
            .strip_prefix("Subject:")
            .ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "template {}: the first line is not Subject: ...",
                    t.name()
                ))
            })?
            .trim()
            .to_string();
        Ok(Rendered {
            subject,
            body: body.trim_start_matches('\n').to_string(),
        })
    }
}

/// A notice reference: 12 characters of Crockford-style base32 in groups
/// of four, after `K-`. Unguessable enough that nobody acknowledges a
/// stranger's case by trying references.
pub fn new_reference() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    // Two hashes under random keys: 128 bits, of which 60 are written.
    let a = RandomState::new().hash_one((n, now, std::process::id()));
    let b = RandomState::new().hash_one((now, n));
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bits = a ^ b.rotate_left(17);
    let chars: String = (0..12)
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect();
    format!("K-{}-{}-{}", &chars[..4], &chars[4..8], &chars[8..])
}

/// The context of a notice about `case`.
pub fn context(
    kanki: &Kanki,
    case: &Case,
    events: &[StoredEvent],
    reference: &str,
) -> NoticeContext {
    let site = kanki.config.countermeasure_site_url();
    let site = site.as_str();
    let t = |d: DateTime<Utc>| d.format("%Y-%m-%d %H:%M UTC").to_string();
    NoticeContext {
        reference: reference.to_string(),
        subscriber: case.subscriber.clone(),
        // A family named by a report is shown in the safe alphabet: a
        // notice never carries a report's markup or a link of its making.
        family: crate::site::shown_name(&case.threat),
        class: case.class.clone(),
        severity: case.severity.to_string(),
        first_seen: t(case.first_seen),
        last_seen: t(case.last_seen),
        events: case.events,
        address: events
            .first()
            .map(|e| e.event.source_ip.to_string())
            .unwrap_or_default(),
        evidence: events
            .iter()
            .map(|e| Evidence {
                time: t(e.event.time_source),
                address: e.event.source_ip.to_string(),
                port: e.event.source_port,
                feed: e.event.feed_name.clone(),
            })
            .collect(),
        page_url: format!("{site}/{}", url_segment(&case.threat)),
        ack_url: format!("{site}/ack?reference={reference}"),
        verify_url: format!("{site}/verify"),
        notice_number: case.notices + 1,
        unacknowledged: case.unacknowledged,
    }
}

/// A family name as a path segment (letters, digits, `-`, `_`, `.`).
fn url_segment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// A notice that would go out (dry run) or went out.
#[derive(Clone, Debug, Serialize)]
pub struct Planned {
    pub case_id: i64,
    pub subscriber: String,
    pub channel: Channel,
    pub recipient: Option<String>,
    pub reference: String,
    pub subject: String,
    pub body: String,
}

/// What a `notices send` run did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SendSummary {
    pub dry_run: bool,
    /// Cases moved by time (quiet, resolved).
    pub quiet: u64,
    pub resolved: u64,
    pub mails_sent: u64,
    pub letters_queued: u64,
    pub failed: u64,
    pub bounced: u64,
    /// Mails to retry later.
    pub retry_later: u64,
    pub escalated: u64,
    /// Subscribers put in the walled garden.
    pub gardened: u64,
    /// Cases due whose notice waits for tomorrow's capacity.
    pub deferred_by_capacity: u64,
    pub held: u64,
    /// Subscribers with neither a mail address nor a postal address.
    pub no_contact: u64,
    pub notices: Vec<Planned>,
}

/// Sends what is due: moves cases by time, retries mails, writes new
/// notices within the throttles, escalates. With `dry_run`, changes
/// nothing and lists every notice that would go out.
pub fn send_due(
    kanki: &Kanki,
    mailer: Option<&Mailer>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<SendSummary, ServiceError> {
    let cfg = &kanki.config.notices;
    let r = kanki.store.removal();
    let templates = Templates::load(cfg.templates.as_deref())?;
    let mut sum = SendSummary {
        dry_run,
        ..Default::default()
    };
    let secs = |h: kanki_config::HumanDuration| Duration::seconds(h.as_secs().min(1 << 40) as i64);
    let (quiet_after, resolve_after) = (
        secs(kanki.config.removal.quiet_after),
        secs(kanki.config.removal.resolve_after),
    );
    // Time passing first: quiet and resolved cases get no notice.
    let open = r.list_cases(&CaseFilter {
        states: vec![
            CaseState::Notified,
            CaseState::Acknowledged,
            CaseState::Escalated,
            CaseState::Quiet,
        ],
        ..Default::default()
    })?;
    for mut c in open {
        let before = c.state;
        if case::on_tick(&mut c, now, quiet_after, resolve_after) {
            match c.state {
                CaseState::Quiet => sum.quiet += 1,
                _ => sum.resolved += 1,
            }
            if !dry_run {
                let change = CaseChange {
                    actor: "removal",
                    action: "re-observation",
                    reason: Some(if c.state == CaseState::Quiet {
                        "no events for the quiet period"
                    } else {
                        "no events for the resolution period"
                    }),
                };
                let c = r.update_case(
                    c.id,
                    &change,
                    &mut |x| {
                        if x.state == before {
                            case::on_tick(x, now, quiet_after, resolve_after);
                        }
                        Ok(())
                    },
                    now,
                )?;
                // Verified clean: out of the walled garden, if the loop put them there.
                if c.state == CaseState::Resolved {
                    escalation::release(
                        kanki,
                        &c,
                        "removal",
                        "re-observation: no events for the resolution period",
                        now,
                    )?;
                }
            }
        }
    }
    if !dry_run {
        // Mails to retry, and walled-garden notices to put up (new ones
        // below, or left by a run that stopped half-way).
        for n in r.notices_due(now)? {
            match (n.channel, mailer) {
                (Channel::Mail, Some(m)) => deliver(kanki, m, &n, now, &mut sum)?,
                (Channel::Garden, _) => escalation::into_garden(kanki, &n, now, &mut sum)?,
                _ => {}
            }
        }
    }
    let mut capacity =
        (cfg.daily_capacity as u64).saturating_sub(r.notices_since(now - Duration::days(1))?);
    let min_interval = secs(cfg.min_interval);
    let due = r.list_cases(&CaseFilter {
        states: vec![CaseState::New, CaseState::Reinfected, CaseState::Notified],
        ..Default::default()
    })?;
    for c in due {
        if c.held {
            sum.held += 1;
            continue;
        }
        if c.state == CaseState::Notified {
            let Some(last) = c.last_notice_at else {
                continue;
            };
            // Within the per-case throttle. (A case without events for the
            // quiet period went quiet above and gets no reminder.)
            if last + min_interval > now {
                continue;
            }
        }
        let sub = kanki.store.directory().get_subscriber(&c.subscriber)?;
        if c.state == CaseState::Notified && c.unacknowledged >= cfg.escalate_after as u64 {
            escalation::escalate(kanki, &templates, &c, sub.as_ref(), dry_run, now, &mut sum)?;
            continue;
        }
        if capacity == 0 {
            sum.deferred_by_capacity += 1;
            continue;
        }
        let Some(sub) = sub else {
            sum.no_contact += 1;
            continue;
        };
        capacity -= 1;
        let by = (escalation::ACTOR, None);
        notify(
            kanki, &templates, &c, &sub, mailer, by, dry_run, now, &mut sum,
        )?;
    }
    Ok(sum)
}

/// Writes a notice about `c` to `sub` (mail, else letter; with neither,
/// the case escalates: the walled garden with consent, else the call
/// list) and sends a mail at once. `by`: the actor and, for an operator's
/// "send now", their reason.
#[allow(clippy::too_many_arguments)] // the case, its subscriber, how, who, when, and the tally
fn notify(
    kanki: &Kanki,
    templates: &Templates,
    c: &Case,
    sub: &Subscriber,
    mailer: Option<&Mailer>,
    by: (&str, Option<&str>),
    dry_run: bool,
    now: DateTime<Utc>,
    sum: &mut SendSummary,
) -> Result<(), ServiceError> {
    let (channel, recipient) = match (&sub.email, &sub.postal_address) {
        (Some(e), _) if !e.is_empty() => (Channel::Mail, Some(e.clone())),
        (_, Some(p)) if !p.is_empty() => (Channel::Letter, Some(p.clone())),
        _ => {
            // Nobody to write to: straight to the walled garden (with
            // consent) or the call list.
            sum.no_contact += 1;
            let (actor, reason) = by;
            return escalation::escalate_by(
                kanki,
                templates,
                c,
                Some(sub),
                actor,
                reason,
                dry_run,
                now,
                sum,
            );
        }
    };
    let draft = Draft {
        channel,
        recipient,
        language: &sub.language,
        template: None,
    };
    let reason = match by.1 {
        Some(r) => format!("{}: {r}", channel.as_str()),
        None => channel.as_str().to_string(),
    };
    let change = CaseChange {
        actor: by.0,
        action: "notice",
        reason: Some(&reason),
    };
    let written = write_notice(
        kanki,
        templates,
        c,
        draft,
        &change,
        &mut |x| case::on_notice(x, now),
        dry_run,
        now,
        sum,
    )?;
    let Some(notice) = written else {
        return Ok(());
    };
    match (channel, mailer) {
        (Channel::Mail, Some(m)) => deliver(kanki, m, &notice, now, sum)?,
        (Channel::Mail, None) => sum.retry_later += 1,
        (Channel::Letter, _) => sum.letters_queued += 1,
        // Only escalation puts up a garden notice.
        (Channel::Garden, _) => {}
    }
    Ok(())
}

/// An operator's "send now": a notice about case `id` at once, past the
/// per-case interval and the daily capacity, to an open case that is not
/// held (see [`case::may_notify_now`]).
pub fn send_now(
    kanki: &Kanki,
    mailer: Option<&Mailer>,
    id: i64,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<SendSummary, ServiceError> {
    if reason.trim().is_empty() {
        return Err(ServiceError::Invalid("send now needs a reason".into()));
    }
    let r = kanki.store.removal();
    let c = r.get_case(id)?.ok_or(kanki_store::StoreError::NotFound)?;
    case::may_notify_now(&c)?;
    let Some(sub) = kanki.store.directory().get_subscriber(&c.subscriber)? else {
        return Err(ServiceError::Invalid(format!(
            "case {id}: subscriber {} is not in the directory",
            c.subscriber
        )));
    };
    let templates = Templates::load(kanki.config.notices.templates.as_deref())?;
    let mut sum = SendSummary::default();
    notify(
        kanki,
        &templates,
        &c,
        &sub,
        mailer,
        (actor, Some(reason)),
        false,
        now,
        &mut sum,
    )?;
    Ok(sum)
}

/// A notice to write about a case.
pub(crate) struct Draft<'a> {
    pub channel: Channel,
    pub recipient: Option<String>,
    pub language: &'a str,
    /// The template by name; `None`: the most specific for the case.
    pub template: Option<&'a str>,
}

/// Renders a notice with a fresh reference and lists it in the summary;
/// unless `dry_run`, stores it queued together with the case as `f`
/// changes it, and returns it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_notice(
    kanki: &Kanki,
    templates: &Templates,
    c: &Case,
    d: Draft<'_>,
    change: &CaseChange<'_>,
    f: &mut dyn FnMut(&mut Case),
    dry_run: bool,
    now: DateTime<Utc>,
    sum: &mut SendSummary,
) -> Result<Option<Notice>, ServiceError> {
    let r = kanki.store.removal();
    let reference = new_reference();
    let events = r.case_events(c.id, 5)?;
    let ctx = context(kanki, c, &events, &reference);
    let rendered = match d.template {
        Some(name) => templates.render_first(d.language, &[name], &ctx)?,
        None => templates.render(d.language, &ctx)?,
    };
    sum.notices.push(Planned {
        case_id: c.id,
        subscriber: c.subscriber.clone(),
        channel: d.channel,
        recipient: d.recipient.clone(),
        reference: reference.clone(),
        subject: rendered.subject.clone(),
        body: rendered.body.clone(),
    });
    if dry_run {
        return Ok(None);
    }
    let notice = r.record_notice(
        &NewNotice {
            reference,
            case_id: c.id,
            subscriber: c.subscriber.clone(),
            channel: d.channel,
            language: d.language.to_string(),
            recipient: d.recipient,
            subject: rendered.subject,
            body: rendered.body,
            status: NoticeStatus::Queued,
        },
        change,
        f,
        now,
    )?;
    Ok(Some(notice))
}

/// One delivery attempt of a queued mail notice.
fn deliver(
    kanki: &Kanki,
    m: &Mailer,
    n: &Notice,
    now: DateTime<Utc>,
    sum: &mut SendSummary,
) -> Result<(), ServiceError> {
    let cfg = &kanki.config.notices;
    let Some(to) = &n.recipient else {
        return Ok(());
    };
    let mail = Mail {
        to,
        subject: &n.subject,
        body: &n.body,
        reference: Some(&n.reference),
    };
    let d = match m.attempt(&mail, n.attempts, cfg.max_attempts, cfg.retry_backoff.0) {
        Attempt::Sent => {
            sum.mails_sent += 1;
            Delivery {
                status: NoticeStatus::Sent,
                error: None,
                next_attempt_at: None,
            }
        }
        Attempt::Bounced(e) => {
            sum.bounced += 1;
            tracing::warn!(notice = %n.reference, error = %e, "notice bounced");
            Delivery {
                status: NoticeStatus::Bounced,
                error: Some(e),
                next_attempt_at: None,
            }
        }
        Attempt::Failed(e) => {
            sum.failed += 1;
            tracing::warn!(notice = %n.reference, error = %e, "notice failed, no attempts left");
            Delivery {
                status: NoticeStatus::Failed,
                error: Some(e),
                next_attempt_at: None,
            }
        }
        Attempt::Retry { error, wait } => {
            sum.retry_later += 1;
            Delivery {
                status: NoticeStatus::Queued,
                error: Some(error),
                next_attempt_at: Some(now + Duration::from_std(wait).unwrap_or_default()),
            }
        }
    };
    kanki.store.removal().set_delivery(n.id, &d, now)?;
    Ok(())
}

/// Writes the letters waiting for the post to `path` (atomically) and
/// marks them exported. Returns how many.
pub fn export_letters(kanki: &Kanki, path: &Path) -> Result<u64, ServiceError> {
    let io = |e: std::io::Error| ServiceError::Io {
        context: format!("cannot write {}", path.display()),
        source: e,
    };
    let letters = kanki.store.removal().take_letters(Utc::now())?;
    let tmp = path.with_extension("kanki-tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    let n = kanki_notify::write_letters(
        &mut f,
        letters.iter().map(|l| kanki_notify::Letter {
            reference: &l.reference,
            subscriber: &l.subscriber,
            postal_address: l.recipient.as_deref().unwrap_or(""),
            language: &l.language,
            subject: &l.subject,
            body: &l.body,
        }),
    )
    .map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(family: &str, class: &str) -> NoticeContext {
        NoticeContext {
            reference: "K-ABCD-EFGH-JKMN".into(),
            subscriber: "S1".into(),
            family: family.into(),
            class: class.into(),
            severity: "high".into(),
            first_seen: "2024-05-01 00:00 UTC".into(),
            last_seen: "2024-05-02 00:00 UTC".into(),
            events: 3,
            address: "192.0.2.10".into(),
            evidence: vec![Evidence {
                time: "2024-05-01 00:00 UTC".into(),
                address: "192.0.2.10".into(),
                port: Some(51000),
                feed: "Sinkhole-Events IPv4".into(),
            }],
            page_url: "https://isp.example/countermeasures/emotet".into(),
            ack_url: "https://isp.example/countermeasures/ack?reference=K-ABCD-EFGH-JKMN".into(),
            verify_url: "https://isp.example/countermeasures/verify".into(),
            notice_number: 2,
            unacknowledged: 1,
        }
    }

    #[test]
    fn the_most_specific_template_in_the_subscribers_language() {
        let t = Templates::load(None).unwrap();
        let ja = t.render("ja", &ctx("emotet", "infected-system")).unwrap();
        assert!(ja.subject.contains("emotet") && ja.subject.contains("K-ABCD-EFGH-JKMN"));
        assert!(ja.body.contains("192.0.2.10:51000"), "{}", ja.body);
        assert!(ja.body.contains("2 回目"));
        let en = t.render("en", &ctx("mirai", "infected-system")).unwrap();
        assert!(en.subject.contains("Mirai"), "{}", en.subject);
        let other = t.render("en", &ctx("x", "spam")).unwrap();
        assert!(other.body.contains("class: spam"));
    }

    #[test]
    fn every_link_in_a_notice_is_the_countermeasure_site() {
        let t = Templates::load(None).unwrap();
        for lang in ["ja", "en"] {
            for (f, c) in [
                ("emotet", "infected-system"),
                ("mirai", "infected-system"),
                ("ssh", "brute-force"),
                ("dns-open-resolver", "vulnerable-system"),
                ("x", "other"),
            ] {
                let r = t.render(lang, &ctx(f, c)).unwrap();
                for word in r.body.split_whitespace().filter(|w| w.contains("://")) {
                    assert!(
                        word.starts_with("https://isp.example/countermeasures/"),
                        "{lang}/{c}: {word}"
                    );
                }
            }
        }
    }

    #[test]
    fn references_differ() {
        let a = new_reference();
        assert_eq!(a.len(), 16);
        assert_ne!(a, new_reference());
    }
}
