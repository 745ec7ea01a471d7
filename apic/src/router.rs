//! The router: owns the local APICs of every vCPU and the IOAPIC, and carries messages between
//! them: IPIs from ICR writes, MSIs, IOAPIC messages, EOI broadcasts back to the IOAPIC. It does
//! no I/O: the vCPUs to wake are collected for the caller ([`Router::take_kicks`]), and so are
//! the events ([`Router::take_events`]).
//!
//! # Destinations (SDM Vol. 3A §11.6.2, §11.12.10)
//!
//! - Shorthands: self, all including self, all excluding self (the sender is the vCPU whose
//!   register write produced the IPI).
//! - Physical: the APIC whose ID (xAPIC: 8 bits; x2APIC: 32 bits) equals the destination;
//!   0xFF in the 8-bit format and 0xFFFF_FFFF in the 32-bit format broadcast to all.
//! - Logical: every APIC whose LDR matches per its own DFR model (flat, cluster) or x2APIC
//!   cluster addressing; the same values broadcast.
//! - Lowest priority: among the targets, the APIC with the lowest processor priority (PPR),
//!   enabled APICs first, ties broken by the lowest APIC ID. (Focus-processor checking is not
//!   modelled: Pentium 4 and later do not have it.)
//! - Globally disabled APICs receive nothing.
//!
//! # Kicks
//!
//! A vCPU is listed in [`Router::take_kicks`] when something it must act on arrived: a newly
//! deliverable interrupt, an NMI, an INIT or an accepted SIPI. An operation done on behalf of a
//! vCPU (its MMIO/MSR access, its `ack`/`eoi`) never lists that vCPU itself: it is out of
//! `KVM_RUN` and checks [`crate::LocalApic::pending_vector`] before re-entering.

use crate::error::{ConfigError, Gp, IoApicError, MsiError};
use crate::event::{ApicEvent, EventLog};
use crate::ioapic::{IoApic, IoApicMessage};
use crate::lapic::{ApicConfig, Effect, LocalApic, Lvt};
use crate::message::{DeliveryMode, DestMode, Ipi, Msi, Shorthand, Trigger};
use crate::regs::{MSR_APIC_BASE, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST};

/// Most local APICs a router holds (8-bit xAPIC IDs, 0xFF being the broadcast).
pub const MAX_CPUS: usize = 255;

/// Who a message goes to, once the shorthand and format are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Cpu(usize),
    All,
    AllBut(usize),
    Physical { dest: u32, x2apic: bool },
    Logical { mda: u32, x2apic: bool },
}

fn is_broadcast(dest: u32, x2apic: bool) -> bool {
    if x2apic {
        dest == u32::MAX
    } else {
        dest == 0xFF
    }
}

/// The local APICs of a VM and its IOAPIC, wired together.
#[derive(Debug, Clone)]
pub struct Router {
    lapics: Vec<LocalApic>,
    ioapic: IoApic,
    events: EventLog,
    kicks: Vec<usize>,
    kick_flags: Vec<bool>,
    /// The vCPU the current operation is done for: never kicked by it.
    current: Option<usize>,
    ioapic_out: Vec<IoApicMessage>,
}

impl Router {
    /// A router for `cpus` vCPUs. vCPU `i` gets APIC ID `i`; vCPU 0 is the bootstrap processor.
    pub fn new(config: &ApicConfig, cpus: usize) -> Result<Self, ConfigError> {
        config.validate()?;
        if cpus == 0 || cpus > MAX_CPUS {
            return Err(ConfigError::CpuCount(cpus));
        }
        let lapics = (0..cpus)
            .map(|i| LocalApic::new(config, i as u32, i == 0))
            .collect();
        Ok(Self {
            lapics,
            ioapic: IoApic::new(),
            events: EventLog::default(),
            kicks: Vec::new(),
            kick_flags: vec![false; cpus],
            current: None,
            ioapic_out: Vec::new(),
        })
    }

