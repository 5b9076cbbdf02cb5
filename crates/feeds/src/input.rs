//! Opening an input: gzip and zip are recognized by their first bytes, not
//! by a file name, because feeds are fetched from URLs and read from stdin.
//!
//! Every input comes from outside, so every read is bounded
//! ([`InputLimits`]): the bytes after decompression, per input and per
//! archive entry, and how far compressed data may expand. Nothing is
//! decompressed whole into memory: gzip is a stream, and a zip archive
//! (whose directory is at its end) is spooled to a temporary file when it
//! is large, then read one entry at a time as a stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::CrcReader;
use flate2::read::{DeflateDecoder, MultiGzDecoder};
use serde::{Deserialize, Serialize};
use zip::{CompressionMethod, ZipArchive};

use crate::FeedError;
use crate::common::UTF8_BOM;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// A zip archive up to this size is held in memory; a larger one is
/// spooled to an unnamed temporary file.
const ZIP_IN_MEMORY: usize = 8 << 20;

/// Decompressed bytes an entry may reach before its expansion is judged:
/// a small file of one repeated line expands far, and harms nobody.
const EXPANSION_GRACE: u64 = 32 << 20;

/// Bounds on reading one input from outside: a feed, a report, an upload.
/// A bound that is crossed refuses the input with its reason
/// ([`FeedError::Refused`]); what was read before stays read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputLimits {
    /// Largest input, in bytes after decompression (all entries of an
    /// archive together).
    pub max_bytes: u64,
    /// Largest gzip stream or zip entry, in bytes after decompression.
    pub max_entry_bytes: u64,
    /// How many times its compressed size a gzip stream or zip entry may
    /// expand (judged once it passes 32 MiB); more is refused as a
    /// compression bomb. Real reports expand 5 to 30 times. 0: no limit.
    pub max_expansion: u64,
    /// Largest feed download, in bytes as sent.
    pub max_download_bytes: u64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_bytes: 16 << 30,
            max_entry_bytes: 4 << 30,
            max_expansion: 100,
            max_download_bytes: 2 << 30,
        }
    }
}

impl InputLimits {
    /// No bound at all; for measuring what reading costs whatever the size.
    pub fn unbounded() -> Self {
        InputLimits {
            max_bytes: u64::MAX,
            max_entry_bytes: u64::MAX,
            max_expansion: 0,
            max_download_bytes: u64::MAX,
        }
    }
}

/// Wraps a raw input, decompressing gzip and zip by their magic bytes,
/// within `limits`.
///
/// * gzip (`1f 8b`): decoded as a stream; several members are read one
///   after another, as `cat a.gz b.gz` makes them.
/// * zip (`PK\x03\x04`): every file entry in archive order, as one stream
///   (a line end is added between entries that lack one, and each entry's
///   UTF-8 BOM is dropped). Entries must be stored or deflated; each one's
///   CRC is checked. A zip without any file entry is [`FeedError::Archive`].
/// * anything else passes through unchanged (a leading BOM is left for
///   [`crate::parse`], which drops it).
///
/// Corrupt compressed data found later, while reading, comes out of the
/// parsers as [`FeedError::Archive`]; a bound crossed, as
/// [`FeedError::Refused`].
pub fn open_input(
    mut input: Box<dyn Read + Send>,
    limits: &InputLimits,
) -> Result<Box<dyn BufRead + Send>, FeedError> {
    let mut magic = Vec::with_capacity(4);
    (&mut input).take(4).read_to_end(&mut magic)?;
    let whole: Box<dyn Read + Send> = Box::new(Cursor::new(magic.clone()).chain(input));
    let decoded: Box<dyn Read + Send> = if magic.starts_with(ZIP_MAGIC) {
        Box::new(open_zip(whole, limits)?)
    } else if magic.starts_with(GZIP_MAGIC) {
        let compressed = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: whole,
            count: compressed.clone(),
        };
        let gz = ArchiveErrors {
            inner: MultiGzDecoder::new(counted),
            what: "gzip",
        };
        Box::new(Bounded::entry("gzip".into(), gz, compressed, limits))
    } else {
        whole
    };
    let total = Bounded {
        inner: decoded,
        what: "input".into(),
        read: 0,
        max: limits.max_bytes,
        max_key: "max_bytes",
        compressed: None,
        max_expansion: 0,
    };
    Ok(Box::new(BufReader::with_capacity(64 * 1024, total)))
}

/// The bytes of a zip archive, in memory or in an unnamed temporary file,
/// read at any offset by any number of readers.
#[derive(Clone)]
enum Spool {
    Memory(Arc<[u8]>),
    File(Arc<File>),
}

