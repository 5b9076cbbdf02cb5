//! Operations shared by kanki's command line, HTTP API and scheduler: open
//! the store the configuration names, import a feed, build the policy
//! snapshot, write an export. Each is one function here so that the three
//! front ends cannot drift apart.

pub mod crawl;
pub mod directory;
pub mod front;
pub mod warning;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use kanki_config::{Config, FeedConfig};
use kanki_exports::{DnsList, ExportFormat, ExportStats, ListOptions, RpzAction, RpzOptions};
use kanki_feeds::Format;
use kanki_indicators::{AllowEntry, AllowKind, Allowlist, Category};
use kanki_policy::{Snapshot, SnapshotBuilder, Verdict};
use kanki_store::{
    ImportProgress, ImportSummary, Importer, ListQuery, Selection, SourceSpec, SqliteOptions,
    Store, StoreError,
};

/// Why an operation failed, in words for an operator.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Feed(#[from] kanki_feeds::FeedError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
    let context = context.into();
    move |source| ServiceError::Io { context, source }
}

/// A configured kanki: its configuration and its open store.
pub struct Kanki {
    pub config: Config,
    pub store: Store,
    /// What a streaming import or ingest may hold in memory.
    pub stream_memory: StreamMemory,
}

/// What a streaming import or ingest may hold in memory besides the
/// store's page cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamMemory {
    /// An ingest's batch of parsed events ends when its events hold this
    /// many bytes; three batches may be in flight between the parser and
    /// the store, and one is being parsed.
    pub batch_bytes: usize,
    /// Bytes of event keys held to tell replayed records, by the ingest
    /// and by the store's writer each.
    pub keys_bytes: usize,
    /// An import's chunk (one transaction) ends when its rows hold this
    /// many bytes.
    pub import_chunk_bytes: usize,
    /// Bytes an import may hold of the values its source already lists.
    pub import_listed_bytes: usize,
}

impl StreamMemory {
    /// `kanki serve` (and the benchmarks): large batches and chunks, whose
    /// costs per batch (the cases and pages each touches) are paid for more
    /// events. A day's report of a million rows ingests half again as fast
    /// as with [`ONE_SHOT`](Self::ONE_SHOT)'s.
    pub const SERVER: StreamMemory = StreamMemory {
        batch_bytes: 8 << 20,
        keys_bytes: 8 << 20,
        import_chunk_bytes: 64 << 20,
        import_listed_bytes: 24 << 20,
    };
    /// A one-shot `kanki import` or `kanki ingest`, which should run beside
    /// a server in some 64 MB, whatever the size of what it reads.
    pub const ONE_SHOT: StreamMemory = StreamMemory {
        batch_bytes: 2 << 20,
        keys_bytes: 2 << 20,
        import_chunk_bytes: 8 << 20,
        import_listed_bytes: 8 << 20,
    };
}

impl Kanki {
    /// Creates the data directory if needed, opens the store (applying
    /// migrations), and brings the store's sources and configured allowlist
    /// in line with the configuration.
    pub fn open(config: Config) -> Result<Kanki, ServiceError> {
        let page_cache_mib = config.storage.page_cache_mib;
        Kanki::open_with(config, page_cache_mib, StreamMemory::SERVER)
    }

    /// Opens the store for a one-shot `kanki import` or `kanki ingest`:
    /// with `storage.import_page_cache_mib` of page cache per connection
    /// and [`StreamMemory::ONE_SHOT`], so that its memory stays bounded
    /// whatever the size of what it reads.
    pub fn open_for_import(config: Config) -> Result<Kanki, ServiceError> {
        let page_cache_mib = config.storage.import_page_cache_mib;
        Kanki::open_with(config, page_cache_mib, StreamMemory::ONE_SHOT)
    }

