//! `kanki ingest`, `kanki events`, `kanki cases`, `kanki notices`,
//! `kanki escalations` and `kanki report`: the removal loop's commands.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use kanki_config::Config;
use kanki_events::Format;
use kanki_removal::case::Action;
use kanki_removal::ingest::{IngestSummary, Source};
use kanki_service::Kanki;
use kanki_service::directory::Compiled;
use kanki_store::{CaseFilter, CaseState};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// shadowserver, cowrie, sinkhole or xarf.
    #[arg(long, short)]
    format: Format,
    /// Shadowserver report type (e.g. event4_sinkhole); default: from the file name.
    #[arg(long)]
    report_type: Option<String>,
    /// Sinkhole: the name of a [[removal.sinkholes]] mapping.
    #[arg(long)]
    mapping: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// The files (gzip and zip are unpacked), or `-` for standard input. A
    /// broken file is reported and the others are still read.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn ingest(config: Config, a: IngestArgs) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open_for_import(config)?;
    let compiled = Compiled::load(&kanki.store, Utc::now())?;
    let mut failed = 0;
    for file in &a.files {
        let stdin = file.as_os_str() == "-";
        let input: Box<dyn Read + Send> = if stdin {
            Box::new(std::io::stdin())
        } else {
            match std::fs::File::open(file) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    eprintln!("kanki: {}: {e}", file.display());
                    failed += 1;
                    continue;
                }
            }
        };
        let source = Source {
            format: a.format,
            report_type: a.report_type.clone(),
            mapping: a.mapping.clone(),
            origin: if stdin {
                "stdin".into()
            } else {
                file.display().to_string()
            },
            actor: crate::directory_cli::actor_default(),
        };
        match kanki_removal::ingest::ingest(&kanki, &compiled, &source, input, &mut |_| {}) {
            Ok(s) if a.json => println!("{}", serde_json::to_string_pretty(&s)?),
            Ok(s) => print_ingest(&s),
            Err(e) => {
                eprintln!("kanki: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_ingest(s: &IngestSummary) {
    println!(
        "ingested {} as {}{} in {:.1}s",
        s.origin,
        s.format,
        s.notes
            .report_type
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        s.elapsed_ms as f64 / 1000.0
    );
    if !s.notes.unknown_columns.is_empty() {
        println!(
            "  unknown columns (kept under extra.): {}",
            s.notes.unknown_columns.join(", ")
        );
    }
    println!("  records       {:>10}", s.records);
    println!("  new events    {:>10}", s.events);
    println!("  duplicates    {:>10}", s.duplicates);
    println!("  skipped       {:>10}", s.skipped.total());
    for (r, c) in &s.skipped.0 {
        let lines: Vec<String> = c.first_lines.iter().map(u64::to_string).collect();
        println!("    {r}: {} (lines {})", c.count, lines.join(", "));
    }
    println!("  attributed    {:>10}", s.attributed);
    println!("  unattributed  {:>10}", s.unattributed.total());
    for (r, c) in &s.unattributed.0 {
        println!("    {r}: {}", c.count);
    }
    println!("  cases opened  {:>10}", s.cases_opened);
    println!("  cases updated {:>10}", s.cases_updated);
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// One event with its harmonized fields, attribution and raw record.
    Show { id: i64 },
    /// A case's events, newest first.
    List {
        #[arg(long)]
        case: i64,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// One JSON object per line, with the raw record.
        #[arg(long)]
        json: bool,
    },
}

pub fn events(config: Config, c: EventsCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    match c {
        EventsCommand::Show { id } => {
            let e = kanki
                .store
                .removal()
                .get_event(id)?
                .with_context(|| format!("no event {id}"))?;
            println!("{}", serde_json::to_string_pretty(&e)?);
        }
        EventsCommand::List { case, limit, json } => {
            let r = kanki.store.removal();
            r.get_case(case)?
                .with_context(|| format!("no case {case}"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for e in r.case_events(case, limit)? {
                if json {
                    serde_json::to_writer(&mut out, &e)?;
                    writeln!(out)?;
                } else {
                    let a = e.attribution.as_ref();
                    writeln!(
                        out,
                        "{:<12} {}  {:<39} {:>5}  {:<24} {:<32} {}",
                        e.id,
                        e.event.time_source.format("%Y-%m-%d %H:%M:%S"),
                        e.event.source_ip,
                        e.event.source_port.map_or(String::new(), |p| p.to_string()),
                        e.event.threat(),
                        a.map_or(String::new(), |a| format!(
                            "{} (audit {})",
                            a.confidence, a.audit_seq
                        )),
                        source_facts(&e.event),
                    )?;
                }
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum CasesCommand {
    /// List cases, oldest first.
    List {
        /// Only cases in these states (repeat).
        #[arg(long)]
        state: Vec<CaseState>,
        #[arg(long)]
        subscriber: Option<String>,
        #[arg(long)]
        threat: Option<String>,
        /// Cases with an id above this (the next page).
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One case with its history, notices and latest events.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Record a review of a case (a note in its history).
    Review {
        id: i64,
        #[arg(long)]
        note: String,
    },
    /// Stop notices for a case until it is released.
    Hold {
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Let notices go out again for a held case.
    Release { id: i64 },
    /// Close a case (a false positive, handled elsewhere, ...).
    Close {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

fn operator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .map_or_else(|| "operator".into(), |u| format!("cli:{u}"))
}

pub fn cases(config: Config, c: CasesCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let r = kanki.store.removal();
    let action = match c {
        CasesCommand::List {
            state,
            subscriber,
            threat,
            after,
            limit,
            json,
        } => {
            let cases = r.list_cases(&CaseFilter {
                states: state,
                subscriber,
                threat,
                after,
                limit: Some(limit),
                ..Default::default()
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cases)?);
            } else {
                println!(
                    "{:>7}  {:<12} {:<16} {:<18} {:<8} {:>7} {:>7}  last seen",
                    "id", "state", "subscriber", "threat", "severity", "events", "notices"
                );
                for c in &cases {
                    println!(
                        "{:>7}  {:<12} {:<16} {:<18} {:<8} {:>7} {:>7}  {}{}",
                        c.id,
                        c.state,
                        c.subscriber,
                        c.threat,
                        c.severity,
                        c.events,
                        c.notices,
                        c.last_seen.format("%Y-%m-%d %H:%M"),
                        if c.held { "  (held)" } else { "" }
                    );
                }
                if cases.len() == limit as usize
                    && let Some(last) = cases.last()
                {
                    println!("next page: --after {}", last.id);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        CasesCommand::Show { id, json } => {
            let case = r.get_case(id)?.with_context(|| format!("no case {id}"))?;
            let log = r.case_log(id)?;
            let notices = r.case_notices(id)?;
            let events = r.case_events(id, 5)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "case": case, "history": log, "notices": notices, "events": events,
                    }))?
                );
            } else {
                println!("{}", serde_json::to_string_pretty(&case)?);
                println!("history:");
                for l in &log {
                    println!(
                        "  {}  {:<10} {:<10} -> {:<12} {}",
                        l.at.format("%Y-%m-%d %H:%M:%S"),
                        l.actor,
                        l.action,
                        l.state,
                        l.reason.as_deref().unwrap_or("")
                    );
                }
                println!("notices:");
                for n in &notices {
                    println!(
                        "  {}  {:<6} {:<9} {}  {}",
                        n.created_at.format("%Y-%m-%d %H:%M"),
                        n.channel,
                        n.status,
                        n.reference,
                        n.recipient.as_deref().unwrap_or("")
                    );
                }
                println!("latest events:");
                for e in &events {
                    println!(
                        "  {}  {}  {}:{}  {}  {}",
                        e.id,
                        e.event.time_source.format("%Y-%m-%d %H:%M:%S"),
                        e.event.source_ip,
                        e.event
                            .source_port
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        e.event.feed_name,
                        source_facts(&e.event),
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        CasesCommand::Review { id, note } => (id, Action::Review(note)),
        CasesCommand::Hold { id, reason } => (id, Action::Hold(reason)),
        CasesCommand::Release { id } => (id, Action::Release),
        CasesCommand::Close { id, reason } => (id, Action::Close(reason)),
    };
    let case = kanki_removal::case::act(&kanki, action.0, &action.1, &operator())?;
    println!(
        "case {}: {}{}",
        case.id,
        case.state,
        if case.held { " (held)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum NoticesCommand {
    /// Send what is due: cases moved by time, mails retried, new notices
    /// within the throttles, escalations (kanki serve does it on a schedule).
    Send {
        /// Change nothing; print every notice that would go out.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write the letters waiting for the post as CSV for a mail merge
    /// (UTF-8 with a BOM), and mark them exported.
    Letters {
        /// The file to write (default: data_dir/letters/letters-<time>.csv).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read bounces that came back by mail (delivery status notifications,
    /// RFC 3464), one message per file, and mark the notices they name
    /// bounced. A directory is read whole (a maildir: its new/ and cur/).
    Bounces {
        /// Message files or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// The files `paths` name: files as given, the files of directories (and
/// of a maildir's `new/` and `cur/`), in name order.
fn message_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut files = Vec::new();
        for dir in [p.clone(), p.join("new"), p.join("cur")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e?.path();
                let hidden = path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if path.is_file() && !hidden {
                    files.push(path);
                }
            }
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

pub fn notices(config: Config, c: NoticesCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    match c {
        NoticesCommand::Send { dry_run, json } => {
            let mailer = if dry_run {
                None
            } else {
                Some(kanki_notify::Mailer::new(&kanki.config.smtp).map_err(anyhow::Error::msg)?)
            };
            let s = kanki_removal::notice::send_due(&kanki, mailer.as_ref(), dry_run, Utc::now())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(ExitCode::SUCCESS);
            }
            if dry_run {
                for n in &s.notices {
                    println!(
                        "==== case {} to {} by {} ({})",
                        n.case_id,
                        n.subscriber,
                        n.channel,
                        n.recipient.as_deref().unwrap_or("-")
                    );
                    println!("Subject: {}\n\n{}", n.subject, n.body);
                }
                println!("dry run: nothing was sent or changed");
            }
            println!(
                "notices: {} mailed, {} letters queued, {} to retry, {} failed, {} bounced; {} escalated ({} into the walled garden), {} deferred by the daily capacity, {} held, {} without contact; cases: {} quiet, {} resolved",
                if dry_run {
                    s.notices
                        .iter()
                        .filter(|n| n.channel == kanki_store::Channel::Mail)
                        .count() as u64
                } else {
                    s.mails_sent
                },
                if dry_run {
                    s.notices
                        .iter()
                        .filter(|n| n.channel == kanki_store::Channel::Letter)
                        .count() as u64
                } else {
                    s.letters_queued
                },
                s.retry_later,
                s.failed,
                s.bounced,
                s.escalated,
                if dry_run {
                    s.notices
                        .iter()
                        .filter(|n| n.channel == kanki_store::Channel::Garden)
                        .count() as u64
                } else {
                    s.gardened
                },
                s.deferred_by_capacity,
                s.held,
                s.no_contact,
                s.quiet,
                s.resolved
            );
        }
        NoticesCommand::Letters { output } => {
            let path = match output {
                Some(p) => p,
                None => {
                    let dir = kanki
                        .config
                        .notices
                        .letters_dir
                        .clone()
                        .unwrap_or_else(|| kanki.config.data_dir.join("letters"));
                    std::fs::create_dir_all(&dir)?;
                    dir.join(format!(
                        "letters-{}.csv",
                        Utc::now().format("%Y%m%dT%H%M%SZ")
                    ))
                }
            };
            let n = kanki_removal::notice::export_letters(&kanki, &path)?;
            println!("{n} letters written to {}", path.display());
        }
        NoticesCommand::Bounces { paths, json } => {
            // Every file is read; one that is not a bounce of a notice is
            // reported and the others go on.
            let mut unread = 0;
            for f in message_files(&paths)? {
                let result = std::fs::read(&f)
                    .map_err(|e| kanki_service::ServiceError::Io {
                        context: format!("cannot read {}", f.display()),
                        source: e,
                    })
                    .and_then(|m| kanki_removal::bounce::record_bounce_message(&kanki, &m));
                match (result, json) {
                    (Ok(bounces), true) => {
                        for b in bounces {
                            let mut v = serde_json::to_value(&b)?;
                            v["file"] = f.display().to_string().into();
                            println!("{v}");
                        }
                    }
                    (Ok(bounces), false) => {
                        for b in bounces {
                            println!(
                                "{}: notice {} {} ({} {}{})",
                                f.display(),
                                b.reference,
                                if b.recorded { "bounced" } else { "unchanged" },
                                b.action,
                                b.status,
                                b.diagnostic.map_or(String::new(), |d| format!(": {d}"))
                            );
                        }
                    }
                    (Err(e), _) => {
                        unread += 1;
                        eprintln!("{}: {e}", f.display());
                    }
                }
            }
            if unread > 0 {
                eprintln!("{unread} files were not bounces of kanki notices");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum EscalationsCommand {
    /// Escalation requests (walled garden, letters, calls), oldest first.
    List {
        #[arg(long)]
        status: Option<kanki_store::EscalationStatus>,
        #[arg(long)]
        json: bool,
    },
    /// Mark a request active, done or cancelled (what the walled garden,
    /// the letter desk or the call centre did with it).
    Set {
        id: i64,
        status: kanki_store::EscalationStatus,
    },
}

pub fn escalations(config: Config, c: EscalationsCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let r = kanki.store.removal();
    match c {
        EscalationsCommand::List { status, json } => {
            let list = r.list_escalations(status)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for e in list {
                    println!(
                        "{:>6}  {:<14} {:<10} case {:<6} {:<16} {}",
                        e.id, e.kind, e.status, e.case_id, e.subscriber, e.reason
                    );
                }
            }
        }
        EscalationsCommand::Set { id, status } => {
            let e = r.set_escalation_status(id, status, Utc::now())?;
            println!("escalation {}: {} {}", e.id, e.kind, e.status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[arg(long)]
    json: bool,
}

/// `kanki report`: the removal loop's outcomes.
pub fn report(config: Config, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let o = kanki_removal::outcomes::outcomes(&kanki)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "infected subscribers      {} of {} ({:.2} per 10,000)",
        o.infected_subscribers, o.subscribers, o.infected_per_10000
    );
    let states: Vec<String> = o
        .cases_by_state
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!("cases                     {}", states.join(", "));
    println!("notices by channel:");
    for (c, s, n) in &o.notices {
        println!("  {c:<8} {s:<10} {n}");
    }
    println!(
        "acknowledgement rate      {:.1}% ({} of {} notified cases)",
        100.0 * o.acknowledgement_rate,
        o.acknowledged_cases,
        o.notified_cases
    );
    let q: Vec<String> = o
        .time_to_clean_days
        .iter()
        .map(|(q, d)| format!("p{:.0} {d:.1}", q * 100.0))
        .collect();
    println!(
        "time to clean (days)      {}",
        if q.is_empty() {
            "no case resolved yet".into()
        } else {
            q.join(", ")
        }
    );
    println!(
        "reinfection rate          {:.1}% ({} of {} resolved cases)",
        100.0 * o.reinfection_rate,
        o.reinfected_cases,
        o.resolved_cases
    );
    println!("events                    {}", o.events);
    for (r, n) in &o.unattributed_by_reason {
        println!("  not attributed: {r}: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What a report said of an event's source, as one column of text: its
/// network, AS, country and reverse name where the report gave them
/// (`198.51.100.0/24 AS64500 JP host.example.jp`). The JSON output has
/// every harmonized field.
fn source_facts(e: &kanki_events::Event) -> String {
    let field = |name: &str| e.extra.get(name).map(String::as_str);
    [
        field("source.network").map(str::to_string),
        field("source.asn").map(|a| format!("AS{a}")),
        field("source.geolocation.cc").map(str::to_string),
        field("source.reverse_dns").map(str::to_string),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
}
