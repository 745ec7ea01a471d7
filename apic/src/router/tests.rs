//! Router tests: IPI destinations, lowest priority, MSI, IOAPIC level interrupts with remote
//! IRR and EOI, kicks, timers and events across several local APICs.

use super::*;
use crate::ioapic::{IOAPIC_EOI, IOREDTBL, IOREGSEL, IOWIN};
use crate::regs::*;
use crate::{ApicMode, RejectReason, Startup};

const X2APIC_BASE: u64 = DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_EXTD;

fn router(cpus: usize) -> Router {
    Router::new(&ApicConfig::default(), cpus).unwrap()
}

fn w(r: &mut Router, cpu: usize, offset: u32, value: u32) {
    r.mmio_write(cpu, u64::from(offset), &value.to_le_bytes(), 0);
}

fn rd(r: &mut Router, cpu: usize, offset: u32) -> u32 {
    let mut d = [0u8; 4];
    r.mmio_read(cpu, u64::from(offset), &mut d, 0);
    u32::from_le_bytes(d)
}

/// A router whose APICs are all software enabled.
fn enabled(cpus: usize) -> Router {
    let mut r = router(cpus);
    for cpu in 0..cpus {
        w(&mut r, cpu, REG_SVR, 0x1FF);
    }
    r
}

fn send(r: &mut Router, from: usize, dest: u8, low: u32) {
    w(r, from, REG_ICR_HIGH, u32::from(dest) << 24);
    w(r, from, REG_ICR_LOW, low);
}

fn irr_holders(r: &Router, vector: u8) -> Vec<usize> {
    (0..r.cpu_count())
        .filter(|&c| r.lapic(c).irr().contains(vector))
        .collect()
}

fn ioapic_write(r: &mut Router, index: u32, value: u32) {
    r.ioapic_mmio_write(IOREGSEL, &index.to_le_bytes());
    r.ioapic_mmio_write(IOWIN, &value.to_le_bytes());
}

fn ioapic_read(r: &mut Router, index: u32) -> u32 {
    r.ioapic_mmio_write(IOREGSEL, &index.to_le_bytes());
    let mut d = [0u8; 4];
    r.ioapic_mmio_read(IOWIN, &mut d);
    u32::from_le_bytes(d)
}

#[test]
fn creation_checks_its_configuration() {
    assert_eq!(
        Router::new(&ApicConfig::default(), 0).unwrap_err(),
        ConfigError::CpuCount(0)
    );
    assert!(Router::new(&ApicConfig::default(), 256).is_err());
    assert!(Router::new(&ApicConfig::default(), 255).is_ok());
    let bad = ApicConfig {
        tsc_hz: 0,
        ..ApicConfig::default()
    };
    assert_eq!(
        Router::new(&bad, 1).unwrap_err(),
        ConfigError::ZeroFrequency("TSC")
    );
    let bad = ApicConfig {
        bus_hz: 0,
        ..ApicConfig::default()
    };
    assert!(Router::new(&bad, 1).is_err());
    let bad = ApicConfig {
        phys_addr_bits: 60,
        ..ApicConfig::default()
    };
    assert_eq!(
        Router::new(&bad, 1).unwrap_err(),
        ConfigError::PhysAddrBits(60)
    );
    let r = router(4);
    assert!(r.lapic(0).is_bsp());
    assert!(!r.lapic(3).is_bsp());
    assert_eq!(r.lapic(3).id(), 3);
    assert_eq!(r.cpu_of_apic_id(2), Some(2));
    assert_eq!(r.cpu_of_apic_id(9), None);
    assert_eq!(r.lapics().len(), 4);
}

#[test]
fn handles_msr_names_the_apic_msrs() {
    for msr in [0x1B, 0x6E0, 0x800, 0x830, 0x8FF] {
        assert!(Router::handles_msr(msr), "{msr:#x}");
    }
    for msr in [0x10, 0x7FF, 0x900, 0xC000_0080] {
        assert!(!Router::handles_msr(msr), "{msr:#x}");
    }
}

#[test]
fn physical_fixed_ipi_is_delivered_and_kicks_the_target() {
    let mut r = enabled(3);
    send(&mut r, 0, 2, 0x0000_4041);
    assert_eq!(irr_holders(&r, 0x41), vec![2]);
    assert_eq!(r.take_kicks(), vec![2]);
    assert!(r.take_kicks().is_empty(), "taken once");
    // The target injects it.
    assert_eq!(r.take_interrupt(2), Some(0x41));
    assert_eq!(r.lapic(2).isr().highest(), Some(0x41));
    // An IPI to an APIC ID nobody has goes nowhere.
    send(&mut r, 0, 7, 0x42);
    assert!(irr_holders(&r, 0x42).is_empty());
    assert!(r.take_kicks().is_empty());
}

