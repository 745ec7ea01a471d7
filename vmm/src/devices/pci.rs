//! A PCI bus with only a host bridge, behind configuration mechanism #1 (PCI Local Bus 3.0
//! §3.2.2.3.2): a 32-bit `CONFIG_ADDRESS` register at port 0xCF8 (bit 31 enable, bus
//! [23:16], device [15:11], function [10:8], dword register [7:2]) and `CONFIG_DATA` at
//! 0xCFC-0xCFF, where a byte, word or dword access at `0xCFC + n` reaches byte `n` of the
//! addressed dword.
//!
//! Bus 0, device 0, function 0 is a host bridge (class 06/00/00, Intel 0x8086:0x0D57 as
//! Firecracker presents its bridge) with no BARs, capabilities or interrupt; every other
//! function reads all ones (nothing answers), as does `CONFIG_DATA` while the enable bit is
//! clear. Byte and word accesses to 0xCF8-0xCFB are not the address register (on a PC they
//! reach other chipset registers, such as the reset control at 0xCF9): reads give all ones,
//! writes are ignored. `CONFIG_ADDRESS` bits 27:24 select the extended registers 0x100-0xFFF
//! as AMD's extended configuration access through 0xCF8 does (Linux uses it on AMD family 10h
//! and later: "PCI: Using configuration type 1 for extended access"); the host bridge is a
//! conventional PCI function without extended space, so those read all ones too. Linux finds
//! this bus with `pci_check_type1`/`pci_sanity_check`.

use std::sync::Mutex;

/// `CONFIG_ADDRESS`.
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// `CONFIG_DATA`, the first of its 4 ports.
pub const PCI_CONFIG_DATA: u16 = 0xcfc;
/// The host bridge's vendor ID (Intel).
pub const HOST_BRIDGE_VENDOR: u16 = 0x8086;
/// The host bridge's device ID.
pub const HOST_BRIDGE_DEVICE: u16 = 0x0d57;
/// Class code: base class 06 (bridge), subclass 00 (host), programming interface 00.
const HOST_BRIDGE_CLASS: u32 = 0x06_00_00;
/// `CONFIG_ADDRESS` bit 31: configuration space accesses enabled.
const ENABLE: u32 = 1 << 31;
/// The bits of `CONFIG_ADDRESS` that hold state (bits 30:28 and the two low bits read as 0).
const ADDRESS_BITS: u32 = 0x8fff_fffc;
/// `CONFIG_ADDRESS` bits 27:24: the extended register number (AMD).
const EXTENDED_REGISTER: u32 = 0x0f00_0000;
/// Command register bits the bridge lets software set (I/O, memory, bus master, ..., INTx
/// disable); the rest read 0.
const COMMAND_WRITABLE: u32 = 0x07ff;

/// The bus: the address register and the host bridge's writable registers.
#[derive(Debug, Default)]
pub struct PciBus {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    address: u32,
    /// Command register (offset 0x04).
    command: u16,
    /// Cache line size (0x0C) and latency timer (0x0D).
    cache_line_latency: u16,
    /// Interrupt line (0x3C): a scratch byte for software.
    interrupt_line: u8,
}

impl PciBus {
    /// Whether `port` belongs to mechanism #1.
    pub fn handles(port: u16) -> bool {
        (PCI_CONFIG_ADDRESS..PCI_CONFIG_DATA + 4).contains(&port)
    }

