//! Events: every state change of the interrupt controllers as a value ([`ApicEvent`]), recorded
//! into an [`EventLog`] that the caller drains. The tracer exposes them as the `apic:::`
//! provider.
//!
//! Recording is off by default and costs one branch per state change while off. A log holds at
//! most [`EventLog::DEFAULT_CAPACITY`] undrained events; later ones are counted as dropped
//! rather than growing memory without bound.

use crate::lapic::ApicMode;
use crate::message::{DeliveryMode, DestMode, Ipi, Msi, Trigger};

/// Why a fixed interrupt was not accepted into the IRR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Vector 0..=15 (SDM Vol. 3A §11.5.2): ESR "receive illegal vector" is set instead.
    IllegalVector,
    /// The APIC is software disabled (SVR bit 8 clear, §11.4.7.2).
    SoftwareDisabled,
    /// The APIC is globally disabled (`IA32_APIC_BASE` EN clear, §11.4.3).
    HardwareDisabled,
}

/// Why the sending APIC dropped an ICR write instead of sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpiDropReason {
    /// Fixed or lowest-priority IPI with vector 0..=15: ESR "send illegal vector" (§11.5.3).
    IllegalVector,
    /// A shorthand/delivery-mode combination that Table 11-3 marks invalid.
    InvalidCombination,
    /// A level-triggered de-assert message (INIT level de-assert, Table 11-3 note 2), which
    /// Pentium 4 and later processors do not send.
    LevelDeassert,
    /// Delivery mode 011 or 111, reserved in the ICR.
    ReservedDeliveryMode,
}

/// One state change of a local APIC, the IOAPIC or the router. `apic` is the initial (x2APIC)
/// APIC ID, which equals the vCPU index for APICs created by [`crate::Router::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApicEvent {
    /// A fixed interrupt was accepted into the IRR (and the TMR set to `level`).
    Accept {
        /// Receiving APIC.
        apic: u32,
        /// Vector.
        vector: u8,
        /// Level triggered (TMR bit set).
        level: bool,
    },
    /// A fixed interrupt was discarded by its target.
    Reject {
        /// Target APIC.
        apic: u32,
        /// Vector.
        vector: u8,
        /// Why.
        reason: RejectReason,
    },
    /// The VMM acknowledged (injected) a vector: it moved from the IRR to the ISR.
    Inject {
        /// APIC.
        apic: u32,
        /// Vector.
        vector: u8,
    },
    /// The acknowledged vector had become masked: the spurious vector was dispensed instead
    /// (§11.9); the ISR is unchanged.
    Spurious {
        /// APIC.
        apic: u32,
        /// The spurious vector (SVR bits 7:0).
        vector: u8,
    },
    /// An EOI was written.
    Eoi {
        /// APIC.
        apic: u32,
        /// The in-service vector it completed, if any was in service.
        vector: Option<u8>,
        /// Whether the EOI was broadcast to the IOAPIC (level triggered, not suppressed).
        broadcast: bool,
    },
    /// An IPI left its sender.
    IpiSent {
        /// The message.
        ipi: Ipi,
    },
    /// An ICR write that the sender dropped.
    IpiDropped {
        /// Sender.
        apic: u32,
        /// The ICR value written (64 bits: destination in the high half).
        icr: u64,
        /// Why.
        reason: IpiDropReason,
    },
    /// The local timer expired.
    TimerFired {
        /// APIC.
        apic: u32,
        /// LVT timer vector.
        vector: u8,
        /// Whether the LVT timer entry was masked (no interrupt was generated).
        masked: bool,
    },
    /// An NMI became pending.
    Nmi {
        /// APIC.
        apic: u32,
    },
    /// An INIT was received: the APIC was reset (§11.4.7.3).
    Init {
        /// APIC.
        apic: u32,
    },
    /// A start-up IPI was received.
    Sipi {
        /// APIC.
        apic: u32,
        /// Start page (the AP starts at `vector << 12`).
        vector: u8,
        /// Whether the APIC was waiting for it (a SIPI is ignored otherwise).
        accepted: bool,
    },
    /// An SMI was received and ignored (SMM is not emulated).
    Smi {
        /// APIC.
        apic: u32,
    },
    /// Errors were detected (ESR bits, §11.5.3).
    Error {
        /// APIC.
        apic: u32,
        /// The ESR bits detected.
        bits: u32,
    },
    /// `IA32_APIC_BASE` changed the APIC's mode.
    ModeChange {
        /// APIC.
        apic: u32,
        /// New mode.
        mode: ApicMode,
    },
    /// A message-signalled interrupt was delivered to the router.
    Msi {
        /// The message.
        msi: Msi,
    },
    /// The IOAPIC sent a message for one of its pins.
    IoApicSend {
        /// Pin.
        pin: u8,
        /// Vector.
        vector: u8,
        /// Destination (8-bit APIC ID or MDA).
        dest: u8,
        /// Destination mode.
        dest_mode: DestMode,
        /// Delivery mode.
        delivery: DeliveryMode,
        /// Trigger mode.
        trigger: Trigger,
    },
    /// The IOAPIC received an EOI for a vector (broadcast or through its EOI register).
    IoApicEoi {
        /// Vector.
        vector: u8,
    },
}

