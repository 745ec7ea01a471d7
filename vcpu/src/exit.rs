//! What a vCPU exit means to the VMM: the handler trait, exit kinds and fatal reports.

use std::fmt;

use crate::debug::{DebugEvent, GuestDebug};

/// A short, copyable description of an exit, kept as the vCPU's "last exit".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitKind {
    /// No exit yet.
    #[default]
    None,
    /// Port I/O.
    Io {
        /// Port number.
        port: u16,
        /// True for `out`.
        write: bool,
    },
    /// Memory-mapped I/O.
    Mmio {
        /// Guest-physical address.
        addr: u64,
        /// True for a write.
        write: bool,
    },
    /// `hlt`.
    Hlt,
    /// `KVM_EXIT_IRQ_WINDOW_OPEN`: the guest can take an interrupt again.
    IrqWindow,
    /// `KVM_EXIT_SET_TPR`: the guest lowered CR8.
    SetTpr,
    /// `KVM_EXIT_DEBUG` after a single step.
    Debug,
    /// `KVM_EXIT_DEBUG` for a breakpoint (`int3` under `KVM_GUESTDBG_USE_SW_BP`, or DR0-DR3).
    Breakpoint {
        /// The exception: 3 (`int3`) or 1 (hardware breakpoint).
        exception: u32,
        /// The address KVM reported.
        pc: u64,
    },
    /// `KVM_EXIT_IOAPIC_EOI`: an EOI for a user-space IOAPIC's level-triggered vector.
    IoapicEoi(u8),
    /// `rdmsr` / `wrmsr` exiting to user space.
    Msr {
        /// MSR index.
        index: u32,
        /// True for `wrmsr`.
        write: bool,
    },
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError,
    /// `KVM_EXIT_SHUTDOWN` (triple fault).
    Shutdown,
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry,
    /// `KVM_EXIT_SYSTEM_EVENT`.
    SystemEvent,
    /// Any other exit, with KVM's exit reason number.
    Other(u32),
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitKind::None => f.write_str("none"),
            ExitKind::Io { port, write } => {
                write!(f, "io {} port {port:#x}", if *write { "out" } else { "in" })
            }
            ExitKind::Mmio { addr, write } => {
                write!(
                    f,
                    "mmio {} {addr:#x}",
                    if *write { "write" } else { "read" }
                )
            }
            ExitKind::Hlt => f.write_str("hlt"),
            ExitKind::IrqWindow => f.write_str("interrupt window"),
            ExitKind::SetTpr => f.write_str("cr8 lowered"),
            ExitKind::Debug => f.write_str("debug (single step)"),
            ExitKind::Breakpoint { exception, pc } => {
                write!(f, "debug (breakpoint, exception {exception}) at {pc:#x}")
            }
            ExitKind::IoapicEoi(v) => write!(f, "ioapic eoi vector {v:#x}"),
            ExitKind::Msr { index, write } => {
                write!(f, "{} {index:#x}", if *write { "wrmsr" } else { "rdmsr" })
            }
            ExitKind::InternalError => f.write_str("internal error"),
            ExitKind::Shutdown => f.write_str("shutdown"),
            ExitKind::FailEntry => f.write_str("fail entry"),
            ExitKind::SystemEvent => f.write_str("system event"),
            ExitKind::Other(n) => write!(f, "exit reason {n}"),
        }
    }
}

