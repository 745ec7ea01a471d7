//! The local APIC register map: xAPIC MMIO offsets, x2APIC MSR numbers and the bit definitions
//! of every register, documented register by register.
//!
//! Section numbers refer to the Intel SDM Vol. 3A, chapter 11 "Advanced Programmable Interrupt
//! Controller (APIC)". In xAPIC mode the registers live in a 4 KiB page at the address held in
//! `IA32_APIC_BASE` (§11.4.1, Table 11-1); each 32-bit register is aligned on a 16-byte boundary.
//! In x2APIC mode the same registers are MSRs `0x800 + (offset >> 4)` (§11.12.1.2, Table 11-6).

// ---------------------------------------------------------------------------------------------
// MSRs
// ---------------------------------------------------------------------------------------------

/// `IA32_APIC_BASE` (§11.4.4, Figure 11-5): base address, global enable, x2APIC enable, BSP flag.
pub const MSR_APIC_BASE: u32 = 0x1B;
/// `IA32_TSC_DEADLINE` (§11.5.4.1): the absolute TSC value at which the timer fires in
/// TSC-deadline mode.
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// First MSR of the x2APIC register range (§11.12.1.2).
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last MSR of the x2APIC register range (§11.12.1.2).
pub const MSR_X2APIC_LAST: u32 = 0x8FF;

/// `IA32_APIC_BASE` bit 8: this processor is the bootstrap processor. Read-only here.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// `IA32_APIC_BASE` bit 10 (EXTD): x2APIC mode enable (§11.12.1).
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// `IA32_APIC_BASE` bit 11 (EN): APIC global enable (§11.4.3).
pub const APIC_BASE_EN: u64 = 1 << 11;
/// `IA32_APIC_BASE` bits 12 and up: the page frame of the xAPIC register page (§11.4.5).
pub const APIC_BASE_ADDR_MASK: u64 = !0xFFF;
/// The architectural reset value of the APIC base address (§11.4.1).
pub const DEFAULT_APIC_BASE: u64 = 0xFEE0_0000;
/// Size of the xAPIC register page.
pub const APIC_PAGE_SIZE: u64 = 0x1000;

/// The x2APIC MSR number of the register at xAPIC MMIO `offset` (§11.12.1.2).
pub const fn x2apic_msr(offset: u32) -> u32 {
    MSR_X2APIC_FIRST + (offset >> 4)
}

