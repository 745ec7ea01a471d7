//! APIC behaviour measured from a run's timeline: what hvtrace's own APIC did (its event
//! stream), and what any irqchip shows from outside (exits by kind). KVM's in-kernel APIC does
//! not report its deliveries, so those rows are absent for `kvm` and `split` (said as such in
//! the report, never filled with zeros).

use std::collections::BTreeMap;

use apic::ApicEvent;

use crate::timeline::{Event, EventKind};

/// What the emulated APIC's events say about one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApicMetrics {
    /// Deliveries (injections) per vector.
    pub deliveries: BTreeMap<u8, u64>,
    /// The first vectors delivered to each vCPU, in order (at most [`ORDER_LEN`]).
    pub order: Vec<Vec<u8>>,
    /// Deepest in-service nesting seen on any vCPU.
    pub max_nesting: u32,
    /// EOIs written.
    pub eois: u64,
    /// Nanoseconds from an EOI to the next delivery on the same vCPU (sorted).
    pub eoi_to_next_ns: Vec<u64>,
    /// IPIs sent.
    pub ipis: u64,
    /// Nanoseconds from a fixed IPI's sending to the delivery of its vector (sorted).
    pub ipi_latency_ns: Vec<u64>,
    /// Nanoseconds between consecutive local-timer expiries on a vCPU (sorted).
    pub timer_periods_ns: Vec<u64>,
    /// Spurious-vector deliveries.
    pub spurious: u64,
}

/// How many deliveries per vCPU the order keeps.
pub const ORDER_LEN: usize = 16;

/// The APIC metrics of `events` (a timeline of `cpus` vCPUs); `None` when it holds no APIC
/// event (KVM's in-kernel APIC).
pub fn apic_metrics(events: &[Event], cpus: usize) -> Option<ApicMetrics> {
    let mut m = ApicMetrics {
        order: vec![Vec::new(); cpus],
        ..ApicMetrics::default()
    };
    let mut any = false;
    let mut depth = vec![0u32; cpus];
    let mut last_eoi: Vec<Option<u64>> = vec![None; cpus];
    let mut last_timer: Vec<Option<u64>> = vec![None; cpus];
    let mut pending_ipis: Vec<(u8, u64)> = Vec::new();
    for e in events {
        let EventKind::Apic(ev) = &e.kind else {
            continue;
        };
        any = true;
        let cpu = e.cpu as usize;
        match *ev {
            ApicEvent::Inject { vector, .. } => {
                *m.deliveries.entry(vector).or_default() += 1;
                if let Some(order) = m.order.get_mut(cpu) {
                    if order.len() < ORDER_LEN {
                        order.push(vector);
                    }
                }
                if let Some(d) = depth.get_mut(cpu) {
                    *d += 1;
                    m.max_nesting = m.max_nesting.max(*d);
                }
                if let Some(at) = last_eoi.get_mut(cpu).and_then(Option::take) {
                    m.eoi_to_next_ns.push(e.ts_ns.saturating_sub(at));
                }
                if let Some(i) = pending_ipis.iter().position(|(v, _)| *v == vector) {
                    let (_, sent) = pending_ipis.remove(i);
                    m.ipi_latency_ns.push(e.ts_ns.saturating_sub(sent));
                }
            }
            ApicEvent::Eoi { vector, .. } => {
                m.eois += 1;
                if vector.is_some() {
                    if let Some(d) = depth.get_mut(cpu) {
                        *d = d.saturating_sub(1);
                    }
                }
                if let Some(slot) = last_eoi.get_mut(cpu) {
                    *slot = Some(e.ts_ns);
                }
            }
            ApicEvent::IpiSent { ipi } => {
                m.ipis += 1;
                if ipi.delivery == apic::DeliveryMode::Fixed {
                    pending_ipis.push((ipi.vector, e.ts_ns));
                }
            }
            ApicEvent::TimerFired { .. } => {
                if let Some(slot) = last_timer.get_mut(cpu) {
                    if let Some(prev) = slot.replace(e.ts_ns) {
                        m.timer_periods_ns.push(e.ts_ns.saturating_sub(prev));
                    }
                }
            }
            ApicEvent::Spurious { .. } => m.spurious += 1,
            _ => {}
        }
    }
    m.eoi_to_next_ns.sort_unstable();
    m.ipi_latency_ns.sort_unstable();
    m.timer_periods_ns.sort_unstable();
    any.then_some(m)
}

/// Exits per kind in `events`.
pub fn exits_by_kind(events: &[Event]) -> BTreeMap<String, u64> {
    let mut exits = BTreeMap::new();
    for e in events {
        if let EventKind::Exit(kind, _) = e.kind {
            *exits.entry(kind.to_string()).or_default() += 1;
        }
    }
    exits
}

/// The `q`-quantile (0..=1) of sorted `values`.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values.get(i.min(values.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apic::{DeliveryMode, DestMode, Ipi, Shorthand, Trigger};

    fn at(ts_ns: u64, cpu: u32, ev: ApicEvent) -> Event {
        Event {
            ts_ns,
            cpu,
            kind: EventKind::Apic(ev),
        }
    }

    #[test]
    fn nesting_latencies_and_periods() {
        let ipi = Ipi {
            source: 0,
            vector: 0x40,
            delivery: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            trigger: Trigger::Edge,
            shorthand: Shorthand::None,
            dest: 1,
            x2apic: false,
        };
        let events = vec![
            at(100, 0, ApicEvent::IpiSent { ipi }),
            at(
                400,
                1,
                ApicEvent::Inject {
                    apic: 1,
                    vector: 0x40,
                },
            ),
            at(
                500,
                1,
                ApicEvent::Inject {
                    apic: 1,
                    vector: 0x50,
                },
            ),
            at(
                600,
                1,
                ApicEvent::Eoi {
                    apic: 1,
                    vector: Some(0x50),
                    broadcast: false,
                },
            ),
            at(
                700,
                1,
                ApicEvent::Eoi {
                    apic: 1,
                    vector: Some(0x40),
                    broadcast: false,
                },
            ),
            at(
                1000,
                1,
                ApicEvent::Inject {
                    apic: 1,
                    vector: 0x40,
                },
            ),
            at(
                2000,
                0,
                ApicEvent::TimerFired {
                    apic: 0,
                    vector: 0xec,
                    masked: false,
                },
            ),
            at(
                3000,
                0,
                ApicEvent::TimerFired {
                    apic: 0,
                    vector: 0xec,
                    masked: false,
                },
            ),
        ];
        let m = apic_metrics(&events, 2).unwrap();
        assert_eq!(m.deliveries[&0x40], 2);
        assert_eq!(m.max_nesting, 2);
        assert_eq!(m.eois, 2);
        assert_eq!(m.eoi_to_next_ns, [300]);
        assert_eq!(m.ipi_latency_ns, [300]);
        assert_eq!(m.timer_periods_ns, [1000]);
        assert_eq!(m.order[1], [0x40, 0x50, 0x40]);
        assert!(apic_metrics(&[], 2).is_none());
        assert_eq!(quantile(&[1, 2, 3, 4, 5], 0.5), Some(3));
    }
}
