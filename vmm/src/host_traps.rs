//! Which trap a probe can use on this host, decided by asking KVM, not by assuming.
//!
//! Three probes, each in a throwaway VM (one vCPU, 64 KiB of RAM, 64-bit long mode at CPL0
//! with the VMM's own GDT and identity page tables, as the real guests run):
//! - **int3**: `nop; int3; hlt` with `KVM_SET_GUEST_DEBUG(ENABLE | USE_SW_BP)`: works when the
//!   `int3` gives `KVM_EXIT_DEBUG`, exception 3, at the `int3`'s address, and the vCPU then runs
//!   on from past it to the `hlt`. (A nested software KVM fails to emulate the `int3` instead.)
//! - **hardware breakpoint**: `nop; nop; hlt` with DR0 on the second `nop`
//!   (`USE_HW_BP`): works when that gives `KVM_EXIT_DEBUG`, exception 1, at that address, and
//!   the vCPU, with RIP moved past the `nop` and the breakpoint still armed, runs on to the
//!   `hlt`.
//! - **single-step**: the same code with `SINGLESTEP`: works when each of two steps exits
//!   with `KVM_EXIT_DEBUG` at the next instruction.
//!
//! Every probe runs on its own thread and is bounded: past [`PROBE_BOUND`] its vCPU is kicked
//! out of `KVM_RUN` (`immediate_exit` and the vCPU layer's kick signal) and the probe reports
//! [`ProbeOutcome::TimedOut`]; a thread that still does not answer is left behind, never waited
//! on. [`choose_strategy`] turns the results and the irqchip mode into a [`TrapStrategy`]
//! (pure); [`trap_strategy`] probes once per process and chooses.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_guest_debug, kvm_run, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vcpu::debug::{BP_VECTOR, DB_VECTOR, HW_BREAKPOINTS};
use vcpu::{DebugConfig, Fatal};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::boot::{gdt, long_mode_sregs, page_table_entries};
use crate::cpuid::patch_for_vcpu;
use crate::disasm::decode_one;
use crate::irqchip::IrqChipMode;
use crate::layout::{GDT_ADDR, GUEST_LOW_START};

/// How long one probe may take before its vCPU is kicked out and it counts as timed out.
pub const PROBE_BOUND: Duration = Duration::from_secs(1);
/// How many sites hardware breakpoints can trap at once (DR0-DR3).
pub const MAX_HW_BREAKPOINT_SITES: usize = HW_BREAKPOINTS;

/// RAM of a probe VM: the GDT and page tables below [`GUEST_LOW_START`], code at it.
const PROBE_MEM: usize = 0x1_0000;
/// Where a probe's code goes.
pub(crate) const CODE: u64 = GUEST_LOW_START;
/// A probe's stack pointer (nothing is pushed; set for a sane state).
const STACK: u64 = PROBE_MEM as u64 - 0x10;

const NOP: u8 = 0x90;
const INT3: u8 = 0xcc;
const HLT: u8 = 0xf4;

/// What KVM did when a probe ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The exits came exactly as a trap of this kind needs them.
    Works,
    /// `KVM_EXIT_DEBUG`, but not the expected exception or address.
    WrongDebugExit {
        /// What was expected ("exception 3 at 0x8001").
        expected: String,
        /// The exception KVM reported.
        exception: u32,
        /// The address KVM reported (`debug.arch.pc`).
        pc: u64,
    },
    /// `KVM_EXIT_INTERNAL_ERROR` with suberror 1: KVM could not emulate an instruction.
    EmulationFailure {
        /// The instruction bytes KVM reported (may be empty).
        bytes: Vec<u8>,
    },
    /// Another exit than the one expected at that point, described.
    OtherExit(String),
    /// The probe did not finish within its bound (its vCPU was kicked out).
    TimedOut(Duration),
    /// The probe VM could not be set up (an ioctl failed, no `/dev/kvm`, ...).
    Error(String),
}