    /// Whether `msr` belongs to the APICs: `IA32_APIC_BASE`, `IA32_TSC_DEADLINE` and the x2APIC
    /// range. The VMM routes exactly these to [`Self::msr_read`] / [`Self::msr_write`].
    pub fn handles_msr(msr: u32) -> bool {
        matches!(
            msr,
            MSR_APIC_BASE | MSR_TSC_DEADLINE | MSR_X2APIC_FIRST..=MSR_X2APIC_LAST
        )
    }

    /// Number of vCPUs.
    pub fn cpu_count(&self) -> usize {
        self.lapics.len()
    }

    /// The local APIC of `cpu`.
    ///
    /// # Panics
    ///
    /// If `cpu >= self.cpu_count()`.
    pub fn lapic(&self, cpu: usize) -> &LocalApic {
        &self.lapics[cpu]
    }

    /// The local APIC of `cpu`, mutably (for `ack`, `take_interrupt`, `set_cr8`, `take_nmi`,
    /// `take_startup`...). Its events are merged into the router's log at the next router call.
    ///
    /// # Panics
    ///
    /// If `cpu >= self.cpu_count()`.
    pub fn lapic_mut(&mut self, cpu: usize) -> &mut LocalApic {
        &mut self.lapics[cpu]
    }

    /// Every local APIC, by vCPU index.
    pub fn lapics(&self) -> &[LocalApic] {
        &self.lapics
    }

    /// The IOAPIC.
    pub fn ioapic(&self) -> &IoApic {
        &self.ioapic
    }

    /// The vCPU whose local APIC has ID `apic_id`.
    pub fn cpu_of_apic_id(&self, apic_id: u32) -> Option<usize> {
        self.lapics.iter().position(|l| l.id() == apic_id)
    }

    // -----------------------------------------------------------------------------------------
    // Guest accesses
    // -----------------------------------------------------------------------------------------

    /// A read by `cpu` at `offset` in its xAPIC page (see [`LocalApic::mmio_read`]). An unknown
    /// `cpu` reads zeros.
    pub fn mmio_read(&mut self, cpu: usize, offset: u64, data: &mut [u8], now_ns: u64) {
        self.current = Some(cpu);
        match self.lapics.get_mut(cpu) {
            Some(l) => l.mmio_read(offset, data, now_ns),
            None => data.fill(0),
        }
        self.finish(cpu);
    }

    /// A write by `cpu` at `offset` in its xAPIC page; IPIs and EOI broadcasts are delivered.
    pub fn mmio_write(&mut self, cpu: usize, offset: u64, data: &[u8], now_ns: u64) {
        self.current = Some(cpu);
        let effect = match self.lapics.get_mut(cpu) {
            Some(l) => l.mmio_write(offset, data, now_ns),
            None => Effect::None,
        };
        self.apply(cpu, effect);
        self.finish(cpu);
    }

    /// RDMSR by `cpu` (see [`LocalApic::msr_read`]); `Err(Gp)`: inject #GP.
    pub fn msr_read(&mut self, cpu: usize, msr: u32, now_ns: u64) -> Result<u64, Gp> {
        self.current = Some(cpu);
        let r = match self.lapics.get_mut(cpu) {
            Some(l) => l.msr_read(msr, now_ns),
            None => Err(Gp),
        };
        self.finish(cpu);
        r
    }

    /// WRMSR by `cpu` (see [`LocalApic::msr_write`]); `Err(Gp)`: inject #GP.
    pub fn msr_write(&mut self, cpu: usize, msr: u32, value: u64, now_ns: u64) -> Result<(), Gp> {
        self.current = Some(cpu);
        let r = match self.lapics.get_mut(cpu) {
            Some(l) => l.msr_write(msr, value, now_ns),
            None => Err(Gp),
        };
        if let Ok(effect) = r {
            self.apply(cpu, effect);
        }
        self.finish(cpu);
        r.map(|_| ())
    }

