//! Aggregations: the per-key values of `count`, `sum`, `min`, `max`, `avg`, `quantize` and
//! `lquantize`, their folding, `clear`, `trunc` and DTrace's sort order.
//!
//! Each vCPU aggregates into its own [`AggSet`]; the consumer folds those partial sets into
//! its own with [`AggSet::fold`]. Folding is associative and commutative (sums add, minima
//! take the minimum, histograms add bucket-wise), so partials can be folded in any grouping
//! and order with the same result.
//!
//! `quantize` uses DTrace's 127 power-of-two buckets: bucket 63 holds 0, bucket `63 + k`
//! (k >= 1) holds `[2^(k-1), 2^k)`, and bucket `63 - k` holds `(-2^k, -2^(k-1)]`.
//! `lquantize(x, lo, hi, step)` has `(hi - lo) / step` buckets of width `step` from `lo`, one
//! for everything below `lo` and one for everything from `lo + levels * step` up.

use std::cmp::Ordering;

use super::agg_table::{hash_values, Folded};
pub use super::agg_table::{AggKey, AggTable};
use super::value::{compare_keys, Value};
use crate::lang::{AggFunc, Program};

/// Number of `quantize` buckets.
pub const QUANTIZE_BUCKETS: usize = 127;
/// Index of the `quantize` bucket holding 0.
pub const QUANTIZE_ZERO: usize = 63;

/// The value of one aggregation entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggValue {
    /// `count()`.
    Count(u64),
    /// `sum()` (wrapping).
    Sum(i64),
    /// `min()`; `None` after `clear()` until the next value.
    Min(Option<i64>),
    /// `max()`; `None` after `clear()` until the next value.
    Max(Option<i64>),
    /// `avg()`: the (wrapping) sum and the count.
    Avg {
        /// Sum of the values.
        sum: i64,
        /// Number of values.
        count: u64,
    },
    /// `quantize()`: counts per power-of-two bucket.
    Quantize(Box<[u64; QUANTIZE_BUCKETS]>),
    /// `lquantize()`: counts for the underflow bucket, each level, and the overflow bucket.
    Lquantize(Box<[u64]>),
}

/// The `quantize` bucket of `v`.
pub fn quantize_bucket(v: i64) -> usize {
    match v.cmp(&0) {
        Ordering::Equal => QUANTIZE_ZERO,
        // v >= 1: bucket 63 + (number of significant bits), capped at the last bucket.
        Ordering::Greater => {
            (QUANTIZE_ZERO + (64 - v.leading_zeros() as usize)).min(QUANTIZE_BUCKETS - 1)
        }
        // v <= -1: bucket 63 - (bits of |v|), capped at the first bucket.
        Ordering::Less => {
            let bits = 64 - v.unsigned_abs().leading_zeros() as usize;
            QUANTIZE_ZERO.saturating_sub(bits)
        }
    }
}

/// The lowest value of `quantize` bucket `i` (what DTrace prints in the value column).
pub fn quantize_bucket_value(i: usize) -> i64 {
    match i.cmp(&QUANTIZE_ZERO) {
        Ordering::Equal => 0,
        Ordering::Greater => 1i64 << (i - QUANTIZE_ZERO - 1).min(62),
        Ordering::Less => -(1i64 << (QUANTIZE_ZERO - 1 - i).min(62)),
    }
}

/// Number of linear levels of an `lquantize`.
pub fn lquantize_levels(lo: i64, hi: i64, step: i64) -> usize {
    if step <= 0 || hi <= lo {
        return 0;
    }
    usize::try_from((hi - lo) / step).unwrap_or(0)
}

/// The `lquantize` bucket of `v` (0: below `lo`; `levels + 1`: at or above the top).
pub fn lquantize_bucket(v: i64, lo: i64, step: i64, levels: usize) -> usize {
    if v < lo || step <= 0 {
        return 0;
    }
    let level = (i128::from(v) - i128::from(lo)) / i128::from(step);
    match usize::try_from(level) {
        Ok(l) if l < levels => l + 1,
        _ => levels + 1,
    }
}

