//! The `sync` provider's source: every stop-the-world the probes make (to patch guest text at
//! run time, or around a single-stepped hit) reported as a stop and a resume.

use std::sync::Arc;
use std::time::Instant;

/// Why the probes stopped the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Traps were written or removed while the guest runs (attach, detach).
    Patch = 0,
    /// A probe hit single-steps its displaced instruction.
    SingleStep = 1,
}

/// Told of each stop and resume (the trace sessions).
pub trait SyncObserver: Send + Sync {
    /// Every vCPU but `cpu`'s own (if it is one) is stopped, `took_ns` after asking.
    fn stopped(&self, cpu: usize, reason: StopReason, vcpus: usize, took_ns: u64);
    /// They run again after `stopped_ns` stopped.
    fn resumed(&self, cpu: usize, reason: StopReason, vcpus: usize, stopped_ns: u64);
}

/// A stop in progress: reports the resume when dropped, after the world it holds resumed.
pub(super) struct ReportedStop<G> {
    pub(super) guard: Option<G>,
    pub(super) observer: Option<Arc<dyn SyncObserver>>,
    pub(super) cpu: usize,
    pub(super) reason: StopReason,
    pub(super) vcpus: usize,
    pub(super) since: Instant,
}

impl<G> ReportedStop<G> {
    /// Wraps `guard` (taken at `asked`), reporting the stop now.
    pub(super) fn new(
        guard: G,
        observer: Option<Arc<dyn SyncObserver>>,
        cpu: usize,
        reason: StopReason,
        vcpus: usize,
        asked: Instant,
    ) -> Self {
        let since = Instant::now();
        if let Some(o) = &observer {
            o.stopped(
                cpu,
                reason,
                vcpus,
                since.duration_since(asked).as_nanos() as u64,
            );
        }
        ReportedStop {
            guard: Some(guard),
            observer,
            cpu,
            reason,
            vcpus,
            since,
        }
    }
}

impl<G> Drop for ReportedStop<G> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Some(o) = &self.observer {
            let stopped = self.since.elapsed().as_nanos() as u64;
            o.resumed(self.cpu, self.reason, self.vcpus, stopped);
        }
    }
}
