//! The boot state of the bootstrap processor: GDT, identity page tables, the boot-info block,
//! and the registers that enter the guest image in 64-bit long mode.
//!
//! Boot contract (what a guest image can rely on at its ELF entry point):
//! CPL0 in 64-bit mode with paging on and the first 4 GiB identity-mapped with 2 MiB pages, and
//! mapped again at [`DIRECT_MAP_BASE`] (a higher-half direct map, as Linux keeps one);
//! CS = 0x08, the data segments = 0x10, GDT at [`GDT_ADDR`]; RFLAGS = 0x2 (interrupts off),
//! no IDT; RDI = [`BOOT_INFO_ADDR`], a [`BootInfo`] block. Application processors are not
//! started: they wait for INIT-SIPI-SIPI as on hardware.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::VmmError;
use crate::layout::{
    BOOT_INFO_ADDR, CMDLINE_ADDR, CMDLINE_MAX, GDT_ADDR, LINUX_GDT_ADDR, MMIO_HOLE_START,
    PDPT_ADDR, PD_ADDR, PML4_ADDR,
};

/// Magic at the start of the boot-info block: "HVTB" in memory order.
pub const BOOT_INFO_MAGIC: u32 = u32::from_le_bytes(*b"HVTB");
/// Version of the boot-info block layout.
pub const BOOT_INFO_VERSION: u32 = 1;

/// Selector of the 64-bit code segment.
pub const CODE_SELECTOR: u16 = 0x08;
/// Selector of the flat data segment.
pub const DATA_SELECTOR: u16 = 0x10;
/// Selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x18;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Page-table entry bits.
const PTE_PRESENT: u64 = 1;
const PTE_WRITE: u64 = 1 << 1;
const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;
const PTE_LARGE: u64 = 1 << 7;

/// The boot-info block the guest finds at RDI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Number of vCPUs.
    pub cpu_count: u32,
    /// APIC ID of the bootstrap processor.
    pub bsp_apic_id: u32,
    /// RAM size in bytes.
    pub mem_size: u64,
    /// The command line (not NUL-terminated in guest memory; its length is given).
    pub cmdline: String,
    /// TSC frequency in kHz (0 if unknown), so guests can turn TSC deltas into time.
    pub tsc_khz: u32,
}

impl BootInfo {
    /// The block's bytes as the guest sees them.
    pub fn to_bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0..4].copy_from_slice(&BOOT_INFO_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&BOOT_INFO_VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.cpu_count.to_le_bytes());
        b[12..16].copy_from_slice(&self.bsp_apic_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.mem_size.to_le_bytes());
        b[24..32].copy_from_slice(&CMDLINE_ADDR.to_le_bytes());
        b[32..40].copy_from_slice(&(self.cmdline.len() as u64).to_le_bytes());
        b[40..44].copy_from_slice(&self.tsc_khz.to_le_bytes());
        b
    }
}

/// Encodes a GDT descriptor from its flags (type/S/DPL/P in bits 0..8, AVL/L/DB/G in 12..16).
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The GDT the VMM installs: null, 64-bit code, data, TSS.
pub fn gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

/// Selector of a bzImage's 64-bit code segment (the boot protocol's `__BOOT_CS`).
pub const LINUX_CODE_SELECTOR: u16 = 0x10;
/// Selector of a bzImage's data segment (`__BOOT_DS`).
pub const LINUX_DATA_SELECTOR: u16 = 0x18;
/// Selector of the TSS in a bzImage's GDT.
pub const LINUX_TSS_SELECTOR: u16 = 0x20;

/// The GDT a bzImage's 64-bit entry gets (at `LINUX_GDT_ADDR`): null, null, 64-bit code at
/// `__BOOT_CS`, data at `__BOOT_DS`, TSS.
pub fn linux_gdt() -> [u64; 5] {
    let g = gdt();
    [0, 0, g[1], g[2], g[3]]
}

/// Sets `sregs` for a bzImage's 64-bit entry: long mode as [`long_mode_sregs`], with the
/// boot protocol's GDT and selectors.
pub fn linux_long_mode_sregs(sregs: &mut kvm_sregs) {
    long_mode_sregs(sregs);
    let gdt = linux_gdt();
    let code = segment_from_gdt(gdt[2], LINUX_CODE_SELECTOR);
    let data = segment_from_gdt(gdt[3], LINUX_DATA_SELECTOR);
    sregs.gdt.base = LINUX_GDT_ADDR;
    sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
    sregs.cs = code;
    for seg in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        *seg = data;
    }
    sregs.tr = segment_from_gdt(gdt[4], LINUX_TSS_SELECTOR);
}

/// General registers at a bzImage's 64-bit entry: RSI = the zero page.
pub fn linux64_entry_regs(entry: u64, boot_params: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsi: boot_params,
        rflags: 0x2,
        ..Default::default()
    }
}

/// Decodes a GDT descriptor into the KVM segment register form.
pub fn segment_from_gdt(entry: u64, selector: u16) -> kvm_segment {
    let limit_raw = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (limit_raw << 12) | 0xfff
        } else {
            limit_raw
        },
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Where the first 4 GiB are mapped a second time (PML4 entry 256).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;

