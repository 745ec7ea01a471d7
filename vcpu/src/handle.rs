//! The controller's handle on one vCPU thread.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;

use crate::error::VcpuError;
use crate::exit::{ExitHandler, Fatal, FatalReport};
use crate::kick::{install_handler, kick};
use crate::runner::Runner;
use crate::state::{RunState, Shared, Snapshot};

/// A cheap, cloneable way for any thread to make one vCPU look at its interrupt state again.
#[derive(Clone)]
pub struct Kicker {
    shared: Arc<Shared>,
}

impl Kicker {
    /// The vCPU this kicker targets.
    pub fn cpu(&self) -> usize {
        self.shared.cpu
    }

    /// Kicks the vCPU out of `KVM_RUN` if it is running (unless the caller is that vCPU's own
    /// thread, which looks before re-entering anyway) and wakes it if it is parked.
    ///
    /// Takes the vCPU's control lock: never call it while holding a lock that
    /// [`crate::ExitHandler::wakeup_pending`] takes.
    pub fn kick(&self) {
        let ctl = self.shared.lock();
        if ctl.state == RunState::Running {
            if let Some(target) = &ctl.kick_target {
                // SAFETY: pthread_self and pthread_equal have no preconditions.
                let own_thread =
                    unsafe { libc::pthread_equal(target.thread, libc::pthread_self()) } != 0;
                if !own_thread {
                    kick(target);
                }
            }
        }
        self.shared.changed.notify_all();
    }
}

/// Controller side of a vCPU thread. The thread starts paused.
pub struct VcpuHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<VcpuFd>>,
}

impl VcpuHandle {
    /// Spawns the thread for vCPU `cpu`, which parks until [`VcpuHandle::resume`].
    ///
    /// `use_sync_regs` reads registers through `kvm_run` sync_regs instead of ioctls (needs
    /// `KVM_CAP_SYNC_REGS`).
    pub fn spawn(
        cpu: usize,
        fd: VcpuFd,
        handler: Arc<dyn ExitHandler>,
        use_sync_regs: bool,
    ) -> Result<Self, VcpuError> {
        install_handler()?;
        let shared = Arc::new(Shared::new(cpu));
        let runner = Runner::new(fd, Arc::clone(&shared), Arc::clone(&handler), use_sync_regs);
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{cpu}"))
            .spawn(move || {
                let shared = Arc::clone(&runner.shared);
                let handler = Arc::clone(&runner.handler);
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run())) {
                    Ok(fd) => fd,
                    Err(payload) => {
                        let message = panic_message(payload.as_ref());
                        let mut ctl = shared.lock();
                        ctl.kick_target = None;
                        ctl.state = RunState::Exited;
                        shared.changed.notify_all();
                        drop(ctl);
                        handler.fatal(FatalReport {
                            cpu,
                            fatal: Fatal::Unexpected {
                                exit: format!("vCPU thread panicked: {message}"),
                            },
                            rip: 0,
                            rip_gpa: None,
                            bitness: 64,
                        });
                        // The fd went down with the unwinding runner; resume the panic so the
                        // joiner sees it.
                        std::panic::resume_unwind(payload)
                    }
                }
            })
            .map_err(|source| VcpuError::Spawn { cpu, source })?;
        Ok(VcpuHandle {
            shared,
            thread: Some(thread),
        })
    }

    /// This vCPU's index.
    pub fn cpu(&self) -> usize {
        self.shared.cpu
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A kicker for this vCPU, for interrupt controllers and timers.
    pub fn kicker(&self) -> Kicker {
        Kicker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Current run state and last published snapshot.
    pub fn state(&self) -> (RunState, Snapshot) {
        let ctl = self.shared.lock();
        (ctl.state, ctl.snapshot)
    }

    /// Lets the vCPU run guest code: withdraws one pause request (the initial one, or one
    /// taken with [`VcpuHandle::request_pause`]).
    pub fn resume(&self) {
        self.shared.remove_pause();
    }

    /// Adds a pause request and kicks the vCPU out of `KVM_RUN`; does not wait.
    pub fn request_pause(&self) {
        self.shared.add_pause(false);
    }

    /// Waits until the vCPU is parked (or has exited) and returns its snapshot, or reports it
    /// by index, state and last exit once `timeout` has passed.
    pub fn wait_paused(&self, timeout: Duration) -> Result<Snapshot, VcpuError> {
        self.wait_for(timeout, |s| {
            matches!(s, RunState::Paused | RunState::Exited)
        })
    }

    /// Pauses the vCPU and waits for it, bounded by `timeout`.
    pub fn pause(&self, timeout: Duration) -> Result<Snapshot, VcpuError> {
        self.request_pause();
        self.wait_paused(timeout)
    }

    /// Asks the vCPU thread to leave its loop for good (kicking it); does not wait.
    pub fn request_exit(&self) {
        let mut ctl = self.shared.lock();
        ctl.exit = true;
        if let Some(target) = &ctl.kick_target {
            kick(target);
        }
        self.shared.changed.notify_all();
    }

    fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(RunState) -> bool,
    ) -> Result<Snapshot, VcpuError> {
        let start = Instant::now();
        let (ok, ctl) = self.shared.wait_until(timeout, |c| done(c.state));
        if ok {
            Ok(ctl.snapshot)
        } else {
            Err(VcpuError::NotStopped {
                cpu: self.shared.cpu,
                waited_ms: start.elapsed().as_millis(),
                state: ctl.state,
                last_exit: ctl.snapshot.last_exit,
            })
        }
    }

    /// Asks the thread to exit and joins it, waiting at most `timeout` for it to finish.
    /// A thread that does not finish in time is reported and left detached (it keeps its
    /// `kvm_run` mapping, so nothing dangles).
    pub fn join(mut self, timeout: Duration) -> Result<(), VcpuError> {
        self.request_exit();
        self.wait_for(timeout, |s| s == RunState::Exited)?;
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(payload)) => Err(VcpuError::Panicked {
                cpu: self.shared.cpu,
                message: panic_message(payload.as_ref()),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.request_exit();
            let (exited, guard) = self
                .shared
                .wait_until(Duration::from_secs(2), |c| c.state == RunState::Exited);
            drop(guard);
            if exited {
                let _ = thread.join();
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
