//! Stop-the-world: the VMM's replacement for a guest cross call.
//!
//! [`World::stop`] pauses every vCPU through KVM (a pause request and a kick each, then a
//! bounded wait until each is parked with any half-done exit completed) and returns a
//! [`StopGuard`]; dropping the guard withdraws the pause requests, and the vCPUs resume once no
//! other stop holds them.
//!
//! - **Any thread may ask**, a vCPU thread handling an exit included: it counts itself as
//!   stopped (it is not running guest code), and while it waits for the others it is counted
//!   as stopped by every other initiator too, so two vCPUs stopping the world at once cannot
//!   wait on each other.
//! - **Concurrent and nested** requests compose: pause requests are counted per vCPU, so a
//!   resume is never lost and never early.
//! - **Bounded**: a vCPU that has not stopped within the bound is reported by index with its
//!   state and last exit, its pause request is withdrawn again, and the call fails.
//! - [`World::sync`] is DTrace's `dtrace_sync()`: it returns once every vCPU has left the exit
//!   handling it was in when the call began (an epoch per vCPU), without stopping anything.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::VcpuError;
use crate::handle::VcpuHandle;
use crate::state::{RunState, Shared, Snapshot};

#[cfg(not(loom))]
std::thread_local! {
    /// The vCPU whose thread this is, if any (set by the vCPU thread at start).
    static CURRENT_VCPU: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

// loom's thread_local! has no `const` initialiser form.
#[cfg(loom)]
loom::thread_local! {
    static CURRENT_VCPU: Cell<*const Shared> = Cell::new(std::ptr::null());
}

/// Marks the calling thread as the thread of `shared`'s vCPU.
pub(crate) fn set_current_vcpu(shared: &Arc<Shared>) {
    CURRENT_VCPU.with(|c| c.set(Arc::as_ptr(shared)));
}

fn is_current(shared: &Arc<Shared>) -> bool {
    CURRENT_VCPU.with(|c| std::ptr::eq(c.get(), Arc::as_ptr(shared)))
}

/// Every vCPU of a VM, for stop-the-world and sync.
#[derive(Clone)]
pub struct World {
    vcpus: Vec<Arc<Shared>>,
}

/// Held while the world is stopped; dropping it resumes (unless another stop still holds).
#[must_use = "the world resumes when the guard is dropped"]
pub struct StopGuard<'a> {
    world: &'a World,
}

impl World {
    /// The world made of `vcpus`.
    pub fn new(vcpus: &[VcpuHandle]) -> Self {
        World {
            vcpus: vcpus.iter().map(|v| Arc::clone(v.shared())).collect(),
        }
    }

    /// A world over raw shared states (the loom model builds one without KVM).
    #[cfg(loom)]
    pub(crate) fn from_shared(vcpus: Vec<Arc<Shared>>) -> Self {
        World { vcpus }
    }

    /// Each vCPU's run state and last published snapshot (exit count, last exit, RIP), in
    /// vCPU order. Snapshots are published when a vCPU parks or ends.
    pub fn snapshots(&self) -> Vec<(RunState, Snapshot)> {
        self.vcpus
            .iter()
            .map(|v| {
                let ctl = v.lock();
                (ctl.state, ctl.snapshot)
            })
            .collect()
    }

    /// Number of vCPUs.
    pub fn len(&self) -> usize {
        self.vcpus.len()
    }

    /// Whether there are no vCPUs.
    pub fn is_empty(&self) -> bool {
        self.vcpus.is_empty()
    }

