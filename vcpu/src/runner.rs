//! The vCPU thread body: the `KVM_RUN` loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kvm_bindings::{kvm_interrupt, kvm_run};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

use crate::debug::{DebugConfig, DebugEvent, BP_VECTOR};
use crate::exit::{
    Entry, ExitHandler, ExitKind, Fatal, FatalReport, GuestWait, HltAction, Startup,
};
use crate::kick::immediate_exit;
use crate::realmode::sipi_state;

/// `IA32_KERNEL_GS_BASE`: the GS base `swapgs` exchanges with the current one.
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
use crate::state::{KickTarget, Request, RunState, Shared, Snapshot};

const KVMIO: u32 = 0xae;
// KVM_INTERRUPT: queue an external interrupt (no irqchip in the kernel). kvm-ioctls has no
// wrapper for it.
ioctl_iow_nr!(KVM_INTERRUPT, KVMIO, 0x86, kvm_interrupt);

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// Makes a vCPU's exit-handling epoch odd for its lifetime.
struct HandlingEpoch<'a>(&'a AtomicU64);

impl<'a> HandlingEpoch<'a> {
    fn enter(epoch: &'a AtomicU64) -> Self {
        epoch.fetch_add(1, Ordering::SeqCst);
        HandlingEpoch(epoch)
    }
}

impl Drop for HandlingEpoch<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Per-thread loop state.
pub(crate) struct Runner {
    pub fd: VcpuFd,
    pub shared: Arc<Shared>,
    pub handler: Arc<dyn ExitHandler>,
    pub use_sync_regs: bool,
    last_exit: ExitKind,
    exits: u64,
    /// The last exit was a PIO/MMIO/MSR exit whose completion happens on the next `KVM_RUN`.
    needs_completion: bool,
    /// The local APIC is in user space (cached from the handler).
    user_space_apic: bool,
    /// Why the guest has this vCPU parked, if it has.
    wait: Option<GuestWait>,
    /// CR8 as last synchronised with the APIC's TPR (user-space APIC only).
    entered_cr8: u64,
    /// A single step of a displaced instruction is in progress.
    stepping: bool,
    /// The handler publishes a breakpoint configuration ([`ExitHandler::guest_debug`], asked
    /// once): only then is its generation polled before each entry.
    polls_guest_debug: bool,
    /// Generation of the handler's [`crate::GuestDebug`] last applied (0: KVM's default, none).
    debug_generation: u64,
    /// The breakpoint configuration last applied (single-step is OR-ed in while `stepping`).
    debug_config: DebugConfig,
    /// KVM copies the system registers into `kvm_run` on every exit (the handler wants them).
    sync_sregs: bool,
    /// The vCPU has been told to run at least once (its first `Running` was reported).
    started: bool,
}

impl Runner {
    pub fn new(
        fd: VcpuFd,
        shared: Arc<Shared>,
        handler: Arc<dyn ExitHandler>,
        use_sync_regs: bool,
    ) -> Self {
        let user_space_apic = handler.user_space_apic();
        // Application processors wait for INIT/SIPI; with KVM's APIC, KVM holds them.
        let wait = (user_space_apic && shared.cpu != 0).then_some(GuestWait::Sipi);
        let polls_guest_debug = handler.guest_debug(shared.cpu).is_some();
        Runner {
            fd,
            shared,
            handler,
            use_sync_regs,
            last_exit: ExitKind::None,
            exits: 0,
            needs_completion: false,
            user_space_apic,
            wait,
            entered_cr8: 0,
            stepping: false,
            polls_guest_debug,
            debug_generation: 0,
            debug_config: DebugConfig::default(),
            sync_sregs: false,
            started: false,
        }
    }

    fn run_ptr(&mut self) -> *mut kvm_run {
        self.fd.get_kvm_run() as *mut kvm_run
    }

