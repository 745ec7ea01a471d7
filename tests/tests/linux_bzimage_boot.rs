//! Boots Debian's stock bzImage (`scripts/fetch-linux-guest.sh`) through the 64-bit boot
//! protocol on `/dev/kvm`, with probes that must wait for the kernel's KASLR slide.
//!
//! - `the_decompressor_runs_and_probes_wait` (about 45 s): the zstd decompressor runs for
//!   30 s without an emulation failure or a "corrupt" report (it needs hvtrace's BMI and
//!   `lzcnt` completion on a software KVM, HOST.md), and the probes stay deferred, which
//!   hvtrace says loudly at the end.
//! - `full_boot_with_kaslr_and_nokaslr` is `#[ignore]`d (cargo reports it as ignored, never as
//!   passed; run it with `-- --ignored`): on a software KVM decompressing the 57 MB kernel takes
//!   far longer than a test may (about 14 minutes per boot, docs/LINUX.md). When run, each
//!   boot must show the kernel banner, arm its probes at a
//!   slide that is non-zero and 2 MiB-aligned (`CONFIG_PHYSICAL_ALIGN`) with KASLR and zero
//!   with `nokaslr`, decode the kallsyms from guest memory equal to the payload's, and fire
//!   `fbt::start_kernel:entry` at most once (exactly once when arming came before it).

use std::time::Duration;

use tests::linux::linux_guest_or_skip;
use tests::{kvm_or_skip, run_hvtrace};

const PROGRAM: &str = r#"
fbt::start_kernel:entry { printf("start_kernel\n"); }
fbt::init_mem_mapping:entry { printf("init_mem_mapping\n"); exit(0); }
"#;

/// The default command line (as hvtrace's PVH default) plus `extra`.
fn cmdline(extra: &str) -> String {
    format!("{} {extra}", vmm::loader::pvh::DEFAULT_CMDLINE)
        .trim()
        .to_owned()
}

#[test]
fn the_decompressor_runs_and_probes_wait() {
    let test = "the_decompressor_runs_and_probes_wait";
    if !kvm_or_skip(test) {
        return;
    }
    let Some(bz) = linux_guest_or_skip(test, "bzImage") else {
        return;
    };
    let out = run_traced(bz.to_str().unwrap(), &cmdline(""), 30);
    let all = format!("{out:?}");
    assert!(
        out.stderr.contains("the guest was still running after 30"),
        "the run should end at its timeout, still decompressing: {all}"
    );
    assert!(!out.stderr.contains("could not emulate"), "{all}");
    assert!(!out.stdout.contains("corrupt"), "{all}");
    assert!(
        out.stderr.contains("vcpu 0: running"),
        "vCPU 0 should be running (not halted after an error): {all}"
    );
    assert!(
        out.stderr.contains("probes were never armed"),
        "deferred probes must be reported as never armed: {all}"
    );
    assert!(!out.stdout.contains("start_kernel"), "{all}");
}

/// `hvtrace run -v -n PROGRAM` of the bzImage `bz` with `cmdline`, for at most `timeout_s`.
fn run_traced(bz: &str, cmdline: &str, timeout_s: u64) -> tests::RunOutput {
    let timeout = timeout_s.to_string();
    let args = [
        "run",
        "--kernel",
        bz,
        "--cmdline",
        cmdline,
        "--timeout",
        &timeout,
        "-v",
        "-n",
        PROGRAM,
    ];
    run_hvtrace(&args, Duration::from_secs(timeout_s + 100))
}

/// One full boot with `extra` on the command line: (slide, stdout, stderr).
fn full_boot(bz: &str, extra: &str) -> (u64, String, String) {
    let out = run_traced(bz, &cmdline(extra), 3600);
    let all = format!("{out:?}");
    assert!(out.stdout.contains("Linux version"), "no banner: {all}");
    let slide = out
        .stderr
        .lines()
        .find_map(|l| l.split("KASLR slide ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no KASLR slide line: {all}"));
    assert!(
        out.stderr.contains("guest memory's kallsyms")
            && out.stderr.contains("equal the payload's"),
        "kallsyms from guest memory must equal the payload's: {all}"
    );
    assert!(out.stderr.contains("armed 2 probe(s)"), "{all}");
    let fired = out.stdout.matches("start_kernel").count();
    assert!(fired <= 1, "start_kernel fired {fired} times: {all}");
    assert!(out.stdout.contains("init_mem_mapping"), "{all}");
    (slide, out.stdout, out.stderr)
}

#[test]
#[ignore = "two full bzImage boots take about 30 minutes on a software KVM: run with `cargo test -p tests --test linux_bzimage_boot -- --ignored`"]
fn full_boot_with_kaslr_and_nokaslr() {
    let test = "full_boot_with_kaslr_and_nokaslr";
    if !kvm_or_skip(test) {
        return;
    }
    let Some(bz) = linux_guest_or_skip(test, "bzImage") else {
        return;
    };
    let bz = bz.to_str().unwrap();
    let (slide, ..) = full_boot(bz, "");
    assert!(slide != 0, "KASLR gave slide 0");
    assert_eq!(slide % (2 << 20), 0, "slide {slide:#x} not 2 MiB-aligned");
    let (slide, ..) = full_boot(bz, "nokaslr");
    assert_eq!(slide, 0, "nokaslr gave slide {slide:#x}");
}
