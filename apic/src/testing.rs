//! Operation-sequence interpreter shared by the property tests (below) and the cargo-fuzz target
//! (`apic/fuzz`): it decodes arbitrary bytes into guest-like operations on 1 to 4 local APICs
//! and the IOAPIC (register accesses, MSR accesses, interrupts, injection, EOI, clock advances),
//! applies them to a [`Router`], and checks the architectural invariants after each one.
//!
//! Not part of the API: compiled for tests and with the `testing` feature only.

use crate::ioapic::{IOAPIC_EOI, IOREDTBL, IOREGSEL, IOWIN};
use crate::lapic::ApicMode;
use crate::regs::*;
use crate::{ApicConfig, Lvt, Router, VectorSet};

/// Most vCPUs a harness drives.
pub const MAX_CPUS: usize = 4;

/// One operation of a sequence. `cpu` values are taken modulo the number of vCPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Guest read in the xAPIC page.
    MmioRead {
        /// vCPU.
        cpu: u8,
        /// Offset in the page (may be unaligned or beyond it).
        offset: u16,
        /// Access size in bytes.
        len: u8,
    },
    /// Guest write in the xAPIC page.
    MmioWrite {
        /// vCPU.
        cpu: u8,
        /// Offset.
        offset: u16,
        /// Access size in bytes (the first `len` bytes of `value`, little endian).
        len: u8,
        /// Value.
        value: u32,
    },
    /// RDMSR.
    MsrRead {
        /// vCPU.
        cpu: u8,
        /// MSR.
        msr: u32,
    },
    /// WRMSR.
    MsrWrite {
        /// vCPU.
        cpu: u8,
        /// MSR.
        msr: u32,
        /// Value.
        value: u64,
    },
    /// The VMM injects the pending interrupt (the guest has IF = 1).
    Inject {
        /// vCPU.
        cpu: u8,
    },
    /// The VMM acknowledges an arbitrary vector.
    Ack {
        /// vCPU.
        cpu: u8,
        /// Vector.
        vector: u8,
    },
    /// The guest writes EOI through the interface of its current mode.
    Eoi {
        /// vCPU.
        cpu: u8,
    },
    /// A fixed interrupt is accepted directly.
    Accept {
        /// vCPU.
        cpu: u8,
        /// Vector.
        vector: u8,
        /// Level triggered.
        level: bool,
    },
    /// The guest wrote CR8.
    SetCr8 {
        /// vCPU.
        cpu: u8,
        /// Value.
        value: u8,
    },
    /// An IOAPIC line changes.
    SetIrq {
        /// Pin (may be out of range).
        pin: u8,
        /// Asserted.
        level: bool,
    },
    /// A device MSI.
    Msi {
        /// Address (low 32 bits).
        address: u32,
        /// Data.
        data: u32,
    },
    /// Guest read of the IOAPIC window.
    IoApicRead {
        /// Offset.
        offset: u8,
        /// Size.
        len: u8,
    },
    /// Guest write of the IOAPIC window.
    IoApicWrite {
        /// Offset.
        offset: u8,
        /// Value (4 bytes).
        value: u32,
    },
    /// The VMM raises an NMI.
    Nmi {
        /// vCPU.
        cpu: u8,
    },
    /// A local interrupt source fires.
    RaiseLvt {
        /// vCPU.
        cpu: u8,
        /// Index into [`Lvt::ALL`] (modulo 7).
        lvt: u8,
    },
    /// The VMM takes the pending NMI and start-up events.
    TakeEvents {
        /// vCPU.
        cpu: u8,
    },
    /// The clock advances.
    Advance {
        /// Nanoseconds.
        ns: u32,
    },
    /// The host timer fires: every APIC timer advances to now.
    Tick,
}

