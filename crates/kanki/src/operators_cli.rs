//! `kanki operators ...` and `kanki tokens ...`: accounts and API tokens,
//! managed from the machine itself (the one-shot command line acts as the
//! machine's local administrator).

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use kanki_config::{Config, HumanDuration};
use kanki_operators::accounts::{self, TokenRequest};
use kanki_operators::{AccountKind, Roles, secret};
use kanki_service::Kanki;

#[derive(Subcommand, Debug)]
pub enum OperatorsCommand {
    /// Add an operator. A local account's password is read from standard
    /// input (one line); there are no default passwords.
    Add {
        name: String,
        /// Comma-separated: viewer, analyst, attribution-officer,
        /// list-curator, notices-officer, auditor, administrator.
        #[arg(long)]
        roles: Roles,
        /// local (password kept by kanki), ldap (password checked by the
        /// directory) or machine (tokens only).
        #[arg(long, default_value = "local")]
        kind: AccountKind,
        /// Turn on TOTP as a second factor and print the authenticator
        /// app's otpauth:// URI.
        #[arg(long)]
        totp: bool,
    },
    /// List operators with their roles.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable an operator (its sessions end, its tokens stop working), or
    /// enable it again.
    Disable {
        name: String,
        #[arg(long)]
        enable: bool,
    },
    /// Set a new password, read from standard input (one line); the
    /// operator's sessions end.
    ResetPassword { name: String },
    /// Show an operator's roles, or replace them with --set.
    Roles {
        name: String,
        #[arg(long)]
        set: Option<Roles>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Create an API token for an operator (a person or a machine client).
    /// The token is printed once; only its hash is kept.
    Create {
        /// The token's owner.
        #[arg(long)]
        operator: String,
        /// What it is for (`ci-ingest`, `prometheus`).
        #[arg(long)]
        name: String,
        /// Roles it acts with: its owner's (the default) or fewer.
        #[arg(long)]
        scope: Option<Roles>,
        /// Expires after this long (`90d`, `12h`); `never` for no expiry.
        #[arg(long, default_value = "90d")]
        expires_in: String,
        /// A source prefix it may be used from (repeatable); none: anywhere.
        #[arg(long = "source")]
        sources: Vec<ipnet::IpNet>,
        /// Register the token read from standard input (one printed by an
        /// earlier `tokens create`) rather than making a new one: for a
        /// rebuilt server whose machine clients keep their tokens.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (the part after `kanki_`, as listed).
    Revoke { id: String },
}

fn read_line_from_stdin(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        anyhow::bail!("give the {what} on standard input (one line)");
    }
    Ok(line)
}

pub fn operators(config: Config, cmd: OperatorsCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let store = kanki.store.operators();
    let now = Utc::now();
    match cmd {
        OperatorsCommand::Add {
            name,
            roles,
            kind,
            totp,
        } => {
            let password = match kind {
                AccountKind::Local => Some(read_line_from_stdin("password")?),
                _ => None,
            };
            let op = accounts::add_operator(store, &name, kind, roles, password.as_deref(), now)?;
            println!(
                "added {} ({}) with roles {}",
                op.name,
                op.kind.as_str(),
                op.roles
            );
            if totp {
                let (_, s) = accounts::enroll_totp(store, &name, now)?;
                println!("TOTP: {}", secret::totp_uri(&s, &name));
            }
        }
        OperatorsCommand::List { json } => {
            let ops = store.operators()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ops)?);
            } else {
                for o in ops {
                    println!(
                        "{}\t{}\t{}\t{}{}",
                        o.name,
                        o.kind.as_str(),
                        o.roles,
                        if o.disabled { "disabled" } else { "enabled" },
                        if o.has_totp() { "\ttotp" } else { "" }
                    );
                }
            }
        }
        OperatorsCommand::Disable { name, enable } => {
            let op = accounts::set_disabled(store, &name, !enable, now)?;
            println!(
                "{} is {}",
                op.name,
                if op.disabled { "disabled" } else { "enabled" }
            );
        }
        OperatorsCommand::ResetPassword { name } => {
            let password = read_line_from_stdin("password")?;
            accounts::reset_password(store, &name, &password, now)?;
            println!("password of {name} changed; its sessions ended");
        }
        OperatorsCommand::Roles { name, set } => {
            let op = match set {
                Some(roles) => accounts::set_roles(store, &name, roles, now)?,
                None => accounts::operator(store, &name)?,
            };
            println!("{}", op.roles);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tokens(config: Config, cmd: TokensCommand) -> anyhow::Result<ExitCode> {
    let kanki = Kanki::open(config)?;
    let store = kanki.store.operators();
    let now = Utc::now();
    match cmd {
        TokensCommand::Create {
            operator,
            name,
            scope,
            expires_in,
            sources,
            secret_stdin,
        } => {
            let expires_at = match expires_in.as_str() {
                "never" => None,
                d => {
                    let d: HumanDuration = d
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--expires-in {d:?}: {e}"))?;
                    Some(now + d.0)
                }
            };
            let req = TokenRequest {
                operator,
                name,
                scope,
                expires_at,
                sources,
            };
            let existing = secret_stdin
                .then(|| read_line_from_stdin("token"))
                .transpose()?;
            let (token, text) = accounts::register_token(store, &req, existing.as_deref(), now)?;
            eprintln!(
                "token {} for {} ({}), scope {}, expires {}",
                token.id,
                token.operator,
                token.name,
                token.scope,
                token
                    .expires_at
                    .map_or_else(|| "never".into(), |e| e.to_rfc3339())
            );
            if existing.is_none() {
                // The only time it is shown: on standard output, so that
                // `kanki tokens create ... > file` keeps it out of the terminal.
                println!("{text}");
            }
        }
        TokensCommand::List { json } => {
            let tokens = store.tokens()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                for t in tokens {
                    let state = if t.revoked_at.is_some() {
                        "revoked".to_string()
                    } else if t.expires_at.is_some_and(|e| e <= now) {
                        "expired".to_string()
                    } else {
                        "active".to_string()
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\texpires {}\tlast used {}",
                        t.id,
                        t.operator,
                        t.name,
                        t.scope,
                        state,
                        t.expires_at
                            .map_or_else(|| "never".into(), |e| e.to_rfc3339()),
                        t.last_used_at
                            .map_or_else(|| "never".into(), |e| e.to_rfc3339()),
                    );
                }
            }
        }
        TokensCommand::Revoke { id } => {
            let id = id.trim().trim_start_matches(secret::TOKEN_PREFIX);
            accounts::revoke_token(store, id, now)?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
