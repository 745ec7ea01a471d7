//! A bounded record of what every vCPU did, with host timestamps: run states (running, halted
//! by the guest, stopped by the VMM), exits, the emulated APIC's events (injections, EOIs,
//! IPIs, timer expiries) and probe hits. `hvtrace run --timeline FILE` writes it as Chrome
//! trace-event JSON for the Perfetto UI (`chrome.rs`); `hvtrace compare` derives its APIC
//! measurements from it.

mod chrome;

use chrome::apic_event_cpu;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use apic::ApicEvent;
use vcpu::RunState;

pub use chrome::write_trace_events;

/// Default bound on recorded events (about 100 bytes each in memory, 150 in JSON).
pub const DEFAULT_MAX_EVENTS: usize = 500_000;

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// The vCPU's thread moved to this state.
    State(RunState),
    /// An exit of this kind (the `vmexit` provider's names), with its first argument (port,
    /// address, MSR index, vector; 0 when none).
    Exit(&'static str, u64),
    /// An event of hvtrace's own APIC.
    Apic(ApicEvent),
    /// A probe fired (its `provider:module:function:name`).
    Probe(Arc<str>),
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Nanoseconds since the timeline started (host monotonic clock).
    pub ts_ns: u64,
    /// The vCPU it belongs to.
    pub cpu: u32,
    /// What happened.
    pub kind: EventKind,
}

/// A local APIC's state at the end of a run: from `KVM_GET_LAPIC` for KVM's APIC, from the
/// router for hvtrace's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApicSnapshot {
    /// TPR.
    pub tpr: u8,
    /// PPR.
    pub ppr: u8,
    /// Vectors in service.
    pub isr: Vec<u8>,
    /// Vectors requested.
    pub irr: Vec<u8>,
    /// Vectors marked level triggered.
    pub tmr: Vec<u8>,
}

impl ApicSnapshot {
    /// From the APIC register page `KVM_GET_LAPIC` returns (TPR 0x80, PPR 0xa0, ISR 0x100,
    /// TMR 0x180, IRR 0x200; each vector set is eight 32-bit words 16 bytes apart).
    pub fn from_register_page(regs: &[u8]) -> Self {
        let byte = |off: usize| regs.get(off).copied().unwrap_or(0);
        let set = |base: usize| -> Vec<u8> {
            (0..=255u8)
                .filter(|&v| {
                    let word = base + usize::from(v / 32) * 16;
                    let bits = u32::from_le_bytes([
                        byte(word),
                        byte(word + 1),
                        byte(word + 2),
                        byte(word + 3),
                    ]);
                    bits & (1 << (v % 32)) != 0
                })
                .collect()
        };
        ApicSnapshot {
            tpr: byte(0x80),
            ppr: byte(0xa0),
            isr: set(0x100),
            tmr: set(0x180),
            irr: set(0x200),
        }
    }
}

/// The recorder: shared by every vCPU thread, the APIC timer thread and the probes.
pub struct Timeline {
    start: Instant,
    max_events: usize,
    events: Mutex<Vec<Event>>,
    dropped: AtomicU64,
    final_apics: Mutex<std::collections::BTreeMap<usize, ApicSnapshot>>,
}

impl Timeline {
    /// A timeline keeping at most `max_events` events (later ones are counted as dropped).
    pub fn new(max_events: usize) -> Arc<Self> {
        Arc::new(Timeline {
            start: Instant::now(),
            max_events,
            events: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            final_apics: Mutex::new(Default::default()),
        })
    }

    /// Records `kind` on `cpu`, now.
    pub fn record(&self, cpu: usize, kind: EventKind) {
        let ts_ns = self.start.elapsed().as_nanos() as u64;
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() >= self.max_events {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        events.push(Event {
            ts_ns,
            cpu: cpu as u32,
            kind,
        });
    }

    /// Records `cpu`'s local APIC state at the end of the run.
    pub fn record_final_apic(&self, cpu: usize, snapshot: ApicSnapshot) {
        self.final_apics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cpu, snapshot);
    }

    /// Each vCPU's local APIC state at the end of the run, where recorded.
    pub fn final_apics(&self) -> std::collections::BTreeMap<usize, ApicSnapshot> {
        self.final_apics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Nanoseconds since the timeline started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Every recorded event in time order, and how many were dropped after the bound.
    pub fn snapshot(&self) -> (Vec<Event>, u64) {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        events.sort_by_key(|e| e.ts_ns);
        (events, self.dropped.load(Ordering::Relaxed))
    }
}

/// The timeline also receives the emulated APIC's events (through [`ApicFanOut`]).
pub struct ApicFanOut {
    /// The trace sessions (the `apic` provider).
    pub sessions: Arc<crate::trace::Sessions>,
    /// The timeline, when recorded.
    pub timeline: Option<Arc<Timeline>>,
}

impl crate::irqchip::emulated::ApicEventSink for ApicFanOut {
    fn wants(&self) -> bool {
        self.timeline.is_some() || self.sessions.wants_apic()
    }

    fn event(&self, event: &ApicEvent) {
        if let Some(t) = &self.timeline {
            t.record(apic_event_cpu(event), EventKind::Apic(*event));
        }
        if self.sessions.wants_apic() {
            crate::irqchip::emulated::ApicEventSink::event(&*self.sessions, event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_pages_decode() {
        let mut page = vec![0u8; 1024];
        page[0x80] = 0x20;
        page[0xa0] = 0x30;
        page[0x100 + 16] = 1; // ISR vector 32
        page[0x200 + 3 * 16] |= 1 << 2; // IRR vector 98
        let s = ApicSnapshot::from_register_page(&page);
        assert_eq!((s.tpr, s.ppr), (0x20, 0x30));
        assert_eq!(s.isr, [32]);
        assert_eq!(s.irr, [98]);
        assert!(s.tmr.is_empty());
    }

    #[test]
    fn events_are_bounded_and_ordered() {
        let t = Timeline::new(3);
        t.record(1, EventKind::State(RunState::Running));
        t.record(0, EventKind::Exit("io", 0x3f8));
        t.record(0, EventKind::Probe("fbt:kernel:f:entry".into()));
        t.record(0, EventKind::Exit("hlt", 0));
        let (events, dropped) = t.snapshot();
        assert_eq!(events.len(), 3);
        assert_eq!(dropped, 1);
        assert!(events.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    }
}
