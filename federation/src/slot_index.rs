//! The image's indexes from a row's key (a household id, a packed ID number) to its slot: an
//! open-addressing table with linear probing.
//!
//! Why not a `HashMap`: hashbrown keeps its control bytes and its entries in different parts of
//! its memory, so looking up or inserting a key touches two cache lines, and inserting a key that
//! is not there writes an entry line that nothing has read yet. Over ten million persons every
//! such line is a miss, and an import's writer waited on one for every row. Here a key and its
//! slot share one 12-byte entry, the entries a key probes follow its home entry, and reading
//! that home entry ahead of time ([`SlotIndex::warm`]) makes the later lookup or insert hit the
//! cache.

/// A map from `u64` keys to `u32` slots.
#[derive(Clone, Debug, Default)]
pub struct SlotIndex {
    /// Key low half, key high half, slot; `FREE` where no key is. A power-of-two count of
    /// entries, or none at all before the first insert.
    entries: Vec<[u32; 3]>,
    /// Keys held in `entries`.
    len: usize,
    /// The slot of the key `u64::MAX`, the one key an entry cannot hold (it marks free entries).
    max_key: Option<u32>,
}

const FREE: [u32; 3] = [u32::MAX, u32::MAX, 0];

/// Entries a table of `entries` may fill: three quarters, so that a probe for an absent key
/// reads about seven entries, most often within one cache line.
fn room(entries: usize) -> usize {
    entries - entries / 4
}

fn key_of(entry: &[u32; 3]) -> u64 {
    u64::from(entry[0]) | (u64::from(entry[1]) << 32)
}

fn entry(key: u64, slot: u32) -> [u32; 3] {
    [key as u32, (key >> 32) as u32, slot]
}

