//! End-to-end: Multiboot (v1) kernels boot as under QEMU's `-kernel`. The ELF32 and the
//! a.out-kludge test kernels (built in `guest`) exit with QEMU's debug-exit status, modules'
//! bytes and strings and the command line reach the guest intact (the guest prints an FNV-1a
//! checksum this test computes itself), and malformed headers give one clear error line.

use std::time::Duration;

use tests::{kvm_or_skip, run_hvtrace, temp_file, RunOutput};

const BOUND: Duration = Duration::from_secs(60);

/// FNV-1a 32, as `mb_fnv` in `guest/asm/mb_kernel.S` computes it.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Writes the multiboot test kernel `name` to a file and returns its path.
fn kernel_file(name: &str) -> String {
    let image = guest::find(name).expect("multiboot test kernel").image;
    temp_file(name, image).to_str().unwrap().to_string()
}

fn run_kernel(name: &str, extra: &[&str]) -> RunOutput {
    let path = kernel_file(name);
    let mut args = vec!["run", "--kernel", path.as_str(), "--timeout", "30"];
    args.extend_from_slice(extra);
    run_hvtrace(&args, BOUND)
}

fn assert_booted(out: &RunOutput, kind: &str) {
    assert!(
        out.stdout
            .contains(&format!("mb: booted ({kind}), magic ok")),
        "{out:?}"
    );
    assert!(out.stdout.contains("mb: loader=\"hvtrace\""), "{out:?}");
    // 256 MiB: 636 KiB below the reserved low area, 255 MiB from 1 MiB; 4 map entries.
    assert!(
        out.stdout
            .contains("mb: mem_lower=0x0000027c mem_upper=0x0003fc00"),
        "{out:?}"
    );
    let ram_kib = 636 + 255 * 1024;
    assert!(
        out.stdout.contains(&format!(
            "mb: mmap entries=0x00000004 ram_kib={ram_kib:#010x}"
        )),
        "{out:?}"
    );
    assert!(out.stdout.contains("mb: failures=0x00000000"), "{out:?}");
}

#[test]
fn elf32_multiboot_kernel_exits_with_qemu_status() {
    if !kvm_or_skip("elf32_multiboot_kernel_exits_with_qemu_status") {
        return;
    }
    let out = run_kernel("mb-elf32", &["--cmdline", "exit=5 verbose"]);
    assert_booted(&out, "elf32");
    assert!(
        out.stdout.contains("mb: cmdline=\"exit=5 verbose\""),
        "{out:?}"
    );
    assert_eq!(out.status, Some((5 << 1) | 1), "{out:?}");
}

#[test]
fn aout_kludge_kernel_exits_with_qemu_status() {
    if !kvm_or_skip("aout_kludge_kernel_exits_with_qemu_status") {
        return;
    }
    for irqchip in ["emulated", "kvm"] {
        let out = run_kernel("mb-aout", &["--cmdline", "exit=3", "--irqchip", irqchip]);
        assert_booted(&out, "a.out kludge");
        assert_eq!(out.status, Some((3 << 1) | 1), "{irqchip}: {out:?}");
    }
    // No exit=: the kernel writes 0, QEMU's convention makes it 1.
    let out = run_kernel("mb-aout", &[]);
    assert!(out.stdout.contains("mb: cmdline=\"\""), "{out:?}");
    assert_eq!(out.status, Some(1), "{out:?}");
}

#[test]
fn modules_reach_the_guest_intact() {
    if !kvm_or_skip("modules_reach_the_guest_intact") {
        return;
    }
    let first: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let second = b"second module, no arguments\n".to_vec();
    let m1 = temp_file("module-1.bin", &first);
    let m2 = temp_file("module-2.txt", &second);
    let spec1 = format!("{},first module, with a comma and spaces", m1.display());
    let spec2 = m2.display().to_string();
    for kernel in ["mb-elf32", "mb-aout"] {
        let out = run_kernel(
            kernel,
            &[
                "--module",
                &spec1,
                "--module",
                &spec2,
                "--cmdline",
                "exit=0",
            ],
        );
        assert_eq!(out.status, Some(1), "{kernel}: {out:?}");
        let line = |i: u32, bytes: &[u8], string: &str| {
            format!(
                "mb: module {i:#010x} size={:#010x} fnv={:#010x} string=\"{string}\"",
                bytes.len(),
                fnv1a(bytes)
            )
        };
        let want1 = line(0, &first, "first module, with a comma and spaces");
        let want2 = line(1, &second, "");
        assert!(
            out.stdout.contains(&want1),
            "{kernel}: want {want1}: {out:?}"
        );
        assert!(
            out.stdout.contains(&want2),
            "{kernel}: want {want2}: {out:?}"
        );
    }
}

