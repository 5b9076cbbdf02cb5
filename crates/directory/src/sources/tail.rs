//! Following a growing file of any format, the way `tail -F` does:
//! [`Tail`] reads the complete records appended since it last looked,
//! survives rotation and truncation, and gives a [`TailPosition`] to keep
//! so that a restart carries on where it stopped.
//!
//! A record is complete once the text after it has begun: a Kea line once
//! its newline is written, a dhcpd block once its closing `}` line is, a
//! FreeRADIUS `detail` record once its closing blank line is. What follows
//! the last complete record is left for the next look.
//!
//! - **Rotation** (the path renamed and a new file created, or deleted and
//!   created again): the old file is read to its end, then the new one from
//!   its start. Text after the old file's last newline was cut off
//!   mid-line; it is counted (`cut off by rotation`), not parsed (a Kea line
//!   cut inside a number would still parse, wrongly).
//! - **Truncation** (`copytruncate`, or a file rewritten shorter than the
//!   position, seen by a look before it grew back past it): the file
//!   is read again from its start, and the event counted (`file
//!   truncated`).
//! - **Restart**: a position names the file by device and inode; when the
//!   file at the path is another one (it was rotated while nothing
//!   followed it), the new file is read from its start.
//! - A Kea file's header is its first line: a look that starts after it
//!   reads the header again, so the columns are known.
//!
//! Memory is bounded: one look reads at most `max_bytes` (records after
//! that wait for the next look), and a stretch of `max_bytes` without a
//! record boundary is skipped (`record too long`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::detail::unlinked;
use crate::types::{BindingOrigin, BindingRow, Skipped};

/// Where a [`Tail`] stands in the file it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailPosition {
    /// The file, as the device and inode it had (0, 0 where the platform
    /// has none).
    pub file: (u64, u64),
    /// Bytes read (the next record starts here).
    pub offset: u64,
    /// The line number at `offset`, from 1.
    pub line: u64,
}

const POSITION_TAG: &str = "kanki-tail 1";

impl TailPosition {
    /// The position as one line of text, for a position file.
    pub fn to_line(&self) -> String {
        format!(
            "{POSITION_TAG} {} {} {} {}\n",
            self.file.0, self.file.1, self.offset, self.line
        )
    }

    /// Reads what [`to_line`](Self::to_line) wrote; `None` for anything
    /// else (a damaged position file: the file is then read from its start,
    /// which re-applies records idempotently).
    pub fn parse(text: &str) -> Option<TailPosition> {
        let rest = text
            .trim_end_matches(['\n', '\r'])
            .strip_prefix(POSITION_TAG)?;
        let mut f = rest.strip_prefix(' ')?.split(' ');
        let mut n = || -> Option<u64> {
            let s = f.next()?;
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let p = TailPosition {
            file: (n()?, n()?),
            offset: n()?,
            line: n()?,
        };
        (f.next().is_none() && p.line >= 1).then_some(p)
    }
}

/// What one look at a followed file found.
#[derive(Debug, Default)]
pub struct TailRead {
    /// The records completed since the last look, in order, line numbers
    /// counted in their file.
    pub rows: Vec<BindingRow>,
    /// What happened to the file itself: `cut off by rotation`, `file
    /// truncated`, `record too long`, `file replaced`.
    pub events: Vec<Skipped>,
    /// The file was rotated during this look (the next look reads the new
    /// one).
    pub rotated: bool,
}

/// Follows one file of binding records: see the module documentation.
pub struct Tail {
    origin: BindingOrigin,
    path: PathBuf,
    file: Option<File>,
    id: (u64, u64),
    offset: u64,
    line: u64,
    /// Where a restart left off, until the file is opened.
    resume: Option<TailPosition>,
    /// A Kea file's header line (with its newline).
    header: Option<Vec<u8>>,
    max_bytes: usize,
}

/// At most this much is read per look, by default.
pub const TAIL_MAX_BYTES: usize = 8 << 20;

/// The file's device and inode; (0, 0) where the platform has none.
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    super::detail::file_id(meta).unwrap_or((0, 0))
}

fn event(line: u64, reason: &str) -> Skipped {
    Skipped {
        line,
        reason: reason.to_string(),
    }
}

