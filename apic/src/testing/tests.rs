//! Property tests over the operation-sequence interpreter, and checks that it reaches deep
//! states.

use super::*;
use proptest::prelude::*;

fn cpu() -> impl Strategy<Value = u8> {
    0u8..4
}

fn offset() -> impl Strategy<Value = u16> {
    prop_oneof![
        8 => proptest::sample::select(OFFSETS.to_vec()),
        2 => (0u16..64).prop_map(|i| i << 4),
        1 => any::<u16>(),
    ]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => proptest::sample::select(VALUES.to_vec()),
        1 => any::<u32>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (cpu(), offset(), prop_oneof![9 => Just(4u8), 1 => 0u8..9])
            .prop_map(|(cpu, offset, len)| Op::MmioRead { cpu, offset, len }),
        6 => (cpu(), offset(), prop_oneof![9 => Just(4u8), 1 => 0u8..9], value())
            .prop_map(|(cpu, offset, len, value)| Op::MmioWrite { cpu, offset, len, value }),
        2 => (cpu(), prop_oneof![4 => proptest::sample::select(MSRS.to_vec()), 1 => any::<u32>()])
            .prop_map(|(cpu, msr)| Op::MsrRead { cpu, msr }),
        4 => (cpu(), proptest::sample::select(MSRS.to_vec()),
              prop_oneof![4 => proptest::sample::select(MSR_VALUES.to_vec()), 1 => any::<u64>()])
            .prop_map(|(cpu, msr, value)| Op::MsrWrite { cpu, msr, value }),
        5 => cpu().prop_map(|cpu| Op::Inject { cpu }),
        1 => (cpu(), any::<u8>()).prop_map(|(cpu, vector)| Op::Ack { cpu, vector }),
        4 => cpu().prop_map(|cpu| Op::Eoi { cpu }),
        3 => (cpu(), any::<u8>(), any::<bool>())
            .prop_map(|(cpu, vector, level)| Op::Accept { cpu, vector, level }),
        1 => (cpu(), 0u8..16).prop_map(|(cpu, value)| Op::SetCr8 { cpu, value }),
        3 => (0u8..26, any::<bool>()).prop_map(|(pin, level)| Op::SetIrq { pin, level }),
        2 => (0u32..4, value()).prop_map(|(d, data)| Op::Msi { address: 0xFEE0_0000 | (d << 12), data }),
        1 => (0u8..0x50, 0u8..6).prop_map(|(offset, len)| Op::IoApicRead { offset, len }),
        2 => (proptest::sample::select(vec![0u8, 0x10, 0x10, 0x40]), value())
            .prop_map(|(offset, value)| Op::IoApicWrite { offset, value }),
        1 => cpu().prop_map(|cpu| Op::Nmi { cpu }),
        1 => (cpu(), 0u8..7).prop_map(|(cpu, lvt)| Op::RaiseLvt { cpu, lvt }),
        1 => cpu().prop_map(|cpu| Op::TakeEvents { cpu }),
        3 => prop_oneof![0u32..2000, any::<u32>()].prop_map(|ns| Op::Advance { ns }),
        2 => Just(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Structured operation sequences on 1-4 APICs: no panic, invariants hold throughout.
    #[test]
    fn structured_sequences_keep_the_invariants(
        cpus in 1usize..=4,
        setup in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..300),
    ) {
        let r = Harness::new(cpus, setup).run(&ops);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// Raw bytes through the fuzz decoder (what the cargo-fuzz target runs).
    #[test]
    fn fuzz_decoder_sequences_keep_the_invariants(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let r = run_bytes(&bytes);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}

#[test]
fn decoder_covers_every_operation_kind() {
    // xorshift64: deterministic pseudo-random input.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes: Vec<u8> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    bytes[0] = 0x07;
    let (cpus, setup, ops) = decode(&bytes);
    assert_eq!((cpus, setup), (4, true));
    let kinds: std::collections::HashSet<_> = ops.iter().map(std::mem::discriminant).collect();
    assert_eq!(kinds.len(), 18);
    run_bytes(&bytes).unwrap();
    assert_eq!(decode(&[]), (1, false, vec![]));
}

/// Random input reaches the interesting states: a guard against a decoder that silently
/// stops exercising something.
#[test]
fn random_input_reaches_deep_states() {
    use crate::ApicEvent as E;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut seen = std::collections::BTreeSet::new();
    let mut x2apic = false;
    let mut nested = false;
    for round in 0..64u8 {
        let mut bytes: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        bytes[0] = round;
        let (cpus, setup, ops) = decode(&bytes);
        let mut h = Harness::new(cpus, setup);
        h.keep_events = true;
        for op in &ops {
            h.apply(op).unwrap();
            h.check().unwrap();
            for l in h.router.lapics() {
                x2apic |= l.mode() == ApicMode::X2Apic;
                nested |= l.isr().iter().count() > 1;
            }
        }
        for e in &h.events {
            let name = match e {
                E::Accept { .. } => "accept",
                E::Inject { .. } => "inject",
                E::Spurious { .. } => "spurious",
                E::Eoi {
                    broadcast: true, ..
                } => "eoi-broadcast",
                E::IpiSent { .. } => "ipi",
                E::TimerFired { masked: false, .. } => "timer",
                E::Sipi { accepted: true, .. } => "sipi",
                E::Init { .. } => "init",
                E::Nmi { .. } => "nmi",
                E::IoApicSend { .. } => "ioapic",
                E::Msi { .. } => "msi",
                E::Error { .. } => "error",
                _ => continue,
            };
            seen.insert(name);
        }
    }
    assert!(x2apic, "x2APIC mode reached");
    assert!(nested, "nested in-service interrupts reached");
    assert_eq!(seen.len(), 12, "seen: {seen:?}");
}

#[test]
fn a_guest_like_sequence_passes() {
    let mut h = Harness::new(2, true);
    let ops = [
        Op::MmioWrite {
            cpu: 0,
            offset: 0x320,
            len: 4,
            value: 0x2_0031,
        },
        Op::MmioWrite {
            cpu: 0,
            offset: 0x3E0,
            len: 4,
            value: 0xB,
        },
        Op::MmioWrite {
            cpu: 0,
            offset: 0x380,
            len: 4,
            value: 1000,
        },
        Op::Advance { ns: 1000 },
        Op::Tick,
        Op::Inject { cpu: 0 },
        Op::SetIrq {
            pin: 1,
            level: true,
        },
        Op::Inject { cpu: 1 },
        Op::Eoi { cpu: 1 },
        Op::Inject { cpu: 1 },
        Op::SetIrq {
            pin: 1,
            level: false,
        },
        Op::Eoi { cpu: 1 },
        Op::Eoi { cpu: 0 },
        Op::MsrWrite {
            cpu: 1,
            msr: 0x1B,
            value: 0xFEE0_0C00,
        },
        Op::MsrWrite {
            cpu: 1,
            msr: 0x830,
            value: 0x4_0040,
        },
        Op::Inject { cpu: 1 },
    ];
    h.run(&ops).unwrap();
    assert!(h.router.lapic(1).isr().contains(0x40));
}

#[test]
fn the_checker_catches_a_broken_invariant() {
    let mut h = Harness::new(1, true);
    h.router.lapic_mut(0).accept(0x40, false);
    // An ack the shadow does not know about: the ISR bit looks undelivered.
    h.router.lapic_mut(0).take_interrupt();
    assert!(h.check().is_err());
}