    fn set_immediate_exit(&mut self, value: u8) {
        let run = self.run_ptr();
        // SAFETY: `run` is this thread's own live kvm_run mapping, owned by `self.fd`.
        unsafe { immediate_exit(run) }.store(value, Ordering::SeqCst);
    }

    fn rip(&self) -> u64 {
        if self.use_sync_regs {
            self.fd.sync_regs().regs.rip
        } else {
            self.fd.get_regs().map(|r| r.rip).unwrap_or(0)
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            rip: self.rip(),
            last_exit: self.last_exit,
            exits: self.exits,
            wait: self.wait,
        }
    }

    /// Finishes a half-done PIO/MMIO exit so that registers are architecturally complete
    /// before the vCPU parks: one `KVM_RUN` with `immediate_exit = 1` completes the
    /// instruction and returns `EINTR` without running guest code.
    fn complete_pending_exit(&mut self) {
        if !self.needs_completion {
            return;
        }
        self.needs_completion = false;
        self.set_immediate_exit(1);
        let _ = self.fd.run();
        self.set_immediate_exit(0);
    }

    /// The thread body. Returns the vCPU fd so it is unmapped only after the thread is joined.
    pub fn run(mut self) -> VcpuFd {
        crate::world::set_current_vcpu(&self.shared);
        if self.use_sync_regs {
            self.fd.set_sync_valid_reg(SyncReg::Register);
            if self.handler.wants_sregs() {
                self.fd.set_sync_valid_reg(SyncReg::SystemRegister);
                self.sync_sregs = true;
            }
        }
        {
            let run = self.run_ptr();
            let mut ctl = self.shared.lock();
            ctl.kick_target = std::ptr::NonNull::new(run).map(|run| KickTarget {
                run,
                // SAFETY: pthread_self has no preconditions.
                thread: unsafe { libc::pthread_self() },
            });
        }
        self.main_loop();
        let snapshot = self.snapshot();
        let mut ctl = self.shared.lock();
        ctl.kick_target = None;
        ctl.state = RunState::Exited;
        ctl.snapshot = snapshot;
        self.shared.changed.notify_all();
        drop(ctl);
        self.fd
    }

    fn main_loop(&mut self) {
        loop {
            // Clear before reading the request: a kick after this point either is seen in the
            // request below or leaves immediate_exit set for the KVM_RUN that follows.
            self.set_immediate_exit(0);
            match self.shared.checkpoint() {
                Request::Run if !self.started => {
                    // The first run after the thread started paused (timelines begin here).
                    self.started = true;
                    self.handler.run_state(self.shared.cpu, RunState::Running);
                }
                Request::Run => {}
                Request::Pause => {
                    self.handler.run_state(self.shared.cpu, RunState::Paused);
                    self.park();
                    self.handler.run_state(self.shared.cpu, RunState::Running);
                    continue;
                }
                Request::Exit => {
                    self.complete_pending_exit();
                    self.report_final_lapic();
                    self.shared.set_state(RunState::Exiting);
                    return;
                }
            }
            if self.user_space_apic && !self.stepping {
                match self.prepare_entry() {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(fatal) => {
                        let report = self.report(fatal);
                        self.handler.fatal(report);
                        return;
                    }
                }
            }
            if let Err(fatal) = self.sync_guest_debug(false).and_then(|()| self.run_once()) {
                let report = self.report(fatal);
                self.handler.fatal(report);
                return;
            }
            if self.handler.vm_ending() {
                self.complete_pending_exit();
                self.report_final_lapic();
                self.shared.set_state(RunState::Exiting);
                return;
            }
        }
    }

    /// Hands the in-kernel local APIC's state to the handler as the vCPU leaves, when it wants
    /// it (fails quietly without an in-kernel irqchip).
    fn report_final_lapic(&self) {
        if self.handler.wants_final_lapic() {
            if let Ok(lapic) = self.fd.get_lapic() {
                self.handler.final_lapic(self.shared.cpu, &lapic);
            }
        }
    }