/// Runs `image` and expects a non-zero status with `needle` on stderr, no panic.
fn assert_refused(tag: &str, image: &[u8], extra: &[&str], needle: &str) {
    let path = temp_file(tag, image);
    let mut args = vec!["run", "--kernel", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_hvtrace(&args, BOUND);
    assert_eq!(out.status, Some(1), "{tag}: {out:?}");
    assert!(
        out.stderr.contains(needle),
        "{tag}: want '{needle}': {out:?}"
    );
    assert!(
        out.stderr.contains("multiboot") || needle.contains("module"),
        "{tag}: {out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{tag}: {out:?}");
}

/// A flat a.out-kludge kernel at 1 MiB: `flags`, the five addresses, then `hlt`.
fn kludge(flags: u32, addrs: [u32; 5], checksum_delta: u32) -> Vec<u8> {
    let magic = 0x1bad_b002u32;
    let checksum = 0u32
        .wrapping_sub(magic)
        .wrapping_sub(flags)
        .wrapping_add(checksum_delta);
    let mut image: Vec<u8> = [magic, flags, checksum]
        .iter()
        .chain(addrs.iter())
        .flat_map(|v| v.to_le_bytes())
        .collect();
    image.extend_from_slice(&[0xf4; 32]);
    image
}

#[test]
fn malformed_multiboot_headers_are_refused_clearly() {
    if !kvm_or_skip("malformed_multiboot_headers_are_refused_clearly") {
        return;
    }
    let at = 0x10_0000u32;
    let good = [at, at, at + 64, at + 0x1000, at + 32];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad-checksum", kludge(0x1_0003, good, 1), "bad checksum"),
        (
            "unknown-flags",
            kludge(0x1_0003 | 1 << 7, good, 0),
            "require features hvtrace does not know",
        ),
        (
            "load-after-header",
            kludge(0x1_0003, [at, at + 4, at + 64, 0, at + 32], 0),
            "load_addr 0x100004 is above header_addr 0x100000",
        ),
        (
            "load-past-file",
            kludge(0x1_0003, [at, at, at + 0x800, 0, at + 32], 0),
            "but the file is only",
        ),
        (
            "entry-outside",
            kludge(0x1_0003, [at, at, at + 64, 0, at + 0x100], 0),
            "entry_addr 0x100100 is not inside the loaded kernel",
        ),
        (
            "over-vmm-tables",
            kludge(0x1_0003, [0x2000, 0x2000, 0x2040, 0, 0x2020], 0),
            "overlaps the VMM's GDT, boot info and page tables",
        ),
        (
            "outside-ram",
            kludge(
                0x1_0003,
                [0x8000_0000, 0x8000_0000, 0x8000_0040, 0, 0x8000_0020],
                0,
            ),
            "lies outside guest RAM",
        ),
        (
            "truncated-header",
            kludge(0x1_0003, good, 0)[..20].to_vec(),
            "is truncated",
        ),
        ("no-layout", kludge(0x3, good, 0), "not an ELF32 image"),
    ];
    for (tag, image, needle) in cases {
        assert_refused(tag, &image, &["--irqchip", "kvm"], needle);
    }
    // Modules that do not fit below the MMIO hole with the RAM given.
    let big = temp_file("big-module", &vec![0u8; 15 << 20]);
    let module = big.display().to_string();
    assert_refused(
        "too-big",
        &kludge(0x1_0003, good, 0),
        &["--mem", "16M", "--module", &module],
        "use a larger --mem",
    );
}

#[test]
fn modules_are_refused_for_native_images_and_missing_files() {
    if !kvm_or_skip("modules_are_refused_for_native_images_and_missing_files") {
        return;
    }
    let m = temp_file("native-module", b"x");
    let out = run_hvtrace(
        &["run", "--guest", "hello", "--module", m.to_str().unwrap()],
        BOUND,
    );
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("--module/--initrd need a multiboot or PVH"),
        "{out:?}"
    );
    let path = kernel_file("mb-elf32");
    let out = run_hvtrace(
        &[
            "run",
            "--kernel",
            &path,
            "--module",
            "/nonexistent/initrd,args",
        ],
        BOUND,
    );
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("cannot read module /nonexistent/initrd"),
        "{out:?}"
    );
}

#[test]
fn a_32_bit_kernel_is_traced_without_fbt() {
    if !kvm_or_skip("a_32_bit_kernel_is_traced_without_fbt") {
        return;
    }
    let out = run_kernel("mb-elf32", &["-n", "fbt:::entry { @ = count(); }"]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("fbt probes need 64-bit code"),
        "{out:?}"
    );
    let program = "vmexit:::io /arg0 == 0xf4/ { printf(\"exit port %d\\n\", arg2); }";
    let out = run_kernel("mb-elf32", &["--cmdline", "exit=2", "-q", "-n", program]);
    assert!(out.stdout.contains("exit port 2"), "{out:?}");
    assert_eq!(out.status, Some(5), "{out:?}");
}