/// Register offsets and values an OS writes, so that random input reaches deep states.
const OFFSETS: [u16; 24] = [
    0x020, 0x030, 0x080, 0x090, 0x0A0, 0x0B0, 0x0D0, 0x0E0, 0x0F0, 0x100, 0x200, 0x280, 0x2F0,
    0x300, 0x310, 0x320, 0x330, 0x350, 0x360, 0x370, 0x380, 0x390, 0x3E0, 0x3F0,
];
const VALUES: [u32; 32] = [
    0x1FF,
    0x11FF,
    0xFF,
    0,
    0x30,
    0x2_0031,
    0x4_0040,
    0x1_0030,
    0x4041,
    0xC500,
    0x8500,
    0x4608,
    0x4400,
    0x4_0042,
    0x8_0043,
    0xC_0044,
    0x0100_0000,
    0xFF00_0000,
    0x0FFF_FFFF,
    0xB,
    0x3,
    10,
    1000,
    0x8055,
    0x905,
    0x0200_0000,
    0x0300_0000,
    0x0F00_0000,
    0x4005,
    0xC_4608,
    0x40,
    0x8_0C45,
];
/// Whole register writes an OS makes (offset, value), picked as a unit.
const WRITES: [(u16, u32); 24] = [
    (0x0F0, 0x1FF),
    (0x0F0, 0x11FF),
    (0x0F0, 0xFF),
    (0x0B0, 0),
    (0x0B0, 0),
    (0x080, 0x50),
    (0x080, 0),
    (0x280, 0),
    (0x310, 0x0100_0000),
    (0x310, 0x0200_0000),
    (0x300, 0x4041),
    (0x300, 0x0C_4608),
    (0x300, 0x0C_C500),
    (0x300, 0x0C_4400),
    (0x300, 0x08_4042),
    (0x300, 0x4_4043),
    (0x300, 0x4944),
    (0x320, 0x2_0031),
    (0x320, 0x4_0032),
    (0x3E0, 0xB),
    (0x380, 1000),
    (0x350, 0x8033),
    (0x0D0, 0x0300_0000),
    (0x0E0, 0x0FFF_FFFF),
];
const MSRS: [u32; 24] = [
    0x1B, 0x6E0, 0x802, 0x803, 0x808, 0x809, 0x80A, 0x80B, 0x80D, 0x80F, 0x810, 0x820, 0x828,
    0x82F, 0x830, 0x831, 0x832, 0x835, 0x837, 0x838, 0x839, 0x83E, 0x83F, 0x8FF,
];
const MSR_VALUES: [u64; 17] = [
    0xFEE0_0900,
    0xFEE0_0D00,
    0xFEE0_0C00,
    0xFEE0_0000,
    0xFED0_0800,
    0,
    0x1FF,
    0x11FF,
    0x40,
    0x4_0040,
    (1 << 32) | 0x41,
    (0xFFFF_FFFF << 32) | 0x42,
    (0b11 << 32) | 0x843,
    (1 << 32) | 0x4609,
    0x8_0044,
    0x4608,
    2_000,
];

/// Little-endian reader over the fuzz input; reads past the end give 0.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn len(&mut self) -> u8 {
        [4, 4, 4, 4, 1, 2, 8, 3][usize::from(self.u8() & 7)]
    }
    fn offset(&mut self) -> u16 {
        let b = self.u8();
        match b {
            0..=0x7F => OFFSETS[usize::from(b) % OFFSETS.len()],
            0x80..=0xEF => u16::from(b & 0x3F) << 4,
            _ => self.u16(),
        }
    }
    fn value(&mut self) -> u32 {
        let b = self.u8();
        if b < 0x40 {
            self.u32()
        } else {
            VALUES[usize::from(b) % VALUES.len()]
        }
    }
    fn msr(&mut self) -> u32 {
        let b = self.u8();
        match b {
            0..=0xBF => MSRS[usize::from(b) % MSRS.len()],
            0xC0..=0xFD => 0x800 + u32::from(self.u8()),
            _ => self.u32(),
        }
    }
    fn msr_value(&mut self) -> u64 {
        let b = self.u8();
        if b < 0x40 {
            self.u64()
        } else {
            MSR_VALUES[usize::from(b) % MSR_VALUES.len()]
        }
    }
}