#[test]
fn an_ipi_masked_by_the_target_tpr_is_queued_without_a_kick() {
    let mut r = enabled(2);
    w(&mut r, 1, REG_TPR, 0x80);
    send(&mut r, 0, 1, 0x41);
    assert_eq!(irr_holders(&r, 0x41), vec![1]);
    assert!(
        r.take_kicks().is_empty(),
        "not deliverable: no need to wake it"
    );
    // Lowering the TPR (the vCPU's own write) makes it deliverable.
    w(&mut r, 1, REG_TPR, 0);
    assert_eq!(r.lapic(1).pending_vector(), Some(0x41));
}

#[test]
fn shorthands() {
    let mut r = enabled(3);
    send(&mut r, 1, 0, (1 << 18) | 0x50); // self
    assert_eq!(irr_holders(&r, 0x50), vec![1]);
    assert!(
        r.take_kicks().is_empty(),
        "the sender is never kicked by its own write"
    );
    send(&mut r, 1, 0, (2 << 18) | 0x51); // all including self
    assert_eq!(irr_holders(&r, 0x51), vec![0, 1, 2]);
    assert_eq!(r.take_kicks(), vec![0, 2]);
    send(&mut r, 1, 0, (3 << 18) | 0x52); // all excluding self
    assert_eq!(irr_holders(&r, 0x52), vec![0, 2]);
    // The destination field is ignored with a shorthand.
    send(&mut r, 1, 0xFF, (1 << 18) | 0x53);
    assert_eq!(irr_holders(&r, 0x53), vec![1]);
}

#[test]
fn physical_broadcast() {
    let mut r = enabled(3);
    send(&mut r, 0, 0xFF, 0x60);
    assert_eq!(irr_holders(&r, 0x60), vec![0, 1, 2]);
}

#[test]
fn logical_flat_destinations() {
    let mut r = enabled(4);
    for cpu in 0..4 {
        w(&mut r, cpu, REG_LDR, 1 << (24 + cpu));
    }
    send(&mut r, 0, 0b0101, 0x800 | 0x61);
    assert_eq!(irr_holders(&r, 0x61), vec![0, 2]);
    send(&mut r, 0, 0b1000, 0x800 | 0x62);
    assert_eq!(irr_holders(&r, 0x62), vec![3]);
    send(&mut r, 0, 0xFF, 0x800 | 0x63);
    assert_eq!(irr_holders(&r, 0x63), vec![0, 1, 2, 3], "logical broadcast");
    send(&mut r, 0, 0x30, 0x800 | 0x64);
    assert!(irr_holders(&r, 0x64).is_empty());
}

#[test]
fn logical_cluster_destinations() {
    let mut r = enabled(4);
    let ldrs = [0x11, 0x12, 0x21, 0x24];
    for (cpu, ldr) in ldrs.into_iter().enumerate() {
        w(&mut r, cpu, REG_DFR, 0x0FFF_FFFF);
        w(&mut r, cpu, REG_LDR, ldr << 24);
    }
    send(&mut r, 0, 0x13, 0x800 | 0x65);
    assert_eq!(irr_holders(&r, 0x65), vec![0, 1]);
    send(&mut r, 0, 0x23, 0x800 | 0x66);
    assert_eq!(irr_holders(&r, 0x66), vec![2]);
    send(&mut r, 0, 0x2C, 0x800 | 0x67);
    assert_eq!(irr_holders(&r, 0x67), vec![3]);
}

