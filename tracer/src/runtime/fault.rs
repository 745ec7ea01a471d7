//! Runtime errors of a clause: the faults that stop it and fire the ERROR probe.

use std::fmt;

/// Why a clause stopped. The `Display` form is DTrace's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A guest memory read failed at this address.
    BadAddress(u64),
    /// Division or remainder by zero.
    DivideByZero,
    /// `regs[N]` with a register the VMM does not provide.
    BadRegister(u64),
    /// `curthread` (and what is read through it) where the per-CPU base is not known: a
    /// probe without a vCPU (`None`), or a GS base that is not a kernel address (the vCPU
    /// was in user mode, or in kernel entry code before `swapgs`).
    NoPerCpuBase(Option<u64>),
}

impl Fault {
    /// DTrace's fault code (`DTRACEFLT_*`), passed to ERROR clauses as `arg4`.
    pub fn code(&self) -> u64 {
        match self {
            Fault::BadAddress(_) => 1,
            Fault::BadRegister(_) => 3,
            Fault::DivideByZero => 4,
            // DTRACEFLT_KPRIV: what it reads is not the kernel's.
            Fault::NoPerCpuBase(_) => 6,
        }
    }

    /// The faulting address or register, passed to ERROR clauses as `arg5` (0 if none).
    pub fn value(&self) -> u64 {
        match self {
            Fault::BadAddress(a) | Fault::BadRegister(a) => *a,
            Fault::DivideByZero | Fault::NoPerCpuBase(None) => 0,
            Fault::NoPerCpuBase(Some(gs)) => *gs,
        }
    }

    /// A short name for the kind of fault (used in JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::BadAddress(_) => "invalid address",
            Fault::DivideByZero => "divide-by-zero",
            Fault::BadRegister(_) => "invalid register",
            Fault::NoPerCpuBase(_) => "no per-CPU base",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::BadAddress(a) => write!(f, "invalid address ({a:#x})"),
            Fault::DivideByZero => f.write_str("divide-by-zero"),
            Fault::BadRegister(r) => write!(f, "invalid register ({r})"),
            Fault::NoPerCpuBase(None) => {
                f.write_str("no current task here: this probe has no vCPU (curthread is unknown)")
            }
            Fault::NoPerCpuBase(Some(gs)) => write!(
                f,
                "no current task here: the per-CPU base {gs:#x} (the GS base, or \
                 MSR_KERNEL_GS_BASE where GS held a user one) is not a kernel address, so \
                 curthread is unknown"
            ),
        }
    }
}
