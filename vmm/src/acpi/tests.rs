//! The tables read back as a guest reads them: from the RSDP, by address, checksums first.

use super::*;

const BASE: u64 = 0xe_0000;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The table at guest address `addr` in `blob` (laid out from `BASE`), checked.
fn table_at<'a>(blob: &'a [u8], addr: u64, signature: &[u8; 4]) -> &'a [u8] {
    let off = (addr - BASE) as usize;
    assert_eq!(&blob[off..off + 4], signature);
    let len = u32_at(blob, off + 4) as usize;
    let t = &blob[off..off + len];
    assert_eq!(sum(t), 0, "{} checksum", String::from_utf8_lossy(signature));
    assert_eq!(&t[10..16], OEM_ID);
    t
}

#[test]
fn rsdp_xsdt_fadt_dsdt_madt_chain_with_good_checksums() {
    let blob = build(
        BASE,
        AcpiMachine {
            cpus: 3,
            pic: false,
        },
    );
    assert_eq!(&blob[..8], b"RSD PTR ");
    assert_eq!(sum(&blob[..20]), 0, "RSDP checksum");
    assert_eq!(sum(&blob[..36]), 0, "RSDP extended checksum");
    assert_eq!(blob[15], 2, "revision 2");
    let xsdt = table_at(&blob, u64_at(&blob, 24), b"XSDT");
    let entries: Vec<u64> = (36..xsdt.len())
        .step_by(8)
        .map(|o| u64_at(xsdt, o))
        .collect();
    assert_eq!(entries.len(), 2);
    let fadt = table_at(&blob, entries[0], b"FACP");
    assert_eq!(fadt.len(), 276);
    assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "hardware-reduced");
    let dsdt_addr = u64_at(fadt, 140);
    assert_eq!(u32_at(fadt, 40) as u64, dsdt_addr);
    table_at(&blob, dsdt_addr, b"DSDT");
    let madt = table_at(&blob, entries[1], b"APIC");
    assert_eq!(u32_at(madt, 36), 0xfee0_0000);
    assert_eq!(u32_at(madt, 40), 0, "no 8259 behind the emulated irqchip");
    let mut at = 44;
    let (mut lapics, mut ioapics, mut overrides) = (Vec::new(), Vec::new(), Vec::new());
    while at < madt.len() {
        let (kind, len) = (madt[at], madt[at + 1] as usize);
        match kind {
            0 => lapics.push((madt[at + 2], madt[at + 3], u32_at(madt, at + 4))),
            1 => ioapics.push((madt[at + 2], u32_at(madt, at + 4), u32_at(madt, at + 8))),
            2 => overrides.push((madt[at + 3], u32_at(madt, at + 4))),
            other => panic!("unexpected MADT entry {other}"),
        }
        at += len;
    }
    assert_eq!(at, madt.len());
    assert_eq!(lapics, vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
    assert_eq!(
        ioapics,
        vec![(3, 0xfec0_0000, 0)],
        "ID = vCPUs, as in the MP table"
    );
    assert_eq!(overrides, vec![(0, 0)]);
}

#[test]
fn the_pic_flag_follows_the_irqchip() {
    let blob = build(BASE, AcpiMachine { cpus: 1, pic: true });
    let xsdt = table_at(&blob, u64_at(&blob, 24), b"XSDT");
    let madt = table_at(&blob, u64_at(xsdt, 44), b"APIC");
    assert_eq!(u32_at(madt, 40), 1);
}

#[test]
fn every_vcpu_fits() {
    let blob = build(
        BASE,
        AcpiMachine {
            cpus: 254,
            pic: false,
        },
    );
    assert!(blob.len() as u64 <= ACPI_MAX);
}
