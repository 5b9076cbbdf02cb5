//! The RPZ primary: kanki serves the list as response policy zones
//! (draft-vixie-dnsop-dns-rpz) that the ISP's own resolvers transfer and
//! enforce.
//!
//! * [`content`]: a zone's entries, compact and sorted, and their diff;
//! * [`zone`]: a zone's settings and state, and the transfer writer;
//! * [`journal`]: the IXFR journal on disk;
//! * [`tsig`]: TSIG checks and signatures (RFC 8945);
//! * [`handler`]: the answer to one request (AXFR RFC 5936, IXFR RFC 1995,
//!   SOA), with no I/O, which the fuzz target drives;
//! * [`server`]: the listeners, the updater that follows the list, NOTIFY
//!   (RFC 1996) with coalescing;
//! * [`scope`]: client-scope zones (`rpz-client-ip`) from consent.
//!
//! [`from_config`] builds the primary from kanki's configuration.

pub mod content;
pub mod handler;
pub mod journal;
pub mod scope;
pub mod server;
pub mod tsig;
pub mod zone;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kanki_config::Config;
use kanki_exports::{IpTrigger, RpzOptions};
use kanki_store::Selection;

pub use handler::Reply;
pub use server::{
    ListSource, RpzServer, RpzStats, RunOptions, StaticList, ZoneContent, ZoneHandle, ZoneSpec,
    run, start,
};
pub use tsig::TsigKey;

/// The primary and its run options from the configuration (`[rpz]`, with
/// `[export.rpz]` for the SOA fields and TTL); journals in
/// `data_dir/rpz/`. `None` when no zone is configured. Client-scope zones
/// take consent from their `consent_file` if they name one, else from
/// `consent` (kanki serve passes the subscriber directory).
pub fn from_config(
    config: &Config,
    consent: Arc<dyn scope::ConsentSource>,
) -> Result<Option<(RpzServer, RunOptions)>, String> {
    let r = &config.rpz;
    if r.zones.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for k in &r.tsig {
        let secret = kanki_config::decode_secret(&k.secret)?;
        keys.push(Arc::new(TsigKey::new(&k.name, &k.algorithm, secret)?));
    }
    let e = &config.export.rpz;
    let mut specs = Vec::new();
    for z in &r.zones {
        let options = RpzOptions {
            origin: z.name.clone(),
            serial: 1,
            ttl: e.ttl,
            soa_mname: e.soa_mname.clone(),
            soa_rname: e.soa_rname.clone(),
            refresh: e.refresh,
            retry: e.retry,
            expire: e.expire,
            minimum: e.minimum,
            ns: e.soa_mname.clone(),
            action: z.action.parse()?,
            wildcards: z.wildcards,
        };
        let prefixes = |list: &[String]| -> Result<Vec<(std::net::IpAddr, u8)>, String> {
            list.iter().map(|p| kanki_config::parse_prefix(p)).collect()
        };
        let content = if z.client_scope.is_empty() {
            ZoneContent::List(Selection {
                categories: z.categories.clone(),
                sources: z.sources.clone(),
                tlps: z.tlp.clone(),
            })
        } else {
            let pools = prefixes(&z.client_scope)?
                .into_iter()
                .map(|(addr, prefix)| IpTrigger { addr, prefix })
                .collect();
            ZoneContent::ClientScope(pools)
        };
        let tsig_key = match &z.tsig_key {
            Some(name) => Some(
                keys.iter()
                    .zip(&r.tsig)
                    .find(|(_, c)| c.name.eq_ignore_ascii_case(name))
                    .map(|(k, _)| k.clone())
                    .ok_or_else(|| format!("no [[rpz.tsig]] key is named {name:?}"))?,
            ),
            None => None,
        };
        specs.push(ZoneSpec {
            options,
            shadow: z.shadow,
            content,
            consent: Some(match &z.consent_file {
                Some(p) => Arc::new(scope::ConsentFile { path: p.clone() }),
                None => consent.clone(),
            }),
            notify: z.notify.clone(),
            allow_transfer: prefixes(&z.allow_transfer)?,
            tsig_key,
        });
    }
    let dir = config.data_dir.join("rpz");
    let server = RpzServer::new(specs, keys, Some(Path::new(&dir)), r.journal_depth)?;
    let opts = RunOptions {
        listen: r.listen,
        notify_interval: r.notify_interval.0,
        max_transfers: r.max_transfers,
        idle_timeout: r.idle_timeout.0,
        check_every: config
            .policy
            .refresh_every
            .0
            .max(Duration::from_millis(100)),
    };
    Ok(Some((server, opts)))
}
