//! Probe placement on the real Debian kernel (`scripts/fetch-linux-guest.sh`; skipped loudly
//! where it has not been fetched), offline:
//! - the jump-label (`__jump_table`) and static-call (`.static_call_sites`) tables, parsed here
//!   with the object crate from the file's segments (only the table bounds come from kallsyms),
//!   are exactly the sites hvtrace reads, and every entry points at the instruction the kernel
//!   patches there (a `jmp` or NOP for jump labels, a `call`/`jmp` for static calls);
//! - none of the fbt entry and return sites hvtrace resolves and accepts overlaps one of them;
//! - entry sites of traced functions lie on the 5-byte `call __fentry__` right after `endbr64`,
//!   in the file's bytes.

use std::collections::BTreeSet;

use object::{Object, ObjectSegment};
use tests::linux::linux_guest_or_skip;
use tracer::symbols::kallsyms::Kallsyms;
use tracer::symbols::{ElfSymbols, SymbolSource};
use tracer::traps::{check_sites, decode_function, fbt_sites, KernelPatchSites, PatchKind};

/// The file bytes at virtual `[addr, addr + len)`, from the loaded segments.
fn bytes_at(file: &object::File<'_>, image: &[u8], addr: u64, len: u64) -> Option<Vec<u8>> {
    file.segments().find_map(|s| {
        let (offset, size) = s.file_range();
        let inside = addr >= s.address() && addr + len <= s.address() + size;
        inside.then(|| {
            let from = (offset + addr - s.address()) as usize;
            image[from..from + len as usize].to_vec()
        })
    })
}

/// One symbol's address from kallsyms.
fn symbol(k: &Kallsyms, name: &str) -> u64 {
    k.by_name(name)
        .first()
        .unwrap_or_else(|| panic!("{name} is not in kallsyms"))
        .address
}

/// The code addresses of a table of `entry`-byte entries whose first field is an s32
/// relative to its own address, between the kallsyms symbols `start` and `stop`.
fn table_sites(
    file: &object::File<'_>,
    image: &[u8],
    k: &Kallsyms,
    (start, stop): (&str, &str),
    entry: u64,
) -> Vec<u64> {
    let (a, b) = (symbol(k, start), symbol(k, stop));
    assert!(
        b > a && (b - a) % entry == 0,
        "{start}..{stop}: {a:#x}..{b:#x}"
    );
    let table = bytes_at(file, image, a, b - a).expect("the table is stored in the file");
    table
        .chunks_exact(entry as usize)
        .enumerate()
        .map(|(i, e)| {
            let rel = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            (a + i as u64 * entry).wrapping_add_signed(i64::from(rel))
        })
        .collect()
}

