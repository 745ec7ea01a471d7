//! The emulated irqchip: hvtrace's own local APICs and IOAPIC (the `apic` crate) wired to the
//! vCPUs.
//!
//! KVM runs without an in-kernel irqchip. APIC MMIO exits, x2APIC MSR exits
//! (`KVM_CAP_X86_USER_SPACE_MSR`) and the filtered `IA32_APIC_BASE` / `IA32_TSC_DEADLINE` MSRs
//! come here; before each `KVM_RUN` the vCPU layer asks [`EmulatedIrqchip::before_entry`] what to
//! inject. The router never does I/O: every operation collects the vCPUs it must kick, and they
//! are kicked after the router lock is released (a kick takes the vCPU's control lock, under
//! which the vCPU itself asks the router whether it may wake: the two locks are never nested
//! the other way).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use apic::{ApicConfig, ApicEvent, Router};
use vcpu::{Entry, GeneralProtection, GuestWait, Kicker, Startup};

use super::clock::GuestClock;
use super::timer::TimerThread;
use crate::devices::testdev::IrqLines;

/// The emulated local APICs and IOAPIC of one VM.
pub struct EmulatedIrqchip {
    router: Mutex<Router>,
    kickers: OnceLock<Vec<Kicker>>,
    clock: GuestClock,
    timer: OnceLock<TimerThread>,
    /// Where the APIC's events go (the `apic` provider), when something listens.
    events: OnceLock<Arc<dyn ApicEventSink>>,
    /// Whether the router records events now (follows the sink's interest).
    recording: AtomicBool,
}

/// Receives the emulated APIC's state changes ([`ApicEvent`]), outside the router lock.
pub trait ApicEventSink: Send + Sync {
    /// Whether events are wanted now (the router records them only then).
    fn wants(&self) -> bool;
    /// One event, in the order the router made them.
    fn event(&self, event: &ApicEvent);
}