#[test]
fn x2apic_physical_logical_and_broadcast() {
    let mut r = router(4);
    for cpu in 0..4 {
        r.msr_write(cpu, MSR_APIC_BASE, X2APIC_BASE, 0).unwrap();
        r.msr_write(cpu, 0x80F, 0x1FF, 0).unwrap();
        assert_eq!(r.lapic(cpu).mode(), ApicMode::X2Apic);
    }
    r.msr_write(0, 0x830, (3u64 << 32) | 0x70, 0).unwrap();
    assert_eq!(irr_holders(&r, 0x70), vec![3]);
    // Logical: cluster 0, members 0 and 2.
    r.msr_write(0, 0x830, (0b0101u64 << 32) | 0x800 | 0x71, 0)
        .unwrap();
    assert_eq!(irr_holders(&r, 0x71), vec![0, 2]);
    // Cluster 1 has nobody.
    r.msr_write(0, 0x830, (0x1_0001u64 << 32) | 0x800 | 0x72, 0)
        .unwrap();
    assert!(irr_holders(&r, 0x72).is_empty());
    // 0xFF is an ordinary x2APIC ID; 0xFFFFFFFF broadcasts.
    r.msr_write(0, 0x830, (0xFFu64 << 32) | 0x73, 0).unwrap();
    assert!(irr_holders(&r, 0x73).is_empty());
    r.msr_write(0, 0x830, (0xFFFF_FFFFu64 << 32) | 0x74, 0)
        .unwrap();
    assert_eq!(irr_holders(&r, 0x74), vec![0, 1, 2, 3]);
    // SELF IPI.
    r.msr_write(2, 0x83F, 0x75, 0).unwrap();
    assert_eq!(irr_holders(&r, 0x75), vec![2]);
    // Reading the x2APIC ICR back.
    assert_eq!(r.msr_read(0, 0x830, 0), Ok((0xFFFF_FFFFu64 << 32) | 0x74));
    assert_eq!(r.msr_read(0, 0x831, 0), Err(Gp));
    assert_eq!(r.msr_read(9, 0x830, 0), Err(Gp), "unknown vCPU");
}

#[test]
fn lowest_priority_picks_the_lowest_ppr_then_the_lowest_id() {
    let mut r = enabled(3);
    for cpu in 0..3 {
        w(&mut r, cpu, REG_LDR, 1 << (24 + cpu));
    }
    w(&mut r, 0, REG_TPR, 0x20);
    w(&mut r, 1, REG_TPR, 0x10);
    w(&mut r, 2, REG_TPR, 0x30);
    send(&mut r, 0, 0x07, 0x900 | 0x80);
    assert_eq!(irr_holders(&r, 0x80), vec![1]);
    // An in-service interrupt raises the PPR of vCPU 1.
    assert_eq!(r.take_interrupt(1), Some(0x80));
    send(&mut r, 0, 0x07, 0x900 | 0x81);
    assert_eq!(irr_holders(&r, 0x81), vec![0]);
    // Ties: the lowest APIC ID.
    for cpu in 0..3 {
        w(&mut r, cpu, REG_TPR, 0x40);
    }
    w(&mut r, 1, REG_EOI, 0);
    send(&mut r, 2, 0x06, 0x900 | 0x82);
    assert_eq!(irr_holders(&r, 0x82), vec![1]);
    // A software-disabled APIC is passed over.
    w(&mut r, 1, REG_SVR, 0xFF);
    send(&mut r, 2, 0x06, 0x900 | 0x83);
    assert_eq!(irr_holders(&r, 0x83), vec![2]);
    // Lowest priority over all-excluding-self.
    send(&mut r, 0, 0, (3 << 18) | 0x100 | 0x84);
    assert_eq!(irr_holders(&r, 0x84), vec![2]);
}

#[test]
fn nmi_init_and_sipi_ipis() {
    let mut r = enabled(3);
    send(&mut r, 0, 1, 0x0000_4400); // NMI
    assert!(r.lapic(1).nmi_pending());
    assert_eq!(r.take_kicks(), vec![1]);
    assert!(r.lapic_mut(1).take_nmi());
    // INIT-SIPI-SIPI to every AP, as an OS does.
    send(&mut r, 0, 0, (3 << 18) | 0xC500); // INIT assert, all excluding self
    send(&mut r, 0, 0, (3 << 18) | 0x8500); // INIT de-assert: dropped
    assert_eq!(r.take_kicks(), vec![1, 2]);
    for cpu in [1, 2] {
        assert_eq!(r.lapic(cpu).startup_pending(), Some(Startup::Init));
        assert!(!r.lapic(cpu).software_enabled(), "INIT reset");
    }
    send(&mut r, 0, 1, 0x4608);
    assert_eq!(r.take_kicks(), vec![1]);
    send(&mut r, 0, 1, 0x4608);
    assert!(r.take_kicks().is_empty(), "second SIPI ignored");
    assert_eq!(r.lapic_mut(1).take_startup(), Some(Startup::Sipi(8)));
    assert_eq!(r.lapic_mut(2).take_startup(), Some(Startup::Init));
    // SMI is accepted and ignored.
    send(&mut r, 0, 2, 0x4200);
    assert!(r.take_kicks().is_empty());
}