/// Spreads a key over all bits (the finaliser of SplitMix64): the keys are structured numbers
/// whose low bits alone would crowd some entries. The keys come from validated rows, not from a
/// peer choosing collisions.
fn mix(key: u64) -> u64 {
    let mut z = key;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SlotIndex {
    /// An empty index.
    pub fn new() -> SlotIndex {
        SlotIndex::default()
    }

    /// An empty index that holds `keys` keys without growing. All of its memory is written here,
    /// so that inserts into it never wait for the system to provide a fresh page.
    pub fn with_capacity(keys: usize) -> SlotIndex {
        let mut index = SlotIndex::new();
        index.reserve(keys);
        index
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len + usize::from(self.max_key.is_some())
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys the index holds without growing.
    pub fn capacity(&self) -> usize {
        room(self.entries.len())
    }

    /// Makes room for `additional` more keys.
    pub fn reserve(&mut self, additional: usize) {
        let needed = self.len.saturating_add(additional);
        if needed <= self.capacity() {
            return;
        }
        let mut entries = self.entries.len().max(8);
        while room(entries) < needed {
            entries = entries.checked_mul(2).expect("index larger than memory");
        }
        let old = std::mem::replace(&mut self.entries, vec![FREE; entries]);
        for item in old.iter().filter(|item| **item != FREE) {
            match self.find(key_of(item)) {
                Ok(_) => unreachable!("a key held twice"),
                Err(free) => self.entries[free] = *item,
            }
        }
    }

    fn home(&self, key: u64) -> usize {
        (mix(key) as usize) & (self.entries.len() - 1)
    }

    /// The entry holding `key`, or else the free entry where it would go. The table has entries
    /// and at least a quarter of them are free.
    fn find(&self, key: u64) -> Result<usize, usize> {
        let mask = self.entries.len() - 1;
        let mut at = self.home(key);
        loop {
            let item = &self.entries[at];
            if *item == FREE {
                return Err(at);
            }
            if key_of(item) == key {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// The slot of `key`.
    pub fn get(&self, key: u64) -> Option<u32> {
        if key == u64::MAX {
            return self.max_key;
        }
        if self.entries.is_empty() {
            return None;
        }
        self.find(key).ok().map(|at| self.entries[at][2])
    }

    /// True when `key` is held.
    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// The slot of `key` when it is held (which stays); otherwise inserts `key` with `slot` and
    /// returns `None`.
    pub fn get_or_insert(&mut self, key: u64, slot: u32) -> Option<u32> {
        if key == u64::MAX {
            return match self.max_key {
                Some(held) => Some(held),
                None => {
                    self.max_key = Some(slot);
                    None
                }
            };
        }
        if self.len >= self.capacity() {
            self.reserve(1);
        }
        match self.find(key) {
            Ok(at) => Some(self.entries[at][2]),
            Err(at) => {
                self.entries[at] = entry(key, slot);
                self.len += 1;
                None
            }
        }
    }

    /// Removes `key`; returns its slot.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        if key == u64::MAX {
            return self.max_key.take();
        }
        if self.entries.is_empty() {
            return None;
        }
        let mut hole = self.find(key).ok()?;
        let slot = self.entries[hole][2];
        // Backward shift: every later key of the run whose probe passes the hole moves into it,
        // so that no probe ever stops early at a free entry.
        let mask = self.entries.len() - 1;
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let item = self.entries[at];
            if item == FREE {
                break;
            }
            let home = self.home(key_of(&item));
            if (at.wrapping_sub(home) & mask) >= (at.wrapping_sub(hole) & mask) {
                self.entries[hole] = item;
                hole = at;
            }
        }
        self.entries[hole] = FREE;
        self.len -= 1;
        Some(slot)
    }

    /// Reads the entry where a probe for `key` starts, so that it is in the cache when `key` is
    /// looked up or inserted soon after. Independent reads of many keys overlap in the processor,
    /// where the lookups and inserts of a writer wait on each other.
    pub fn warm(&self, key: u64) {
        if !self.entries.is_empty() {
            std::hint::black_box(self.entries[self.home(key)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        Get(u64),
        Reserve(usize),
    }

    /// Keys from a small range collide and form long runs; `u64::MAX` and its neighbours are in.
    fn key() -> impl Strategy<Value = u64> {
        prop_oneof![0..64u64, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>(),]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (key(), any::<u32>()).prop_map(|(key, slot)| Op::Insert(key, slot)),
            3 => key().prop_map(Op::Remove),
            2 => key().prop_map(Op::Get),
            1 => (0..200usize).prop_map(Op::Reserve),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut index = SlotIndex::new();
            let mut model: HashMap<u64, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(key, slot) => {
                        let held = model.get(&key).copied();
                        prop_assert_eq!(index.get_or_insert(key, slot), held);
                        model.entry(key).or_insert(slot);
                    }
                    Op::Remove(key) => prop_assert_eq!(index.remove(key), model.remove(&key)),
                    Op::Get(key) => {
                        index.warm(key);
                        prop_assert_eq!(index.get(key), model.get(&key).copied());
                    }
                    Op::Reserve(more) => {
                        index.reserve(more);
                        prop_assert!(index.capacity() >= index.len + more);
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert!(index.len <= index.capacity());
            }
            for (key, slot) in &model {
                prop_assert_eq!(index.get(*key), Some(*slot));
            }
        }
    }

    #[test]
    fn with_capacity_holds_that_many_without_growing() {
        let mut index = SlotIndex::with_capacity(1000);
        let entries = index.entries.len();
        assert!(index.capacity() >= 1000);
        for key in 0..1000u64 {
            assert_eq!(index.get_or_insert(key * 7919, key as u32), None);
        }
        assert_eq!(index.entries.len(), entries);
        assert_eq!(index.len(), 1000);
    }

    #[test]
    fn removing_from_a_run_keeps_every_other_key_reachable() {
        let mut index = SlotIndex::with_capacity(6);
        // Eight entries; these keys share home entries, so they form one run that wraps around.
        let keys: Vec<u64> = (0..).filter(|key| index.home(*key) >= 6).take(6).collect();
        for (slot, key) in keys.iter().enumerate() {
            index.get_or_insert(*key, slot as u32);
        }
        for (removed, key) in keys.iter().enumerate() {
            assert_eq!(index.remove(*key), Some(removed as u32));
            for (slot, other) in keys.iter().enumerate().skip(removed + 1) {
                assert_eq!(index.get(*other), Some(slot as u32), "key {other}");
            }
        }
        assert!(index.is_empty());
    }
}