impl ProbeOutcome {
    /// Whether the trap works on this host.
    pub fn works(&self) -> bool {
        matches!(self, ProbeOutcome::Works)
    }

    /// A short machine-readable name of the outcome (for JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeOutcome::Works => "works",
            ProbeOutcome::WrongDebugExit { .. } => "wrong_debug_exit",
            ProbeOutcome::EmulationFailure { .. } => "emulation_failure",
            ProbeOutcome::OtherExit(_) => "other_exit",
            ProbeOutcome::TimedOut(_) => "timed_out",
            ProbeOutcome::Error(_) => "error",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Works => f.write_str("works"),
            ProbeOutcome::WrongDebugExit {
                expected,
                exception,
                pc,
            } => write!(
                f,
                "KVM_EXIT_DEBUG with exception {exception} at {pc:#x}, expected {expected}"
            ),
            ProbeOutcome::EmulationFailure { bytes } => match decode_one(bytes, 64, CODE) {
                // KVM reports the 15 bytes it fetched: name the one instruction.
                Some((len, asm)) => {
                    write!(f, "emulation failure of `{asm}` (")?;
                    for (i, b) in bytes[..len].iter().enumerate() {
                        write!(f, "{}{b:02x}", if i == 0 { "" } else { " " })?;
                    }
                    f.write_str(")")
                }
                None => f.write_str("emulation failure"),
            },
            ProbeOutcome::OtherExit(exit) => write!(f, "unexpected {exit}"),
            ProbeOutcome::TimedOut(after) => write!(f, "no exit within {} ms", after.as_millis()),
            ProbeOutcome::Error(why) => write!(f, "probe failed: {why}"),
        }
    }
}

/// One probe's outcome and how long it took (VM creation included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// What KVM did.
    pub outcome: ProbeOutcome,
    /// Wall time of the probe.
    pub took: Duration,
}

impl ProbeResult {
    /// A result with no time spent (for tests and callers that know the outcome).
    pub fn instant(outcome: ProbeOutcome) -> Self {
        ProbeResult {
            outcome,
            took: Duration::ZERO,
        }
    }
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.outcome, millis(self.took))
    }
}

/// What this host's KVM does with each kind of trap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTraps {
    /// `int3` with `KVM_GUESTDBG_USE_SW_BP`.
    pub int3: ProbeResult,
    /// A hardware execution breakpoint in DR0 with `KVM_GUESTDBG_USE_HW_BP`.
    pub hw_breakpoint: ProbeResult,
    /// `KVM_GUESTDBG_SINGLESTEP` (needed to step over a displaced instruction the VMM does not
    /// emulate).
    pub single_step: ProbeResult,
    /// Wall time of all probes together.
    pub took: Duration,
}

impl HostTraps {
    /// Probes this host (each probe bounded by [`PROBE_BOUND`]); a host without usable KVM
    /// gives [`ProbeOutcome::Error`] for every probe.
    pub fn probe() -> HostTraps {
        let start = Instant::now();
        let setup = probe_setup();
        let run = |probe: Probe| match &setup {
            Ok((kvm, cpuid)) => run_bounded(probe.script(), kvm, cpuid, PROBE_BOUND),
            Err(why) => ProbeResult::instant(ProbeOutcome::Error(why.clone())),
        };
        let int3 = run(Probe::Int3);
        let hw_breakpoint = run(Probe::HwBreakpoint);
        let single_step = run(Probe::SingleStep);
        HostTraps {
            int3,
            hw_breakpoint,
            single_step,
            took: start.elapsed(),
        }
    }