#[test]
fn illegal_vector_ipi_is_not_sent() {
    let mut r = enabled(2);
    send(&mut r, 0, 1, 0x4005);
    assert!(r.lapic(1).irr().is_empty());
    assert!(r.take_kicks().is_empty());
    w(&mut r, 0, REG_ESR, 0);
    assert_eq!(rd(&mut r, 0, REG_ESR), ESR_SEND_ILLEGAL_VECTOR);
    w(&mut r, 1, REG_ESR, 0);
    assert_eq!(rd(&mut r, 1, REG_ESR), 0);
}

#[test]
fn disabled_apics_receive_nothing() {
    let mut r = enabled(2);
    r.msr_write(1, MSR_APIC_BASE, DEFAULT_APIC_BASE, 0).unwrap();
    send(&mut r, 0, 0xFF, 0x40);
    send(&mut r, 0, 1, 0x400);
    assert_eq!(irr_holders(&r, 0x40), vec![0]);
    assert!(!r.lapic(1).nmi_pending());
    // MMIO of a disabled APIC reads zeros.
    assert_eq!(rd(&mut r, 1, REG_VERSION), 0);
}

#[test]
fn msi_delivery() {
    let mut r = enabled(3);
    r.msi(0xFEE0_2000, 0x0045).unwrap();
    assert_eq!(irr_holders(&r, 0x45), vec![2]);
    assert_eq!(r.take_kicks(), vec![2]);
    // Level triggered: TMR set, EOI broadcast.
    r.msi(0xFEE0_1000, 0xC046).unwrap();
    assert!(r.lapic(1).tmr().contains(0x46));
    // De-assert messages and start-up are dropped.
    r.msi(0xFEE0_1000, 0x8047).unwrap();
    r.msi(0xFEE0_1000, 0x0648).unwrap();
    assert!(irr_holders(&r, 0x47).is_empty());
    assert!(r.lapic(1).startup_pending().is_none());
    // NMI through MSI.
    r.msi(0xFEE0_0000, 0x0400).unwrap();
    assert!(r.lapic(0).nmi_pending());
    // Logical, lowest priority.
    for cpu in 0..3 {
        w(&mut r, cpu, REG_LDR, 1 << (24 + cpu));
    }
    w(&mut r, 1, REG_TPR, 0x50);
    r.msi(0xFEE0_600C, 0x0149).unwrap();
    assert_eq!(irr_holders(&r, 0x49), vec![2]);
    assert_eq!(
        r.msi(0xFEC0_0000, 0x40),
        Err(MsiError::Address(0xFEC0_0000))
    );
    // An illegal vector is refused by the receiver.
    r.msi(0xFEE0_2000, 0x0003).unwrap();
    w(&mut r, 2, REG_ESR, 0);
    assert_eq!(rd(&mut r, 2, REG_ESR), ESR_RECEIVE_ILLEGAL_VECTOR);
}

/// Pin 5: level triggered, vector 0x55, physical destination vCPU 1.
fn level_pin(r: &mut Router) {
    ioapic_write(r, IOREDTBL + 10, 0x8000 | 0x55);
    ioapic_write(r, IOREDTBL + 11, 1 << 24);
}

#[test]
fn ioapic_level_interrupt_with_remote_irr_and_redelivery_after_eoi() {
    let mut r = enabled(2);
    level_pin(&mut r);
    r.set_irq(5, true).unwrap();
    assert_eq!(irr_holders(&r, 0x55), vec![1]);
    assert!(r.lapic(1).tmr().contains(0x55));
    assert!(r.ioapic().remote_irr(5));
    assert_eq!(ioapic_read(&mut r, IOREDTBL + 10) & 0x4000, 0x4000);
    assert_eq!(r.take_kicks(), vec![1]);
    // The handler runs; the device still holds the line; EOI.
    assert_eq!(r.take_interrupt(1), Some(0x55));
    w(&mut r, 1, REG_EOI, 0);
    assert_eq!(
        irr_holders(&r, 0x55),
        vec![1],
        "still asserted: delivered again"
    );
    assert!(r.ioapic().remote_irr(5));
    // The device drops the line; the next EOI ends it.
    assert_eq!(r.take_interrupt(1), Some(0x55));
    r.set_irq(5, false).unwrap();
    w(&mut r, 1, REG_EOI, 0);
    assert!(r.lapic(1).irr().is_empty());
    assert!(!r.ioapic().remote_irr(5));
    // Masked: nothing; unmasking an asserted line delivers it.
    ioapic_write(&mut r, IOREDTBL + 10, 0x1_8000 | 0x55);
    r.set_irq(5, true).unwrap();
    assert!(r.lapic(1).irr().is_empty());
    ioapic_write(&mut r, IOREDTBL + 10, 0x8000 | 0x55);
    assert_eq!(irr_holders(&r, 0x55), vec![1]);
}

