#![no_main]

mod common;

use kanki_feeds::Format;
use libfuzzer_sys::fuzz_target;

// OpenPhish and plain lists share their line reader; both read every input.
fuzz_target!(|data: &[u8]| {
    common::check(Format::Openphish, data);
    common::check(Format::Plain, data);
});
