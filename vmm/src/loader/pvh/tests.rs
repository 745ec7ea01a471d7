//! PVH loading against a synthetic vmlinux-like ELF64: a higher-half `PT_LOAD` at 2 MiB and a
//! `PT_NOTE` with the Xen PHYS32 entry note.

use super::*;
use crate::layout::create_guest_memory;
use crate::loader::load_image;
use vm_memory::Bytes;

const MEM: u64 = 64 << 20;
const PADDR: u64 = 0x20_0000;
const VADDR: u64 = 0xffff_ffff_8120_0000;

/// An ELF64 with one `PT_LOAD` (`code` at `PADDR`, linked at `VADDR`) and a `PT_NOTE`
/// holding a Xen note of type `note_type` with a 4-byte `entry`.
fn vmlinux(code: &[u8], note_type: u32, entry: u32) -> Vec<u8> {
    let phoff = 64usize;
    let data = phoff + 2 * 56;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz ("Xen\0")
    note.extend_from_slice(&4u32.to_le_bytes()); // descsz
    note.extend_from_slice(&note_type.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&entry.to_le_bytes());
    let code_off = data + note.len();
    let mut f = vec![0u8; data];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&PADDR.to_le_bytes()); // e_entry: physical, as Linux's
    f[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    let load = phoff;
    f[load..load + 4].copy_from_slice(&1u32.to_le_bytes());
    f[load + 4..load + 8].copy_from_slice(&5u32.to_le_bytes());
    f[load + 8..load + 16].copy_from_slice(&(code_off as u64).to_le_bytes());
    f[load + 16..load + 24].copy_from_slice(&VADDR.to_le_bytes());
    f[load + 24..load + 32].copy_from_slice(&PADDR.to_le_bytes());
    f[load + 32..load + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    f[load + 40..load + 48].copy_from_slice(&(code.len() as u64).to_le_bytes());
    let n = phoff + 56;
    f[n..n + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
    f[n + 8..n + 16].copy_from_slice(&(data as u64).to_le_bytes());
    f[n + 32..n + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
    f[n + 40..n + 48].copy_from_slice(&(note.len() as u64).to_le_bytes());
    f[n + 48..n + 56].copy_from_slice(&4u64.to_le_bytes());
    f.extend_from_slice(&note);
    f.extend_from_slice(code);
    f
}

#[test]
fn the_note_names_the_entry() {
    assert_eq!(
        pvh_entry(&vmlinux(&[0xf4; 16], 18, 0x20_0008)),
        Some(0x20_0008)
    );
    assert_eq!(pvh_entry(&vmlinux(&[0xf4; 16], 17, 0x20_0008)), None);
    assert_eq!(pvh_entry(b"not an elf"), None);
}

#[test]
fn loads_with_start_info_memmap_cmdline_and_module() {
    let mem = create_guest_memory(MEM).unwrap();
    let image = vmlinux(&[0x90; 32], 18, 0x20_0010);
    let module = Module {
        bytes: vec![0xab; 5000],
        args: String::new(),
    };
    let loaded = load_image(&mem, MEM, &image, &[module], "", 0xe_0000).unwrap();
    assert_eq!(loaded.entry, 0x20_0010);
    assert_eq!(
        loaded.protocol,
        BootProtocol::Pvh {
            start_info: PVH_INFO_ADDR
        }
    );
    assert_eq!(
        loaded.mappings,
        vec![Mapping {
            vaddr: VADDR,
            paddr: PADDR,
            len: 32
        }]
    );
    let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_ADDR)).unwrap();
    assert_eq!((info.magic, info.version), (START_MAGIC, 1));
    assert_eq!(info.rsdp_paddr, 0xe_0000);
    assert_eq!(info.cmdline_paddr, PVH_CMDLINE_ADDR);
    let mut cmd = vec![0u8; DEFAULT_CMDLINE.len() + 1];
    mem.read_slice(&mut cmd, GuestAddress(PVH_CMDLINE_ADDR))
        .unwrap();
    assert_eq!(&cmd[..DEFAULT_CMDLINE.len()], DEFAULT_CMDLINE.as_bytes());
    assert_eq!(cmd[DEFAULT_CMDLINE.len()], 0);
    // The memory map is the one multiboot kernels get: RAM below 0x9f000 and from 1 MiB.
    assert_eq!(info.memmap_entries as usize, memory_map(MEM).len());
    let first: hvm_memmap_table_entry = mem.read_obj(GuestAddress(info.memmap_paddr)).unwrap();
    assert_eq!((first.addr, first.size, first.type_), (0, 0x9_f000, 1));
    let third: hvm_memmap_table_entry = mem.read_obj(GuestAddress(info.memmap_paddr + 48)).unwrap();
    assert_eq!(
        (third.addr, third.size, third.type_),
        (0x10_0000, MEM - 0x10_0000, 1)
    );
    // The module: page-aligned at the top of RAM.
    assert_eq!(info.nr_modules, 1);
    let m: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
    assert_eq!((m.paddr, m.size), (MEM - 0x2000, 5000));
    assert_eq!(
        mem.read_obj::<u8>(GuestAddress(m.paddr + 4999)).unwrap(),
        0xab
    );
    assert_eq!(mem.read_obj::<u8>(GuestAddress(PADDR)).unwrap(), 0x90);
}

#[test]
fn refuses_what_does_not_fit() {
    let mem = create_guest_memory(MEM).unwrap();
    let image = vmlinux(&[0x90; 32], 18, 0x20_0010);
    let long = "x".repeat(PVH_CMDLINE_MAX);
    assert!(matches!(
        load_image(&mem, MEM, &image, &[], &long, 0),
        Err(LoadError::CmdlineTooLong { .. })
    ));
    let huge = Module {
        bytes: vec![0; MEM as usize],
        args: String::new(),
    };
    assert!(matches!(
        load_image(&mem, MEM, &image, &[huge], "x", 0),
        Err(LoadError::ModuleDoesNotFit { index: 0, .. })
    ));
    let bad_entry = vmlinux(&[0x90; 32], 18, 0x90_0000);
    assert_eq!(
        load_image(&mem, MEM, &bad_entry, &[], "x", 0),
        Err(LoadError::BadEntry(0x90_0000))
    );
}
