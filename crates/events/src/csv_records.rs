//! CSV records with their raw bytes, each at most [`MAX_RECORD`] bytes.

use std::io::BufRead;

use crate::MAX_RECORD;

/// What [`CsvRecords::next_record`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Record,
    /// A record longer than [`MAX_RECORD`] (read to its end and dropped).
    TooLong,
    End,
}

/// CSV records with the bytes each was read from (the raw record), through
/// `csv-core`, which reports what it consumed; the `csv` crate's reader
/// does not give the raw line back.
pub(crate) struct CsvRecords {
    input: Box<dyn BufRead + Send>,
    reader: csv_core::Reader,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    n_ends: usize,
    raw: Vec<u8>,
}

impl CsvRecords {
    pub(crate) fn new(input: Box<dyn BufRead + Send>) -> CsvRecords {
        CsvRecords {
            input,
            reader: csv_core::Reader::new(),
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 64],
            n_ends: 0,
            raw: Vec::new(),
        }
    }

    /// Reads the next record. A longer one than [`MAX_RECORD`] is read
    /// to its end without keeping it (its fields and raw bytes are then
    /// empty).
    pub(crate) fn next_record(&mut self) -> std::io::Result<Next> {
        use csv_core::ReadRecordResult::*;
        self.out_len = 0;
        self.n_ends = 0;
        self.raw.clear();
        let mut long = false;
        loop {
            let buf = self.input.fill_buf()?;
            let (res, nin, nout, nend) = self.reader.read_record(
                buf,
                &mut self.out[self.out_len..],
                &mut self.ends[self.n_ends..],
            );
            if !long && self.raw.len() + nin > MAX_RECORD {
                long = true;
                self.raw = Vec::new();
            }
            if !long {
                self.raw.extend_from_slice(&buf[..nin]);
            }
            self.input.consume(nin);
            self.out_len += nout;
            self.n_ends += nend;
            match res {
                InputEmpty => {}
                // A long record's fields are dropped as they come.
                OutputFull | OutputEndsFull if long => {
                    self.out_len = 0;
                    self.n_ends = 0;
                }
                OutputFull => self.out.resize(self.out.len() * 2, 0),
                OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                Record if long => {
                    self.out_len = 0;
                    self.n_ends = 0;
                    self.out.truncate(4096);
                    self.out.shrink_to_fit();
                    self.ends.truncate(64);
                    self.ends.shrink_to_fit();
                    return Ok(Next::TooLong);
                }
                Record => {
                    while self.raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        self.raw.pop();
                    }
                    return Ok(Next::Record);
                }
                End => return Ok(Next::End),
            }
        }
    }

    pub(crate) fn fields(&self) -> usize {
        self.n_ends
    }

    pub(crate) fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }

    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }
}
