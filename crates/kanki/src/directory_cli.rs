//! The subscriber directory's subcommands: subscribers, consent, bindings,
//! attribution (`who`) and the audit log.

use std::fs::File;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::{Args, Subcommand};
use kanki_audit::Ground;
use kanki_audit::checkpoint::{Signer, read_all};
use kanki_config::Config;
use kanki_directory::{SubscriberRow, read_subscribers};
use kanki_service::Kanki;
use kanki_service::directory::WhoQuery;
use kanki_store::AuditFilter;

/// Accepts RFC 3339 (`2026-11-16T12:00:00+09:00`) or `YYYY-MM-DD HH:MM:SS`
/// taken as UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "invalid time {s:?}: write RFC 3339 (2026-11-16T12:00:00+09:00) or \"2026-11-16 03:00:00\" (UTC)"
    ))
}

/// The actor the command line records: the operating-system user
/// running it (`os:alice`). No option names another: the one-shot command
/// line acts as the machine's local administrator.
pub(crate) fn actor_default() -> String {
    kanki_operators::os_actor()
}

#[derive(Subcommand, Debug)]
pub enum SubscribersCommand {
    /// Import subscribers from CSV (columns at least id,email,language,consent;
    /// see docs/bindings.md). A changed consent is recorded as a grant or a
    /// revocation through the channel "import".
    Import {
        file: PathBuf,
        /// The consent channel recorded for changes made by this file.
        #[arg(long, default_value = "import")]
        channel: String,
    },
    /// Show one subscriber with identifiers and consent history.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List subscribers by id.
    List {
        /// Start after this id.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub fn subscribers(config: Config, c: SubscribersCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let d = kanki.store.directory();
    match c {
        SubscribersCommand::Import { file, channel } => {
            let f = File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
            let rows = read_subscribers(BufReader::new(f))
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut records = Vec::new();
            let mut skipped = Vec::new();
            for row in rows {
                match row.with_context(|| format!("reading {}", file.display()))? {
                    SubscriberRow::Record(r) => records.push(r),
                    SubscriberRow::Skip(s) => skipped.push(s),
                }
            }
            let counts = d.upsert_subscribers(&records, &channel, &actor_default(), Utc::now())?;
            println!(
                "subscribers: {} read, {} added, {} updated, {} unchanged, {} consent changes, {} skipped",
                records.len() + skipped.len(),
                counts.added,
                counts.updated,
                counts.unchanged,
                counts.consent_changes,
                skipped.len()
            );
            for s in skipped.iter().take(10) {
                println!("  skipped line {}: {}", s.line, s.reason);
            }
        }
        SubscribersCommand::Show { id, json } => {
            let Some(s) = d.get_subscriber(&id)? else {
                bail!("no subscriber {id}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("subscriber {}", s.id);
                println!("  email:     {}", s.email.as_deref().unwrap_or("-"));
                println!(
                    "  address:   {}",
                    s.postal_address.as_deref().unwrap_or("-")
                );
                println!("  language:  {}", s.language);
                println!("  plan:      {}", s.plan.as_deref().unwrap_or("-"));
                println!(
                    "  consent:   {}",
                    if s.consent { "granted" } else { "not granted" }
                );
                for i in &s.identifiers {
                    println!("  identifier {i}");
                }
                for e in &s.consent_history {
                    println!(
                        "  {} {} via {} by {}",
                        e.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        if e.granted { "granted" } else { "revoked" },
                        e.channel,
                        e.actor
                    );
                }
            }
        }
        SubscribersCommand::List { after, limit } => {
            for s in d.list_subscribers(after.as_deref(), limit)? {
                println!(
                    "{:<24} {:<8} {:<3} {}",
                    s.id,
                    if s.consent { "consent" } else { "-" },
                    s.language,
                    s.email.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum ConsentCommand {
    /// Record the subscriber's consent to be warned.
    Grant(ConsentArgs),
    /// Record a revocation; a running `kanki serve` stops warning the
    /// subscriber within its `directory.refresh_every`.
    Revoke(ConsentArgs),
}

#[derive(Args, Debug)]
pub struct ConsentArgs {
    subscriber: String,
    /// How the subscriber said so: web, phone, contract, letter, ...
    #[arg(long, default_value = "operator")]
    channel: String,
}

pub fn consent(config: Config, c: ConsentCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let (granted, a) = match c {
        ConsentCommand::Grant(a) => (true, a),
        ConsentCommand::Revoke(a) => (false, a),
    };
    let changed = kanki
        .store
        .directory()
        .set_consent(
            &a.subscriber,
            granted,
            &a.channel,
            &actor_default(),
            Utc::now(),
        )
        .map_err(|e| match e {
            kanki_store::StoreError::NotFound => anyhow::anyhow!("no subscriber {}", a.subscriber),
            e => e.into(),
        })?;
    let what = if granted { "granted" } else { "revoked" };
    if changed {
        println!("{}: consent {what}", a.subscriber);
    } else {
        println!(
            "{}: consent was already {what}; nothing recorded",
            a.subscriber
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct WhoArgs {
    /// The address seen (IPv4 or IPv6).
    address: IpAddr,
    /// When it was seen (RFC 3339, or "YYYY-MM-DD HH:MM:SS" in UTC); default now.
    #[arg(long, value_parser = parse_time)]
    at: Option<DateTime<Utc>>,
    /// The source port, behind carrier-grade NAT.
    #[arg(long)]
    port: Option<u16>,
    /// The legal ground: consent, legitimate-business or emergency-evacuation.
    #[arg(long)]
    ground: Ground,
    /// Why: recorded in the audit log with the answer.
    #[arg(long)]
    purpose: String,
    /// The case an emergency evacuation serves.
    #[arg(long)]
    case: Option<i64>,
    /// The event an emergency evacuation serves.
    #[arg(long)]
    event: Option<i64>,
    /// The program a legitimate business act belongs to (OP25B, IP53B, ...).
    #[arg(long)]
    program: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn who(config: Config, a: WhoArgs) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let at = a.at.unwrap_or_else(Utc::now);
    // From the store's index of prefixes: one address's bindings, not the
    // whole directory compiled.
    let r = kanki.who_in_store(&WhoQuery {
        address: a.address,
        port: a.port,
        at,
        ground: a.ground,
        purpose: a.purpose,
        actor: actor_default(),
        cites: kanki_service::directory::Cites {
            case: a.case,
            event: a.event,
            program: a.program,
        },
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} at {}: {} ({}), audit record {}",
            a.address,
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            r.subscriber.as_deref().unwrap_or("-"),
            serde_json::to_value(r.confidence)?.as_str().unwrap_or(""),
            r.audit_seq
        );
        for h in &r.holders {
            let b = &h.binding.binding;
            println!(
                "  {} ({}) held {}{} from {} to {}{} [{} binding {}]",
                h.subscriber.as_deref().unwrap_or("unknown subscriber"),
                h.subject,
                b.prefix,
                b.ports.map(|p| format!(" ports {p}")).unwrap_or_default(),
                b.from.format("%Y-%m-%d %H:%M:%S"),
                b.to.map_or("(still held)".into(), |t| t
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()),
                if h.near_boundary {
                    ", near a boundary"
                } else {
                    ""
                },
                b.origin,
                h.binding.id
            );
        }
    }
    Ok(if r.holders.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain, one record at a time; names the first broken
    /// record.
    Verify {
        /// Also hold the log to every signed checkpoint in this file (as
        /// `kanki serve` writes them to a file or syslog): a log cut short
        /// or rewritten after a checkpoint fails.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The checkpoints' public key (hex); by default the one of
        /// `audit.checkpoint_key_file` when it is readable here, else the
        /// key each line names (then a forger's own key would do).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Write a new Ed25519 signing key for checkpoints (PKCS#8, mode 0600)
    /// and print its public key.
    Keygen { out: PathBuf },
    /// Sign the chain's head now and write the checkpoint where
    /// `audit.checkpoint_to` says (`kanki serve` does it every
    /// `audit.checkpoint_every`).
    Checkpoint,
    /// Show audit records (oldest first), filtered.
    Show {
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        #[arg(long)]
        actor: Option<String>,
        /// who, purge, ...
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        ground: Option<Ground>,
        /// Records whose inputs or result mention this (a subscriber id, an address).
        #[arg(long)]
        mentions: Option<String>,
        /// Records whose purpose contains this (a case number, "abuse notice").
        #[arg(long)]
        purpose: Option<String>,
        /// Only the newest N.
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

pub fn audit(config: Config, c: AuditCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let d = kanki.store.directory();
    match c {
        AuditCommand::Verify {
            checkpoint,
            public_key,
        } => {
            let checkpoints = match &checkpoint {
                Some(file) => {
                    let key = match public_key {
                        Some(k) => Some(k),
                        None => match &kanki.config.audit.checkpoint_key_file {
                            Some(f) if f.exists() => Some(
                                Signer::from_file(f)
                                    .map_err(anyhow::Error::msg)?
                                    .public_key(),
                            ),
                            _ => {
                                eprintln!(
                                    "warning: no --public-key and no readable audit.checkpoint_key_file: each checkpoint is checked against the key it names"
                                );
                                None
                            }
                        },
                    };
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let cps = read_all(&text, key.as_deref())
                        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                    if cps.is_empty() {
                        bail!("{} holds no checkpoint", file.display());
                    }
                    cps
                }
                None => Vec::new(),
            };
            match kanki.verify_audit(&checkpoints)? {
                Ok(v) => {
                    println!("audit log intact: {} records, head {}", v.records, v.head);
                    if checkpoint.is_some() {
                        println!(
                            "checkpoints: {} confirmed, {} of records since purged",
                            v.checkpoints_confirmed, v.checkpoints_purged
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(b) => {
                    println!("{b}");
                    Ok(ExitCode::from(3))
                }
            }
        }
        AuditCommand::Keygen { out } => {
            let key = Signer::generate();
            crate::files::write_private(&out, &key)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let s = Signer::from_pkcs8(&key).map_err(anyhow::Error::msg)?;
            println!("{}", s.public_key());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint => {
            let c = crate::checkpoint::write(&kanki)?;
            println!("{c}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show {
            since,
            until,
            actor,
            action,
            ground,
            mentions,
            purpose,
            limit,
            json,
        } => {
            let q = AuditFilter {
                since,
                until,
                actor,
                action,
                ground,
                mentions,
                purpose,
                before: None,
                limit,
            };
            let mut out = std::io::stdout().lock();
            let mut err = None;
            d.audit_records(&q, &mut |r| {
                use std::io::Write;
                let res = if json {
                    serde_json::to_string(&r)
                        .map_err(std::io::Error::other)
                        .and_then(|s| writeln!(out, "{s}"))
                } else {
                    writeln!(
                        out,
                        "{:>6} {} {:<10} {:<6} {:<21} {}\n       input {}\n       result {}",
                        r.seq,
                        r.entry.at.format("%Y-%m-%d %H:%M:%S"),
                        r.entry.actor,
                        r.entry.action,
                        r.entry.ground.map_or("-", Ground::as_str),
                        r.entry.purpose,
                        r.entry.input,
                        r.entry.result
                    )
                };
                if let Err(e) = res {
                    err.get_or_insert(e);
                }
            })?;
            if let Some(e) = err
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(e.into());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs the retention purge now (serve runs it on a schedule).
pub fn purge(config: Config) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let c = kanki.purge_expired(Utc::now(), &actor_default())?;
    println!(
        "purged {} bindings and {} audit records past their retention (recorded in the audit log)",
        c.bindings, c.audit_records
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum BindingsCommand {
    /// Import binding records (who held which address when) from a file.
    Import {
        /// static, kea, dhcpd, detail or cgnat (see docs/bindings.md).
        #[arg(long)]
        format: kanki_directory::BindingOrigin,
        /// The file, or - for standard input.
        file: PathBuf,
    },
    /// Follow a growing lease or accounting file (a FreeRADIUS detail file
    /// unless --format says otherwise), importing each record as it is
    /// completed, until interrupted: the follower `[[directory.follow]]`
    /// runs in `kanki serve`. The position is kept in the data directory,
    /// so a restart (of either) carries on where it stopped, and rotation
    /// is followed.
    Follow {
        file: PathBuf,
        /// detail, kea or dhcpd.
        #[arg(long, default_value = "detail")]
        format: kanki_directory::BindingOrigin,
        /// How often to look for new records.
        #[arg(long, default_value = "1s")]
        every: kanki_config::HumanDuration,
    },
}

/// Applies rows in batches; counts what was skipped, by reason.
struct BindingBatches<'a> {
    kanki: &'a Kanki,
    origin: kanki_directory::BindingOrigin,
    events: Vec<kanki_directory::BindingEvent>,
    counts: kanki_store::BindingCounts,
    read: u64,
    skipped: std::collections::BTreeMap<String, (u64, Vec<u64>)>,
}

impl BindingBatches<'_> {
    fn push(&mut self, row: kanki_directory::BindingRow) -> anyhow::Result<()> {
        self.read += 1;
        match row {
            kanki_directory::BindingRow::Event { event, .. } => {
                self.events.push(event);
                if self.events.len() >= 50_000 {
                    self.flush()?;
                }
            }
            kanki_directory::BindingRow::Skip(s) => {
                let e = self.skipped.entry(s.reason).or_default();
                e.0 += 1;
                if e.1.len() < 5 {
                    e.1.push(s.line);
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let (c, _) =
            self.kanki
                .store
                .directory()
                .apply_bindings(self.origin, &self.events, Utc::now())?;
        self.counts.added += c.added;
        self.counts.updated += c.updated;
        self.counts.unchanged += c.unchanged;
        self.counts.closed += c.closed;
        self.events.clear();
        Ok(())
    }

    fn summary(&self) {
        let c = &self.counts;
        println!(
            "bindings: {} records read, {} added, {} updated, {} unchanged, {} sessions closed, {} skipped",
            self.read,
            c.added,
            c.updated,
            c.unchanged,
            c.closed,
            self.skipped.values().map(|s| s.0).sum::<u64>()
        );
        for (reason, (n, lines)) in &self.skipped {
            let lines: Vec<String> = lines.iter().map(u64::to_string).collect();
            println!("  skipped {n}: {reason} (lines {})", lines.join(", "));
        }
    }
}

pub fn bindings(config: Config, c: BindingsCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    match c {
        BindingsCommand::Import { format, file } => {
            let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                let f =
                    File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            };
            let mut b = BindingBatches {
                kanki: &kanki,
                origin: format,
                events: Vec::new(),
                counts: Default::default(),
                read: 0,
                skipped: Default::default(),
            };
            let mut broke = None;
            for row in kanki_directory::sources::read(format, input) {
                match row {
                    Ok(row) => b.push(row)?,
                    Err(e) => {
                        broke = Some(e);
                        break;
                    }
                }
            }
            b.flush()?;
            b.summary();
            if let Some(e) = broke {
                bail!(
                    "the input broke off after {} records ({e}); what was read before is kept",
                    b.read
                );
            }
        }
        BindingsCommand::Follow {
            file,
            format,
            every,
        } => {
            follow(&kanki, &file, format, every.0)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kanki bindings follow`: a look every `every` with the follower `kanki
/// serve` runs, what each stored and skipped written to standard error.
fn follow(
    kanki: &Kanki,
    file: &std::path::Path,
    origin: kanki_directory::BindingOrigin,
    every: std::time::Duration,
) -> anyhow::Result<()> {
    use kanki_directory::BindingOrigin;
    if !matches!(
        origin,
        BindingOrigin::Detail | BindingOrigin::Kea | BindingOrigin::Dhcpd
    ) {
        bail!(
            "{} files are imported, not followed: use kanki bindings import",
            origin.as_str()
        );
    }
    let mut f = crate::follow::Follower::open(&kanki.config.data_dir, origin, file);
    eprintln!("following {} (Ctrl-C to stop)", f.path().display());
    loop {
        let skipped = std::cell::RefCell::new(std::collections::BTreeMap::<String, u64>::new());
        let look = f.look(kanki, &|reason, n| {
            if n > 0 {
                *skipped.borrow_mut().entry(reason.to_string()).or_default() += n;
            }
        })?;
        if look.stored > 0 || look.skipped > 0 {
            eprintln!("stored {} records", look.stored);
            for (reason, n) in skipped.into_inner() {
                eprintln!("  {n} {reason}");
            }
        }
        std::thread::sleep(every);
    }
}
