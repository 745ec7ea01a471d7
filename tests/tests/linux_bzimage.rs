//! Debian's stock bzImage offline (no boot): the kernel ELF hvtrace decompresses from its
//! payload is byte for byte the `vmlinux` that `scripts/fetch-linux-guest.sh` extracted with
//! the `zstd` tool (an independent extraction), its ELF entry point resolves to `startup_64`
//! through the kallsyms read from it, and `hvtrace list --kernel bzImage` lists and types the
//! same probes as for the vmlinux. Skipped loudly where the kernel has not been fetched.

use std::time::{Duration, Instant};

use object::Object;
use tests::linux::linux_guest_or_skip;
use tests::run_hvtrace;
use tracer::bzimage::{compression, kernel_elf, SetupHeader};
use tracer::symbols::{ElfSymbols, SymbolSource};

const BOUND: Duration = Duration::from_secs(120);

#[test]
fn the_payload_is_the_fetched_vmlinux_and_enters_at_startup_64() {
    let test = "the_payload_is_the_fetched_vmlinux_and_enters_at_startup_64";
    let (Some(bz), Some(vmlinux)) = (
        linux_guest_or_skip(test, "bzImage"),
        linux_guest_or_skip(test, "vmlinux"),
    ) else {
        return;
    };
    let image = std::fs::read(bz).unwrap();
    let header = SetupHeader::find(&image).expect("a setup header (HdrS)");
    assert_eq!(compression(header.payload(&image).unwrap()), "zstd");
    let start = Instant::now();
    let elf = kernel_elf(&image).expect("the payload decompresses");
    eprintln!(
        "payload of {} bytes decompressed to {} in {:.1} s",
        header.payload_length,
        elf.len(),
        start.elapsed().as_secs_f64()
    );
    let fetched = std::fs::read(vmlinux).unwrap();
    assert!(
        elf.as_ref() == fetched.as_slice(),
        "hvtrace's payload ({} bytes) differs from the fetch script's vmlinux ({} bytes)",
        elf.len(),
        fetched.len()
    );
    // e_entry is physical (`phys_startup_64`): map it through its PT_LOAD to the link address.
    let file = object::File::parse(elf.as_ref()).unwrap();
    let phys = file.entry();
    let virt = entry_virtual(elf.as_ref(), phys).expect("e_entry inside a PT_LOAD");
    let symbols = ElfSymbols::load(&elf).expect("kallsyms from the payload");
    let (f, off) = symbols.lookup(virt).expect("entry point in a function");
    assert_eq!((f.name.as_str(), off), ("startup_64", 0));
}

/// The link address of physical address `phys` through the ELF's `PT_LOAD`s.
fn entry_virtual(elf: &[u8], phys: u64) -> Option<u64> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(elf).ok()?;
    let endian = header.endian().ok()?;
    header
        .program_headers(endian, elf)
        .ok()?
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
        .find_map(|p| {
            let (pa, va, sz) = (p.p_paddr(endian), p.p_vaddr(endian), p.p_memsz(endian));
            (phys >= pa && phys < pa + sz).then(|| va + (phys - pa))
        })
}

#[test]
fn lists_the_probes_of_a_bzimage_with_prototypes() {
    let test = "lists_the_probes_of_a_bzimage_with_prototypes";
    let Some(bz) = linux_guest_or_skip(test, "bzImage") else {
        return;
    };
    let out = run_hvtrace(
        &[
            "list",
            "--kernel",
            bz.to_str().unwrap(),
            "fbt::do_sys_openat2:entry",
            "-v",
        ],
        BOUND,
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[1]
            .split_whitespace()
            .skip(1)
            .eq(["fbt", "kernel", "do_sys_openat2", "entry"]),
        "{out:?}"
    );
    assert_eq!(
        lines[2].trim(),
        "long int do_sys_openat2(int dfd, const char *filename, struct open_how *how)"
    );
}
