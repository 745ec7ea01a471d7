//! The local vector table (SDM Vol. 3A §11.5.1, Figure 11-8): the seven entries, their defined
//! and writable bits, and the delivery of local interrupts.

use super::{ApicMode, LocalApic};
use crate::event::ApicEvent;
use crate::message::DeliveryMode;
use crate::regs::*;

/// One local vector table entry (§11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lvt {
    /// LVT timer (0x320 / MSR 0x832).
    Timer,
    /// LVT thermal sensor (0x330 / MSR 0x833).
    Thermal,
    /// LVT performance monitoring counters (0x340 / MSR 0x834).
    Perf,
    /// LVT LINT0 (0x350 / MSR 0x835).
    Lint0,
    /// LVT LINT1 (0x360 / MSR 0x836).
    Lint1,
    /// LVT error (0x370 / MSR 0x837).
    Error,
    /// LVT CMCI (0x2F0 / MSR 0x82F).
    Cmci,
}

impl Lvt {
    /// Every LVT entry.
    pub const ALL: [Lvt; 7] = [
        Lvt::Timer,
        Lvt::Thermal,
        Lvt::Perf,
        Lvt::Lint0,
        Lvt::Lint1,
        Lvt::Error,
        Lvt::Cmci,
    ];

    pub(super) fn index(self) -> usize {
        match self {
            Lvt::Timer => 0,
            Lvt::Thermal => 1,
            Lvt::Perf => 2,
            Lvt::Lint0 => 3,
            Lvt::Lint1 => 4,
            Lvt::Error => 5,
            Lvt::Cmci => 6,
        }
    }

    /// The xAPIC MMIO offset of the entry.
    pub fn offset(self) -> u32 {
        match self {
            Lvt::Timer => REG_LVT_TIMER,
            Lvt::Thermal => REG_LVT_THERMAL,
            Lvt::Perf => REG_LVT_PERF,
            Lvt::Lint0 => REG_LVT_LINT0,
            Lvt::Lint1 => REG_LVT_LINT1,
            Lvt::Error => REG_LVT_ERROR,
            Lvt::Cmci => REG_LVT_CMCI,
        }
    }

    /// The entry at xAPIC MMIO `offset`.
    pub fn from_offset(offset: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.offset() == offset)
    }

    pub(super) fn is_lint(self) -> bool {
        matches!(self, Lvt::Lint0 | Lvt::Lint1)
    }

    /// Bits defined for this entry (Figure 11-8), read-only ones included. In x2APIC mode a
    /// write setting any other bit raises #GP.
    pub(super) fn defined(self, tsc_deadline: bool) -> u32 {
        let common = LVT_VECTOR | LVT_DELIVERY_STATUS | LVT_MASKED;
        match self {
            Lvt::Timer if tsc_deadline => common | LVT_TIMER_MODE,
            Lvt::Timer => common | LVT_TIMER_PERIODIC,
            Lvt::Thermal | Lvt::Perf | Lvt::Cmci => common | LVT_DELIVERY_MODE,
            Lvt::Lint0 | Lvt::Lint1 => {
                common | LVT_DELIVERY_MODE | LVT_POLARITY | LVT_REMOTE_IRR | LVT_LEVEL
            }
            Lvt::Error => common,
        }
    }

    /// Bits software can write.
    pub(super) fn writable(self, tsc_deadline: bool) -> u32 {
        self.defined(tsc_deadline) & !(LVT_DELIVERY_STATUS | LVT_REMOTE_IRR)
    }
}

impl LocalApic {
    /// Signals the local interrupt source of `lvt` (a LINT0/LINT1 edge, a thermal, performance
    /// or CMCI event; the timer and error entries are raised internally). Delivered per the
    /// entry, unless masked: fixed (level triggered only for LINT0/LINT1, which then sets the
    /// entry's remote IRR until the EOI and ignores raises meanwhile), NMI, INIT (LINT0/LINT1
    /// only). SMI and ExtINT are ignored (no SMM, no 8259A). Returns whether something was
    /// delivered.
    pub fn raise_lvt(&mut self, lvt: Lvt) -> bool {
        self.fire_lvt(lvt)
    }

    pub(super) fn fire_lvt(&mut self, lvt: Lvt) -> bool {
        let entry = self.lvt(lvt);
        if self.mode() == ApicMode::Disabled || entry & LVT_MASKED != 0 {
            return false;
        }
        let vector = (entry & LVT_VECTOR) as u8;
        let delivery = match lvt {
            Lvt::Timer | Lvt::Error => DeliveryMode::Fixed,
            _ => DeliveryMode::from_bits(entry >> 8),
        };
        match delivery {
            DeliveryMode::Fixed => {
                let level = lvt.is_lint() && entry & LVT_LEVEL != 0;
                if level && entry & LVT_REMOTE_IRR != 0 {
                    return false;
                }
                let accepted = self.accept(vector, level);
                if accepted && level {
                    if let Some(e) = self.lvt.get_mut(lvt.index()) {
                        *e |= LVT_REMOTE_IRR;
                    }
                }
                accepted
            }
            DeliveryMode::Nmi => {
                self.nmi();
                true
            }
            DeliveryMode::Init if lvt.is_lint() => {
                self.init();
                true
            }
            DeliveryMode::Smi => {
                self.events.record(ApicEvent::Smi { apic: self.id });
                false
            }
            _ => false,
        }
    }
}
