//! Unit tests of the multiboot loader: headers crafted byte by byte.

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::layout::create_guest_memory;
use crate::loader::load_image;

const MEM: u64 = 64 << 20;

/// A multiboot header with `flags` and, when bit 16 is set, the kludge `addrs`.
fn header(flags: u32, addrs: [u32; 5]) -> Vec<u8> {
    let mut h = Vec::new();
    for v in [
        HEADER_MAGIC,
        flags,
        0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags),
    ] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    if flags & FLAG_AOUT_KLUDGE != 0 {
        for v in addrs {
            h.extend_from_slice(&v.to_le_bytes());
        }
    }
    h
}

/// A flat a.out-kludge kernel loaded at 1 MiB: header first, then `code`; 0x100 bytes of bss.
fn kludge_kernel(code: &[u8]) -> Vec<u8> {
    let load = 0x10_0000;
    let mut image = header(
        FLAG_AOUT_KLUDGE | 3,
        [
            load,
            load,
            load + 32 + code.len() as u32,
            load + 0x200,
            load + 32,
        ],
    );
    image.extend_from_slice(code);
    image
}

/// Loads `image` into a fresh guest; a range or ELF error is unwrapped from
/// [`LoadError::InMultiboot`] (whose message is checked once, here).
fn load(image: &[u8]) -> Result<LoadedImage, LoadError> {
    let mem = create_guest_memory(MEM).unwrap();
    load_image(&mem, MEM, image, &[], "", 0).map_err(|e| {
        let message = e.to_string();
        match e {
            LoadError::InMultiboot { source, .. } => {
                assert!(message.starts_with("multiboot kernel ("), "{message}");
                *source
            }
            other => other,
        }
    })
}

/// Rewrites the kludge field `i` (0 = header_addr .. 4 = entry_addr) of a kernel from
/// [`kludge_kernel`].
fn with_field(mut image: Vec<u8>, i: usize, v: u32) -> Vec<u8> {
    image[12 + 4 * i..16 + 4 * i].copy_from_slice(&v.to_le_bytes());
    image
}

#[test]
fn loads_an_aout_kludge_kernel_with_modules_and_mbi() {
    let mem = create_guest_memory(MEM).unwrap();
    mem.write_slice(&[0xaa; 0x100], GuestAddress(0x10_0100))
        .unwrap();
    let image = kludge_kernel(&[0xf4, 0x90, 0x90]);
    let modules = [Module {
        bytes: b"module bytes".to_vec(),
        args: "m=1".into(),
    }];
    let loaded = load_image(&mem, MEM, &image, &modules, "x=y", 0).unwrap();
    assert_eq!(loaded.entry, 0x10_0020);
    assert_eq!(loaded.segments, vec![(0x10_0000, 0x10_0200)]);
    assert_eq!(loaded.protocol, BootProtocol::Multiboot { mbi: 0x10_2000 });
    assert!(loaded.warnings.is_empty());
    let mut text = [0u8; 3];
    mem.read_slice(&mut text, GuestAddress(0x10_0020)).unwrap();
    assert_eq!(text, [0xf4, 0x90, 0x90]);
    let bss: u8 = mem.read_obj(GuestAddress(0x10_01ff)).unwrap();
    assert_eq!(bss, 0, "bss is zeroed");
    let mut m = [0u8; 12];
    mem.read_slice(&mut m, GuestAddress(0x10_1000)).unwrap();
    assert_eq!(&m, b"module bytes");
    let flags: u32 = mem.read_obj(GuestAddress(0x10_2000)).unwrap();
    assert_eq!(flags, mbi::MBI_FLAGS);
}

#[test]
fn header_is_found_anywhere_aligned_in_the_first_8_kib() {
    let mut image = vec![0u8; 0x1ff0];
    image.extend_from_slice(&header(3, [0; 5]));
    let h = find_header(&image).unwrap().unwrap();
    assert_eq!((h.offset, h.flags, h.kludge), (0x1ff0, 3, None));
    let mut late = vec![0u8; SEARCH_LEN];
    late.extend_from_slice(&header(3, [0; 5]));
    assert_eq!(find_header(&late), Ok(None));
    let mut unaligned = vec![0u8; 2];
    unaligned.extend_from_slice(&header(3, [0; 5]));
    assert_eq!(find_header(&unaligned), Ok(None));
}

#[test]
fn bad_checksum_is_named() {
    let mut image = kludge_kernel(&[0x90]);
    image[8] ^= 1;
    let err = load(&image).unwrap_err();
    assert!(matches!(
        err,
        LoadError::Multiboot(MultibootError::BadChecksum { offset: 0, .. })
    ));
    assert!(err.to_string().contains("bad checksum"), "{err}");
}

#[test]
fn an_elf64_with_a_stray_magic_is_not_multiboot() {
    let mut image = b"\x7fELF\x02\x01\x01".to_vec();
    image.resize(64, 0);
    image.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
    image.extend_from_slice(&[0; 8]);
    assert_eq!(find_header(&image), Ok(None));
}

#[test]
fn unknown_required_flags_are_refused() {
    let image = header(1 << 5 | 3, [0; 5]);
    assert_eq!(
        load(&image),
        Err(MultibootError::UnsupportedFlags {
            flags: 0x23,
            bits: 0x20
        }
        .into())
    );
    // Bits 17-31 are optional: ignored.
    let mut image = kludge_kernel(&[0x90]);
    let flags = FLAG_AOUT_KLUDGE | 3 | 1 << 20;
    image[4..8].copy_from_slice(&flags.to_le_bytes());
    let sum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags);
    image[8..12].copy_from_slice(&sum.to_le_bytes());
    assert!(load(&image).is_ok());
}

