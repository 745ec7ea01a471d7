//! The `apic` provider: the emulated APIC's events ([`ApicEvent`]) as probes, fired on the
//! vCPU whose APIC changed (the sender's for `ipi`).
//!
//! | probe | arg0 | arg1 | arg2 | arg3 |
//! |---|---|---|---|---|
//! | `apic:::accept` | vector | 1 if level triggered | | |
//! | `apic:::inject` | vector | | | |
//! | `apic:::eoi` | vector completed (-1: none in service) | 1 if broadcast to the IOAPIC | | |
//! | `apic:::ipi` | vector | destination | delivery mode (ICR bits 10:8) | shorthand (ICR bits 19:18) |
//! | `apic:::timer` | LVT timer vector | 1 if masked | | |
//! | `apic:::init` | | | | |
//! | `apic:::sipi` | start page (vector) | 1 if the APIC was waiting for it | | |

use apic::{ApicEvent, Shorthand};

use super::Sessions;
use crate::irqchip::emulated::ApicEventSink;

/// The probe an event fires, on which vCPU, with which arguments; `None` for events the
/// provider does not offer.
pub fn describe(event: &ApicEvent) -> Option<(usize, &'static str, [u64; 4])> {
    let b = |v: u8| u64::from(v);
    let f = |v: bool| u64::from(v);
    let (apic, name, args) = match *event {
        ApicEvent::Accept {
            apic,
            vector,
            level,
        } => (apic, "accept", [b(vector), f(level), 0, 0]),
        ApicEvent::Inject { apic, vector } => (apic, "inject", [b(vector), 0, 0, 0]),
        ApicEvent::Eoi {
            apic,
            vector,
            broadcast,
        } => (
            apic,
            "eoi",
            [vector.map_or(u64::MAX, b), f(broadcast), 0, 0],
        ),
        ApicEvent::IpiSent { ipi } => {
            let shorthand = match ipi.shorthand {
                Shorthand::None => 0,
                Shorthand::SelfOnly => 1,
                Shorthand::AllIncludingSelf => 2,
                Shorthand::AllExcludingSelf => 3,
            };
            (
                ipi.source,
                "ipi",
                [
                    b(ipi.vector),
                    u64::from(ipi.dest),
                    u64::from(ipi.delivery.bits()),
                    shorthand,
                ],
            )
        }
        ApicEvent::TimerFired {
            apic,
            vector,
            masked,
        } => (apic, "timer", [b(vector), f(masked), 0, 0]),
        ApicEvent::Init { apic } => (apic, "init", [0; 4]),
        ApicEvent::Sipi {
            apic,
            vector,
            accepted,
        } => (apic, "sipi", [b(vector), f(accepted), 0, 0]),
        _ => return None,
    };
    Some((apic as usize, name, args))
}

impl ApicEventSink for Sessions {
    fn wants(&self) -> bool {
        self.wants_apic()
    }

    fn event(&self, event: &ApicEvent) {
        if let Some((cpu, name, args)) = describe(event) {
            Sessions::event(self, cpu, "apic", name, args);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_event_has_a_probe_and_others_none() {
        let names: Vec<&str> = [
            ApicEvent::Accept {
                apic: 1,
                vector: 0x30,
                level: true,
            },
            ApicEvent::Inject {
                apic: 1,
                vector: 0x30,
            },
            ApicEvent::Eoi {
                apic: 1,
                vector: None,
                broadcast: false,
            },
            ApicEvent::TimerFired {
                apic: 0,
                vector: 0xec,
                masked: false,
            },
            ApicEvent::Init { apic: 2 },
            ApicEvent::Sipi {
                apic: 2,
                vector: 8,
                accepted: true,
            },
        ]
        .iter()
        .filter_map(|e| describe(e).map(|d| d.1))
        .collect();
        assert_eq!(names, ["accept", "inject", "eoi", "timer", "init", "sipi"]);
        let eoi = describe(&ApicEvent::Eoi {
            apic: 3,
            vector: None,
            broadcast: true,
        })
        .unwrap();
        assert_eq!(eoi, (3, "eoi", [u64::MAX, 1, 0, 0]));
        assert!(describe(&ApicEvent::Nmi { apic: 0 }).is_none());
        for name in tracer::probes::APIC_EVENTS {
            assert!(
                ["accept", "inject", "eoi", "ipi", "timer", "init", "sipi"].contains(&name),
                "{name} has no event"
            );
        }
    }
}
