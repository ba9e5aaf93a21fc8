//! Fuzz target: `wire::decode` never panics, and whatever it accepts re-encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tiermesh_federation::wire;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(message) = wire::decode(bytes) {
        let again = wire::encode(&message).expect("a decoded message encodes");
        assert_eq!(again, bytes, "decode accepted a non-canonical encoding");
    }
});