impl Tail {
    /// Follows `path`, a file of `origin`'s format, from `resume` when it
    /// names the file now at the path, else from its start.
    pub fn new(
        origin: BindingOrigin,
        path: impl Into<PathBuf>,
        resume: Option<TailPosition>,
    ) -> Tail {
        Tail {
            origin,
            path: path.into(),
            file: None,
            id: (0, 0),
            offset: 0,
            line: 1,
            resume,
            header: None,
            max_bytes: TAIL_MAX_BYTES,
        }
    }

    /// Reads at most `n` bytes per look.
    pub fn with_max_bytes(mut self, n: usize) -> Tail {
        self.max_bytes = n.max(64);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the next look starts; `None` before the file was first
    /// opened (then the position given at start still holds).
    pub fn position(&self) -> Option<TailPosition> {
        match &self.file {
            Some(_) => Some(TailPosition {
                file: self.id,
                offset: self.offset,
                line: self.line,
            }),
            None => self.resume,
        }
    }

    /// The records completed since the last look. A missing file is not an
    /// error (it may be being rotated): it has no records yet.
    pub fn poll(&mut self) -> io::Result<TailRead> {
        let mut out = TailRead::default();
        let at_path = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(file_id(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match (&self.file, at_path) {
            (None, None) => return Ok(out),
            (None, Some(_)) => self.open(&mut out)?,
            (Some(old), Some(id)) if id != self.id || unlinked(old) => {
                // Rotated: the old file to its end, then the new one.
                self.read(true, &mut out)?;
                out.rotated = true;
                self.file = None;
                self.header = None;
                self.resume = None;
                self.open(&mut out)?;
            }
            (Some(old), None) if unlinked(old) => {
                // Deleted, no new file yet: the old one to its end.
                self.read(true, &mut out)?;
                out.rotated = true;
                self.file = None;
                self.header = None;
                self.resume = None;
                return Ok(out);
            }
            _ => {}
        }
        self.read(false, &mut out)?;
        Ok(out)
    }

    fn open(&mut self, out: &mut TailRead) -> io::Result<()> {
        let f = File::open(&self.path)?;
        self.id = file_id(&f.metadata()?);
        (self.offset, self.line) = (0, 1);
        if let Some(r) = self.resume.take() {
            if r.file == self.id {
                (self.offset, self.line) = (r.offset, r.line);
            } else {
                out.events.push(event(1, "file replaced"));
            }
        }
        self.file = Some(f);
        Ok(())
    }

    /// Reads from the offset: the complete records, or, when `to_end` (the
    /// file was rotated away), every complete line.
    fn read(&mut self, to_end: bool, out: &mut TailRead) -> io::Result<()> {
        let Some(file) = self.file.as_ref().map(File::try_clone).transpose()? else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            out.events.push(event(self.line, "file truncated"));
            (self.offset, self.line) = (0, 1);
        }
        loop {
            let mut chunk = Vec::new();
            let mut f = &file;
            f.seek(SeekFrom::Start(self.offset))?;
            f.take(self.max_bytes as u64).read_to_end(&mut chunk)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let full = chunk.len() == self.max_bytes;
            let end = if to_end && !full {
                chunk.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
            } else {
                self.boundary(&chunk)
            };
            if end == 0 {
                if full {
                    // No record ends in a whole look's worth: skipped.
                    out.events.push(event(self.line, "record too long"));
                    self.advance(&chunk);
                    continue;
                }
                if to_end {
                    out.events.push(event(self.line, "cut off by rotation"));
                }
                return Ok(());
            }
            let tail_cut = to_end && !full && end < chunk.len();
            chunk.truncate(end);
            self.parse(&chunk, out)?;
            self.advance(&chunk);
            if tail_cut {
                out.events.push(event(self.line, "cut off by rotation"));
                return Ok(());
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn advance(&mut self, chunk: &[u8]) {
        self.offset += chunk.len() as u64;
        self.line += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }

    /// Where the last complete record of `chunk` ends (0: none does).
    fn boundary(&self, chunk: &[u8]) -> usize {
        match self.origin {
            // A record is a date line, attribute lines, a blank line.
            BindingOrigin::Detail => last_match(chunk, |c, i| {
                c[i] == b'\n' && (c[..i].ends_with(b"\n") || c[..i].ends_with(b"\n\r"))
            }),
            // A top-level block closes with a `}` line.
            BindingOrigin::Dhcpd => last_match(chunk, |c, i| {
                c[i] == b'\n'
                    && (c[..i].ends_with(b"\n}")
                        || c[..i].ends_with(b"\n}\r")
                        || c[..i] == *b"}"
                        || c[..i] == *b"}\r")
            }),
            // One record a line.
            _ => chunk.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
        }
    }

    fn parse(&mut self, chunk: &[u8], out: &mut TailRead) -> io::Result<()> {
        // A Kea file read from its middle: its header first.
        let mut header_lines = 0;
        let text: std::borrow::Cow<[u8]> = if self.origin == BindingOrigin::Kea {
            if self.offset == 0 {
                if let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
                    self.header = Some(chunk[..=nl].to_vec());
                }
                chunk.into()
            } else {
                if self.header.is_none() {
                    self.header = self.read_header()?;
                }
                match &self.header {
                    Some(h) => {
                        header_lines = 1;
                        [h.as_slice(), chunk].concat().into()
                    }
                    None => chunk.into(),
                }
            }
        } else {
            chunk.into()
        };
        let first = self.line;
        let number = |line: u64| (line + first).saturating_sub(1 + header_lines);
        for row in super::read(self.origin, &text[..]) {
            match row? {
                BindingRow::Event { line, event } => out.rows.push(BindingRow::Event {
                    line: number(line),
                    event,
                }),
                BindingRow::Skip(s) => out.rows.push(BindingRow::Skip(Skipped {
                    line: number(s.line),
                    reason: s.reason,
                })),
            }
        }
        Ok(())
    }

    /// The file's first line (at most a look's worth), with its newline.
    fn read_header(&self) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        let mut first = Vec::new();
        f.take(self.max_bytes.min(1 << 20) as u64)
            .read_to_end(&mut first)?;
        Ok(first
            .iter()
            .position(|&b| b == b'\n')
            .map(|nl| first[..=nl].to_vec()))
    }
}

/// One past the last index `i` of `c` where `at(c, i)` holds; 0 when none.
fn last_match(c: &[u8], at: impl Fn(&[u8], usize) -> bool) -> usize {
    (0..c.len()).rev().find(|&i| at(c, i)).map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn bindings(r: &TailRead) -> Vec<(u64, String)> {
        r.rows
            .iter()
            .filter_map(|row| match row {
                BindingRow::Event {
                    line,
                    event: crate::types::BindingEvent::Binding(b),
                } => Some((*line, b.prefix.to_string())),
                _ => None,
            })
            .collect()
    }

    const KEA4: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n";

    fn lease(n: u32) -> String {
        format!(
            "192.0.2.{n},00:16:3e:5a:10:{n:02x},01:00:16:3e:5a:10:{n:02x},3600,1794801600,1,0,0,pc{n},0,,0\n"
        )
    }

    fn append(path: &Path, s: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(s.as_bytes()).unwrap();
    }

    #[test]
    fn kea_lines_are_taken_once_complete_across_restarts_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kea-leases4.csv");
        let mut t = Tail::new(BindingOrigin::Kea, &path, None);
        assert!(t.poll().unwrap().rows.is_empty(), "no file yet");
        append(&path, KEA4);
        append(&path, &lease(1));
        let half = lease(2);
        append(&path, &half[..20]);
        let r = t.poll().unwrap();
        assert_eq!(bindings(&r), [(2, "192.0.2.1/32".to_string())]);
        append(&path, &half[20..]);
        let r = t.poll().unwrap();
        assert_eq!(bindings(&r), [(3, "192.0.2.2/32".to_string())]);

        // A restart from the kept position reads the header again.
        let kept = TailPosition::parse(&t.position().unwrap().to_line()).unwrap();
        append(&path, &lease(3));
        let mut t = Tail::new(BindingOrigin::Kea, &path, Some(kept));
        assert_eq!(
            bindings(&t.poll().unwrap()),
            [(4, "192.0.2.3/32".to_string())]
        );

        // Rotated with a line cut in the middle, and a new file begun.
        append(&path, &lease(4));
        append(&path, &lease(5)[..30]);
        std::fs::rename(&path, dir.path().join("kea-leases4.csv.2")).unwrap();
        append(&path, KEA4);
        append(&path, &lease(6));
        let r = t.poll().unwrap();
        assert!(r.rotated);
        assert_eq!(
            bindings(&r),
            [
                (5, "192.0.2.4/32".to_string()),
                (2, "192.0.2.6/32".to_string())
            ]
        );
        assert_eq!(
            r.events
                .iter()
                .map(|e| e.reason.as_str())
                .collect::<Vec<_>>(),
            ["cut off by rotation"]
        );

        // Truncated: read again from the start, and said so.
        std::fs::write(&path, "").unwrap();
        let r = t.poll().unwrap();
        assert_eq!(r.events[0].reason, "file truncated");
        append(&path, &format!("{KEA4}{}", lease(7)));
        let r = t.poll().unwrap();
        assert_eq!(bindings(&r), [(2, "192.0.2.7/32".to_string())]);

        // A position naming another file: this one from its start.
        let stale = TailPosition {
            file: (1, 1),
            offset: 5,
            line: 2,
        };
        let mut t = Tail::new(BindingOrigin::Kea, &path, Some(stale));
        let r = t.poll().unwrap();
        assert_eq!(bindings(&r), [(2, "192.0.2.7/32".to_string())]);
        assert_eq!(r.events[0].reason, "file replaced");
    }

    #[test]
    fn dhcpd_blocks_and_detail_records_wait_for_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dhcpd.leases");
        let mut t = Tail::new(BindingOrigin::Dhcpd, &path, None);
        let block = "lease 192.0.2.50 {\n  starts 1 2026/11/16 03:00:00;\n  ends 1 2026/11/16 15:00:00;\n  binding state active;\n  hardware ethernet 00:16:3e:5a:20:01;\n}\n";
        append(&path, &block[..60]);
        assert!(t.poll().unwrap().rows.is_empty());
        append(&path, &block[60..]);
        assert_eq!(
            bindings(&t.poll().unwrap()),
            [(1, "192.0.2.50/32".to_string())]
        );

        let path = dir.path().join("detail");
        let mut t = Tail::new(BindingOrigin::Detail, &path, None);
        let rec = "Mon Nov 16 12:00:04 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"u1\"\n\tAcct-Session-Id = \"A1\"\n\tFramed-IP-Address = 198.51.100.23\n\tNAS-IP-Address = 192.0.2.1\n\tTimestamp = 1794830404\n";
        append(&path, rec);
        assert!(
            t.poll().unwrap().rows.is_empty(),
            "no closing blank line yet"
        );
        append(&path, "\n");
        let r = t.poll().unwrap();
        assert_eq!(r.rows.len(), 1);
        assert!(matches!(r.rows[0], BindingRow::Event { line: 1, .. }));
    }

    #[test]
    fn a_stretch_without_a_record_end_is_skipped_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kea");
        append(&path, KEA4);
        append(&path, &"x".repeat(500));
        append(&path, &format!("\n{}", lease(9)));
        let mut t = Tail::new(BindingOrigin::Kea, &path, None).with_max_bytes(200);
        let r = t.poll().unwrap();
        assert!(r.events.iter().any(|e| e.reason == "record too long"));
        assert!(bindings(&r).iter().any(|b| b.1 == "192.0.2.9/32"));
    }

    #[test]
    fn positions_read_back_and_damaged_ones_are_refused() {
        let p = TailPosition {
            file: (64769, 1234567),
            offset: 987654321,
            line: 42,
        };
        assert_eq!(TailPosition::parse(&p.to_line()), Some(p));
        for bad in [
            "",
            "kanki-tail 1 1 2 3",
            "kanki-tail 1 1 2 3 0",
            "kanki-tail 1 1 2 3 4 5",
            "kanki-tail 1 1 2 -3 4",
            "kanki-tail 1 1 2 +3 4",
            "kanki-tail 2 1 2 3 4",
            "kanki-tail 1 99999999999999999999 2 3 4",
        ] {
            assert_eq!(TailPosition::parse(bad), None, "{bad:?}");
        }
    }
}
