//! Unit tests of one local APIC, register by register, with a fake clock (`now_ns` values).

use super::*;
use crate::message::{DestMode, Shorthand};
use crate::{Gp, IpiDropReason};

const XAPIC_BASE: u64 = DEFAULT_APIC_BASE | APIC_BASE_EN;
const X2APIC_BASE: u64 = DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_EXTD;

fn apic_with(config: ApicConfig, id: u32, bsp: bool) -> LocalApic {
    LocalApic::new(&config, id, bsp)
}

fn apic() -> LocalApic {
    apic_with(ApicConfig::default(), 0, true)
}

/// A software-enabled APIC (SVR = 0x1FF).
fn enabled() -> LocalApic {
    let mut a = apic();
    w(&mut a, REG_SVR, 0x1FF);
    a
}

fn rt(a: &mut LocalApic, offset: u32, now: u64) -> u32 {
    let mut d = [0u8; 4];
    a.mmio_read(u64::from(offset), &mut d, now);
    u32::from_le_bytes(d)
}

fn r(a: &mut LocalApic, offset: u32) -> u32 {
    rt(a, offset, 0)
}

fn wt(a: &mut LocalApic, offset: u32, value: u32, now: u64) -> Effect {
    a.mmio_write(u64::from(offset), &value.to_le_bytes(), now)
}

fn w(a: &mut LocalApic, offset: u32, value: u32) -> Effect {
    wt(a, offset, value, 0)
}

/// Writes the ESR (latching) and reads it.
fn esr(a: &mut LocalApic) -> u32 {
    w(a, REG_ESR, 0);
    r(a, REG_ESR)
}

fn to_x2apic(a: &mut LocalApic) {
    a.set_apic_base(X2APIC_BASE).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Reset values, read-only and reserved bits
// ---------------------------------------------------------------------------------------------

#[test]
fn reset_values() {
    let mut a = apic_with(ApicConfig::default(), 3, false);
    assert_eq!(a.apic_base(), 0xFEE0_0800, "AP: EN, no BSP");
    assert_eq!(apic().apic_base(), 0xFEE0_0900, "BSP flag");
    assert_eq!(a.mode(), ApicMode::XApic);
    assert_eq!(r(&mut a, REG_ID), 0x0300_0000);
    assert_eq!(r(&mut a, REG_VERSION), 0x0106_0014);
    assert_eq!(r(&mut a, REG_TPR), 0);
    assert_eq!(r(&mut a, REG_APR), 0);
    assert_eq!(r(&mut a, REG_PPR), 0);
    assert_eq!(r(&mut a, REG_EOI), 0);
    assert_eq!(r(&mut a, REG_RRD), 0);
    assert_eq!(r(&mut a, REG_LDR), 0);
    assert_eq!(r(&mut a, REG_DFR), 0xFFFF_FFFF);
    assert_eq!(r(&mut a, REG_SVR), 0xFF);
    for i in 0..8 {
        assert_eq!(r(&mut a, REG_ISR + 0x10 * i), 0);
        assert_eq!(r(&mut a, REG_TMR + 0x10 * i), 0);
        assert_eq!(r(&mut a, REG_IRR + 0x10 * i), 0);
    }
    assert_eq!(r(&mut a, REG_ESR), 0);
    for lvt in Lvt::ALL {
        assert_eq!(r(&mut a, lvt.offset()), 0x0001_0000, "{lvt:?}");
    }
    assert_eq!(r(&mut a, REG_ICR_LOW), 0);
    assert_eq!(r(&mut a, REG_ICR_HIGH), 0);
    assert_eq!(r(&mut a, REG_TIMER_INITIAL), 0);
    assert_eq!(r(&mut a, REG_TIMER_CURRENT), 0);
    assert_eq!(r(&mut a, REG_TIMER_DIVIDE), 0);
    assert!(!a.software_enabled());
    assert!(a.waiting_for_sipi());
    assert_eq!(esr(&mut a), 0, "no register read above was illegal");
}

#[test]
fn read_only_registers_ignore_writes_in_xapic_mode() {
    let mut a = enabled();
    assert!(a.accept(0x40, false));
    for offset in [
        REG_ID,
        REG_VERSION,
        REG_APR,
        REG_PPR,
        REG_RRD,
        REG_TIMER_CURRENT,
    ] {
        let before = r(&mut a, offset);
        assert_eq!(w(&mut a, offset, 0xFFFF_FFFF), Effect::None);
        assert_eq!(r(&mut a, offset), before, "offset {offset:#x}");
    }
    for i in 0..8 {
        for base in [REG_ISR, REG_TMR, REG_IRR] {
            w(&mut a, base + 0x10 * i, 0xFFFF_FFFF);
        }
    }
    assert_eq!(r(&mut a, REG_IRR + 0x20), 1, "IRR still holds only 0x40");
    assert_eq!(r(&mut a, REG_ISR + 0x20), 0);
    assert_eq!(r(&mut a, REG_TMR + 0x20), 0);
    assert_eq!(esr(&mut a), 0, "read-only writes are not errors");
}

#[test]
fn reserved_bits_are_ignored_in_xapic_mode() {
    let mut a = enabled();
    let cases = [
        (REG_TPR, 0xFFFF_FFFF, 0xFF),
        (REG_LDR, 0xFFFF_FFFF, 0xFF00_0000),
        (REG_DFR, 0, 0x0FFF_FFFF),
        (REG_SVR, 0xFFFF_FFFF, 0x13FF),
        (REG_TIMER_DIVIDE, 0xFFFF_FFFF, 0xB),
        (REG_ICR_HIGH, 0xFFFF_FFFF, 0xFF00_0000),
        (REG_LVT_TIMER, 0xFFFF_FFFF, 0x0007_00FF),
        (REG_LVT_THERMAL, 0xFFFF_FFFF, 0x0001_07FF),
        (REG_LVT_PERF, 0xFFFF_FFFF, 0x0001_07FF),
        (REG_LVT_LINT0, 0xFFFF_FFFF, 0x0001_A7FF),
        (REG_LVT_LINT1, 0xFFFF_FFFF, 0x0001_A7FF),
        (REG_LVT_ERROR, 0xFFFF_FFFF, 0x0001_00FF),
        (REG_LVT_CMCI, 0xFFFF_FFFF, 0x0001_07FF),
    ];
    for (offset, value, expected) in cases {
        w(&mut a, offset, value);
        assert_eq!(r(&mut a, offset), expected, "offset {offset:#x}");
    }
    // The ICR low word: delivery status and reserved bits read 0 (the write itself is a
    // dropped IPI: reserved delivery mode 111).
    w(&mut a, REG_ICR_LOW, 0xFFFF_FFFF);
    assert_eq!(r(&mut a, REG_ICR_LOW), 0x000C_CFFF);
}

#[test]
fn unimplemented_registers_set_illegal_register_address() {
    let mut a = enabled();
    for offset in [
        0x000, 0x010, 0x040, 0x070, 0x290, 0x2E0, 0x3A0, 0x3F0, 0x400, 0xFF0,
    ] {
        assert_eq!(r(&mut a, offset), 0);
        assert_eq!(esr(&mut a), ESR_ILLEGAL_REGISTER, "read {offset:#x}");
        w(&mut a, offset, 0x1234);
        assert_eq!(esr(&mut a), ESR_ILLEGAL_REGISTER, "write {offset:#x}");
    }
}

#[test]
fn odd_sized_and_unaligned_mmio_accesses() {
    let mut a = enabled();
    w(&mut a, REG_TPR, 0x5A);
    let mut b = [0u8; 1];
    a.mmio_read(u64::from(REG_SVR), &mut b, 0);
    assert_eq!(b, [0xFF]);
    let mut h = [0u8; 2];
    a.mmio_read(u64::from(REG_SVR) + 1, &mut h, 0);
    assert_eq!(h, [0x01, 0x00]);
    let mut d = [0xAAu8; 4];
    a.mmio_read(u64::from(REG_SVR) + 4, &mut d, 0);
    assert_eq!(d, [0; 4], "beyond the 32-bit register");
    let mut q = [0xAAu8; 8];
    a.mmio_read(u64::from(REG_SVR), &mut q, 0);
    assert_eq!(q, [0; 8], "8-byte accesses read 0");
    a.mmio_read(u64::from(REG_SVR) + 3, &mut h, 0);
    assert_eq!(h, [0, 0], "crossing the register end");
    a.mmio_read(u64::from(REG_SVR), &mut [], 0);
    a.mmio_read(0x1000, &mut d, 0);
    a.mmio_read(u64::MAX, &mut d, 0);
    // Writes other than aligned 4-byte stores are ignored.
    a.mmio_write(u64::from(REG_TPR), &[0x10, 0], 0);
    a.mmio_write(u64::from(REG_TPR) + 4, &0x10u32.to_le_bytes(), 0);
    a.mmio_write(u64::from(REG_TPR), &[0x10; 8], 0);
    a.mmio_write(u64::MAX - 3, &[0x10; 4], 0);
    assert_eq!(r(&mut a, REG_TPR), 0x5A);
    assert_eq!(esr(&mut a), 0);
}

// ---------------------------------------------------------------------------------------------
// ESR and illegal vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn esr_write_latches_errors_detected_since_the_previous_write() {
    let mut a = enabled();
    // Send an IPI with an illegal vector: "send illegal vector".
    assert_eq!(w(&mut a, REG_ICR_LOW, 0x0000_4005), Effect::None);
    assert_eq!(r(&mut a, REG_ESR), 0, "not visible before an ESR write");
    w(&mut a, REG_ESR, 0);
    assert_eq!(r(&mut a, REG_ESR), ESR_SEND_ILLEGAL_VECTOR);
    assert_eq!(
        r(&mut a, REG_ESR),
        ESR_SEND_ILLEGAL_VECTOR,
        "reads do not clear"
    );
    // Receive an illegal vector, then latch: only the new error.
    assert!(!a.accept(3, false));
    w(&mut a, REG_ESR, 0xFFFF_FFFF);
    assert_eq!(r(&mut a, REG_ESR), ESR_RECEIVE_ILLEGAL_VECTOR);
    w(&mut a, REG_ESR, 0);
    assert_eq!(r(&mut a, REG_ESR), 0);
}