/// The xAPIC MMIO offset of x2APIC register `msr`, or `None` outside `0x800..=0x8FF`.
pub const fn x2apic_offset(msr: u32) -> Option<u32> {
    if msr >= MSR_X2APIC_FIRST && msr <= MSR_X2APIC_LAST {
        Some((msr - MSR_X2APIC_FIRST) << 4)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Register offsets (xAPIC MMIO; Table 11-1)
// ---------------------------------------------------------------------------------------------

/// Local APIC ID register (§11.4.6). xAPIC: ID in bits 31:24; x2APIC (0x802): the 32-bit x2APIC
/// ID. Read-only in this model in both modes (writability is model specific in xAPIC mode).
pub const REG_ID: u32 = 0x020;
/// Local APIC version register (§11.4.8). Read-only.
pub const REG_VERSION: u32 = 0x030;
/// Task priority register (§11.8.3.1). Bits 7:0 read/write, bits 31:8 reserved.
pub const REG_TPR: u32 = 0x080;
/// Arbitration priority register (§11.8.3.1 / Figure 11-15). Read-only, xAPIC mode only.
pub const REG_APR: u32 = 0x090;
/// Processor priority register (§11.8.3.1). Read-only.
pub const REG_PPR: u32 = 0x0A0;
/// End-of-interrupt register (§11.8.5). Write-only; in x2APIC mode a non-zero write raises #GP.
pub const REG_EOI: u32 = 0x0B0;
/// Remote read register (P6 family only). Reads as 0, xAPIC mode only.
pub const REG_RRD: u32 = 0x0C0;
/// Logical destination register (§11.6.2.2). xAPIC: bits 31:24 read/write; x2APIC (0x80D):
/// read-only, derived from the x2APIC ID (§11.12.10.2).
pub const REG_LDR: u32 = 0x0D0;
/// Destination format register (§11.6.2.2, Figure 11-14). Bits 31:28 model (1111b flat, 0000b
/// cluster), bits 27:0 read as ones. Absent in x2APIC mode.
pub const REG_DFR: u32 = 0x0E0;
/// Spurious interrupt vector register (§11.9, Figure 11-23).
pub const REG_SVR: u32 = 0x0F0;
/// In-service register, 8 words at `0x100 + 0x10 * i` (§11.8.4). Read-only.
pub const REG_ISR: u32 = 0x100;
/// Trigger mode register, 8 words at `0x180 + 0x10 * i` (§11.8.4). Read-only.
pub const REG_TMR: u32 = 0x180;
/// Interrupt request register, 8 words at `0x200 + 0x10 * i` (§11.8.4). Read-only.
pub const REG_IRR: u32 = 0x200;
/// Error status register (§11.5.3, Figure 11-9), with write-to-latch semantics.
pub const REG_ESR: u32 = 0x280;
/// LVT corrected machine-check interrupt (CMCI) register (§11.5.1).
pub const REG_LVT_CMCI: u32 = 0x2F0;
/// Interrupt command register, low half (§11.6.1). Writing it sends the IPI (xAPIC mode). In
/// x2APIC mode MSR 0x830 is the whole 64-bit ICR (§11.12.9).
pub const REG_ICR_LOW: u32 = 0x300;
/// Interrupt command register, high half: destination in bits 31:24 (xAPIC only; MSR 0x831 does
/// not exist).
pub const REG_ICR_HIGH: u32 = 0x310;
/// LVT timer register (§11.5.1, §11.5.4).
pub const REG_LVT_TIMER: u32 = 0x320;
/// LVT thermal sensor register (§11.5.1).
pub const REG_LVT_THERMAL: u32 = 0x330;
/// LVT performance monitoring counters register (§11.5.1).
pub const REG_LVT_PERF: u32 = 0x340;
/// LVT LINT0 register (§11.5.1).
pub const REG_LVT_LINT0: u32 = 0x350;
/// LVT LINT1 register (§11.5.1).
pub const REG_LVT_LINT1: u32 = 0x360;
/// LVT error register (§11.5.1, §11.5.3).
pub const REG_LVT_ERROR: u32 = 0x370;
/// Timer initial count register (§11.5.4). Writes are ignored in TSC-deadline mode.
pub const REG_TIMER_INITIAL: u32 = 0x380;
/// Timer current count register (§11.5.4). Read-only; reads 0 in TSC-deadline mode.
pub const REG_TIMER_CURRENT: u32 = 0x390;
/// Timer divide configuration register (§11.5.4, Figure 11-10): bits 0, 1 and 3.
pub const REG_TIMER_DIVIDE: u32 = 0x3E0;
/// SELF IPI register (§11.12.11): x2APIC mode only (MSR 0x83F), write-only, bits 7:0 vector.
pub const REG_SELF_IPI: u32 = 0x3F0;

// ---------------------------------------------------------------------------------------------
// Version register
// ---------------------------------------------------------------------------------------------

/// Number of LVT entries implemented: timer, thermal, performance, LINT0, LINT1, error, CMCI.
pub const LVT_COUNT: u32 = 7;
/// Version register value (§11.4.8, Figure 11-7): version 0x14 (integrated APIC), "max LVT entry"
/// = [`LVT_COUNT`] - 1 in bits 23:16, bit 24 = suppress-EOI-broadcast supported (it is honoured).
pub const VERSION_VALUE: u32 = 0x14 | ((LVT_COUNT - 1) << 16) | VERSION_EOI_SUPPRESS;
/// Version register bit 24: software can set SVR bit 12 to suppress EOI broadcasts.
pub const VERSION_EOI_SUPPRESS: u32 = 1 << 24;

// ---------------------------------------------------------------------------------------------
// Spurious interrupt vector register (§11.9, Figure 11-23)
// ---------------------------------------------------------------------------------------------

/// SVR bits 7:0: spurious vector (all eight bits writable on Pentium 4 and later).
pub const SVR_VECTOR: u32 = 0xFF;
/// SVR bit 8: APIC software enable (§11.4.7.2).
pub const SVR_ENABLE: u32 = 1 << 8;
/// SVR bit 9: focus processor checking disabled. Stored and read back, without effect: lowest
/// priority arbitration here never uses a focus processor (Pentium 4 and later do not). Kept
/// writable because operating systems set it (and KVM accepts it) in both modes.
pub const SVR_FOCUS_DISABLE: u32 = 1 << 9;
/// SVR bit 12: suppress EOI broadcasts (§11.8.5).
pub const SVR_SUPPRESS_EOI_BROADCAST: u32 = 1 << 12;
/// Writable SVR bits.
pub const SVR_WRITABLE: u32 =
    SVR_VECTOR | SVR_ENABLE | SVR_FOCUS_DISABLE | SVR_SUPPRESS_EOI_BROADCAST;
/// SVR value after reset and INIT (§11.4.7.1).
pub const SVR_RESET: u32 = 0xFF;

// ---------------------------------------------------------------------------------------------
// Error status register (§11.5.3, Figure 11-9)
// ---------------------------------------------------------------------------------------------

/// ESR bit 4: redirectable IPI (a lowest-priority IPI the APIC cannot send). Never set here:
/// lowest-priority IPIs are supported.
pub const ESR_REDIRECTABLE_IPI: u32 = 1 << 4;
/// ESR bit 5: send illegal vector (an ICR or SELF IPI write with a vector 0..=15).
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: receive illegal vector (a received or locally generated interrupt with a vector
/// 0..=15; the IRR bit is never set).
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// ESR bit 7: illegal register address (an xAPIC access to an unimplemented register).
pub const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

// ---------------------------------------------------------------------------------------------
// LVT entries (§11.5.1, Figure 11-8)
// ---------------------------------------------------------------------------------------------

/// LVT bits 7:0: vector.
pub const LVT_VECTOR: u32 = 0xFF;
/// LVT bits 10:8: delivery mode (000 fixed, 010 SMI, 100 NMI, 101 INIT, 111 ExtINT).
pub const LVT_DELIVERY_MODE: u32 = 0x700;
/// LVT bit 12: delivery status. Read-only; always 0 (idle) here since delivery is immediate.
pub const LVT_DELIVERY_STATUS: u32 = 1 << 12;
/// LVT bit 13: interrupt input pin polarity (LINT0/LINT1 only).
pub const LVT_POLARITY: u32 = 1 << 13;
/// LVT bit 14: remote IRR (LINT0/LINT1 only, read-only): set when a level-triggered fixed
/// interrupt is accepted, cleared by the EOI of its vector.
pub const LVT_REMOTE_IRR: u32 = 1 << 14;
/// LVT bit 15: trigger mode, 1 = level (LINT0/LINT1 only).
pub const LVT_LEVEL: u32 = 1 << 15;
/// LVT bit 16: mask.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT timer bits 18:17: timer mode (00 one-shot, 01 periodic, 10 TSC-deadline, 11 reserved).
pub const LVT_TIMER_MODE: u32 = 3 << 17;
/// LVT timer mode value: periodic.
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// LVT timer mode value: TSC-deadline (§11.5.4.1).
pub const LVT_TIMER_TSC_DEADLINE: u32 = 2 << 17;
/// Value of every LVT after reset and INIT: all zero except the mask bit (§11.4.7.1).
pub const LVT_RESET: u32 = LVT_MASKED;

// ---------------------------------------------------------------------------------------------
// Interrupt command register (§11.6.1, Figure 11-12; x2APIC: §11.12.9, Figure 11-28)
// ---------------------------------------------------------------------------------------------

/// ICR bits 7:0: vector.
pub const ICR_VECTOR: u32 = 0xFF;
/// ICR bits 10:8: delivery mode.
pub const ICR_DELIVERY_MODE: u32 = 0x700;
/// ICR bit 11: destination mode, 1 = logical.
pub const ICR_LOGICAL: u32 = 1 << 11;
/// ICR bit 12: delivery status (xAPIC only, read-only). Always reads 0 (idle).
pub const ICR_DELIVERY_STATUS: u32 = 1 << 12;
/// ICR bit 14: level, 1 = assert, 0 = de-assert.
pub const ICR_LEVEL_ASSERT: u32 = 1 << 14;
/// ICR bit 15: trigger mode, 1 = level.
pub const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
/// ICR bits 19:18: destination shorthand.
pub const ICR_SHORTHAND: u32 = 3 << 18;
/// Shift of the shorthand field.
pub const ICR_SHORTHAND_SHIFT: u32 = 18;
/// Writable bits of the xAPIC ICR low word.
pub const ICR_LOW_WRITABLE: u32 = ICR_VECTOR
    | ICR_DELIVERY_MODE
    | ICR_LOGICAL
    | ICR_LEVEL_ASSERT
    | ICR_TRIGGER_LEVEL
    | ICR_SHORTHAND;
/// Writable bits of the xAPIC ICR high word: destination in bits 31:24.
pub const ICR_HIGH_WRITABLE: u32 = 0xFF00_0000;
/// Reserved bits of the 64-bit x2APIC ICR (§11.12.9): 13, 16-17 and 20-31. A WRMSR that sets
/// any of them raises #GP. Bit 12 (the xAPIC delivery status) is ignored on write.
pub const X2APIC_ICR_RESERVED: u64 = 0xFFF0_0000 | 0x3_0000 | 0x2000;

// ---------------------------------------------------------------------------------------------
// Other registers
// ---------------------------------------------------------------------------------------------

/// TPR bits 7:0 (class in 7:4, subclass in 3:0).
pub const TPR_WRITABLE: u32 = 0xFF;
/// LDR bits 31:24: the 8-bit logical APIC ID (xAPIC mode).
pub const LDR_WRITABLE: u32 = 0xFF00_0000;
/// DFR bits 31:28: the model. The other bits always read as ones.
pub const DFR_MODEL: u32 = 0xF000_0000;
/// DFR model value: flat.
pub const DFR_FLAT: u32 = 0xFFFF_FFFF;
/// DFR model value: cluster.
pub const DFR_CLUSTER: u32 = 0x0FFF_FFFF;
/// Writable bits of the divide configuration register: 0, 1 and 3.
pub const DIVIDE_WRITABLE: u32 = 0xB;
/// Writable bits of the SELF IPI register: the vector.
pub const SELF_IPI_WRITABLE: u32 = 0xFF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2apic_msr_numbers_follow_the_offsets() {
        assert_eq!(x2apic_msr(REG_ID), 0x802);
        assert_eq!(x2apic_msr(REG_EOI), 0x80B);
        assert_eq!(x2apic_msr(REG_ICR_LOW), 0x830);
        assert_eq!(x2apic_msr(REG_SELF_IPI), 0x83F);
        assert_eq!(x2apic_offset(0x828), Some(REG_ESR));
        assert_eq!(x2apic_offset(0x7FF), None);
        assert_eq!(x2apic_offset(0x900), None);
    }

    #[test]
    fn version_advertises_seven_lvts_and_eoi_suppression() {
        assert_eq!(VERSION_VALUE, 0x0106_0014);
    }
}
