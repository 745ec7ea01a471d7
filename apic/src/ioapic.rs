//! The I/O APIC: 24 input pins, a redirection table and remote IRR for level-triggered pins,
//! version 0x20 with the directed-EOI register (Intel 82093AA datasheet; the EOI register of
//! version 0x20 as in the ICH/PCH datasheets). Like the local APIC it is a pure state machine:
//! it produces [`IoApicMessage`]s that the [`crate::Router`] delivers.
//!
//! Registers (MMIO, usually at 0xFEC00000): IOREGSEL at offset 0x00 (bits 7:0 select a
//! register), IOWIN at 0x10 (the selected register), EOI at 0x40 (write a vector). Indirect
//! registers: 0x00 IOAPICID (bits 27:24), 0x01 IOAPICVER (0x00170020: 24 entries, version
//! 0x20), 0x02 IOAPICARB (reads the ID), 0x10 + 2n / 0x11 + 2n the low / high dword of
//! redirection entry n.
//!
//! Pins: [`IoApic::set_irq`] takes the *asserted* state of the line (polarity, bit 13, is
//! recorded but the caller reports logical levels). An edge-triggered pin sends a message on
//! each rising edge while unmasked (an edge while masked is lost). A level-triggered pin sends a
//! message while asserted, unmasked and its remote IRR is clear, and sets its remote IRR; an EOI
//! for its vector clears remote IRR, and a line still asserted then is delivered again. The
//! delivery status bit (12) always reads 0: delivery is immediate.

use crate::error::IoApicError;
use crate::event::{ApicEvent, EventLog};
use crate::message::{DeliveryMode, DestMode, Trigger};

/// Number of input pins.
pub const IOAPIC_PINS: usize = 24;
/// Default guest-physical address of the IOAPIC registers.
pub const IOAPIC_DEFAULT_BASE: u64 = 0xFEC0_0000;
/// Size of the IOAPIC MMIO window.
pub const IOAPIC_MMIO_SIZE: u64 = 0x1000;
/// IOAPICVER value: maximum redirection entry 23 in bits 23:16, version 0x20.
pub const IOAPIC_VERSION: u32 = ((IOAPIC_PINS as u32 - 1) << 16) | 0x20;

/// MMIO offset of IOREGSEL.
pub const IOREGSEL: u64 = 0x00;
/// MMIO offset of IOWIN.
pub const IOWIN: u64 = 0x10;
/// MMIO offset of the EOI register (version 0x20).
pub const IOAPIC_EOI: u64 = 0x40;

/// Indirect register index of IOAPICID.
pub const IOAPICID: u32 = 0x00;
/// Indirect register index of IOAPICVER.
pub const IOAPICVER: u32 = 0x01;
/// Indirect register index of IOAPICARB.
pub const IOAPICARB: u32 = 0x02;
/// Indirect register index of redirection entry 0, low dword.
pub const IOREDTBL: u32 = 0x10;

/// Redirection entry bit 12: delivery status (read-only, always 0 here).
pub const REDIR_DELIVERY_STATUS: u64 = 1 << 12;
/// Redirection entry bit 13: polarity, 1 = active low.
pub const REDIR_POLARITY: u64 = 1 << 13;
/// Redirection entry bit 14: remote IRR (read-only).
pub const REDIR_REMOTE_IRR: u64 = 1 << 14;
/// Redirection entry bit 15: trigger mode, 1 = level.
pub const REDIR_LEVEL: u64 = 1 << 15;
/// Redirection entry bit 16: mask.
pub const REDIR_MASKED: u64 = 1 << 16;
/// Writable bits of a redirection entry: vector, delivery mode, destination mode, polarity,
/// trigger mode, mask and the destination (bits 63:56).
pub const REDIR_WRITABLE: u64 = 0xFF00_0000_0000_0000 | 0x1_AFFF;
const ID_MASK: u32 = 0x0F00_0000;

/// A message the IOAPIC sends for one of its pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoApicMessage {
    /// Source pin.
    pub pin: u8,
    /// Vector.
    pub vector: u8,
    /// Delivery mode.
    pub delivery: DeliveryMode,
    /// Destination mode.
    pub dest_mode: DestMode,
    /// Destination (entry bits 63:56): APIC ID or logical MDA; 0xFF broadcasts.
    pub dest: u8,
    /// Trigger mode.
    pub trigger: Trigger,
}

