//! Interrupt messages exchanged between the local APICs, the IOAPIC and devices: delivery modes,
//! destinations, inter-processor interrupts ([`Ipi`]) and message-signalled interrupts ([`Msi`]).
//!
//! A local APIC does not know the other APICs: a write to its ICR produces an [`Ipi`] that the
//! [`crate::Router`] resolves to targets (SDM Vol. 3A §11.6.2 and §11.12.10).

use crate::error::MsiError;

/// Delivery mode of an interrupt message (ICR bits 10:8, §11.6.1; LVT bits 10:8, §11.5.1;
/// MSI data bits 10:8, §11.11.2; IOAPIC redirection entry bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// 000: the vector is delivered to the target(s).
    Fixed,
    /// 001: the vector is delivered to the target with the lowest processor priority.
    LowestPriority,
    /// 010: system management interrupt. SMM is not emulated: accepted and ignored.
    Smi,
    /// 100: non-maskable interrupt; the vector is ignored.
    Nmi,
    /// 101: INIT (or INIT level de-assert with level = 0 and level trigger in the ICR).
    Init,
    /// 110: start-up IPI; the vector is the page of the real-mode entry point.
    StartUp,
    /// 111: external interrupt (8259A-compatible). There is no 8259A: ignored.
    ExtInt,
    /// 011: reserved.
    Reserved,
}

impl DeliveryMode {
    /// Decodes the three-bit field (only bits 2:0 of `bits` are used).
    pub fn from_bits(bits: u32) -> Self {
        match bits & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::StartUp,
            7 => Self::ExtInt,
            _ => Self::Reserved,
        }
    }

    /// The three-bit encoding.
    pub fn bits(self) -> u32 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Reserved => 3,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::StartUp => 6,
            Self::ExtInt => 7,
        }
    }
}

/// Destination mode (ICR bit 11, MSI address bit 2, IOAPIC entry bit 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestMode {
    /// The destination is an APIC ID (§11.6.2.1).
    Physical,
    /// The destination is a message destination address matched against each LDR (§11.6.2.2).
    Logical,
}

/// Trigger mode (ICR bit 15, MSI data bit 15, IOAPIC entry bit 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Edge triggered: TMR bit cleared on acceptance, no EOI broadcast.
    Edge,
    /// Level triggered: TMR bit set on acceptance, the EOI is broadcast to the IOAPIC.
    Level,
}

/// Destination shorthand of an IPI (ICR bits 19:18, §11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shorthand {
    /// 00: the destination field names the target(s).
    None,
    /// 01: the sender itself.
    SelfOnly,
    /// 10: every APIC, the sender included.
    AllIncludingSelf,
    /// 11: every APIC but the sender.
    AllExcludingSelf,
}

impl Shorthand {
    /// Decodes the two-bit field (only bits 1:0 of `bits` are used).
    pub fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => Self::None,
            1 => Self::SelfOnly,
            2 => Self::AllIncludingSelf,
            _ => Self::AllExcludingSelf,
        }
    }
}

/// An inter-processor interrupt produced by a write to the ICR (or the x2APIC SELF IPI
/// register), already validated by the sending APIC (§11.6.1, Table 11-3): the router only has to
/// resolve its destination and deliver it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipi {
    /// APIC ID of the sender (its x2APIC ID; the xAPIC ID is its low 8 bits).
    pub source: u32,
    /// Vector (ignored for NMI and INIT; the start page for a start-up IPI).
    pub vector: u8,
    /// Delivery mode.
    pub delivery: DeliveryMode,
    /// Destination mode (ignored with a shorthand).
    pub dest_mode: DestMode,
    /// Trigger mode. IPIs are always edge triggered in effect (Table 11-3, note 2): a
    /// level-triggered assert is sent as edge, a de-assert is dropped by the sender.
    pub trigger: Trigger,
    /// Destination shorthand.
    pub shorthand: Shorthand,
    /// Destination: 8-bit xAPIC ID / MDA (ICR bits 63:56) or 32-bit x2APIC ID / MDA (bits 63:32).
    pub dest: u32,
    /// Whether `dest` is in the 32-bit x2APIC format (0xFFFF_FFFF broadcast) rather than the
    /// 8-bit xAPIC format (0xFF broadcast).
    pub x2apic: bool,
}

/// Base of the MSI address window (§11.11.1).
pub const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;
const MSI_ADDRESS_WINDOW_MASK: u64 = 0xFFFF_FFFF_FFF0_0000;
const MSI_ADDRESS_DEST_SHIFT: u32 = 12;
const MSI_ADDRESS_RH: u64 = 1 << 3;
const MSI_ADDRESS_DM: u64 = 1 << 2;
const MSI_DATA_LEVEL_ASSERT: u32 = 1 << 14;
const MSI_DATA_TRIGGER_LEVEL: u32 = 1 << 15;

