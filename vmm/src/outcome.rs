//! How a run ends, and the rendezvous where the first ending wins.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use vcpu::{FatalReport, GuestWait, RunState, Snapshot};

/// Exit status of `hvtrace run` when the VM stopped on a guest error (emulation failure,
/// triple fault, unexpected exit).
pub const STATUS_GUEST_ERROR: u8 = 125;
/// Exit status of `hvtrace run` when `--timeout` expired.
pub const STATUS_TIMEOUT: u8 = 124;
/// Exit status when the run was ended from outside the guest ([`EndHandle::end`]).
pub const STATUS_STOPPED: u8 = 130;

/// One vCPU's state when the run was cut short.
#[derive(Clone, Debug)]
pub struct VcpuStatus {
    /// vCPU index.
    pub cpu: usize,
    /// Its run state when the timeout expired (before it was stopped for the report).
    pub state: RunState,
    /// Its registers and last exit as of its last report.
    pub snapshot: Snapshot,
    /// Set when it did not stop within the bound.
    pub not_stopped: Option<String>,
}

impl fmt::Display for VcpuStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wait = match self.snapshot.wait {
            Some(GuestWait::Sipi) => " (waiting for INIT/SIPI)",
            Some(GuestWait::Hlt {
                interrupts_enabled: true,
            }) => " (hlt, interrupts enabled)",
            Some(GuestWait::Hlt {
                interrupts_enabled: false,
            }) => " (hlt with interrupts disabled)",
            None => "",
        };
        write!(
            f,
            "vcpu {}: {}{wait}, rip {:#x}, last exit {}, {} exits",
            self.cpu, self.state, self.snapshot.rip, self.snapshot.last_exit, self.snapshot.exits
        )?;
        if let Some(why) = &self.not_stopped {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

/// A fatal vCPU exit with the instruction at RIP decoded.
#[derive(Clone, Debug)]
pub struct FaultDetails {
    /// What the vCPU reported.
    pub report: FatalReport,
    /// The instruction bytes (from KVM or read from guest memory).
    pub insn: Vec<u8>,
    /// The instruction in assembly, when the bytes decode.
    pub asm: Option<String>,
}

impl fmt::Display for FaultDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        writeln!(f, "vcpu {} stopped: {}", r.cpu, r.fatal)?;
        write!(f, "  rip {:#x}", r.rip)?;
        if let Some(gpa) = r.rip_gpa {
            write!(f, " (guest-physical {gpa:#x})")?;
        }
        write!(f, ", {}-bit code", r.bitness)?;
        if !self.insn.is_empty() {
            let hex: Vec<String> = self.insn.iter().map(|b| format!("{b:02x}")).collect();
            write!(f, "\n  instruction: {}", hex.join(" "))?;
            match &self.asm {
                Some(asm) => write!(f, "  ({asm})")?,
                None => write!(f, "  (does not decode)")?,
            }
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The guest wrote its status to the debug-exit port.
    GuestExit(u8),
    /// A vCPU stopped on an error.
    Fault(Box<FaultDetails>),
    /// Ended from outside the guest through an [`EndHandle`].
    Stopped,
    /// The D program called `exit(n)`.
    TraceExit(u8),
    /// `--timeout` expired; the state of every vCPU.
    Timeout {
        /// The timeout.
        after: Duration,
        /// Per-vCPU state.
        vcpus: Vec<VcpuStatus>,
    },
}

impl Outcome {
    /// The process exit status this outcome maps to.
    pub fn exit_status(&self) -> u8 {
        match self {
            Outcome::GuestExit(v) => *v,
            Outcome::Fault(_) => STATUS_GUEST_ERROR,
            Outcome::Timeout { .. } => STATUS_TIMEOUT,
            Outcome::Stopped => STATUS_STOPPED,
            Outcome::TraceExit(v) => *v,
        }
    }
}

/// Where threads report the end of a run; the first report wins.
pub(crate) enum Ending {
    /// A guest exit.
    Exit(u8),
    /// A fatal vCPU exit (decoded later by the controller, which owns guest memory).
    Fatal(FatalReport),
    /// Someone outside the guest ended the run.
    Stopped,
}

/// Ends a running VM from any thread (tests, benchmarks, a future control socket).
#[derive(Clone)]
pub struct EndHandle(pub(crate) std::sync::Arc<EndSignal>);

impl EndHandle {
    /// Ends the run: the vCPUs stop and `Vm::run` returns [`Outcome::Stopped`] (unless the run
    /// already ended otherwise).
    pub fn end(&self) {
        self.0.finish(Ending::Stopped);
    }
}

/// The rendezvous between vCPU threads and the controller.
#[derive(Default)]
pub(crate) struct EndSignal {
    ending: Mutex<Option<Ending>>,
    changed: Condvar,
    /// Set once any ending was recorded (read on every exit, so lock-free).
    finished: AtomicBool,
}

impl EndSignal {
    /// Records `ending` unless another came first.
    pub fn finish(&self, ending: Ending) {
        let mut slot = self.ending.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() && !self.finished.load(Ordering::SeqCst) {
            *slot = Some(ending);
            self.finished.store(true, Ordering::SeqCst);
            self.changed.notify_all();
        }
    }

    /// Whether the run has ended (a guest exit or a fatal exit was recorded).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Waits for an ending until `timeout` (forever when `None`).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Ending> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = self.ending.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = slot.take() {
                return Some(e);
            }
            slot = match deadline {
                None => self.changed.wait(slot).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.changed
                        .wait_timeout(slot, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ending_wins() {
        let s = EndSignal::default();
        s.finish(Ending::Exit(3));
        s.finish(Ending::Exit(4));
        assert!(matches!(
            s.wait(Some(Duration::ZERO)),
            Some(Ending::Exit(3))
        ));
    }

    #[test]
    fn wait_times_out() {
        let s = EndSignal::default();
        assert!(s.wait(Some(Duration::from_millis(10))).is_none());
    }
}