    /// `cpu` injects `vector` (see [`LocalApic::ack`]): returns the vector to inject.
    pub fn ack(&mut self, cpu: usize, vector: u8) -> Option<u8> {
        let r = self.lapics.get_mut(cpu).and_then(|l| l.ack(vector));
        self.gather_cpu(cpu);
        r
    }

    /// The vector `cpu` should inject now, moved to its ISR (see
    /// [`LocalApic::take_interrupt`]). Call only when the guest can take an interrupt.
    pub fn take_interrupt(&mut self, cpu: usize) -> Option<u8> {
        let r = self.lapics.get_mut(cpu).and_then(LocalApic::take_interrupt);
        self.gather_cpu(cpu);
        r
    }

    /// An EOI by `cpu` outside the register interface (e.g. a paravirtual EOI); level-triggered
    /// vectors are broadcast to the IOAPIC as for a register write.
    pub fn eoi(&mut self, cpu: usize) {
        self.current = Some(cpu);
        let effect = self
            .lapics
            .get_mut(cpu)
            .and_then(LocalApic::eoi)
            .map_or(Effect::None, Effect::EoiBroadcast);
        self.apply(cpu, effect);
        self.finish(cpu);
    }

    /// A read of the IOAPIC window at `offset`.
    pub fn ioapic_mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        self.ioapic.mmio_read(offset, data);
    }

    /// A write to the IOAPIC window at `offset`; resulting messages are delivered.
    pub fn ioapic_mmio_write(&mut self, offset: u64, data: &[u8]) {
        let mut out = std::mem::take(&mut self.ioapic_out);
        self.ioapic.mmio_write(offset, data, &mut out);
        self.deliver_ioapic(&mut out);
        self.ioapic_out = out;
        self.gather_all();
    }

    // -----------------------------------------------------------------------------------------
    // Devices and the VMM
    // -----------------------------------------------------------------------------------------

    /// Sets the asserted state of IOAPIC input `pin` (a device's interrupt line).
    pub fn set_irq(&mut self, pin: u32, asserted: bool) -> Result<(), IoApicError> {
        let mut out = std::mem::take(&mut self.ioapic_out);
        let r = self.ioapic.set_irq(pin, asserted, &mut out);
        self.deliver_ioapic(&mut out);
        self.ioapic_out = out;
        self.gather_all();
        r
    }

    /// Delivers a message-signalled interrupt written by a device (§11.11). Start-up, ExtINT and
    /// reserved delivery modes and level-triggered de-assert messages are dropped.
    pub fn msi(&mut self, address: u64, data: u32) -> Result<(), MsiError> {
        let msi = Msi::decode(address, data)?;
        self.gather_all();
        self.events.record(ApicEvent::Msi { msi });
        if msi.trigger == Trigger::Level && !msi.level {
            return Ok(());
        }
        let target = match msi.dest_mode {
            DestMode::Physical => Target::Physical {
                dest: u32::from(msi.dest),
                x2apic: false,
            },
            DestMode::Logical => Target::Logical {
                mda: u32::from(msi.dest),
                x2apic: false,
            },
        };
        self.deliver(
            target,
            device_delivery(msi.delivery),
            msi.vector,
            msi.trigger,
        );
        self.gather_all();
        Ok(())
    }

    /// Makes an NMI pending on `cpu` (e.g. an NMI button or watchdog of the VMM).
    pub fn nmi(&mut self, cpu: usize) {
        if let Some(l) = self.lapics.get_mut(cpu) {
            l.nmi();
            self.kick(cpu);
        }
        self.gather_cpu(cpu);
    }

    /// Signals the local interrupt source `lvt` of `cpu` (see [`LocalApic::raise_lvt`]).
    pub fn raise_lvt(&mut self, cpu: usize, lvt: Lvt) {
        let kick = self
            .lapics
            .get_mut(cpu)
            .is_some_and(|l| l.raise_lvt(lvt) && l.wakeup_pending(true));
        if kick {
            self.kick(cpu);
        }
        self.gather_cpu(cpu);
    }

    /// Advances every local timer to `now_ns` (expired timers raise their interrupts, vCPUs are
    /// kicked) and returns the next deadline, for the host timer.
    pub fn tick(&mut self, now_ns: u64) -> Option<u64> {
        for cpu in 0..self.lapics.len() {
            let kick = self
                .lapics
                .get_mut(cpu)
                .is_some_and(|l| l.tick(now_ns) && l.pending_vector().is_some());
            if kick {
                self.kick(cpu);
            }
            self.gather_cpu(cpu);
        }
        self.next_deadline_ns()
    }

    /// [`Self::tick`] done by vCPU `cpu` itself (e.g. just before it enters the guest): a timer
    /// of `cpu` that expires raises its interrupt but does not list `cpu` to kick, since it is
    /// about to look at its pending vector anyway. Other vCPUs are kicked as usual.
    pub fn tick_by(&mut self, cpu: usize, now_ns: u64) -> Option<u64> {
        self.current = Some(cpu);
        let next = self.tick(now_ns);
        self.current = None;
        next
    }

    /// The earliest timer deadline of all local APICs.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.lapics
            .iter()
            .filter_map(LocalApic::next_deadline_ns)
            .min()
    }

    /// The vCPUs to kick since the last call, each once, in the order they became due.
    pub fn take_kicks(&mut self) -> Vec<usize> {
        for &cpu in &self.kicks {
            if let Some(f) = self.kick_flags.get_mut(cpu) {
                *f = false;
            }
        }
        std::mem::take(&mut self.kicks)
    }

    /// Starts or stops recording events (off at creation).
    pub fn set_events_enabled(&mut self, enabled: bool) {
        self.events.set_enabled(enabled);
        self.ioapic.set_events_enabled(enabled);
        for l in &mut self.lapics {
            l.set_events_enabled(enabled);
        }
    }

    /// Takes the recorded events, oldest first.
    pub fn take_events(&mut self) -> Vec<ApicEvent> {
        self.gather_all();
        self.events.take()
    }

    /// Events lost because the log was full since the last call.
    pub fn take_dropped_events(&mut self) -> u64 {
        self.events.take_dropped()
    }

    // -----------------------------------------------------------------------------------------
    // Internals
    // -----------------------------------------------------------------------------------------

    fn finish(&mut self, cpu: usize) {
        self.gather_cpu(cpu);
        self.current = None;
    }

    fn gather_cpu(&mut self, cpu: usize) {
        if self.events.is_enabled() {
            if let Some(l) = self.lapics.get_mut(cpu) {
                self.events.append(&mut l.events);
            }
        }
    }

    fn gather_all(&mut self) {
        if self.events.is_enabled() {
            for l in &mut self.lapics {
                self.events.append(&mut l.events);
            }
            self.events.append(&mut self.ioapic.events);
        }
    }

    fn kick(&mut self, cpu: usize) {
        if self.current == Some(cpu) {
            return;
        }
        if let Some(flag) = self.kick_flags.get_mut(cpu) {
            if !*flag {
                *flag = true;
                self.kicks.push(cpu);
            }
        }
    }

    /// Carries out what a register write of `cpu` asked for.
    fn apply(&mut self, cpu: usize, effect: Effect) {
        self.gather_cpu(cpu);
        match effect {
            Effect::None => {}
            Effect::Ipi(ipi) => self.send_ipi(cpu, ipi),
            Effect::EoiBroadcast(vector) => {
                let mut out = std::mem::take(&mut self.ioapic_out);
                self.ioapic.eoi(vector, &mut out);
                self.gather_all();
                self.deliver_ioapic(&mut out);
                self.ioapic_out = out;
            }
        }
    }

    fn send_ipi(&mut self, from: usize, ipi: Ipi) {
        let target = match ipi.shorthand {
            Shorthand::SelfOnly => Target::Cpu(from),
            Shorthand::AllIncludingSelf => Target::All,
            Shorthand::AllExcludingSelf => Target::AllBut(from),
            Shorthand::None => match ipi.dest_mode {
                DestMode::Physical => Target::Physical {
                    dest: ipi.dest,
                    x2apic: ipi.x2apic,
                },
                DestMode::Logical => Target::Logical {
                    mda: ipi.dest,
                    x2apic: ipi.x2apic,
                },
            },
        };
        self.deliver(target, ipi.delivery, ipi.vector, ipi.trigger);
    }

    /// Delivers the IOAPIC's messages (draining `out`). A level-triggered message nobody
    /// accepted clears its pin's remote IRR.
    fn deliver_ioapic(&mut self, out: &mut Vec<IoApicMessage>) {
        for msg in out.drain(..) {
            let target = match msg.dest_mode {
                DestMode::Physical => Target::Physical {
                    dest: u32::from(msg.dest),
                    x2apic: false,
                },
                DestMode::Logical => Target::Logical {
                    mda: u32::from(msg.dest),
                    x2apic: false,
                },
            };
            let accepted = self.deliver(
                target,
                device_delivery(msg.delivery),
                msg.vector,
                msg.trigger,
            );
            if !accepted && msg.trigger == Trigger::Level {
                self.ioapic.delivery_failed(msg.pin);
            }
        }
    }

    fn matches(lapic: &LocalApic, cpu: usize, target: Target) -> bool {
        if lapic.mode() == crate::ApicMode::Disabled {
            return false;
        }
        match target {
            Target::Cpu(c) => cpu == c,
            Target::All => true,
            Target::AllBut(c) => cpu != c,
            Target::Physical { dest, x2apic } => {
                is_broadcast(dest, x2apic) || lapic.matches_physical(dest)
            }
            Target::Logical { mda, x2apic } => {
                is_broadcast(mda, x2apic) || lapic.matches_logical(mda)
            }
        }
    }

    /// Delivers one message; returns whether any target accepted it.
    fn deliver(
        &mut self,
        target: Target,
        delivery: DeliveryMode,
        vector: u8,
        trigger: Trigger,
    ) -> bool {
        if delivery == DeliveryMode::LowestPriority {
            let chosen = self
                .lapics
                .iter()
                .enumerate()
                .filter(|&(cpu, l)| Self::matches(l, cpu, target))
                .min_by_key(|&(_, l)| (!l.enabled(), l.ppr(), l.id()))
                .map(|(cpu, _)| cpu);
            return chosen.is_some_and(|cpu| self.deliver_to(cpu, delivery, vector, trigger));
        }
        let mut accepted = false;
        for cpu in 0..self.lapics.len() {
            let hit = self
                .lapics
                .get(cpu)
                .is_some_and(|l| Self::matches(l, cpu, target));
            if hit {
                accepted |= self.deliver_to(cpu, delivery, vector, trigger);
            }
        }
        accepted
    }

    fn deliver_to(
        &mut self,
        cpu: usize,
        delivery: DeliveryMode,
        vector: u8,
        trigger: Trigger,
    ) -> bool {
        let Some(l) = self.lapics.get_mut(cpu) else {
            return false;
        };
        let d = l.deliver(delivery, vector, trigger);
        if d.kick {
            self.kick(cpu);
        }
        self.gather_cpu(cpu);
        d.accepted
    }
}

/// Delivery modes a device message (MSI, IOAPIC) may use: start-up is reserved there.
fn device_delivery(mode: DeliveryMode) -> DeliveryMode {
    match mode {
        DeliveryMode::StartUp => DeliveryMode::Reserved,
        m => m,
    }
}

#[cfg(test)]
mod tests;
