//! The run-state machine shared by a vCPU thread and its controller.
//!
//! ```text
//!   Paused --resume--> Running --pause(kick)--> Paused
//!      \                  |
//!       \--exit-->  Exiting --> Exited   (also on a fatal exit)
//! ```
//!
//! The controller writes a [`Request`]; the vCPU thread moves [`RunState`] to follow it and
//! publishes a [`Snapshot`] of its registers whenever it parks.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_run;

use crate::exit::{ExitKind, GuestWait};
use crate::kick::kick;
use crate::sync::{Condvar, Mutex, MutexGuard};

/// Where a vCPU thread is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Parked in user space, not in `KVM_RUN` (the initial state).
    Paused,
    /// In or around `KVM_RUN`, running guest code.
    Running,
    /// Parked in user space by the guest: after `hlt`, or an application processor waiting
    /// for INIT/SIPI (user-space APIC only).
    Halted,
    /// Leaving its loop.
    Exiting,
    /// The thread has finished its loop.
    Exited,
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunState::Paused => "paused",
            RunState::Running => "running",
            RunState::Halted => "halted",
            RunState::Exiting => "exiting",
            RunState::Exited => "exited",
        })
    }
}

/// What the controller wants the vCPU to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Park in user space.
    Pause,
    /// Run guest code.
    Run,
    /// Leave the loop for good.
    Exit,
}

/// Registers and exit information published by a vCPU when it parks or ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Guest RIP at the time of the snapshot.
    pub rip: u64,
    /// The last exit the vCPU saw.
    pub last_exit: ExitKind,
    /// Number of exits handled so far.
    pub exits: u64,
    /// Why the guest had the vCPU parked, if it had (user-space APIC only).
    pub wait: Option<GuestWait>,
}

/// Raw handles a kicker needs; only valid while the vCPU thread is alive.
pub(crate) struct KickTarget {
    /// The thread's `kvm_run` mapping.
    pub run: NonNull<kvm_run>,
    /// The thread to signal.
    pub thread: libc::pthread_t,
}

/// Mutable state behind the lock.
pub(crate) struct Control {
    /// Outstanding pause requests (the initial one, `VcpuHandle::request_pause`, and one per
    /// active stop-the-world); the vCPU runs only while this is zero.
    pub pauses: u32,
    /// The vCPU must leave its loop for good.
    pub exit: bool,
    /// The vCPU's own thread is inside a stop-the-world request, waiting for the others: it is
    /// not running guest code, so other initiators count it as stopped.
    pub in_stop: u32,
    pub state: RunState,
    pub snapshot: Snapshot,
    pub kick_target: Option<KickTarget>,
}

impl Control {
    /// What the vCPU should do now.
    pub fn request(&self) -> Request {
        if self.exit {
            Request::Exit
        } else if self.pauses > 0 {
            Request::Pause
        } else {
            Request::Run
        }
    }

    /// Whether the vCPU is out of guest code for a stop-the-world: parked, finished, or its
    /// thread is itself waiting inside a stop request.
    pub fn stopped(&self) -> bool {
        matches!(self.state, RunState::Paused | RunState::Exited) || self.in_stop > 0
    }
}

// SAFETY: `KickTarget` holds a pointer to the vCPU's `kvm_run` mapping and a pthread handle.
// Both are only dereferenced/used while holding the `Control` lock, and the vCPU thread clears
// `kick_target` under that same lock before the mapping is unmapped or the thread ends.
unsafe impl Send for Control {}

/// State shared between a vCPU thread and its controller.
pub(crate) struct Shared {
    pub cpu: usize,
    /// Exit-handling epoch: odd while the vCPU thread is handling an exit, incremented on entry
    /// and on exit of the handling (see [`crate::World::sync`]).
    pub handling: AtomicU64,
    pub control: Mutex<Control>,
    pub changed: Condvar,
}

impl Shared {
    pub fn new(cpu: usize) -> Self {
        Shared {
            cpu,
            handling: AtomicU64::new(0),
            control: Mutex::new(Control {
                pauses: 1,
                exit: false,
                in_stop: 0,
                state: RunState::Paused,
                snapshot: Snapshot::default(),
                kick_target: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Locks the control block; a poisoned lock still yields the data (the state machine stays
    /// meaningful after a panic, which is reported separately).
    pub fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// vCPU side, before each `KVM_RUN`: the current request; moves the state to `Running` when
    /// the request is `Run`.
    pub fn checkpoint(&self) -> Request {
        let mut ctl = self.lock();
        let request = ctl.request();
        if request == Request::Run && ctl.state != RunState::Running {
            ctl.state = RunState::Running;
            self.changed.notify_all();
        }
        request
    }

    /// vCPU side: parks in `Paused` (publishing `snapshot`) until no pause request is left.
    pub fn park(&self, snapshot: Snapshot) {
        let mut ctl = self.lock();
        ctl.state = RunState::Paused;
        ctl.snapshot = snapshot;
        self.changed.notify_all();
        while ctl.request() == Request::Pause {
            ctl = self.changed.wait(ctl).unwrap_or_else(|p| p.into_inner());
        }
        ctl.state = RunState::Running;
        self.changed.notify_all();
    }

    /// vCPU side: leaving the loop for good.
    pub fn set_state(&self, state: RunState) {
        self.lock().state = state;
        self.changed.notify_all();
    }

    /// Initiator side: adds a pause request and, unless `own_thread`, kicks the vCPU out of
    /// `KVM_RUN` if it is running there.
    pub fn add_pause(&self, own_thread: bool) {
        let mut ctl = self.lock();
        ctl.pauses = ctl.pauses.saturating_add(1);
        if !own_thread && ctl.state == RunState::Running {
            if let Some(target) = &ctl.kick_target {
                kick(target);
            }
        }
        self.changed.notify_all();
    }

    /// Initiator side: withdraws one pause request.
    pub fn remove_pause(&self) {
        let mut ctl = self.lock();
        ctl.pauses = ctl.pauses.saturating_sub(1);
        self.changed.notify_all();
    }

    /// Initiator side, when the initiator is this vCPU's own thread: marks it as waiting inside
    /// a stop (`entering`) or done waiting.
    pub fn mark_in_stop(&self, entering: bool) {
        let mut ctl = self.lock();
        ctl.in_stop = if entering {
            ctl.in_stop.saturating_add(1)
        } else {
            ctl.in_stop.saturating_sub(1)
        };
        self.changed.notify_all();
    }

    /// Waits until `done` holds or `timeout` passes; returns whether it holds.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Control) -> bool,
    ) -> (bool, MutexGuard<'_, Control>) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            if done(&guard) {
                return (true, guard);
            }
            let now = Instant::now();
            if now >= deadline {
                return (false, guard);
            }
            guard = match self.changed.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}