#[test]
fn illegal_vectors_are_never_accepted() {
    let mut a = enabled();
    for v in 0..16u8 {
        assert!(!a.accept(v, false));
    }
    assert!(a.irr().is_empty());
    assert_eq!(esr(&mut a), ESR_RECEIVE_ILLEGAL_VECTOR);
    // A locally generated interrupt with an illegal vector: the timer.
    w(&mut a, REG_LVT_TIMER, 0x05);
    w(&mut a, REG_TIMER_DIVIDE, 0xB);
    w(&mut a, REG_TIMER_INITIAL, 10);
    a.tick(10);
    assert!(a.irr().is_empty());
    assert_eq!(esr(&mut a), ESR_RECEIVE_ILLEGAL_VECTOR);
    // Lowest priority IPI with an illegal vector.
    assert_eq!(w(&mut a, REG_ICR_LOW, 0x0000_010F), Effect::None);
    assert_eq!(esr(&mut a), ESR_SEND_ILLEGAL_VECTOR);
}

#[test]
fn the_first_error_after_an_esr_write_raises_the_error_interrupt() {
    let mut a = enabled();
    w(&mut a, REG_LVT_ERROR, 0xEE);
    a.accept(1, false);
    assert_eq!(a.take_interrupt(), Some(0xEE));
    a.eoi();
    a.accept(2, false);
    assert_eq!(a.pending_vector(), None, "not re-armed yet");
    w(&mut a, REG_ESR, 0);
    a.accept(3, false);
    assert_eq!(a.pending_vector(), Some(0xEE), "re-armed by the ESR write");
    // An illegal error vector cannot recurse: it only records another error.
    let mut b = enabled();
    w(&mut b, REG_LVT_ERROR, 0x02);
    b.accept(1, false);
    assert!(b.irr().is_empty());
    assert_eq!(esr(&mut b), ESR_RECEIVE_ILLEGAL_VECTOR);
}

