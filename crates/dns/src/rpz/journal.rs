//! The IXFR journal on disk: one file per zone in `data_dir/rpz/`, so that
//! a restarted kanki still answers IXFR from the serials its secondaries
//! hold, and never reuses or lowers a serial.
//!
//! The file is a sequence of records, each `tag, length, payload, check`
//! (the check an FNV-1a hash of tag and payload):
//!
//! * `B` (base): the zone's record fingerprint, a serial, and the whole
//!   content at that serial;
//! * `D` (difference): from serial, to serial, removed and added entries.
//!
//! The zone is the last base with the differences after it applied in
//! order; every difference in the file (before and after the base) that
//! chains up to that serial is the IXFR history. Each change appends one
//! `D` and syncs it. When the differences in the file pass twice the
//! configured depth, or one difference is larger than the depth, the file
//! is rewritten (to a temporary file, synced, renamed) as the kept
//! differences then a new base. A record cut short by a crash is dropped
//! at the next start, with everything after it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::content::Content;
use super::zone::{Diff, Fnv};

const MAGIC: &[u8] = b"kanki-rpz-journal 1\n";

/// A zone's journal file, open for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    depth: u64,
    fingerprint: u64,
    /// Changes held in `D` records of the file.
    changes_in_file: u64,
}

/// What a journal file held.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest serial the file mentions, whatever else is usable: a new
    /// start must go past it.
    pub last_serial: Option<u32>,
    /// The zone at `last_serial` and its history, when the file is for
    /// records of the same fingerprint.
    pub state: Option<(Content, Vec<Arc<Diff>>)>,
}

enum Rec {
    Base {
        fingerprint: u64,
        serial: u32,
        content: Content,
    },
    Diff(Diff),
}

impl Journal {
    /// Opens (creating) the journal at `path` for records of `fingerprint`.
    /// Differences are kept in memory up to `depth` changes.
    pub fn open(path: &Path, fingerprint: u64, depth: u64) -> io::Result<(Journal, Loaded)> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (records, valid_len) = parse(&bytes);
        let mut loaded = Loaded::default();
        let mut changes_in_file = 0;
        if let Some(base_at) = records.iter().rposition(|r| matches!(r, Rec::Base { .. })) {
            for r in &records {
                let s = match r {
                    Rec::Base { serial, .. } => *serial,
                    Rec::Diff(d) => d.to,
                };
                // The file only grows in serial order; take the last.
                loaded.last_serial = Some(s);
            }
            let Rec::Base {
                fingerprint: fp,
                serial,
                content,
            } = &records[base_at]
            else {
                unreachable!()
            };
            if *fp == fingerprint {
                let mut serial = *serial;
                let mut content = content.clone();
                let mut good = base_at + 1;
                for r in &records[base_at + 1..] {
                    match r {
                        Rec::Diff(d) if d.from == serial => {
                            content = content.apply(&d.removed, &d.added);
                            serial = d.to;
                            good += 1;
                        }
                        _ => break,
                    }
                }
                // The history: differences chaining up to `serial`, newest
                // last, within the depth.
                let diffs: Vec<&Diff> = records[..good]
                    .iter()
                    .filter_map(|r| match r {
                        Rec::Diff(d) => Some(d),
                        _ => None,
                    })
                    .collect();
                let mut chain: Vec<Arc<Diff>> = Vec::new();
                let mut want = serial;
                let mut kept = 0;
                for d in diffs.iter().rev() {
                    if d.to != want || kept + d.changes() > depth {
                        break;
                    }
                    kept += d.changes();
                    want = d.from;
                    chain.push(Arc::new((*d).clone()));
                }
                chain.reverse();
                changes_in_file = diffs.iter().map(|d| d.changes()).sum();
                loaded.last_serial = Some(serial);
                loaded.state = Some((content, chain));
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        if bytes.len() != valid_len || bytes.is_empty() {
            // Cut a torn tail (or start a new file) before appending.
            file.set_len(valid_len as u64)?;
            if valid_len == 0 {
                file.write_all(MAGIC)?;
            }
            file.sync_all()?;
        }
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                depth,
                fingerprint,
                changes_in_file,
            },
            loaded,
        ))
    }

    /// Records a difference; rewrites the file when it has grown too much
    /// (then `content` and `history`, the state after the difference, are
    /// what it keeps).
    pub fn append(
        &mut self,
        diff: &Diff,
        content: &Content,
        history: &[Arc<Diff>],
    ) -> io::Result<()> {
        if diff.changes() > self.depth || self.changes_in_file + diff.changes() > 2 * self.depth {
            return self.rewrite(diff.to, content, history);
        }
        let mut payload = Vec::with_capacity(
            16 + diff.removed.data_bytes() + diff.added.data_bytes() + 2 * diff.changes() as usize,
        );
        encode_diff(diff, &mut payload);
        let mut rec = Vec::with_capacity(payload.len() + 13);
        frame(b'D', &payload, &mut rec);
        self.file.write_all(&rec)?;
        self.file.sync_data()?;
        self.changes_in_file += diff.changes();
        Ok(())
    }

    /// Writes the file anew: the kept differences, then a base of the zone
    /// at `serial`.
    pub fn rewrite(
        &mut self,
        serial: u32,
        content: &Content,
        history: &[Arc<Diff>],
    ) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(MAGIC)?;
        let mut rec = Vec::new();
        let mut payload = Vec::new();
        let mut changes = 0;
        for d in history {
            payload.clear();
            rec.clear();
            encode_diff(d, &mut payload);
            frame(b'D', &payload, &mut rec);
            out.write_all(&rec)?;
            changes += d.changes();
        }
        payload.clear();
        rec.clear();
        payload.extend_from_slice(&self.fingerprint.to_be_bytes());
        payload.extend_from_slice(&serial.to_be_bytes());
        content.encode(&mut payload);
        frame(b'B', &payload, &mut rec);
        out.write_all(&rec)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.changes_in_file = changes;
        Ok(())
    }
}

