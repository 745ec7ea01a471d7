//! Runtime state: limits, the global variables shared by every vCPU, and each vCPU's own
//! state (`self->` variables, record buffer, partial aggregates).

use std::collections::HashMap;

use super::agg::AggSet;
use super::record::{Record, RecordBuffer};
use super::value::Value;
use crate::lang::Program;

/// Bounds on what a running program may hold. Past them, data is dropped and counted, never
/// grown without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records a vCPU's buffer holds before the consumer drains it.
    pub records_per_cpu: usize,
    /// Entries all associative arrays together may hold.
    pub dynamic_entries: usize,
    /// Memory (as [`super::agg::entry_bytes`] estimates it) a vCPU's partial aggregates may
    /// hold between drains, like DTrace's `aggsize`.
    pub agg_bytes_per_cpu: usize,
    /// The longest string (in bytes) read from the guest or built by `strjoin`.
    pub strsize: usize,
}

impl Default for Limits {
    /// 64 Ki records per vCPU, 64 Ki array entries, 16 MiB of aggregations per vCPU, and
    /// DTrace's `strsize` of 256 bytes.
    fn default() -> Self {
        Self {
            records_per_cpu: 65_536,
            dynamic_entries: 65_536,
            agg_bytes_per_cpu: 16 << 20,
            strsize: 256,
        }
    }
}

/// Global variables and associative arrays (shared by every vCPU behind a lock).
#[derive(Debug, Default)]
pub(crate) struct GlobalStore {
    pub(crate) scalars: Vec<Value>,
    pub(crate) arrays: Vec<HashMap<Vec<Value>, Value>>,
    /// Entries in all arrays together.
    pub(crate) entries: usize,
    /// Array stores dropped because `dynamic_entries` was reached.
    pub(crate) dynamic_drops: u64,
}

impl GlobalStore {
    pub(crate) fn new(program: &Program) -> Self {
        Self {
            scalars: program.globals.iter().map(|v| Value::zero(v.ty)).collect(),
            arrays: vec![HashMap::new(); program.arrays.len()],
            entries: 0,
            dynamic_drops: 0,
        }
    }

    /// Stores `value` at `keys` in array `array`; a zero value deletes the entry. Counts a
    /// drop instead of growing past `cap` entries.
    pub(crate) fn array_store(&mut self, array: usize, keys: Vec<Value>, value: Value, cap: usize) {
        let Some(table) = self.arrays.get_mut(array) else {
            return;
        };
        if value.is_zero() {
            if table.remove(&keys).is_some() {
                self.entries -= 1;
            }
            return;
        }
        if let Some(slot) = table.get_mut(&keys) {
            *slot = value;
            return;
        }
        if self.entries >= cap {
            self.dynamic_drops += 1;
            return;
        }
        table.insert(keys, value);
        self.entries += 1;
    }
}

/// Counts of data a vCPU dropped since the last [`VcpuState::take_drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drops {
    /// Records that did not fit the buffer.
    pub records: u64,
    /// Aggregation updates dropped because the partial aggregates were full.
    pub aggregations: u64,
}

/// One vCPU's state. The VMM keeps one per vCPU (from [`super::Runtime::new_vcpu`]), passes
/// it to [`super::Runtime::fire`] on that vCPU's thread, and lets the consumer drain it.
#[derive(Debug, Clone)]
pub struct VcpuState {
    pub(crate) self_vars: Vec<Value>,
    pub(crate) buffer: RecordBuffer,
    pub(crate) aggs: AggSet,
    pub(crate) agg_drops: u64,
    pub(crate) firing: u64,
    /// The key of the aggregation being updated, kept to reuse its allocation when the
    /// entry exists already ([`AggSet::add_from`]).
    pub(crate) agg_key: Vec<Value>,
}

impl VcpuState {
    pub(crate) fn new(program: &Program, limits: &Limits) -> Self {
        Self {
            self_vars: program
                .self_vars
                .iter()
                .map(|v| Value::zero(v.ty))
                .collect(),
            buffer: RecordBuffer::new(limits.records_per_cpu),
            aggs: AggSet::new(program),
            agg_drops: 0,
            firing: 0,
            agg_key: Vec::new(),
        }
    }

    /// Removes and returns the records waiting for the consumer.
    pub fn take_records(&mut self) -> Vec<Record> {
        self.buffer.take()
    }

    /// How many records are waiting.
    pub fn pending_records(&self) -> usize {
        self.buffer.len()
    }

    /// Removes and returns this vCPU's partial aggregates, for [`AggSet::fold`].
    pub fn take_aggregations(&mut self) -> AggSet {
        self.aggs.take()
    }

    /// Returns and resets the drop counters.
    pub fn take_drops(&mut self) -> Drops {
        Drops {
            records: self.buffer.take_dropped(),
            aggregations: std::mem::take(&mut self.agg_drops),
        }
    }
}
