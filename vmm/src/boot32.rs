//! The entry state of a multiboot kernel, as the Multiboot (version 1) specification gives it,
//! and of a PVH kernel (the same machine state, EBX = `hvm_start_info`, EAX = 0).
//!
//! The bootstrap processor starts at the kernel's entry in 32-bit protected mode: CS a flat
//! 32-bit code segment (base 0, limit 4 GiB, selector 0x08), DS/ES/FS/GS/SS a flat data
//! segment (selector 0x10), paging off, interrupts off (EFLAGS = 0x2), A20 on (always, under
//! KVM), EAX = 0x2BADB002, EBX = the physical address of the multiboot information structure.
//! The VMM's GDT at [`GDT_ADDR`] holds those descriptors so that reloading a selector works,
//! but a kernel must, as the spec says, load its own GDT before relying on one. No IDT.

use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::boot::{gdt_entry, segment_from_gdt, CODE_SELECTOR, DATA_SELECTOR, TSS_SELECTOR};
use crate::error::VmmError;
use crate::layout::GDT_ADDR;
use crate::loader::mbi::BOOTLOADER_MAGIC;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;

/// The GDT of a multiboot entry: null, flat 32-bit code, flat data, TSS.
pub fn gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(0xc09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

/// Writes the 32-bit GDT at [`GDT_ADDR`] (in place of the 64-bit one).
pub fn write_gdt(memory: &GuestMemoryMmap) -> Result<(), VmmError> {
    let bytes: Vec<u8> = gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    memory
        .write_slice(&bytes, GuestAddress(GDT_ADDR))
        .map_err(|source| VmmError::GuestWrite {
            what: "the multiboot GDT",
            source,
        })
}

/// Sets `sregs` for 32-bit protected mode with flat segments, paging off.
pub fn protected_mode_sregs(sregs: &mut kvm_sregs) {
    let gdt = gdt();
    let data = segment_from_gdt(gdt[2], DATA_SELECTOR);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = segment_from_gdt(gdt[1], CODE_SELECTOR);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(gdt[3], TSS_SELECTOR);
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
}

/// General registers at a multiboot entry point, with the MBI at `mbi`.
pub fn entry_regs(entry: u64, mbi: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rax: u64::from(BOOTLOADER_MAGIC),
        rbx: mbi,
        rflags: 0x2,
        ..Default::default()
    }
}

/// General registers at a PVH entry point: EBX = the `hvm_start_info` at `start_info`,
/// everything else zero (Xen's PVH ABI).
pub fn pvh_entry_regs(entry: u64, start_info: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rbx: start_info,
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_flat_32_bit() {
        let mut sregs = kvm_sregs::default();
        protected_mode_sregs(&mut sregs);
        let cs = sregs.cs;
        assert_eq!(
            (cs.l, cs.db, cs.base, cs.limit, cs.type_),
            (0, 1, 0, 0xffff_ffff, 0xb)
        );
        assert_eq!((sregs.ss.db, sregs.ss.limit), (1, 0xffff_ffff));
        assert_eq!(sregs.cr0 & (1 << 31), 0, "paging off");
        assert_eq!(gdt()[1], 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn registers_carry_the_magic_and_the_mbi() {
        let r = entry_regs(0x10_0020, 0x10_2000);
        assert_eq!(
            (r.rax, r.rbx, r.rip, r.rflags),
            (0x2bad_b002, 0x10_2000, 0x10_0020, 2)
        );
    }
}
