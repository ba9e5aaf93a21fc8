//! The property of the `grant_decode` fuzz target, shared with the corpus replay in
//! `federation/tests/fuzz_corpus.rs` (both include this file with `#[path]`).

use tiermesh_federation::grant::{self, Grant, GRANT_BYTES_MAX};
use tiermesh_federation::meta::MetaState;

/// A fixed clock for `verify`: 2026-06-30T00:00:00Z in unix seconds.
const NOW_SECONDS: u64 = 1_782_777_600;

/// `Grant::decode` never panics; a grant it accepts is within its bounds, re-encodes to exactly
/// the input (the encoding is canonical: fixed-width bincode, no trailing bytes, sorted lists), and
/// `verify` does not panic on it.
pub fn check(bytes: &[u8]) {
    let Ok(grant) = Grant::decode(bytes) else {
        return;
    };
    assert!(
        bytes.len() <= GRANT_BYTES_MAX,
        "decode accepted {} bytes, over GRANT_BYTES_MAX",
        bytes.len()
    );
    assert!(
        (1..=grant::LINKS_MAX).contains(&grant.links.len()),
        "decode accepted a grant of {} links",
        grant.links.len()
    );
    assert_eq!(
        grant.encode(),
        bytes,
        "decode accepted a non-canonical encoding"
    );
    assert_eq!(grant.ids().len(), grant.links.len());
    let _ = grant.leaf();
    let _ = grant::verify(&grant, &MetaState::new(), NOW_SECONDS, &|_: &[u8; 16]| {
        false
    });
}
