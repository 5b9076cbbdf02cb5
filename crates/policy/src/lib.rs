//! The policy snapshot: the compiled, immutable in-memory list the DNS path
//! asks "is this name, or a parent of it, listed, and does the allowlist
//! override".
//!
//! ```
//! use kanki_indicators::AllowKind;
//! use kanki_policy::{SnapshotBuilder, Verdict};
//!
//! let mut b = SnapshotBuilder::new();
//! b.add_listed("bad.example", 17);
//! b.add_allow(AllowKind::Exact, "ok.bad.example", 3);
//! let snap = b.build(1);
//!
//! assert_eq!(
//!     snap.lookup(b"A.B.Bad.Example."),
//!     Verdict::Listed { matched: "bad.example", indicators: &[17] }
//! );
//! assert!(matches!(snap.lookup(b"ok.bad.example"), Verdict::Allowed { allow_entry: 3, .. }));
//! assert!(snap.lookup(b"x.ok.bad.example").is_listed()); // exact does not cover children
//! assert_eq!(snap.lookup(b"notbad.example"), Verdict::NotListed);
//! ```
//!
//! * [`SnapshotBuilder`] collects listed names with their indicator ids and
//!   allowlist entries (fed from the store by the caller) and compiles a
//!   [`Snapshot`].
//! * [`Snapshot::lookup`] answers with a [`Verdict`], allocation-free; an
//!   allowlist entry covering the name always wins. The computation takes
//!   about 0.1 µs; at a million names, which do not fit in cache, a listed
//!   name costs two memory round trips one after the other (table slot, then
//!   record). [`Snapshot::lookup_many`] answers a batch, overlapping the
//!   memory accesses of several names: use it where queries come in batches.
//! * [`Snapshot::save`] / [`Snapshot::load`] persist it in the data directory
//!   as a flat, checksummed file; 1,000,000 names load and are checked in
//!   about 0.15 s.
//! * [`PolicyHandle`] holds the current snapshot; readers never block and a
//!   new one is swapped in atomically.
//! * [`synth`] generates deterministic names and query mixes for benchmarks.
//!
//! Layout and the reasons for it are in the `snapshot` module source; the
//! file format in `persist`.

mod builder;
mod hash;
mod pages;
mod persist;
mod snapshot;
pub mod synth;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use builder::SnapshotBuilder;
pub use hash::MAX_NAME_LEN;
pub use persist::{FORMAT_VERSION, LoadError};
pub use snapshot::{MAX_IDS_PER_NAME, Snapshot, Verdict};

/// A guard returned by [`PolicyHandle::load`]; derefs to `Arc<Snapshot>`.
pub type SnapshotGuard = arc_swap::Guard<Arc<Snapshot>>;

/// Holds the current snapshot for many readers and an occasional writer.
///
/// Readers call [`load`](Self::load) per query (a few nanoseconds, no lock,
/// no contention with other readers); the refresher calls
/// [`store`](Self::store) with a new snapshot. A reader that loaded the old
/// one keeps a valid reference until it drops it.
pub struct PolicyHandle {
    current: ArcSwap<Snapshot>,
}

impl PolicyHandle {
    pub fn new(snapshot: Snapshot) -> PolicyHandle {
        PolicyHandle {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The current snapshot, for the duration of one query. Hold it briefly:
    /// for long-lived use take [`load_full`](Self::load_full).
    #[inline]
    pub fn load(&self) -> SnapshotGuard {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `snapshot` current and returns the previous one, so the caller
    /// can drop it (freeing its memory) off the query path.
    pub fn store(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(snapshot))
    }
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PolicyHandle").field(&**self.load()).finish()
    }
}