// ---------------------------------------------------------------------------------------------
// Priorities, acceptance, injection, EOI
// ---------------------------------------------------------------------------------------------

#[test]
fn tpr_masks_delivery_by_priority_class() {
    let mut a = enabled();
    w(&mut a, REG_TPR, 0x50);
    assert_eq!(r(&mut a, REG_PPR), 0x50);
    a.accept(0x45, false);
    a.accept(0x5F, false);
    assert_eq!(a.pending_vector(), None, "class 5 is not above class 5");
    a.accept(0x61, false);
    assert_eq!(a.pending_vector(), Some(0x61));
    assert_eq!(a.take_interrupt(), Some(0x61));
    assert_eq!(a.ppr(), 0x60);
    assert_eq!(r(&mut a, REG_PPR), 0x60);
    w(&mut a, REG_TPR, 0x7C);
    assert_eq!(
        a.ppr(),
        0x7C,
        "TPR above the ISR class: PPR = TPR with subclass"
    );
    a.eoi();
    w(&mut a, REG_TPR, 0x00);
    assert_eq!(a.pending_vector(), Some(0x5F));
    assert_eq!(a.take_interrupt(), Some(0x5F));
    assert_eq!(
        a.ppr(),
        0x50,
        "subclass of the ISR vector is not part of the PPR"
    );
}

#[test]
fn arbitration_priority() {
    let mut a = enabled();
    w(&mut a, REG_TPR, 0x35);
    assert_eq!(r(&mut a, REG_APR), 0x35);
    a.accept(0x52, false);
    assert_eq!(r(&mut a, REG_APR), 0x50, "IRR class above TPR");
    a.take_interrupt();
    assert_eq!(r(&mut a, REG_APR), 0x50, "ISR class above TPR");
}

#[test]
fn interrupts_are_delivered_in_priority_order() {
    let mut a = enabled();
    for v in [0x31, 0x91, 0x55, 0x93] {
        a.accept(v, false);
    }
    assert_eq!(a.take_interrupt(), Some(0x93));
    assert_eq!(a.take_interrupt(), None, "0x91 is in class 9 too");
    a.eoi();
    assert_eq!(a.take_interrupt(), Some(0x91));
    a.eoi();
    assert_eq!(a.take_interrupt(), Some(0x55));
    a.eoi();
    assert_eq!(a.take_interrupt(), Some(0x31));
    a.eoi();
    assert_eq!(a.take_interrupt(), None);
    assert!(a.isr().is_empty());
}

#[test]
fn nested_in_service_interrupts() {
    let mut a = enabled();
    a.accept(0x40, false);
    assert_eq!(a.take_interrupt(), Some(0x40));
    a.accept(0x80, false);
    assert_eq!(a.pending_vector(), Some(0x80), "higher class nests");
    assert_eq!(a.take_interrupt(), Some(0x80));
    assert_eq!(a.isr().iter().collect::<Vec<_>>(), vec![0x40, 0x80]);
    assert_eq!(a.ppr(), 0x80);
    assert_eq!(r(&mut a, REG_ISR + 0x40), 1, "ISR word 4 holds 0x80");
    assert_eq!(a.eoi(), None);
    assert_eq!(
        a.isr().iter().collect::<Vec<_>>(),
        vec![0x40],
        "EOI clears the highest"
    );
    assert_eq!(a.ppr(), 0x40);
    a.eoi();
    assert!(a.isr().is_empty());
    assert_eq!(a.eoi(), None, "EOI with nothing in service is harmless");
}

#[test]
fn early_eoi_keeps_the_next_interrupt_pending_until_injected() {
    let mut a = enabled();
    a.accept(0x40, false);
    assert_eq!(a.take_interrupt(), Some(0x40));
    // The handler runs with IF = 0; another interrupt of the same class arrives.
    a.accept(0x41, false);
    assert_eq!(a.pending_vector(), None);
    // The handler writes EOI at its start, interrupts still disabled.
    w(&mut a, REG_EOI, 0);
    assert_eq!(
        a.pending_vector(),
        Some(0x41),
        "deliverable as far as the APIC goes"
    );
    // The VMM does not inject while IF = 0: nothing changes, however often it asks.
    for _ in 0..3 {
        assert_eq!(a.pending_vector(), Some(0x41));
        assert!(a.irr().contains(0x41));
        assert!(a.isr().is_empty());
    }
    assert!(!a.wakeup_pending(false));
    assert!(a.wakeup_pending(true));
    // IF = 1 (sti / iret): injected exactly once.
    assert_eq!(a.take_interrupt(), Some(0x41));
    assert_eq!(a.take_interrupt(), None);
    a.eoi();
    assert_eq!(a.pending_vector(), None);
}

#[test]
fn irr_and_isr_queue_two_instances_of_a_vector() {
    let mut a = enabled();
    a.accept(0x40, false);
    a.take_interrupt();
    a.accept(0x40, false);
    a.accept(0x40, false);
    assert!(a.irr().contains(0x40) && a.isr().contains(0x40));
    assert_eq!(a.pending_vector(), None);
    a.eoi();
    assert_eq!(a.take_interrupt(), Some(0x40));
    a.eoi();
    assert_eq!(
        a.take_interrupt(),
        None,
        "the third collapsed into the IRR bit"
    );
}

#[test]
fn ack_of_a_vector_masked_in_between_dispenses_the_spurious_vector() {
    let mut a = enabled();
    w(&mut a, REG_SVR, 0x12F);
    a.accept(0x40, false);
    assert_eq!(a.pending_vector(), Some(0x40));
    w(&mut a, REG_TPR, 0x40);
    assert_eq!(a.ack(0x40), Some(0x2F));
    assert!(
        a.isr().is_empty(),
        "the spurious vector does not touch the ISR"
    );
    assert!(a.irr().contains(0x40));
    assert_eq!(a.ack(0x55), None, "not requested at all");
    w(&mut a, REG_TPR, 0);
    assert_eq!(a.ack(0x40), Some(0x40));
    assert_eq!(a.ack(0x40), None);
}