    /// Parks until the request is no longer `Pause`.
    fn park(&mut self) {
        self.complete_pending_exit();
        let snapshot = self.snapshot();
        self.shared.park(snapshot);
    }

    /// User-space APIC work before `KVM_RUN`: INIT/SIPI, halts, CR8 and injection.
    /// Returns `Ok(false)` when the vCPU is (or was) parked and the loop must re-check its
    /// request before running.
    fn prepare_entry(&mut self) -> Result<bool, Fatal> {
        let cpu = self.shared.cpu;
        match self.handler.take_startup(cpu) {
            Some(Startup::Init) => self.wait = Some(GuestWait::Sipi),
            Some(Startup::Sipi(vector)) if self.wait == Some(GuestWait::Sipi) => {
                self.start_at(vector)?;
                self.wait = None;
            }
            // A SIPI to a vCPU that is not waiting for one is ignored (SDM 10.4.7.3... 8.4.3).
            Some(Startup::Sipi(_)) | None => {}
        }
        if let Some(wait) = self.wait {
            if self.handler.wakeup_pending(cpu, wait) {
                if let GuestWait::Hlt { .. } = wait {
                    self.wait = None;
                }
            } else {
                self.idle(wait);
            }
            if self.wait.is_some() {
                return Ok(false);
            }
        }
        let run = self.fd.get_kvm_run();
        let mut entry = Entry {
            interruptible: run.ready_for_interrupt_injection != 0 && run.if_flag != 0,
            cr8: self.entered_cr8,
            ..Entry::default()
        };
        self.handler.before_entry(cpu, &mut entry);
        run.cr8 = entry.cr8;
        self.entered_cr8 = entry.cr8;
        run.request_interrupt_window = u8::from(entry.want_window);
        if entry.nmi {
            self.fd.nmi().map_err(|e| Fatal::Unexpected {
                exit: format!("KVM_NMI failed: {e}"),
            })?;
        }
        if let Some(vector) = entry.inject.filter(|_| entry.interruptible) {
            let irq = kvm_interrupt {
                irq: u32::from(vector),
            };
            // SAFETY: KVM_INTERRUPT reads one kvm_interrupt from the pointer, which is valid
            // for the duration of the call; the fd is this thread's vCPU fd.
            let ret = unsafe { ioctl_with_ref(&self.fd, KVM_INTERRUPT(), &irq) };
            if ret < 0 {
                return Err(Fatal::Unexpected {
                    exit: format!(
                        "KVM_INTERRUPT of vector {vector} failed: {}",
                        std::io::Error::last_os_error()
                    ),
                });
            }
        }
        Ok(true)
    }

    /// Parks in [`RunState::Halted`] until the handler reports a wake-up or the request
    /// changes. The wake-up check runs under the control lock, and kickers take that lock to
    /// notify, so a wake-up between check and wait cannot be lost.
    fn idle(&mut self, wait: GuestWait) {
        let snapshot = self.snapshot();
        let shared = Arc::clone(&self.shared);
        let cpu = shared.cpu;
        let mut ctl = shared.lock();
        if ctl.request() != Request::Run || self.handler.wakeup_pending(cpu, wait) {
            return;
        }
        ctl.state = RunState::Halted;
        ctl.snapshot = snapshot;
        self.handler.run_state(cpu, RunState::Halted);
        shared.changed.notify_all();
        while ctl.request() == Request::Run && !self.handler.wakeup_pending(cpu, wait) {
            ctl = shared.changed.wait(ctl).unwrap_or_else(|p| p.into_inner());
        }
        ctl.state = RunState::Running;
        self.handler.run_state(cpu, RunState::Running);
        shared.changed.notify_all();
    }

