//! The Intel MultiProcessor Specification 1.4 table: how a guest finds its CPUs, buses,
//! IOAPIC and interrupt wiring without ACPI.
//!
//! Layout: the 16-byte floating pointer at [`MPTABLE_ADDR`], the configuration table right
//! after it: header, one processor entry per vCPU (APIC ID = vCPU index, CPU 0 is the BSP), an
//! ISA bus, the IOAPIC (ID = number of vCPUs), ISA IRQs 0-15 wired to IOAPIC pins 0-15, and
//! ExtINT on LINT0 / NMI on LINT1.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::VmmError;
use crate::layout::{HIMEM_START, IOAPIC_BASE, LAPIC_BASE, MPTABLE_ADDR};

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const SPEC_REV: u8 = 4;
/// Local APIC version reported in processor entries (integrated APIC).
const LAPIC_VERSION: u8 = 0x14;
/// IOAPIC version reported in the IOAPIC entry.
const IOAPIC_VERSION: u8 = 0x20;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 signature, features FPU + APIC.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the floating pointer and configuration table for `cpus` vCPUs, to be placed at
/// [`MPTABLE_ADDR`].
pub fn build(cpus: u8) -> Vec<u8> {
    let config_addr = MPTABLE_ADDR as u32 + 16;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let mut e = [0u8; 20];
        e[0] = ENTRY_PROCESSOR;
        e[1] = id;
        e[2] = LAPIC_VERSION;
        e[3] = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        e[4..8].copy_from_slice(&CPU_SIGNATURE.to_le_bytes());
        e[8..12].copy_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&e);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    count += 1;
    let ioapic_id = cpus;
    let mut ioapic = [ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1, 0, 0, 0, 0];
    ioapic[4..8].copy_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    entries.extend_from_slice(&ioapic);
    count += 1;
    for irq in 0..16u8 {
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            irq,
            ioapic_id,
            irq,
        ]);
        count += 1;
    }
    for (kind, lint) in [(INT_TYPE_EXTINT, 0u8), (INT_TYPE_NMI, 1u8)] {
        entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, kind, 0, 0, 0, 0, 0xff, lint]);
        count += 1;
    }

    let mut header = [0u8; 44];
    header[0..4].copy_from_slice(b"PCMP");
    header[4..6].copy_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    header[6] = SPEC_REV;
    header[8..16].copy_from_slice(b"HVTRACE ");
    header[16..28].copy_from_slice(b"HVTRACE-VM  ");
    header[34..36].copy_from_slice(&count.to_le_bytes());
    header[36..40].copy_from_slice(&(LAPIC_BASE as u32).to_le_bytes());
    let mut config = header.to_vec();
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut fp = [0u8; 16];
    fp[0..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&config_addr.to_le_bytes());
    fp[8] = 1; // length in 16-byte units
    fp[9] = SPEC_REV;
    fp[10] = checksum(&fp);

    let mut table = fp.to_vec();
    table.extend_from_slice(&config);
    table
}

/// Writes the MP table for `cpus` vCPUs into guest memory.
pub fn write(memory: &GuestMemoryMmap, cpus: u8) -> Result<(), VmmError> {
    let table = build(cpus);
    debug_assert!(MPTABLE_ADDR + table.len() as u64 <= HIMEM_START);
    memory
        .write_slice(&table, GuestAddress(MPTABLE_ADDR))
        .map_err(|source| VmmError::GuestWrite {
            what: "the MP table",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_counts() {
        for cpus in [1u8, 2, 8, 254] {
            let t = build(cpus);
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0);
            let config = &t[16..];
            let len = u16::from_le_bytes([config[4], config[5]]) as usize;
            assert_eq!(len, config.len());
            assert_eq!(sum(config), 0);
            let mut processors = 0;
            let mut off = 44;
            while off < config.len() {
                if config[off] == ENTRY_PROCESSOR {
                    processors += 1;
                    off += 20;
                } else {
                    off += 8;
                }
            }
            assert_eq!(processors, cpus as usize);
            assert!(MPTABLE_ADDR + t.len() as u64 <= HIMEM_START);
        }
    }

    #[test]
    fn only_cpu_zero_is_bsp() {
        let t = build(3);
        let config = &t[16..];
        assert_eq!(config[44 + 3], CPU_ENABLED | CPU_BSP);
        assert_eq!(config[64 + 3], CPU_ENABLED);
        assert_eq!(config[64 + 1], 1);
    }
}
