use std::io::{BufRead, Read};

use crate::FeedError;

/// Wraps a raw input, decompressing gzip and zip by their magic bytes.
pub fn open_input(input: Box<dyn Read + Send>) -> Result<Box<dyn BufRead + Send>, FeedError> {
    let _ = input;
    Err(FeedError::Invalid("not written yet".into()))
}
