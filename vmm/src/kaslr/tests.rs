//! `find_slide` against hand-built guest state: 4-level page tables that map the kernel's
//! high addresses with 2 MiB pages, an IDT with one gate, `MSR_LSTAR`.

use super::*;
use vm_memory::{Bytes, GuestAddress};

const MEM: u64 = 64 << 20;
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
/// Link addresses (as in a vmlinux: text at `KERNEL_MAP` + 16 MiB).
const TEXT: u64 = KERNEL_MAP + 0x100_0000;
const IDT_TABLE: u64 = TEXT + 0x20_0000;
const EARLY_HANDLERS: u64 = TEXT + 0x1000;
const ENTRY_SYSCALL: u64 = TEXT + 0x2000;

fn anchors() -> Anchors {
    Anchors {
        entry_syscall_64: ENTRY_SYSCALL,
        idt_table: IDT_TABLE,
        divide_error: vec![EARLY_HANDLERS],
        segments: vec![(TEXT, 0x40_0000)],
    }
}

/// Guest memory whose page tables map `KERNEL_MAP + va_off` .. (+ 16 MiB) to `phys` with
/// 2 MiB pages, the IDT at `idt_table + slide` with gate 0 pointing at `handler`.
fn guest(slide: u64, phys: u64, handler: u64) -> (GuestMemoryMmap, kvm_sregs) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let w = |addr: u64, v: u64| mem.write_obj(v, GuestAddress(addr)).unwrap();
    w(PML4 + 511 * 8, PDPT | 3);
    w(PDPT + 510 * 8, PD | 3);
    // Kernel text (TEXT + slide) maps to `phys`.
    let first = (TEXT + slide - KERNEL_MAP) >> 21;
    for i in 0..8 {
        w(PD + (first + i) * 8, (phys + (i << 21)) | 0x83);
    }
    let idt = IDT_TABLE + slide;
    let idt_phys = phys + (idt - (TEXT + slide));
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    gate[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    gate[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    mem.write_slice(&gate, GuestAddress(idt_phys)).unwrap();
    let mut sregs = kvm_sregs {
        cr0: 1 << 31 | 1,
        cr4: 1 << 5,
        efer: 1 << 10 | 1 << 8,
        cr3: PML4,
        ..Default::default()
    };
    sregs.idt.base = idt;
    (mem, sregs)
}

#[test]
fn the_idt_and_its_gate_give_the_slide_and_the_page_tables_the_place() {
    let slide = 0x1e0_0000;
    let (mem, sregs) = guest(slide, 0x200_0000, EARLY_HANDLERS + slide);
    let found = find_slide(&anchors(), &sregs, 0, &mem).unwrap().unwrap();
    assert_eq!(found.virt, slide);
    assert!(!found.lstar_checked);
    assert_eq!(
        found.mappings,
        vec![Mapping {
            vaddr: TEXT + slide,
            paddr: 0x200_0000,
            len: 0x40_0000
        }]
    );
    // MSR_LSTAR agrees: confirmed.
    let found = find_slide(&anchors(), &sregs, ENTRY_SYSCALL + slide, &mem)
        .unwrap()
        .unwrap();
    assert!(found.lstar_checked);
}

#[test]
fn nokaslr_is_slide_zero() {
    let (mem, sregs) = guest(0, 0x100_0000, EARLY_HANDLERS);
    let found = find_slide(&anchors(), &sregs, ENTRY_SYSCALL, &mem)
        .unwrap()
        .unwrap();
    assert_eq!((found.virt, found.physical_base()), (0, Some(0x100_0000)));
}

#[test]
fn not_yet_while_the_evidence_is_not_there() {
    let slide = 0x40_0000;
    // A gate that points elsewhere (the IDT is being set up): not yet.
    let (mem, sregs) = guest(slide, 0x200_0000, EARLY_HANDLERS + slide + 0x10);
    assert_eq!(find_slide(&anchors(), &sregs, 0, &mem), Ok(None));
    // The decompressor: paging identity, IDT low.
    let (mem, mut sregs) = guest(slide, 0x200_0000, EARLY_HANDLERS + slide);
    sregs.idt.base = 0x5000;
    assert_eq!(find_slide(&anchors(), &sregs, 0, &mem), Ok(None));
    // An IDT base that is not idt_table at a 2 MiB slide.
    sregs.idt.base = IDT_TABLE + slide + 0x40;
    assert_eq!(find_slide(&anchors(), &sregs, 0, &mem), Ok(None));
    // Paging off.
    sregs.cr0 = 1;
    assert_eq!(find_slide(&anchors(), &sregs, 0, &mem), Ok(None));
}

#[test]
fn lstar_that_disagrees_is_an_error() {
    let slide = 0x40_0000;
    let (mem, sregs) = guest(slide, 0x200_0000, EARLY_HANDLERS + slide);
    let e = find_slide(&anchors(), &sregs, ENTRY_SYSCALL + 0x20_0000, &mem).unwrap_err();
    assert!(
        matches!(
            e,
            KaslrError::Disagree {
                idt: 0x40_0000,
                from_lstar: 0x20_0000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn an_unmapped_segment_is_an_error() {
    let slide = 0x40_0000;
    let (mem, sregs) = guest(slide, 0x200_0000, EARLY_HANDLERS + slide);
    let mut a = anchors();
    a.segments.push((TEXT + 0x1000_0000, 0x1000));
    let e = find_slide(&a, &sregs, 0, &mem).unwrap_err();
    assert!(matches!(e, KaslrError::Unmapped { .. }), "{e}");
}
