//! Boots the unmodified Debian Linux kernel (`scripts/fetch-linux-guest.sh`) through its PVH
//! entry with 1 vCPU on `/dev/kvm` and traces its early boot from outside:
//! - the kernel banner appears on the serial console;
//! - `fbt::start_kernel:entry` fires exactly once;
//! - the `(base, size)` arguments of every `memblock_add` call made inside
//!   `e820__memblock_setup` equal the RAM ranges of the e820 map hvtrace wrote (from its own
//!   layout, and as the kernel prints it: `BIOS-e820: ... usable`), after the kernel's one
//!   documented edit (`setup_arch` reserves page 0, so a range starting at 0 arrives starting at
//!   0x1000).
//!
//! The run ends with `exit(0)` at `init_mem_mapping` (the next step of `setup_arch`), or at
//! hvtrace's `--timeout`; a failure says how far the boot got (the last console lines and probe
//! records). On a software KVM (HOST.md) this takes about 40 s.

use tests::linux::{run_traced_vmlinux, tail, TracedRun};
use vmm::loader::mbi::{memory_map, MMAP_RAM};

/// Guest RAM of the run (`run_traced_vmlinux` gives 256 MiB).
const MEM: u64 = 256 << 20;
/// hvtrace's own limit on the run; the test's bound is a minute more.
const TIMEOUT_S: u64 = 480;

const PROGRAM: &str = r#"
fbt::start_kernel:entry { printf("start_kernel\n"); }
fbt::e820__memblock_setup:entry { inside = 1; printf("e820__memblock_setup\n"); }
fbt::memblock_add:entry { printf("memblock_add %d %d %d\n", arg0, arg1, inside); }
fbt::init_mem_mapping:entry { printf("init_mem_mapping\n"); exit(0); }
"#;

/// The RAM ranges `(base, size)` hvtrace puts in the e820 map for `mem` bytes.
fn e820_ram(mem: u64) -> Vec<(u64, u64)> {
    memory_map(mem)
        .into_iter()
        .filter(|&(_, _, kind)| kind == MMAP_RAM)
        .map(|(base, len, _)| (base, len))
        .collect()
}

/// The usable ranges the kernel printed as its firmware map (`BIOS-e820: [mem A-B] usable`).
fn printed_e820_ram(console: &str) -> Vec<(u64, u64)> {
    console
        .lines()
        .filter(|l| l.contains("BIOS-e820:") && l.trim_end().ends_with("usable"))
        .filter_map(|l| {
            let range = l.split("[mem ").nth(1)?.split(']').next()?;
            let (a, b) = range.split_once('-')?;
            let a = u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()?;
            let b = u64::from_str_radix(b.trim_start_matches("0x"), 16).ok()?;
            Some((a, b + 1 - a))
        })
        .collect()
}

/// What `setup_arch` does to the map before `e820__memblock_setup`: page 0 becomes reserved.
fn after_first_page_edit(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    ranges
        .iter()
        .map(|&(base, size)| match base {
            0 => (0x1000, size - 0x1000),
            _ => (base, size),
        })
        .collect()
}

#[test]
fn debian_kernel_boots_by_pvh_and_early_boot_is_traced() {
    let test = "linux_boot::debian_kernel_boots_by_pvh_and_early_boot_is_traced";
    let Some(TracedRun { run, trace }) = run_traced_vmlinux(test, 1, TIMEOUT_S, PROGRAM) else {
        return;
    };
    let records: Vec<&str> = trace.lines().filter(|l| !l.trim().is_empty()).collect();
    let how_far = format!(
        "the run took {:.1} s, exit status {:?}; the boot got this far:\n  last console lines:\n{}  last probe records:\n{}  hvtrace's messages:\n{}",
        run.elapsed.as_secs_f64(),
        run.status,
        tail(&run.stdout, 15),
        tail(&trace, 6),
        tail(&run.stderr, 12),
    );
    println!("{how_far}");

    assert!(
        run.stdout.contains("Linux version 6.12"),
        "no kernel banner on the serial console; {how_far}"
    );
    let starts = records.iter().filter(|l| **l == "start_kernel").count();
    assert_eq!(
        starts, 1,
        "fbt::start_kernel:entry fired {starts} times; {how_far}"
    );
    assert!(
        records.contains(&"init_mem_mapping"),
        "the boot never reached init_mem_mapping (after e820__memblock_setup); {how_far}"
    );
    assert_eq!(run.status, Some(0), "exit(0) was not the ending; {how_far}");

    let written = e820_ram(MEM);
    assert_eq!(
        printed_e820_ram(&run.stdout),
        written,
        "the kernel's firmware map is not the e820 map hvtrace writes; {how_far}"
    );
    let added: Vec<(u64, u64)> = records
        .iter()
        .filter_map(|l| {
            let mut w = l.strip_prefix("memblock_add ")?.split_whitespace();
            let base = w.next()?.parse().ok()?;
            let size = w.next()?.parse().ok()?;
            let inside: u64 = w.next()?.parse().ok()?;
            (inside == 1).then_some((base, size))
        })
        .collect();
    assert_eq!(
        added,
        after_first_page_edit(&written),
        "memblock_add (base, size) from e820__memblock_setup; {how_far}"
    );
    println!(
        "Linux booted by PVH to init_mem_mapping in {:.1} s; memblock_add got {added:#x?}",
        run.elapsed.as_secs_f64()
    );
}

#[test]
fn the_expected_ranges_follow_the_documented_edit() {
    assert_eq!(
        after_first_page_edit(&e820_ram(256 << 20)),
        vec![(0x1000, 0x9_e000), (0x10_0000, 0xff0_0000)]
    );
    let console = "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009efff] usable\n\
                   [    0.000000] BIOS-e820: [mem 0x000000000009f000-0x00000000000fffff] reserved\n";
    assert_eq!(printed_e820_ram(console), vec![(0, 0x9_f000)]);
}
