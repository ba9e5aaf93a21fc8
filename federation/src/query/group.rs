//! Group assignment: each selected row's group keys packed into one integer and mapped to a dense
//! group number, through a direct table when the packed key space is small, an open-addressing
//! hash table when it fits 63 bits, and a general hash map of key vectors otherwise.

use std::collections::HashMap;

use super::kernel::Domain;
use super::semantics::NULL;

/// Packed keys of at most this many bits use a direct table (2^16 entries of 4 bytes).
const DENSE_KEY_BITS_MAX: u32 = 16;
/// Packed keys of at most this many bits use the open-addressing table.
const PACKED_KEY_BITS_MAX: u32 = 63;
const NO_GROUP: u32 = u32::MAX;

/// How one key's values pack into a few bits.
#[derive(Clone, Copy, Debug)]
struct KeyCoding {
    offset: i64,
    null_code: u64,
    bits: u32,
}

impl KeyCoding {
    fn new(domain: Domain) -> KeyCoding {
        let values = (i128::from(domain.max) - i128::from(domain.min) + 1).max(1);
        let codes = values + i128::from(domain.nullable);
        let bits = 128 - (codes - 1).leading_zeros();
        KeyCoding {
            offset: domain.min,
            null_code: values.min(i128::from(u64::MAX)) as u64,
            bits,
        }
    }

    #[inline]
    fn encode(self, value: i64) -> u64 {
        if value == NULL {
            self.null_code
        } else {
            value.wrapping_sub(self.offset) as u64
        }
    }
}

/// Open addressing with linear probing over packed keys.
struct PackedTable {
    keys: Vec<u64>,
    groups: Vec<u32>,
    shift: u32,
    len: usize,
}