impl Spool {
    /// Takes in all of `input`, up to `max` bytes.
    fn new(input: &mut dyn Read, max: u64) -> Result<Spool, FeedError> {
        let mut head = Vec::new();
        input
            .take(ZIP_IN_MEMORY as u64 + 1)
            .read_to_end(&mut head)
            .map_err(FeedError::from_io)?;
        if head.len() <= ZIP_IN_MEMORY {
            return Ok(Spool::Memory(head.into()));
        }
        let mut file = tempfile::tempfile()?;
        file.write_all(&head)?;
        let copied = io::copy(
            &mut input.take(max.saturating_sub(head.len() as u64) + 1),
            &mut file,
        )
        .map_err(FeedError::from_io)?;
        if head.len() as u64 + copied > max {
            return Err(FeedError::Refused(format!(
                "zip: the archive is larger than {max} bytes (input.max_bytes)"
            )));
        }
        Ok(Spool::File(Arc::new(file)))
    }

    fn len(&self) -> io::Result<u64> {
        match self {
            Spool::Memory(m) => Ok(m.len() as u64),
            Spool::File(f) => Ok(f.metadata()?.len()),
        }
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        match self {
            Spool::Memory(m) => {
                let start = (at as usize).min(m.len());
                let n = buf.len().min(m.len() - start);
                buf[..n].copy_from_slice(&m[start..start + n]);
                Ok(n)
            }
            Spool::File(f) => f.read_at(buf, at),
        }
    }
}

/// A range of a [`Spool`] as a reader of its own.
struct SpoolReader {
    spool: Spool,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.end.saturating_sub(self.pos).min(buf.len() as u64) as usize;
        let n = self.spool.read_at(&mut buf[..room], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SpoolReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

fn open_zip(
    mut input: Box<dyn Read + Send>,
    limits: &InputLimits,
) -> Result<ZipEntries, FeedError> {
    let spool = Spool::new(&mut input, limits.max_bytes)?;
    let end = spool.len()?;
    let mut archive = ZipArchive::new(SpoolReader {
        spool: spool.clone(),
        pos: 0,
        end,
    })
    .map_err(|e| FeedError::Archive(format!("zip: {e}")))?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| FeedError::Archive(format!("zip entry {i}: {e}")))?;
        if entry.is_file() {
            files.push(i);
        }
    }
    if files.is_empty() {
        return Err(FeedError::Archive("zip archive has no file entry".into()));
    }
    Ok(ZipEntries {
        archive,
        spool,
        limits: limits.clone(),
        files,
        next: 0,
        current: None,
    })
}

/// Reads the file entries of a zip archive one after another, each as a
/// stream (without its BOM, and ended by a line end).
struct ZipEntries {
    archive: ZipArchive<SpoolReader>,
    spool: Spool,
    limits: InputLimits,
    files: Vec<usize>,
    next: usize,
    current: Option<Entry>,
}

/// One zip entry being read.
struct Entry {
    data: Bounded<CrcReader<Box<dyn Read + Send>>>,
    crc: u32,
    size: u64,
    /// Whether the BOM check is done.
    started: bool,
    /// Bytes read ahead for the BOM check, not yet given out.
    ahead: Vec<u8>,
    /// The last byte given out.
    last: Option<u8>,
}

impl ZipEntries {
    fn open(&mut self, index: usize) -> io::Result<Entry> {
        let fail = |e: zip::result::ZipError| archive_error(format!("zip entry {index}: {e}"));
        let entry = self.archive.by_index_raw(index).map_err(fail)?;
        let what = format!(
            "zip entry {index} ({:?})",
            entry.name().unwrap_or("?".into())
        );
        if entry.encrypted() {
            return Err(archive_error(format!("{what}: encrypted")));
        }
        let start = entry
            .data_start()
            .ok_or_else(|| archive_error(format!("{what}: no data offset")))?;
        let (method, crc, size) = (entry.compression(), entry.crc32(), entry.size());
        let compressed = Arc::new(AtomicU64::new(0));
        let raw = Counted {
            inner: SpoolReader {
                spool: self.spool.clone(),
                pos: start,
                end: start.saturating_add(entry.compressed_size()),
            },
            count: compressed.clone(),
        };
        let decoded: Box<dyn Read + Send> = match method {
            CompressionMethod::Stored => Box::new(raw),
            CompressionMethod::Deflated => Box::new(ArchiveErrors {
                inner: DeflateDecoder::new(raw),
                what: "zip deflate",
            }),
            other => {
                return Err(archive_error(format!(
                    "{what}: compression method {other} is not supported (only stored and deflated)"
                )));
            }
        };
        Ok(Entry {
            data: Bounded::entry(what, CrcReader::new(decoded), compressed, &self.limits),
            crc,
            size,
            started: false,
            ahead: Vec::new(),
            last: None,
        })
    }
}