/// Why a vCPU stopped for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// `KVM_EXIT_INTERNAL_ERROR`; suberror 1 is an instruction KVM could not emulate.
    InternalError {
        /// KVM's suberror (1 = emulation failure).
        suberror: u32,
        /// The instruction bytes KVM reported, if any.
        insn: Vec<u8>,
    },
    /// `KVM_EXIT_SHUTDOWN`: a triple fault or an explicit shutdown.
    Shutdown,
    /// `KVM_EXIT_FAIL_ENTRY`: the hardware refused to enter the guest.
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// `KVM_EXIT_SYSTEM_EVENT` (reset, shutdown, crash request).
    SystemEvent {
        /// KVM's event type.
        kind: u32,
    },
    /// A device handler could not handle an access.
    Unhandled {
        /// What the access was.
        what: String,
    },
    /// An exit this VMM does not expect in its configuration.
    Unexpected {
        /// The exit, as KVM's name or number.
        exit: String,
    },
    /// `KVM_RUN` itself failed.
    RunFailed {
        /// The errno.
        errno: i32,
    },
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::InternalError { suberror: 1, .. } => f.write_str(
                "KVM could not emulate an instruction (KVM_EXIT_INTERNAL_ERROR, emulation failure)",
            ),
            Fatal::InternalError { suberror, .. } => {
                write!(f, "KVM internal error, suberror {suberror}")
            }
            Fatal::Shutdown => f.write_str("shutdown (triple fault)"),
            Fatal::FailEntry { reason } => {
                write!(f, "VM entry failed, hardware reason {reason:#x}")
            }
            Fatal::SystemEvent { kind } => write!(f, "system event type {kind}"),
            Fatal::Unhandled { what } => write!(f, "unhandled access: {what}"),
            Fatal::Unexpected { exit } => write!(f, "unexpected exit {exit}"),
            Fatal::RunFailed { errno } => write!(
                f,
                "KVM_RUN failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

/// `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES`: the emulation-failure exit carries the
/// instruction bytes.
const EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1;

impl Fatal {
    /// Decodes `kvm_run.internal` / `kvm_run.emulation_failure` after a
    /// `KVM_EXIT_INTERNAL_ERROR` (with the instruction bytes KVM reports for an emulation
    /// failure); `None` when `run` holds another exit.
    pub fn from_internal_error(run: &kvm_bindings::kvm_run) -> Option<Fatal> {
        if run.exit_reason != kvm_bindings::KVM_EXIT_INTERNAL_ERROR {
            return None;
        }
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so the `internal` union member is the
        // one KVM filled in (and every bit pattern is a valid value of its plain integers).
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let mut insn = Vec::new();
        if internal.suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION && internal.ndata >= 2 {
            // emulation_failure layout: data[0] = flags, then insn_size (u8) + 15 bytes.
            let flags = internal.data[0];
            if flags & EMULATION_FLAG_INSTRUCTION_BYTES != 0 {
                let mut raw = [0u8; 16];
                raw[..8].copy_from_slice(&internal.data[1].to_le_bytes());
                raw[8..].copy_from_slice(&internal.data[2].to_le_bytes());
                let size = usize::from(raw[0]).min(15);
                insn.extend_from_slice(&raw[1..1 + size]);
            }
        }
        Some(Fatal::InternalError {
            suberror: internal.suberror,
            insn,
        })
    }
}

/// Everything known about a vCPU at the moment it stopped for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatalReport {
    /// vCPU index.
    pub cpu: usize,
    /// The reason.
    pub fatal: Fatal,
    /// Guest RIP (as KVM left it).
    pub rip: u64,
    /// Guest-physical address of RIP, when it translates.
    pub rip_gpa: Option<u64>,
    /// Code size at RIP: 16, 32 or 64.
    pub bitness: u32,
}

/// What the VMM's interrupt controller wants done before the next `KVM_RUN`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The guest can take an external interrupt now (`ready_for_interrupt_injection` and
    /// RFLAGS.IF from the last exit). Filled in by the vCPU layer.
    pub interruptible: bool,
    /// CR8 to enter with (TPR >> 4): the vCPU layer fills in the current value, the handler
    /// sets it from the TPR.
    pub cr8: u64,
    /// Vector to inject with `KVM_INTERRUPT` (only when `interruptible`).
    pub inject: Option<u8>,
    /// Inject an NMI.
    pub nmi: bool,
    /// Ask KVM for an interrupt-window exit (an interrupt is pending but cannot be taken).
    pub want_window: bool,
}

