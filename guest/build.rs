//! Builds the guest kernels in `asm/` into ELF64 executables in `OUT_DIR`, and the 32-bit
//! multiboot test kernels: `mb-elf32.elf` (ELF32) and `mb-aout.bin` (a flat a.out-kludge
//! binary).
//!
//! Each `.S` file is assembled once with `gcc -c` (so the C preprocessor runs and `common.h`
//! can be shared); each guest is then linked from its objects with `ld` and `asm/guest.ld`
//! (the multiboot kernels with `-m32`, `ld -m elf_i386` and `asm/mb32.ld`).
//! The symbol table is kept: the tracer probes guest functions by name. The tools can be
//! overridden with `HVTRACE_GUEST_CC` and `HVTRACE_GUEST_LD`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Sources every guest links: the entry, serial and exit (`common`), the multiboot door
/// (`mb64`, `mb_cpus`) and the MP table parser both it and the SMP guests use (`mptable`).
const SHARED: &[&str] = &["common", "mb64", "mb_cpus", "mptable"];

/// Each guest: its name (the image becomes `OUT_DIR/<name>.elf`) and the sources it links
/// besides [`SHARED`].
const GUESTS: &[(&str, &[&str])] = &[
    ("hello", &["hello"]),
    ("smp", &["smp", "lapic", "aps", "trampoline"]),
    ("fault", &["fault"]),
    ("breakpoint", &["breakpoint", "gate"]),
    ("pci", &["pci"]),
    ("spin", &["spin", "cmdline", "lapic", "aps", "trampoline"]),
    (
        "spin-scale",
        &["spin", "cmdline", "lapic", "aps", "trampoline", "many"],
    ),
    (
        "apic-conformance",
        &[
            "apic_conformance",
            "apic_conf_cpu",
            "apic_conf_local",
            "apic_conf_smp",
            "apic_conf_timer",
            "apic_conf_ioapic",
            "apic_conf_x2apic",
            "lapic",
            "aps",
            "trampoline",
        ],
    ),
    (
        "ipi-bench",
        &[
            "ipi_bench",
            "cmdline",
            "idt",
            "gate",
            "stats",
            "lapic",
            "aps",
            "trampoline",
        ],
    ),
    (
        "xcall-lab",
        &[
            "xcall_lab",
            "cmdline",
            "idt",
            "gate",
            "stats",
            "lapic",
            "aps",
            "trampoline",
        ],
    ),
];

/// The multiboot test kernels: name, sources, and whether the output is a flat binary
/// (`OUT_DIR/<name>.bin`, for the a.out kludge) rather than an ELF32 (`<name>.elf`).
const MULTIBOOT_KERNELS: &[(&str, &[&str], bool)] = &[
    ("mb-elf32", &["mb_elf32", "mb_kernel"], false),
    ("mb-aout", &["mb_aout", "mb_kernel"], true),
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let asm = manifest.join("asm");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let obj_dir = out.join("obj");
    fs::create_dir_all(&obj_dir).expect("create OUT_DIR/obj");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", asm.display());
    let mut entries: Vec<PathBuf> = fs::read_dir(&asm)
        .unwrap_or_else(|e| panic!("guest build: cannot read {}: {e}", asm.display()))
        .map(|entry| entry.expect("read asm/ entry").path())
        .collect();
    entries.sort();
    for path in &entries {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=HVTRACE_GUEST_CC");
    println!("cargo:rerun-if-env-changed=HVTRACE_GUEST_LD");
    let cc = env::var("HVTRACE_GUEST_CC").unwrap_or_else(|_| "gcc".to_string());
    let ld = env::var("HVTRACE_GUEST_LD").unwrap_or_else(|_| "ld".to_string());

    let sources64 = GUESTS
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .chain(SHARED.iter().copied());
    assemble(&cc, &asm, &obj_dir, "-m64", sources64);
    let sources32 = MULTIBOOT_KERNELS
        .iter()
        .flat_map(|(_, s, _)| s.iter().copied());
    assemble(&cc, &asm, &obj_dir, "-m32", sources32);

    let script32 = asm.join("mb32.ld");
    for (name, objs, flat) in MULTIBOOT_KERNELS {
        let image = out.join(format!("{name}.{}", if *flat { "bin" } else { "elf" }));
        let mut cmd = Command::new(&ld);
        cmd.args([
            "-m",
            "elf_i386",
            "-nostdlib",
            "-static",
            "-z",
            "max-page-size=0x1000",
        ]);
        if *flat {
            cmd.args(["--oformat", "binary"]);
        }
        cmd.arg("-T").arg(&script32).arg("-o").arg(&image);
        for obj in *objs {
            cmd.arg(obj_dir.join(format!("{obj}.o")));
        }
        run(&ld, &format!("link multiboot kernel `{name}`"), &mut cmd);
    }

    let script = asm.join("guest.ld");
    for (name, objs) in GUESTS {
        let image = out.join(format!("{name}.elf"));
        let mut cmd = Command::new(&ld);
        cmd.args(["-nostdlib", "-static", "-z", "max-page-size=0x1000", "-T"])
            .arg(&script)
            .arg("-o")
            .arg(&image);
        for obj in SHARED.iter().chain(objs.iter()) {
            cmd.arg(obj_dir.join(format!("{obj}.o")));
        }
        run(&ld, &format!("link guest `{name}`"), &mut cmd);
    }
}

/// Assembles each of `sources` (once) from `asm/<source>.S` into `obj_dir/<source>.o` with
/// `cc` and `mode` (`-m64` or `-m32`).
fn assemble<'a>(
    cc: &str,
    asm: &Path,
    obj_dir: &Path,
    mode: &str,
    sources: impl Iterator<Item = &'a str>,
) {
    let mut sources: Vec<&str> = sources.collect();
    sources.sort_unstable();
    sources.dedup();
    for source in sources {
        let src = asm.join(format!("{source}.S"));
        let obj = obj_dir.join(format!("{source}.o"));
        let mut cmd = Command::new(cc);
        cmd.args([
            "-c",
            mode,
            "-nostdinc",
            "-Wa,--noexecstack",
            "-Wa,--fatal-warnings",
        ])
        .arg("-I")
        .arg(asm)
        .arg(&src)
        .arg("-o")
        .arg(&obj);
        run(cc, &format!("assemble {}", src.display()), &mut cmd);
    }
}

/// Runs `cmd` (the tool `tool`, doing `what`); panics with the tool's stderr if it fails.
fn run(tool: &str, what: &str, cmd: &mut Command) {
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => panic!(
            "guest build: cannot run `{tool}` to {what}: {e} \
             (the guest kernels need gcc and GNU ld from binutils)"
        ),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "guest build: `{tool}` failed to {what} ({}):\n{cmd:?}\n{stderr}",
            output.status
        );
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning={tool}: {line}");
    }
}