#[test]
fn directed_eoi_through_the_ioapic_eoi_register() {
    let mut r = enabled(2);
    w(&mut r, 1, REG_SVR, 0x11FF); // suppress EOI broadcast
    level_pin(&mut r);
    r.set_irq(5, true).unwrap();
    assert_eq!(r.take_interrupt(1), Some(0x55));
    w(&mut r, 1, REG_EOI, 0);
    assert!(
        r.lapic(1).irr().is_empty(),
        "no broadcast: nothing re-delivered"
    );
    assert!(r.ioapic().remote_irr(5));
    r.set_irq(5, false).unwrap();
    r.set_irq(5, true).unwrap();
    assert!(r.lapic(1).irr().is_empty(), "remote IRR blocks the pin");
    // The OS writes the vector to the IOAPIC EOI register.
    r.ioapic_mmio_write(IOAPIC_EOI, &0x55u32.to_le_bytes());
    assert_eq!(irr_holders(&r, 0x55), vec![1], "line still asserted");
    assert_eq!(r.take_kicks(), vec![1]);
    r.set_irq(5, false).unwrap();
    r.ioapic_mmio_write(IOAPIC_EOI, &0x55u32.to_le_bytes());
    assert!(!r.ioapic().remote_irr(5));
}

#[test]
fn an_unaccepted_level_message_does_not_wedge_the_pin() {
    let mut r = enabled(2);
    w(&mut r, 1, REG_SVR, 0xFF);
    level_pin(&mut r);
    r.set_irq(5, true).unwrap();
    assert!(!r.ioapic().remote_irr(5));
    assert_eq!(r.set_irq(30, true), Err(IoApicError::NoSuchPin(30)));
}

#[test]
fn ioapic_edge_interrupt() {
    let mut r = enabled(2);
    ioapic_write(&mut r, IOREDTBL + 2, 0x31);
    ioapic_write(&mut r, IOREDTBL + 3, 0);
    r.set_irq(1, true).unwrap();
    r.set_irq(1, false).unwrap();
    assert_eq!(irr_holders(&r, 0x31), vec![0]);
    assert!(!r.lapic(0).tmr().contains(0x31));
    assert_eq!(r.take_interrupt(0), Some(0x31));
    w(&mut r, 0, REG_EOI, 0);
    assert!(r.lapic(0).irr().is_empty(), "edge: no re-delivery");
}

#[test]
fn early_eoi_with_interrupts_disabled_delivers_the_next_interrupt_once() {
    let mut r = enabled(2);
    // Two IPIs of one class arrive at vCPU 1.
    send(&mut r, 0, 1, 0x40);
    assert_eq!(r.take_interrupt(1), Some(0x40));
    send(&mut r, 0, 1, 0x41);
    assert!(r.take_kicks().contains(&1));
    assert_eq!(
        r.lapic(1).pending_vector(),
        None,
        "masked by the in-service 0x40"
    );
    // The handler EOIs first thing, IF still 0.
    w(&mut r, 1, REG_EOI, 0);
    let if_flag = false;
    assert!(!r.lapic(1).wakeup_pending(if_flag));
    assert_eq!(r.lapic(1).pending_vector(), Some(0x41));
    // sti: injected once.
    assert_eq!(r.take_interrupt(1), Some(0x41));
    assert_eq!(r.take_interrupt(1), None);
}

