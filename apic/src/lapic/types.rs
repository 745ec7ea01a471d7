//! The small types around a local APIC: its creation parameters, its mode, start-up events and
//! the effects of register writes.

use crate::error::ConfigError;
use crate::message::Ipi;

/// Creation-time parameters of the local APICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApicConfig {
    /// Frequency the APIC timer counts at before the divider (the "bus" or core crystal clock),
    /// in Hz. Default 1 GHz (one tick per nanosecond), as KVM and QEMU use.
    pub bus_hz: u64,
    /// Guest TSC frequency in Hz, for TSC-deadline mode. The guest TSC is taken to be
    /// `now_ns * tsc_hz / 10^9`, so the caller's clock must read 0 when the guest TSC did.
    pub tsc_hz: u64,
    /// Whether x2APIC mode is offered (`CPUID.01H:ECX[21]`); without it `IA32_APIC_BASE` bit 10 is
    /// reserved.
    pub x2apic: bool,
    /// Whether TSC-deadline mode is offered (`CPUID.01H:ECX[24]`); without it LVT timer bit 18 is
    /// reserved and `IA32_TSC_DEADLINE` raises #GP.
    pub tsc_deadline: bool,
    /// Physical address width (`CPUID.80000008H:EAX[7:0]`); `IA32_APIC_BASE` bits from it up are
    /// reserved.
    pub phys_addr_bits: u8,
}

impl Default for ApicConfig {
    fn default() -> Self {
        Self {
            bus_hz: 1_000_000_000,
            tsc_hz: 1_000_000_000,
            x2apic: true,
            tsc_deadline: true,
            phys_addr_bits: 46,
        }
    }
}

impl ApicConfig {
    /// Checks that the configuration can work: non-zero frequencies, 32..=52 address bits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bus_hz == 0 {
            return Err(ConfigError::ZeroFrequency("APIC bus"));
        }
        if self.tsc_hz == 0 {
            return Err(ConfigError::ZeroFrequency("TSC"));
        }
        if !(32..=52).contains(&self.phys_addr_bits) {
            return Err(ConfigError::PhysAddrBits(self.phys_addr_bits));
        }
        Ok(())
    }
}

/// The APIC mode selected by `IA32_APIC_BASE` EN (bit 11) and EXTD (bit 10) (§11.12.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApicMode {
    /// EN = 0: globally disabled; the processor behaves as one without an APIC (§11.4.3).
    Disabled,
    /// EN = 1, EXTD = 0: xAPIC mode, registers in the MMIO page.
    XApic,
    /// EN = 1, EXTD = 1: x2APIC mode, registers in MSRs 0x800-0x8FF.
    X2Apic,
}

/// A start-up event for the vCPU, taken with [`super::LocalApic::take_startup`] (§11.4.7.3, §8.4 of
/// Vol. 3A: the INIT-SIPI-SIPI protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Startup {
    /// An INIT was received: the vCPU must be reset. An application processor then waits for a
    /// SIPI (the APIC is in the wait-for-SIPI state); the BSP restarts at the reset vector.
    Init,
    /// A start-up IPI was received in the wait-for-SIPI state: the vCPU (reset by a preceding
    /// INIT) starts in real mode at CS:IP = `vector << 8`:0000, physical address `vector << 12`.
    Sipi(u8),
}

impl Startup {
    /// The physical start address of a SIPI, `vector << 12`.
    pub fn start_address(self) -> Option<u64> {
        match self {
            Startup::Init => None,
            Startup::Sipi(v) => Some(u64::from(v) << 12),
        }
    }
}

/// What a register write asks of the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Nothing.
    None,
    /// An ICR or SELF IPI write sent this IPI: deliver it (the [`crate::Router`] does).
    Ipi(Ipi),
    /// An EOI completed a level-triggered vector and broadcast suppression is off: tell the
    /// IOAPIC(s) (§11.8.5).
    EoiBroadcast(u8),
}

/// What delivering a message to one APIC did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The APIC took the message.
    pub(crate) accepted: bool,
    /// The vCPU must be kicked: a newly deliverable interrupt, an NMI, an INIT or a SIPI.
    pub(crate) kick: bool,
}

impl Delivery {
    pub(crate) const KICK: Delivery = Delivery {
        accepted: true,
        kick: true,
    };
}