impl AggValue {
    /// The empty value of `func`.
    pub fn new(func: AggFunc) -> AggValue {
        match func {
            AggFunc::Count => AggValue::Count(0),
            AggFunc::Sum => AggValue::Sum(0),
            AggFunc::Min => AggValue::Min(None),
            AggFunc::Max => AggValue::Max(None),
            AggFunc::Avg => AggValue::Avg { sum: 0, count: 0 },
            AggFunc::Quantize => AggValue::Quantize(Box::new([0; QUANTIZE_BUCKETS])),
            AggFunc::Lquantize { lo, hi, step } => {
                AggValue::Lquantize(vec![0; lquantize_levels(lo, hi, step) + 2].into_boxed_slice())
            }
        }
    }

    /// Adds one value (`func` is the aggregation's function, for `lquantize`'s bounds).
    pub fn add(&mut self, func: AggFunc, v: i64) {
        match self {
            AggValue::Count(c) => *c = c.wrapping_add(1),
            AggValue::Sum(s) => *s = s.wrapping_add(v),
            AggValue::Min(m) => *m = Some(m.map_or(v, |m| m.min(v))),
            AggValue::Max(m) => *m = Some(m.map_or(v, |m| m.max(v))),
            AggValue::Avg { sum, count } => {
                *sum = sum.wrapping_add(v);
                *count = count.wrapping_add(1);
            }
            AggValue::Quantize(b) => {
                let i = quantize_bucket(v);
                b[i] = b[i].wrapping_add(1);
            }
            AggValue::Lquantize(b) => {
                if let AggFunc::Lquantize { lo, step, .. } = func {
                    let i = lquantize_bucket(v, lo, step, b.len().saturating_sub(2));
                    if let Some(slot) = b.get_mut(i) {
                        *slot = slot.wrapping_add(1);
                    }
                }
            }
        }
    }

    /// Folds `other` (a value of the same function) into `self`.
    pub fn merge(&mut self, other: &AggValue) {
        fn opt(a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64) -> Option<i64> {
            match (a, b) {
                (Some(x), Some(y)) => Some(f(x, y)),
                (x, None) => x,
                (None, y) => y,
            }
        }
        match (self, other) {
            (AggValue::Count(a), AggValue::Count(b)) => *a = a.wrapping_add(*b),
            (AggValue::Sum(a), AggValue::Sum(b)) => *a = a.wrapping_add(*b),
            (AggValue::Min(a), AggValue::Min(b)) => *a = opt(*a, *b, i64::min),
            (AggValue::Max(a), AggValue::Max(b)) => *a = opt(*a, *b, i64::max),
            (AggValue::Avg { sum, count }, AggValue::Avg { sum: s, count: c }) => {
                *sum = sum.wrapping_add(*s);
                *count = count.wrapping_add(*c);
            }
            (AggValue::Quantize(a), AggValue::Quantize(b)) => {
                for (x, y) in a.iter_mut().zip(b.iter()) {
                    *x = x.wrapping_add(*y);
                }
            }
            (AggValue::Lquantize(a), AggValue::Lquantize(b)) => {
                for (x, y) in a.iter_mut().zip(b.iter()) {
                    *x = x.wrapping_add(*y);
                }
            }
            _ => {}
        }
    }

    /// Zeroes the value (what `clear()` does to each entry).
    pub fn clear(&mut self) {
        match self {
            AggValue::Count(c) => *c = 0,
            AggValue::Sum(s) => *s = 0,
            AggValue::Min(m) | AggValue::Max(m) => *m = None,
            AggValue::Avg { sum, count } => {
                *sum = 0;
                *count = 0;
            }
            AggValue::Quantize(b) => b.fill(0),
            AggValue::Lquantize(b) => b.fill(0),
        }
    }

