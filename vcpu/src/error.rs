//! Errors of the vCPU layer.

use crate::exit::ExitKind;
use crate::state::RunState;

/// Errors returned by vCPU control operations.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler: {0}")]
    SignalHandler(#[source] vmm_sys_util::errno::Error),
    /// The vCPU thread could not be spawned.
    #[error("cannot spawn the thread for vCPU {cpu}: {source}")]
    Spawn {
        /// vCPU index.
        cpu: usize,
        /// Why spawning failed.
        #[source]
        source: std::io::Error,
    },
    /// A vCPU did not reach the requested state within the bound.
    #[error("vCPU {cpu} did not stop within {waited_ms} ms: it is {state}, last exit {last_exit}")]
    NotStopped {
        /// vCPU index.
        cpu: usize,
        /// How long the controller waited.
        waited_ms: u128,
        /// The state it was in when the controller gave up.
        state: RunState,
        /// Its last exit, as of its last report.
        last_exit: ExitKind,
    },
    /// The vCPU thread panicked.
    #[error("vCPU {cpu} thread panicked: {message}")]
    Panicked {
        /// vCPU index.
        cpu: usize,
        /// The panic payload, when it was a string.
        message: String,
    },
}