#[test]
fn level_triggered_eoi_is_broadcast_unless_suppressed() {
    let mut a = enabled();
    a.accept(0x50, true);
    assert_eq!(r(&mut a, REG_TMR + 0x20), 1 << 16);
    a.take_interrupt();
    assert_eq!(w(&mut a, REG_EOI, 0), Effect::EoiBroadcast(0x50));
    a.accept(0x51, false);
    assert_eq!(
        r(&mut a, REG_TMR + 0x20),
        1 << 16,
        "edge clears only its own bit"
    );
    a.take_interrupt();
    assert_eq!(w(&mut a, REG_EOI, 0), Effect::None, "edge triggered");
    // Suppress EOI broadcast (SVR bit 12), advertised in the version register.
    assert_ne!(r(&mut a, REG_VERSION) & VERSION_EOI_SUPPRESS, 0);
    w(&mut a, REG_SVR, 0x11FF);
    a.accept(0x52, true);
    a.take_interrupt();
    assert_eq!(w(&mut a, REG_EOI, 0), Effect::None);
    assert!(a.isr().is_empty());
}

#[test]
fn software_disabled_apic() {
    let mut a = enabled();
    a.accept(0x40, false);
    w(&mut a, REG_LVT_LINT0, 0x30);
    assert_eq!(r(&mut a, REG_LVT_LINT0), 0x30);
    w(&mut a, REG_SVR, 0xFF);
    assert_eq!(
        r(&mut a, REG_LVT_LINT0),
        0x1_0030,
        "software disable masks every LVT"
    );
    w(&mut a, REG_LVT_TIMER, 0x31);
    assert_eq!(
        r(&mut a, REG_LVT_TIMER),
        0x1_0031,
        "masks cannot be cleared"
    );
    assert!(!a.accept(0x50, false), "fixed interrupts are discarded");
    assert!(a.irr().contains(0x40), "pending ones are held");
    assert_eq!(a.pending_vector(), None);
    assert_eq!(a.take_interrupt(), None);
    // NMI and INIT still work (§11.4.7.2).
    assert!(a.deliver(DeliveryMode::Nmi, 0, Trigger::Edge).kick);
    assert!(a.take_nmi());
    assert!(a.deliver(DeliveryMode::Init, 0, Trigger::Edge).accepted);
    // Enabling again: masks stay set.
    w(&mut a, REG_SVR, 0x1FF);
    assert_eq!(r(&mut a, REG_LVT_LINT0), 0x1_0000);
}

#[test]
fn cr8_mirrors_the_tpr_class() {
    let mut a = enabled();
    w(&mut a, REG_TPR, 0x5A);
    assert_eq!(a.cr8(), 5);
    a.set_cr8(5);
    assert_eq!(a.tpr(), 0x5A, "same class keeps the subclass");
    a.set_cr8(7);
    assert_eq!(a.tpr(), 0x70);
    assert_eq!(r(&mut a, REG_TPR), 0x70);
    a.set_cr8(0xFFFF_FFF3);
    assert_eq!(a.tpr(), 0x30, "only CR8[3:0]");
    a.accept(0x35, false);
    assert_eq!(a.pending_vector(), None);
    a.set_cr8(2);
    assert_eq!(a.pending_vector(), Some(0x35));
}

// ---------------------------------------------------------------------------------------------
// LDR, DFR, destinations
// ---------------------------------------------------------------------------------------------

#[test]
fn logical_destination_flat_and_cluster() {
    let mut a = enabled();
    w(&mut a, REG_LDR, 0x0400_0000);
    assert!(a.matches_logical(0x04));
    assert!(a.matches_logical(0x0F));
    assert!(!a.matches_logical(0x03));
    assert!(!a.matches_logical(0x104), "x2APIC-format MDA on an xAPIC");
    w(&mut a, REG_DFR, 0x0FFF_FFFF);
    assert_eq!(r(&mut a, REG_DFR), 0x0FFF_FFFF);
    w(&mut a, REG_LDR, 0x2100_0000); // cluster 2, member bit 0
    assert!(a.matches_logical(0x21));
    assert!(a.matches_logical(0x23));
    assert!(!a.matches_logical(0x11), "other cluster");
    assert!(!a.matches_logical(0x22), "other member");
    w(&mut a, REG_DFR, 0x5000_0000);
    assert!(!a.matches_logical(0x21), "unknown model matches nothing");
    assert!(a.matches_physical(0));
    assert!(!a.matches_physical(0x100));
}

#[test]
fn x2apic_logical_id_is_derived_from_the_apic_id() {
    let mut a = apic_with(ApicConfig::default(), 0x23, false);
    to_x2apic(&mut a);
    assert_eq!(a.msr_read(0x802, 0), Ok(0x23));
    assert_eq!(a.msr_read(0x80D, 0), Ok((2 << 16) | (1 << 3)));
    assert!(a.matches_logical(0x0002_0008));
    assert!(a.matches_logical(0x0002_FFFF));
    assert!(!a.matches_logical(0x0001_0008));
    assert!(!a.matches_logical(0x0002_0004));
    assert!(a.matches_physical(0x23));
    assert_eq!(a.msr_write(0x80D, 0, 0), Err(Gp), "LDR is read-only");
}

// ---------------------------------------------------------------------------------------------
// ICR
// ---------------------------------------------------------------------------------------------

