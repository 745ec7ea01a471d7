//! The kallsyms decoder against the real Debian kernel that `scripts/fetch-linux-guest.sh`
//! fetches (skipped loudly where it has not been fetched). Every expectation comes from the
//! image itself, independently of the decoder: its ELF headers (entry point, segments,
//! sections) and the kernel's own export table (`__ksymtab`, `__ksymtab_gpl`), whose entries
//! hold each exported symbol's address and name as 32-bit place-relative offsets.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use object::{Object, ObjectSection, ObjectSegment};
use tests::linux::linux_guest_or_skip;
use tracer::symbols::kallsyms::{AddressMode, KallSym, Kallsyms};
use tracer::symbols::{ElfSymbols, SymbolSource};

/// The image and its decoded kallsyms, once per test binary.
fn kernel(test: &str) -> Option<&'static (Vec<u8>, Kallsyms)> {
    static KERNEL: OnceLock<Option<(Vec<u8>, Kallsyms)>> = OnceLock::new();
    let path = linux_guest_or_skip(test, "vmlinux")?;
    KERNEL
        .get_or_init(|| {
            let image = std::fs::read(&path).expect("read vmlinux");
            let start = Instant::now();
            let k = Kallsyms::from_elf(&image).expect("kallsyms of the Debian kernel");
            eprintln!(
                "kallsyms: {} symbols decoded in {:.1} ms from {} ({} bytes)",
                k.symbols().len(),
                start.elapsed().as_secs_f64() * 1e3,
                path.display(),
                image.len()
            );
            Some((image, k))
        })
        .as_ref()
}

fn elf(image: &[u8]) -> object::File<'_> {
    object::File::parse(image).expect("vmlinux is ELF")
}

#[test]
fn finds_the_tables_inside_rodata() {
    let Some((image, k)) = kernel("finds_the_tables_inside_rodata") else {
        return;
    };
    let file = elf(image);
    let rodata = file.section_by_name(".rodata").expect(".rodata");
    let inside = |a: u64| a >= rodata.address() && a < rodata.address() + rodata.size();
    let l = k.layout();
    for (what, at) in [
        ("num_syms", l.num_syms_at),
        ("names", l.names),
        ("markers", l.markers),
        ("token_table", l.token_table),
        ("token_index", l.token_index),
        ("offsets", l.offsets),
    ] {
        assert!(inside(at), "{what} at {at:#x} outside .rodata");
    }
    assert!(k.symbols().len() > 50_000, "{} symbols", k.symbols().len());
    // x86-64 SMP 6.12: base-relative offsets with absolute per-CPU symbols, 6.4+ order.
    assert_eq!(l.mode, AddressMode::RelativeAbsolutePercpu);
    assert!(
        l.token_index < l.offsets,
        "6.4+ order: offsets after the index"
    );
    assert!(l.seqs_of_names.is_some(), "6.2+ has kallsyms_seqs_of_names");
    let text = file.section_by_name(".text").expect(".text");
    assert_eq!(l.relative_base, text.address(), "relative base is _text");
}

#[test]
fn every_text_symbol_lies_in_an_executable_segment() {
    let Some((image, k)) = kernel("every_text_symbol_lies_in_an_executable_segment") else {
        return;
    };
    let file = elf(image);
    let exec: Vec<(u64, u64)> = file
        .segments()
        .filter(|s| matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0))
        .map(|s| (s.address(), s.address() + s.size()))
        .collect();
    assert!(!exec.is_empty());
    let text: Vec<&KallSym> = k
        .symbols()
        .iter()
        .filter(|s| matches!(s.kind, 't' | 'T'))
        .collect();
    assert!(text.len() > 40_000, "{} text symbols", text.len());
    // `<=`: end markers such as `_etext` may sit exactly at a segment's end.
    let outside: Vec<_> = text
        .iter()
        .filter(|s| {
            !exec
                .iter()
                .any(|&(lo, hi)| s.address >= lo && s.address <= hi)
        })
        .map(|s| format!("{} {:#x}", s.name, s.address))
        .collect();
    assert!(
        outside.is_empty(),
        "text symbols outside {exec:x?}: {outside:?}"
    );
}

#[test]
fn global_names_are_unique() {
    let Some((_, k)) = kernel("global_names_are_unique") else {
        return;
    };
    // The linker refuses two global definitions of one name; local (lower-case) symbols may
    // repeat (`static` functions of the same name in different files).
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut dups = Vec::new();
    for s in k.symbols() {
        if matches!(s.kind, 'T' | 'D' | 'B' | 'R') {
            if let Some(prev) = seen.insert(&s.name, s.address) {
                dups.push(format!("{} {:#x} {:#x}", s.name, prev, s.address));
            }
        }
    }
    assert!(dups.is_empty(), "duplicate global symbols: {dups:?}");
    let locals = k.symbols().iter().filter(|s| s.kind == 't').count();
    let mut names: Vec<&str> = k
        .symbols()
        .iter()
        .filter(|s| s.kind == 't')
        .map(|s| s.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() < locals, "some static functions share names");
}

