//! The one place exits are routed: port I/O to devices, MMIO to what owns the address, fatal
//! exits to the controller.

use std::io::Write;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use tracer::traps::TrapKind;
use vcpu::{
    DebugEvent, Entry, ExitHandler, ExitKind, FatalReport, GeneralProtection, GuestDebug,
    GuestWait, HltAction, Startup,
};

use crate::devices::testdev::{self, IrqLines};
use crate::devices::{DebugExit, PciBus, SerialPort, COM1_BASE, COM1_LEN};
use crate::irqchip::emulated::EmulatedIrqchip;
use crate::irqchip::split::SplitIoapic;
use crate::irqchip::IrqChipMode;
use crate::outcome::{EndSignal, Ending};
use crate::probes::{regs_from_kvm, regs_to_kvm, Hit, ProbeSet};

/// Output sink of the guest's serial port.
pub type SerialOut = Box<dyn Write + Send>;

/// Routes every exit of every vCPU.
pub struct Dispatcher {
    pub(crate) serial: SerialPort<SerialOut>,
    pub(crate) debug_exit: DebugExit,
    /// PCI configuration space (mechanism #1): a host bridge.
    pub(crate) pci: PciBus,
    /// Guest RAM, for the instructions the vCPU layer completes itself (`vcpu::missing`).
    pub(crate) ram: GuestRam,
    pub(crate) end: Arc<EndSignal>,
    pub(crate) irqchip: IrqChipMode,
    /// Interrupt lines the IRQ test device drives; `None` when no controller takes them.
    pub(crate) irq_lines: Option<Arc<dyn IrqLines>>,
    /// hvtrace's own APICs, under `--irqchip emulated`.
    pub(crate) apic: Option<Arc<EmulatedIrqchip>>,
    /// The user-space IOAPIC, under `--irqchip split`.
    pub(crate) split_ioapic: Option<Arc<SplitIoapic>>,
    /// Armed function-boundary probes, and guest RAM for their displaced instructions.
    pub(crate) probes: Option<(Arc<ProbeSet>, GuestMemoryMmap)>,
    /// The D programs tracing the VM (`run -n`, attached clients).
    pub(crate) sessions: Arc<crate::trace::Sessions>,
    /// The run's timeline (`--timeline`, `compare`), if recorded.
    pub(crate) timeline: Option<Arc<crate::timeline::Timeline>>,
    /// Guest RAM (operands of instructions the vCPU layer completes, `read_guest`).
    pub(crate) memory: GuestMemoryMmap,
    /// A bzImage decompressor's `lzcnt` sites trapped on a host that runs `lzcnt` as `bsr`
    /// (empty elsewhere: one length check per `hlt`).
    pub(crate) lzcnt: crate::host_lzcnt::LzcntTraps,
    /// A bzImage kernel's place: vCPU 0 owes its kernel state while something waits for
    /// the KASLR slide.
    pub(crate) kernel_place: Option<Arc<crate::kaslr::place::KernelPlace>>,
    /// Where the vCPUs' control registers at trap exits go, when something may trace.
    pub(crate) paging: Option<Arc<crate::trace::GuestPaging>>,
}

/// Guest RAM as `vcpu::missing` reads and writes it.
pub(crate) struct GuestRam(pub(crate) GuestMemoryMmap);

impl vcpu::missing::GuestRam for GuestRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        self.0.read_slice(buf, GuestAddress(gpa)).is_ok()
    }

    fn write(&self, gpa: u64, buf: &[u8]) -> bool {
        self.0.write_slice(buf, GuestAddress(gpa)).is_ok()
    }
}

impl Dispatcher {
    fn com1_offset(port: u16) -> Option<u8> {
        port.checked_sub(COM1_BASE)
            .filter(|o| *o < COM1_LEN)
            .map(|o| o as u8)
    }
}