fn encode_diff(d: &Diff, out: &mut Vec<u8>) {
    out.extend_from_slice(&d.from.to_be_bytes());
    out.extend_from_slice(&d.to.to_be_bytes());
    d.removed.encode(out);
    d.added.encode(out);
}

fn frame(tag: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let mut h = Fnv::default();
    h.write(&[tag]);
    h.write(payload);
    out.extend_from_slice(&h.0.to_be_bytes());
}

/// The records of a journal file, and how many bytes of it are good.
fn parse(bytes: &[u8]) -> (Vec<Rec>, usize) {
    let mut out = Vec::new();
    if !bytes.starts_with(MAGIC) {
        return (out, 0);
    }
    let mut pos = MAGIC.len();
    while let Some(rest) = bytes.get(pos..) {
        if rest.len() < 13 {
            break;
        }
        let tag = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
        let Some(payload) = rest.get(5..5 + len) else {
            break;
        };
        let Some(check) = rest.get(5 + len..13 + len) else {
            break;
        };
        let mut h = Fnv::default();
        h.write(&[tag]);
        h.write(payload);
        if h.0.to_be_bytes() != check {
            break;
        }
        let Some(rec) = decode(tag, payload) else {
            break;
        };
        out.push(rec);
        pos += 13 + len;
    }
    (out, pos)
}

