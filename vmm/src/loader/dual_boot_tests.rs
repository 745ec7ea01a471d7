//! The built-in guests carry both boot protocols: hvtrace boots them through their ELF entry,
//! while their multiboot header's a.out-kludge range (what QEMU's `-kernel` loads) holds the very
//! same bytes at the same addresses.

use vm_memory::{Bytes, GuestAddress};

use super::multiboot::{find_header, load as load_multiboot, FLAG_AOUT_KLUDGE};
use super::*;
use crate::layout::create_guest_memory;

const MEM: u64 = 64 << 20;

#[test]
fn built_in_guests_boot_natively_under_hvtrace() {
    for g in guest::all() {
        let header = find_header(g.image).unwrap().expect(g.name);
        assert!(header.flags & FLAG_AOUT_KLUDGE != 0, "{}", g.name);
        let mem = create_guest_memory(MEM).unwrap();
        let loaded = load_image(&mem, MEM, g.image, &[], "", 0).unwrap();
        assert_eq!(loaded.protocol, BootProtocol::Native, "{}", g.name);
        assert!(
            native_despite_multiboot(g.image, MEM, &header),
            "{}",
            g.name
        );
        let modules = [Module {
            bytes: vec![1],
            args: String::new(),
        }];
        assert_eq!(
            load_image(&mem, MEM, g.image, &modules, "", 0),
            Err(LoadError::ModulesNeedMultiboot),
            "{}",
            g.name
        );
    }
}

#[test]
fn the_kludge_range_holds_what_the_elf_segments_load() {
    for g in guest::all() {
        let header = find_header(g.image).unwrap().unwrap();
        let elf_mem = create_guest_memory(MEM).unwrap();
        let native = elf::load_elf(&elf_mem, MEM, g.image).unwrap();
        let mb_mem = create_guest_memory(MEM).unwrap();
        let mb = load_multiboot(&mb_mem, MEM, g.image, &header, &[], "").unwrap();
        let kludge = header.kludge.as_ref().unwrap();
        assert_eq!(mb.entry, u64::from(kludge.entry_addr));
        assert_ne!(mb.entry, native.entry, "{}", g.name);
        let (start, end) = mb.segments[0];
        for &(s, e) in &native.segments {
            assert!(s >= start && e <= end, "{}: {s:#x}..{e:#x}", g.name);
            let mut a = vec![0u8; (e - s) as usize];
            let mut b = a.clone();
            elf_mem.read_slice(&mut a, GuestAddress(s)).unwrap();
            mb_mem.read_slice(&mut b, GuestAddress(s)).unwrap();
            assert!(a == b, "{}: bytes differ in {s:#x}..{e:#x}", g.name);
        }
    }
}

#[test]
fn an_elf64_whose_entry_is_the_multiboot_entry_boots_as_multiboot() {
    let g = guest::find("hello").unwrap();
    let header = find_header(g.image).unwrap().unwrap();
    let entry = header.kludge.as_ref().unwrap().entry_addr;
    let mut image = g.image.to_vec();
    image[24..32].copy_from_slice(&u64::from(entry).to_le_bytes()); // e_entry
    let mem = create_guest_memory(MEM).unwrap();
    let loaded = load_image(&mem, MEM, &image, &[], "", 0).unwrap();
    assert!(matches!(loaded.protocol, BootProtocol::Multiboot { .. }));
    assert_eq!(loaded.entry, u64::from(entry));
}