    /// One line per probe, for `hvtrace run -v`.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("host probe: {}: {}", Probe::Int3, self.int3),
            format!(
                "host probe: {}: {}",
                Probe::HwBreakpoint,
                self.hw_breakpoint
            ),
            format!("host probe: {}: {}", Probe::SingleStep, self.single_step),
        ]
    }

    /// The probe results as a JSON object: `{"int3": {"outcome": "works", "detail": "...",
    /// "ms": 1.2}, "hw_breakpoint": ..., "single_step": ..., "ms": 3.4}`.
    pub fn to_json(&self) -> serde_json::Value {
        let one = |r: &ProbeResult| {
            serde_json::json!({
                "outcome": r.outcome.kind(),
                "detail": r.outcome.to_string(),
                "ms": ms_f64(r.took),
            })
        };
        serde_json::json!({
            "int3": one(&self.int3),
            "hw_breakpoint": one(&self.hw_breakpoint),
            "single_step": one(&self.single_step),
            "ms": ms_f64(self.took),
        })
    }
}

/// KVM and the CPUID of a one-vCPU probe VM.
pub(crate) fn probe_setup() -> Result<(Arc<Kvm>, Arc<kvm_bindings::CpuId>), String> {
    let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID failed: {e}"))?;
    patch_for_vcpu(&mut cpuid, 0, 1).map_err(|e| e.to_string())?;
    Ok((Arc::new(kvm), Arc::new(cpuid)))
}

/// The host's trap behaviour, probed on first use and kept for the life of the process (a
/// plain run that never asks pays nothing).
pub fn host_traps() -> &'static HostTraps {
    static HOST: OnceLock<HostTraps> = OnceLock::new();
    HOST.get_or_init(HostTraps::probe)
}

/// The trap strategy for a VM whose irqchip is `irqchip`, from [`host_traps`].
pub fn trap_strategy(irqchip: IrqChipMode) -> Result<TrapChoice, NoTrapStrategy> {
    choose_strategy(host_traps(), irqchip)
}

/// How probes trap on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapStrategy {
    /// `int3` patched over the site, `KVM_GUESTDBG_USE_SW_BP`, hits are `KVM_EXIT_DEBUG`.
    Int3,
    /// `hlt` patched over the site; hits are `KVM_EXIT_HLT` (user-space APIC only).
    Hlt,
    /// DR0-DR3 execution breakpoints, no text patched: at most
    /// [`MAX_HW_BREAKPOINT_SITES`] sites.
    HwBreakpoints,
}

impl TrapStrategy {
    /// Most trap sites this strategy can hold at once (`None`: no limit).
    pub fn max_sites(self) -> Option<usize> {
        match self {
            TrapStrategy::HwBreakpoints => Some(MAX_HW_BREAKPOINT_SITES),
            TrapStrategy::Int3 | TrapStrategy::Hlt => None,
        }
    }

    /// The short name (as printed and in JSON).
    pub fn name(self) -> &'static str {
        match self {
            TrapStrategy::Int3 => "int3",
            TrapStrategy::Hlt => "hlt",
            TrapStrategy::HwBreakpoints => "hw-breakpoints",
        }
    }
}

impl fmt::Display for TrapStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max_sites() {
            Some(n) => write!(f, "{} (at most {n} sites)", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// The chosen strategy and why, e.g. `trap strategy: hlt (int3+USE_SW_BP: emulation failure
/// on this host; irqchip emulated)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrapChoice {
    /// The strategy.
    pub strategy: TrapStrategy,
    /// Why it was chosen, from the probe results and the irqchip mode.
    pub reason: String,
}

impl TrapChoice {
    /// `{"strategy": "hlt", "max_sites": null, "reason": "..."}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "strategy": self.strategy.name(),
            "max_sites": self.strategy.max_sites(),
            "reason": self.reason,
        })
    }
}

impl TrapChoice {
    /// `{"trap_strategy": ..., "host_probes": ...}`: the first line of JSON trace output.
    pub fn announcement(&self) -> serde_json::Value {
        serde_json::json!({
            "trap_strategy": self.to_json(),
            "host_probes": host_traps().to_json(),
        })
    }
}

