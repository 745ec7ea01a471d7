//! The runtime: evaluates compiled clauses at probe firings, and consumes what they
//! produce.
//!
//! - The VMM implements [`ProbeContext`] (registers, guest memory, symbols, stack) for the
//!   vCPU that hit a probe, and calls [`Runtime::fire`] with the probe's [`ProbeInfo`], the
//!   matching clauses ([`crate::lang::Program::clauses_matching`]) and that vCPU's
//!   [`VcpuState`], on the vCPU's thread. Evaluation never panics and never blocks on
//!   anything but the short lock around global variables.
//! - A firing appends [`Record`]s to the vCPU's bounded buffer and aggregates into the
//!   vCPU's partial aggregates ([`AggSet`]). Faults (a bad guest address, division by zero,
//!   an unknown register) stop the clause and record an ERROR, as DTrace does.
//! - The consumer ([`Consumer`]) folds the partial aggregates, merges the records
//!   ([`merge_records`]) and renders them as DTrace's text or as JSON lines.

pub mod agg;
pub mod agg_print;
mod agg_table;
mod consumer;
mod context;
mod eval;
mod exec;
mod fault;
pub mod json;
pub mod ops;
pub mod printf;
mod record;
mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod value;

#[cfg(test)]
mod tests;

pub use agg::{AggKey, AggSet, AggTable, AggValue};
pub use consumer::{merge_records, Consumer, ConsumerOptions, Output, OutputFormat};
pub use context::{MemoryError, ProbeContext, ProbeInfo};
pub use exec::{FireSummary, Runtime};
pub use fault::Fault;
pub use record::{Record, RecordBuffer, RecordKind, StackFrame};
pub use state::{Drops, Limits, VcpuState};
pub use value::{compare_keys, Value};
