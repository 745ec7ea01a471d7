//! Typed errors of the crate.

/// A register access that the architecture answers with a general-protection fault, #GP(0):
/// the VMM injects #GP into the guest instead of completing the RDMSR/WRMSR.
///
/// Raised by x2APIC MSR accesses in the cases of SDM Vol. 3A §11.12.1.2-§11.12.1.3 (a register
/// that does not exist in x2APIC mode, a write to a read-only register, a read of a write-only
/// register, a reserved bit set, an x2APIC MSR while x2APIC mode is off) and by illegal
/// `IA32_APIC_BASE` writes (§11.12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the APIC register access raises #GP(0) in the guest")]
pub struct Gp;

/// A message-signalled interrupt that cannot be decoded (SDM Vol. 3A §11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MsiError {
    /// The address is not in the 0xFEExxxxx interrupt message window.
    #[error("MSI address {0:#x} is outside the 0xFEExxxxx interrupt message window")]
    Address(u64),
}

/// An IOAPIC input that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum IoApicError {
    /// The pin number is not below [`crate::ioapic::IOAPIC_PINS`].
    #[error("IOAPIC pin {0} does not exist (the IOAPIC has 24 pins)")]
    NoSuchPin(u32),
}

/// A router configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ConfigError {
    /// The number of vCPUs is 0 or above 255 (xAPIC IDs are 8 bits and 0xFF is the broadcast).
    #[error("a router needs 1 to 255 local APICs, got {0}")]
    CpuCount(usize),
    /// A clock frequency is zero.
    #[error("the {0} frequency must not be zero")]
    ZeroFrequency(&'static str),
    /// The physical address width is outside 32..=52 bits.
    #[error("physical address width {0} is outside 32..=52 bits")]
    PhysAddrBits(u8),
}
