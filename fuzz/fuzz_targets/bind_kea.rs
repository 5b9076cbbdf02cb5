#![no_main]

mod bind_check;

use kanki_directory::BindingOrigin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bind_check::check(BindingOrigin::Kea, data));
