//! Opening an input: gzip and zip are recognized by their first bytes, not
//! by a file name, because feeds are fetched from URLs and read from stdin.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use flate2::read::MultiGzDecoder;
use zip::ZipArchive;

use crate::FeedError;
use crate::common::UTF8_BOM;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Wraps a raw input, decompressing gzip and zip by their magic bytes.
///
/// * gzip (`1f 8b`): decoded as a stream; several members are read one
///   after another, as `cat a.gz b.gz` makes them.
/// * zip (`PK\x03\x04`): read into memory, then every file entry in archive
///   order, as one stream (a line end is added between entries that lack
///   one, and each entry's UTF-8 BOM is dropped). A zip without any file
///   entry is [`FeedError::Archive`].
/// * anything else passes through unchanged (a leading BOM is left for
///   [`crate::parse`], which drops it).
///
/// Corrupt compressed data found later, while reading, comes out of the
/// parsers as [`FeedError::Archive`] as well.
pub fn open_input(mut input: Box<dyn Read + Send>) -> Result<Box<dyn BufRead + Send>, FeedError> {
    let mut magic = Vec::with_capacity(4);
    (&mut input).take(4).read_to_end(&mut magic)?;
    let whole: Box<dyn Read + Send> = Box::new(Cursor::new(magic.clone()).chain(input));
    if magic.starts_with(ZIP_MAGIC) {
        return open_zip(whole);
    }
    if magic.starts_with(GZIP_MAGIC) {
        let gz = ArchiveErrors {
            inner: MultiGzDecoder::new(whole),
            what: "gzip",
        };
        return Ok(Box::new(BufReader::with_capacity(64 * 1024, gz)));
    }
    Ok(Box::new(BufReader::with_capacity(64 * 1024, whole)))
}

fn open_zip(mut input: Box<dyn Read + Send>) -> Result<Box<dyn BufRead + Send>, FeedError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let mut archive =
        ZipArchive::new(Cursor::new(bytes)).map_err(|e| FeedError::Archive(format!("zip: {e}")))?;
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
    Ok(Box::new(BufReader::with_capacity(
        64 * 1024,
        ZipEntries {
            archive,
            files,
            next: 0,
            current: Cursor::new(Vec::new()),
        },
    )))
}

/// Reads the file entries of a zip archive one after another, holding one
/// decompressed entry in memory at a time.
struct ZipEntries {
    archive: ZipArchive<Cursor<Vec<u8>>>,
    files: Vec<usize>,
    next: usize,
    current: Cursor<Vec<u8>>,
}

impl Read for ZipEntries {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(&index) = self.files.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            let mut data = Vec::new();
            self.archive
                .by_index(index)
                .and_then(|mut entry| Ok(entry.read_to_end(&mut data)?))
                .map_err(|e| archive_error(format!("zip entry {index}: {e}")))?;
            if data.starts_with(UTF8_BOM) {
                data.drain(..UTF8_BOM.len());
            }
            // Keep the last line of one entry from running into the next.
            if !data.is_empty() && !data.ends_with(b"\n") {
                data.push(b'\n');
            }
            self.current = Cursor::new(data);
        }
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
            io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof => archive_error(format!("{}: {e}", self.what)),
            _ => e,
        })
    }
}

/// An archive problem met while reading, carried inside an `io::Error` so
/// that [`FeedError::from_io`] can turn it back into [`FeedError::Archive`].
#[derive(Debug)]
pub(crate) struct ArchiveError(pub(crate) String);

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArchiveError {}

fn archive_error(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ArchiveError(msg))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(bytes: Vec<u8>) -> Result<Vec<u8>, FeedError> {
        let mut r = open_input(Box::new(Cursor::new(bytes)))?;
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
}