#[test]
fn fbt_sites_avoid_jump_labels_and_static_calls() {
    let Some(path) = linux_guest_or_skip("fbt_sites_avoid_jump_labels_and_static_calls", "vmlinux")
    else {
        return;
    };
    let image = std::fs::read(&path).expect("read vmlinux");
    let file = object::File::parse(&*image).expect("vmlinux is ELF");
    let k = Kallsyms::from_elf(&image).expect("kallsyms");

    // The tables, parsed here.
    let jumps = table_sites(
        &file,
        &image,
        &k,
        ("__start___jump_table", "__stop___jump_table"),
        16,
    );
    let calls = table_sites(
        &file,
        &image,
        &k,
        ("__start_static_call_sites", "__stop_static_call_sites"),
        8,
    );
    assert!(jumps.len() > 1000, "{} jump labels", jumps.len());
    assert!(calls.len() > 100, "{} static calls", calls.len());
    for &at in &jumps {
        let b = bytes_at(&file, &image, at, 5).expect("jump label in the file");
        let known =
            b[0] == 0xe9 || b[0] == 0xeb || b == [0x0f, 0x1f, 0x44, 0, 0] || b[..2] == [0x66, 0x90];
        assert!(known, "jump label at {at:#x} is {b:02x?}, not a jmp or NOP");
    }
    for &at in &calls {
        let b = bytes_at(&file, &image, at, 1).expect("static call in the file");
        assert!(
            matches!(b[0], 0xe8 | 0xe9),
            "static call at {at:#x} is {b:02x?}"
        );
    }

    // hvtrace's view of the same tables.
    let symbols = ElfSymbols::load(&image).expect("symbols");
    let patch = KernelPatchSites::from_image(&image, &symbols).expect("patch sites");
    let of = |kind: PatchKind| -> BTreeSet<u64> {
        patch
            .sites()
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.start)
            .collect()
    };
    assert_eq!(of(PatchKind::JumpLabel), jumps.iter().copied().collect());
    assert_eq!(of(PatchKind::StaticCall), calls.iter().copied().collect());

    // A KASLR kernel's symbols (moved by the slide a bzImage boot found): the same sites,
    // each moved by the slide, with the same lengths.
    let slide = 0x1ce0_0000;
    let slid = KernelPatchSites::from_image(&image, &symbols.slid(slide)).expect("slid sites");
    let moved: Vec<_> = patch
        .sites()
        .iter()
        .map(|s| (s.start + slide, s.end + slide, s.kind))
        .collect();
    let got: Vec<_> = slid
        .sites()
        .iter()
        .map(|s| (s.start, s.end, s.kind))
        .collect();
    assert_eq!(got, moved, "patch sites under a slide of {slide:#x}");

    // Every fbt site hvtrace resolves and accepts, against the tables parsed here.
    // A jump label is 2 bytes where the file holds a short `jmp` or `66 90`, else 5.
    let jump_len = |at: u64| match bytes_at(&file, &image, at, 2).as_deref() {
        Some([0xeb, _]) | Some([0x66, 0x90]) => 2,
        _ => 5,
    };
    let forbidden: Vec<(u64, u64)> = jumps
        .iter()
        .map(|&a| (a, a + jump_len(a)))
        .chain(calls.iter().map(|&a| (a, a + 5)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let overlaps = |start: u64, end: u64| {
        let i = forbidden.partition_point(|&(_, e)| e <= start);
        forbidden.get(i).is_some_and(|&(s, _)| s < end)
    };
    let thunks = symbols.return_thunks();
    let (mut accepted, mut refused) = (0usize, 0usize);
    for f in symbols.functions() {
        let Some(bytes) = symbols.function_bytes(&image, f) else {
            continue;
        };
        let Ok(decoded) = decode_function(f, bytes, &thunks) else {
            continue;
        };
        for name in ["entry", "return"] {
            let sites = fbt_sites(name, &decoded, bytes);
            if let Err(e) = check_sites(&decoded, &sites, &patch) {
                if refused < 5 {
                    println!("refused fbt::{}:{name}: {e}", f.name);
                }
                refused += 1;
                continue;
            }
            for site in sites {
                accepted += 1;
                let len = decoded.instruction_len(site).expect("a boundary");
                assert!(
                    !overlaps(site, site + len),
                    "fbt::{}:{name} site {site:#x} overlaps a jump-label or static-call site",
                    f.name
                );
            }
        }
    }
    println!(
        "{} jump labels, {} static calls; {accepted} fbt sites accepted, {refused} probes refused",
        jumps.len(),
        calls.len()
    );
    assert!(accepted > 100_000, "{accepted} sites");

    // Entry sites of traced functions: the `call __fentry__`, right after `endbr64` where the
    // function has one (address-taken functions), at the first byte otherwise.
    let fentry = symbol(&k, "__fentry__");
    let mut with_endbr = 0;
    let sample = [
        "vprintk_emit",
        "memblock_add",
        "kmem_cache_alloc_noprof",
        "do_sys_openat2",
        "alternative_instructions",
        "schedule",
    ];
    for name in sample {
        let f = symbols.by_name(name).unwrap_or_else(|| panic!("{name}"));
        let code = symbols.function_bytes(&image, f).expect("bytes");
        let decoded = decode_function(f, code, &thunks).expect("decodes");
        let [site] = fbt_sites("entry", &decoded, code)[..] else {
            panic!("{name}: one entry site");
        };
        let head = bytes_at(&file, &image, f.address, 4).expect("in the file");
        if head == [0xf3, 0x0f, 0x1e, 0xfa] {
            with_endbr += 1;
            assert_eq!(
                site,
                f.address + 4,
                "{name}: the entry site follows endbr64"
            );
        } else {
            assert_eq!(
                site, f.address,
                "{name}: no endbr64, the site is the first byte"
            );
        }
        let call = bytes_at(&file, &image, site, 5).expect("in the file");
        assert_eq!(call[0], 0xe8, "{name}: a call at the entry site");
        let rel = i32::from_le_bytes([call[1], call[2], call[3], call[4]]);
        assert_eq!(
            (site + 5).wrapping_add_signed(i64::from(rel)),
            fentry,
            "{name}: the call at the entry site goes to __fentry__"
        );
    }
    assert!(
        (1..sample.len()).contains(&with_endbr),
        "the sample has functions with and without endbr64 ({with_endbr} with)"
    );
}

/// A probe named exactly on a jump-label site is refused before the guest runs, naming the
/// site; a glob that matches it skips it with a note and arms the rest.
#[test]
fn probes_on_kernel_patch_sites_are_refused_or_skipped() {
    let test = "linux_sites::probes_on_kernel_patch_sites_are_refused_or_skipped";
    if !tests::kvm_or_skip(test) {
        return;
    }
    let Some(path) = linux_guest_or_skip(test, "vmlinux") else {
        return;
    };
    let image = std::fs::read(&path).expect("read vmlinux");
    let k = Kallsyms::from_elf(&image).expect("kallsyms");
    let file = object::File::parse(&*image).expect("vmlinux is ELF");
    // `native_halt` (notrace) starts with `endbr64` and then a jump label, by the table.
    let halt = symbol(&k, "native_halt");
    let jumps = table_sites(
        &file,
        &image,
        &k,
        ("__start___jump_table", "__stop___jump_table"),
        16,
    );
    assert!(jumps.contains(&(halt + 4)), "native_halt+4 is a jump label");

    let kernel = path.to_str().expect("UTF-8 path");
    let bound = std::time::Duration::from_secs(60);
    let named = ["run", "--kernel", kernel, "--timeout", "5", "-n"];
    let run = tests::run_hvtrace(
        &[&named[..], &["fbt::native_halt:entry {}"]].concat(),
        bound,
    );
    assert_eq!(
        run.status,
        Some(1),
        "refused before the run: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "native_halt+0x4 overlaps the jump-label site at {:#x}",
            halt + 4
        )),
        "{}",
        run.stderr
    );
    let glob = ["fbt::native_ha*:entry { }"];
    let run = tests::run_hvtrace(&[&named[..], &glob[..]].concat(), bound);
    assert!(
        run.stderr
            .contains("1 of the probes matched are skipped: they would trap where the kernel"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("cannot place probe"),
        "the glob's other probes are armed: {}",
        run.stderr
    );
}