/// Up to 8 little-endian bytes as a number.
fn value_of(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

impl Dispatcher {
    fn mmio_read_inner(&self, cpu: usize, addr: u64, data: &mut [u8]) -> Result<(), String> {
        if let Some(apic) = &self.apic {
            if apic.mmio(cpu, addr, data, false) {
                return Ok(());
            }
        }
        if let Some(ioapic) = &self.split_ioapic {
            if ioapic.mmio(addr, data, false)? {
                return Ok(());
            }
        }
        data.fill(0xff);
        Ok(())
    }

    fn mmio_write_inner(&self, cpu: usize, addr: u64, data: &[u8]) -> Result<(), String> {
        if let Some(apic) = &self.apic {
            let mut buf = [0u8; 8];
            let len = data.len().min(8);
            buf[..len].copy_from_slice(&data[..len]);
            if apic.mmio(cpu, addr, &mut buf[..len], true) {
                return Ok(());
            }
        }
        if let Some(ioapic) = &self.split_ioapic {
            let mut buf = data.to_vec();
            ioapic.mmio(addr, &mut buf, true)?;
        }
        Ok(())
    }

    fn msr_read_inner(&self, cpu: usize, index: u32) -> Result<u64, GeneralProtection> {
        match &self.apic {
            Some(apic) if EmulatedIrqchip::handles_msr(index) => apic.msr_read(cpu, index),
            _ => Err(GeneralProtection),
        }
    }

    fn msr_write_inner(&self, cpu: usize, index: u32, value: u64) -> Result<(), GeneralProtection> {
        match &self.apic {
            Some(apic) if EmulatedIrqchip::handles_msr(index) => apic.msr_write(cpu, index, value),
            _ => Err(GeneralProtection),
        }
    }

    /// Fires `vmexit:::kind` when a trace uses it.
    fn vmexit(&self, cpu: usize, kind: &'static str, args: [u64; 4]) {
        if let Some(t) = &self.timeline {
            t.record(cpu, crate::timeline::EventKind::Exit(kind, args[0]));
        }
        self.sessions.event(cpu, "vmexit", kind, args);
    }
}

impl ExitHandler for Dispatcher {
    fn wants_kernel_state(&self, cpu: usize) -> bool {
        self.kernel_place.as_ref().is_some_and(|p| p.wants(cpu))
    }

    fn kernel_state(&self, _cpu: usize, state: &vcpu::KernelState) {
        if let Some(p) = &self.kernel_place {
            p.observe(state);
        }
    }

    fn read_guest(
        &self,
        _cpu: usize,
        sregs: &kvm_bindings::kvm_sregs,
        addr: u64,
        buf: &mut [u8],
    ) -> bool {
        let translation = crate::trace::paging::Translation::of(sregs);
        crate::trace::paging::read(&self.memory, translation, addr, buf)
    }

    fn io_in(&self, cpu: usize, port: u16, data: &mut [u8]) -> Result<(), String> {
        match Self::com1_offset(port) {
            Some(offset) => {
                data.fill(0);
                if let Some(b) = data.first_mut() {
                    *b = self.serial.read(offset);
                }
            }
            None if PciBus::handles(port) => self.pci.read(port, data),
            None => data.fill(0xff),
        }
        self.vmexit(
            cpu,
            "io",
            [u64::from(port), 0, value_of(data), data.len() as u64],
        );
        Ok(())
    }

    fn io_out(&self, cpu: usize, port: u16, data: &[u8]) -> Result<(), String> {
        self.vmexit(
            cpu,
            "io",
            [u64::from(port), 1, value_of(data), data.len() as u64],
        );
        if let Some(offset) = Self::com1_offset(port) {
            if let Some(b) = data.first() {
                self.serial.write(offset, *b)?;
            }
        } else if PciBus::handles(port) {
            self.pci.write(port, data);
        } else if self.debug_exit.handles(port) {
            self.end.finish(Ending::Exit(self.debug_exit.status(data)));
        } else if let Some(line) = testdev::line_of(port) {
            let level = data.iter().any(|b| *b != 0);
            match &self.irq_lines {
                Some(lines) => lines.set_level(line, level)?,
                None => {
                    return Err(format!(
                        "IRQ test device: line {line} set to {level}, but --irqchip {} has no interrupt controller for it yet",
                        self.irqchip
                    ))
                }
            }
        }
        Ok(())
    }

    fn mmio_read(&self, cpu: usize, addr: u64, data: &mut [u8]) -> Result<(), String> {
        let result = self.mmio_read_inner(cpu, addr, data);
        self.vmexit(cpu, "mmio", [addr, 0, value_of(data), data.len() as u64]);
        result
    }

    fn mmio_write(&self, cpu: usize, addr: u64, data: &[u8]) -> Result<(), String> {
        self.vmexit(cpu, "mmio", [addr, 1, value_of(data), data.len() as u64]);
        self.mmio_write_inner(cpu, addr, data)
    }

    fn msr_read(&self, cpu: usize, index: u32) -> Result<u64, GeneralProtection> {
        let result = self.msr_read_inner(cpu, index);
        let value = result.unwrap_or(0);
        self.vmexit(cpu, "msr", [u64::from(index), 0, value, 8]);
        result
    }

    fn msr_write(&self, cpu: usize, index: u32, value: u64) -> Result<(), GeneralProtection> {
        self.vmexit(cpu, "msr", [u64::from(index), 1, value, 8]);
        self.msr_write_inner(cpu, index, value)
    }

    fn step_done(&self, cpu: usize) -> Result<(), String> {
        match &self.probes {
            Some((probes, memory)) => probes.step_done(cpu, memory),
            None => Err(format!("vcpu {cpu}: single step without probes")),
        }
    }

    fn ioapic_eoi(&self, cpu: usize, vector: u8) -> Result<(), String> {
        self.vmexit(cpu, "ioapic_eoi", [u64::from(vector), 0, 0, 0]);
        match &self.split_ioapic {
            Some(ioapic) => ioapic.eoi(vector),
            None => Ok(()),
        }
    }

    fn user_space_apic(&self) -> bool {
        self.apic.is_some()
    }

    fn before_entry(&self, cpu: usize, entry: &mut Entry) {
        if let Some(apic) = &self.apic {
            apic.before_entry(cpu, entry);
        }
    }

    fn guest_cr8(&self, cpu: usize, cr8: u64) {
        if let Some(apic) = &self.apic {
            apic.guest_cr8(cpu, cr8);
        }
    }

    fn take_startup(&self, cpu: usize) -> Option<Startup> {
        self.apic.as_ref()?.take_startup(cpu)
    }

    fn hlt(&self, cpu: usize, regs: &mut kvm_bindings::kvm_regs) -> Result<HltAction, String> {
        if self.lzcnt.on_hlt(&self.memory, regs) {
            return Ok(HltAction::Resume);
        }
        if let Some((probes, memory)) = &self.probes {
            let rip = regs.rip;
            if let Some(action) = trap_action(probes, memory, cpu, TrapKind::Hlt, rip, regs)? {
                return Ok(action);
            }
        }
        self.vmexit(cpu, "hlt", [0; 4]);
        Ok(if self.apic.is_some() {
            HltAction::Park
        } else {
            HltAction::Unexpected
        })
    }

    fn debug(
        &self,
        cpu: usize,
        regs: &mut kvm_bindings::kvm_regs,
        event: DebugEvent,
    ) -> Result<HltAction, String> {
        let Some((probes, memory)) = &self.probes else {
            return Ok(HltAction::Unexpected);
        };
        let kind = match (event.exception, event.hw_breakpoint()) {
            (vcpu::debug::BP_VECTOR, _) => TrapKind::Int3,
            (vcpu::debug::DB_VECTOR, Some(dr)) => TrapKind::HwBreakpoint(dr),
            _ => return Ok(HltAction::Unexpected),
        };
        match trap_action(probes, memory, cpu, kind, event.pc, regs)? {
            Some(action) => Ok(action),
            // A breakpoint removed between its exit and now: re-entering runs the instruction.
            None if matches!(kind, TrapKind::HwBreakpoint(_)) => Ok(HltAction::Resume),
            None => Err(format!(
                "vcpu {cpu}: int3 at {:#x} that is not a probe (the guest's own breakpoint; \
                 reflecting it to the guest is not supported)",
                event.pc
            )),
        }
    }

    fn wants_sregs(&self) -> bool {
        self.paging.is_some()
    }

    fn trap_sregs(&self, cpu: usize, sregs: &kvm_bindings::kvm_sregs) {
        if let Some(paging) = &self.paging {
            paging.record(cpu, sregs);
        }
    }

    fn wants_kernel_gs_base(&self) -> bool {
        self.paging
            .as_ref()
            .is_some_and(|p| p.wants_kernel_gs_base())
    }

    fn trap_kernel_gs_base(&self, cpu: usize, base: u64) {
        if let Some(paging) = &self.paging {
            paging.record_kernel_gs_base(cpu, base);
        }
    }

    fn wants_sample(&self, cpu: usize) -> bool {
        self.sessions.wants_sample(cpu)
    }

    fn sample(&self, cpu: usize, regs: &kvm_bindings::kvm_regs) {
        self.sessions.sample(cpu, &regs_from_kvm(regs));
    }

    fn wants_final_lapic(&self) -> bool {
        self.timeline.is_some() && self.apic.is_none()
    }

    fn final_lapic(&self, cpu: usize, lapic: &kvm_bindings::kvm_lapic_state) {
        if let Some(t) = &self.timeline {
            let page: Vec<u8> = lapic.regs.iter().map(|&b| b as u8).collect();
            t.record_final_apic(
                cpu,
                crate::timeline::ApicSnapshot::from_register_page(&page),
            );
        }
    }

    fn run_state(&self, cpu: usize, state: vcpu::RunState) {
        if let Some(t) = &self.timeline {
            t.record(cpu, crate::timeline::EventKind::State(state));
        }
    }

    fn exit_seen(&self, cpu: usize, kind: ExitKind) {
        let name = match kind {
            ExitKind::SetTpr => "set_tpr",
            ExitKind::IrqWindow => "irq_window",
            ExitKind::InternalError => "internal_error",
            ExitKind::Shutdown => "shutdown",
            _ => return,
        };
        self.vmexit(cpu, name, [0; 4]);
    }

    fn guest_debug(&self, cpu: usize) -> Option<&GuestDebug> {
        self.probes.as_ref().and_then(|(p, _)| p.guest_debug(cpu))
    }

    fn wakeup_pending(&self, cpu: usize, wait: GuestWait) -> bool {
        self.apic
            .as_ref()
            .is_none_or(|apic| apic.wakeup_pending(cpu, wait))
    }

    fn guest_ram(&self) -> Option<&dyn vcpu::missing::GuestRam> {
        Some(&self.ram)
    }

    fn int3_reflection(&self, _cpu: usize) -> Option<vcpu::Int3Reflection> {
        // hvtrace's own traps never are an `int3` that fails: under the int3 strategy KVM
        // reports them as debug exits. So this is the guest's own, delivered as the host allows
        // (probed once, on the first one).
        match crate::host_int3::host_int3() {
            crate::host_int3::Int3Support::Reflect(how) => Some(*how),
            _ => None,
        }
    }

    fn fatal(&self, report: FatalReport) {
        self.end.finish(Ending::Fatal(report));
    }

    fn vm_ending(&self) -> bool {
        self.end.is_finished()
    }
}

/// A trap exit of `kind` at `exit_addr` given to the probes: the action for the vCPU, or
/// `None` when it is not one of their traps.
fn trap_action(
    probes: &ProbeSet,
    memory: &GuestMemoryMmap,
    cpu: usize,
    kind: TrapKind,
    exit_addr: u64,
    regs: &mut kvm_bindings::kvm_regs,
) -> Result<Option<HltAction>, String> {
    let mut r = regs_from_kvm(regs);
    let action = match probes.on_trap(cpu, kind, exit_addr, &mut r, memory)? {
        Hit::NotOurs => return Ok(None),
        Hit::Emulated | Hit::Retry | Hit::Lifted => HltAction::Resume,
        Hit::SingleStep => HltAction::SingleStep,
    };
    regs_to_kvm(&r, regs);
    Ok(Some(action))
}
