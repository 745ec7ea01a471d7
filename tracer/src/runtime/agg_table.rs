//! Aggregation keys and the table of one aggregation's entries, laid out for folding
//! hundreds of thousands of keys a second (`@[probefunc, arg0]` makes a new key at nearly
//! every firing).
//!
//! An [`AggKey`] holds its values inline (up to two; longer keys spill to the heap) and the
//! hash of those values, computed once when the key is made. Strings in keys are shared
//! (`Arc<str>`): `probefunc` is the probe's own string, so equal keys usually hold the same
//! pointer and compare without reading the string.
//!
//! An [`AggTable`] keeps its entries in a vector, in the order they were added, and finds
//! them through a hash table of 8-byte slots (an entry's index and 32 bits of its hash).
//! Folding a partial table in therefore walks the partial's entries in memory order, reads
//! one entry of the big table per key it already holds (none for a new key, which is
//! appended), never hashes a key again (growing the table moves slots only) and frees
//! nothing per key.
//!
//! The key's hash is an implementation detail: equality, order and printing are those of
//! the key's values (`[Value]`), which [`AggKey`] dereferences to.

use std::hash::{Hash, Hasher};
use std::ops::Deref;

use hashbrown::HashTable;
use rustc_hash::FxHasher;
use smallvec::SmallVec;

use super::agg::AggValue;
use super::value::Value;

/// Key values an [`AggKey`] holds without a heap allocation.
const INLINE_VALUES: usize = 2;

/// The hash of a key's values (FxHash: fast and not keyed).
pub fn hash_values(values: &[Value]) -> u64 {
    let mut h = FxHasher::default();
    values.hash(&mut h);
    h.finish()
}

/// The key of an aggregation entry (empty for an unkeyed aggregation): its values and their
/// hash. Dereferences to the values; two keys are equal when their values are.
#[derive(Debug, Clone)]
pub struct AggKey {
    hash: u64,
    values: SmallVec<[Value; INLINE_VALUES]>,
}

impl AggKey {
    /// The key of `values`.
    pub fn new(values: impl IntoIterator<Item = Value>) -> AggKey {
        let values: SmallVec<[Value; INLINE_VALUES]> = values.into_iter().collect();
        AggKey {
            hash: hash_values(&values),
            values,
        }
    }

    /// A key from `values` whose hash, `hash`, is [`hash_values`] of them.
    fn with_hash(hash: u64, values: impl IntoIterator<Item = Value>) -> AggKey {
        AggKey {
            hash,
            values: values.into_iter().collect(),
        }
    }

    /// Whether this key's values are `values` (whose hash is `hash`).
    fn is(&self, hash: u64, values: &[Value]) -> bool {
        self.hash == hash && self.values.as_slice() == values
    }
}

impl Deref for AggKey {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        &self.values
    }
}

impl PartialEq for AggKey {
    fn eq(&self, other: &AggKey) -> bool {
        self.is(other.hash, &other.values)
    }
}

impl Eq for AggKey {}

impl From<Vec<Value>> for AggKey {
    fn from(values: Vec<Value>) -> AggKey {
        AggKey::new(values)
    }
}

/// Where an entry is: its index in the table's entries and the low 32 bits of its key's
/// hash (what finding and re-hashing compare without reading the entry).
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u32,
    index: u32,
}

/// The hash the index table files a slot under, from the 32 bits a slot keeps (repeated, so
/// that both the bits hashbrown picks a bucket with and those it tags the bucket with vary).
fn slot_hash(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

/// The 32 bits of `hash` a slot keeps.
fn short(hash: u64) -> u32 {
    hash as u32
}

/// One aggregation's entries: key to value.
///
/// The entries lie in a vector, in the order they were added; a hash table of 8-byte slots
/// (index and part of the hash) finds them. Adding an entry appends to the vector, and
/// growing the table moves slots only, so neither reads the entries already there; a lookup
/// reads one entry, the one whose hash matched.
#[derive(Debug, Clone, Default)]
pub struct AggTable {
    slots: HashTable<Slot>,
    entries: Vec<(AggKey, AggValue)>,
}

/// What [`AggTable::fold_entry`] did.
pub(crate) enum Folded<'a> {
    /// The value was merged into the entry with the same key.
    Merged,
    /// The entry was added.
    Added(&'a AggKey, &'a AggValue),
    /// The table holds `u32::MAX` entries already (hundreds of GB): the entry was dropped.
    Full,
}