#[test]
fn the_entry_point_is_startup_64() {
    let Some((image, k)) = kernel("the_entry_point_is_startup_64") else {
        return;
    };
    let file = elf(image);
    // e_entry is physical (`ENTRY(phys_startup_64)`): map it through its PT_LOAD.
    let phys = file.entry();
    let header = match &file {
        object::File::Elf64(f) => f.elf_program_headers(),
        _ => panic!("not ELF64"),
    };
    let endian = object::Endianness::Little;
    let virt = header
        .iter()
        .filter(|p| p.p_type.get(endian) == object::elf::PT_LOAD)
        .find_map(|p| {
            let (pa, va, sz) = (
                p.p_paddr.get(endian),
                p.p_vaddr.get(endian),
                p.p_memsz.get(endian),
            );
            (phys >= pa && phys < pa + sz).then(|| va + (phys - pa))
        })
        .expect("a PT_LOAD holds the entry point");
    let at_entry: Vec<&str> = k
        .symbols()
        .iter()
        .filter(|s| s.address == virt)
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        at_entry.contains(&"startup_64"),
        "at {virt:#x}: {at_entry:?}"
    );
    let syms = ElfSymbols::load(image).expect("functions from kallsyms");
    let (f, off) = syms.lookup(virt).expect("entry point in a function");
    assert_eq!((f.name.as_str(), off), ("startup_64", 0));
}

/// Exported symbols from `__ksymtab*`: entries of three i32 place-relative offsets (value,
/// name, namespace), as `CONFIG_HAVE_ARCH_PREL32_RELOCATIONS` lays them out.
fn exports(file: &object::File<'_>) -> Vec<(String, u64)> {
    let strings = file
        .section_by_name("__ksymtab_strings")
        .expect("__ksymtab_strings");
    let sdata = strings.data().unwrap();
    let mut out = Vec::new();
    for name in ["__ksymtab", "__ksymtab_gpl"] {
        let sec = file.section_by_name(name).expect(name);
        let data = sec.data().unwrap();
        for (i, e) in data.chunks_exact(12).enumerate() {
            let rel = |k: usize| i32::from_le_bytes(e[4 * k..4 * k + 4].try_into().unwrap());
            let place = sec.address() + 12 * i as u64;
            let value = place.wrapping_add_signed(rel(0).into());
            let name_at = (place + 4).wrapping_add_signed(rel(1).into());
            let off = (name_at - strings.address()) as usize;
            let end = sdata[off..].iter().position(|&b| b == 0).unwrap();
            out.push((
                String::from_utf8_lossy(&sdata[off..off + end]).into_owned(),
                value,
            ));
        }
    }
    out
}

#[test]
fn exported_symbols_match_the_kernels_export_table() {
    let Some((image, k)) = kernel("exported_symbols_match_the_kernels_export_table") else {
        return;
    };
    let exports = exports(&elf(image));
    assert!(exports.len() > 5_000, "{} exports", exports.len());
    let mut wrong = Vec::new();
    for (name, value) in &exports {
        let found = k.by_name(name);
        if !found.iter().any(|s| s.address == *value) {
            wrong.push(format!(
                "{name}: ksymtab {value:#x}, kallsyms {:x?}",
                found.iter().map(|s| s.address).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {}: {:?}",
        wrong.len(),
        exports.len(),
        &wrong[..wrong.len().min(10)]
    );
}

#[test]
fn functions_for_probes_have_sizes_and_well_known_names() {
    let Some((image, _)) = kernel("functions_for_probes_have_sizes_and_well_known_names") else {
        return;
    };
    let syms = ElfSymbols::load(image).expect("functions");
    for name in [
        "start_kernel",
        "do_sys_openat2",
        "memblock_add",
        "e820__memblock_setup",
        "__x86_return_thunk",
    ] {
        let f = syms
            .by_name(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            f.size > 0 && f.size < 0x10_0000,
            "{name}: size {:#x}",
            f.size
        );
        assert!(
            syms.function_bytes(image, f).is_some(),
            "{name}: bytes in the image"
        );
    }
    assert!(
        syms.by_name("__pfx_start_kernel").is_none(),
        "padding is not a function"
    );
    assert!(!syms.return_thunks().is_empty());
}