#[test]
fn timers_tick_and_kick() {
    let mut r = enabled(3);
    for (cpu, count) in [(0usize, 500u32), (2, 300)] {
        w(&mut r, cpu, REG_LVT_TIMER, 0x30);
        w(&mut r, cpu, REG_TIMER_DIVIDE, 0xB);
        w(&mut r, cpu, REG_TIMER_INITIAL, count);
    }
    assert_eq!(r.next_deadline_ns(), Some(300));
    assert_eq!(r.tick(299), Some(300));
    assert!(r.take_kicks().is_empty());
    assert_eq!(r.tick(300), Some(500));
    assert_eq!(r.take_kicks(), vec![2]);
    assert_eq!(r.tick(1000), None);
    assert_eq!(r.take_kicks(), vec![0]);
    // A timer expiring during the vCPU's own register access does not kick it.
    w(&mut r, 1, REG_LVT_TIMER, 0x30);
    w(&mut r, 1, REG_TIMER_DIVIDE, 0xB);
    w(&mut r, 1, REG_TIMER_INITIAL, 10);
    let mut d = [0u8; 4];
    r.mmio_read(1, u64::from(REG_TIMER_CURRENT), &mut d, 50);
    assert_eq!(r.lapic(1).pending_vector(), Some(0x30));
    assert!(r.take_kicks().is_empty());
    // A tick done by a vCPU about to enter does not kick that vCPU.
    for cpu in [0, 2] {
        w(&mut r, cpu, REG_TIMER_INITIAL, 10);
    }
    r.tick_by(2, 100);
    assert_eq!(r.take_kicks(), vec![0]);
    assert_eq!(r.lapic(2).pending_vector(), Some(0x30));
}

#[test]
fn vmm_nmi_and_local_interrupts_kick() {
    let mut r = enabled(2);
    r.nmi(1);
    assert_eq!(r.take_kicks(), vec![1]);
    w(&mut r, 0, REG_LVT_LINT0, 0x3A);
    r.raise_lvt(0, Lvt::Lint0);
    assert_eq!(r.take_kicks(), vec![0]);
    assert_eq!(r.lapic(0).pending_vector(), Some(0x3A));
    r.eoi(0); // nothing in service: harmless
    r.nmi(5); // unknown vCPU: ignored
    assert!(r.take_kicks().is_empty());
}

#[test]
fn events_follow_causal_order() {
    let mut r = enabled(3);
    r.set_events_enabled(true);
    send(&mut r, 2, 0, 0x40);
    let events = r.take_events();
    assert!(
        matches!(events[0], ApicEvent::IpiSent { ipi } if ipi.source == 2 && ipi.vector == 0x40)
    );
    assert_eq!(
        events[1],
        ApicEvent::Accept {
            apic: 0,
            vector: 0x40,
            level: false
        }
    );
    assert_eq!(events.len(), 2);
    // Events from direct LocalApic use are merged at the next router call.
    r.lapic_mut(0).take_interrupt();
    level_pin(&mut r);
    w(&mut r, 1, REG_SVR, 0xFF);
    r.set_irq(5, true).unwrap();
    let events = r.take_events();
    assert_eq!(
        events[0],
        ApicEvent::Inject {
            apic: 0,
            vector: 0x40
        }
    );
    assert!(events.contains(&ApicEvent::Reject {
        apic: 1,
        vector: 0x55,
        reason: RejectReason::SoftwareDisabled
    }));
    assert!(events
        .iter()
        .any(|e| matches!(e, ApicEvent::IoApicSend { pin: 5, .. })));
    r.msi(0xFEE0_0000, 0x41).unwrap();
    assert!(matches!(r.take_events()[0], ApicEvent::Msi { .. }));
    assert_eq!(r.take_dropped_events(), 0);
    r.set_events_enabled(false);
    send(&mut r, 2, 0, 0x42);
    assert!(r.take_events().is_empty());
}

#[test]
fn unknown_cpu_accesses_are_harmless() {
    let mut r = enabled(1);
    let mut d = [0xAAu8; 4];
    r.mmio_read(3, 0x30, &mut d, 0);
    assert_eq!(d, [0; 4]);
    r.mmio_write(3, 0xF0, &[0xFF; 4], 0);
    assert_eq!(r.msr_write(3, 0x1B, 0, 0), Err(Gp));
    assert_eq!(r.ack(3, 0x40), None);
    assert_eq!(r.take_interrupt(3), None);
    r.raise_lvt(3, Lvt::Lint0);
    r.eoi(3);
}

#[test]
fn cluster_mask_selects_several_members() {
    let mut r = enabled(4);
    for (cpu, ldr) in [0x11u32, 0x12, 0x21, 0x24].into_iter().enumerate() {
        w(&mut r, cpu, REG_DFR, 0x0FFF_FFFF);
        w(&mut r, cpu, REG_LDR, ldr << 24);
    }
    send(&mut r, 0, 0x25, 0x800 | 0x68);
    assert_eq!(irr_holders(&r, 0x68), vec![2, 3]);
}