#[test]
fn icr_write_sends_an_ipi_and_reads_idle() {
    let mut a = enabled();
    w(&mut a, REG_ICR_HIGH, 0x0300_0000);
    let e = w(&mut a, REG_ICR_LOW, 0x0000_4831); // logical, level assert, vector 0x31
    let Effect::Ipi(ipi) = e else {
        panic!("expected an IPI, got {e:?}");
    };
    assert_eq!(ipi.source, 0);
    assert_eq!(ipi.vector, 0x31);
    assert_eq!(ipi.dest, 3);
    assert_eq!(ipi.dest_mode, DestMode::Logical);
    assert_eq!(ipi.shorthand, Shorthand::None);
    assert!(!ipi.x2apic);
    assert_eq!(r(&mut a, REG_ICR_LOW) & ICR_DELIVERY_STATUS, 0, "idle");
    assert_eq!(r(&mut a, REG_ICR_LOW), 0x4831);
    assert_eq!(r(&mut a, REG_ICR_HIGH), 0x0300_0000);
    // Shorthands.
    for (bits, sh) in [
        (1, Shorthand::SelfOnly),
        (2, Shorthand::AllIncludingSelf),
        (3, Shorthand::AllExcludingSelf),
    ] {
        let Effect::Ipi(ipi) = w(&mut a, REG_ICR_LOW, (bits << 18) | 0x40) else {
            panic!("shorthand {bits}");
        };
        assert_eq!(ipi.shorthand, sh);
    }
    // INIT level de-assert is dropped.
    assert_eq!(w(&mut a, REG_ICR_LOW, 0x0000_8500), Effect::None);
    a.set_events_enabled(true);
    w(&mut a, REG_ICR_LOW, (1 << 18) | 0x400); // NMI to self: invalid
    assert_eq!(
        a.take_events(),
        vec![ApicEvent::IpiDropped {
            apic: 0,
            icr: 0x0300_0000_0004_0400,
            reason: IpiDropReason::InvalidCombination
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// x2APIC
// ---------------------------------------------------------------------------------------------

#[test]
fn x2apic_msr_interface() {
    let mut a = apic_with(ApicConfig::default(), 5, false);
    assert_eq!(
        a.msr_read(0x808, 0),
        Err(Gp),
        "x2APIC MSRs need x2APIC mode"
    );
    assert_eq!(a.msr_write(0x808, 0, 0), Err(Gp));
    w(&mut a, REG_TPR, 0x20);
    to_x2apic(&mut a);
    assert_eq!(a.mode(), ApicMode::X2Apic);
    assert_eq!(a.mmio_base(), None);
    assert_eq!(r(&mut a, REG_TPR), 0, "the MMIO page is off in x2APIC mode");
    assert_eq!(
        a.msr_read(0x808, 0),
        Ok(0x20),
        "register state carries over"
    );
    assert_eq!(a.msr_read(0x802, 0), Ok(5));
    assert_eq!(a.msr_read(0x803, 0), Ok(0x0106_0014));
    assert_eq!(a.msr_write(0x80F, 0x1FF, 0), Ok(Effect::None));
    assert_eq!(a.msr_read(0x80F, 0), Ok(0x1FF));
    // Absent registers, write-only and read-only registers.
    for msr in [0x800, 0x801, 0x809, 0x80C, 0x80E, 0x831, 0x840, 0x8FF] {
        assert_eq!(a.msr_read(msr, 0), Err(Gp), "read {msr:#x}");
        assert_eq!(a.msr_write(msr, 0, 0), Err(Gp), "write {msr:#x}");
    }
    assert_eq!(a.msr_read(0x80B, 0), Err(Gp), "EOI is write-only");
    assert_eq!(a.msr_read(0x83F, 0), Err(Gp), "SELF IPI is write-only");
    for msr in [
        0x802, 0x803, 0x80A, 0x80D, 0x810, 0x818, 0x820, 0x827, 0x839,
    ] {
        assert_eq!(a.msr_write(msr, 0, 0), Err(Gp), "read-only {msr:#x}");
    }
    // Reserved bits raise #GP instead of being ignored.
    assert_eq!(a.msr_write(0x808, 0x100, 0), Err(Gp));
    assert_eq!(a.msr_write(0x808, 1 << 32, 0), Err(Gp));
    assert_eq!(a.msr_write(0x80F, 0x4FF, 0), Err(Gp), "bit 10 reserved");
    assert_eq!(
        a.msr_write(0x80F, 0x3FF, 0),
        Ok(Effect::None),
        "focus bit accepted"
    );
    assert_eq!(a.msr_read(0x80F, 0), Ok(0x3FF));
    a.msr_write(0x80F, 0x1FF, 0).unwrap();
    assert_eq!(a.msr_write(0x83E, 0x4, 0), Err(Gp));
    assert_eq!(a.msr_write(0x832, 1 << 19, 0), Err(Gp));
    assert_eq!(
        a.msr_write(0x835, 1 << 12, 0),
        Ok(Effect::None),
        "delivery status is defined"
    );
    assert_eq!(
        a.msr_write(0x837, 0x700, 0),
        Err(Gp),
        "error LVT has no delivery mode"
    );
    assert_eq!(a.msr_write(0x80B, 1, 0), Err(Gp), "non-zero EOI");
    assert_eq!(a.msr_write(0x828, 1, 0), Err(Gp), "non-zero ESR");
    assert_eq!(a.msr_write(0x828, 0, 0), Ok(Effect::None));
    assert_eq!(a.msr_write(0x83F, 0x140, 0), Err(Gp));
    assert_eq!(a.msr_read(0x80A, 0), Ok(0x20));
}

#[test]
fn x2apic_icr_is_one_64_bit_register() {
    let mut a = apic_with(ApicConfig::default(), 1, false);
    to_x2apic(&mut a);
    a.msr_write(0x80F, 0x1FF, 0).unwrap();
    let e = a
        .msr_write(0x830, (0x1234_5678u64 << 32) | 0x0840, 0)
        .unwrap();
    let Effect::Ipi(ipi) = e else {
        panic!("{e:?}");
    };
    assert_eq!(ipi.dest, 0x1234_5678);
    assert!(ipi.x2apic);
    assert_eq!(ipi.dest_mode, DestMode::Logical);
    assert_eq!(ipi.source, 1);
    assert_eq!(a.msr_read(0x830, 0), Ok((0x1234_5678u64 << 32) | 0x0840));
    for bit in [13, 16, 17, 20, 31] {
        assert_eq!(
            a.msr_write(0x830, (1 << bit) | 0x40, 0),
            Err(Gp),
            "bit {bit}"
        );
    }
    // Illegal vector: send illegal vector, no IPI.
    assert_eq!(a.msr_write(0x830, 0x0A, 0), Ok(Effect::None));
    a.msr_write(0x828, 0, 0).unwrap();
    assert_eq!(a.msr_read(0x828, 0), Ok(u64::from(ESR_SEND_ILLEGAL_VECTOR)));
}

#[test]
fn x2apic_self_ipi_register() {
    let mut a = apic_with(ApicConfig::default(), 7, false);
    to_x2apic(&mut a);
    let Ok(Effect::Ipi(ipi)) = a.msr_write(0x83F, 0x45, 0) else {
        panic!("no self IPI");
    };
    assert_eq!(ipi.shorthand, Shorthand::SelfOnly);
    assert_eq!(ipi.vector, 0x45);
    assert_eq!(ipi.delivery, DeliveryMode::Fixed);
    assert_eq!(a.msr_write(0x83F, 0x05, 0), Ok(Effect::None));
    a.msr_write(0x828, 0, 0).unwrap();
    assert_eq!(a.msr_read(0x828, 0), Ok(u64::from(ESR_SEND_ILLEGAL_VECTOR)));
    // In xAPIC mode 0x3F0 is not a register.
    let mut b = enabled();
    w(&mut b, REG_SELF_IPI, 0x45);
    assert_eq!(esr(&mut b), ESR_ILLEGAL_REGISTER);
}

#[test]
fn apic_base_mode_transitions() {
    let mut a = enabled();
    // xAPIC -> xAPIC with a new base: relocation.
    a.set_apic_base(0xFED0_0000 | APIC_BASE_EN).unwrap();
    assert_eq!(a.mmio_base(), Some(0xFED0_0000));
    assert_eq!(a.mmio_offset(0xFED0_00F0), Some(0xF0));
    assert_eq!(a.mmio_offset(0xFEE0_00F0), None);
    assert_eq!(a.mmio_offset(0xFED0_1000), None);
    assert_eq!(a.apic_base(), 0xFED0_0900, "BSP flag kept");
    assert_eq!(a.svr(), 0x1FF, "relocation keeps state");
    a.set_apic_base(XAPIC_BASE).unwrap();
    // Illegal: invalid state, reserved bits, beyond the address width.
    assert_eq!(a.set_apic_base(DEFAULT_APIC_BASE | APIC_BASE_EXTD), Err(Gp));
    assert_eq!(a.set_apic_base(XAPIC_BASE | 1), Err(Gp));
    assert_eq!(a.set_apic_base(XAPIC_BASE | (1 << 9)), Err(Gp));
    assert_eq!(a.set_apic_base(XAPIC_BASE | (1 << 46)), Err(Gp));
    // The BSP flag is read-only.
    a.set_apic_base(XAPIC_BASE).unwrap();
    assert!(a.is_bsp());
    // xAPIC -> x2APIC -> xAPIC is illegal; -> disabled is legal.
    to_x2apic(&mut a);
    assert_eq!(a.set_apic_base(XAPIC_BASE), Err(Gp));
    assert_eq!(a.mode(), ApicMode::X2Apic);
    a.set_apic_base(DEFAULT_APIC_BASE).unwrap();
    assert_eq!(a.mode(), ApicMode::Disabled);
    assert_eq!(
        a.svr(),
        0xFF,
        "state is not preserved across the disabled state"
    );
    assert_eq!(a.mmio_base(), None);
    assert!(!a.accept(0x40, false), "a disabled APIC accepts nothing");
    // Disabled -> x2APIC directly is illegal; -> xAPIC first.
    assert_eq!(a.set_apic_base(X2APIC_BASE), Err(Gp));
    a.set_apic_base(XAPIC_BASE).unwrap();
    assert_eq!(a.mode(), ApicMode::XApic);
    to_x2apic(&mut a);
    assert_eq!(a.msr_read(MSR_APIC_BASE, 0), Ok(0xFEE0_0D00));
    assert_eq!(a.msr_write(MSR_APIC_BASE, XAPIC_BASE, 0), Err(Gp));
    // Without x2APIC support EXTD is reserved.
    let cfg = ApicConfig {
        x2apic: false,
        ..ApicConfig::default()
    };
    let mut b = apic_with(cfg, 0, true);
    assert_eq!(b.set_apic_base(X2APIC_BASE), Err(Gp));
}

#[test]
fn mode_changes_are_events() {
    let mut a = apic();
    a.set_events_enabled(true);
    to_x2apic(&mut a);
    a.set_apic_base(X2APIC_BASE).unwrap();
    assert_eq!(
        a.take_events(),
        vec![ApicEvent::ModeChange {
            apic: 0,
            mode: ApicMode::X2Apic
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// NMI, INIT, SIPI
// ---------------------------------------------------------------------------------------------

#[test]
fn nmi_is_a_separate_pending_flag() {
    let mut a = apic();
    assert!(!a.nmi_pending());
    a.nmi();
    assert!(a.nmi_pending());
    assert!(
        a.wakeup_pending(false),
        "NMI wakes a halted vCPU with IF = 0"
    );
    assert!(a.take_nmi());
    assert!(!a.take_nmi());
}

#[test]
fn init_resets_registers_and_waits_for_sipi() {
    let mut a = apic_with(ApicConfig::default(), 2, false);
    w(&mut a, REG_SVR, 0x1FF);
    w(&mut a, REG_TPR, 0x30);
    w(&mut a, REG_LDR, 0x0800_0000);
    a.accept(0x50, false);
    a.nmi();
    assert!(a.sipi(0x10), "an AP waits for SIPI after reset");
    assert!(!a.sipi(0x11), "the second SIPI is ignored");
    assert_eq!(a.take_startup(), Some(Startup::Sipi(0x10)));
    assert!(!a.waiting_for_sipi());
    to_x2apic(&mut a);
    a.init();
    assert_eq!(a.mode(), ApicMode::X2Apic, "INIT keeps the mode");
    assert_eq!(a.tpr(), 0);
    assert_eq!(a.svr(), 0xFF);
    assert!(a.irr().is_empty());
    assert!(!a.nmi_pending());
    assert!(a.waiting_for_sipi());
    assert_eq!(a.startup_pending(), Some(Startup::Init));
    assert!(a.wakeup_pending(false));
    assert!(a.sipi(0x9F));
    assert_eq!(
        a.take_startup(),
        Some(Startup::Sipi(0x9F)),
        "SIPI implies the INIT"
    );
    assert_eq!(Startup::Sipi(0x9F).start_address(), Some(0x9F000));
    assert_eq!(Startup::Init.start_address(), None);
    assert_eq!(a.take_startup(), None);
    // The BSP restarts at the reset vector: it does not wait for a SIPI.
    let mut bsp = apic();
    bsp.init();
    assert!(!bsp.waiting_for_sipi());
    assert_eq!(bsp.take_startup(), Some(Startup::Init));
    assert!(!bsp.sipi(0x10));
}

#[test]
fn reset_restores_the_power_up_state() {
    let mut a = apic_with(ApicConfig::default(), 1, false);
    a.sipi(1);
    to_x2apic(&mut a);
    a.reset();
    assert_eq!(a.mode(), ApicMode::XApic);
    assert_eq!(a.apic_base(), 0xFEE0_0800);
    assert!(a.waiting_for_sipi());
    assert_eq!(a.take_startup(), None);
}

// ---------------------------------------------------------------------------------------------
// Local interrupts
// ---------------------------------------------------------------------------------------------

#[test]
fn lint_level_triggered_sets_remote_irr_until_eoi() {
    let mut a = enabled();
    w(&mut a, REG_LVT_LINT0, 0x8000 | 0x60);
    assert!(a.raise_lvt(Lvt::Lint0));
    assert_eq!(r(&mut a, REG_LVT_LINT0), 0xC060, "remote IRR");
    assert!(a.tmr().contains(0x60));
    assert!(!a.raise_lvt(Lvt::Lint0), "ignored while remote IRR is set");
    // Rewriting the entry keeps the read-only remote IRR bit.
    w(&mut a, REG_LVT_LINT0, 0x8000 | 0x60);
    assert_eq!(r(&mut a, REG_LVT_LINT0), 0xC060);
    assert_eq!(a.take_interrupt(), Some(0x60));
    assert_eq!(a.eoi(), Some(0x60), "level triggered: broadcast");
    assert_eq!(r(&mut a, REG_LVT_LINT0), 0x8060);
}

#[test]
fn lvt_delivery_modes() {
    let mut a = enabled();
    w(&mut a, REG_LVT_LINT1, 0x400); // NMI
    assert!(a.raise_lvt(Lvt::Lint1));
    assert!(a.take_nmi());
    w(&mut a, REG_LVT_LINT0, 0x700); // ExtINT: no 8259A
    assert!(!a.raise_lvt(Lvt::Lint0));
    w(&mut a, REG_LVT_THERMAL, 0x200); // SMI: ignored
    assert!(!a.raise_lvt(Lvt::Thermal));
    w(&mut a, REG_LVT_PERF, 0x500); // INIT is not allowed for the perf counter entry
    assert!(!a.raise_lvt(Lvt::Perf));
    w(&mut a, REG_LVT_CMCI, 0x77);
    assert!(a.raise_lvt(Lvt::Cmci));
    assert_eq!(a.take_interrupt(), Some(0x77));
    w(&mut a, REG_LVT_CMCI, 0x1_0078);
    assert!(!a.raise_lvt(Lvt::Cmci), "masked");
    w(&mut a, REG_LVT_LINT0, 0x500); // INIT through LINT0
    assert!(a.raise_lvt(Lvt::Lint0));
    assert_eq!(a.take_startup(), Some(Startup::Init));
}

// ---------------------------------------------------------------------------------------------
// Timer
// ---------------------------------------------------------------------------------------------

#[test]
fn timer_one_shot_counts_down_and_fires() {
    let mut a = enabled();
    w(&mut a, REG_LVT_TIMER, 0x30);
    w(&mut a, REG_TIMER_DIVIDE, 0xB); // divide by 1: 1 tick per ns at 1 GHz
    wt(&mut a, REG_TIMER_INITIAL, 1000, 100);
    assert_eq!(r(&mut a, REG_TIMER_INITIAL), 1000);
    assert_eq!(a.next_deadline_ns(), Some(1100));
    let mut last = u32::MAX;
    for now in [100, 300, 700, 1099] {
        let c = rt(&mut a, REG_TIMER_CURRENT, now);
        assert!(c < last || now == 100, "decreasing");
        last = c;
    }
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 600), 500);
    assert!(!a.tick(1099));
    assert!(a.tick(1100));
    assert_eq!(a.pending_vector(), Some(0x30));
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 1200), 0);
    assert_eq!(a.next_deadline_ns(), None);
    assert!(!a.tick(5000), "one shot");
}

#[test]
fn timer_periodic_reloads() {
    let mut a = enabled();
    w(&mut a, REG_LVT_TIMER, 0x2_0031);
    w(&mut a, REG_TIMER_DIVIDE, 0x0); // divide by 2
    w(&mut a, REG_TIMER_INITIAL, 100); // 200 ns period
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 50), 75);
    assert!(a.tick(200));
    assert_eq!(a.take_interrupt(), Some(0x31));
    a.eoi();
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 250), 75, "reloaded");
    assert_eq!(a.next_deadline_ns(), Some(400));
    assert!(a.tick(400));
    assert_eq!(a.next_deadline_ns(), Some(600));
    // Writing 0 stops it.
    w(&mut a, REG_TIMER_INITIAL, 0);
    assert_eq!(a.next_deadline_ns(), None);
}

