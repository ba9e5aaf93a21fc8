//! Fuzz target: `Grant::decode` never panics, and whatever it accepts re-encodes to the same bytes
//! (the property is in `checks/grant_decode.rs`, which the corpus replay test shares).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/grant_decode.rs"]
mod check;

fuzz_target!(|bytes: &[u8]| check::check(bytes));