impl fmt::Display for TrapChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trap strategy: {} ({})", self.strategy, self.reason)
    }
}

/// No trap works on this host with this irqchip: probes cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no trap strategy works on this host, so probes cannot be placed: {reason}")]
pub struct NoTrapStrategy {
    /// What each strategy lacked.
    pub reason: String,
}

/// Chooses the trap strategy (pure): `int3` where KVM delivers it as `KVM_EXIT_DEBUG`; else
/// `hlt` when the APIC is hvtrace's own (`--irqchip emulated`: `hlt` exits to user space);
/// else hardware breakpoints when they work; else none.
pub fn choose_strategy(
    host: &HostTraps,
    irqchip: IrqChipMode,
) -> Result<TrapChoice, NoTrapStrategy> {
    let int3 = &host.int3.outcome;
    if int3.works() {
        return Ok(TrapChoice {
            strategy: TrapStrategy::Int3,
            reason: format!("{}: KVM_EXIT_DEBUG at the int3", Probe::Int3),
        });
    }
    let int3_why = format!("{}: {int3} on this host", Probe::Int3);
    if irqchip == IrqChipMode::Emulated {
        return Ok(TrapChoice {
            strategy: TrapStrategy::Hlt,
            reason: format!("{int3_why}; irqchip {irqchip}"),
        });
    }
    let hlt_why = format!(
        "hlt needs --irqchip emulated (with --irqchip {irqchip} a hlt does not exit to user space)"
    );
    let hw = &host.hw_breakpoint.outcome;
    if hw.works() {
        return Ok(TrapChoice {
            strategy: TrapStrategy::HwBreakpoints,
            reason: format!("{int3_why}; {hlt_why}"),
        });
    }
    Err(NoTrapStrategy {
        reason: format!("{int3_why}; {hlt_why}; {}: {hw}", Probe::HwBreakpoint),
    })
}

/// The probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Int3,
    HwBreakpoint,
    SingleStep,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Probe::Int3 => "int3+USE_SW_BP",
            Probe::HwBreakpoint => "hardware breakpoint (DR0)",
            Probe::SingleStep => "single-step",
        })
    }
}

/// A probe's expected exit, one per `KVM_RUN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// `KVM_EXIT_DEBUG` with this exception at this address.
    Debug { exception: u32, pc: u64 },
    /// `KVM_EXIT_HLT` (the probe's end).
    Hlt,
}

/// A probe's guest code (at [`CODE`]) and its steps.
struct Script {
    /// For the thread's name.
    name: &'static str,
    code: Vec<u8>,
    steps: Vec<Step>,
}

/// One step of a probe: what to set before the run, and the exit that must follow.
struct Step {
    /// RIP to set before running (`None`: leave it).
    rip: Option<u64>,
    /// The guest-debug configuration to run with.
    debug: kvm_guest_debug,
    /// The exit that must follow.
    expect: Expect,
}

