//! `kanki`: one binary for every part of the platform.

mod bench;
mod bench_api;
mod bench_console;
mod bench_crawl;
mod bench_directory;
mod bench_removal;
mod checkpoint;
mod cli;
mod crawl_cli;
mod crawl_serve;
mod directory_cli;
mod files;
mod follow;
mod front;
mod lab;
mod operators_cli;
mod progress;
mod removal_cli;
mod removal_serve;
mod rpz;
mod serve;
mod warning_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: parsing and importing make
/// several small allocations per feed row, where it is markedly faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the same in its versions 2 and 3;
/// libmimalloc-sys does not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the allocator before it goes back to
/// the system. mimalloc's default is 1 s (version 3); an ingest frees and
/// allocates tens of megabytes per batch across its threads, and faulting
/// that memory in again (the kernel zeroing it) was 6 % of an ingest's
/// CPU; with 10 s the ingest benchmark takes a fifth of the page faults.
/// An idle server still gives back what it no longer uses.
/// `MIMALLOC_PURGE_DELAY` (milliseconds) overrides it.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets the allocator's options, unless the environment sets them
/// (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ALLOW_THP`). A one-shot import or
/// ingest (`within_bound`) gives freed memory back at once and keeps to
/// small pages: it must stay within 64 MB whatever it reads, and the
/// memory the allocator keeps for speed would double its peak (512 MiB of
/// distinct report rows: 174 MiB with a 10 s purge and transparent huge
/// pages, 53 MiB without either, in twice the time; the server keeps both).
fn tune_allocator(within_bound: bool) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        let delay = if within_bound { 0 } else { PURGE_DELAY_MS };
        // SAFETY: sets an option's value; called at the start of main,
        // before any other thread runs.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay) };
    }
    if within_bound && std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // mimalloc reads its own THP option once, when it starts, before
        // main; what it then does for the option is this process-wide
        // switch, which applies to the pages faulted in from now on.
        // SAFETY: a prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// kanki (喚起): an ISP platform that warns subscribers before they reach
