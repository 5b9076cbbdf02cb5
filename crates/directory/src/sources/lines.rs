//! Reading an input line by line, in constant memory.

use std::io::{self, BufRead};

use memchr::memchr;

/// Longest line kept; the bytes of a longer one are read and dropped, so
/// that a file without line ends cannot make a reader hold all of it.
pub(crate) const MAX_LINE: usize = 1 << 20;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`LineReader::read_line`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LineInfo {
    /// 1-based line number.
    pub no: u64,
    /// The line was longer than [`MAX_LINE`]; its text was dropped.
    pub too_long: bool,
}

/// Numbered lines of an input, without their `\n` / `\r\n` ends, with a
/// leading UTF-8 byte-order mark removed.
pub(crate) struct LineReader<R> {
    inner: R,
    next_no: u64,
    at_start: bool,
}

impl<R: BufRead> LineReader<R> {
    /// Reads `inner` from its start: lines are numbered from 1.
    pub(crate) fn new(inner: R) -> Self {
        LineReader {
            inner,
            next_no: 1,
            at_start: true,
        }
    }

    /// Reads the next line into `buf` (cleared first). `None` at the end of
    /// the input.
    pub(crate) fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineInfo>> {
        buf.clear();
        let mut read_any = false;
        let mut too_long = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            read_any = true;
            let (len, used, done) = match memchr(b'\n', avail) {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            if !too_long && buf.len() + len <= MAX_LINE {
                buf.extend_from_slice(&avail[..len]);
            } else {
                too_long = true;
            }
            self.inner.consume(used);
            if done {
                break;
            }
        }
        if !read_any {
            return Ok(None);
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if too_long {
            buf.clear();
        }
        if self.at_start {
            self.at_start = false;
            if buf.starts_with(UTF8_BOM) {
                buf.drain(..UTF8_BOM.len());
            }
        }
        let no = self.next_no;
        self.next_no += 1;
        Ok(Some(LineInfo { no, too_long }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(u64, String)> {
        let mut r = LineReader::new(input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(info) = r.read_line(&mut buf).unwrap() {
            out.push((info.no, String::from_utf8(buf.clone()).unwrap()));
        }
        out
    }

    #[test]
    fn line_ends_bom_and_last_line() {
        assert_eq!(
            lines(b"\xEF\xBB\xBFa\r\nb\n\nc"),
            vec![
                (1, "a".into()),
                (2, "b".into()),
                (3, "".into()),
                (4, "c".into()),
            ]
        );
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn long_lines_are_dropped_not_kept() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nok\n");
        let mut r = LineReader::new(&input[..]);
        let mut buf = Vec::new();
        let first = r.read_line(&mut buf).unwrap().unwrap();
        assert!(first.too_long && buf.is_empty());
        let second = r.read_line(&mut buf).unwrap().unwrap();
        assert_eq!((second.no, &buf[..]), (2, &b"ok"[..]));
    }
}