/// Decodes fuzz input: the first byte picks the number of vCPUs (bits 1:0, plus one) and
/// whether the APICs start configured as an OS would leave them (bit 2); the rest is a sequence
/// of operations.
pub fn decode(bytes: &[u8]) -> (usize, bool, Vec<Op>) {
    let mut b = Bytes(bytes);
    let head = b.u8();
    let cpus = usize::from(head & 3) + 1;
    let setup = head & 4 != 0;
    let mut ops = Vec::new();
    while !b.is_empty() {
        let tag = b.u8();
        let op = match tag % 20 {
            0 | 1 => Op::MmioRead {
                cpu: b.u8(),
                offset: b.offset(),
                len: b.len(),
            },
            2..=4 => {
                let cpu = b.u8();
                let pick = b.u8();
                match WRITES.get(usize::from(pick)) {
                    Some(&(offset, value)) => Op::MmioWrite {
                        cpu,
                        offset,
                        len: 4,
                        value,
                    },
                    None => Op::MmioWrite {
                        cpu,
                        offset: b.offset(),
                        len: b.len(),
                        value: b.value(),
                    },
                }
            }
            5 => Op::MsrRead {
                cpu: b.u8(),
                msr: b.msr(),
            },
            6 | 7 => Op::MsrWrite {
                cpu: b.u8(),
                msr: b.msr(),
                value: b.msr_value(),
            },
            8 | 9 => Op::Inject { cpu: b.u8() },
            10 => Op::Ack {
                cpu: b.u8(),
                vector: b.u8(),
            },
            11 => Op::Eoi { cpu: b.u8() },
            12 => Op::Accept {
                cpu: b.u8(),
                vector: b.u8(),
                level: tag & 0x80 != 0,
            },
            13 => Op::SetCr8 {
                cpu: b.u8(),
                value: b.u8(),
            },
            14 => Op::SetIrq {
                pin: b.u8() % 26,
                level: tag & 0x80 != 0,
            },
            15 => Op::Msi {
                address: 0xFEE0_0000 | (u32::from(b.u8()) << 12) | u32::from(b.u8() & 0xC),
                data: b.value(),
            },
            16 => {
                if tag & 0x80 != 0 {
                    Op::IoApicRead {
                        offset: b.u8() & 0x7F,
                        len: b.len(),
                    }
                } else {
                    let offset = [IOREGSEL, IOWIN, IOWIN, IOAPIC_EOI][usize::from(b.u8() & 3)];
                    Op::IoApicWrite {
                        offset: offset as u8,
                        value: b.value(),
                    }
                }
            }
            17 => match tag & 0xC0 {
                0 => Op::Nmi { cpu: b.u8() },
                0x40 => Op::RaiseLvt {
                    cpu: b.u8(),
                    lvt: b.u8(),
                },
                _ => Op::TakeEvents { cpu: b.u8() },
            },
            18 => Op::Advance {
                ns: u32::from(b.u16()) << (b.u8() & 15),
            },
            _ => Op::Tick,
        };
        ops.push(op);
    }
    (cpus, setup, ops)
}

/// An invariant that did not hold, with the operation that broke it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated after op #{index} {op:?}: {what}")]
pub struct Violation {
    /// Index of the operation in the sequence.
    pub index: usize,
    /// The operation.
    pub op: Option<Op>,
    /// What went wrong.
    pub what: String,
}

/// A router, a fake clock and a shadow of which vectors the VMM acknowledged.
pub struct Harness {
    /// The system under test.
    pub router: Router,
    /// Fake clock, nanoseconds.
    pub now: u64,
    /// Per vCPU: vectors moved into the ISR by an acknowledgement and maybe still in service.
    acked: Vec<VectorSet>,
    /// The last operation was a tick at `now`.
    ticked: bool,
    /// Every event of the run, when [`Harness::keep_events`] is set (for coverage checks).
    pub events: Vec<crate::ApicEvent>,
    /// Whether to keep the events in [`Harness::events`].
    pub keep_events: bool,
}

impl Harness {
    /// A harness for `cpus` vCPUs (clamped to 1..=4). With `setup`, each APIC is software
    /// enabled with a flat logical ID, its LINT0 unmasked, and IOAPIC pins 0-7 routed to it,
    /// alternately edge and level triggered.
    pub fn new(cpus: usize, setup: bool) -> Self {
        let cpus = cpus.clamp(1, MAX_CPUS);
        let mut router = match Router::new(&ApicConfig::default(), cpus) {
            Ok(r) => r,
            Err(e) => unreachable!("the default configuration is valid: {e}"),
        };
        if setup {
            for cpu in 0..cpus {
                let w = |r: &mut Router, off: u32, v: u32| {
                    r.mmio_write(cpu, u64::from(off), &v.to_le_bytes(), 0)
                };
                w(&mut router, REG_SVR, 0x1FF);
                w(&mut router, REG_LDR, 1 << (24 + cpu));
                w(&mut router, REG_LVT_LINT0, 0x3A);
                w(&mut router, REG_LVT_ERROR, 0xFE);
            }
            for pin in 0..8u32 {
                let level = if pin % 2 == 1 { 0x8000 } else { 0 };
                let dest = (pin as usize % cpus) as u32;
                for (index, value) in [
                    (IOREDTBL + 2 * pin, level | (0x50 + pin)),
                    (IOREDTBL + 2 * pin + 1, dest << 24),
                ] {
                    router.ioapic_mmio_write(IOREGSEL, &index.to_le_bytes());
                    router.ioapic_mmio_write(IOWIN, &value.to_le_bytes());
                }
            }
        }
        router.set_events_enabled(true);
        Self {
            router,
            now: 0,
            acked: vec![VectorSet::new(); cpus],
            ticked: false,
            events: Vec::new(),
            keep_events: false,
        }
    }