#[test]
fn timer_divide_configuration() {
    let mut a = enabled();
    w(&mut a, REG_LVT_TIMER, 0x30);
    for (config, div) in [
        (0x0, 2u64),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
        (0xB, 1),
    ] {
        w(&mut a, REG_TIMER_DIVIDE, config);
        assert_eq!(r(&mut a, REG_TIMER_DIVIDE), config);
        wt(&mut a, REG_TIMER_INITIAL, 1000, 0);
        assert_eq!(a.next_deadline_ns(), Some(1000 * div), "config {config:#x}");
        assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 10 * div), 990);
    }
    // Changing the divider mid-count keeps the current count.
    w(&mut a, REG_TIMER_DIVIDE, 0xB);
    wt(&mut a, REG_TIMER_INITIAL, 1000, 0);
    wt(&mut a, REG_TIMER_DIVIDE, 0x3, 400);
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 400), 600);
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 400 + 16 * 100), 500);
}

#[test]
fn masked_timer_expires_silently() {
    let mut a = enabled();
    w(&mut a, REG_LVT_TIMER, 0x1_0030);
    w(&mut a, REG_TIMER_DIVIDE, 0xB);
    w(&mut a, REG_TIMER_INITIAL, 100);
    assert_eq!(a.next_deadline_ns(), None, "nothing to wake up for");
    assert!(!a.tick(100));
    assert!(a.irr().is_empty());
    w(&mut a, REG_LVT_TIMER, 0x30);
    assert!(!a.tick(200), "the one-shot expiry happened while masked");
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 200), 0);
}