impl Probe {
    /// The code at [`CODE`] and the steps.
    fn script(self) -> Script {
        let (name, code, steps) = match self {
            Probe::Int3 => {
                let sw = DebugConfig {
                    sw_breakpoints: true,
                    ..DebugConfig::default()
                }
                .to_kvm(false);
                let at = CODE + 1;
                (
                    "probe-int3",
                    vec![NOP, INT3, HLT],
                    vec![
                        Step {
                            rip: None,
                            debug: sw,
                            expect: Expect::Debug {
                                exception: BP_VECTOR,
                                pc: at,
                            },
                        },
                        // As a probe hit would: RIP past the int3 (the displaced instruction
                        // emulated), software breakpoints still on.
                        Step {
                            rip: Some(at + 1),
                            debug: sw,
                            expect: Expect::Hlt,
                        },
                    ],
                )
            }
            Probe::HwBreakpoint => {
                let at = CODE + 1;
                let hw = DebugConfig {
                    hw_breakpoints: [Some(at), None, None, None],
                    ..DebugConfig::default()
                }
                .to_kvm(false);
                (
                    "probe-hw-bp",
                    vec![NOP, NOP, HLT],
                    vec![
                        Step {
                            rip: None,
                            debug: hw,
                            expect: Expect::Debug {
                                exception: DB_VECTOR,
                                pc: at,
                            },
                        },
                        // The `nop` emulated: past it with the breakpoint still armed.
                        Step {
                            rip: Some(at + 1),
                            debug: hw,
                            expect: Expect::Hlt,
                        },
                    ],
                )
            }
            Probe::SingleStep => {
                let step = DebugConfig::default().to_kvm(true);
                let debug = |pc| Step {
                    rip: None,
                    debug: step,
                    expect: Expect::Debug {
                        exception: DB_VECTOR,
                        pc,
                    },
                };
                (
                    "probe-step",
                    vec![NOP, NOP, HLT],
                    vec![
                        debug(CODE + 1),
                        debug(CODE + 2),
                        Step {
                            rip: None,
                            debug: DebugConfig::default().to_kvm(false),
                            expect: Expect::Hlt,
                        },
                    ],
                )
            }
        };
        Script { name, code, steps }
    }
}

/// Where a probe thread is, for the kick: its `kvm_run` and its pthread, present only while
/// the thread owns a live vCPU fd.
#[derive(Default)]
pub(crate) struct KickSlot(Mutex<Option<(usize, libc::pthread_t)>>);

impl KickSlot {
    pub(crate) fn publish(&self, run: *mut kvm_run) {
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((run as usize, thread));
    }

    pub(crate) fn withdraw(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Sets `immediate_exit` and signals the thread, if it still has its vCPU.
    pub(crate) fn kick(&self) {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((run, thread)) = *slot {
            let run = run as *mut kvm_run;
            // SAFETY: the slot holds the pointer only while the probe thread's VcpuFd (which
            // owns the kvm_run mapping) is alive: the thread withdraws it under this lock
            // before dropping the fd. `immediate_exit` is a u8 KVM only reads, so an atomic
            // view of it (same size and alignment) is sound.
            unsafe { AtomicU8::from_ptr(std::ptr::addr_of_mut!((*run).immediate_exit)) }
                .store(1, Ordering::SeqCst);
            // SAFETY: the thread is alive (see above) and the kick signal has a handler
            // (installed before the thread started) that does nothing.
            unsafe {
                libc::pthread_kill(thread, vcpu::kick::kick_signal());
            }
        }
    }
}

/// Runs `script` on its own thread, bounded by `bound` (then the vCPU is kicked, and a thread
/// that still does not answer is left behind).
fn run_bounded(
    script: Script,
    kvm: &Arc<Kvm>,
    cpuid: &Arc<kvm_bindings::CpuId>,
    bound: Duration,
) -> ProbeResult {
    let (kvm, cpuid) = (Arc::clone(kvm), Arc::clone(cpuid));
    let name = script.name;
    let (outcome, took) = bounded(name, bound, move |slot| {
        run_script(&script, &kvm, &cpuid, slot)
    });
    ProbeResult {
        outcome: outcome.unwrap_or_else(|failed| failed),
        took,
    }
}

/// Runs `body` on a thread named `name`, bounded by `bound`: then the vCPU that `body`
/// published in its [`KickSlot`] is kicked, and a thread that still does not answer is left
/// behind. Returns what `body` returned (or why there is nothing) and the wall time.
pub(crate) fn bounded<T, F>(
    name: &str,
    bound: Duration,
    body: F,
) -> (Result<T, ProbeOutcome>, Duration)
where
    T: Send + 'static,
    F: FnOnce(&KickSlot) -> T + Send + 'static,
{
    let start = Instant::now();
    let result = |outcome| (outcome, start.elapsed());
    if let Err(e) = vcpu::kick::install_handler() {
        return result(Err(ProbeOutcome::Error(e.to_string())));
    }
    let slot = Arc::new(KickSlot::default());
    let (tx, rx) = mpsc::channel();
    let spawned = {
        let slot = Arc::clone(&slot);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let outcome = body(&slot);
                let _ = tx.send(outcome);
            })
    };
    if let Err(e) = spawned {
        return result(Err(ProbeOutcome::Error(format!(
            "cannot start a probe thread: {e}"
        ))));
    }
    match rx.recv_timeout(bound) {
        Ok(outcome) => return result(Ok(outcome)),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return result(Err(ProbeOutcome::Error("the probe thread died".into())))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => slot.kick(),
    }
    // Kicked: the thread should answer at once; whatever it says, this probe timed out.
    let _ = rx.recv_timeout(bound);
    result(Err(ProbeOutcome::TimedOut(bound)))
}

