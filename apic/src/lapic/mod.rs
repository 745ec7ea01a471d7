//! One local APIC (SDM Vol. 3A §11.4-§11.9 and §11.12): priorities, interrupt acceptance and
//! acknowledgement, EOI, NMI, INIT/SIPI, the `IA32_APIC_BASE` mode machine and the timer.
//! The register interfaces (xAPIC MMIO and x2APIC MSRs) are in `registers.rs`.
//!
//! A local APIC knows nothing of the others: an ICR write returns an [`Effect::Ipi`] that the
//! [`crate::Router`] delivers, an EOI of a level-triggered vector returns
//! [`Effect::EoiBroadcast`] for the IOAPIC.
//!
//! # Injection contract
//!
//! [`LocalApic::pending_vector`] is the highest IRR vector whose priority class is above the PPR
//! class. Whether the guest can take it now (RFLAGS.IF, interrupt shadow, a pending event) is the
//! VMM's business: it calls [`LocalApic::ack`] (or [`LocalApic::take_interrupt`]) only when it
//! injects, and the vector stays pending in the IRR until then. So an EOI written early in a
//! handler running with interrupts disabled lowers the PPR but delivers nothing: the next
//! interrupt is injected once the guest sets IF, exactly once.

mod icr;
mod lvt;
mod registers;
mod timer;
mod types;

pub use lvt::Lvt;
pub use timer::{divisor, TimerMode};
pub use types::{ApicConfig, ApicMode, Effect, Startup};

use crate::event::{ApicEvent, EventLog, RejectReason};
use crate::message::{DeliveryMode, Trigger};
use crate::regs::*;
use crate::vecset::VectorSet;
use timer::Timer;
use types::Delivery;

/// One local APIC.
#[derive(Debug, Clone)]
pub struct LocalApic {
    /// Initial APIC ID: the 32-bit x2APIC ID; its low 8 bits are the xAPIC ID.
    id: u32,
    bsp_at_reset: bool,
    tsc_deadline_supported: bool,
    /// Reserved bits of `IA32_APIC_BASE`.
    base_reserved: u64,
    base: u64,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    irr: VectorSet,
    isr: VectorSet,
    tmr: VectorSet,
    /// ESR as read: the errors latched by the last ESR write.
    esr: u32,
    /// Errors detected since the last ESR write.
    esr_pending: u32,
    /// Whether the next error triggers the LVT error interrupt (re-armed by ESR writes).
    error_armed: bool,
    lvt: [u32; 7],
    icr_low: u32,
    icr_high: u32,
    timer: Timer,
    nmi_pending: bool,
    startup: Option<Startup>,
    wait_for_sipi: bool,
    pub(crate) events: EventLog,
}

impl LocalApic {
    /// A local APIC in its power-up state (§11.4.7.1): xAPIC mode at 0xFEE00000, software
    /// disabled, every LVT masked. `apic_id` is the initial (x2APIC) APIC ID; an application
    /// processor (`bsp == false`) starts in the wait-for-SIPI state. Zero frequencies in
    /// `config` are treated as 1 Hz (use [`ApicConfig::validate`] to reject them).
    pub fn new(config: &ApicConfig, apic_id: u32, bsp: bool) -> Self {
        let bits = config.phys_addr_bits.clamp(32, 52);
        let mut base_reserved = 0xFF | (1 << 9) | !((1u64 << bits) - 1);
        if !config.x2apic {
            base_reserved |= APIC_BASE_EXTD;
        }
        let mut apic = Self {
            id: apic_id,
            bsp_at_reset: bsp,
            tsc_deadline_supported: config.tsc_deadline,
            base_reserved,
            base: 0,
            tpr: 0,
            ldr: 0,
            dfr: DFR_FLAT,
            svr: SVR_RESET,
            irr: VectorSet::new(),
            isr: VectorSet::new(),
            tmr: VectorSet::new(),
            esr: 0,
            esr_pending: 0,
            error_armed: true,
            lvt: [LVT_RESET; 7],
            icr_low: 0,
            icr_high: 0,
            timer: Timer::new(config.bus_hz, config.tsc_hz),
            nmi_pending: false,
            startup: None,
            wait_for_sipi: false,
            events: EventLog::default(),
        };
        apic.reset();
        apic
    }