/// malware distribution sites, and finds, notifies and follows up infected
/// subscribers, within the secrecy of communications.
#[derive(Parser, Debug)]
#[command(
    name = "kanki",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file (TOML). Without one, the defaults of `kanki config default`.
    #[arg(long, global = true, env = "KANKI_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Data directory; overrides `data_dir` of the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the configured parts: the HTTP API, scheduled feed imports and
    /// expiry, and the policy snapshot refresher.
    Serve,
    /// Import a feed file (plain, gzip or zip) into the indicator list.
    Import(cli::ImportArgs),
    /// Write the list in a format for resolvers, proxies or people.
    Export(cli::ExportArgs),
    /// Print the default configuration, or check a configuration file.
    #[command(subcommand)]
    Config(cli::ConfigCommand),
    /// List, show, add and judge indicators.
    #[command(subcommand)]
    Indicators(cli::IndicatorsCommand),
    /// Names that are never listed, whatever a source says.
    #[command(subcommand)]
    Allowlist(cli::AllowlistCommand),
    /// Hosts that are real sites carrying malicious URLs: their URLs stay
    /// listed, the host as a whole stays off the DNS list.
    #[command(subcommand)]
    Hosts(cli::HostsCommand),
    /// Ask the policy snapshot whether a name is listed, and why.
    Lookup(cli::LookupArgs),
    /// Expire listings whose time to live has run out (serve does it on a schedule).
    Expire,
    /// Show the recent import runs.
    Imports(cli::ImportsArgs),
    /// Subscribers of the subscriber directory.
    #[command(subcommand)]
    Subscribers(directory_cli::SubscribersCommand),
    /// Grant or revoke a subscriber's consent to be warned.
    #[command(subcommand)]
    Consent(directory_cli::ConsentCommand),
    /// Import or follow binding records: who held which address when.
    #[command(subcommand)]
    Bindings(directory_cli::BindingsCommand),
    /// Who held an address (and port) at a moment: needs a ground and a
    /// purpose, and is written to the audit log.
    Who(directory_cli::WhoArgs),
    /// Verify or show the audit log.
    #[command(subcommand)]
    Audit(directory_cli::AuditCommand),
    /// Remove bindings and audit records past their retention now.
    Purge,
    /// Crawl seed URLs as a honeyclient: print the redirect-chain trees and
    /// verdicts, keep them as evidence, and list what was found.
    Crawl(crawl_cli::CrawlArgs),
    /// What the crawler stored: crawls, re-checked sites, site notices.
    #[command(subcommand)]
    Crawls(crawl_cli::CrawlsCommand),
    /// Ingest security events (Shadowserver reports, Cowrie logs, sinkhole
    /// logs, X-ARF): attribute each to a subscriber and open or update cases.
    Ingest(removal_cli::IngestArgs),
    /// Show stored events.
    #[command(subcommand)]
    Events(removal_cli::EventsCommand),
    /// Cases per (subscriber, threat): list, show, review, hold, release, close.
    #[command(subcommand)]
    Cases(removal_cli::CasesCommand),
    /// Send the notices that are due (--dry-run: print them), export letters.
    #[command(subcommand)]
    Notices(removal_cli::NoticesCommand),
    /// Escalation requests for the walled garden, letters and calls.
    #[command(subcommand)]
    Escalations(removal_cli::EscalationsCommand),
    /// The removal loop's outcomes: infected subscribers per 10,000, notices
    /// by channel, acknowledgement rate, time to clean, reinfection rate.
    Report(removal_cli::ReportArgs),
    /// Put subscribers in the walled garden and let them out (audited).
    #[command(subcommand)]
    Garden(warning_cli::GardenCommand),
    /// The queue of false-positive reports from the warning page.
    #[command(subcommand)]
    FalsePositives(warning_cli::FalsePositivesCommand),
    /// Operator accounts: add, list, disable, reset a password, set roles.
    #[command(subcommand)]
    Operators(operators_cli::OperatorsCommand),
    /// API tokens for operators and machine clients: create, list, revoke.
    #[command(subcommand)]
    Tokens(operators_cli::TokensCommand),
    /// Measure kanki's speed and memory on synthetic data (see docs/benchmarks.md).
    Bench(cli::BenchArgs),
    /// A drill ISP on loopback: starts `kanki serve` in a data directory of
    /// its own (default ./kanki-lab; --config is not used) and replays a
    /// synthetic day through its listeners, until interrupted.
    Lab(lab::LabArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tune_allocator(matches!(
        cli.command,
        Command::Import(_) | Command::Ingest(_)
    ));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kanki: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Config(c) = &cli.command {
        return cli::config(c);
    }
    if let Command::Bench(b) = &cli.command {
        // Benchmarks log at `warn` unless RUST_LOG asks for more (the
        // directory rebuild logs its phases at `debug`).
        cli::init_logging(&kanki_config::Config::default(), false);
        return cli::bench(b);
    }
    if let Command::Lab(a) = &cli.command {
        // The lab prints its own status line; serve's log goes to its file.
        cli::init_logging(&kanki_config::Config::default(), false);
        return lab::run(cli.data_dir.as_deref(), a);
    }
    let config = cli::load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
    cli::init_logging(&config, matches!(cli.command, Command::Serve));
    for w in config.warnings(cli.config.as_deref()) {
        tracing::warn!("{w}");
    }
    match cli.command {
        Command::Serve => serve::run(config).map(|_| ExitCode::SUCCESS),
        Command::Import(a) => cli::import(config, a),
        Command::Export(a) => cli::export(config, a),
        Command::Indicators(c) => cli::indicators(config, c),
        Command::Allowlist(c) => cli::allowlist(config, c),
        Command::Hosts(c) => cli::hosts(config, c),
        Command::Lookup(a) => cli::lookup(config, a),
        Command::Expire => cli::expire(config),
        Command::Imports(a) => cli::imports(config, a),
        Command::Subscribers(c) => directory_cli::subscribers(config, c),
        Command::Consent(c) => directory_cli::consent(config, c),
        Command::Who(a) => directory_cli::who(config, a),
        Command::Bindings(c) => directory_cli::bindings(config, c),
        Command::Audit(c) => directory_cli::audit(config, c),
        Command::Purge => directory_cli::purge(config),
        Command::Crawl(a) => crawl_cli::crawl(config, a),
        Command::Crawls(c) => crawl_cli::crawls(config, c),
        Command::Ingest(a) => removal_cli::ingest(config, a),
        Command::Events(c) => removal_cli::events(config, c),
        Command::Cases(c) => removal_cli::cases(config, c),
        Command::Notices(c) => removal_cli::notices(config, c),
        Command::Report(a) => removal_cli::report(config, a),
        Command::Escalations(c) => removal_cli::escalations(config, c),
        Command::Garden(c) => warning_cli::garden(config, c),
        Command::FalsePositives(c) => warning_cli::false_positives(config, c),
        Command::Operators(c) => operators_cli::operators(config, c),
        Command::Tokens(c) => operators_cli::tokens(config, c),
        Command::Config(_) | Command::Bench(_) | Command::Lab(_) => unreachable!("handled above"),
    }
}