    /// The single number DTrace prints for a scalar aggregation (the average for `avg`,
    /// rounded toward zero; 0 for an empty `min`/`max`/`avg`); `None` for histograms.
    pub fn scalar(&self) -> Option<i64> {
        Some(match self {
            AggValue::Count(c) => *c as i64,
            AggValue::Sum(s) => *s,
            AggValue::Min(m) | AggValue::Max(m) => m.unwrap_or(0),
            AggValue::Avg { sum, count } => {
                if *count == 0 {
                    0
                } else {
                    (i128::from(*sum) / i128::from(*count)) as i64
                }
            }
            AggValue::Quantize(_) | AggValue::Lquantize(_) => return None,
        })
    }

    /// The number DTrace sorts entries by: the scalar, or for histograms the sum of bucket
    /// value times count.
    fn sort_value(&self, func: AggFunc) -> f64 {
        match (self, func) {
            (AggValue::Quantize(b), _) => b
                .iter()
                .enumerate()
                .map(|(i, &n)| quantize_bucket_value(i) as f64 * n as f64)
                .sum(),
            (AggValue::Lquantize(b), AggFunc::Lquantize { lo, step, .. }) => {
                let levels = b.len().saturating_sub(2) as i64;
                b.iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        let v = match i as i64 {
                            0 => lo - 1,
                            k if k > levels => lo + levels * step,
                            k => lo + (k - 1) * step,
                        };
                        v as f64 * n as f64
                    })
                    .sum()
            }
            (v, _) => match v {
                AggValue::Count(c) => *c as f64,
                other => other.scalar().unwrap_or(0) as f64,
            },
        }
    }
}

/// The memory an aggregation entry is charged for (an estimate of what it holds: key
/// values, strings, histogram buckets and table overhead), for [`AggSet::add`]'s budget.
pub fn entry_bytes(key: &[Value], value: &AggValue) -> usize {
    let keys: usize = key
        .iter()
        .map(|k| 32 + k.as_str().map_or(0, str::len))
        .sum();
    let data = match value {
        AggValue::Quantize(_) => QUANTIZE_BUCKETS * 8,
        AggValue::Lquantize(b) => b.len() * 8,
        _ => 16,
    };
    64 + keys + data
}

/// All the aggregations of a program: for each, a table from key to value. A vCPU holds
/// one (its partial aggregates) and so does the consumer (the folded totals).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggSet {
    tables: Vec<AggTable>,
    /// Sum of [`entry_bytes`] over every entry.
    bytes: usize,
}

impl AggSet {
    /// Empty tables for every aggregation of `program`.
    pub fn new(program: &Program) -> AggSet {
        AggSet::with_len(program.aggregations.len())
    }

    /// Empty tables for `n` aggregations.
    pub fn with_len(n: usize) -> AggSet {
        AggSet {
            tables: vec![AggTable::default(); n],
            bytes: 0,
        }
    }

    /// The entries of aggregation `agg` (empty if there is no such aggregation).
    pub fn table(&self, agg: usize) -> Option<&AggTable> {
        self.tables.get(agg)
    }

    /// Total number of entries over every aggregation.
    pub fn len(&self) -> usize {
        self.tables.iter().map(AggTable::len).sum()
    }

