//! Following a lease or accounting file (Kea, ISC dhcpd, FreeRADIUS
//! detail): the one follower `kanki serve` runs for each
//! `[[directory.follow]]` entry and `kanki bindings follow` runs on the
//! command line. Each look's records are stored in one transaction, then
//! the position is saved in the data directory (after the commit, so a
//! crash re-reads at most one look, which applies idempotently); a
//! restart carries on from it, and rotation is handled by
//! [`kanki_directory::sources::Tail`].

use std::path::{Path, PathBuf};

use chrono::Utc;
use kanki_directory::sources::{Tail, TailPosition};
use kanki_directory::{BindingOrigin, BindingRow};
use kanki_service::Kanki;

/// One followed file and where its position is kept.
pub(crate) struct Follower {
    origin: BindingOrigin,
    tail: Tail,
    position: PathBuf,
}

/// What one look stored and skipped.
#[derive(Debug, Default)]
pub(crate) struct Look {
    pub stored: usize,
    pub skipped: usize,
}

impl Follower {
    /// Follows `path`, a file in `origin`'s format, from the position
    /// saved in `data_dir` when there is one.
    pub(crate) fn open(data_dir: &Path, origin: BindingOrigin, path: &Path) -> Follower {
        let position = position_path(data_dir, origin, path);
        let resume = std::fs::read_to_string(&position)
            .ok()
            .and_then(|s| TailPosition::parse(&s));
        tracing::info!(file = %path.display(), format = origin.as_str(), resumed = resume.is_some(), "following");
        Follower {
            origin,
            tail: Tail::new(origin, path, resume),
            position,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.tail.path()
    }

    /// One look at the file: what is new is stored, and every record
    /// skipped or broken is counted by `count(reason, n)` with its reason
    /// (and logged with its line).
    pub(crate) fn look(&mut self, k: &Kanki, count: &dyn Fn(&str, u64)) -> anyhow::Result<Look> {
        let before = self.tail.position();
        let read = self.tail.poll()?;
        let src = self.origin.as_str();
        let mut look = Look::default();
        for e in &read.events {
            tracing::warn!(file = %self.tail.path().display(), line = e.line, "{}", e.reason);
            count(&format!("{src}: {}", e.reason), 1);
            look.skipped += 1;
        }
        let mut events = Vec::with_capacity(read.rows.len());
        for row in read.rows {
            match row {
                BindingRow::Event { event, .. } => events.push(event),
                BindingRow::Skip(s) => {
                    count(&format!("{src}: {}", s.reason), 1);
                    look.skipped += 1;
                }
            }
        }
        if !events.is_empty() {
            match k
                .store
                .directory()
                .apply_bindings(self.origin, &events, Utc::now())
            {
                Ok((counts, _)) => {
                    count(
                        &format!("{src}: stop without start"),
                        counts.stops_without_start,
                    );
                    look.stored = events.len();
                }
                Err(e) => {
                    // Not stored: read again next time.
                    self.tail = Tail::new(self.origin, self.tail.path(), before);
                    return Err(e.into());
                }
            }
        }
        if let Some(p) = self.tail.position()
            && Some(p) != before
        {
            let tmp = self.position.with_extension("tmp");
            std::fs::write(&tmp, p.to_line())?;
            std::fs::rename(&tmp, &self.position)?;
        }
        Ok(look)
    }
}

/// Where the position in a followed file is kept: in the data directory,
/// named by the format and the file's absolute path.
fn position_path(data_dir: &Path, origin: BindingOrigin, path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let key =
        BuildHasherDefault::<DefaultHasher>::default().hash_one(abs.to_string_lossy().as_bytes());
    data_dir.join(format!("follow-{}-{key:016x}.pos", origin.as_str()))
}
