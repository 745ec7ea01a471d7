//! Guest-physical memory layout and the creation of guest RAM.
//!
//! ```text
//! 0x0000_0500  GDT (null, 64-bit code 0x08, data 0x10, TSS 0x18); a bzImage's at 0x540
//!              (null, null, code 0x10, data 0x18, TSS 0x20)
//! 0x0000_1000  boot-info block (RDI at entry), command line at 0x1100
//! 0x0000_2000  PML4, 0x3000 PDPT, 0x4000..0x7fff four page directories (identity map, 4 GiB)
//! 0x0000_8000  free for the guest (real-mode trampolines go here) .. 0x9_f000
//! 0x0009_f000  PVH kernels: hvm_start_info, memory map 0x9_f040, modules 0x9_f200,
//!              command line 0x9_f400 (2 KiB)
//! 0x0009_fc00  Intel MP table (floating pointer + configuration table)
//! 0x000e_0000  ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) for PVH kernels
//! 0x0010_0000  guest image (ELF segments) and the rest of RAM
//! 0xc000_0000  32-bit MMIO hole up to 4 GiB (IOAPIC 0xfec0_0000, local APIC 0xfee0_0000)
//! ```

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::error::VmmError;

/// Address of the GDT.
pub const GDT_ADDR: u64 = 0x500;
/// Address of the GDT a bzImage's 64-bit entry gets (`crate::boot::linux_gdt`), after the VMM's.
pub const LINUX_GDT_ADDR: u64 = 0x540;
/// Address of the boot-info block passed in RDI.
pub const BOOT_INFO_ADDR: u64 = 0x1000;
/// Address of the command line (inside the boot-info page).
pub const CMDLINE_ADDR: u64 = 0x1100;
/// Longest command line that fits in the boot-info page.
pub const CMDLINE_MAX: usize = 0x1000 - 0x100;
/// Address of the PML4 (loaded into CR3).
pub const PML4_ADDR: u64 = 0x2000;
/// Address of the page-directory-pointer table.
pub const PDPT_ADDR: u64 = 0x3000;
/// Address of the first of the four page directories.
pub const PD_ADDR: u64 = 0x4000;
/// Start of the low memory the guest may use.
pub const GUEST_LOW_START: u64 = 0x8000;
/// Address of the MP floating pointer structure.
pub const MPTABLE_ADDR: u64 = 0x9_fc00;
/// Start of the low region reserved for the VMM's tables and the legacy BIOS area.
pub const LOW_RESERVED_START: u64 = 0x9_f000;
/// A PVH kernel's `hvm_start_info` (56 bytes).
pub const PVH_INFO_ADDR: u64 = 0x9_f000;
/// A PVH kernel's memory map (24-byte entries).
pub const PVH_MEMMAP_ADDR: u64 = 0x9_f040;
/// Most memory-map entries that fit before the module list.
pub const PVH_MEMMAP_MAX: usize = ((PVH_MODLIST_ADDR - PVH_MEMMAP_ADDR) / 24) as usize;
/// A PVH kernel's module list (32-byte entries).
pub const PVH_MODLIST_ADDR: u64 = 0x9_f200;
/// A PVH kernel's command line.
pub const PVH_CMDLINE_ADDR: u64 = 0x9_f400;
/// Longest PVH command line with its NUL (Linux's `COMMAND_LINE_SIZE`), up to the MP table.
pub const PVH_CMDLINE_MAX: usize = (MPTABLE_ADDR - PVH_CMDLINE_ADDR) as usize;
/// ACPI tables (RSDP first), in the legacy BIOS area where Linux also looks for an RSDP.
pub const ACPI_ADDR: u64 = 0xe_0000;
/// Room for the ACPI tables.
pub const ACPI_MAX: u64 = 0x1_0000;
/// Where guest images are linked (1 MiB).
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole (4 GiB).
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// Default local APIC base.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Default IOAPIC base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Smallest RAM size accepted.
pub const MIN_MEM: u64 = 16 << 20;
/// Largest RAM size accepted.
pub const MAX_MEM: u64 = 64 << 30;
/// Where KVM's real-mode TSS goes (three pages, inside the MMIO hole).
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// Where KVM's identity-map page goes (just below the TSS).
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// Ranges of guest-physical memory the VMM writes and a guest image must not overlap.
pub const VMM_RESERVED: [(u64, u64, &str); 2] = [
    (
        0,
        GUEST_LOW_START,
        "the VMM's GDT, boot info and page tables",
    ),
    (
        LOW_RESERVED_START,
        HIMEM_START,
        "the MP table and legacy BIOS area",
    ),
];

