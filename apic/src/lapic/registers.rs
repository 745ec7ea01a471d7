//! The two register interfaces of a local APIC: the xAPIC MMIO page and the x2APIC MSRs
//! (SDM Vol. 3A §11.4.1 Table 11-1, §11.12.1.2 Table 11-6), plus `IA32_APIC_BASE` and
//! `IA32_TSC_DEADLINE`.
//!
//! xAPIC MMIO: a register is read with a 1-, 2- or 4-byte access inside its first four bytes
//! (bytes are taken from the 32-bit value) and written with an aligned 4-byte store; other
//! accesses read 0 and are ignored, without error. Reserved bits are ignored on write and read
//! as 0. Writes to read-only registers are ignored. An access to an unimplemented offset sets
//! ESR "illegal register address" (§11.5.3) and reads 0.
//!
//! x2APIC MSRs (only in x2APIC mode; #GP otherwise): #GP on a register absent in x2APIC mode
//! (APR, RRD, DFR, ICR high), a read of a write-only register (EOI, SELF IPI), a write to a
//! read-only register, a non-zero write to EOI or ESR, and a set reserved bit, bits 63:32 of a
//! 32-bit register included (§11.12.1.3). The ICR is one 64-bit register (§11.12.9).

use super::{Effect, LocalApic, Lvt, TimerMode};
use crate::error::Gp;
use crate::event::{ApicEvent, IpiDropReason};
use crate::lapic::{icr, ApicMode};
use crate::message::{DeliveryMode, DestMode, Ipi, Shorthand, Trigger};
use crate::regs::*;

impl LocalApic {
    /// Reads the register at `offset` in the current mode; `Err` when there is no readable
    /// register there (an unimplemented offset, or absent / write-only in x2APIC mode).
    fn read_reg(&self, offset: u32, now_ns: u64) -> Result<u32, Gp> {
        let x2 = self.mode() == ApicMode::X2Apic;
        let v = match offset {
            REG_ID if x2 => self.id,
            REG_ID => u32::from(self.xapic_id()) << 24,
            REG_VERSION => VERSION_VALUE,
            REG_TPR => u32::from(self.tpr),
            REG_APR if !x2 => u32::from(self.apr()),
            REG_PPR => u32::from(self.ppr()),
            REG_EOI if !x2 => 0,
            REG_RRD if !x2 => 0,
            REG_LDR => self.ldr(),
            REG_DFR if !x2 => self.dfr | !DFR_MODEL,
            REG_SVR => self.svr,
            0x100..=0x170 if offset & 0xF == 0 => self.isr.word(((offset - REG_ISR) >> 4) as usize),
            0x180..=0x1F0 if offset & 0xF == 0 => self.tmr.word(((offset - REG_TMR) >> 4) as usize),
            0x200..=0x270 if offset & 0xF == 0 => self.irr.word(((offset - REG_IRR) >> 4) as usize),
            REG_ESR => self.esr,
            REG_ICR_LOW => self.icr_low,
            REG_ICR_HIGH if !x2 => self.icr_high,
            REG_TIMER_INITIAL => self.timer.initial(),
            REG_TIMER_CURRENT => self.timer.current_count(now_ns, self.timer_mode()),
            REG_TIMER_DIVIDE => self.timer.divide(),
            _ => match Lvt::from_offset(offset) {
                Some(lvt) => self.lvt(lvt),
                None => return Err(Gp),
            },
        };
        Ok(v)
    }