    /// Power-up RESET (§11.4.7.1): `IA32_APIC_BASE` back to 0xFEE00000 with EN (and BSP for the
    /// bootstrap processor), xAPIC mode, every register at its reset value, no NMI or start-up
    /// pending.
    pub fn reset(&mut self) {
        self.base = DEFAULT_APIC_BASE | APIC_BASE_EN;
        if self.bsp_at_reset {
            self.base |= APIC_BASE_BSP;
        }
        self.reset_registers();
        self.nmi_pending = false;
        self.startup = None;
        self.wait_for_sipi = !self.bsp_at_reset;
    }

    /// Register state after reset and INIT (§11.4.7.1, §11.4.7.3): IRR, ISR, TMR, ICR, LDR, TPR,
    /// ESR, timer counts and divide zero; DFR all ones; SVR 0xFF; LVTs masked. The APIC ID and
    /// `IA32_APIC_BASE` are kept.
    fn reset_registers(&mut self) {
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = DFR_FLAT;
        self.svr = SVR_RESET;
        self.irr.clear();
        self.isr.clear();
        self.tmr.clear();
        self.esr = 0;
        self.esr_pending = 0;
        self.error_armed = true;
        self.lvt = [LVT_RESET; 7];
        self.icr_low = 0;
        self.icr_high = 0;
        self.timer.reset();
    }

    // -----------------------------------------------------------------------------------------
    // Identity and mode
    // -----------------------------------------------------------------------------------------

    /// The initial APIC ID (the x2APIC ID; the xAPIC ID is its low 8 bits).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The 8-bit xAPIC ID.
    pub fn xapic_id(&self) -> u8 {
        (self.id & 0xFF) as u8
    }

    /// Whether `IA32_APIC_BASE` has the BSP flag.
    pub fn is_bsp(&self) -> bool {
        self.base & APIC_BASE_BSP != 0
    }

    /// The current mode.
    pub fn mode(&self) -> ApicMode {
        match (
            self.base & APIC_BASE_EN != 0,
            self.base & APIC_BASE_EXTD != 0,
        ) {
            (false, _) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        }
    }

    /// `IA32_APIC_BASE`.
    pub fn apic_base(&self) -> u64 {
        self.base
    }

    /// Guest-physical address of the xAPIC register page, when the APIC is in xAPIC mode (the
    /// page is not decoded when globally disabled or in x2APIC mode).
    pub fn mmio_base(&self) -> Option<u64> {
        (self.mode() == ApicMode::XApic).then_some(self.base & APIC_BASE_ADDR_MASK)
    }

    /// The offset of guest-physical address `gpa` in this APIC's register page, if it is in it.
    pub fn mmio_offset(&self, gpa: u64) -> Option<u64> {
        let base = self.mmio_base()?;
        let offset = gpa.checked_sub(base)?;
        (offset < APIC_PAGE_SIZE).then_some(offset)
    }