/// The I/O APIC.
#[derive(Debug, Clone)]
pub struct IoApic {
    id: u32,
    ioregsel: u32,
    redir: [u64; IOAPIC_PINS],
    /// Asserted input lines, bit n = pin n.
    lines: u32,
    pub(crate) events: EventLog,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new()
    }
}

impl IoApic {
    /// An IOAPIC in its reset state: ID 0, every entry masked, all lines low.
    pub fn new() -> Self {
        Self {
            id: 0,
            ioregsel: 0,
            redir: [REDIR_MASKED; IOAPIC_PINS],
            lines: 0,
            events: EventLog::default(),
        }
    }

    /// Back to the reset state (lines keep their levels).
    pub fn reset(&mut self) {
        self.id = 0;
        self.ioregsel = 0;
        self.redir = [REDIR_MASKED; IOAPIC_PINS];
    }

    /// Redirection entry of `pin` as the guest reads it (remote IRR included).
    pub fn redirection(&self, pin: usize) -> Option<u64> {
        self.redir.get(pin).copied()
    }

    /// Whether the remote IRR of `pin` is set.
    pub fn remote_irr(&self, pin: usize) -> bool {
        self.redirection(pin)
            .is_some_and(|e| e & REDIR_REMOTE_IRR != 0)
    }

    /// Whether input `pin` is asserted.
    pub fn line(&self, pin: usize) -> bool {
        pin < IOAPIC_PINS && self.lines & (1 << pin) != 0
    }

    fn read_indirect(&self, index: u32) -> u32 {
        match index {
            IOAPICID | IOAPICARB => self.id,
            IOAPICVER => IOAPIC_VERSION,
            _ => match Self::entry_of(index) {
                Some((pin, high)) => {
                    let e = self.redir.get(pin).copied().unwrap_or(0);
                    if high {
                        (e >> 32) as u32
                    } else {
                        e as u32
                    }
                }
                None => 0,
            },
        }
    }

    fn entry_of(index: u32) -> Option<(usize, bool)> {
        let i = usize::try_from(index.checked_sub(IOREDTBL)?).ok()?;
        (i < 2 * IOAPIC_PINS).then_some((i / 2, i % 2 == 1))
    }

    fn write_indirect(&mut self, index: u32, value: u32, out: &mut Vec<IoApicMessage>) {
        if index == IOAPICID {
            self.id = value & ID_MASK;
            return;
        }
        let Some((pin, high)) = Self::entry_of(index) else {
            return;
        };
        let Some(entry) = self.redir.get_mut(pin) else {
            return;
        };
        let old = *entry;
        let written = if high {
            (old & 0xFFFF_FFFF) | (u64::from(value) << 32)
        } else {
            (old & !0xFFFF_FFFF) | u64::from(value)
        };
        let mut new = (written & REDIR_WRITABLE) | (old & REDIR_REMOTE_IRR);
        if new & REDIR_LEVEL == 0 {
            new &= !REDIR_REMOTE_IRR;
        }
        *entry = new;
        // Unmasking an asserted level-triggered pin delivers it.
        self.service(pin, out);
    }

