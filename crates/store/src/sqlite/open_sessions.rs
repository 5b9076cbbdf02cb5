//! The open sessions the writer has written, kept in memory.
//!
//! A RADIUS feed is mostly Interim-Updates of sessions already stored; each
//! would otherwise cost an upsert and a range read of the session's rows.
//! With the session's open rows known here, an Interim-Update that changes
//! nothing writes nothing, and a Stop updates its rows by id. Only this
//! process's writer fills the table, and every write it leads to is
//! conditional on the row still being open, so a row closed or purged
//! behind its back makes the writer fall back to the statements that read
//! the store.
//!
//! Changes made inside a transaction are staged and kept only once it
//! commits: a rolled-back batch leaves the table as it was.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use ipnet::IpNet;
use kanki_directory::BindingOrigin;

/// One open row of a session: one prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OpenRow {
    pub prefix: IpNet,
    pub id: i64,
    pub from: i64,
}

/// A session: its origin, NAS and Acct-Session-Id, hashed to 128 bits with
/// keys drawn per process (a collision would take about 2^64 sessions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct SessionKey(u128);

pub(super) struct OpenSessions {
    rows: HashMap<SessionKey, Vec<OpenRow>>,
    keep: usize,
    hashers: (RandomState, RandomState),
}

impl OpenSessions {
    pub fn new(keep: usize) -> OpenSessions {
        OpenSessions {
            rows: HashMap::new(),
            keep,
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    pub fn key(&self, origin: BindingOrigin, nas: &str, session_id: &str) -> SessionKey {
        let parts = (origin.as_str(), nas, session_id);
        SessionKey(
            u128::from(self.hashers.0.hash_one(parts)) << 64
                | u128::from(self.hashers.1.hash_one(parts)),
        )
    }

    /// A transaction's view: this table with its staged changes on top.
    pub fn stage(&mut self) -> Staged<'_> {
        Staged {
            base: self,
            changes: HashMap::new(),
            cleared: false,
        }
    }
}

pub(super) struct Staged<'a> {
    base: &'a mut OpenSessions,
    /// `None`: the session is not known (closed, or its rows unknown).
    changes: HashMap<SessionKey, Option<Vec<OpenRow>>>,
    /// Everything was forgotten (a NAS restarted).
    cleared: bool,
}

impl Staged<'_> {
    pub fn key(&self, origin: BindingOrigin, nas: &str, session_id: &str) -> SessionKey {
        self.base.key(origin, nas, session_id)
    }

    pub fn get(&self, k: SessionKey) -> Option<&[OpenRow]> {
        match self.changes.get(&k) {
            Some(change) => change.as_deref(),
            None if self.cleared => None,
            None => self.base.rows.get(&k).map(Vec::as_slice),
        }
    }

    pub fn set(&mut self, k: SessionKey, rows: Vec<OpenRow>) {
        self.changes.insert(k, Some(rows));
    }

    pub fn forget(&mut self, k: SessionKey) {
        self.changes.insert(k, None);
    }

    pub fn forget_all(&mut self) {
        self.changes.clear();
        self.cleared = true;
    }

    /// Keeps the staged changes: the transaction committed.
    pub fn keep(self) {
        let base = self.base;
        if self.cleared {
            base.rows.clear();
        }
        for (k, change) in self.changes {
            match change {
                Some(rows) if base.rows.len() < base.keep || base.rows.contains_key(&k) => {
                    base.rows.insert(k, rows);
                }
                _ => {
                    base.rows.remove(&k);
                }
            }
        }
    }
}