fn decode(tag: u8, mut p: &[u8]) -> Option<Rec> {
    let u32_at = |p: &mut &[u8]| -> Option<u32> {
        let (h, r) = p.split_at_checked(4)?;
        *p = r;
        Some(u32::from_be_bytes(h.try_into().ok()?))
    };
    match tag {
        b'B' => {
            let (fp, r) = p.split_at_checked(8)?;
            p = r;
            let fingerprint = u64::from_be_bytes(fp.try_into().ok()?);
            let serial = u32_at(&mut p)?;
            let content = Content::decode(&mut p)?;
            p.is_empty().then_some(Rec::Base {
                fingerprint,
                serial,
                content,
            })
        }
        b'D' => {
            let from = u32_at(&mut p)?;
            let to = u32_at(&mut p)?;
            let removed = Content::decode(&mut p)?;
            let added = Content::decode(&mut p)?;
            p.is_empty().then_some(Rec::Diff(Diff {
                from,
                to,
                removed,
                added,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpz::content::EntryKind;

    fn content(names: &[&str]) -> Content {
        Content::from_entries(names.iter().map(|n| (EntryKind::Name, *n)))
    }

    fn diff(from: u32, to: u32, old: &Content, new: &Content) -> Diff {
        let (removed, added) = old.diff(new);
        Diff {
            from,
            to,
            removed,
            added,
        }
    }

    #[test]
    fn survives_a_restart_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpz/z.journal");
        let (mut j, loaded) = Journal::open(&path, 42, 100).unwrap();
        assert!(loaded.last_serial.is_none() && loaded.state.is_none());
        let c1 = content(&["a.example", "b.example"]);
        j.rewrite(10, &c1, &[]).unwrap();
        let c2 = content(&["b.example", "c.example"]);
        let d1 = Arc::new(diff(10, 11, &c1, &c2));
        j.append(&d1, &c2, std::slice::from_ref(&d1)).unwrap();
        let c3 = content(&["c.example"]);
        let d2 = Arc::new(diff(11, 15, &c2, &c3));
        j.append(&d2, &c3, &[d1.clone(), d2.clone()]).unwrap();
        drop(j);

        let (_, loaded) = Journal::open(&path, 42, 100).unwrap();
        assert_eq!(loaded.last_serial, Some(15));
        let (c, history) = loaded.state.unwrap();
        assert_eq!(c, c3);
        assert_eq!(
            history.iter().map(|d| (d.from, d.to)).collect::<Vec<_>>(),
            [(10, 11), (11, 15)]
        );

        // A crash in the middle of the last record: it is dropped.
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (_, loaded) = Journal::open(&path, 42, 100).unwrap();
        assert_eq!(loaded.last_serial, Some(11));
        assert_eq!(loaded.state.unwrap().0, c2);
        // The torn record is cut off the file.
        let (_, valid) = parse(&fs::read(&path).unwrap());
        assert_eq!(valid as u64, fs::metadata(&path).unwrap().len());
        assert!(valid as u64 <= len - 3);

        // Other records (settings changed): the serial is kept, nothing else.
        let (_, loaded) = Journal::open(&path, 43, 100).unwrap();
        assert_eq!(loaded.last_serial, Some(11));
        assert!(loaded.state.is_none());
    }

    #[test]
    fn depth_bounds_the_history_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.journal");
        let (mut j, _) = Journal::open(&path, 1, 4).unwrap();
        let mut cur = content(&[]);
        j.rewrite(1, &cur, &[]).unwrap();
        let mut history: Vec<Arc<Diff>> = Vec::new();
        for i in 0..10u32 {
            let name = format!("n{i}.example");
            let next = cur.apply(&Content::default(), &content(&[&name]));
            let d = Arc::new(diff(i + 1, i + 2, &cur, &next));
            history.push(d.clone());
            while history.iter().map(|d| d.changes()).sum::<u64>() > 4 {
                history.remove(0);
            }
            j.append(&d, &next, &history).unwrap();
            cur = next;
        }
        let (_, loaded) = Journal::open(&path, 1, 4).unwrap();
        let (c, h) = loaded.state.unwrap();
        assert_eq!(c.len(), 10);
        assert_eq!(h.len(), 4);
        assert_eq!(h.last().unwrap().to, 11);
        // Rewritten along the way: never more than twice the depth in it.
        let (records, _) = parse(&fs::read(&path).unwrap());
        assert!(records.len() <= 2 * 4 + 1, "{}", records.len());
    }
}