    /// A `hlt` exit: a probe trap (registers changed and written back), a guest halt (park), or
    /// unexpected in this configuration.
    ///
    /// Called inside `run_once`'s exit-handling epoch (no epoch of its own: a nested one would
    /// make the epoch even while the handler runs, and `World::sync` would not wait for it).
    fn on_hlt(&mut self) -> Result<(), Fatal> {
        let cpu = self.shared.cpu;
        let mut regs = self.exit_regs("hlt")?;
        let action = self
            .handler
            .hlt(cpu, &mut regs)
            .map_err(|what| Fatal::Unhandled { what })?;
        match action {
            HltAction::Resume => self.write_regs(&regs),
            HltAction::Park => {
                let interrupts_enabled = self.fd.get_kvm_run().if_flag != 0;
                self.wait = Some(GuestWait::Hlt { interrupts_enabled });
                Ok(())
            }
            HltAction::Unexpected => Err(Fatal::Unexpected {
                exit: "KVM_EXIT_HLT (hlt with no irqchip to wait on)".into(),
            }),
            HltAction::SingleStep => self.start_step(&regs),
        }
    }

    /// A breakpoint exit (not the end of our own single step): handled like a `hlt` trap, by
    /// the handler's [`ExitHandler::debug`]. Called inside `run_once`'s epoch.
    fn on_debug(&mut self, event: DebugEvent) -> Result<(), Fatal> {
        let cpu = self.shared.cpu;
        let mut regs = self.exit_regs("KVM_EXIT_DEBUG")?;
        let action = self
            .handler
            .debug(cpu, &mut regs, event)
            .map_err(|what| Fatal::Unhandled { what })?;
        match action {
            HltAction::Resume => self.write_regs(&regs),
            HltAction::Park if self.user_space_apic => {
                // The handler emulated a displaced `hlt`: RIP is past it.
                self.write_regs(&regs)?;
                let interrupts_enabled = regs.rflags & RFLAGS_IF != 0;
                self.wait = Some(GuestWait::Hlt { interrupts_enabled });
                Ok(())
            }
            HltAction::Park => Err(Fatal::Unexpected {
                exit: format!(
                    "KVM_EXIT_DEBUG: {event}: the handler asked to park, but the APIC is not in user space"
                ),
            }),
            HltAction::Unexpected => Err(Fatal::Unexpected {
                exit: format!("KVM_EXIT_DEBUG: {event} (no breakpoint of this VMM there)"),
            }),
            HltAction::SingleStep => self.start_step(&regs),
        }
    }

    /// Whether a `KVM_EXIT_DEBUG` ends the single step in progress: a `#DB` for a step (DR6.BS,
    /// or no breakpoint bit), or any `#DB` when no hardware breakpoint is configured.
    fn ends_step(&self, event: &DebugEvent) -> bool {
        self.stepping
            && event.exception != BP_VECTOR
            && (event.is_single_step()
                || self.debug_config.hw_breakpoints.iter().all(Option::is_none))
    }

    /// The registers at a trap exit.
    fn exit_regs(&self, exit: &str) -> Result<kvm_bindings::kvm_regs, Fatal> {
        self.give_sregs();
        if self.use_sync_regs {
            Ok(self.fd.sync_regs().regs)
        } else {
            self.fd.get_regs().map_err(|e| Fatal::Unexpected {
                exit: format!("KVM_GET_REGS after {exit} failed: {e}"),
            })
        }
    }

    /// Delivers the guest's own `int3`, which the host failed to run, as an injected #BP.
    fn reflect_int3(&mut self, how: crate::Int3Reflection) -> Result<(), Fatal> {
        let mut regs = self.exit_regs("an int3 emulation failure")?;
        crate::reflect::inject_breakpoint(&self.fd, &mut regs, how).map_err(|e| {
            Fatal::Unexpected {
                exit: format!("KVM_SET_VCPU_EVENTS to reflect the guest's int3 failed: {e}"),
            }
        })?;
        self.write_regs(&regs)
    }

