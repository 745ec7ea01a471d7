//! Records: what evaluating a clause produces for the consumer (printf text, traced values,
//! stacks, exit requests, aggregation actions, errors), and the bounded per-vCPU buffer
//! they are appended to.

use std::sync::Arc;

use super::context::ProbeInfo;
use super::fault::Fault;
use super::value::Value;
use crate::lang::Format;

/// One record, with the firing it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The vCPU the probe fired on.
    pub cpu: u32,
    /// `timestamp` of the firing (all records of a firing share it).
    pub timestamp_ns: u64,
    /// The probe that fired.
    pub probe: Arc<ProbeInfo>,
    /// The enabled probe ID: the clause's index in the program plus one.
    pub epid: u32,
    /// Sequence number of the clause evaluation on its vCPU: records with the same `cpu` and
    /// `firing` come from one evaluation of one clause.
    pub firing: u64,
    /// What the record says.
    pub kind: RecordKind,
}

/// One frame of a `stack()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFrame {
    /// The return address.
    pub address: u64,
    /// `func+0x12`, if the address is in a known symbol.
    pub symbol: Option<String>,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A clause without statements fired (DTrace's default action).
    Fired,
    /// The text of a `printf`.
    Printf(String),
    /// A `trace()`d value.
    Trace(Value),
    /// A `stack()`.
    Stack(Vec<StackFrame>),
    /// A `stack()` where the guest image has no unwinder.
    StackUnavailable,
    /// `exit(status)`: stop tracing.
    Exit(i32),
    /// `printa()` of aggregation `agg`, with its format if one was given.
    Printa {
        /// The aggregation.
        agg: usize,
        /// The format.
        format: Option<Format>,
    },
    /// `clear(@agg)`.
    Clear(usize),
    /// `trunc(@agg[, keep])`.
    Trunc {
        /// The aggregation.
        agg: usize,
        /// How many entries to keep (`None`: none).
        keep: Option<i64>,
    },
    /// The clause stopped on a fault; the records it had produced were discarded.
    Error {
        /// The 1-based action that faulted, or `None` for the predicate.
        action: Option<usize>,
        /// What went wrong.
        fault: Fault,
    },
}

impl Record {
    /// DTrace's message for an [`RecordKind::Error`] record (`None` for other kinds).
    pub fn error_message(&self) -> Option<String> {
        let RecordKind::Error { action, fault } = &self.kind else {
            return None;
        };
        let place = match action {
            Some(n) => format!("action #{n}"),
            None => "predicate".to_string(),
        };
        Some(format!(
            "error on enabled probe ID {} (ID {}: {}): {fault} in {place}",
            self.epid, self.probe.id, self.probe
        ))
    }
}

/// A vCPU's bounded record buffer. A clause's records are committed together or not at all;
/// what does not fit is counted as dropped.
#[derive(Debug, Clone, Default)]
pub struct RecordBuffer {
    records: Vec<Record>,
    capacity: usize,
    dropped: u64,
}

impl RecordBuffer {
    /// An empty buffer holding at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Vec::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Appends all of `batch` (emptying it) if it fits; otherwise counts its records as
    /// dropped. Returns whether they were appended.
    pub fn commit(&mut self, batch: &mut Vec<Record>) -> bool {
        if self.records.len() + batch.len() > self.capacity {
            self.dropped += batch.len() as u64;
            batch.clear();
            return false;
        }
        self.records.append(batch);
        true
    }

    /// How many records are waiting.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no records are waiting.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Removes and returns the waiting records.
    pub fn take(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// Returns and resets the count of dropped records.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: RecordKind) -> Record {
        Record {
            cpu: 0,
            timestamp_ns: 0,
            probe: Arc::new(ProbeInfo::begin()),
            epid: 1,
            firing: 0,
            kind,
        }
    }

    #[test]
    fn commits_whole_batches_or_drops_them() {
        let mut b = RecordBuffer::new(3);
        let mut batch = vec![rec(RecordKind::Fired), rec(RecordKind::Fired)];
        assert!(b.commit(&mut batch));
        assert!(batch.is_empty());
        let mut batch = vec![rec(RecordKind::Fired), rec(RecordKind::Fired)];
        assert!(!b.commit(&mut batch));
        assert_eq!((b.len(), b.take_dropped(), b.take_dropped()), (2, 2, 0));
        assert_eq!(b.take().len(), 2);
        assert!(b.is_empty());
    }

    #[test]
    fn error_messages() {
        let r = rec(RecordKind::Error {
            action: Some(2),
            fault: Fault::BadAddress(0x10),
        });
        assert_eq!(
            r.error_message().as_deref(),
            Some("error on enabled probe ID 1 (ID 1: dtrace:::BEGIN): invalid address (0x10) in action #2")
        );
        let r = rec(RecordKind::Error {
            action: None,
            fault: Fault::DivideByZero,
        });
        assert!(r
            .error_message()
            .is_some_and(|m| m.ends_with("divide-by-zero in predicate")));
        assert_eq!(rec(RecordKind::Fired).error_message(), None);
    }
}