/// The identity map of the first 4 GiB, and the same tables again at [`DIRECT_MAP_BASE`]:
/// (address, entry) pairs for PML4, PDPT and PDs.
pub fn page_table_entries() -> Vec<(u64, u64)> {
    let pdpt = PDPT_ADDR | PTE_PRESENT | PTE_WRITE;
    let mut entries = vec![(PML4_ADDR, pdpt), (PML4_ADDR + 256 * 8, pdpt)];
    for i in 0..4u64 {
        entries.push((
            PDPT_ADDR + i * 8,
            (PD_ADDR + i * 0x1000) | PTE_PRESENT | PTE_WRITE,
        ));
    }
    for i in 0..2048u64 {
        let addr = i << 21;
        let mut e = addr | PTE_PRESENT | PTE_WRITE | PTE_LARGE;
        if addr >= MMIO_HOLE_START {
            e |= PTE_PCD | PTE_PWT;
        }
        entries.push((PD_ADDR + i * 8, e));
    }
    entries
}

/// Writes the GDT, page tables, boot info and command line into guest memory.
pub fn write_boot_tables(memory: &GuestMemoryMmap, info: &BootInfo) -> Result<(), VmmError> {
    let write = |what: &'static str, addr: u64, bytes: &[u8]| {
        memory
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|source| VmmError::GuestWrite { what, source })
    };
    if info.cmdline.len() > CMDLINE_MAX {
        return Err(VmmError::CmdlineTooLong {
            len: info.cmdline.len(),
            max: CMDLINE_MAX,
        });
    }
    let gdt: Vec<u8> = gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    write("the GDT", GDT_ADDR, &gdt)?;
    for (addr, entry) in page_table_entries() {
        write("the page tables", addr, &entry.to_le_bytes())?;
    }
    write("the boot-info block", BOOT_INFO_ADDR, &info.to_bytes())?;
    write("the command line", CMDLINE_ADDR, info.cmdline.as_bytes())?;
    Ok(())
}

/// Sets `sregs` for 64-bit long mode with the VMM's GDT and page tables.
pub fn long_mode_sregs(sregs: &mut kvm_sregs) {
    let gdt = gdt();
    let code = segment_from_gdt(gdt[1], CODE_SELECTOR);
    let data = segment_from_gdt(gdt[2], DATA_SELECTOR);
    let tss = segment_from_gdt(gdt[3], TSS_SELECTOR);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
}

/// General registers at the entry point.
pub fn entry_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rdi: BOOT_INFO_ADDR,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::create_guest_memory;

    #[test]
    fn gdt_matches_the_well_known_encodings() {
        let g = gdt();
        assert_eq!(g[1], 0x00af_9b00_0000_ffff);
        assert_eq!(g[2], 0x00cf_9300_0000_ffff);
        assert_eq!(g[3], 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn segments_decode() {
        let code = segment_from_gdt(gdt()[1], CODE_SELECTOR);
        assert_eq!((code.l, code.db, code.type_, code.present), (1, 0, 0xb, 1));
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment_from_gdt(gdt()[2], DATA_SELECTOR);
        assert_eq!((data.l, data.db, data.type_, data.s), (0, 1, 3, 1));
        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn identity_map_covers_4_gib() {
        let e = page_table_entries();
        assert_eq!(e.len(), 2 + 4 + 2048);
        let last = e.last().unwrap();
        assert_eq!(last.0, PD_ADDR + 2047 * 8);
        assert_eq!(last.1 & !0xfff, 0xffe0_0000);
        assert!(last.1 & PTE_PCD != 0, "MMIO hole is uncached");
    }

    #[test]
    fn boot_info_layout() {
        let info = BootInfo {
            cpu_count: 4,
            bsp_apic_id: 0,
            mem_size: 256 << 20,
            cmdline: "variant=all".into(),
            tsc_khz: 2_000_000,
        };
        let b = info.to_bytes();
        assert_eq!(&b[0..4], b"HVTB");
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 4);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            CMDLINE_ADDR
        );
        assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 11);
        assert_eq!(u32::from_le_bytes(b[40..44].try_into().unwrap()), 2_000_000);
        let mem = create_guest_memory(16 << 20).unwrap();
        write_boot_tables(&mem, &info).unwrap();
        let mut cmd = [0u8; 11];
        mem.read_slice(&mut cmd, GuestAddress(CMDLINE_ADDR))
            .unwrap();
        assert_eq!(&cmd, b"variant=all");
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4, PDPT_ADDR | 3);
        let high: u64 = mem.read_obj(GuestAddress(PML4_ADDR + 256 * 8)).unwrap();
        assert_eq!(high, PDPT_ADDR | 3, "the direct map shares the tables");
    }

    #[test]
    fn long_cmdline_is_refused() {
        let mem = create_guest_memory(16 << 20).unwrap();
        let info = BootInfo {
            cpu_count: 1,
            bsp_apic_id: 0,
            mem_size: 16 << 20,
            cmdline: "x".repeat(CMDLINE_MAX + 1),
            tsc_khz: 0,
        };
        assert!(matches!(
            write_boot_tables(&mem, &info),
            Err(VmmError::CmdlineTooLong { .. })
        ));
    }
}
