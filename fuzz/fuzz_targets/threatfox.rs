#![no_main]

mod common;

use kanki_feeds::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::check(Format::Threatfox, data));