    /// Whether there are no entries at all.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(AggTable::is_empty)
    }

    /// The memory charged for all entries ([`entry_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `v` to the entry `key` of aggregation `agg` (function `func`), creating the
    /// entry unless that would charge the set more than `budget` bytes. Returns false if the
    /// value was dropped for lack of room.
    pub fn add(
        &mut self,
        agg: usize,
        func: AggFunc,
        key: Vec<Value>,
        v: i64,
        budget: usize,
    ) -> bool {
        self.add_from(agg, func, &mut { key }, v, budget)
    }

    /// [`AggSet::add`] for a caller that reuses its key vector: the entry is looked up by
    /// `key` without taking it, and only a new entry takes the key's values (leaving `key`
    /// empty, with its allocation); otherwise `key` is left as it was.
    pub fn add_from(
        &mut self,
        agg: usize,
        func: AggFunc,
        key: &mut Vec<Value>,
        v: i64,
        budget: usize,
    ) -> bool {
        let Some(table) = self.tables.get_mut(agg) else {
            return false;
        };
        let hash = hash_values(key);
        if let Some(value) = table.get_mut(hash, key) {
            value.add(func, v);
            return true;
        }
        let mut value = AggValue::new(func);
        let cost = entry_bytes(key, &value);
        if self.bytes.saturating_add(cost) > budget {
            return false;
        }
        value.add(func, v);
        if !table.insert_new(hash, key, value) {
            return false;
        }
        self.bytes += cost;
        true
    }

    /// Folds `other` into `self` (see the module documentation), moving its keys. (A table
    /// holds at most `u32::MAX` entries, hundreds of GB; entries past that are dropped.)
    pub fn fold(&mut self, other: AggSet) {
        if self.tables.len() < other.tables.len() {
            self.tables
                .resize_with(other.tables.len(), AggTable::default);
        }
        for (mine, theirs) in self.tables.iter_mut().zip(other.tables) {
            for (key, value) in theirs {
                if let Folded::Added(key, value) = mine.fold_entry(key, value) {
                    self.bytes += entry_bytes(key, value);
                }
            }
        }
    }

    /// `clear(@agg)`: zeroes every value, keeping the keys.
    pub fn clear(&mut self, agg: usize) {
        if let Some(t) = self.tables.get_mut(agg) {
            t.values_mut().for_each(AggValue::clear);
        }
    }

    /// `trunc(@agg)` (`keep` = `None`): removes every entry; `trunc(@agg, n)`: keeps the `n`
    /// entries that sort last (the largest values), or for negative `n` the `|n|` that sort
    /// first.
    pub fn trunc(&mut self, agg: usize, func: AggFunc, keep: Option<i64>) {
        let Some(table) = self.tables.get_mut(agg) else {
            return;
        };
        let Some(n) = keep else {
            let freed: usize = table.iter().map(|(k, v)| entry_bytes(k, v)).sum();
            self.bytes = self.bytes.saturating_sub(freed);
            table.clear();
            return;
        };
        let mut keys: Vec<(AggKey, f64)> = table
            .iter()
            .map(|(k, v)| (k.clone(), v.sort_value(func)))
            .collect();
        keys.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| compare_keys(&a.0, &b.0)));
        let len = keys.len();
        let want = usize::try_from(n.unsigned_abs())
            .unwrap_or(usize::MAX)
            .min(len);
        let drop: Vec<AggKey> = if n >= 0 {
            keys.into_iter().take(len - want).map(|(k, _)| k).collect()
        } else {
            keys.into_iter().skip(want).map(|(k, _)| k).collect()
        };
        for k in drop {
            if let Some(v) = table.remove(&k) {
                self.bytes = self.bytes.saturating_sub(entry_bytes(&k, &v));
            }
        }
    }

    /// The entries of `agg` in DTrace's order: by value ascending, then by key.
    pub fn sorted(&self, agg: usize, func: AggFunc) -> Vec<(&AggKey, &AggValue)> {
        let Some(table) = self.tables.get(agg) else {
            return Vec::new();
        };
        let mut entries: Vec<(&AggKey, &AggValue, f64)> = table
            .iter()
            .map(|(k, v)| (k, v, v.sort_value(func)))
            .collect();
        entries.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| compare_keys(a.0, b.0)));
        entries.into_iter().map(|(k, v, _)| (k, v)).collect()
    }

    /// Removes and returns everything, leaving empty tables (for draining a vCPU's partial
    /// aggregates into the consumer). Each empty table is allocated for as many entries as
    /// its table held, so a vCPU that aggregates as much in the next round does not grow
    /// (and rehash) its tables again.
    pub fn take(&mut self) -> AggSet {
        AggSet {
            tables: self
                .tables
                .iter_mut()
                .map(|t| {
                    let fresh = AggTable::with_capacity(t.len());
                    std::mem::replace(t, fresh)
                })
                .collect(),
            bytes: std::mem::take(&mut self.bytes),
        }
    }
}

#[cfg(test)]
#[path = "tests/agg.rs"]
mod tests;