impl AggTable {
    /// An empty table with room for `n` entries.
    pub fn with_capacity(n: usize) -> AggTable {
        AggTable {
            slots: HashTable::with_capacity(n),
            entries: Vec::with_capacity(n),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&AggKey, &AggValue)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The values, in the order their entries were added.
    pub fn values(&self) -> impl Iterator<Item = &AggValue> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The values, to change in place.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut AggValue> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// The index of the entry whose key is `key`, where `hash` is [`hash_values`] of `key`.
    fn find(&self, hash: u64, key: &[Value]) -> Option<usize> {
        let entries = &self.entries;
        let slot = self.slots.find(slot_hash(short(hash)), |s| {
            s.hash == short(hash)
                && entries
                    .get(s.index as usize)
                    .is_some_and(|(k, _)| k.is(hash, key))
        })?;
        Some(slot.index as usize)
    }

    /// The value of the entry whose key is `key`.
    pub fn get(&self, key: &[Value]) -> Option<&AggValue> {
        let i = self.find(hash_values(key), key)?;
        self.entries.get(i).map(|(_, v)| v)
    }

    /// The value of the entry whose key is `key`, where `hash` is [`hash_values`] of `key`.
    pub(crate) fn get_mut(&mut self, hash: u64, key: &[Value]) -> Option<&mut AggValue> {
        let i = self.find(hash, key)?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    /// Appends an entry whose key is in no slot yet; false if the table is full.
    fn push(&mut self, key: AggKey, value: AggValue) -> bool {
        let Ok(index) = u32::try_from(self.entries.len()) else {
            return false;
        };
        let hash = short(key.hash);
        self.slots
            .insert_unique(slot_hash(hash), Slot { hash, index }, |s| slot_hash(s.hash));
        self.entries.push((key, value));
        true
    }

    /// Adds an entry for `key`, which is not in the table (see [`AggTable::get_mut`]),
    /// taking its values out of `key`'s vector (which keeps its allocation). False if the
    /// table is full.
    pub(crate) fn insert_new(&mut self, hash: u64, key: &mut Vec<Value>, value: AggValue) -> bool {
        self.push(AggKey::with_hash(hash, key.drain(..)), value)
    }

    /// Folds the entry `key` = `value` in: merged into the entry with that key, or moved in
    /// as a new entry.
    pub(crate) fn fold_entry(&mut self, key: AggKey, value: AggValue) -> Folded<'_> {
        if let Some(i) = self.find(key.hash, &key) {
            if let Some((_, mine)) = self.entries.get_mut(i) {
                mine.merge(&value);
            }
            return Folded::Merged;
        }
        if !self.push(key, value) {
            return Folded::Full;
        }
        match self.entries.last() {
            Some((k, v)) => Folded::Added(k, v),
            None => Folded::Full,
        }
    }

    /// Removes the entry `key`, returning its value. The last entry takes its place.
    pub(crate) fn remove(&mut self, key: &AggKey) -> Option<AggValue> {
        let i = self.find(key.hash, key)?;
        let hash = short(key.hash);
        self.slots
            .find_entry(slot_hash(hash), |s| s.index as usize == i)
            .ok()?
            .remove();
        let (_, value) = self.entries.swap_remove(i);
        if let Some((moved, _)) = self.entries.get(i) {
            let last = self.entries.len();
            let moved = short(moved.hash);
            if let Some(s) = self
                .slots
                .find_mut(slot_hash(moved), |s| s.index as usize == last)
            {
                s.index = i as u32;
            }
        }
        Some(value)
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.entries.clear();
    }
}

impl PartialEq for AggTable {
    /// The same keys with the same values.
    fn eq(&self, other: &AggTable) -> bool {
        self.len() == other.len()
            && self.entries.iter().all(|(k, v)| {
                other
                    .find(k.hash, k)
                    .and_then(|i| other.entries.get(i))
                    .is_some_and(|(_, w)| w == v)
            })
    }
}

impl Eq for AggTable {}

impl IntoIterator for AggTable {
    type Item = (AggKey, AggValue);
    type IntoIter = std::vec::IntoIter<(AggKey, AggValue)>;

    /// The entries, moved out, in the order they were added.
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
#[path = "tests/agg_table.rs"]
mod tests;