impl PackedTable {
    fn new() -> PackedTable {
        let capacity_bits = 10;
        PackedTable {
            keys: vec![0; 1 << capacity_bits],
            groups: vec![NO_GROUP; 1 << capacity_bits],
            shift: 64 - capacity_bits,
            len: 0,
        }
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The group of `key`, or `None` when it has none yet.
    #[inline]
    fn find(&self, key: u64) -> Result<u32, usize> {
        let mask = self.keys.len() - 1;
        let mut slot = self.slot(key);
        loop {
            let group = self.groups[slot];
            if group == NO_GROUP {
                return Err(slot);
            }
            if self.keys[slot] == key {
                return Ok(group);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn insert(&mut self, key: u64, group: u32) {
        if (self.len + 1) * 2 > self.keys.len() {
            self.grow();
        }
        if let Err(slot) = self.find(key) {
            self.keys[slot] = key;
            self.groups[slot] = group;
            self.len += 1;
        }
    }

    fn grow(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        let groups = std::mem::take(&mut self.groups);
        let capacity = keys.len() * 2;
        self.keys = vec![0; capacity];
        self.groups = vec![NO_GROUP; capacity];
        self.shift -= 1;
        for (key, group) in keys.into_iter().zip(groups) {
            if group != NO_GROUP {
                if let Err(slot) = self.find(key) {
                    self.keys[slot] = key;
                    self.groups[slot] = group;
                }
            }
        }
    }
}

enum Index {
    /// No keys: one group.
    Single,
    Dense(Vec<u32>),
    Packed(PackedTable),
    Wide(HashMap<Vec<i64>, u32>),
}

/// The groups found so far and the key values of each.
pub(crate) struct Groups {
    codings: Vec<KeyCoding>,
    index: Index,
    /// `groups × keys` values, group-major.
    pub(crate) key_values: Vec<i64>,
    /// Rows per group (COUNT(*)).
    pub(crate) rows: Vec<u64>,
    packed: Vec<u64>,
    wide_key: Vec<i64>,
}

impl Groups {
    pub(crate) fn new(domains: &[Domain]) -> Groups {
        let codings: Vec<KeyCoding> = domains
            .iter()
            .map(|domain| KeyCoding::new(*domain))
            .collect();
        let bits: u32 = codings.iter().map(|coding| coding.bits).sum();
        let index = if codings.is_empty() {
            Index::Single
        } else if bits <= DENSE_KEY_BITS_MAX {
            Index::Dense(vec![NO_GROUP; 1 << bits])
        } else if bits <= PACKED_KEY_BITS_MAX {
            Index::Packed(PackedTable::new())
        } else {
            Index::Wide(HashMap::new())
        };
        let rows = if codings.is_empty() {
            vec![0]
        } else {
            Vec::new()
        };
        Groups {
            codings,
            index,
            key_values: Vec::new(),
            rows,
            packed: Vec::new(),
            wide_key: Vec::new(),
        }
    }

    /// How many groups there are.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Sets `group_of[i]` to the group of the row `selection[i]` (a chunk offset), creating groups
    /// as needed; `keys[k]` holds the chunk's values of key `k`.
    pub(crate) fn assign(&mut self, keys: &[&[i64]], selection: &[u32], group_of: &mut Vec<u32>) {
        group_of.clear();
        group_of.resize(selection.len(), 0);
        let Groups {
            codings,
            index,
            key_values,
            rows,
            packed,
            wide_key,
        } = self;
        if let Index::Single = index {
            rows[0] += selection.len() as u64;
            return;
        }
        if let Index::Wide(map) = index {
            assign_wide(map, wide_key, key_values, rows, keys, selection, group_of);
            return;
        }
        packed.clear();
        packed.resize(selection.len(), 0);
        for (coding, values) in codings.iter().zip(keys) {
            for (packed, row) in packed.iter_mut().zip(selection) {
                *packed = (*packed << coding.bits) | coding.encode(values[*row as usize]);
            }
        }
        let mut new_group = |position: usize| -> u32 {
            let group = rows.len() as u32;
            let row = selection[position] as usize;
            key_values.extend(keys.iter().map(|values| values[row]));
            rows.push(0);
            group
        };
        match index {
            Index::Dense(table) => {
                for (position, (packed, group_out)) in
                    packed.iter().zip(group_of.iter_mut()).enumerate()
                {
                    let slot = &mut table[*packed as usize];
                    if *slot == NO_GROUP {
                        *slot = new_group(position);
                    }
                    *group_out = *slot;
                }
            }
            Index::Packed(table) => {
                for (position, (packed, group_out)) in
                    packed.iter().zip(group_of.iter_mut()).enumerate()
                {
                    *group_out = match table.find(*packed) {
                        Ok(group) => group,
                        Err(_) => {
                            let group = new_group(position);
                            table.insert(*packed, group);
                            group
                        }
                    };
                }
            }
            Index::Single | Index::Wide(_) => {}
        }
        for group in group_of.iter() {
            rows[*group as usize] += 1;
        }
    }
}

fn assign_wide(
    map: &mut HashMap<Vec<i64>, u32>,
    wide_key: &mut Vec<i64>,
    key_values: &mut Vec<i64>,
    rows: &mut Vec<u64>,
    keys: &[&[i64]],
    selection: &[u32],
    group_of: &mut [u32],
) {
    for (row, group_out) in selection.iter().zip(group_of.iter_mut()) {
        wide_key.clear();
        wide_key.extend(keys.iter().map(|values| values[*row as usize]));
        let group = match map.get(wide_key.as_slice()) {
            Some(group) => *group,
            None => {
                let group = rows.len() as u32;
                map.insert(wide_key.clone(), group);
                key_values.extend_from_slice(wide_key);
                rows.push(0);
                group
            }
        };
        rows[group as usize] += 1;
        *group_out = group;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(min: i64, max: i64, nullable: bool) -> Domain {
        Domain { min, max, nullable }
    }

    #[test]
    fn codings_use_the_fewest_bits() {
        assert_eq!(KeyCoding::new(domain(0, 12, false)).bits, 4);
        assert_eq!(KeyCoding::new(domain(0, 15, false)).bits, 4);
        assert_eq!(KeyCoding::new(domain(0, 15, true)).bits, 5);
        assert_eq!(KeyCoding::new(domain(0, 0, false)).bits, 0);
        assert_eq!(KeyCoding::new(domain(0, 1, false)).bits, 1);
        assert_eq!(KeyCoding::new(domain(NULL + 1, i64::MAX, false)).bits, 64);
    }

    #[test]
    fn every_index_finds_the_same_groups() {
        let values: Vec<i64> = (0..5000).map(|row| (row * 7919) % 301).collect();
        let other: Vec<i64> = (0..5000)
            .map(|row| if row % 11 == 0 { NULL } else { row % 3 })
            .collect();
        let selection: Vec<u32> = (0..5000).filter(|row| row % 5 != 0).collect();
        let mut answers = Vec::new();
        for first in [
            domain(0, 300, false),
            domain(-1_000_000, 1_000_000_000, false),
            domain(NULL + 1, i64::MAX, false),
        ] {
            let mut groups = Groups::new(&[first, domain(0, 2, true)]);
            let mut group_of = Vec::new();
            groups.assign(&[&values, &other], &selection, &mut group_of);
            let mut found: Vec<(i64, i64, u64)> = (0..groups.len())
                .map(|group| {
                    (
                        groups.key_values[group * 2],
                        groups.key_values[group * 2 + 1],
                        groups.rows[group],
                    )
                })
                .collect();
            found.sort_unstable();
            for (position, row) in selection.iter().enumerate() {
                let group = group_of[position] as usize;
                assert_eq!(groups.key_values[group * 2], values[*row as usize]);
                assert_eq!(groups.key_values[group * 2 + 1], other[*row as usize]);
            }
            answers.push(found);
        }
        assert_eq!(answers[0], answers[1]);
        assert_eq!(answers[0], answers[2]);
    }
}