#[test]
fn tsc_deadline_timer() {
    let cfg = ApicConfig {
        tsc_hz: 2_000_000_000,
        ..ApicConfig::default()
    };
    let mut a = apic_with(cfg, 0, true);
    w(&mut a, REG_SVR, 0x1FF);
    // Outside TSC-deadline mode the MSR reads 0 and ignores writes.
    assert_eq!(a.msr_write(MSR_TSC_DEADLINE, 5000, 0), Ok(Effect::None));
    assert_eq!(a.msr_read(MSR_TSC_DEADLINE, 0), Ok(0));
    w(&mut a, REG_LVT_TIMER, 0x4_0040);
    assert_eq!(r(&mut a, REG_LVT_TIMER), 0x4_0040);
    a.msr_write(MSR_TSC_DEADLINE, 5000, 0).unwrap();
    assert_eq!(a.msr_read(MSR_TSC_DEADLINE, 0), Ok(5000));
    assert_eq!(a.next_deadline_ns(), Some(2500));
    assert_eq!(a.tsc_at(2500), 5000);
    // The initial count is ignored and the current count reads 0 in this mode.
    w(&mut a, REG_TIMER_INITIAL, 77);
    assert_eq!(r(&mut a, REG_TIMER_INITIAL), 0);
    assert_eq!(rt(&mut a, REG_TIMER_CURRENT, 100), 0);
    assert!(!a.tick(2499));
    assert!(a.tick(2500));
    assert_eq!(a.pending_vector(), Some(0x40));
    assert_eq!(
        a.msr_read(MSR_TSC_DEADLINE, 2600),
        Ok(0),
        "cleared when it fires"
    );
    assert_eq!(a.next_deadline_ns(), None);
    a.take_interrupt();
    a.eoi();
    // A deadline in the past fires at once.
    a.msr_write(MSR_TSC_DEADLINE, 10, 3000).unwrap();
    assert_eq!(a.pending_vector(), Some(0x40));
    a.take_interrupt();
    a.eoi();
    // Leaving TSC-deadline mode disarms.
    a.msr_write(MSR_TSC_DEADLINE, 1 << 40, 3000).unwrap();
    w(&mut a, REG_LVT_TIMER, 0x40);
    w(&mut a, REG_LVT_TIMER, 0x4_0040);
    assert_eq!(a.msr_read(MSR_TSC_DEADLINE, 3000), Ok(0));
    // Entering it disarms the count-down timer.
    w(&mut a, REG_LVT_TIMER, 0x40);
    w(&mut a, REG_TIMER_INITIAL, 1000);
    w(&mut a, REG_LVT_TIMER, 0x4_0040);
    w(&mut a, REG_LVT_TIMER, 0x40);
    assert_eq!(r(&mut a, REG_TIMER_INITIAL), 0);
    assert_eq!(a.next_deadline_ns(), None);
}