    /// Completes an `fwait` the host could not emulate (`crate::missing`); false when it
    /// cannot be completed (the emulation failure then stands).
    fn complete_fwait(&mut self) -> Result<bool, Fatal> {
        let mut regs = self.exit_regs("an fwait emulation failure")?;
        let failed = |e: kvm_ioctls::Error| Fatal::Unexpected {
            exit: format!("completing the guest's fwait failed: {e}"),
        };
        let sregs = self.fd.get_sregs().map_err(failed)?;
        match crate::missing::complete_fwait(&self.fd, &mut regs, &sregs).map_err(failed)? {
            crate::missing::Fwait::Unsupported => Ok(false),
            _ => self.write_regs(&regs).map(|()| true),
        }
    }

    /// Completes an `ldmxcsr`/`stmxcsr` the host could not emulate (`crate::missing`); false
    /// when `insn` is neither or it cannot be completed (the emulation failure then stands).
    fn complete_mxcsr(
        &mut self,
        insn: &[u8],
        ram: &dyn crate::missing::GuestRam,
    ) -> Result<bool, Fatal> {
        let mut regs = self.exit_regs("an ldmxcsr/stmxcsr emulation failure")?;
        let failed = |e: kvm_ioctls::Error| Fatal::Unexpected {
            exit: format!("completing the guest's ldmxcsr/stmxcsr failed: {e}"),
        };
        let sregs = self.fd.get_sregs().map_err(failed)?;
        match crate::missing::complete_mxcsr(&self.fd, &mut regs, &sregs, insn, ram)
            .map_err(failed)?
        {
            crate::missing::MxcsrOutcome::Unsupported(_) => Ok(false),
            _ => self.write_regs(&regs).map(|()| true),
        }
    }