    /// Writes `IA32_APIC_BASE` (§11.4.4, §11.12.5). Legal: disabled <-> xAPIC, xAPIC -> x2APIC,
    /// x2APIC -> disabled, any same-mode write (relocating the page). #GP: reserved bits (0-7,
    /// 9, EXTD without x2APIC support, bits at or above the physical address width), EN = 0 with
    /// EXTD = 1, x2APIC -> xAPIC, disabled -> x2APIC. The BSP flag is read-only. Entering the
    /// disabled state resets every register except the ID, as state is not preserved across
    /// it.
    pub fn set_apic_base(&mut self, value: u64) -> Result<(), crate::Gp> {
        if value & self.base_reserved != 0 {
            return Err(crate::Gp);
        }
        let new_mode = match (value & APIC_BASE_EN != 0, value & APIC_BASE_EXTD != 0) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => return Err(crate::Gp),
        };
        let old_mode = self.mode();
        if matches!(
            (old_mode, new_mode),
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic)
        ) {
            return Err(crate::Gp);
        }
        self.base = (value & !APIC_BASE_BSP) | (self.base & APIC_BASE_BSP);
        if new_mode != old_mode {
            if new_mode == ApicMode::Disabled {
                self.reset_registers();
            }
            self.events.record(ApicEvent::ModeChange {
                apic: self.id,
                mode: new_mode,
            });
        }
        Ok(())
    }

    /// SVR bit 8: software enabled (§11.4.7.2).
    pub fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// Whether the APIC can accept fixed interrupts: globally and software enabled.
    pub fn enabled(&self) -> bool {
        self.mode() != ApicMode::Disabled && self.software_enabled()
    }

    /// Spurious interrupt vector register.
    pub fn svr(&self) -> u32 {
        self.svr
    }

    /// The x2APIC logical ID (§11.12.10.2): cluster = `ID[19:4]` in bits 31:16, bit `ID[3:0]` set in
    /// bits 15:0.
    pub fn x2apic_ldr(&self) -> u32 {
        (((self.id >> 4) & 0xFFFF) << 16) | (1 << (self.id & 0xF))
    }

    /// The logical destination register as the current mode reads it.
    pub fn ldr(&self) -> u32 {
        match self.mode() {
            ApicMode::X2Apic => self.x2apic_ldr(),
            _ => self.ldr,
        }
    }

    /// Destination format register (xAPIC).
    pub fn dfr(&self) -> u32 {
        self.dfr
    }

    /// An LVT entry.
    pub fn lvt(&self, lvt: Lvt) -> u32 {
        self.lvt.get(lvt.index()).copied().unwrap_or(LVT_RESET)
    }

    fn timer_mode(&self) -> TimerMode {
        TimerMode::from_lvt(self.lvt(Lvt::Timer))
    }

    // -----------------------------------------------------------------------------------------
    // Priorities (§11.8.3)
    // -----------------------------------------------------------------------------------------

    /// Task priority register.
    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// Processor priority (§11.8.3.1): TPR if its class is at least the highest in-service
    /// class, else the highest in-service class with subclass 0.
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// Arbitration priority (Figure 11-15): TPR if its class is at least the highest requested
    /// class and above the highest in-service class, else the highest of the three classes.
    pub fn apr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        let irrv = self.irr.highest().unwrap_or(0);
        let tpr = self.tpr;
        if tpr >> 4 >= irrv >> 4 && tpr >> 4 > isrv >> 4 {
            tpr
        } else {
            (tpr & 0xF0).max(isrv & 0xF0).max(irrv & 0xF0)
        }
    }

    /// CR8 as the guest sees it: TPR bits 7:4 (§11.8.6). The VMM puts it in `kvm_run.cr8` before
    /// `KVM_RUN`.
    pub fn cr8(&self) -> u64 {
        u64::from(self.tpr >> 4)
    }

    /// A guest write of CR8 (from `kvm_run.cr8` after an exit): `TPR[7:4]` = `CR8[3:0]`,
    /// `TPR[3:0]` = 0 (§11.8.6). A value whose class equals the current one leaves the TPR alone,
    /// so the mirror does not clobber a subclass written through the TPR register.
    pub fn set_cr8(&mut self, cr8: u64) {
        let class = (cr8 & 0xF) as u8;
        if class != self.tpr >> 4 {
            self.tpr = class << 4;
        }
    }

    /// Interrupt request register.
    pub fn irr(&self) -> &VectorSet {
        &self.irr
    }

    /// In-service register.
    pub fn isr(&self) -> &VectorSet {
        &self.isr
    }

    /// Trigger mode register.
    pub fn tmr(&self) -> &VectorSet {
        &self.tmr
    }

    // -----------------------------------------------------------------------------------------
    // Acceptance, injection, EOI (§11.8.4, §11.8.5, §11.9)
    // -----------------------------------------------------------------------------------------

    /// Accepts a fixed interrupt into the IRR (§11.8.4), setting its TMR bit if
    /// `level_triggered`, clearing it otherwise. Returns whether it was accepted: a globally or
    /// software-disabled APIC discards it (§11.4.7.2), and a vector below 16 is never accepted
    /// but sets ESR "receive illegal vector" (§11.5.2). Several interrupts with one vector
    /// collapse into one IRR bit.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) -> bool {
        let reason = if self.mode() == ApicMode::Disabled {
            Some(RejectReason::HardwareDisabled)
        } else if !self.software_enabled() {
            Some(RejectReason::SoftwareDisabled)
        } else if vector < 16 {
            Some(RejectReason::IllegalVector)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.events.record(ApicEvent::Reject {
                apic: self.id,
                vector,
                reason,
            });
            if reason == RejectReason::IllegalVector {
                self.record_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            }
            return false;
        }
        self.irr.insert(vector);
        self.tmr.set(vector, level_triggered);
        self.events.record(ApicEvent::Accept {
            apic: self.id,
            vector,
            level: level_triggered,
        });
        true
    }

    /// The vector to inject next, if any: the highest IRR vector, when its priority class is
    /// above the PPR class and the APIC is enabled (§11.8.3.1). Interrupt-flag gating is the
    /// VMM's job (see the module documentation).
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// The VMM injects `vector` (normally the one [`Self::pending_vector`] just returned): it
    /// moves from the IRR to the ISR, which raises the PPR. Returns the vector to inject:
    /// - `Some(vector)` when it was pending and deliverable;
    /// - `Some(spurious vector)` when it is in the IRR but has become masked by the PPR (or the
    ///   APIC was software disabled) since: the APIC dispenses the SVR vector and the ISR is
    ///   unchanged (§11.9; the handler must not EOI it);
    /// - `None` when it is not in the IRR: inject nothing.
    pub fn ack(&mut self, vector: u8) -> Option<u8> {
        if !self.irr.contains(vector) {
            return None;
        }
        if !self.enabled() || vector >> 4 <= self.ppr() >> 4 {
            let spurious = (self.svr & SVR_VECTOR) as u8;
            self.events.record(ApicEvent::Spurious {
                apic: self.id,
                vector: spurious,
            });
            return Some(spurious);
        }
        self.irr.remove(vector);
        self.isr.insert(vector);
        self.events.record(ApicEvent::Inject {
            apic: self.id,
            vector,
        });
        Some(vector)
    }

    /// [`Self::pending_vector`] and [`Self::ack`] in one step: the vector to inject now.
    pub fn take_interrupt(&mut self) -> Option<u8> {
        let v = self.pending_vector()?;
        self.ack(v)
    }

    /// An EOI (§11.8.5): clears the highest ISR bit (the PPR drops, so a pending IRR vector may
    /// become deliverable). Returns the vector to broadcast to the IOAPIC: only when its TMR
    /// bit says level triggered and SVR bit 12 (suppress EOI broadcast) is clear. An EOI with an
    /// empty ISR does nothing. A LINT0/LINT1 entry whose remote IRR was set for the vector has it
    /// cleared.
    pub fn eoi(&mut self) -> Option<u8> {
        let Some(vector) = self.isr.highest() else {
            self.events.record(ApicEvent::Eoi {
                apic: self.id,
                vector: None,
                broadcast: false,
            });
            return None;
        };
        self.isr.remove(vector);
        for lint in [Lvt::Lint0, Lvt::Lint1] {
            if let Some(entry) = self.lvt.get_mut(lint.index()) {
                if *entry & LVT_REMOTE_IRR != 0 && (*entry & LVT_VECTOR) as u8 == vector {
                    *entry &= !LVT_REMOTE_IRR;
                }
            }
        }
        let broadcast = self.tmr.contains(vector) && self.svr & SVR_SUPPRESS_EOI_BROADCAST == 0;
        self.events.record(ApicEvent::Eoi {
            apic: self.id,
            vector: Some(vector),
            broadcast,
        });
        broadcast.then_some(vector)
    }

    /// Records errors in the ESR (§11.5.3): they become readable after the next ESR write. The
    /// first error after an ESR write raises the LVT error interrupt, if unmasked.
    fn record_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        self.events.record(ApicEvent::Error {
            apic: self.id,
            bits,
        });
        if self.error_armed && self.lvt(Lvt::Error) & LVT_MASKED == 0 {
            self.error_armed = false;
            self.fire_lvt(Lvt::Error);
        }
    }

    // -----------------------------------------------------------------------------------------
    // NMI, INIT, SIPI
    // -----------------------------------------------------------------------------------------

    /// Makes an NMI pending. NMIs are accepted whatever the software-enable state (§11.4.7.2).
    pub fn nmi(&mut self) {
        self.nmi_pending = true;
        self.events.record(ApicEvent::Nmi { apic: self.id });
    }

    /// Whether an NMI is pending.
    pub fn nmi_pending(&self) -> bool {
        self.nmi_pending
    }

    /// Takes the pending NMI (the VMM injects it with `KVM_NMI` or `KVM_SET_VCPU_EVENTS`).
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi_pending)
    }

    /// An INIT (§11.4.7.3): every register back to its reset value except the APIC ID and
    /// `IA32_APIC_BASE` (so the mode, x2APIC included, is kept), pending NMI discarded, and
    /// [`Startup::Init`] pending. An application processor enters the wait-for-SIPI state.
    pub fn init(&mut self) {
        self.reset_registers();
        self.nmi_pending = false;
        self.startup = Some(Startup::Init);
        self.wait_for_sipi = !self.is_bsp();
        self.events.record(ApicEvent::Init { apic: self.id });
    }

    /// A start-up IPI. Accepted only in the wait-for-SIPI state, which it leaves (so the second
    /// SIPI of the INIT-SIPI-SIPI sequence is ignored); returns whether it was accepted.
    pub fn sipi(&mut self, vector: u8) -> bool {
        let accepted = self.wait_for_sipi;
        if accepted {
            self.wait_for_sipi = false;
            self.startup = Some(Startup::Sipi(vector));
        }
        self.events.record(ApicEvent::Sipi {
            apic: self.id,
            vector,
            accepted,
        });
        accepted
    }

    /// Whether the APIC waits for a SIPI.
    pub fn waiting_for_sipi(&self) -> bool {
        self.wait_for_sipi
    }

    /// The pending start-up event, without taking it.
    pub fn startup_pending(&self) -> Option<Startup> {
        self.startup
    }

    /// Takes the pending start-up event. When an INIT and a SIPI both arrived since the last
    /// call, only `Sipi` is returned: it implies the reset.
    pub fn take_startup(&mut self) -> Option<Startup> {
        self.startup.take()
    }

    /// Whether a halted vCPU must wake: an NMI or start-up event is pending, or (when
    /// `interrupts_enabled`, i.e. RFLAGS.IF = 1) an interrupt is deliverable.
    pub fn wakeup_pending(&self, interrupts_enabled: bool) -> bool {
        self.nmi_pending
            || self.startup.is_some()
            || (interrupts_enabled && self.pending_vector().is_some())
    }

    // -----------------------------------------------------------------------------------------
    // Timer (§11.5.4)
    // -----------------------------------------------------------------------------------------

    /// Advances the timer to `now_ns`. An expiry raises the LVT timer vector unless the entry is
    /// masked (a one-shot timer stops, a periodic one reloads, a TSC deadline is cleared, masked
    /// or not). Returns whether an interrupt was accepted.
    pub fn tick(&mut self, now_ns: u64) -> bool {
        let mode = self.timer_mode();
        if !self.timer.poll(now_ns, mode) {
            return false;
        }
        let entry = self.lvt(Lvt::Timer);
        let masked = entry & LVT_MASKED != 0 || self.mode() == ApicMode::Disabled;
        self.events.record(ApicEvent::TimerFired {
            apic: self.id,
            vector: (entry & LVT_VECTOR) as u8,
            masked,
        });
        !masked && self.fire_lvt(Lvt::Timer)
    }

    /// When the timer next raises an interrupt, for the VMM to arm a host timer and then call
    /// [`Self::tick`] (or [`crate::Router::tick`]). `None` when disarmed or masked: a masked
    /// expiry changes nothing visible that the next register access would not compute.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.mode() == ApicMode::Disabled || self.lvt(Lvt::Timer) & LVT_MASKED != 0 {
            return None;
        }
        self.timer.expiry_ns(self.timer_mode())
    }

    /// The guest TSC at `now_ns`, as the TSC-deadline timer sees it.
    pub fn tsc_at(&self, now_ns: u64) -> u64 {
        self.timer.tsc_at(now_ns)
    }

    // -----------------------------------------------------------------------------------------
    // Routing helpers and events
    // -----------------------------------------------------------------------------------------

    /// Whether a physical destination `dest` names this APIC (broadcasts are the router's):
    /// the x2APIC ID in x2APIC mode, the xAPIC ID in xAPIC mode, never when disabled.
    pub fn matches_physical(&self, dest: u32) -> bool {
        match self.mode() {
            ApicMode::Disabled => false,
            ApicMode::X2Apic => dest == self.id,
            ApicMode::XApic => dest == u32::from(self.xapic_id()),
        }
    }

    /// Whether a logical destination (message destination address) `mda` selects this APIC
    /// (§11.6.2.2, §11.12.10.1): x2APIC: same cluster (bits 31:16) and a common bit in 15:0;
    /// xAPIC flat: a common bit with `LDR[31:24]`; xAPIC cluster: same cluster (bits 7:4) and a
    /// common bit in 3:0. A DFR model other than flat or cluster matches nothing.
    pub fn matches_logical(&self, mda: u32) -> bool {
        match self.mode() {
            ApicMode::Disabled => false,
            ApicMode::X2Apic => {
                let ldr = self.x2apic_ldr();
                ldr >> 16 == mda >> 16 && ldr & mda & 0xFFFF != 0
            }
            ApicMode::XApic => {
                let Ok(mda) = u8::try_from(mda) else {
                    return false;
                };
                let id = (self.ldr >> 24) as u8;
                match self.dfr | !DFR_MODEL {
                    DFR_FLAT => id & mda != 0,
                    DFR_CLUSTER => id >> 4 == mda >> 4 && id & mda & 0xF != 0,
                    _ => false,
                }
            }
        }
    }

    /// Delivers a message that the router resolved to this APIC.
    pub(crate) fn deliver(
        &mut self,
        delivery: DeliveryMode,
        vector: u8,
        trigger: Trigger,
    ) -> Delivery {
        match delivery {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                let accepted = self.accept(vector, trigger == Trigger::Level);
                Delivery {
                    accepted,
                    kick: accepted && self.pending_vector().is_some(),
                }
            }
            DeliveryMode::Nmi => {
                self.nmi();
                Delivery::KICK
            }
            DeliveryMode::Init => {
                self.init();
                Delivery::KICK
            }
            DeliveryMode::StartUp => {
                let accepted = self.sipi(vector);
                Delivery {
                    accepted,
                    kick: accepted,
                }
            }
            DeliveryMode::Smi => {
                self.events.record(ApicEvent::Smi { apic: self.id });
                Delivery {
                    accepted: true,
                    kick: false,
                }
            }
            DeliveryMode::ExtInt | DeliveryMode::Reserved => Delivery {
                accepted: false,
                kick: false,
            },
        }
    }

    /// Starts or stops recording this APIC's events.
    pub fn set_events_enabled(&mut self, enabled: bool) {
        self.events.set_enabled(enabled);
    }

    /// Takes the recorded events, oldest first.
    pub fn take_events(&mut self) -> Vec<ApicEvent> {
        self.events.take()
    }
}

#[cfg(test)]
mod tests;