#[test]
fn a_video_mode_request_is_a_warning() {
    let mut image = kludge_kernel(&[0x90]);
    let flags = FLAG_AOUT_KLUDGE | FLAG_VIDEO;
    image[4..8].copy_from_slice(&flags.to_le_bytes());
    let sum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags);
    image[8..12].copy_from_slice(&sum.to_le_bytes());
    let loaded = load(&image).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("video mode"));
}

#[test]
fn truncated_headers_are_named() {
    let mut image = vec![0u8; 8];
    image.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
    image.extend_from_slice(&[0; 4]);
    assert!(matches!(
        load(&image),
        Err(LoadError::Multiboot(MultibootError::TruncatedHeader {
            need: 12,
            ..
        }))
    ));
    let image = kludge_kernel(&[]);
    assert!(matches!(
        load(&image[..20]),
        Err(LoadError::Multiboot(MultibootError::TruncatedHeader {
            need: 32,
            ..
        }))
    ));
}

#[test]
fn bad_kludge_addresses_are_named() {
    let base = kludge_kernel(&[0x90; 16]);
    let cases: [(usize, u32, &str); 6] = [
        (1, 0x10_0004, "above header_addr"),
        (1, 0x0f_0000, "before the file"),
        (2, 0x0f_0000, "below load_addr"),
        (2, 0x10_1000, "truncated"),
        (3, 0x10_0010, "bss_end_addr"),
        (4, 0x20_0000, "entry_addr"),
    ];
    for (field, value, needle) in cases {
        let err = load(&with_field(base.clone(), field, value)).unwrap_err();
        assert!(matches!(err, LoadError::Multiboot(_)), "{needle}: {err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn kludge_ranges_must_be_in_ram_and_clear_of_vmm_tables() {
    let image = kludge_kernel(&[0x90; 16]);
    let moved = |at: u32| {
        let mut i = image.clone();
        for (f, v) in [
            (0, at),
            (1, at),
            (2, at + 48),
            (3, at + 0x200),
            (4, at + 32),
        ] {
            i = with_field(i, f, v);
        }
        i
    };
    assert!(matches!(
        load(&moved(0x1000)),
        Err(LoadError::Reserved { .. })
    ));
    assert!(matches!(
        load(&moved(0x9_f800)),
        Err(LoadError::Reserved { .. })
    ));
    assert!(matches!(
        load(&moved(0x8000_0000)),
        Err(LoadError::OutsideRam { .. })
    ));
    assert!(
        load(&moved(0x8000)).is_ok(),
        "the guest's low memory is fine"
    );
}

#[test]
fn without_the_kludge_the_file_must_be_elf32() {
    let image = header(3, [0; 5]);
    assert_eq!(load(&image), Err(MultibootError::NoLayout.into()));
    let mut elf64 = b"\x7fELF\x02\x01\x01".to_vec();
    elf64.resize(64, 0);
    elf64.extend_from_slice(&header(3, [0; 5]));
    assert_eq!(load(&elf64), Err(MultibootError::Elf64WithoutKludge.into()));
}

/// A minimal ELF32 i386 executable: one PT_LOAD of `code` at `paddr` (virtual `vaddr`), the
/// multiboot header at the start of the code.
fn elf32(paddr: u32, vaddr: u32, code: &[u8], entry: u32) -> Vec<u8> {
    let mut f = vec![0u8; 52 + 32];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 1; // 32-bit
    f[5] = 1; // little endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..28].copy_from_slice(&entry.to_le_bytes());
    f[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
    f[40..42].copy_from_slice(&52u16.to_le_bytes()); // e_ehsize
    f[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
    f[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 52;
    let mut body = header(3, [0; 5]);
    body.extend_from_slice(code);
    let fields = [
        1,
        84,
        vaddr,
        paddr,
        body.len() as u32,
        body.len() as u32 + 64,
        5,
        4,
    ];
    for (i, v) in fields.iter().enumerate() {
        f[ph + 4 * i..ph + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(&body);
    f
}

#[test]
fn loads_an_elf32_kernel_translating_a_virtual_entry() {
    let image = elf32(0x20_0000, 0x20_0000, &[0xf4], 0x20_000c);
    let loaded = load(&image).unwrap();
    assert_eq!(loaded.entry, 0x20_000c);
    assert_eq!(loaded.segments, vec![(0x20_0000, 0x20_0000 + 13 + 64)]);
    let higher_half = elf32(0x20_0000, 0xc020_0000, &[0xf4], 0xc020_000c);
    assert_eq!(load(&higher_half).unwrap().entry, 0x20_000c);
    let nowhere = elf32(0x20_0000, 0x20_0000, &[0xf4], 0x30_0000);
    assert_eq!(load(&nowhere), Err(LoadError::BadEntry(0x30_0000)));
    let mut x86_64 = image.clone();
    x86_64[18] = 62;
    assert!(matches!(load(&x86_64), Err(LoadError::Unsupported(_))));
}

#[test]
fn modules_need_a_multiboot_kernel() {
    let mem = create_guest_memory(MEM).unwrap();
    let native = guest::find("hello").unwrap().image;
    let module = Module {
        bytes: vec![1],
        args: String::new(),
    };
    assert_eq!(
        load_image(&mem, MEM, native, &[module], "", 0),
        Err(LoadError::ModulesNeedMultiboot)
    );
}
