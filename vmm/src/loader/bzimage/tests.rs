//! bzImage loading against a synthetic image: setup header, zero page, command line, initrd,
//! GDT, entry; unsupported headers refused with their reason.

use super::*;
use crate::layout::create_guest_memory;
use crate::loader::load_image;
use vm_memory::Bytes;

const MEM: u64 = 128 << 20;

/// A bzImage-shaped file: 1 setup sector, protocol `version`, `xloadflags`, a 4 KiB
/// protected-mode part of 0xf4 bytes.
fn bzimage(version: u16, xloadflags: u16) -> Vec<u8> {
    let mut b = vec![0u8; 1024];
    b[0x1f1] = 1;
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x201] = 0x6a; // jump offset: header ends at 0x26c
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    b[0x211] = LOADED_HIGH;
    b[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    b[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
    b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    b[0x260..0x264].copy_from_slice(&0x200_0000u32.to_le_bytes());
    b.extend_from_slice(&[0xf4; 4096]);
    b
}

fn u32_at(mem: &GuestMemoryMmap, addr: u64) -> u32 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

#[test]
fn loads_the_kernel_and_fills_the_zero_page() {
    let mem = create_guest_memory(MEM).unwrap();
    let initrd = Module {
        bytes: vec![0xab; 5000],
        args: String::new(),
    };
    let loaded = load_image(&mem, MEM, &bzimage(0x020f, 0x7f), &[initrd], "", 0xe_0000).unwrap();
    assert_eq!(loaded.entry, 0x10_0200);
    assert_eq!(
        loaded.protocol,
        BootProtocol::Linux64 {
            boot_params: ZERO_PAGE_ADDR
        }
    );
    let mut byte = [0u8];
    mem.read_slice(&mut byte, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(byte[0], 0xf4, "protected-mode code at code32_start");
    let zp = ZERO_PAGE_ADDR;
    assert_eq!(u32_at(&mem, zp + 0x202), u32::from_le_bytes(*b"HdrS"));
    let mut tol = [0u8; 2];
    mem.read_slice(&mut tol, GuestAddress(zp + 0x210)).unwrap();
    assert_eq!(tol, [LOADER_UNDEFINED, LOADED_HIGH]);
    // The default command line, NUL-terminated, where cmd_line_ptr says.
    assert_eq!(u32_at(&mem, zp + 0x228), PVH_CMDLINE_ADDR as u32);
    let want = crate::loader::pvh::DEFAULT_CMDLINE;
    let mut text = vec![0u8; want.len() + 1];
    mem.read_slice(&mut text, GuestAddress(PVH_CMDLINE_ADDR))
        .unwrap();
    assert_eq!(&text[..want.len()], want.as_bytes());
    assert_eq!(text[want.len()], 0);
    // The initrd: page-aligned, above pref_address + init_size, its bytes in place.
    let (at, size) = (u32_at(&mem, zp + 0x218), u32_at(&mem, zp + 0x21c));
    assert_eq!(size, 5000);
    assert_eq!(at % 0x1000, 0);
    assert!(u64::from(at) >= 0x300_0000 && u64::from(at) + 5000 <= MEM);
    mem.read_slice(&mut byte, GuestAddress(u64::from(at)))
        .unwrap();
    assert_eq!(byte[0], 0xab);
    // The e820 map is the one every Linux guest gets; the RSDP is passed on.
    let map = memory_map(MEM);
    let mut n = [0u8];
    mem.read_slice(&mut n, GuestAddress(zp + 0x1e8)).unwrap();
    assert_eq!(usize::from(n[0]), map.len());
    for (i, &(addr, size, type_)) in map.iter().enumerate() {
        let e = zp + 0x2d0 + 20 * i as u64;
        let got: (u64, u64, u32) = (
            mem.read_obj(GuestAddress(e)).unwrap(),
            mem.read_obj(GuestAddress(e + 8)).unwrap(),
            mem.read_obj(GuestAddress(e + 16)).unwrap(),
        );
        assert_eq!(got, (addr, size, type_), "e820 entry {i}");
    }
    let rsdp: u64 = mem.read_obj(GuestAddress(zp + 0x70)).unwrap();
    assert_eq!(rsdp, 0xe_0000);
    // The boot protocol's GDT: __BOOT_CS at 0x10, __BOOT_DS at 0x18.
    let cs: u64 = mem.read_obj(GuestAddress(LINUX_GDT_ADDR + 0x10)).unwrap();
    assert_eq!(cs, crate::boot::gdt()[1]);
}

#[test]
fn unsupported_headers_are_named() {
    let mem = create_guest_memory(MEM).unwrap();
    let old = load_image(&mem, MEM, &bzimage(0x020b, 0), &[], "", 0).unwrap_err();
    assert!(old.to_string().contains("2.11"), "{old}");
    assert!(old.to_string().contains("64-bit entry"), "{old}");
    let not64 = load_image(&mem, MEM, &bzimage(0x020f, 0), &[], "", 0).unwrap_err();
    assert!(not64.to_string().contains("XLF_KERNEL_64"), "{not64}");
}

#[test]
fn limits_are_checked_before_writing() {
    let image = bzimage(0x020f, 1);
    let small = 32 << 20;
    let mem = create_guest_memory(small).unwrap();
    let e = load_image(&mem, small, &image, &[], "", 0).unwrap_err();
    assert!(matches!(e, LoadError::OutsideRam { .. }), "{e}");
    let mem = create_guest_memory(MEM).unwrap();
    let long = "x".repeat(3000);
    let e = load_image(&mem, MEM, &image, &[], &long, 0).unwrap_err();
    assert!(matches!(e, LoadError::CmdlineTooLong { .. }), "{e}");
    let two = vec![
        Module {
            bytes: vec![1],
            args: String::new()
        };
        2
    ];
    let e = load_image(&mem, MEM, &image, &two, "", 0).unwrap_err();
    assert!(matches!(e, LoadError::TooManyModules { max: 1, .. }), "{e}");
}
