//! A fast hasher for the integer keys of the image and the import (household ids, packed ID
//! numbers). These keys come from validated rows, not from a network peer choosing collisions,
//! and SipHash's HashDoS resistance would cost a third of an import's time.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-xorshift hashing of integer writes; FNV-1a for byte writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher {
    state: u64,
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        let mixed = self.state ^ (self.state >> 29);
        mixed.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (mixed >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.state ^ 0xCBF2_9CE4_8422_2325;
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01B3);
        }
        self.state = hash;
    }

    fn write_u64(&mut self, value: u64) {
        self.state = (self.state.rotate_left(5) ^ value).wrapping_mul(MULTIPLIER);
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }
}

/// A `HashMap` with `FastHasher`.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with `FastHasher`.
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_work_and_spread_sequential_keys() {
        let mut map: FastMap<u64, u64> = FastMap::default();
        for key in 0..10_000u64 {
            map.insert(key * 10_000, key);
        }
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get(&(42 * 10_000)), Some(&42));
        let mut buckets = [0u32; 64];
        for key in 0..64_000u64 {
            let mut hasher = FastHasher::default();
            hasher.write_u64(key * 10_000);
            buckets[(hasher.finish() % 64) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|count| (700..1300).contains(count)),
            "{buckets:?}"
        );
    }
}
