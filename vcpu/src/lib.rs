//! One thread per vCPU: the `KVM_RUN` loop, exit decoding, the run-state machine and the kick.
//!
//! A [`VcpuHandle`] is the controller's side of one vCPU thread. The thread starts
//! [`RunState::Paused`]; the controller resumes it, pauses it (a race-free kick out of
//! `KVM_RUN`, see [`kick`]), and finally asks it to exit. Exits the vCPU cannot finish by
//! itself (port and MMIO accesses) go to an [`ExitHandler`] supplied by the VMM; exits that end
//! the vCPU (emulation failure, shutdown, failed entry, anything unexpected) are described in a
//! [`FatalReport`] and handed to the same handler.

pub mod bmi;
pub mod debug;
pub mod error;
pub mod exit;
pub mod handle;
pub mod kick;
#[cfg(all(loom, test))]
mod loom_model;
pub mod missing;
mod realmode;
pub mod reflect;
mod runner;
pub mod state;
mod sync;
pub mod world;

pub use debug::{DebugConfig, DebugEvent, GuestDebug};
pub use error::VcpuError;
pub use exit::{
    Entry, ExitHandler, ExitKind, Fatal, FatalReport, GeneralProtection, GuestWait, HltAction,
    KernelState, Startup,
};
pub use handle::Kicker;
pub use handle::VcpuHandle;
pub use reflect::Int3Reflection;
pub use state::{RunState, Snapshot};
pub use world::{OwnedStopGuard, StopGuard, World};