/// A message-signalled interrupt in the 0xFEExxxxx format (§11.11.1, Figures 11-24 and 11-25).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Msi {
    /// Address bits 19:12: destination ID (APIC ID or logical MDA). 0xFF is a broadcast.
    pub dest: u8,
    /// Address bit 2: destination mode.
    pub dest_mode: DestMode,
    /// Address bit 3: redirection hint. Recorded only: arbitration follows the delivery mode.
    pub redirection_hint: bool,
    /// Data bits 7:0: vector.
    pub vector: u8,
    /// Data bits 10:8: delivery mode (start-up is reserved in MSIs and dropped).
    pub delivery: DeliveryMode,
    /// Data bit 15: trigger mode.
    pub trigger: Trigger,
    /// Data bit 14: level (for level-triggered messages, 0 = de-assert, which is dropped).
    pub level: bool,
}

impl Msi {
    /// Decodes an MSI address/data pair. Address bits 63:32 must be zero and bits 31:20 must be
    /// 0xFEE; the reserved address bits 11:4 and 1:0 and data bits 31:16 are ignored.
    pub fn decode(address: u64, data: u32) -> Result<Self, MsiError> {
        if address & MSI_ADDRESS_WINDOW_MASK != MSI_ADDRESS_BASE {
            return Err(MsiError::Address(address));
        }
        Ok(Self {
            dest: ((address >> MSI_ADDRESS_DEST_SHIFT) & 0xFF) as u8,
            dest_mode: if address & MSI_ADDRESS_DM != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            redirection_hint: address & MSI_ADDRESS_RH != 0,
            vector: (data & 0xFF) as u8,
            delivery: DeliveryMode::from_bits(data >> 8),
            trigger: if data & MSI_DATA_TRIGGER_LEVEL != 0 {
                Trigger::Level
            } else {
                Trigger::Edge
            },
            level: data & MSI_DATA_LEVEL_ASSERT != 0,
        })
    }

    /// The address word of this message.
    pub fn address(&self) -> u64 {
        let mut a = MSI_ADDRESS_BASE | (u64::from(self.dest) << MSI_ADDRESS_DEST_SHIFT);
        if self.dest_mode == DestMode::Logical {
            a |= MSI_ADDRESS_DM;
        }
        if self.redirection_hint {
            a |= MSI_ADDRESS_RH;
        }
        a
    }

    /// The data word of this message.
    pub fn data(&self) -> u32 {
        let mut d = u32::from(self.vector) | (self.delivery.bits() << 8);
        if self.level {
            d |= MSI_DATA_LEVEL_ASSERT;
        }
        if self.trigger == Trigger::Level {
            d |= MSI_DATA_TRIGGER_LEVEL;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_round_trips() {
        for bits in 0..8 {
            assert_eq!(DeliveryMode::from_bits(bits).bits(), bits);
        }
        assert_eq!(DeliveryMode::from_bits(3), DeliveryMode::Reserved);
        assert_eq!(DeliveryMode::from_bits(0x1F), DeliveryMode::ExtInt);
    }

    #[test]
    fn shorthand_decodes() {
        assert_eq!(Shorthand::from_bits(0), Shorthand::None);
        assert_eq!(Shorthand::from_bits(1), Shorthand::SelfOnly);
        assert_eq!(Shorthand::from_bits(2), Shorthand::AllIncludingSelf);
        assert_eq!(Shorthand::from_bits(7), Shorthand::AllExcludingSelf);
    }

    #[test]
    fn msi_decodes_and_encodes() {
        let m = Msi::decode(0xFEE0_300C, 0xC131).unwrap();
        assert_eq!(m.dest, 3);
        assert_eq!(m.dest_mode, DestMode::Logical);
        assert!(m.redirection_hint);
        assert_eq!(m.vector, 0x31);
        assert_eq!(m.delivery, DeliveryMode::LowestPriority);
        assert_eq!(m.trigger, Trigger::Level);
        assert!(m.level);
        assert_eq!(m.address(), 0xFEE0_300C);
        assert_eq!(m.data(), 0xC131);
    }

    #[test]
    fn msi_outside_the_window_is_an_error() {
        assert_eq!(
            Msi::decode(0xFED0_0000, 0x30),
            Err(MsiError::Address(0xFED0_0000))
        );
        assert!(Msi::decode(0x1_FEE0_0000, 0x30).is_err());
        // Reserved data bits are ignored.
        assert_eq!(Msi::decode(0xFEE0_0000, 0xFFFF_0030).unwrap().vector, 0x30);
    }
}
