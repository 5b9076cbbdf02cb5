//! Saving and loading a snapshot file.
//!
//! # Format (version 1)
//!
//! The file is the snapshot's two word arrays behind a fixed header, in the
//! writing machine's byte order (a marker word tells; a file from a machine of
//! the other order is refused, and the caller rebuilds from the store):
//!
//! ```text
//! word 0   "KANKIPOL"           word 5  record count
//! word 1   byte-order marker    word 6  listed names
//! word 2   format version       word 7  allowlist rules
//! word 3   generation           word 8  data words (D)
//! word 4   hash seed            word 9  table slots (S)
//! D words of records, S words of table, 1 word CRC-32 of everything before
//! ```
//!
//! # Why read, not mmap
//!
//! Loading reads the file in four `read_exact` calls straight into the final
//! vectors: no parsing, no per-entry work, no second copy. At 1,000,000 names
//! that is ~50 MB, read at page-cache or disk speed in tens of milliseconds.
//! mmap would save that copy but nothing else: the checksum has to touch every
//! byte anyway, the table is random-access (so pages would fault in one by one
//! on the first queries instead of in one sequential read), and a mapped file
//! that is truncated or rewritten underneath the process turns into SIGBUS or
//! silently changed answers, which would need `unsafe` to even express. The
//! file is a cache of what the store holds, so owning a private copy is the
//! simple, safe choice.
//!
//! # What load checks
//!
//! Magic, byte order, version, sizes against the file length (before any large
//! allocation), the CRC, and then the structure itself: every record in bounds,
//! names ASCII lowercase and strictly ascending, ids ascending, flags
//! consistent, and every record reachable in the table at its own hash. A file
//! that passes answers exactly as the snapshot that was saved; any other file
//! is an error, never a panic or a wrong answer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::hash::{Keys, MAX_NAME_LEN, Prepared, label_bit};
use crate::snapshot::{F_ALLOW_EXACT, F_ALLOW_SUFFIX, F_LISTED, Snapshot, header_of, slot};

const MAGIC: [u8; 8] = *b"KANKIPOL";
const BYTE_ORDER: u64 = 0x0102_0304_0506_0708;
/// Bumped whenever the layout or the hash function changes.
pub const FORMAT_VERSION: u64 = 1;
const HEADER_WORDS: usize = 10;