/// A probe VM: memory and fds live as long as this.
pub(crate) struct ProbeVm {
    pub(crate) vcpu: VcpuFd,
    _vm: VmFd,
    pub(crate) memory: GuestMemoryMmap,
}

/// Builds the VM for `code` (long mode, CPL0, RIP at [`CODE`], RSP at [`STACK`], 64 KiB of
/// RAM with the VMM's GDT and identity page tables).
pub(crate) fn probe_vm(
    kvm: &Kvm,
    cpuid: &kvm_bindings::CpuId,
    code: &[u8],
) -> Result<ProbeVm, String> {
    let ioctl = |what: &str| {
        let what = what.to_string();
        move |e: kvm_ioctls::Error| format!("{what} failed: {e}")
    };
    let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), PROBE_MEM)])
        .map_err(|e| format!("cannot map probe memory: {e}"))?;
    let write = |addr: u64, bytes: &[u8]| {
        memory
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|e| format!("cannot write probe memory at {addr:#x}: {e}"))
    };
    let table: Vec<u8> = gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    write(GDT_ADDR, &table)?;
    for (addr, entry) in page_table_entries() {
        write(addr, &entry.to_le_bytes())?;
    }
    write(CODE, code)?;
    let host = memory
        .get_host_address(GuestAddress(0))
        .map_err(|e| format!("probe memory has no host address: {e}"))?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: PROBE_MEM as u64,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: the range is a live anonymous mapping owned by `memory`, which `ProbeVm` keeps
    // until after the VM fd (its fields drop in order: vCPU, VM, memory).
    unsafe { vm.set_user_memory_region(region) }.map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
    let vcpu = vm.create_vcpu(0).map_err(ioctl("KVM_CREATE_VCPU"))?;
    vcpu.set_cpuid2(cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;
    let mut sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    long_mode_sregs(&mut sregs);
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    let regs = kvm_bindings::kvm_regs {
        rip: CODE,
        rsp: STACK,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
    Ok(ProbeVm {
        vcpu,
        _vm: vm,
        memory,
    })
}

/// The probe thread's body: build the VM, run its steps, compare each exit.
fn run_script(
    script: &Script,
    kvm: &Kvm,
    cpuid: &kvm_bindings::CpuId,
    slot: &KickSlot,
) -> ProbeOutcome {
    let mut vm = match probe_vm(kvm, cpuid, &script.code) {
        Ok(vm) => vm,
        Err(why) => return ProbeOutcome::Error(why),
    };
    slot.publish(vm.vcpu.get_kvm_run() as *mut kvm_run);
    let outcome = run_steps(&mut vm.vcpu, &script.steps);
    slot.withdraw();
    outcome
}

/// Runs each step and compares its exit with the expected one.
fn run_steps(vcpu: &mut VcpuFd, steps: &[Step]) -> ProbeOutcome {
    for step in steps {
        if let Some(rip) = step.rip {
            let mut regs = match vcpu.get_regs() {
                Ok(r) => r,
                Err(e) => return ProbeOutcome::Error(format!("KVM_GET_REGS failed: {e}")),
            };
            regs.rip = rip;
            if let Err(e) = vcpu.set_regs(&regs) {
                return ProbeOutcome::Error(format!("KVM_SET_REGS failed: {e}"));
            }
        }
        if let Err(e) = vcpu.set_guest_debug(&step.debug) {
            return ProbeOutcome::Error(format!("KVM_SET_GUEST_DEBUG failed: {e}"));
        }
        let got = match vcpu.run() {
            Ok(VcpuExit::Debug(arch)) => Expect::Debug {
                exception: arch.exception,
                pc: arch.pc,
            },
            Ok(VcpuExit::Hlt) => Expect::Hlt,
            Ok(VcpuExit::InternalError) => {
                return match Fatal::from_internal_error(vcpu.get_kvm_run()) {
                    Some(Fatal::InternalError { suberror: 1, insn }) => {
                        ProbeOutcome::EmulationFailure { bytes: insn }
                    }
                    Some(other) => ProbeOutcome::OtherExit(other.to_string()),
                    None => ProbeOutcome::OtherExit("KVM_EXIT_INTERNAL_ERROR".into()),
                };
            }
            Ok(other) => return ProbeOutcome::OtherExit(format!("exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR => return ProbeOutcome::TimedOut(PROBE_BOUND),
            Err(e) => return ProbeOutcome::Error(format!("KVM_RUN failed: {e}")),
        };
        if got != step.expect {
            return match (got, step.expect) {
                (Expect::Debug { exception, pc }, Expect::Debug { .. }) => {
                    ProbeOutcome::WrongDebugExit {
                        expected: step.expect.to_string(),
                        exception,
                        pc,
                    }
                }
                (got, _) => ProbeOutcome::OtherExit(format!("{got} (expected {})", step.expect)),
            };
        }
    }
    ProbeOutcome::Works
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Debug { exception, pc } => {
                write!(f, "KVM_EXIT_DEBUG with exception {exception} at {pc:#x}")
            }
            Expect::Hlt => f.write_str("KVM_EXIT_HLT"),
        }
    }
}

/// `1.234 ms`.
fn millis(d: Duration) -> String {
    format!("{:.3} ms", ms_f64(d))
}

fn ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(int3: ProbeOutcome, hw: ProbeOutcome) -> HostTraps {
        HostTraps {
            int3: ProbeResult::instant(int3),
            hw_breakpoint: ProbeResult::instant(hw),
            single_step: ProbeResult::instant(ProbeOutcome::Works),
            took: Duration::ZERO,
        }
    }

    fn emulation_failure() -> ProbeOutcome {
        ProbeOutcome::EmulationFailure { bytes: vec![0xcc] }
    }

    const MODES: [IrqChipMode; 3] = [IrqChipMode::Emulated, IrqChipMode::Kvm, IrqChipMode::Split];

    #[test]
    fn int3_wins_wherever_it_works() {
        for mode in MODES {
            for hw in [ProbeOutcome::Works, emulation_failure()] {
                let choice = choose_strategy(&host(ProbeOutcome::Works, hw), mode).unwrap();
                assert_eq!(choice.strategy, TrapStrategy::Int3);
            }
        }
    }

    #[test]
    fn hlt_when_int3_fails_and_the_apic_is_ours() {
        let choice = choose_strategy(
            &host(emulation_failure(), ProbeOutcome::Works),
            IrqChipMode::Emulated,
        )
        .unwrap();
        assert_eq!(choice.strategy, TrapStrategy::Hlt);
        assert_eq!(
            choice.to_string(),
            "trap strategy: hlt (int3+USE_SW_BP: emulation failure of `int3` (cc) on this \
             host; irqchip emulated)"
        );
        assert_eq!(choice.strategy.max_sites(), None);
    }

    #[test]
    fn hardware_breakpoints_when_int3_fails_and_the_apic_is_kvms() {
        for mode in [IrqChipMode::Kvm, IrqChipMode::Split] {
            let int3 = ProbeOutcome::OtherExit("exit Shutdown".into());
            let choice = choose_strategy(&host(int3, ProbeOutcome::Works), mode).unwrap();
            assert_eq!(choice.strategy, TrapStrategy::HwBreakpoints);
            assert_eq!(choice.strategy.max_sites(), Some(4));
            let line = choice.to_string();
            assert!(line.starts_with("trap strategy: hw-breakpoints (at most 4 sites) ("));
            assert!(line.contains(&format!("--irqchip {mode}")), "{line}");
        }
    }

    #[test]
    fn nothing_works_is_refused_naming_every_reason() {
        let hw = ProbeOutcome::TimedOut(PROBE_BOUND);
        let err = choose_strategy(&host(emulation_failure(), hw), IrqChipMode::Kvm).unwrap_err();
        let message = err.to_string();
        for part in [
            "no trap strategy",
            "int3+USE_SW_BP: emulation failure",
            "hlt needs --irqchip emulated",
            "hardware breakpoint (DR0): no exit within 1000 ms",
        ] {
            assert!(message.contains(part), "{part:?} missing in {message}");
        }
    }

    /// KVM for a test, or a loud SKIPPED line (also appended to `$HVTRACE_SKIP_LOG`, which
    /// `.ci/run` checks).
    fn kvm_or_skip(test: &str) -> Option<Kvm> {
        let e = match Kvm::new() {
            Ok(kvm) => return Some(kvm),
            Err(e) => e,
        };
        let line = format!("SKIPPED: {test}: needs /dev/kvm ({e})");
        eprintln!("{line}");
        if let Some(path) = std::env::var_os("HVTRACE_SKIP_LOG") {
            use std::io::Write;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            let _ = log.map(|mut f| writeln!(f, "{line}"));
        }
        None
    }

    #[test]
    fn a_probe_whose_guest_never_exits_is_kicked_out_and_times_out() {
        let Some(kvm) = kvm_or_skip("a_probe_whose_guest_never_exits_is_kicked_out") else {
            return;
        };
        let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
        let hang = Script {
            name: "probe-hang",
            // 1: jmp 1b
            code: vec![0xeb, 0xfe],
            steps: vec![Step {
                rip: None,
                debug: DebugConfig::default().to_kvm(false),
                expect: Expect::Hlt,
            }],
        };
        let bound = Duration::from_millis(100);
        let r = run_bounded(hang, &Arc::new(kvm), &Arc::new(cpuid), bound);
        assert_eq!(r.outcome, ProbeOutcome::TimedOut(bound));
        assert!(r.took < bound * 3, "{:?}", r.took);
    }

    #[test]
    fn outcomes_describe_themselves() {
        let wrong = ProbeOutcome::WrongDebugExit {
            expected: "KVM_EXIT_DEBUG with exception 3 at 0x8001".into(),
            exception: 1,
            pc: 0x8002,
        };
        assert_eq!(
            wrong.to_string(),
            "KVM_EXIT_DEBUG with exception 1 at 0x8002, expected KVM_EXIT_DEBUG with \
             exception 3 at 0x8001"
        );
        assert_eq!(
            ProbeOutcome::EmulationFailure { bytes: vec![] }.to_string(),
            "emulation failure"
        );
        assert_eq!(wrong.kind(), "wrong_debug_exit");
        let json = host(ProbeOutcome::Works, emulation_failure()).to_json();
        assert_eq!(json["int3"]["outcome"], "works");
        assert_eq!(json["hw_breakpoint"]["outcome"], "emulation_failure");
        let choice = TrapChoice {
            strategy: TrapStrategy::HwBreakpoints,
            reason: "r".into(),
        };
        assert_eq!(choice.to_json()["max_sites"], 4);
    }
}