impl Read for ZipEntries {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(entry) = &mut self.current else {
                let Some(&index) = self.files.get(self.next) else {
                    return Ok(0);
                };
                self.next += 1;
                self.current = Some(self.open(index)?);
                continue;
            };
            if !entry.started {
                // Read far enough to see a BOM, then drop it.
                while entry.ahead.len() < UTF8_BOM.len() {
                    let mut b = [0u8; 3];
                    let want = UTF8_BOM.len() - entry.ahead.len();
                    match entry.data.read(&mut b[..want])? {
                        0 => break,
                        n => entry.ahead.extend_from_slice(&b[..n]),
                    }
                }
                if entry.ahead == UTF8_BOM {
                    entry.ahead.clear();
                }
                entry.started = true;
            }
            let n = if !entry.ahead.is_empty() {
                let n = entry.ahead.len().min(buf.len());
                buf[..n].copy_from_slice(&entry.ahead[..n]);
                entry.ahead.drain(..n);
                n
            } else {
                entry.data.read(buf)?
            };
            if n > 0 {
                entry.last = Some(buf[n - 1]);
                return Ok(n);
            }
            // The entry's end: check it, and keep its last line from
            // running into the next entry's first.
            let crc = entry.data.inner.crc();
            if crc.sum() != entry.crc || u64::from(crc.amount()) != entry.size & 0xffff_ffff {
                return Err(archive_error(format!(
                    "{}: CRC or size does not match the data",
                    entry.data.what
                )));
            }
            let unterminated = entry.last.is_some_and(|b| b != b'\n');
            self.current = None;
            if unterminated {
                buf[0] = b'\n';
                return Ok(1);
            }
        }
    }
}

/// Counts the bytes read through it (the compressed side of a decoder).
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Refuses to read past a bound, or (for decompressed data) to expand too
/// far past what was read of the compressed side.
struct Bounded<R> {
    inner: R,
    what: String,
    read: u64,
    max: u64,
    /// The `[input]` key that sets `max`, for the message.
    max_key: &'static str,
    compressed: Option<Arc<AtomicU64>>,
    max_expansion: u64,
}

impl<R> Bounded<R> {
    /// A gzip stream or zip entry: bounded by `max_entry_bytes` and `max_expansion`.
    fn entry(what: String, inner: R, compressed: Arc<AtomicU64>, limits: &InputLimits) -> Self {
        Bounded {
            inner,
            what,
            read: 0,
            max: limits.max_entry_bytes,
            max_key: "max_entry_bytes",
            compressed: Some(compressed),
            max_expansion: limits.max_expansion,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte more than the bound is let through to the check, so that
        // an input of exactly the bound passes.
        let room = self.max.saturating_sub(self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(refused(format!(
                "{}: more than {} bytes after decompression (input.{})",
                self.what, self.max, self.max_key
            )));
        }
        if let Some(c) = &self.compressed
            && self.max_expansion > 0
            && self.read > EXPANSION_GRACE
        {
            let compressed = c.load(Ordering::Relaxed).max(1);
            if self.read / compressed >= self.max_expansion {
                return Err(refused(format!(
                    "{}: {compressed} compressed bytes expand to more than {} ({} times or more; input.max_expansion): a compression bomb",
                    self.what, self.read, self.max_expansion
                )));
            }
        }
        Ok(n)
    }
}

/// Marks errors of a decoder as archive errors: data that does not decode
/// is a broken archive, not a failed read.
struct ArchiveErrors<R> {
    inner: R,
    what: &'static str,
}

impl<R: Read> Read for ArchiveErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| match e.kind() {
            _ if e.get_ref().is_some_and(|i| i.is::<InputError>()) => e,
            io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof => archive_error(format!("{}: {e}", self.what)),
            _ => e,
        })
    }
}