/// Why a snapshot file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading the snapshot file: {0}")]
    Io(#[from] io::Error),
    #[error("not a kanki policy snapshot (bad magic)")]
    NotASnapshot,
    #[error("snapshot written by a machine of the other byte order")]
    ByteOrder,
    #[error("snapshot format version {found}, this build reads version {supported}")]
    Version { found: u64, supported: u64 },
    #[error("snapshot file is {found} bytes, its header says {expected} (truncated or padded)")]
    Size { expected: u64, found: u64 },
    #[error("snapshot checksum mismatch (file corrupted)")]
    Checksum,
    #[error("snapshot structure is inconsistent: {0}")]
    Corrupt(&'static str),
}

impl Snapshot {
    /// Writes the snapshot to `path` atomically: a temporary file in the same
    /// directory is written and fsynced, renamed over `path`, and the directory
    /// fsynced, so a crash leaves either the old file or the new one.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "snapshot path has no file name",
            )
        })?;
        // Unique per process and per call, so concurrent saves never share a
        // temporary file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{n}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let result = self
            .write_to(&tmp)
            .and_then(|()| std::fs::rename(&tmp, path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        sync_dir(&dir)
    }

    fn write_to(&self, tmp: &Path) -> io::Result<()> {
        let header = self.header_words();
        let mut crc = crc32fast::Hasher::new();
        let mut f = File::create(tmp)?;
        for part in [&header[..], &self.data, &self.slots] {
            let bytes: &[u8] = bytemuck::cast_slice(part);
            crc.update(bytes);
            f.write_all(bytes)?;
        }
        f.write_all(&u64::from(crc.finalize()).to_ne_bytes())?;
        f.sync_all()
    }

    fn header_words(&self) -> [u64; HEADER_WORDS] {
        [
            u64::from_ne_bytes(MAGIC),
            BYTE_ORDER,
            FORMAT_VERSION,
            self.generation,
            self.seed,
            self.records as u64,
            self.listed as u64,
            self.allows as u64,
            self.data.len() as u64,
            self.slots.len() as u64,
        ]
    }

    /// Reads a snapshot written by [`Snapshot::save`], checking it whole
    /// (see the module notes); a corrupt, truncated or foreign file is an
    /// error.
    pub fn load(path: &Path) -> Result<Snapshot, LoadError> {
        let mut f = File::open(path)?;
        let file_len = f.metadata()?.len();
        let mut header = [0u64; HEADER_WORDS];
        if file_len < (HEADER_WORDS as u64 + 1) * 8 {
            // Tell a short file of ours from someone else's file.
            let mut head = [0u8; 8];
            return match f.read_exact(&mut head) {
                Ok(()) if head != MAGIC => Err(LoadError::NotASnapshot),
                _ => Err(LoadError::Size {
                    expected: (HEADER_WORDS as u64 + 1) * 8,
                    found: file_len,
                }),
            };
        }
        f.read_exact(bytemuck::cast_slice_mut(&mut header))?;
        if header[0].to_ne_bytes() != MAGIC {
            return Err(LoadError::NotASnapshot);
        }
        if header[1] != BYTE_ORDER {
            return Err(LoadError::ByteOrder);
        }
        if header[2] != FORMAT_VERSION {
            return Err(LoadError::Version {
                found: header[2],
                supported: FORMAT_VERSION,
            });
        }
        let [
            _,
            _,
            _,
            generation,
            seed,
            records,
            listed,
            allows,
            data_words,
            slot_words,
        ] = header;
        // Sizes are checked against the file before anything is allocated.
        let expected = data_words
            .checked_add(slot_words)
            .and_then(|w| w.checked_add(HEADER_WORDS as u64 + 1))
            .and_then(|w| w.checked_mul(8));
        if expected != Some(file_len) {
            return Err(LoadError::Size {
                expected: expected.unwrap_or(u64::MAX),
                found: file_len,
            });
        }
        let mut data = vec![0u64; data_words as usize];
        let mut slots = vec![0u64; slot_words as usize];
        // Before the first write: the reads below then fault in huge pages.
        crate::pages::use_huge_pages(&data, false);
        crate::pages::use_huge_pages(&slots, false);
        let mut tail = [0u64; 1];
        f.read_exact(bytemuck::cast_slice_mut(&mut data))?;
        f.read_exact(bytemuck::cast_slice_mut(&mut slots))?;
        f.read_exact(bytemuck::cast_slice_mut(&mut tail))?;
        let mut crc = crc32fast::Hasher::new();
        for part in [&header[..], &data, &slots] {
            crc.update(bytemuck::cast_slice(part));
        }
        if u64::from(crc.finalize()) != tail[0] {
            return Err(LoadError::Checksum);
        }
        let mut snap = Snapshot {
            generation,
            seed,
            keys: Keys::new(seed),
            data,
            slots,
            homes: 0,
            labels: 0,
            records: usize::try_from(records).map_err(|_| LoadError::Corrupt("record count"))?,
            listed: usize::try_from(listed).map_err(|_| LoadError::Corrupt("listed count"))?,
            allows: usize::try_from(allows).map_err(|_| LoadError::Corrupt("allow count"))?,
        };
        snap.homes = slot::homes(snap.records);
        snap.labels = snap.validate()?;
        Ok(snap)
    }

    /// The structural checks of [`Snapshot::load`], O(size). Returns the
    /// label-count mask of the names, computed on the way.
    fn validate(&self) -> Result<u64, LoadError> {
        use LoadError::Corrupt;
        let data = &self.data;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        // Bit per data word: a record starts here / the table points here.
        let mut starts = vec![0u64; data.len().div_ceil(64)];
        let mut seen = vec![0u64; data.len().div_ceil(64)];
        let (mut records, mut listed, mut allows) = (0usize, 0usize, 0usize);
        let mut prev: &[u8] = &[];
        let mut at = 0;
        while at < data.len() {
            let h = header_of(data[at]);
            let words = h.words();
            if at + words > data.len() {
                return Err(Corrupt("record runs past the end"));
            }
            if h.len == 0 || h.len > MAX_NAME_LEN {
                return Err(Corrupt("name length"));
            }
            if h.flags == 0 || (h.nids > 0) != (h.flags & F_LISTED != 0) {
                return Err(Corrupt("record flags"));
            }
            let name = &bytes[at * 8 + 4..at * 8 + 4 + h.len];
            if !name.iter().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) || name.ends_with(b".")
            {
                return Err(Corrupt("name bytes"));
            }
            if records > 0 && name <= prev {
                return Err(Corrupt("names not in strictly ascending order"));
            }
            let ids = &data[at + h.name_words()..at + h.name_words() + h.nids];
            if ids.windows(2).any(|w| (w[0] as i64) >= (w[1] as i64)) {
                return Err(Corrupt("indicator ids not ascending"));
            }
            starts[at / 64] |= 1 << (at % 64);
            records += 1;
            listed += usize::from(h.flags & F_LISTED != 0);
            allows += usize::from(h.flags & F_ALLOW_EXACT != 0)
                + usize::from(h.flags & F_ALLOW_SUFFIX != 0);
            prev = name;
            at += words;
        }
        if (records, listed, allows) != (self.records, self.listed, self.allows) {
            return Err(Corrupt("counts do not match the header"));
        }

        // The table: (home, tag) nondecreasing along it, each record at or after
        // its home with no empty slot in between (else lookups would stop
        // short of it), its displacement and tag as stored, and the last
        // slot empty so that no probe runs off the end.
        let slots = &self.slots;
        let homes = self.homes;
        if slots.len() <= homes || slots.last() != Some(&0) {
            return Err(Corrupt("table size"));
        }
        let mut occupied = 0;
        let mut last_empty: Option<usize> = None;
        let mut last_key = 0;
        let mut labels = 0u64;
        for (pos, &s) in slots.iter().enumerate() {
            // Records are visited in table order, i.e. at random: fetch the
            // ones a few slots ahead while checking this one.
            if let Some(w) = slots.get(pos + 16).and_then(|&a| data.get(slot::at(a))) {
                crate::snapshot::prefetch(w);
            }
            if s == 0 {
                last_empty = Some(pos);
                continue;
            }
            occupied += 1;
            let rec = slot::at(s);
            if rec >= data.len() || starts[rec / 64] & (1 << (rec % 64)) == 0 {
                return Err(Corrupt("table slot points outside a record"));
            }
            if seen[rec / 64] & (1 << (rec % 64)) != 0 {
                return Err(Corrupt("record in the table twice"));
            }
            seen[rec / 64] |= 1 << (rec % 64);
            let h = header_of(data[rec]);
            if slot::flags(s) != h.flags {
                return Err(Corrupt("table flags differ from the record's"));
            }
            let name = &bytes[rec * 8 + 4..rec * 8 + 4 + h.len];
            let prepared = Prepared::new(name).ok_or(Corrupt("name length"))?;
            labels |= label_bit(prepared.labels());
            let hash = prepared.full_hash(&self.keys);
            let home = slot::home(hash, homes);
            if home > pos || last_empty.is_some_and(|e| e >= home) {
                return Err(Corrupt("record not reachable from its home slot"));
            }
            let key = slot::key(home, slot::tag_of(hash));
            if key < last_key {
                return Err(Corrupt("table not in (home, tag) order"));
            }
            last_key = key;
            if s != slot::pack(rec as u32, h.flags, pos - home, hash) {
                return Err(Corrupt("table slot differs from the record's hash"));
            }
        }
        if occupied != records {
            return Err(Corrupt("table does not hold every record"));
        }
        Ok(labels)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for fsync on Windows; rename there is
    // already durable once the file itself was flushed.
    Ok(())
}
