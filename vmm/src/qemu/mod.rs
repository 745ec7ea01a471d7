//! Running a guest image under QEMU (`qemu-system-x86_64 -kernel`), as a peer to compare
//! hvtrace against: the built-in guests carry a multiboot header for it (`guest/asm/mb64.S`).
//!
//! QEMU runs on KVM (`-accel kvm`) with its serial port on stdout and `isa-debug-exit` at
//! port 0xf4, so a guest's write of `v` ends QEMU with status `(v << 1) | 1`. Its local APIC is
//! KVM's ([`QemuIrqchip::Kernel`]) or QEMU's own ([`QemuIrqchip::User`],
//! `kernel_irqchip=off`: on this project's hosts that needs the CPU without KVM's async-PF
//! interrupt and `IA32_ARCH_CAPABILITIES`, see HOST.md). Each run is bounded; a QEMU that
//! outlives its bound is killed and reported as a hang. [`boot_times`] measures the process
//! from start to exit and to the guest's first serial byte, for benchmarks.

mod process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use process::{run_bounded, Finished};

/// The QEMU binary looked for on `PATH` (or named by `HVTRACE_QEMU`).
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// Why QEMU could not be run.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// No QEMU binary.
    #[error("{QEMU_BINARY} is not installed (not on PATH, and HVTRACE_QEMU is not set); on Debian: apt-get install qemu-system-x86")]
    NotInstalled,
    /// The guest image could not be written where QEMU can read it.
    #[error("cannot write the guest image for QEMU to {path}: {source}")]
    WriteImage {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The binary.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for QEMU failed.
    #[error("cannot wait for QEMU: {0}")]
    Wait(std::io::Error),
}

/// Whose local APIC QEMU uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuIrqchip {
    /// KVM's in-kernel irqchip (QEMU's default).
    Kernel,
    /// QEMU's own user-space APIC (`-machine kernel_irqchip=off`).
    User,
}

impl QemuIrqchip {
    /// The column label in `hvtrace compare`.
    pub fn label(self) -> &'static str {
        match self {
            QemuIrqchip::Kernel => "qemu-kvm",
            QemuIrqchip::User => "qemu-user",
        }
    }
}

/// QEMU's machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuMachine {
    /// The default `pc` machine (SeaBIOS firmware, ACPI and MP tables).
    Pc,
    /// `microvm,x-option-roms=off,rtc=off`: qboot, no option ROMs.
    Microvm,
}

/// One QEMU run of a guest image.
#[derive(Clone, Debug)]
pub struct QemuSpec {
    /// The image (a multiboot kernel).
    pub image: Vec<u8>,
    /// vCPUs.
    pub cpus: usize,
    /// RAM bytes.
    pub mem: u64,
    /// The command line (`-append`).
    pub cmdline: String,
    /// Whose APIC.
    pub irqchip: QemuIrqchip,
    /// Machine type.
    pub machine: QemuMachine,
    /// Bound on the run.
    pub timeout: Duration,
}

/// How a QEMU run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QemuEnding {
    /// The guest wrote `status` to the debug-exit port.
    GuestExit(u8),
    /// QEMU still ran at the bound and was killed.
    Hang,
    /// QEMU ended otherwise (its exit code, or `None` for a signal) with this last stderr line.
    Failed(Option<i32>, String),
}

/// What one QEMU run showed.
#[derive(Clone, Debug)]
pub struct QemuRun {
    /// How it ended.
    pub ending: QemuEnding,
    /// Process start to end.
    pub wall: Duration,
    /// Process start to the guest's first serial byte.
    pub first_byte: Option<Duration>,
    /// The guest's serial output.
    pub serial: String,
}

/// The QEMU binary to use: `HVTRACE_QEMU`, else `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf, QemuError> {
    if let Some(path) = std::env::var_os("HVTRACE_QEMU") {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(QEMU_BINARY))
        .find(|p| p.is_file())
        .ok_or(QemuError::NotInstalled)
}

/// QEMU's arguments for `spec` with the image at `kernel`.
pub fn arguments(spec: &QemuSpec, kernel: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["-accel", "kvm", "-nodefaults", "-no-reboot"]
        .map(String::from)
        .to_vec();
    if spec.machine == QemuMachine::Microvm {
        a.extend(["-M".into(), "microvm,x-option-roms=off,rtc=off".into()]);
    }
    if spec.irqchip == QemuIrqchip::User {
        a.extend([
            "-machine".into(),
            "kernel_irqchip=off".into(),
            "-cpu".into(),
            "host,-kvm-asyncpf-int,-arch-capabilities".into(),
        ]);
    }
    a.extend([
        "-smp".into(),
        spec.cpus.to_string(),
        "-m".into(),
        format!("{}M", spec.mem.div_ceil(1 << 20)),
        "-kernel".into(),
        kernel.display().to_string(),
        "-append".into(),
        spec.cmdline.clone(),
        "-serial".into(),
        "stdio".into(),
        "-display".into(),
        "none".into(),
        "-device".into(),
        "isa-debug-exit,iobase=0xf4,iosize=4".into(),
    ]);
    a
}

/// Runs `spec` under the QEMU at `qemu`.
pub fn run(qemu: &Path, spec: &QemuSpec) -> Result<QemuRun, QemuError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "hvtrace-qemu-{}-{}.elf",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, &spec.image).map_err(|source| QemuError::WriteImage {
        path: path.clone(),
        source,
    })?;
    let mut cmd = Command::new(qemu);
    cmd.args(arguments(spec, &path));
    let finished = run_bounded(cmd, spec.timeout);
    let _ = std::fs::remove_file(&path);
    let f = finished?;
    let ending = match f.status {
        None => QemuEnding::Hang,
        Some(s) => match s.code() {
            Some(code) if code & 1 == 1 => QemuEnding::GuestExit((code >> 1) as u8),
            code => QemuEnding::Failed(
                code,
                f.stderr
                    .lines()
                    .rfind(|l| !l.contains("warning"))
                    .unwrap_or("")
                    .to_string(),
            ),
        },
    };
    Ok(QemuRun {
        ending,
        wall: f.wall,
        first_byte: f.first_byte,
        serial: String::from_utf8_lossy(&f.stdout).into_owned(),
    })
}

/// Process start to exit and to the guest's first serial byte, for `image` on `cpus` vCPUs
/// under `machine` (KVM's irqchip, 256 MiB, bounded by `timeout`).
#[derive(Clone, Debug)]
pub struct BootTimes {
    /// How the run ended.
    pub ending: QemuEnding,
    /// Process start to exit.
    pub to_exit: Duration,
    /// Process start to the first serial byte.
    pub to_first_byte: Option<Duration>,
}

/// Measures one QEMU boot of `image` (see [`BootTimes`]).
pub fn boot_times(
    qemu: &Path,
    image: &[u8],
    cpus: usize,
    machine: QemuMachine,
    timeout: Duration,
) -> Result<BootTimes, QemuError> {
    let spec = QemuSpec {
        image: image.to_vec(),
        cpus,
        mem: 256 << 20,
        cmdline: String::new(),
        irqchip: QemuIrqchip::Kernel,
        machine,
        timeout,
    };
    let r = run(qemu, &spec)?;
    Ok(BootTimes {
        ending: r.ending,
        to_exit: r.wall,
        to_first_byte: r.first_byte,
    })
}
