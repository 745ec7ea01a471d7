//! What the runtime needs from the VMM at a probe firing: the [`ProbeContext`] trait (the
//! vCPU's registers, guest memory, symbols and stack) and the probe's identity
//! ([`ProbeInfo`]).

use std::sync::Arc;

/// A guest memory read that failed: nothing mapped (or readable) at `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid address ({address:#x})")]
pub struct MemoryError {
    /// The first address that could not be read.
    pub address: u64,
}

/// The vCPU state and guest access the evaluator uses while a probe fires. The VMM
/// implements it over the stopped vCPU's registers and page tables.
pub trait ProbeContext {
    /// The vCPU number (`cpu`).
    fn cpu(&self) -> u32;
    /// Nanoseconds since the VM booted (`timestamp`; read once per firing).
    fn timestamp_ns(&self) -> u64;
    /// Nanoseconds since the Unix epoch (`walltimestamp`).
    fn walltimestamp_ns(&self) -> u64;
    /// Argument `n` (0-5) of the probed function, from the System V argument registers rdi,
    /// rsi, rdx, rcx, r8, r9. For return probes, `arg1` is the return value (rax), as in DTrace's
    /// fbt.
    fn arg(&self, n: usize) -> u64;
    /// Register number `n` (see [`crate::lang::registers`]), or `None` if there is none.
    fn reg(&self, n: usize) -> Option<u64>;
    /// The probed function's return address (`caller`).
    fn caller(&self) -> u64;
    /// Fills `buf` from guest virtual address `gva`.
    fn read_memory(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// `"func+0x12"` for an address, for `%a` and `stack()`; `None` if unknown.
    fn symbolize(&self, addr: u64) -> Option<String>;
    /// Up to `max` return addresses, innermost first; `None` where there is no unwinder for
    /// the guest image (no frame pointers).
    fn stack(&self, max: usize) -> Option<Vec<u64>>;
    /// The vCPU's kernel-mode GS base at the probe (Linux's per-CPU base): its GS base, or
    /// `MSR_KERNEL_GS_BASE` where GS holds a user base (user mode, or kernel entry before
    /// `swapgs`); `None` where the probe has no vCPU registers (BEGIN, END, tick-N, vmexit).
    fn gs_base(&self) -> Option<u64> {
        None
    }
}

/// A probe's identity: its ID and four-part name. The name parts are shared strings, so
/// `probefunc` and the like hand out the probe's own string without copying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeInfo {
    /// The probe's ID (as `hvtrace list` shows it; `id` in D).
    pub id: u32,
    /// Provider (`fbt`, `dtrace`, ...): `probeprov`.
    pub provider: Arc<str>,
    /// Module: `probemod`.
    pub module: Arc<str>,
    /// Function: `probefunc`.
    pub function: Arc<str>,
    /// Name (`entry`, `BEGIN`, ...): `probename`.
    pub name: Arc<str>,
}

impl ProbeInfo {
    /// A probe with the given ID and name parts.
    pub fn new(
        id: u32,
        provider: impl Into<Arc<str>>,
        module: impl Into<Arc<str>>,
        function: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            id,
            provider: provider.into(),
            module: module.into(),
            function: function.into(),
            name: name.into(),
        }
    }

    /// `dtrace:::BEGIN`, ID 1 as in DTrace.
    pub fn begin() -> Self {
        Self::new(1, "dtrace", "", "", "BEGIN")
    }

    /// `dtrace:::END`, ID 2.
    pub fn end() -> Self {
        Self::new(2, "dtrace", "", "", "END")
    }

    /// `dtrace:::ERROR`, ID 3.
    pub fn error() -> Self {
        Self::new(3, "dtrace", "", "", "ERROR")
    }
}

impl std::fmt::Display for ProbeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.provider, self.module, self.function, self.name
        )
    }
}