/// An MSR access the guest must see fail with #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("#GP: the MSR access is not allowed")]
pub struct GeneralProtection;

/// A start-up signal for a vCPU whose local APIC is emulated in user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// INIT: reset and wait for a SIPI.
    Init,
    /// SIPI with its vector: start in real mode at `vector << 12`.
    Sipi(u8),
}

/// Why a vCPU is parked in user space by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestWait {
    /// After `hlt`; `interrupts_enabled` is RFLAGS.IF at the `hlt`.
    Hlt {
        /// RFLAGS.IF when the guest halted.
        interrupts_enabled: bool,
    },
    /// An application processor after reset or INIT, waiting for a SIPI.
    Sipi,
}

/// How the vCPU layer should treat a trap exit: a `hlt` ([`ExitHandler::hlt`]) or a breakpoint
/// ([`ExitHandler::debug`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HltAction {
    /// The exit was a probe trap: the handler changed the registers (RIP past the displaced
    /// instruction); write them back and run on.
    Resume,
    /// Park the thread in user space until [`ExitHandler::wakeup_pending`] says so (user-space
    /// APIC only; after a breakpoint: the handler emulated a displaced `hlt`).
    Park,
    /// The exit should not reach user space in this configuration: end the vCPU.
    Unexpected,
    /// The exit was a probe trap whose displaced instruction must run on the CPU: the handler
    /// restored the original bytes (or, for a hardware breakpoint, took the site out of its
    /// [`crate::GuestDebug`] configuration) and set RIP to the instruction; single-step one
    /// instruction (no interrupt injected), then call [`ExitHandler::step_done`].
    SingleStep,
}

/// What a vCPU hands over when asked for its kernel state (`ExitHandler::kernel_state`).
#[derive(Clone, Copy, Debug)]
pub struct KernelState {
    /// Its system registers (IDTR, CR3, ...).
    pub sregs: kvm_bindings::kvm_sregs,
    /// `IA32_LSTAR`, the 64-bit `syscall` entry point (0 until the kernel sets it).
    pub lstar: u64,
    /// Its general registers.
    pub regs: kvm_bindings::kvm_regs,
}