    /// A guest read of `data.len()` bytes at `offset` in the IOAPIC window. IOREGSEL and IOWIN
    /// read with accesses inside their first four bytes; anything else reads 0.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let within = (offset & 0xF) as usize;
        if data.is_empty() || within.saturating_add(data.len()) > 4 {
            return;
        }
        let value = match offset & !0xF {
            IOREGSEL => self.ioregsel,
            IOWIN => self.read_indirect(self.ioregsel),
            _ => return,
        };
        if let Some(src) = value.to_le_bytes().get(within..within + data.len()) {
            data.copy_from_slice(src);
        }
    }

    /// A guest write of `data` (1 to 4 bytes, little endian, zero extended) at `offset`:
    /// IOREGSEL (bits 7:0 kept), IOWIN, or the EOI register. Messages to deliver (a pin
    /// unmasked while asserted, a re-delivery after EOI) are appended to `out`.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], out: &mut Vec<IoApicMessage>) {
        if data.is_empty() || data.len() > 4 {
            return;
        }
        let mut bytes = [0u8; 4];
        if let Some(dst) = bytes.get_mut(..data.len()) {
            dst.copy_from_slice(data);
        }
        let value = u32::from_le_bytes(bytes);
        match offset {
            IOREGSEL => self.ioregsel = value & 0xFF,
            IOWIN => self.write_indirect(self.ioregsel, value, out),
            IOAPIC_EOI => self.eoi((value & 0xFF) as u8, out),
            _ => {}
        }
    }

    /// Sets the asserted state of input `pin`; messages to deliver are appended to `out`.
    pub fn set_irq(
        &mut self,
        pin: u32,
        asserted: bool,
        out: &mut Vec<IoApicMessage>,
    ) -> Result<(), IoApicError> {
        let index = usize::try_from(pin)
            .ok()
            .filter(|&p| p < IOAPIC_PINS)
            .ok_or(IoApicError::NoSuchPin(pin))?;
        let bit = 1u32 << index;
        let was = self.lines & bit != 0;
        if asserted {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        let entry = self.redir.get(index).copied().unwrap_or(REDIR_MASKED);
        if entry & REDIR_LEVEL != 0 {
            self.service(index, out);
        } else if asserted && !was && entry & REDIR_MASKED == 0 {
            out.push(self.message(index, entry));
        }
        Ok(())
    }

    /// An EOI for `vector` (a local APIC's broadcast, or the EOI register): every
    /// level-triggered pin with that vector and remote IRR set has it cleared, and is delivered
    /// again if its line is still asserted.
    pub fn eoi(&mut self, vector: u8, out: &mut Vec<IoApicMessage>) {
        self.events.record(ApicEvent::IoApicEoi { vector });
        for pin in 0..IOAPIC_PINS {
            let Some(entry) = self.redir.get_mut(pin) else {
                continue;
            };
            if *entry & REDIR_REMOTE_IRR != 0 && (*entry & 0xFF) as u8 == vector {
                *entry &= !REDIR_REMOTE_IRR;
                self.service(pin, out);
            }
        }
    }

    /// Nobody accepted the level-triggered message of `pin`: clear its remote IRR so that the
    /// pin is not wedged forever (a later assertion or unmask delivers it again).
    pub fn delivery_failed(&mut self, pin: u8) {
        if let Some(entry) = self.redir.get_mut(usize::from(pin)) {
            *entry &= !REDIR_REMOTE_IRR;
        }
    }

    /// Delivers a level-triggered pin if it is asserted, unmasked and its remote IRR is clear.
    fn service(&mut self, pin: usize, out: &mut Vec<IoApicMessage>) {
        let Some(&entry) = self.redir.get(pin) else {
            return;
        };
        if entry & REDIR_LEVEL == 0
            || entry & (REDIR_MASKED | REDIR_REMOTE_IRR) != 0
            || !self.line(pin)
        {
            return;
        }
        if let Some(e) = self.redir.get_mut(pin) {
            *e |= REDIR_REMOTE_IRR;
        }
        out.push(self.message(pin, entry));
    }

    fn message(&mut self, pin: usize, entry: u64) -> IoApicMessage {
        let msg = IoApicMessage {
            pin: pin as u8,
            vector: (entry & 0xFF) as u8,
            delivery: DeliveryMode::from_bits((entry >> 8) as u32),
            dest_mode: if entry & (1 << 11) != 0 {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            dest: (entry >> 56) as u8,
            trigger: if entry & REDIR_LEVEL != 0 {
                Trigger::Level
            } else {
                Trigger::Edge
            },
        };
        self.events.record(ApicEvent::IoApicSend {
            pin: msg.pin,
            vector: msg.vector,
            dest: msg.dest,
            dest_mode: msg.dest_mode,
            delivery: msg.delivery,
            trigger: msg.trigger,
        });
        msg
    }

    /// Starts or stops recording events.
    pub fn set_events_enabled(&mut self, enabled: bool) {
        self.events.set_enabled(enabled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(io: &mut IoApic, index: u32, value: u32) -> Vec<IoApicMessage> {
        let mut out = Vec::new();
        io.mmio_write(IOREGSEL, &index.to_le_bytes(), &mut out);
        io.mmio_write(IOWIN, &value.to_le_bytes(), &mut out);
        out
    }

    fn read(io: &mut IoApic, index: u32) -> u32 {
        let mut out = Vec::new();
        io.mmio_write(IOREGSEL, &index.to_le_bytes(), &mut out);
        let mut data = [0u8; 4];
        io.mmio_read(IOWIN, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn identification_registers() {
        let mut io = IoApic::new();
        assert_eq!(read(&mut io, IOAPICVER), 0x0017_0020);
        assert_eq!(read(&mut io, IOAPICID), 0);
        write(&mut io, IOAPICID, 0xFFFF_FFFF);
        assert_eq!(read(&mut io, IOAPICID), 0x0F00_0000);
        assert_eq!(read(&mut io, IOAPICARB), 0x0F00_0000);
        write(&mut io, IOAPICVER, 0);
        assert_eq!(read(&mut io, IOAPICVER), 0x0017_0020, "read-only");
        assert_eq!(read(&mut io, 0x03), 0, "unimplemented index");
        assert_eq!(read(&mut io, 0x40), 0, "past the table");
        // IOREGSEL keeps 8 bits and reads back.
        let mut out = Vec::new();
        io.mmio_write(IOREGSEL, &0x1234u32.to_le_bytes(), &mut out);
        let mut b = [0u8; 1];
        io.mmio_read(IOREGSEL, &mut b);
        assert_eq!(b, [0x34]);
    }

    #[test]
    fn reset_values_and_reserved_bits() {
        let mut io = IoApic::new();
        for pin in 0..IOAPIC_PINS as u32 {
            assert_eq!(read(&mut io, IOREDTBL + 2 * pin), 0x0001_0000);
            assert_eq!(read(&mut io, IOREDTBL + 2 * pin + 1), 0);
        }
        write(&mut io, IOREDTBL, 0xFFFF_FFFF);
        write(&mut io, IOREDTBL + 1, 0xFFFF_FFFF);
        // Delivery status, remote IRR and reserved bits read 0.
        assert_eq!(read(&mut io, IOREDTBL), 0x0001_AFFF);
        assert_eq!(read(&mut io, IOREDTBL + 1), 0xFF00_0000);
    }

    #[test]
    fn edge_pin_fires_on_rising_edges_only_when_unmasked() {
        let mut io = IoApic::new();
        let mut out = Vec::new();
        io.set_irq(4, true, &mut out).unwrap();
        assert!(out.is_empty(), "masked");
        io.set_irq(4, false, &mut out).unwrap();
        write(&mut io, IOREDTBL + 8, 0x34);
        write(&mut io, IOREDTBL + 9, 0x0200_0000);
        io.set_irq(4, true, &mut out).unwrap();
        io.set_irq(4, true, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].vector, 0x34);
        assert_eq!(out[0].dest, 2);
        assert_eq!(out[0].pin, 4);
        assert_eq!(out[0].trigger, Trigger::Edge);
        assert!(!io.remote_irr(4));
        assert_eq!(
            io.set_irq(24, true, &mut out),
            Err(IoApicError::NoSuchPin(24))
        );
    }

    #[test]
    fn level_pin_remote_irr_and_redelivery() {
        let mut io = IoApic::new();
        let mut out = Vec::new();
        write(&mut io, IOREDTBL + 2, 0x8000 | 0x41);
        io.set_irq(1, true, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(io.remote_irr(1));
        assert_eq!(read(&mut io, IOREDTBL + 2) & 0x4000, 0x4000);
        // Still asserted: nothing more until the EOI.
        io.set_irq(1, true, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        io.eoi(0x40, &mut out);
        assert!(io.remote_irr(1), "other vector");
        io.eoi(0x41, &mut out);
        assert_eq!(out.len(), 2, "re-delivered: line still asserted");
        assert!(io.remote_irr(1));
        io.set_irq(1, false, &mut out).unwrap();
        let mut out2 = Vec::new();
        io.mmio_write(IOAPIC_EOI, &[0x41, 0, 0, 0], &mut out2);
        assert!(out2.is_empty());
        assert!(!io.remote_irr(1));
    }

    #[test]
    fn unmasking_an_asserted_level_pin_delivers_it() {
        let mut io = IoApic::new();
        let mut out = Vec::new();
        write(&mut io, IOREDTBL + 6, 0x1_8000 | 0x50);
        io.set_irq(3, true, &mut out).unwrap();
        assert!(out.is_empty());
        let out = write(&mut io, IOREDTBL + 6, 0x8000 | 0x50);
        assert_eq!(out.len(), 1);
        // Switching to edge clears remote IRR.
        write(&mut io, IOREDTBL + 6, 0x50);
        assert!(!io.remote_irr(3));
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let mut io = IoApic::new();
        let mut out = Vec::new();
        io.mmio_write(0x20, &[1, 2, 3, 4], &mut out);
        io.mmio_write(IOWIN, &[], &mut out);
        io.mmio_write(IOWIN, &[0; 8], &mut out);
        let mut d = [0xAAu8; 8];
        io.mmio_read(IOWIN, &mut d);
        assert_eq!(d, [0; 8]);
        io.mmio_read(0x13, &mut d[..2]);
        io.delivery_failed(200);
        assert!(out.is_empty());
    }
}