    /// A read of `data.len()` bytes (1, 2 or 4) at `port`.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        let state = self.lock();
        let value = match port {
            PCI_CONFIG_ADDRESS if data.len() == 4 => Some(state.address),
            _ => state.data_dword(port).map(|(dword, shift)| dword >> shift),
        };
        let bytes = value.unwrap_or(u32::MAX).to_le_bytes();
        for (d, b) in data.iter_mut().zip(bytes.iter().chain([0xff; 4].iter())) {
            *d = *b;
        }
    }

    /// A write of `data` (1, 2 or 4 bytes, little-endian) at `port`.
    pub fn write(&self, port: u16, data: &[u8]) {
        let mut value = [0u8; 4];
        let n = data.len().min(4);
        value[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(value);
        let mut state = self.lock();
        if port == PCI_CONFIG_ADDRESS && data.len() == 4 {
            state.address = value & ADDRESS_BITS;
            return;
        }
        let Some((old, shift)) = state.data_dword(port) else {
            return;
        };
        let mask = match n {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        } << shift;
        let merged = (old & !mask) | ((value << shift) & mask);
        let offset = state.address & 0xfc;
        state.store(offset, merged);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain integers: still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// For a `CONFIG_DATA` port: the addressed dword of the host bridge and the bit shift of
    /// the port's byte in it; `None` when nothing answers (enable clear, another function, an
    /// extended register, or not a data port).
    fn data_dword(&self, port: u16) -> Option<(u32, u32)> {
        let byte = port.checked_sub(PCI_CONFIG_DATA).filter(|b| *b < 4)?;
        if self.address & ENABLE == 0 || self.address & (EXTENDED_REGISTER | 0x00ff_ff00) != 0 {
            return None;
        }
        Some((self.host_bridge(self.address & 0xfc), u32::from(byte) * 8))
    }

    /// The host bridge's configuration dword at `offset` (a multiple of 4).
    fn host_bridge(&self, offset: u32) -> u32 {
        match offset {
            0x00 => u32::from(HOST_BRIDGE_DEVICE) << 16 | u32::from(HOST_BRIDGE_VENDOR),
            // Status 0: no capabilities list, no errors.
            0x04 => u32::from(self.command),
            // Revision 0.
            0x08 => HOST_BRIDGE_CLASS << 8,
            // Header type 0 (one function), BIST 0.
            0x0c => u32::from(self.cache_line_latency),
            // Interrupt pin 0: none.
            0x3c => u32::from(self.interrupt_line),
            // BARs (read-only 0: none), IDs, capabilities pointer, the rest.
            _ => 0,
        }
    }

    /// Stores a write of the whole dword at `offset`; read-only bits are dropped.
    fn store(&mut self, offset: u32, value: u32) {
        match offset {
            0x04 => self.command = (value & COMMAND_WRITABLE) as u16,
            0x0c => self.cache_line_latency = value as u16,
            0x3c => self.interrupt_line = value as u8,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CONFIG_ADDRESS` for bus/device/function/register as the PCI spec lays it out.
    fn address(bus: u32, dev: u32, func: u32, reg: u32) -> [u8; 4] {
        (ENABLE | bus << 16 | dev << 11 | func << 8 | (reg & 0xfc)).to_le_bytes()
    }

    fn read(bus: &PciBus, port: u16, len: usize) -> u32 {
        let mut data = [0u8; 4];
        bus.read(port, &mut data[..len]);
        u32::from_le_bytes(data)
    }

    fn config_read(bus: &PciBus, bdf: (u32, u32, u32), reg: u32, len: usize) -> u32 {
        bus.write(PCI_CONFIG_ADDRESS, &address(bdf.0, bdf.1, bdf.2, reg));
        read(bus, PCI_CONFIG_DATA + (reg & 3) as u16, len)
    }

    #[test]
    fn host_bridge_identifies_itself_at_every_width() {
        let bus = PciBus::default();
        let root = (0, 0, 0);
        assert_eq!(config_read(&bus, root, 0, 4), 0x0d57_8086);
        assert_eq!(config_read(&bus, root, 0, 2), 0x8086);
        assert_eq!(config_read(&bus, root, 2, 2), 0x0d57);
        assert_eq!(config_read(&bus, root, 1, 1), 0x80);
        assert_eq!(config_read(&bus, root, 3, 1), 0x0d);
        // Class code 06/00/00 (host bridge), revision 0; header type 0.
        assert_eq!(config_read(&bus, root, 0x08, 4), 0x0600_0000);
        assert_eq!(config_read(&bus, root, 0x0b, 1), 0x06);
        assert_eq!(config_read(&bus, root, 0x0a, 2), 0x0600);
        assert_eq!(config_read(&bus, root, 0x0e, 1), 0);
        // No BARs, no capabilities, no interrupt pin.
        for reg in (0x10..0x28).step_by(4) {
            assert_eq!(config_read(&bus, root, reg, 4), 0, "BAR at {reg:#x}");
        }
        assert_eq!(config_read(&bus, root, 0x06, 2) & 0x10, 0);
        assert_eq!(config_read(&bus, root, 0x3d, 1), 0);
    }

    #[test]
    fn nothing_else_answers_and_disabled_accesses_read_all_ones() {
        let bus = PciBus::default();
        for bdf in [(0, 1, 0), (0, 0, 1), (1, 0, 0), (0, 31, 7), (255, 0, 0)] {
            assert_eq!(config_read(&bus, bdf, 0, 4), u32::MAX, "{bdf:?}");
            assert_eq!(config_read(&bus, bdf, 0, 2), 0xffff, "{bdf:?}");
            assert_eq!(config_read(&bus, bdf, 3, 1), 0xff, "{bdf:?}");
        }
        // Enable bit clear: CONFIG_DATA reads all ones, writes do nothing.
        bus.write(PCI_CONFIG_ADDRESS, &0u32.to_le_bytes());
        assert_eq!(read(&bus, PCI_CONFIG_DATA, 4), u32::MAX);
        bus.write(PCI_CONFIG_DATA + 3, &[0x01]);
        assert_eq!(config_read(&bus, (0, 0, 0), 0, 4), 0x0d57_8086);
    }

    #[test]
    fn address_register_is_dword_only_and_reads_back() {
        let bus = PciBus::default();
        // Linux's pci_check_type1: save, write 0x8000_0000, read it back, restore.
        let saved = read(&bus, PCI_CONFIG_ADDRESS, 4);
        bus.write(PCI_CONFIG_ADDRESS, &0x8000_0000u32.to_le_bytes());
        assert_eq!(read(&bus, PCI_CONFIG_ADDRESS, 4), 0x8000_0000);
        bus.write(PCI_CONFIG_ADDRESS, &saved.to_le_bytes());
        assert_eq!(read(&bus, PCI_CONFIG_ADDRESS, 4), saved);
        // The two low bits and bits 30:28 are not stored.
        bus.write(PCI_CONFIG_ADDRESS, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read(&bus, PCI_CONFIG_ADDRESS, 4), 0x8fff_fffc);
        // Byte and word accesses to 0xCF8-0xCFB are other registers: ignored, all ones.
        bus.write(PCI_CONFIG_ADDRESS, &0x8000_0000u32.to_le_bytes());
        bus.write(PCI_CONFIG_ADDRESS + 1, &[0x06]);
        bus.write(PCI_CONFIG_ADDRESS, &[0x12, 0x34]);
        assert_eq!(read(&bus, PCI_CONFIG_ADDRESS, 4), 0x8000_0000);
        assert_eq!(read(&bus, PCI_CONFIG_ADDRESS + 1, 1), 0xff);
        assert_eq!(read(&bus, PCI_CONFIG_ADDRESS, 2), 0xffff);
    }

    #[test]
    fn writable_registers_keep_their_bits_and_read_only_ones_do_not_change() {
        let bus = PciBus::default();
        let root = (0, 0, 0);
        let write = |reg: u32, bytes: &[u8]| {
            bus.write(PCI_CONFIG_ADDRESS, &address(0, 0, 0, reg));
            bus.write(PCI_CONFIG_DATA + (reg & 3) as u16, bytes);
        };
        // Command: a word write; the reserved bits 15:11 stay 0; status unchanged.
        write(0x04, &0xffffu16.to_le_bytes());
        assert_eq!(config_read(&bus, root, 0x04, 4), 0x07ff);
        // A byte write to the command register's high byte keeps the low byte.
        write(0x05, &[0x00]);
        assert_eq!(config_read(&bus, root, 0x04, 2), 0x00ff);
        // Latency timer by byte, cache line size untouched; interrupt line as scratch.
        write(0x0c, &[0x10]);
        write(0x0d, &[0x40]);
        assert_eq!(config_read(&bus, root, 0x0c, 4), 0x4010);
        write(0x3c, &0xffff_ff0bu32.to_le_bytes());
        assert_eq!(config_read(&bus, root, 0x3c, 4), 0x0b);
        // BAR sizing (write all ones, read back) finds nothing; IDs are read-only.
        write(0x10, &u32::MAX.to_le_bytes());
        assert_eq!(config_read(&bus, root, 0x10, 4), 0);
        write(0x00, &0u32.to_le_bytes());
        assert_eq!(config_read(&bus, root, 0, 4), 0x0d57_8086);
    }

    #[test]
    fn extended_registers_read_all_ones_and_ignore_writes() {
        let bus = PciBus::default();
        // AMD's extended access: register 0x104 is bits 27:24 = 1, bits 7:2 = 0x04.
        let ext = |reg: u32| (ENABLE | (reg & 0xf00) << 16 | (reg & 0xfc)).to_le_bytes();
        bus.write(PCI_CONFIG_ADDRESS, &ext(0x104));
        assert_eq!(
            read(&bus, PCI_CONFIG_ADDRESS, 4),
            u32::from_le_bytes(ext(0x104))
        );
        assert_eq!(read(&bus, PCI_CONFIG_DATA, 4), u32::MAX);
        bus.write(PCI_CONFIG_DATA, &0x07u32.to_le_bytes());
        assert_eq!(
            config_read(&bus, (0, 0, 0), 0x04, 4),
            0,
            "not aliased to 0x04"
        );
        bus.write(PCI_CONFIG_ADDRESS, &ext(0x100));
        assert_eq!(
            read(&bus, PCI_CONFIG_DATA, 4),
            u32::MAX,
            "not aliased to the IDs"
        );
    }

    #[test]
    fn only_mechanism_1_ports_are_claimed() {
        assert!(PciBus::handles(0xcf8));
        assert!(PciBus::handles(0xcff));
        assert!(!PciBus::handles(0xcf7));
        assert!(!PciBus::handles(0xd00));
    }
}