/// A problem of the input met while reading (a broken archive, a bound
/// crossed), carried inside an `io::Error` so that [`FeedError::from_io`]
/// can turn it back into [`FeedError::Archive`] or [`FeedError::Refused`].
#[derive(Debug)]
pub(crate) enum InputError {
    Archive(String),
    Refused(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Archive(m) | InputError::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for InputError {}

impl From<InputError> for FeedError {
    fn from(e: InputError) -> FeedError {
        match e {
            InputError::Archive(m) => FeedError::Archive(m),
            InputError::Refused(m) => FeedError::Refused(m),
        }
    }
}

fn archive_error(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, InputError::Archive(msg))
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, InputError::Refused(msg))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(bytes: Vec<u8>) -> Result<Vec<u8>, FeedError> {
        let mut r = open_input(Box::new(Cursor::new(bytes)), &InputLimits::default())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(FeedError::from_io)?;
        Ok(out)
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub(crate) fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, opts).unwrap();
            } else {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn plain_passes_through() {
        assert_eq!(read_all(b"abc\n".to_vec()).unwrap(), b"abc\n");
        assert_eq!(read_all(Vec::new()).unwrap(), b"");
        assert_eq!(read_all(b"P".to_vec()).unwrap(), b"P");
    }

    #[test]
    fn gzip_members_are_concatenated() {
        let mut two = gzip(b"a\n");
        two.extend(gzip(b"b\n"));
        assert_eq!(read_all(two).unwrap(), b"a\nb\n");
    }

    #[test]
    fn truncated_gzip_is_an_archive_error() {
        let mut g = gzip(&b"x".repeat(10_000));
        g.truncate(g.len() / 2);
        assert!(matches!(read_all(g), Err(FeedError::Archive(_))));
    }

    #[test]
    fn zip_entries_in_order() {
        let z = zip(&[
            ("d/", b""),
            ("a.txt", b"\xEF\xBB\xBFone"),
            ("b.txt", b"two\n"),
        ]);
        assert_eq!(read_all(z).unwrap(), b"one\ntwo\n");
    }

    #[test]
    fn zip_without_files_is_an_error() {
        let z = zip(&[("d/", b"")]);
        assert!(matches!(read_all(z), Err(FeedError::Archive(_))));
        assert!(matches!(
            read_all(b"PK\x03\x04garbage".to_vec()),
            Err(FeedError::Archive(_))
        ));
    }

    fn read_with(bytes: Vec<u8>, limits: &InputLimits) -> Result<u64, FeedError> {
        let mut r = open_input(Box::new(Cursor::new(bytes)), limits)?;
        io::copy(&mut r, &mut io::sink()).map_err(FeedError::from_io)
    }

    /// Zeros compress about a thousand times: what a bomb is made of.
    fn zeros(n: usize) -> Vec<u8> {
        vec![0u8; n]
    }

    #[test]
    fn a_gzip_bomb_is_refused_by_its_expansion() {
        let bomb = gzip(&zeros(64 << 20));
        match read_with(bomb.clone(), &InputLimits::default()) {
            Err(FeedError::Refused(m)) => {
                assert!(m.contains("gzip") && m.contains("compression bomb"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // Without the expansion bound, the bytes bound holds.
        let limits = InputLimits {
            max_expansion: 0,
            max_entry_bytes: 1 << 20,
            ..InputLimits::default()
        };
        match read_with(bomb, &limits) {
            Err(FeedError::Refused(m)) => assert!(m.contains("max_entry_bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_zip_bomb_is_refused_by_its_expansion() {
        let z = zip(&[("a.csv", b"ok\n"), ("bomb.csv", &zeros(64 << 20))]);
        match read_with(z, &InputLimits::default()) {
            Err(FeedError::Refused(m)) => {
                assert!(m.contains("zip entry 1 (\"bomb.csv\")"), "{m}");
                assert!(m.contains("compression bomb"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_total_bound_counts_every_entry() {
        let z = zip(&[("a", &[b'x'; 600]), ("b", &[b'y'; 600])]);
        let limits = InputLimits {
            max_bytes: 1000,
            ..InputLimits::default()
        };
        match read_with(z, &limits) {
            Err(FeedError::Refused(m)) => assert!(m.contains("input.max_bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Exactly the bound passes.
        let limits = InputLimits {
            max_bytes: 4,
            ..InputLimits::default()
        };
        assert_eq!(read_with(b"abcd".to_vec(), &limits).unwrap(), 4);
        assert!(matches!(
            read_with(b"abcde".to_vec(), &limits),
            Err(FeedError::Refused(_))
        ));
    }

    #[test]
    fn a_large_zip_is_spooled_and_read_as_a_stream() {
        // Stored (not deflated) and larger than what is held in memory.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut data = Vec::new();
        while data.len() <= ZIP_IN_MEMORY + 1000 {
            data.extend_from_slice(format!("line {}\n", data.len()).as_bytes());
        }
        w.start_file("big.txt", opts).unwrap();
        w.write_all(&data).unwrap();
        w.start_file("small.txt", opts).unwrap();
        w.write_all(b"end").unwrap();
        let z = w.finish().unwrap().into_inner();
        let mut want = data.clone();
        want.extend_from_slice(b"end\n");
        assert_eq!(read_all(z).unwrap(), want);
    }

    #[test]
    fn a_zip_entry_whose_data_does_not_match_its_crc_is_an_archive_error() {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("a.txt", opts).unwrap();
        w.write_all(b"evil.example\n").unwrap();
        let mut z = w.finish().unwrap().into_inner();
        let at = z.windows(4).position(|w| w == b"evil").unwrap();
        z[at] = b'd';
        match read_all(z) {
            Err(FeedError::Archive(m)) => assert!(m.contains("CRC"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