    fn cpu(&self, cpu: u8) -> usize {
        usize::from(cpu) % self.router.cpu_count()
    }

    /// Applies one operation; `Err` when the operation itself misbehaved (an injection that
    /// did not match the pending vector).
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        self.ticked = false;
        let now = self.now;
        match *op {
            Op::MmioRead { cpu, offset, len } => {
                let cpu = self.cpu(cpu);
                let mut data = vec![0u8; usize::from(len)];
                self.router
                    .mmio_read(cpu, u64::from(offset), &mut data, now);
            }
            Op::MmioWrite {
                cpu,
                offset,
                len,
                value,
            } => {
                let cpu = self.cpu(cpu);
                let bytes = u64::from(value).to_le_bytes();
                let data = bytes.get(..usize::from(len)).unwrap_or(&bytes);
                self.router.mmio_write(cpu, u64::from(offset), data, now);
            }
            Op::MsrRead { cpu, msr } => {
                let cpu = self.cpu(cpu);
                let _ = self.router.msr_read(cpu, msr, now);
            }
            Op::MsrWrite { cpu, msr, value } => {
                let cpu = self.cpu(cpu);
                let _ = self.router.msr_write(cpu, msr, value, now);
            }
            Op::Inject { cpu } => {
                let cpu = self.cpu(cpu);
                let pending = self.router.lapic(cpu).pending_vector();
                let before = *self.router.lapic(cpu).isr();
                let got = self.router.take_interrupt(cpu);
                if got != pending {
                    return Err(format!("pending {pending:?} but injected {got:?}"));
                }
                let after = *self.router.lapic(cpu).isr();
                if let Some(v) = got {
                    if !after.contains(v) || before.contains(v) {
                        return Err(format!("injected {v:#x} did not enter the ISR"));
                    }
                    if let Some(a) = self.acked.get_mut(cpu) {
                        a.insert(v);
                    }
                } else if after != before {
                    return Err("the ISR changed without an injection".into());
                }
            }
            Op::Ack { cpu, vector } => {
                let cpu = self.cpu(cpu);
                let deliverable = self.router.lapic(cpu).irr().contains(vector)
                    && self.router.lapic(cpu).enabled()
                    && vector >> 4 > self.router.lapic(cpu).ppr() >> 4;
                let before = *self.router.lapic(cpu).isr();
                let got = self.router.ack(cpu, vector);
                let after = *self.router.lapic(cpu).isr();
                if deliverable {
                    if got != Some(vector) || !after.contains(vector) {
                        return Err(format!("ack {vector:#x} returned {got:?}"));
                    }
                    if let Some(a) = self.acked.get_mut(cpu) {
                        a.insert(vector);
                    }
                } else if after != before {
                    return Err(format!("ack of undeliverable {vector:#x} changed the ISR"));
                }
            }
            Op::Eoi { cpu } => {
                let cpu = self.cpu(cpu);
                match self.router.lapic(cpu).mode() {
                    ApicMode::XApic => {
                        self.router
                            .mmio_write(cpu, u64::from(REG_EOI), &[0; 4], now)
                    }
                    ApicMode::X2Apic => {
                        if self.router.msr_write(cpu, 0x80B, 0, now).is_err() {
                            return Err("EOI of 0 raised #GP".into());
                        }
                    }
                    ApicMode::Disabled => self.router.eoi(cpu),
                }
            }
            Op::Accept { cpu, vector, level } => {
                let cpu = self.cpu(cpu);
                self.router.lapic_mut(cpu).accept(vector, level);
            }
            Op::SetCr8 { cpu, value } => {
                let cpu = self.cpu(cpu);
                self.router.lapic_mut(cpu).set_cr8(u64::from(value));
            }
            Op::SetIrq { pin, level } => {
                let _ = self.router.set_irq(u32::from(pin), level);
            }
            Op::Msi { address, data } => {
                let _ = self.router.msi(u64::from(address), data);
            }
            Op::IoApicRead { offset, len } => {
                let mut data = vec![0u8; usize::from(len)];
                self.router.ioapic_mmio_read(u64::from(offset), &mut data);
            }
            Op::IoApicWrite { offset, value } => {
                self.router
                    .ioapic_mmio_write(u64::from(offset), &value.to_le_bytes());
            }
            Op::Nmi { cpu } => {
                let cpu = self.cpu(cpu);
                self.router.nmi(cpu);
            }
            Op::RaiseLvt { cpu, lvt } => {
                let cpu = self.cpu(cpu);
                let lvt = Lvt::ALL[usize::from(lvt) % Lvt::ALL.len()];
                self.router.raise_lvt(cpu, lvt);
            }
            Op::TakeEvents { cpu } => {
                let cpu = self.cpu(cpu);
                let l = self.router.lapic_mut(cpu);
                l.take_nmi();
                l.take_startup();
            }
            Op::Advance { ns } => self.now = self.now.saturating_add(u64::from(ns)),
            Op::Tick => {
                self.router.tick(now);
                self.ticked = true;
            }
        }
        // Exercise the collection paths too.
        for cpu in self.router.take_kicks() {
            if cpu >= self.router.cpu_count() {
                return Err(format!("kick of unknown vCPU {cpu}"));
            }
        }
        let events = self.router.take_events();
        if self.keep_events {
            self.events.extend(events);
        }
        Ok(())
    }

    /// Checks the invariants: an ISR bit only for an acknowledged vector; no vector below 16
    /// in IRR/ISR; PPR consistent with TPR and the highest ISR vector; the pending vector is
    /// the highest IRR vector and above the PPR class; software-disabled APICs have every LVT
    /// masked; disabled APICs hold nothing; timers are not overdue after a tick; remote IRR only
    /// on level-triggered IOAPIC pins.
    pub fn check(&mut self) -> Result<(), String> {
        for cpu in 0..self.router.cpu_count() {
            let l = self.router.lapic(cpu);
            let acked = self.acked.get(cpu).copied().unwrap_or_default();
            if !l.isr().is_subset(&acked) {
                return Err(format!(
                    "vCPU {cpu}: ISR {:?} holds vectors never acknowledged ({acked:?})",
                    l.isr()
                ));
            }
            if let Some(a) = self.acked.get_mut(cpu) {
                *a = a.intersection(l.isr());
            }
            if l.irr().iter().chain(l.isr().iter()).any(|v| v < 16) {
                return Err(format!("vCPU {cpu}: illegal vector in IRR/ISR"));
            }
            let isrv = l.isr().highest().unwrap_or(0);
            let expected = if l.tpr() >> 4 >= isrv >> 4 {
                l.tpr()
            } else {
                isrv & 0xF0
            };
            if l.ppr() != expected {
                return Err(format!(
                    "vCPU {cpu}: PPR {:#x}, expected {expected:#x}",
                    l.ppr()
                ));
            }
            match l.pending_vector() {
                Some(v) => {
                    if !l.enabled() || Some(v) != l.irr().highest() || v >> 4 <= l.ppr() >> 4 {
                        return Err(format!(
                            "vCPU {cpu}: pending {v:#x} with PPR {:#x}",
                            l.ppr()
                        ));
                    }
                }
                None => {
                    if l.enabled() && l.irr().highest().is_some_and(|h| h >> 4 > l.ppr() >> 4) {
                        return Err(format!("vCPU {cpu}: deliverable vector not pending"));
                    }
                }
            }
            if !l.software_enabled() && Lvt::ALL.iter().any(|&e| l.lvt(e) & LVT_MASKED == 0) {
                return Err(format!("vCPU {cpu}: unmasked LVT while software disabled"));
            }
            if l.mode() == ApicMode::Disabled && !(l.irr().is_empty() && l.isr().is_empty()) {
                return Err(format!("vCPU {cpu}: disabled APIC holds interrupts"));
            }
            if self.ticked && l.next_deadline_ns().is_some_and(|d| d <= self.now) {
                return Err(format!("vCPU {cpu}: timer overdue after a tick"));
            }
        }
        let io = self.router.ioapic();
        for pin in 0..crate::ioapic::IOAPIC_PINS {
            let entry = io.redirection(pin).unwrap_or(0);
            if io.remote_irr(pin) && entry & crate::ioapic::REDIR_LEVEL == 0 {
                return Err(format!("pin {pin}: remote IRR on an edge-triggered pin"));
            }
        }
        Ok(())
    }

    /// Applies `ops`, checking the invariants after each.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), Violation> {
        self.check().map_err(|what| Violation {
            index: 0,
            op: None,
            what,
        })?;
        for (index, op) in ops.iter().enumerate() {
            self.apply(op)
                .and_then(|()| self.check())
                .map_err(|what| Violation {
                    index,
                    op: Some(op.clone()),
                    what,
                })?;
        }
        Ok(())
    }
}

/// Decodes `bytes` and runs the sequence: the fuzz target's body.
pub fn run_bytes(bytes: &[u8]) -> Result<(), Violation> {
    let (cpus, setup, ops) = decode(bytes);
    Harness::new(cpus, setup).run(&ops)
}

#[cfg(test)]
mod tests;