    /// Writes the register at `offset` in the current mode. `Err` means #GP in x2APIC mode and
    /// an unimplemented register in xAPIC mode (where read-only and reserved bits are simply
    /// ignored).
    fn write_reg(&mut self, offset: u32, value: u32, now_ns: u64) -> Result<Effect, Gp> {
        let x2 = self.mode() == ApicMode::X2Apic;
        // In x2APIC mode a set reserved bit raises #GP (§11.12.1.3); xAPIC ignores it.
        let reserved = |defined: u32| {
            if x2 && value & !defined != 0 {
                Err(Gp)
            } else {
                Ok(())
            }
        };
        let read_only = || if x2 { Err(Gp) } else { Ok(Effect::None) };
        match offset {
            REG_ID | REG_VERSION | REG_PPR | REG_TIMER_CURRENT => read_only(),
            0x100..=0x270 if offset & 0xF == 0 => read_only(),
            REG_APR | REG_RRD if !x2 => Ok(Effect::None),
            REG_TPR => {
                reserved(TPR_WRITABLE)?;
                self.tpr = (value & TPR_WRITABLE) as u8;
                Ok(Effect::None)
            }
            REG_EOI => {
                if x2 && value != 0 {
                    return Err(Gp);
                }
                Ok(self.eoi().map_or(Effect::None, Effect::EoiBroadcast))
            }
            REG_LDR if x2 => Err(Gp),
            REG_LDR => {
                self.ldr = value & LDR_WRITABLE;
                Ok(Effect::None)
            }
            REG_DFR if !x2 => {
                self.dfr = value | !DFR_MODEL;
                Ok(Effect::None)
            }
            REG_SVR => {
                reserved(SVR_WRITABLE)?;
                self.svr = value & SVR_WRITABLE;
                if !self.software_enabled() {
                    // §11.4.7.2: software disable sets every LVT mask bit.
                    for entry in &mut self.lvt {
                        *entry |= LVT_MASKED;
                    }
                }
                Ok(Effect::None)
            }
            REG_ESR => {
                if x2 && value != 0 {
                    return Err(Gp);
                }
                // §11.5.3: the write latches the errors detected since the previous write and
                // re-arms the error interrupt; the value written does not matter.
                self.esr = std::mem::take(&mut self.esr_pending);
                self.error_armed = true;
                Ok(Effect::None)
            }
            REG_ICR_LOW if !x2 => {
                self.icr_low = value & ICR_LOW_WRITABLE;
                Ok(self.send_icr(self.icr_low, self.icr_high >> 24, false))
            }
            REG_ICR_HIGH if !x2 => {
                self.icr_high = value & ICR_HIGH_WRITABLE;
                Ok(Effect::None)
            }
            REG_TIMER_INITIAL => {
                let mode = self.timer_mode();
                self.timer.set_initial(now_ns, value, mode);
                Ok(Effect::None)
            }
            REG_TIMER_DIVIDE => {
                reserved(DIVIDE_WRITABLE)?;
                let mode = self.timer_mode();
                self.timer.set_divide(now_ns, value, mode);
                Ok(Effect::None)
            }
            REG_SELF_IPI if x2 => {
                reserved(SELF_IPI_WRITABLE)?;
                Ok(self.send_self_ipi((value & SELF_IPI_WRITABLE) as u8))
            }
            _ => match Lvt::from_offset(offset) {
                Some(lvt) => {
                    reserved(lvt.defined(self.tsc_deadline_supported))?;
                    self.write_lvt(lvt, value);
                    Ok(Effect::None)
                }
                None => Err(Gp),
            },
        }
    }

    fn write_lvt(&mut self, lvt: Lvt, value: u32) {
        let old = self.lvt(lvt);
        let mut new = value & lvt.writable(self.tsc_deadline_supported);
        if lvt.is_lint() && new & LVT_LEVEL != 0 {
            new |= old & LVT_REMOTE_IRR;
        }
        if !self.software_enabled() {
            new |= LVT_MASKED;
        }
        if let Some(entry) = self.lvt.get_mut(lvt.index()) {
            *entry = new;
        }
        if lvt == Lvt::Timer {
            let was_deadline = TimerMode::from_lvt(old) == TimerMode::TscDeadline;
            let is_deadline = TimerMode::from_lvt(new) == TimerMode::TscDeadline;
            if was_deadline != is_deadline {
                // §11.5.4.1: switching into or out of TSC-deadline mode disarms the timer.
                self.timer.disarm();
            }
        }
    }

    fn send_icr(&mut self, low: u32, dest: u32, x2apic: bool) -> Effect {
        match icr::decode(low, dest, x2apic, self.id) {
            Ok(ipi) => {
                self.events.record(ApicEvent::IpiSent { ipi });
                Effect::Ipi(ipi)
            }
            Err(reason) => {
                self.events.record(ApicEvent::IpiDropped {
                    apic: self.id,
                    icr: (u64::from(self.icr_high) << 32) | u64::from(low),
                    reason,
                });
                if reason == IpiDropReason::IllegalVector {
                    self.record_error(ESR_SEND_ILLEGAL_VECTOR);
                }
                Effect::None
            }
        }
    }

    /// SELF IPI register write (§11.12.11): a fixed, edge-triggered IPI to this APIC.
    fn send_self_ipi(&mut self, vector: u8) -> Effect {
        if vector < 16 {
            self.events.record(ApicEvent::IpiDropped {
                apic: self.id,
                icr: u64::from(vector),
                reason: IpiDropReason::IllegalVector,
            });
            self.record_error(ESR_SEND_ILLEGAL_VECTOR);
            return Effect::None;
        }
        let ipi = Ipi {
            source: self.id,
            vector,
            delivery: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            trigger: Trigger::Edge,
            shorthand: Shorthand::SelfOnly,
            dest: self.id,
            x2apic: true,
        };
        self.events.record(ApicEvent::IpiSent { ipi });
        Effect::Ipi(ipi)
    }