    /// The vCPU's system registers, `IA32_LSTAR` and general registers, for
    /// [`ExitHandler::kernel_state`]; `None` when KVM refuses one of them.
    fn kernel_state(&self) -> Option<crate::KernelState> {
        const MSR_LSTAR: u32 = 0xc000_0082;
        let sregs = self.fd.get_sregs().ok()?;
        let regs = if self.use_sync_regs {
            self.fd.sync_regs().regs
        } else {
            self.fd.get_regs().ok()?
        };
        let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
            index: MSR_LSTAR,
            ..Default::default()
        }])
        .ok()?;
        let read = self.fd.get_msrs(&mut msrs).ok()?;
        let lstar = (read == 1).then(|| msrs.as_slice()[0].data)?;
        Some(crate::KernelState { sregs, lstar, regs })
    }

    /// Completes a register-form BMI instruction the host could not emulate
    /// (`crate::bmi`); false when it is not one (the emulation failure then stands).
    fn complete_bmi(&mut self, insn: &[u8]) -> Result<bool, Fatal> {
        let mut regs = self.exit_regs("a VEX emulation failure")?;
        // The system registers (an ioctl) only for a memory operand: most are registers.
        let (handler, cpu, fd) = (&self.handler, self.shared.cpu, &self.fd);
        let mut sregs = None;
        let mut read = |addr: u64, buf: &mut [u8]| {
            if sregs.is_none() {
                sregs = fd.get_sregs().ok();
            }
            sregs
                .as_ref()
                .is_some_and(|s| handler.read_guest(cpu, s, addr, buf))
        };
        if !crate::bmi::complete(insn, &mut regs, &mut read) {
            return Ok(false);
        }
        self.write_regs(&regs).map(|()| true)
    }

    /// Writes `regs` back and single-steps one instruction (see [`HltAction::SingleStep`]).
    fn start_step(&mut self, regs: &kvm_bindings::kvm_regs) -> Result<(), Fatal> {
        self.write_regs(regs)?;
        self.stepping = true;
        self.sync_guest_debug(true)
    }

    /// Hands the system registers of this exit to the handler, when it wants them and
    /// `kvm_run` carries them.
    fn give_sregs(&self) {
        if self.sync_sregs {
            let sregs = self.fd.sync_regs().sregs;
            self.handler.trap_sregs(self.shared.cpu, &sregs);
            if sregs.gs.base >> 63 == 0 && self.handler.wants_kernel_gs_base() {
                if let Some(base) = self.read_msr(MSR_KERNEL_GS_BASE) {
                    self.handler.trap_kernel_gs_base(self.shared.cpu, base);
                }
            }
        }
    }

    /// One MSR of this vCPU (`KVM_GET_MSRS`), or `None` if KVM does not give it.
    fn read_msr(&self, index: u32) -> Option<u64> {
        let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .ok()?;
        match self.fd.get_msrs(&mut msrs) {
            Ok(1) => msrs.as_slice().first().map(|e| e.data),
            _ => None,
        }
    }

    fn write_regs(&mut self, regs: &kvm_bindings::kvm_regs) -> Result<(), Fatal> {
        if self.use_sync_regs {
            self.fd.sync_regs_mut().regs = *regs;
            self.fd.set_sync_dirty_reg(SyncReg::Register);
            Ok(())
        } else {
            self.fd.set_regs(regs).map_err(|e| Fatal::Unexpected {
                exit: format!("KVM_SET_REGS after a probe hit failed: {e}"),
            })
        }
    }

    /// Applies the handler's breakpoint configuration (`KVM_SET_GUEST_DEBUG`) when its
    /// generation changed, or always when `force`; single-step is OR-ed in while `stepping`.
    /// Without a published configuration this costs nothing; with one, an atomic load.
    fn sync_guest_debug(&mut self, force: bool) -> Result<(), Fatal> {
        let mut changed = false;
        if self.polls_guest_debug {
            if let Some(published) = self.handler.guest_debug(self.shared.cpu) {
                let generation = published.generation();
                if generation != self.debug_generation {
                    // Generation first, then the configuration: a publication in between is
                    // read now and applied again next time, never missed.
                    self.debug_config = published.get();
                    self.debug_generation = generation;
                    changed = true;
                }
            }
        }
        if !(changed || force) {
            return Ok(());
        }
        let debug = self.debug_config.to_kvm(self.stepping);
        self.fd
            .set_guest_debug(&debug)
            .map_err(|e| Fatal::Unexpected {
                exit: format!(
                    "KVM_SET_GUEST_DEBUG ({:?}, single step {}) failed: {e}",
                    self.debug_config, self.stepping
                ),
            })
    }

    /// The displaced instruction ran: stop single-stepping (back to the configured
    /// breakpoints) and let the handler re-arm. Called inside `run_once`'s epoch.
    fn finish_step(&mut self) -> Result<(), Fatal> {
        self.stepping = false;
        self.sync_guest_debug(true)?;
        self.handler
            .step_done(self.shared.cpu)
            .map_err(|what| Fatal::Unhandled { what })
    }

    /// Mirrors a CR8 the guest wrote itself (`mov %reg,%cr8`, which need not exit) into the TPR.
    fn sync_guest_cr8(&mut self, cr8: u64) {
        if self.user_space_apic && cr8 != self.entered_cr8 {
            self.handler.guest_cr8(self.shared.cpu, cr8);
            self.entered_cr8 = cr8;
        }
    }

    /// Puts the vCPU in the state a SIPI with `vector` gives it.
    fn start_at(&mut self, vector: u8) -> Result<(), Fatal> {
        let fail = |what: &str, e: kvm_ioctls::Error| Fatal::Unexpected {
            exit: format!("{what} for SIPI start-up failed: {e}"),
        };
        let mut sregs = self.fd.get_sregs().map_err(|e| fail("KVM_GET_SREGS", e))?;
        let mut regs = self.fd.get_regs().map_err(|e| fail("KVM_GET_REGS", e))?;
        sipi_state(&mut sregs, &mut regs, vector);
        self.fd
            .set_sregs(&sregs)
            .map_err(|e| fail("KVM_SET_SREGS", e))?;
        self.fd.set_regs(&regs).map_err(|e| fail("KVM_SET_REGS", e))
    }

    /// One `KVM_RUN` and the handling of its exit.
    fn run_once(&mut self) -> Result<(), Fatal> {
        let cpu = self.shared.cpu;
        let handler = Arc::clone(&self.handler);
        let run_raw = self.run_ptr();
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // EINTR: kicked (not a guest exit, so the last exit stays what it was).
                // EAGAIN: an AP that was just started by SIPI; run again.
                let cr8 = self.fd.get_kvm_run().cr8;
                self.sync_guest_cr8(cr8);
                if handler.wants_sample(cpu) {
                    self.give_sregs();
                    let regs = if self.use_sync_regs {
                        Some(self.fd.sync_regs().regs)
                    } else {
                        self.fd.get_regs().ok()
                    };
                    if let Some(regs) = regs {
                        handler.sample(cpu, &regs);
                    }
                }
                if handler.wants_kernel_state(cpu) {
                    if let Some(state) = self.kernel_state() {
                        handler.kernel_state(cpu, &state);
                    }
                }
                return Ok(());
            }
            Err(e) => return Err(Fatal::RunFailed { errno: e.errno() }),
        };
        self.exits += 1;
        // SAFETY: `run_raw` is this thread's live kvm_run mapping (owned by `self.fd`); the
        // `exit` borrow covers the exit union and the I/O data area, never the `cr8` field read
        // here, and nothing else writes kvm_run meanwhile (kickers only touch immediate_exit).
        let cr8 = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*run_raw).cr8)) };
        if self.user_space_apic && cr8 != self.entered_cr8 {
            // The TPR must reflect the guest's own CR8 write before this exit, which may read
            // the TPR, is handled.
            handler.guest_cr8(cpu, cr8);
            self.entered_cr8 = cr8;
        }
        // Odd epoch while the exit is handled (World::sync waits for it to become even).
        let shared = Arc::clone(&self.shared);
        let _epoch = HandlingEpoch::enter(&shared.handling);
        let (kind, result) = match exit {
            VcpuExit::IoIn(port, data) => (
                ExitKind::Io { port, write: false },
                handler.io_in(cpu, port, data),
            ),
            VcpuExit::IoOut(port, data) => (
                ExitKind::Io { port, write: true },
                handler.io_out(cpu, port, data),
            ),
            VcpuExit::MmioRead(addr, data) => (
                ExitKind::Mmio { addr, write: false },
                handler.mmio_read(cpu, addr, data),
            ),
            VcpuExit::MmioWrite(addr, data) => (
                ExitKind::Mmio { addr, write: true },
                handler.mmio_write(cpu, addr, data),
            ),
            VcpuExit::Intr => return Ok(()),
            // The guest lowered CR8 (no in-kernel APIC): already mirrored into the TPR above.
            VcpuExit::SetTpr => {
                self.last_exit = ExitKind::SetTpr;
                handler.exit_seen(cpu, ExitKind::SetTpr);
                return Ok(());
            }
            // The guest can take interrupts again: the next entry injects.
            VcpuExit::IrqWindowOpen => {
                self.last_exit = ExitKind::IrqWindow;
                handler.exit_seen(cpu, ExitKind::IrqWindow);
                return Ok(());
            }
            VcpuExit::InternalError => {
                self.last_exit = ExitKind::InternalError;
                let fatal = self.internal_error();
                if let Fatal::InternalError { suberror: 1, insn } = &fatal {
                    match insn.first() {
                        Some(&crate::reflect::INT3) => {
                            if let Some(how) = handler.int3_reflection(cpu) {
                                return self.reflect_int3(how);
                            }
                        }
                        Some(&crate::missing::FWAIT) if self.complete_fwait()? => return Ok(()),
                        Some(&crate::bmi::VEX3) if self.complete_bmi(&insn.clone())? => {
                            return Ok(())
                        }
                        Some(_) => {
                            if let Some(ram) = handler.guest_ram() {
                                if self.complete_mxcsr(insn, ram)? {
                                    return Ok(());
                                }
                            }
                        }
                        None => {}
                    }
                }
                handler.exit_seen(cpu, ExitKind::InternalError);
                return Err(fatal);
            }
            VcpuExit::Shutdown => {
                self.last_exit = ExitKind::Shutdown;
                handler.exit_seen(cpu, ExitKind::Shutdown);
                return Err(Fatal::Shutdown);
            }
            VcpuExit::FailEntry(reason, _) => {
                self.last_exit = ExitKind::FailEntry;
                return Err(Fatal::FailEntry { reason });
            }
            VcpuExit::SystemEvent(kind, _) => {
                self.last_exit = ExitKind::SystemEvent;
                return Err(Fatal::SystemEvent { kind });
            }
            VcpuExit::X86Rdmsr(exit) => {
                let index = exit.index;
                match handler.msr_read(cpu, index) {
                    Ok(value) => {
                        *exit.data = value;
                        *exit.error = 0;
                    }
                    Err(_) => *exit.error = 1,
                }
                (
                    ExitKind::Msr {
                        index,
                        write: false,
                    },
                    Ok(()),
                )
            }
            VcpuExit::X86Wrmsr(exit) => {
                let index = exit.index;
                *exit.error = u8::from(handler.msr_write(cpu, index, exit.data).is_err());
                (ExitKind::Msr { index, write: true }, Ok(()))
            }
            VcpuExit::IoapicEoi(vector) => {
                (ExitKind::IoapicEoi(vector), handler.ioapic_eoi(cpu, vector))
            }
            VcpuExit::Debug(arch) => {
                let event = DebugEvent {
                    exception: arch.exception,
                    pc: arch.pc,
                    dr6: arch.dr6,
                    dr7: arch.dr7,
                };
                if self.ends_step(&event) {
                    self.last_exit = ExitKind::Debug;
                    return self.finish_step();
                }
                self.last_exit = ExitKind::Breakpoint {
                    exception: event.exception,
                    pc: event.pc,
                };
                return self.on_debug(event);
            }
            VcpuExit::Hlt => {
                self.last_exit = ExitKind::Hlt;
                return self.on_hlt();
            }
            other => {
                let name = format!("{other:?}");
                self.last_exit = ExitKind::Other(self.fd.get_kvm_run().exit_reason);
                return Err(Fatal::Unexpected { exit: name });
            }
        };
        self.last_exit = kind;
        self.needs_completion = true;
        result.map_err(|what| Fatal::Unhandled { what })
    }

    /// Decodes `kvm_run.internal` / `kvm_run.emulation_failure`.
    fn internal_error(&mut self) -> Fatal {
        Fatal::from_internal_error(self.fd.get_kvm_run()).unwrap_or(Fatal::InternalError {
            suberror: 0,
            insn: Vec::new(),
        })
    }

    fn report(&mut self, fatal: Fatal) -> FatalReport {
        let rip = self.rip();
        let (rip_gpa, bitness) = match self.fd.get_sregs() {
            Ok(sregs) => {
                let bitness = if sregs.cs.l != 0 {
                    64
                } else if sregs.cs.db != 0 {
                    32
                } else {
                    16
                };
                let linear = if bitness == 64 {
                    rip
                } else {
                    sregs.cs.base.wrapping_add(rip)
                };
                let gpa = self
                    .fd
                    .translate_gva(linear)
                    .ok()
                    .filter(|t| t.valid != 0)
                    .map(|t| t.physical_address);
                (gpa, bitness)
            }
            Err(_) => (None, 64),
        };
        FatalReport {
            cpu: self.shared.cpu,
            fatal,
            rip,
            rip_gpa,
            bitness,
        }
    }
}
