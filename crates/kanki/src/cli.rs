//! The one-shot subcommands.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use kanki_config::{Config, DEFAULT_TOML, LogFormat};
use kanki_exports::ExportFormat;
use kanki_feeds::Format;
use kanki_indicators::{AllowEntry, AllowKind, Category, Indicator, Kind, Status, Tlp};
use kanki_policy::Verdict;
use kanki_service::Kanki;
use kanki_store::{HostMark, ImportSummary, ListQuery, NewIndicator};

pub use crate::bench::{BenchArgs, run as bench};

/// Reads the configuration: `--config`/`KANKI_CONFIG`, or the defaults.
pub fn load_config(path: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = data_dir {
        config.data_dir = d.to_path_buf();
    }
    Ok(config)
}

pub fn init_logging(config: &Config, serving: bool) {
    use tracing_subscriber::EnvFilter;
    // One-shot commands print their own results; their logs stay quiet
    // unless asked for.
    let default = if serving {
        config.log.level.as_str()
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the complete default configuration, with a comment on every key.
    Default,
    /// Check a configuration file; an error names the key and the line.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

pub fn config(c: &ConfigCommand) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCommand::Default => {
            print!("{DEFAULT_TOML}");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check { file } => match Config::load(file) {
            Ok(c) => {
                for w in c.warnings(Some(file)) {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: ok ({} feed{}, data_dir {})",
                    file.display(),
                    c.feeds.len(),
                    if c.feeds.len() == 1 { "" } else { "s" },
                    c.data_dir.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Format of the file: urlhaus, threatfox, phishtank, openphish, plain, hosts, rpz.
    #[arg(long, short)]
    format: Format,
    /// Source name shown with every indicator; a `[[feeds]]` entry of that
    /// name lends its settings. Default: the format's name.
    #[arg(long, short)]
    source: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// The file (gzip and zip are unpacked), or `-` for standard input.
    file: PathBuf,
}

pub fn import(config: Config, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open_for_import(config)?;
    let size = std::fs::metadata(&a.file).ok().map(|m| m.len());
    let bar = crate::progress::import_bar(&a.file, size);
    let summary = kanki.import_path(a.format, a.source.as_deref(), &a.file, &mut |p| {
        bar.update(p)
    })?;
    bar.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &ImportSummary) {
    println!(
        "imported {} as {} ({}) in {:.1}s",
        s.origin,
        s.source,
        s.format,
        s.elapsed_ms as f64 / 1000.0
    );
    println!("  rows read  {:>10}", s.rows_read);
    println!("  added      {:>10}", s.added);
    println!("  updated    {:>10}", s.updated);
    println!("  unchanged  {:>10}", s.unchanged);
    println!("  skipped    {:>10}", s.skipped);
    for (reason, g) in &s.skipped_by_reason {
        let lines: Vec<String> = g.first_lines.iter().map(u64::to_string).collect();
        let more = if g.count as usize > g.first_lines.len() {
            ", ..."
        } else {
            ""
        };
        println!(
            "    {reason}: {} (lines {}{more})",
            g.count,
            lines.join(", ")
        );
    }
    if s.changed_nothing() && s.rows_read > 0 {
        println!("nothing changed: every usable row was already listed with the same content");
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// rpz, hosts, plain, csv, json, squid or unbound.
    #[arg(long, short)]
    format: ExportFormat,
    /// Write here (atomically: a temporary file renamed at the end) instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// csv/json: only indicators in this status (default: all).
    #[arg(long)]
    status: Option<Status>,
    /// csv/json: only indicators of this kind.
    #[arg(long)]
    kind: Option<Kind>,
    /// csv/json: only indicators from this source.
    #[arg(long)]
    source: Option<String>,
}

pub fn export(config: Config, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let filter = ListQuery {
        status: a.status,
        kind: a.kind,
        source: a.source,
        ..Default::default()
    };
    match &a.output {
        Some(path) => {
            let tmp = path.with_extension("kanki-tmp");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let s = kanki.export(a.format, &filter, &mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} entries as {} to {} in {:.2}s{}",
                s.written,
                a.format,
                path.display(),
                s.elapsed.as_secs_f64(),
                skipped_note(&s)
            );
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            let s = kanki.export(a.format, &filter, &mut w)?;
            w.flush()?;
            let note = skipped_note(&s);
            if !note.is_empty() {
                eprintln!("kanki: export{note}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn skipped_note(s: &kanki_service::ExportSummary) -> String {
    match &s.stats {
        Some(st) if st.skipped_total() > 0 => format!(
            ", {} left out (see --help of the format)",
            st.skipped_total()
        ),
        _ => String::new(),
    }
}

#[derive(Subcommand, Debug)]
pub enum IndicatorsCommand {
    /// List indicators, with filters.
    List {
        #[arg(long)]
        kind: Option<Kind>,
        #[arg(long)]
        category: Option<Category>,
        #[arg(long)]
        status: Option<Status>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// Substring of the value.
        #[arg(long, short)]
        q: Option<String>,
        /// TLP marking: clear, green, amber, amber+strict, red.
        #[arg(long)]
        tlp: Option<Tlp>,
        /// First seen at or after this moment (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// First seen before this moment (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Show indicators with an id above this (the next page).
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one indicator with its sources and evidence, by id or value.
    Show {
        id_or_value: String,
        #[arg(long)]
        json: bool,
    },
    /// Add an indicator by hand (source `operator`).
    Add {
        value: String,
        #[arg(long)]
        kind: Option<Kind>,
        #[arg(long, default_value = "malware-distribution")]
        category: Category,
        #[arg(long)]
        confidence: Option<u8>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        tlp: Option<Tlp>,
        #[arg(long)]
        reference_url: Option<String>,
    },
    /// Mark an indicator a false positive; it leaves the list and stays off it.
    FalsePositive {
        id_or_value: String,
        #[arg(long)]
        reason: String,
    },
    /// Delist an indicator (e.g. the site was cleaned).
    Delist {
        id_or_value: String,
        #[arg(long)]
        reason: String,
    },
    /// Undo a false-positive or delisted mark.
    Reactivate {
        id_or_value: String,
        #[arg(long)]
        reason: String,
    },
    /// Delete an indicator and what is known about it.
    Delete { id_or_value: String },
}

fn resolve(kanki: &Kanki, id_or_value: &str) -> anyhow::Result<Indicator> {
    let found = match id_or_value.parse::<i64>() {
        Ok(id) => kanki.store.get_indicator(id)?,
        Err(_) => kanki.store.find_indicator(id_or_value)?,
    };
    found.with_context(|| format!("no indicator {id_or_value:?}"))
}

pub fn indicators(config: Config, c: IndicatorsCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let now = Utc::now();
    match c {
        IndicatorsCommand::List {
            kind,
            category,
            status,
            source,
            tag,
            q,
            tlp,
            since,
            until,
            after,
            limit,
            json,
        } => {
            let page = kanki.store.list_indicators(&ListQuery {
                kind,
                category,
                status,
                source,
                tag,
                q,
                tlp,
                first_seen_since: since,
                first_seen_until: until,
                after,
                limit: Some(limit),
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                println!(
                    "{:>8}  {:<7} {:<21} {:<14} {:<20} value",
                    "id", "kind", "category", "status", "sources"
                );
                for i in &page.items {
                    let sources: Vec<&str> = i.sources.iter().map(|s| s.source.as_str()).collect();
                    println!(
                        "{:>8}  {:<7} {:<21} {:<14} {:<20} {}",
                        i.id,
                        i.kind,
                        i.category,
                        i.status,
                        sources.join(","),
                        i.value
                    );
                }
                let total = format!(
                    "{}{}",
                    page.total,
                    if page.total_at_least { "+" } else { "" }
                );
                match page.next_after {
                    Some(a) => println!(
                        "{} of {total} shown; next page: --after {a}",
                        page.items.len(),
                    ),
                    None => println!("{} of {total} shown", page.items.len()),
                }
            }
        }
        IndicatorsCommand::Show { id_or_value, json } => {
            let i = resolve(&kanki, &id_or_value)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&i)?);
            } else {
                print_indicator(&i);
            }
        }
        IndicatorsCommand::Add {
            value,
            kind,
            category,
            confidence,
            tags,
            tlp,
            reference_url,
        } => {
            let (i, created) = kanki.store.add_indicator(
                &NewIndicator {
                    value,
                    kind,
                    category: Some(category),
                    confidence,
                    tags,
                    tlp,
                    reference_url,
                    ..Default::default()
                },
                "cli",
                now,
            )?;
            println!(
                "{} indicator {}: {} ({})",
                if created { "added" } else { "updated" },
                i.id,
                i.value,
                i.status
            );
            if let Some(r) = &i.status_reason {
                println!("  {r}");
            }
        }
        IndicatorsCommand::FalsePositive {
            id_or_value,
            reason,
        } => set_status(&kanki, &id_or_value, Status::FalsePositive, &reason)?,
        IndicatorsCommand::Delist {
            id_or_value,
            reason,
        } => set_status(&kanki, &id_or_value, Status::Delisted, &reason)?,
        IndicatorsCommand::Reactivate {
            id_or_value,
            reason,
        } => set_status(&kanki, &id_or_value, Status::Active, &reason)?,
        IndicatorsCommand::Delete { id_or_value } => {
            let i = resolve(&kanki, &id_or_value)?;
            kanki.store.delete_indicator(i.id, "cli", now)?;
            println!("deleted indicator {} ({})", i.id, i.value);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_status(
    kanki: &Kanki,
    id_or_value: &str,
    status: Status,
    reason: &str,
) -> anyhow::Result<()> {
    let i = resolve(kanki, id_or_value)?;
    let i = kanki
        .store
        .set_status(i.id, status, reason, "cli", Utc::now())?;
    println!("indicator {} ({}) is now {}", i.id, i.value, i.status);
    if let Some(r) = &i.status_reason {
        println!("  {r}");
    }
    Ok(())
}

fn print_indicator(i: &Indicator) {
    println!("indicator {}", i.id);
    println!("  value       {}", i.value);
    println!("  kind        {}", i.kind);
    if let Some(h) = &i.host {
        println!("  host        {h}");
    }
    println!("  category    {}", i.category);
    println!("  status      {}", i.status);
    if let Some(r) = &i.status_reason {
        println!("  why         {r}");
    }
    println!("  confidence  {}", i.confidence);
    println!("  TLP         {}", i.tlp);
    println!("  first seen  {}", i.first_seen.to_rfc3339());
    println!("  last seen   {}", i.last_seen.to_rfc3339());
    match i.expires_at {
        Some(e) => println!("  expires     {}", e.to_rfc3339()),
        None => println!("  expires     never"),
    }
    if !i.tags.is_empty() {
        println!("  tags        {}", i.tags.join(", "));
    }
    println!("  sources");
    for s in &i.sources {
        print!(
            "    {} ({}, confidence {})",
            s.source, s.category, s.confidence
        );
        if let Some(id) = &s.source_id {
            print!(" id {id}");
        }
        if let Some(r) = &s.reporter {
            print!(" reported by {r}");
        }
        println!();
        if let Some(u) = &s.reference_url {
            println!("      {u}");
        }
    }
    if !i.evidence.is_empty() {
        println!("  evidence");
        for e in &i.evidence {
            println!("    #{} {} {}", e.id, e.kind, e.uri);
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AllowlistCommand {
    /// Show every allowlist entry.
    List,
    /// Allow a name (exactly, or with --suffix everything below it too).
    Add {
        name: String,
        #[arg(long)]
        suffix: bool,
        #[arg(long)]
        reason: String,
    },
    /// Remove an entry by its id.
    Remove { id: i64 },
}

pub fn allowlist(config: Config, c: AllowlistCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    match c {
        AllowlistCommand::List => {
            for e in kanki.store.allowlist()? {
                println!(
                    "{:>6}  {:<6} {:<40} {:<10} {}",
                    e.id,
                    e.entry.kind.as_str(),
                    e.entry.name,
                    e.entry.origin,
                    e.entry.reason
                );
            }
        }
        AllowlistCommand::Add {
            name,
            suffix,
            reason,
        } => {
            let kind = if suffix {
                AllowKind::Suffix
            } else {
                AllowKind::Exact
            };
            let entry = AllowEntry::new(kind, &name, reason, "operator")?;
            let e = kanki.store.add_allow(&entry, Utc::now())?;
            println!(
                "allowlist entry {} added: {} {}",
                e.id,
                e.entry.kind.as_str(),
                e.entry.name
            );
        }
        AllowlistCommand::Remove { id } => {
            if !kanki.store.remove_allow(id, Utc::now())? {
                bail!("no allowlist entry {id}");
            }
            println!("allowlist entry {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum HostsCommand {
    /// Show the marked hosts.
    List,
    /// Mark a host as a compromised but legitimate site.
    Mark {
        host: String,
        #[arg(long)]
        reason: String,
    },
    /// Remove the mark.
    Unmark { host: String },
}

pub fn hosts(config: Config, c: HostsCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    match c {
        HostsCommand::List => {
            for m in kanki.store.host_marks()? {
                println!("{:<40} {:<10} {}", m.host, m.origin, m.reason);
            }
        }
        HostsCommand::Mark { host, reason } => {
            kanki.store.set_host_mark(&HostMark {
                host: host.clone(),
                reason,
                origin: "operator".into(),
                created_at: Utc::now(),
            })?;
            println!(
                "{host} marked compromised: its URLs stay listed, the host itself is off the DNS list"
            );
        }
        HostsCommand::Unmark { host } => {
            if !kanki.store.remove_host_mark(&host, Utc::now())? {
                bail!("{host} is not marked");
            }
            println!("{host} unmarked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LookupArgs {
    /// A DNS name, e.g. www.bad.example.
    name: String,
}

pub fn lookup(config: Config, a: LookupArgs) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let snap = kanki.current_snapshot()?;
    match snap.lookup(a.name.as_bytes()) {
        Verdict::NotListed => {
            println!("{}: not listed", a.name);
            return Ok(ExitCode::from(1));
        }
        Verdict::Listed {
            matched,
            indicators,
        } => {
            println!("{}: listed through {matched}", a.name);
            for id in indicators {
                if let Some(i) = kanki.store.get_indicator(*id)? {
                    let sources: Vec<&str> = i.sources.iter().map(|s| s.source.as_str()).collect();
                    println!(
                        "  indicator {} {} ({}, from {})",
                        i.id,
                        i.value,
                        i.category,
                        sources.join(", ")
                    );
                }
            }
        }
        Verdict::Allowed {
            allow_entry,
            matched_allow,
            listed,
        } => {
            let reason = kanki
                .store
                .allowlist()?
                .into_iter()
                .find(|e| e.id == allow_entry)
                .map(|e| e.entry.reason)
                .unwrap_or_default();
            match listed {
                Some(l) => println!(
                    "{}: allowed by {matched_allow} ({reason}), overriding the listing of {l}",
                    a.name
                ),
                None => println!("{}: allowed by {matched_allow} ({reason})", a.name),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn expire(config: Config) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let n = kanki.store.expire(Utc::now())?;
    println!("{n} indicator{} expired", if n == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ImportsArgs {
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

pub fn imports(config: Config, a: ImportsArgs) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    println!(
        "{:>6}  {:<20} {:<16} {:<11} {:>9} {:>8} {:>8} {:>9} {:>8}  origin",
        "id", "started", "source", "status", "read", "added", "updated", "unchanged", "skipped"
    );
    for r in kanki.store.recent_imports(a.limit)? {
        println!(
            "{:>6}  {:<20} {:<16} {:<11} {:>9} {:>8} {:>8} {:>9} {:>8}  {}",
            r.id,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.source,
            r.status,
            r.rows_read,
            r.added,
            r.updated,
            r.unchanged,
            r.skipped,
            r.origin
        );
    }
    Ok(ExitCode::SUCCESS)
}