// The VMM's tables must not overlap each other (checked at compile time).
const _: () = {
    assert!(GDT_ADDR + 0x20 <= BOOT_INFO_ADDR);
    assert!(CMDLINE_ADDR + CMDLINE_MAX as u64 <= PML4_ADDR);
    assert!(PD_ADDR + 4 * 0x1000 <= GUEST_LOW_START);
    assert!(MPTABLE_ADDR >= LOW_RESERVED_START);
    assert!(PVH_INFO_ADDR >= LOW_RESERVED_START && PVH_INFO_ADDR + 56 <= PVH_MEMMAP_ADDR);
    assert!(PVH_MODLIST_ADDR + 8 * 32 <= PVH_CMDLINE_ADDR);
    assert!(PVH_CMDLINE_MAX == 2048);
    assert!(ACPI_ADDR >= MPTABLE_ADDR + 0x400 && ACPI_ADDR + ACPI_MAX <= HIMEM_START);
};

/// The RAM regions for `mem` bytes: below the MMIO hole and, past 3 GiB, above 4 GiB.
pub fn ram_regions(mem: u64) -> Vec<(GuestAddress, usize)> {
    let low = mem.min(MMIO_HOLE_START);
    let mut regions = vec![(GuestAddress(0), low as usize)];
    if mem > low {
        regions.push((GuestAddress(MMIO_HOLE_END), (mem - low) as usize));
    }
    regions
}

/// Checks `mem` and maps guest RAM.
pub fn create_guest_memory(mem: u64) -> Result<GuestMemoryMmap, VmmError> {
    if !(MIN_MEM..=MAX_MEM).contains(&mem) {
        return Err(VmmError::MemSize {
            bytes: mem,
            min: MIN_MEM,
            max: MAX_MEM,
        });
    }
    GuestMemoryMmap::from_ranges(&ram_regions(mem)).map_err(VmmError::GuestMemory)
}

/// Whether `[start, end)` lies in RAM for a guest of `mem` bytes.
pub fn in_ram(mem: u64, start: u64, end: u64) -> bool {
    ram_regions(mem).iter().any(|(base, len)| {
        let base = base.0;
        start >= base && end <= base + *len as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_region() {
        assert_eq!(ram_regions(256 << 20), vec![(GuestAddress(0), 256 << 20)]);
    }

    #[test]
    fn large_memory_skips_the_mmio_hole() {
        let r = ram_regions(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), 0xc000_0000));
        assert_eq!(r[1], (GuestAddress(0x1_0000_0000), 1 << 30));
    }

    #[test]
    fn in_ram_respects_the_hole() {
        let mem = 4 << 30;
        assert!(in_ram(mem, 0x10_0000, 0x20_0000));
        assert!(!in_ram(mem, LAPIC_BASE, LAPIC_BASE + 0x1000));
        assert!(in_ram(mem, 0x1_0000_0000, 0x1_0000_1000));
        assert!(!in_ram(256 << 20, 255 << 20, 257 << 20));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(
            create_guest_memory(1 << 20),
            Err(VmmError::MemSize { .. })
        ));
        assert!(matches!(
            create_guest_memory(MAX_MEM + 1),
            Err(VmmError::MemSize { .. })
        ));
    }
}