/// The VMM side of exit handling, called on the vCPU's own thread.
///
/// Returning `Err` ends this vCPU with a [`Fatal::Unhandled`] report. The methods with default
/// bodies matter only when the local APIC is emulated in user space
/// ([`ExitHandler::user_space_apic`]); with KVM's in-kernel APIC the defaults are right.
pub trait ExitHandler: Send + Sync + 'static {
    /// Whether the local APIC of this VM lives in user space: then application processors
    /// wait in user space for INIT/SIPI, `hlt` parks the thread, and interrupts are injected by
    /// the vCPU layer before each `KVM_RUN`.
    fn user_space_apic(&self) -> bool {
        false
    }
    /// Called before each `KVM_RUN` (user-space APIC only): mirror the TPR into CR8 and choose
    /// an injection.
    fn before_entry(&self, _cpu: usize, _entry: &mut Entry) {}
    /// The guest changed CR8 itself (`mov %reg,%cr8`); called on the next exit, before that
    /// exit is handled (user-space APIC only).
    fn guest_cr8(&self, _cpu: usize, _cr8: u64) {}
    /// Whether `cpu` owes the handler a register sample (the tracer's `profile-N`): checked
    /// on every kicked return from `KVM_RUN` (`EINTR`), so it must be cheap.
    fn wants_sample(&self, _cpu: usize) -> bool {
        false
    }
    /// `cpu` was kicked out of the guest at `regs` and owed a sample.
    fn sample(&self, _cpu: usize, _regs: &kvm_bindings::kvm_regs) {}
    /// Whether `cpu` owes the handler its kernel state ([`KernelState`]: a KASLR slide to
    /// find): checked on every kicked return from `KVM_RUN` (`EINTR`), so it must be cheap.
    fn wants_kernel_state(&self, _cpu: usize) -> bool {
        false
    }
    /// `cpu` was kicked out of the guest and owed its kernel state. Called on its thread,
    /// outside any lock: the handler may stop the world here (this vCPU counts as stopped).
    fn kernel_state(&self, _cpu: usize, _state: &KernelState) {}
    /// Whether the handler wants the vCPU's system registers at trap exits (asked once per
    /// vCPU thread; when true and `kvm_run` sync_regs are available, KVM copies them out on
    /// every exit, a fraction of a microsecond here).
    fn wants_sregs(&self) -> bool {
        false
    }
    /// The system registers of `cpu` as of this exit, given before [`ExitHandler::hlt`],
    /// [`ExitHandler::debug`] and [`ExitHandler::sample`] when [`ExitHandler::wants_sregs`]
    /// (the tracer walks the guest's page tables with CR0, CR3 and CR4).
    fn trap_sregs(&self, _cpu: usize, _sregs: &kvm_bindings::kvm_sregs) {}
    /// Whether to read `MSR_KERNEL_GS_BASE` at trap exits whose GS base is not a kernel
    /// (upper-half) address (asked at each such exit, so it must be cheap; the read is one
    /// `KVM_GET_MSRS`). Linux's per-CPU base is there while the vCPU is in user mode or in
    /// kernel entry code before `swapgs`.
    fn wants_kernel_gs_base(&self) -> bool {
        false
    }
    /// `MSR_KERNEL_GS_BASE` of `cpu` at this exit, given right after
    /// [`ExitHandler::trap_sregs`] when [`ExitHandler::wants_kernel_gs_base`] and the GS base
    /// is not a kernel address.
    fn trap_kernel_gs_base(&self, _cpu: usize, _base: u64) {}
    /// Whether the handler wants the in-kernel local APIC's state (`KVM_GET_LAPIC`) when each
    /// vCPU leaves its loop (asked once, at that moment).
    fn wants_final_lapic(&self) -> bool {
        false
    }
    /// `cpu`'s in-kernel local APIC as its thread leaves the loop (only with an in-kernel
    /// irqchip, and only when [`ExitHandler::wants_final_lapic`]).
    fn final_lapic(&self, _cpu: usize, _lapic: &kvm_bindings::kvm_lapic_state) {}
    /// `cpu`'s thread moved to `state` (`Running`, `Halted` by the guest, `Paused` by the
    /// VMM), for timelines. Called on that thread, possibly under its control lock: must not
    /// block or kick.
    fn run_state(&self, _cpu: usize, _state: crate::RunState) {}
    /// An exit the vCPU layer handles by itself (`SetTpr`, `IrqWindow`, `Shutdown`,
    /// `InternalError`), reported for tracing before it takes effect.
    fn exit_seen(&self, _cpu: usize, _kind: ExitKind) {}
    /// Reads `buf.len()` bytes of guest-virtual memory at `addr` as `cpu` (with system
    /// registers `sregs`) sees it, for an instruction the vCPU layer completes itself
    /// (`crate::bmi`); false when it cannot (the default: no guest memory).
    fn read_guest(
        &self,
        _cpu: usize,
        _sregs: &kvm_bindings::kvm_sregs,
        _addr: u64,
        _buf: &mut [u8],
    ) -> bool {
        false
    }

    /// `cpu` executed an `int3` of its own that the host could not run (an emulation failure
    /// on `0xCC`): how to inject #BP instead, or `None` to end the VM with the failure.
    fn int3_reflection(&self, _cpu: usize) -> Option<crate::Int3Reflection> {
        None
    }
    /// Guest RAM, for completing an instruction the host could not run whose operand is in
    /// memory (`crate::missing`); `None` leaves such failures fatal.
    fn guest_ram(&self) -> Option<&dyn crate::missing::GuestRam> {
        None
    }
    /// A pending INIT or SIPI for `cpu`, taken (user-space APIC only).
    fn take_startup(&self, _cpu: usize) -> Option<Startup> {
        None
    }
    /// What a `hlt` exit means; `regs` are the vCPU's registers (RIP after the `hlt`), which
    /// the handler may change for [`HltAction::Resume`].
    fn hlt(&self, _cpu: usize, _regs: &mut kvm_bindings::kvm_regs) -> Result<HltAction, String> {
        Ok(HltAction::Unexpected)
    }
    /// Whether a vCPU parked in `wait` has something that ends the wait (an interrupt it can
    /// take, an NMI, INIT or SIPI). Called with the vCPU's control lock held, so whoever
    /// kicks a vCPU must not hold a lock that this method takes.
    fn wakeup_pending(&self, _cpu: usize, _wait: GuestWait) -> bool {
        true
    }
    /// `rdmsr` of an MSR that exits to user space; an error injects #GP.
    fn msr_read(&self, _cpu: usize, _index: u32) -> Result<u64, GeneralProtection> {
        Err(GeneralProtection)
    }
    /// `wrmsr` of an MSR that exits to user space; an error injects #GP.
    fn msr_write(&self, _cpu: usize, _index: u32, _value: u64) -> Result<(), GeneralProtection> {
        Err(GeneralProtection)
    }
    /// An `in` instruction: fill `data`.
    fn io_in(&self, cpu: usize, port: u16, data: &mut [u8]) -> Result<(), String>;
    /// An `out` instruction.
    fn io_out(&self, cpu: usize, port: u16, data: &[u8]) -> Result<(), String>;
    /// A read from an address with no memory: fill `data`.
    fn mmio_read(&self, cpu: usize, addr: u64, data: &mut [u8]) -> Result<(), String>;
    /// A write to an address with no memory.
    fn mmio_write(&self, cpu: usize, addr: u64, data: &[u8]) -> Result<(), String>;
    /// The vCPU stopped for good; called once, before the thread leaves its loop.
    fn fatal(&self, report: FatalReport);
    /// A `KVM_EXIT_DEBUG` that is a breakpoint (an `int3` under `KVM_GUESTDBG_USE_SW_BP`, or a
    /// hardware breakpoint from DR0-DR3), not the end of a single step the vCPU layer asked
    /// for. `regs` are the vCPU's registers (RIP at the `int3` or the breakpoint address),
    /// which the handler may change for [`HltAction::Resume`] or [`HltAction::SingleStep`].
    /// The default ends the vCPU: breakpoints are only configured by a handler that handles
    /// them ([`ExitHandler::guest_debug`]).
    fn debug(
        &self,
        _cpu: usize,
        _regs: &mut kvm_bindings::kvm_regs,
        _event: DebugEvent,
    ) -> Result<HltAction, String> {
        Ok(HltAction::Unexpected)
    }
    /// The breakpoint configuration for `cpu`, if this handler uses guest debugging. Polled
    /// before every `KVM_RUN` (one atomic load of [`GuestDebug::generation`]) and applied with
    /// `KVM_SET_GUEST_DEBUG` when its generation changed; single-step is OR-ed in by the vCPU
    /// layer. Must return the same object for a given `cpu` every time.
    fn guest_debug(&self, _cpu: usize) -> Option<&GuestDebug> {
        None
    }
    /// The single step asked for by [`HltAction::SingleStep`] completed.
    fn step_done(&self, _cpu: usize) -> Result<(), String> {
        Ok(())
    }
    /// `KVM_EXIT_IOAPIC_EOI` (split irqchip): the guest EOI'd a level-triggered `vector` that
    /// a user-space IOAPIC delivered.
    fn ioapic_eoi(&self, _cpu: usize, _vector: u8) -> Result<(), String> {
        Ok(())
    }
    /// Checked after every handled exit: when true the vCPU does not re-enter the guest and
    /// leaves its loop (the VM is ending, e.g. the guest wrote its exit status).
    fn vm_ending(&self) -> bool {
        false
    }
}