/// An append-only buffer of [`ApicEvent`]s with an on/off switch.
#[derive(Debug, Clone)]
pub struct EventLog {
    enabled: bool,
    capacity: usize,
    dropped: u64,
    events: Vec<ApicEvent>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(false)
    }
}

impl EventLog {
    /// Most undrained events a log keeps by default.
    pub const DEFAULT_CAPACITY: usize = 1 << 16;

    /// A log, recording or not.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            capacity: Self::DEFAULT_CAPACITY,
            dropped: 0,
            events: Vec::new(),
        }
    }

    /// Whether events are recorded.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Starts or stops recording. Stopping discards the undrained events.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        if !enabled {
            self.events = Vec::new();
        }
    }

    /// Sets the most undrained events kept (at least 1).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Records `event` if recording is on and the log is not full.
    #[inline]
    pub fn record(&mut self, event: ApicEvent) {
        if self.enabled {
            if self.events.len() < self.capacity {
                self.events.push(event);
            } else {
                self.dropped = self.dropped.saturating_add(1);
            }
        }
    }

    /// Moves every event of `other` to the end of this log.
    pub fn append(&mut self, other: &mut EventLog) {
        if other.events.is_empty() {
            return;
        }
        let room = self.capacity.saturating_sub(self.events.len());
        if other.events.len() > room {
            let lost = other.events.len() - room;
            self.dropped = self.dropped.saturating_add(lost as u64);
            other.events.truncate(room);
        }
        self.events.append(&mut other.events);
        self.dropped = self.dropped.saturating_add(other.dropped);
        other.dropped = 0;
    }

    /// Takes the recorded events, oldest first.
    pub fn take(&mut self) -> Vec<ApicEvent> {
        std::mem::take(&mut self.events)
    }

    /// Number of undrained events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events lost because the log was full; reading resets the count.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_log_records_nothing() {
        let mut log = EventLog::default();
        log.record(ApicEvent::Nmi { apic: 0 });
        assert!(log.is_empty());
        log.set_enabled(true);
        log.record(ApicEvent::Nmi { apic: 1 });
        assert_eq!(log.take(), vec![ApicEvent::Nmi { apic: 1 }]);
        assert!(log.is_empty());
    }

    #[test]
    fn full_log_counts_drops() {
        let mut log = EventLog::new(true);
        log.set_capacity(2);
        for apic in 0..5 {
            log.record(ApicEvent::Init { apic });
        }
        assert_eq!(log.len(), 2);
        assert_eq!(log.take_dropped(), 3);
        let mut other = EventLog::new(true);
        other.record(ApicEvent::Init { apic: 9 });
        log.append(&mut other);
        assert_eq!(log.len(), 2);
        assert_eq!(log.take_dropped(), 1);
        assert!(other.is_empty());
    }
}