    fn open_with(
        config: Config,
        page_cache_mib: u32,
        stream_memory: StreamMemory,
    ) -> Result<Kanki, ServiceError> {
        // Who held which address, and the audit log: for kanki's user
        // alone (the database inside is 0600 too).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(io_err(format!(
                "cannot create data directory {}",
                config.data_dir.display()
            )))?;
        let options = SqliteOptions {
            synchronous_full: config.storage.synchronous == kanki_config::Synchronous::Full,
            busy_timeout: config.storage.busy_timeout.0,
            page_cache_kib: page_cache_mib.saturating_mul(1024),
            held_keys_bytes: stream_memory.keys_bytes,
            ..SqliteOptions::default()
        };
        let store = Store::open_sqlite(&config.database_path(), &options)?;
        let kanki = Kanki {
            config,
            store,
            stream_memory,
        };
        kanki.sync_config()?;
        Ok(kanki)
    }

    /// An importer within [`Kanki::stream_memory`].
    pub fn importer(&self) -> Importer<'_> {
        Importer::new(&self.store)
            .chunk_bytes(self.stream_memory.import_chunk_bytes)
            .listed_most_bytes(self.stream_memory.import_listed_bytes)
    }

    fn sync_config(&self) -> Result<(), ServiceError> {
        let specs: Vec<SourceSpec> = self
            .config
            .feeds
            .iter()
            .map(|f| self.source_spec(&f.name, f.format.0))
            .collect();
        self.store.sync_sources(&specs)?;
        let a = &self.config.allowlist;
        let mut entries = Vec::new();
        for (kind, names) in [(AllowKind::Exact, &a.exact), (AllowKind::Suffix, &a.suffix)] {
            for name in names {
                entries.push(
                    AllowEntry::new(kind, name, "in the configuration file", "config").map_err(
                        |e| ServiceError::Invalid(format!("allowlist entry {name:?}: {e}")),
                    )?,
                );
            }
        }
        let now = Utc::now();
        self.store.replace_allow_origin("config", &entries, now)?;
        let top = match &a.top_sites {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(io_err(format!(
                    "cannot read top-sites file {}",
                    path.display()
                )))?;
                let (entries, bad) = Allowlist::parse_top_sites(&text, "top-sites");
                if bad > 0 {
                    tracing::warn!(file = %path.display(), bad, "top-sites lines that are not a domain were ignored");
                }
                entries
            }
            None => Vec::new(),
        };
        self.store.replace_allow_origin("top-sites", &top, now)?;
        Ok(())
    }

    /// The rules for rows of a source: the `[[feeds]]` entry of that name if
    /// there is one, the `[indicators]` defaults otherwise.
    pub fn source_spec(&self, name: &str, format: Format) -> SourceSpec {
        let d = &self.config.indicators;
        let feed: Option<&FeedConfig> = self.config.feed(name);
        SourceSpec {
            name: name.to_string(),
            default_category: feed
                .and_then(|f| f.category)
                .unwrap_or_else(|| default_category(format)),
            default_confidence: feed
                .and_then(|f| f.confidence)
                .unwrap_or(d.default_confidence),
            default_tlp: feed.and_then(|f| f.tlp).unwrap_or(d.default_tlp),
            ttl: Some(feed.and_then(|f| f.ttl).unwrap_or(d.default_ttl).0),
            list_url_hosts: feed.is_none_or(|f| f.list_url_hosts),
        }
    }

    /// Imports one input (plain, gzip or zip) in `format` as source `source`
    /// (default: the format's name). `progress` is called after each chunk.
    pub fn import_reader(
        &self,
        format: Format,
        source: Option<&str>,
        input: Box<dyn Read + Send>,
        origin: &str,
        progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<ImportSummary, ServiceError> {
        let spec = self.source_spec(source.unwrap_or(format.as_str()), format);
        let rows = kanki_feeds::parse_fallible(
            format,
            kanki_feeds::open_input(input, &self.config.input)?,
        )?;
        Ok(self
            .importer()
            .run(&spec, format.as_str(), origin, rows, Utc::now(), progress)?)
    }

    /// Imports a file, or standard input for `-`.
    pub fn import_path(
        &self,
        format: Format,
        source: Option<&str>,
        path: &Path,
        progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<ImportSummary, ServiceError> {
        let input: Box<dyn Read + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(path).map_err(io_err(format!("cannot open {}", path.display())))?)
        };
        let origin = if path.as_os_str() == "-" {
            "stdin".to_string()
        } else {
            path.display().to_string()
        };
        self.import_reader(format, source, input, &origin, progress)
    }

    /// Compiles the policy snapshot from the store as it is now.
    pub fn build_snapshot(&self) -> Result<Snapshot, ServiceError> {
        let started = Instant::now();
        // Read the generation first: a change during the build makes the
        // snapshot look older than it is, so the next refresh redoes it.
        let generation = self.store.generation()?;
        let mut builder = SnapshotBuilder::new();
        self.store
            .for_each_dns_name(&mut |name, id| builder.add_listed(name, id))?;
        for e in self.store.allowlist()? {
            builder.add_allow(e.entry.kind, &e.entry.name, e.id);
        }
        let snapshot = builder.build(generation);
        tracing::info!(
            generation,
            names = snapshot.listed_names(),
            allow = snapshot.allow_entries(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "policy snapshot built"
        );
        Ok(snapshot)
    }

    /// The persisted snapshot if it is current, else a fresh one (saved).
    pub fn current_snapshot(&self) -> Result<Snapshot, ServiceError> {
        let path = self.config.snapshot_path();
        if let Ok(s) = Snapshot::load(&path)
            && s.generation() == self.store.generation()?
        {
            return Ok(s);
        }
        let s = self.build_snapshot()?;
        s.save(&path)
            .map_err(io_err(format!("cannot save {}", path.display())))?;
        Ok(s)
    }

    /// The DNS-level list for the exports, from a snapshot: the listed
    /// names, the active IP indicators, and the allowlist entries that carve
    /// an exception out of a listed name.
    pub fn dns_list(&self, snapshot: &Snapshot) -> Result<DnsList, ServiceError> {
        self.dns_list_of(snapshot, &Selection::default())
    }

    /// The part of the DNS-level list whose indicators are in `sel` (a
    /// name is in it when one of the indicators listing it is); the
    /// allowlist exceptions are all given (a writer uses those under a
    /// name it writes).
    pub fn dns_list_of(
        &self,
        snapshot: &Snapshot,
        sel: &Selection,
    ) -> Result<DnsList, ServiceError> {
        let selected: Option<foldhash::HashSet<i64>> = if sel.is_everything() {
            None
        } else {
            let mut ids = foldhash::HashSet::default();
            self.store.for_each_selected(sel, &mut |id| {
                ids.insert(id);
            })?;
            Some(ids)
        };
        let keep = |ids: &[i64]| {
            selected
                .as_ref()
                .is_none_or(|s| ids.iter().any(|i| s.contains(i)))
        };
        let names = snapshot
            .iter_listed()
            .filter(|(_, ids)| keep(ids))
            .map(|(n, _)| n.to_string());
        let mut ips = Vec::new();
        self.store.for_each_ip(&mut |ip, id| {
            if keep(&[id]) {
                ips.push(ip.to_string())
            }
        })?;
        let exceptions: Vec<String> = self
            .store
            .allowlist()?
            .into_iter()
            .filter(|e| {
                matches!(
                    snapshot.lookup(e.entry.name.as_bytes()),
                    Verdict::Allowed {
                        listed: Some(_),
                        ..
                    }
                )
            })
            .map(|e| e.entry.name)
            .collect();
        Ok(DnsList::new(names, ips).with_exceptions(exceptions))
    }

    /// The export settings from the configuration, for a list of `generation`.
    pub fn list_options(&self, generation: u64) -> Result<ListOptions, ServiceError> {
        let r = &self.config.export.rpz;
        let action: RpzAction = r
            .action
            .parse()
            .map_err(|e| ServiceError::Invalid(format!("export.rpz.action: {e}")))?;
        Ok(ListOptions {
            rpz: RpzOptions {
                origin: r.origin.clone(),
                // RFC 1982 serial arithmetic tolerates the wrap.
                serial: (generation as u32).max(1),
                ttl: r.ttl,
                soa_mname: r.soa_mname.clone(),
                soa_rname: r.soa_rname.clone(),
                refresh: r.refresh,
                retry: r.retry,
                expire: r.expire,
                minimum: r.minimum,
                ns: r.soa_mname.clone(),
                action,
                wildcards: r.wildcards,
            },
            hosts_address: self.config.export.hosts_address.clone(),
        })
    }

    /// Writes an export. DNS-level formats come from the policy snapshot;
    /// `csv` and `json` from the indicator records matching `filter`.
    pub fn export(
        &self,
        format: ExportFormat,
        filter: &ListQuery,
        w: &mut dyn Write,
    ) -> Result<ExportSummary, ServiceError> {
        let started = Instant::now();
        if format.uses_records() {
            // Stream the records from the store to the writer through a
            // bounded channel rather than holding the whole list in memory.
            let (n, read) = std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel(1024);
                let reader = scope.spawn(move || {
                    // A send fails only when the writer gave up; stop quietly then.
                    self.store.for_each_indicator(filter, &mut |i| {
                        let _ = tx.send(i);
                    })
                });
                let written = match format {
                    ExportFormat::Csv => kanki_exports::write_csv(&mut *w, rx),
                    _ => kanki_exports::write_json(&mut *w, rx),
                };
                (written, reader.join().expect("store reader panicked"))
            });
            read?;
            let n = n.map_err(io_err("cannot write export"))?;
            return Ok(ExportSummary {
                written: n,
                stats: None,
                elapsed: started.elapsed(),
            });
        }
        let snapshot = self.current_snapshot()?;
        let list = self.dns_list(&snapshot)?;
        let opts = self.list_options(snapshot.generation())?;
        let stats = kanki_exports::write_list(format, &mut *w, &list, &opts)
            .map_err(io_err("cannot write export"))?;
        Ok(ExportSummary {
            written: (list.names.len() + list.ips.len()) as u64,
            stats: Some(stats),
            elapsed: started.elapsed(),
        })
    }
}

/// What an export wrote.
#[derive(Debug)]
pub struct ExportSummary {
    /// Records (csv, json) or list entries (the DNS-level formats).
    pub written: u64,
    pub stats: Option<ExportStats>,
    pub elapsed: Duration,
}

/// The category of rows whose feed gives none and whose source sets none.
pub fn default_category(format: Format) -> Category {
    match format {
        Format::Urlhaus => Category::MalwareDistribution,
        Format::Phishtank | Format::Openphish => Category::Phishing,
        _ => Category::Other,
    }
}
