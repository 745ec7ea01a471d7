//! The kick: getting a vCPU thread out of `KVM_RUN` without the classic signal race.
//!
//! A kicker (holding the vCPU's control lock) first sets `immediate_exit` in the target's
//! `kvm_run`, then sends the thread a real-time signal whose handler does nothing. If the thread
//! is inside `KVM_RUN`, the signal makes the ioctl return `EINTR`; if it is about to enter,
//! `immediate_exit` makes the ioctl return `EINTR` at once. The vCPU thread clears
//! `immediate_exit` *before* it reads its request, so a kick is never lost between the check
//! and the ioctl. A thread parked on its condition variable is woken through the condvar.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use kvm_bindings::kvm_run;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::error::VcpuError;
use crate::state::KickTarget;

/// The signal used to kick vCPU threads: the first real-time signal.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: delivery alone interrupts KVM_RUN with EINTR, and the kicker has already
    // set immediate_exit.
}

/// Installs the kick signal handler once per process.
pub fn install_handler() -> Result<(), VcpuError> {
    static INSTALLED: OnceLock<Result<(), vmm_sys_util::errno::Error>> = OnceLock::new();
    (*INSTALLED.get_or_init(|| register_signal_handler(kick_signal(), on_kick)))
        .map_err(VcpuError::SignalHandler)
}

/// The `immediate_exit` byte of a `kvm_run` mapping, as an atomic.
///
/// # Safety
/// `run` must point to a live `kvm_run` mapping for the duration of the returned borrow.
pub(crate) unsafe fn immediate_exit<'a>(run: *mut kvm_run) -> &'a AtomicU8 {
    // SAFETY: the caller guarantees that `run` is a live mapping; `immediate_exit` is a plain
    // u8 that KVM only reads, so viewing it as an AtomicU8 (same size and alignment) is sound.
    unsafe { AtomicU8::from_ptr(std::ptr::addr_of_mut!((*run).immediate_exit)) }
}

/// Kicks the target out of `KVM_RUN`. Must be called with the vCPU's control lock held.
pub(crate) fn kick(target: &KickTarget) {
    // SAFETY: the target is only present in `Control` while the vCPU thread is alive and its
    // kvm_run mapping is mapped; the caller holds the control lock, under which the vCPU thread
    // removes the target before unmapping or exiting.
    unsafe { immediate_exit(target.run.as_ptr()) }.store(1, Ordering::SeqCst);
    // SAFETY: `thread` is a live thread (see above); pthread_kill with a handled signal has no
    // other effect than running the empty handler in that thread.
    unsafe {
        libc::pthread_kill(target.thread, kick_signal());
    }
}
