//! ACPI tables for kernels that enumerate the machine through ACPI (Linux, booted by PVH):
//! RSDP (revision 2), XSDT, FADT, a minimal DSDT and the MADT, written at [`ACPI_ADDR`]
//! (reserved in the memory map, and inside the BIOS area where Linux also searches for an
//! RSDP).
//!
//! They describe the same machine as the MP table ([`crate::mptable`]):
//! - MADT: the local APIC at `0xfee00000`, one enabled Processor Local APIC per vCPU (APIC ID =
//!   ACPI processor UID = vCPU index), the IOAPIC (ID = number of vCPUs, GSI base 0, at
//!   `0xfec00000`), and an Interrupt Source Override for ISA IRQ 0 to GSI 0 (ISA IRQs are wired
//!   to the same-numbered IOAPIC pins, edge-triggered, active high). `PCAT_COMPAT` (a dual 8259
//!   is present) is set only under `--irqchip kvm`, where KVM emulates one.
//! - FADT (revision 6): hardware-reduced ACPI (no PM timer, SCI, fixed-feature registers or
//!   legacy devices behind them, as Firecracker and Cloud Hypervisor describe their VMs), no
//!   VGA, the DSDT by its 64-bit address.
//! - DSDT: a header with no AML (no devices to describe yet).
//!
//! Every checksum is computed over the whole table (and both RSDP checksums).

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::VmmError;
use crate::layout::{ACPI_ADDR, ACPI_MAX, IOAPIC_BASE, LAPIC_BASE};

/// OEM ID in every table.
pub const OEM_ID: &[u8; 6] = b"HVTRCE";
/// OEM table ID in every table.
pub const OEM_TABLE_ID: &[u8; 8] = b"HVTRACE ";
/// Creator ID.
const CREATOR_ID: &[u8; 4] = b"HVTR";
/// Size of the common table header.
const HEADER_LEN: usize = 36;
/// FADT revision 6 length.
const FADT_LEN: usize = 276;
/// FADT flags bit 20: hardware-reduced ACPI.
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// IA-PC boot architecture flags bit 2: VGA not present.
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// MADT flags bit 0: a dual 8259 is present.
const MADT_PCAT_COMPAT: u32 = 1;

/// What the tables describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiMachine {
    /// Number of vCPUs (APIC IDs 0..cpus).
    pub cpus: u8,
    /// Whether a dual 8259 PIC is emulated (KVM's in-kernel irqchip).
    pub pic: bool,
}

/// The checksum byte that makes `bytes` sum to 0.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A table: the common header for `signature` (revision `revision`) followed by `body`, with
/// its length and checksum filled in.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(HEADER_LEN + body.len());
    t.extend_from_slice(signature);
    t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// The MADT body for `machine`.
fn madt(machine: AcpiMachine) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(LAPIC_BASE as u32).to_le_bytes());
    let flags = if machine.pic { MADT_PCAT_COMPAT } else { 0 };
    b.extend_from_slice(&flags.to_le_bytes());
    for id in 0..machine.cpus {
        // Processor Local APIC: type 0, length 8, UID, APIC ID, flags (enabled).
        b.extend_from_slice(&[0, 8, id, id]);
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    // I/O APIC: type 1, length 12, ID, reserved, address, GSI base.
    b.extend_from_slice(&[1, 12, machine.cpus, 0]);
    b.extend_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    // Interrupt Source Override: type 2, length 10, bus 0 (ISA), IRQ 0 -> GSI 0, flags 0
    // (conforms to the bus: edge, active high).
    b.extend_from_slice(&[2, 10, 0, 0]);
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b
}

/// The FADT body (after the header) pointing at the DSDT at `dsdt`.
fn fadt(dsdt: u64) -> Vec<u8> {
    let mut b = vec![0u8; FADT_LEN - HEADER_LEN];
    let at = |off: usize| off - HEADER_LEN;
    b[at(40)..at(44)].copy_from_slice(&(dsdt as u32).to_le_bytes());
    b[at(109)..at(111)].copy_from_slice(&IAPC_VGA_NOT_PRESENT.to_le_bytes());
    b[at(112)..at(116)].copy_from_slice(&FADT_HW_REDUCED_ACPI.to_le_bytes());
    b[at(131)] = 0; // FADT minor version (6.0)
    b[at(140)..at(148)].copy_from_slice(&dsdt.to_le_bytes());
    b[at(268)..at(276)].copy_from_slice(b"hvtrace\0");
    b
}

/// The tables for `machine` laid out from `base`: the bytes to write there, and the RSDP's
/// address (it comes first, at `base`).
pub fn build(base: u64, machine: AcpiMachine) -> Vec<u8> {
    const RSDP_LEN: u64 = 36;
    let align = |x: u64| x.div_ceil(16) * 16;
    let xsdt_at = base + align(RSDP_LEN);
    let xsdt_len = (HEADER_LEN + 2 * 8) as u64;
    let fadt_at = xsdt_at + align(xsdt_len);
    let dsdt_at = fadt_at + align(FADT_LEN as u64);
    let dsdt = table(b"DSDT", 2, &[]);
    let madt_at = dsdt_at + align(dsdt.len() as u64);

    let mut xsdt_body = Vec::new();
    xsdt_body.extend_from_slice(&fadt_at.to_le_bytes());
    xsdt_body.extend_from_slice(&madt_at.to_le_bytes());
    let pieces = [
        (xsdt_at, table(b"XSDT", 1, &xsdt_body)),
        (fadt_at, table(b"FACP", 6, &fadt(dsdt_at))),
        (dsdt_at, dsdt),
        (madt_at, table(b"APIC", 5, &madt(machine))),
    ];

    let mut rsdp = Vec::with_capacity(RSDP_LEN as usize);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0); // checksum of the first 20 bytes, below
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0+, XSDT
    rsdp.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    rsdp.extend_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    rsdp.extend_from_slice(&xsdt_at.to_le_bytes());
    rsdp.extend_from_slice(&[0, 0, 0, 0]); // extended checksum, reserved
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);

    let mut out = rsdp;
    for (at, bytes) in pieces {
        out.resize((at - base) as usize, 0);
        out.extend_from_slice(&bytes);
    }
    out
}

/// Writes the tables for `machine` at [`ACPI_ADDR`] and returns the RSDP's address.
pub fn write(memory: &GuestMemoryMmap, machine: AcpiMachine) -> Result<u64, VmmError> {
    let bytes = build(ACPI_ADDR, machine);
    // 254 vCPUs take about 2.5 KiB.
    debug_assert!(
        bytes.len() as u64 <= ACPI_MAX,
        "ACPI tables outgrew their room"
    );
    memory
        .write_slice(&bytes, GuestAddress(ACPI_ADDR))
        .map_err(|source| VmmError::GuestWrite {
            what: "the ACPI tables",
            source,
        })?;
    Ok(ACPI_ADDR)
}

#[cfg(test)]
mod tests;
