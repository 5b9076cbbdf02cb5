//! Import runs: a feed's rows applied to the store in atomic chunks.
//!
//! Each chunk is one transaction that also records the run's progress, so a
//! process killed mid-import leaves a consistent store (every committed
//! chunk whole, nothing half-applied) and the run marked `interrupted` when
//! the store is next opened; importing the file again completes it.

use std::time::Instant;

use chrono::{DateTime, Utc};
use kanki_feeds::{FeedError, FeedRecord, Row};

use crate::{ImportSummary, Result, SkipGroup, SourceSpec, Store, StoreError};

/// Progress of a running import, reported after every chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportProgress {
    pub rows_read: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
}

/// Applies a stream of parsed rows to a store.
pub struct Importer<'a> {
    store: &'a Store,
    chunk_rows: usize,
    chunk_bytes: usize,
    first_lines: usize,
    listed_most_bytes: usize,
}

impl<'a> Importer<'a> {
    pub fn new(store: &'a Store) -> Self {
        Importer {
            store,
            chunk_rows: 100_000,
            chunk_bytes: 64 << 20,
            first_lines: 5,
            listed_most_bytes: 24 << 20,
        }
    }

    /// The most bytes a run holds of what its source already lists
    /// (default 24 MiB, some 200,000 values). A source whose list fits is
    /// read once and each row checked against it in memory; past it, each
    /// chunk looks up its own values in the store, so that an import's
    /// memory does not grow with the source's list (ten million distinct
    /// values cost lookups, not gigabytes).
    pub fn listed_most_bytes(mut self, n: usize) -> Self {
        self.listed_most_bytes = n;
        self
    }

    /// Rows per transaction (default 100,000: with random inserts into the
    /// value index nearly every index page is rewritten by each chunk, so
    /// fewer, larger chunks write far less; 20,000 took a third longer).
    pub fn chunk_rows(mut self, n: usize) -> Self {
        self.chunk_rows = n.max(1);
        self
    }

    /// A chunk ends, too, when its rows hold this many bytes
    /// ([`FeedRecord::size_in_memory`]; default 64 MiB, past the 100,000
    /// rows of any common feed), one row of up to a line's cap past it at
    /// most: rows of a hostile source may be long.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n;
        self
    }

    /// Runs an import. Bad rows are counted and skipped; an input that breaks
    /// off (a truncated download, a corrupt archive) or a storage error ends
    /// the run, which is recorded as `failed` with what it had applied, and
    /// the error is returned.
    pub fn run(
        &self,
        source: &SourceSpec,
        format: &str,
        origin: &str,
        rows: impl Iterator<Item = Result<Row, FeedError>>,
        now: DateTime<Utc>,
        progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<ImportSummary> {
        let started = Instant::now();
        self.store.sync_sources(std::slice::from_ref(source))?;
        let id = self.store.begin_import(source, format, origin, now)?;
        let mut run = crate::ImportRun {
            id,
            source: source.clone(),
            started_at: now,
            rows_read: 0,
            skipped: 0,
            counts: Default::default(),
            listed_most_bytes: self.listed_most_bytes,
            cache: None,
        };
        let mut summary = ImportSummary {
            import_id: id,
            source: source.name.clone(),
            format: format.to_string(),
            origin: origin.to_string(),
            rows_read: 0,
            added: 0,
            updated: 0,
            unchanged: 0,
            skipped: 0,
            skipped_by_reason: Default::default(),
            status: "completed".into(),
            error: None,
            elapsed_ms: 0,
        };
        let mut chunk: Vec<FeedRecord> = Vec::new();
        let mut chunk_bytes = 0;
        let mut outcome = Ok(());
        let mut input_error = None;
        let mut rows = rows.peekable();
        while rows.peek().is_some() && input_error.is_none() {
            for row in rows.by_ref() {
                let row = match row {
                    Ok(row) => row,
                    Err(e) => {
                        input_error = Some(StoreError::Input(format!(
                            "the input broke off after {} rows: {e}",
                            run.rows_read
                        )));
                        break;
                    }
                };
                run.rows_read += 1;
                match row {
                    Row::Record(r) => {
                        chunk_bytes += r.size_in_memory();
                        chunk.push(r);
                    }
                    Row::Skip(s) => {
                        run.skipped += 1;
                        let g: &mut SkipGroup =
                            summary.skipped_by_reason.entry(s.reason).or_default();
                        g.count += 1;
                        if g.first_lines.len() < self.first_lines {
                            g.first_lines.push(s.line);
                        }
                    }
                }
                if chunk.len() >= self.chunk_rows || chunk_bytes >= self.chunk_bytes {
                    break;
                }
            }
            if let Err(e) = self.store.apply_import_chunk(&mut run, &chunk) {
                outcome = Err(e);
                break;
            }
            chunk.clear();
            chunk_bytes = 0;
            progress(&ImportProgress {
                rows_read: run.rows_read,
                added: run.counts.added,
                updated: run.counts.updated,
                unchanged: run.counts.unchanged,
                skipped: run.skipped,
            });
        }
        if let (Ok(()), Some(e)) = (&outcome, input_error) {
            outcome = Err(e);
        }
        summary.rows_read = run.rows_read;
        summary.added = run.counts.added;
        summary.updated = run.counts.updated;
        summary.unchanged = run.counts.unchanged;
        summary.skipped = run.skipped;
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = &outcome {
            summary.status = "failed".into();
            summary.error = Some(e.to_string());
        }
        // Recording the end is best effort when the store itself failed.
        let finished = self.store.finish_import(&summary, Utc::now());
        outcome?;
        finished?;
        Ok(summary)
    }
}
