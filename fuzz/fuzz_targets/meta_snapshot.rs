//! Fuzz target: `MetaState::from_snapshot` never panics, and whatever it accepts re-encodes to the
//! same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tiermesh_federation::meta::MetaState;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(state) = MetaState::from_snapshot(bytes) {
        assert_eq!(
            state.to_snapshot(),
            bytes,
            "from_snapshot accepted a non-canonical encoding"
        );
    }
});