/// Why the emulated irqchip could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure the emulated APIC: {0}")]
pub struct EmulatedIrqchipError(#[from] apic::ConfigError);

impl EmulatedIrqchip {
    /// Local APICs for `cpus` vCPUs (APIC ID = vCPU index) and one IOAPIC.
    pub fn new(
        cpus: usize,
        clock: GuestClock,
        config: &ApicConfig,
    ) -> Result<Arc<Self>, EmulatedIrqchipError> {
        let mut router = Router::new(config, cpus)?;
        router.set_events_enabled(false);
        Ok(Arc::new(EmulatedIrqchip {
            router: Mutex::new(router),
            kickers: OnceLock::new(),
            clock,
            timer: OnceLock::new(),
            events: OnceLock::new(),
            recording: AtomicBool::new(false),
        }))
    }

    /// Sends the APIC's events to `sink` whenever it wants them.
    pub fn set_event_sink(&self, sink: Arc<dyn ApicEventSink>) {
        let _ = self.events.set(sink);
    }

    /// Under the router lock: follows the sink's interest and takes the recorded events.
    fn take_events(&self, router: &mut Router) -> Vec<ApicEvent> {
        let wants = self.events.get().is_some_and(|s| s.wants());
        if wants != self.recording.load(Ordering::Relaxed) {
            router.set_events_enabled(wants);
            self.recording.store(wants, Ordering::Relaxed);
        }
        if wants {
            router.take_events()
        } else {
            Vec::new()
        }
    }

    /// Connects the vCPUs (to kick) and starts the host timer thread.
    pub fn start(self: &Arc<Self>, kickers: Vec<Kicker>) -> std::io::Result<()> {
        let _ = self.kickers.set(kickers);
        let timer = TimerThread::spawn(Arc::clone(self))?;
        let _ = self.timer.set(timer);
        Ok(())
    }

    /// Stops the timer thread (bounded).
    pub fn stop(&self) {
        if let Some(t) = self.timer.get() {
            t.stop();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the router at the current guest time, then kicks whom it asks for and
    /// re-arms the host timer if the next deadline moved.
    pub fn with_router<R>(&self, f: impl FnOnce(&mut Router, u64) -> R) -> R {
        let now = self.clock.now_ns();
        let (result, kicks, deadline_moved, events) = {
            let mut router = self.lock();
            let before = router.next_deadline_ns();
            let result = f(&mut router, now);
            let after = router.next_deadline_ns();
            let events = self.take_events(&mut router);
            (result, router.take_kicks(), before != after, events)
        };
        if let (false, Some(sink)) = (events.is_empty(), self.events.get()) {
            for e in &events {
                sink.event(e);
            }
        }
        if let Some(kickers) = self.kickers.get() {
            for cpu in kicks {
                if let Some(k) = kickers.get(cpu) {
                    k.kick();
                }
            }
        }
        if deadline_moved {
            if let Some(t) = self.timer.get() {
                t.rearm();
            }
        }
        result
    }

    /// Fires due timers; returns the next deadline (guest ns). Called by the timer thread.
    pub(crate) fn tick(&self) -> Option<u64> {
        self.with_router(|r, now| r.tick(now))
    }

    /// The guest clock the APICs run on.
    pub fn clock(&self) -> &GuestClock {
        &self.clock
    }

    /// Handles an MMIO access if `gpa` is `cpu`'s local APIC page or the IOAPIC; returns
    /// whether it was one of them.
    pub fn mmio(&self, cpu: usize, gpa: u64, data: &mut [u8], write: bool) -> bool {
        self.with_router(|r, now| {
            if let Some(offset) = r.lapic(cpu).mmio_offset(gpa) {
                if write {
                    r.mmio_write(cpu, offset, data, now);
                } else {
                    r.mmio_read(cpu, offset, data, now);
                }
                true
            } else if let Some(offset) = gpa.checked_sub(crate::layout::IOAPIC_BASE) {
                if offset >= 0x1000 {
                    return false;
                }
                if write {
                    r.ioapic_mmio_write(offset, data);
                } else {
                    r.ioapic_mmio_read(offset, data);
                }
                true
            } else {
                false
            }
        })
    }

    /// Whether the router owns MSR `index`.
    pub fn handles_msr(index: u32) -> bool {
        Router::handles_msr(index)
    }

    /// `rdmsr` of an APIC MSR.
    pub fn msr_read(&self, cpu: usize, index: u32) -> Result<u64, GeneralProtection> {
        self.with_router(|r, now| r.msr_read(cpu, index, now).map_err(|_| GeneralProtection))
    }

    /// `wrmsr` of an APIC MSR.
    pub fn msr_write(&self, cpu: usize, index: u32, value: u64) -> Result<(), GeneralProtection> {
        self.with_router(|r, now| {
            r.msr_write(cpu, index, value, now)
                .map_err(|_| GeneralProtection)
        })
    }

    /// Before `KVM_RUN`: mirror CR8, take an NMI, and pick the interrupt to inject.
    pub fn before_entry(&self, cpu: usize, entry: &mut Entry) {
        let blocked = self.with_router(|r, now| {
            r.tick_by(cpu, now);
            entry.nmi = r.lapic_mut(cpu).take_nmi();
            if entry.interruptible {
                entry.inject = r.take_interrupt(cpu);
            }
            let lapic = r.lapic(cpu);
            entry.want_window = !entry.interruptible && lapic.pending_vector().is_some();
            entry.cr8 = lapic.cr8();
            entry.want_window || masked_by_tpr(lapic)
        });
        if blocked {
            // The interrupt-window exit is unreliable on some hosts, and lowering CR8 does not
            // exit on every host: poll soon while an interrupt is held back.
            if let Some(t) = self.timer.get() {
                t.poll_soon(cpu);
            }
        }
    }

    /// The guest wrote CR8: TPR[7:4] follows it.
    pub fn guest_cr8(&self, cpu: usize, cr8: u64) {
        self.with_router(|r, _| r.lapic_mut(cpu).set_cr8(cr8));
    }

    /// A pending INIT or SIPI, taken.
    pub fn take_startup(&self, cpu: usize) -> Option<Startup> {
        let mut r = self.lock();
        let s = r.lapic_mut(cpu).take_startup()?;
        Some(match s {
            apic::Startup::Init => Startup::Init,
            apic::Startup::Sipi(v) => Startup::Sipi(v),
        })
    }

    /// Whether a parked vCPU must wake. Takes only the router lock.
    pub fn wakeup_pending(&self, cpu: usize, wait: GuestWait) -> bool {
        let r = self.lock();
        let l = r.lapic(cpu);
        match wait {
            GuestWait::Hlt { interrupts_enabled } => l.wakeup_pending(interrupts_enabled),
            GuestWait::Sipi => l.startup_pending().is_some(),
        }
    }

    /// `cpu`'s local APIC state now (for the end of a recorded run).
    pub fn snapshot(&self, cpu: usize) -> crate::timeline::ApicSnapshot {
        let r = self.lock();
        let l = r.lapic(cpu);
        crate::timeline::ApicSnapshot {
            tpr: l.tpr(),
            ppr: l.ppr(),
            isr: l.isr().iter().collect(),
            irr: l.irr().iter().collect(),
            tmr: l.tmr().iter().collect(),
        }
    }

    /// Kicks `cpu` (the timer thread's polling for interrupt windows).
    pub(crate) fn kick(&self, cpu: usize) {
        if let Some(k) = self.kickers.get().and_then(|k| k.get(cpu)) {
            k.kick();
        }
    }

    /// Whether `cpu` has an interrupt waiting for the guest to enable interrupts or lower CR8.
    pub(crate) fn interrupt_waiting(&self, cpu: usize) -> bool {
        let r = self.lock();
        let lapic = r.lapic(cpu);
        lapic.pending_vector().is_some() || masked_by_tpr(lapic)
    }
}

/// Whether an interrupt in the IRR is held back only by the task priority (which the guest may
/// lower with `mov %reg,%cr8` without an exit).
fn masked_by_tpr(lapic: &apic::LocalApic) -> bool {
    let class = |v: Option<u8>| v.map_or(0, |v| v >> 4);
    let irr = lapic.irr().highest();
    irr.is_some() && lapic.pending_vector().is_none() && class(irr) > class(lapic.isr().highest())
}

/// Devices raise IOAPIC lines through the router.
impl IrqLines for EmulatedIrqchip {
    fn set_level(&self, gsi: u32, level: bool) -> Result<(), String> {
        self.with_router(|r, _| r.set_irq(gsi, level))
            .map_err(|e| format!("IOAPIC line {gsi}: {e}"))
    }
}