    /// A guest read of `data.len()` bytes at `offset` in the xAPIC page, with the clock at
    /// `now_ns`. Fills `data` (zeros for anything but a register read, and whenever the APIC is
    /// not in xAPIC mode).
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8], now_ns: u64) {
        data.fill(0);
        if self.mode() != ApicMode::XApic {
            return;
        }
        self.tick(now_ns);
        let within = (offset & 0xF) as usize;
        let Ok(reg) = u32::try_from(offset & !0xF) else {
            return;
        };
        if offset >= APIC_PAGE_SIZE || data.is_empty() || within.saturating_add(data.len()) > 4 {
            return;
        }
        let value = match self.read_reg(reg, now_ns) {
            Ok(v) => v,
            Err(Gp) => {
                self.record_error(ESR_ILLEGAL_REGISTER);
                0
            }
        };
        let bytes = value.to_le_bytes();
        if let Some(src) = bytes.get(within..within + data.len()) {
            data.copy_from_slice(src);
        }
    }

    /// A guest write of `data` at `offset` in the xAPIC page, with the clock at `now_ns`.
    /// Returns what the write asks of the router (an IPI, an EOI broadcast).
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], now_ns: u64) -> Effect {
        if self.mode() != ApicMode::XApic {
            return Effect::None;
        }
        self.tick(now_ns);
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return Effect::None;
        };
        if offset & 0xF != 0 || offset >= APIC_PAGE_SIZE {
            return Effect::None;
        }
        let reg = offset as u32;
        match self.write_reg(reg, u32::from_le_bytes(bytes), now_ns) {
            Ok(effect) => effect,
            Err(Gp) => {
                self.record_error(ESR_ILLEGAL_REGISTER);
                Effect::None
            }
        }
    }

    /// RDMSR of `IA32_APIC_BASE`, `IA32_TSC_DEADLINE` or an x2APIC register, with the clock at
    /// `now_ns`. Any other MSR, and the cases listed in the module documentation, give
    /// `Err(Gp)`.
    pub fn msr_read(&mut self, msr: u32, now_ns: u64) -> Result<u64, Gp> {
        self.tick(now_ns);
        match msr {
            MSR_APIC_BASE => Ok(self.base),
            MSR_TSC_DEADLINE if self.tsc_deadline_supported => {
                Ok(self.timer.deadline(self.timer_mode()))
            }
            _ => {
                let offset = x2apic_offset(msr).ok_or(Gp)?;
                if self.mode() != ApicMode::X2Apic {
                    return Err(Gp);
                }
                if offset == REG_ICR_LOW {
                    return Ok((u64::from(self.icr_high) << 32) | u64::from(self.icr_low));
                }
                self.read_reg(offset, now_ns).map(u64::from)
            }
        }
    }

    /// WRMSR of `IA32_APIC_BASE`, `IA32_TSC_DEADLINE` or an x2APIC register, with the clock at
    /// `now_ns`. A deadline already passed fires at once. Returns what the write asks of the
    /// router, or `Err(Gp)`.
    pub fn msr_write(&mut self, msr: u32, value: u64, now_ns: u64) -> Result<Effect, Gp> {
        self.tick(now_ns);
        match msr {
            MSR_APIC_BASE => self.set_apic_base(value).map(|()| Effect::None),
            MSR_TSC_DEADLINE if self.tsc_deadline_supported => {
                let mode = self.timer_mode();
                self.timer.set_deadline(value, mode);
                self.tick(now_ns);
                Ok(Effect::None)
            }
            _ => {
                let offset = x2apic_offset(msr).ok_or(Gp)?;
                if self.mode() != ApicMode::X2Apic {
                    return Err(Gp);
                }
                if offset == REG_ICR_LOW {
                    if value & X2APIC_ICR_RESERVED != 0 {
                        return Err(Gp);
                    }
                    self.icr_low = (value as u32) & ICR_LOW_WRITABLE;
                    self.icr_high = (value >> 32) as u32;
                    return Ok(self.send_icr(self.icr_low, self.icr_high, true));
                }
                let value = u32::try_from(value).map_err(|_| Gp)?;
                self.write_reg(offset, value, now_ns)
            }
        }
    }
}