#[test]
fn tsc_deadline_unsupported() {
    let cfg = ApicConfig {
        tsc_deadline: false,
        ..ApicConfig::default()
    };
    let mut a = apic_with(cfg, 0, true);
    w(&mut a, REG_SVR, 0x1FF);
    assert_eq!(a.msr_read(MSR_TSC_DEADLINE, 0), Err(Gp));
    assert_eq!(a.msr_write(MSR_TSC_DEADLINE, 1, 0), Err(Gp));
    w(&mut a, REG_LVT_TIMER, 0x6_0040);
    assert_eq!(r(&mut a, REG_LVT_TIMER), 0x2_0040, "bit 18 is reserved");
}

#[test]
fn timer_events() {
    let mut a = enabled();
    a.set_events_enabled(true);
    w(&mut a, REG_LVT_TIMER, 0x30);
    w(&mut a, REG_TIMER_DIVIDE, 0xB);
    w(&mut a, REG_TIMER_INITIAL, 10);
    a.tick(10);
    a.take_interrupt();
    a.eoi();
    assert_eq!(
        a.take_events(),
        vec![
            ApicEvent::TimerFired {
                apic: 0,
                vector: 0x30,
                masked: false
            },
            ApicEvent::Accept {
                apic: 0,
                vector: 0x30,
                level: false
            },
            ApicEvent::Inject {
                apic: 0,
                vector: 0x30
            },
            ApicEvent::Eoi {
                apic: 0,
                vector: Some(0x30),
                broadcast: false
            },
        ]
    );
}