    /// Stops every vCPU and returns once each is out of `KVM_RUN` and parked (the caller's own
    /// vCPU, if it is one, counts as stopped), or fails after `bound` naming the vCPU that did
    /// not stop.
    pub fn stop(&self, bound: Duration) -> Result<StopGuard<'_>, VcpuError> {
        let me = self.vcpus.iter().find(|v| is_current(v));
        if let Some(me) = me {
            me.mark_in_stop(true);
        }
        for v in &self.vcpus {
            v.add_pause(is_current(v));
        }
        let guard = StopGuard { world: self };
        let start = Instant::now();
        let deadline = start + bound;
        let mut result = Ok(());
        for v in self.vcpus.iter().filter(|v| !is_current(v)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (ok, ctl) = v.wait_until(left, |c| c.stopped());
            if !ok {
                result = Err(VcpuError::NotStopped {
                    cpu: v.cpu,
                    waited_ms: start.elapsed().as_millis(),
                    state: ctl.state,
                    last_exit: ctl.snapshot.last_exit,
                });
                break;
            }
        }
        if let Some(me) = me {
            me.mark_in_stop(false);
        }
        // On failure the guard's drop withdraws the pause requests again.
        result.map(|()| guard)
    }

    /// Returns once every vCPU (other than the caller's own) has left the exit handling it was
    /// in when `sync` was called; vCPUs not in exit handling are not waited for. Fails after
    /// `bound`, naming the vCPU still inside the same handling.
    pub fn sync(&self, bound: Duration) -> Result<(), VcpuError> {
        let epochs: Vec<u64> = self
            .vcpus
            .iter()
            .map(|v| v.handling.load(Ordering::SeqCst))
            .collect();
        let start = Instant::now();
        for (v, epoch) in self.vcpus.iter().zip(epochs) {
            if epoch % 2 == 0 || is_current(v) {
                continue;
            }
            while v.handling.load(Ordering::SeqCst) == epoch {
                if start.elapsed() > bound {
                    let ctl = v.lock();
                    return Err(VcpuError::NotStopped {
                        cpu: v.cpu,
                        waited_ms: start.elapsed().as_millis(),
                        state: ctl.state,
                        last_exit: ctl.snapshot.last_exit,
                    });
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }
}

/// A stop that owns its world, so it can be kept across calls (e.g. from a probe hit until the
/// single step that completes it). Dropping it resumes, like [`StopGuard`].
#[must_use = "the world resumes when the guard is dropped"]
pub struct OwnedStopGuard {
    world: World,
    /// The caller's own vCPU, left running (see [`World::stop_others`]).
    spared: Option<usize>,
}

impl World {
    /// Called on a vCPU thread: stops every *other* vCPU (bounded, as [`World::stop`]) and
    /// leaves the caller's own vCPU free to run guest code, e.g. to single-step one
    /// instruction while nobody else can run the same code. The guard owns its world, so it
    /// can be kept across exits.
    pub fn stop_others(&self, bound: Duration) -> Result<OwnedStopGuard, VcpuError> {
        let me = self.vcpus.iter().position(is_current);
        if let Some(me) = me.and_then(|i| self.vcpus.get(i)) {
            me.mark_in_stop(true);
        }
        for (i, v) in self.vcpus.iter().enumerate() {
            if Some(i) != me {
                v.add_pause(false);
            }
        }
        let guard = OwnedStopGuard {
            world: self.clone(),
            spared: me,
        };
        let start = Instant::now();
        let deadline = start + bound;
        let mut result = Ok(());
        for (i, v) in self.vcpus.iter().enumerate() {
            if Some(i) == me {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let (ok, ctl) = v.wait_until(left, |c| c.stopped());
            if !ok {
                result = Err(VcpuError::NotStopped {
                    cpu: v.cpu,
                    waited_ms: start.elapsed().as_millis(),
                    state: ctl.state,
                    last_exit: ctl.snapshot.last_exit,
                });
                break;
            }
        }
        if let Some(me) = me.and_then(|i| self.vcpus.get(i)) {
            me.mark_in_stop(false);
        }
        result.map(|()| guard)
    }
}

impl Drop for OwnedStopGuard {
    fn drop(&mut self) {
        for (i, v) in self.world.vcpus.iter().enumerate() {
            if Some(i) != self.spared {
                v.remove_pause();
            }
        }
    }
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        for v in &self.world.vcpus {
            v.remove_pause();
        }
    }
}
