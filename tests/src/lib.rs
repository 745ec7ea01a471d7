//! Helpers for hvtrace's end-to-end tests: finding the `hvtrace` binary, running it with a
//! bound, and skipping loudly where there is no KVM.
//!
//! Every test that needs `/dev/kvm` calls [`kvm_or_skip`] first. On a machine without KVM it
//! prints a line starting with `SKIPPED:` and, when `HVTRACE_SKIP_LOG` names a file, appends
//! the line there too; `.ci/run` fails the build if that file is not empty on a machine that
//! has `/dev/kvm`. Tests of the fetched Linux guest skip the same way where it is missing
//! ([`linux::linux_guest_or_skip`]).

pub mod bench;
pub mod ipi_bench;
pub mod linux;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Returns true when `/dev/kvm` can be opened; otherwise prints a loud SKIPPED line naming
/// the test and returns false.
pub fn kvm_or_skip(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            report_skip(&format!("SKIPPED: {test}: needs /dev/kvm ({e})"));
            false
        }
    }
}

/// Prints a skip line loudly and records it in `$HVTRACE_SKIP_LOG` when that is set.
pub fn report_skip(line: &str) {
    eprintln!("{line}");
    println!("{line}");
    if let Some(path) = std::env::var_os("HVTRACE_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Path of the `hvtrace` binary built alongside the tests (target/<profile>/hvtrace).
pub fn hvtrace_path() -> PathBuf {
    // Built (a no-op when up to date) once per test process, so a targeted
    // `cargo test -p tests` never runs a stale binary.
    static FRESH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FRESH.get_or_init(fresh_hvtrace_path).clone()
}

/// Runs `cargo build` for `hvtrace` (a no-op when it is up to date) and returns its path:
/// `cargo test -p tests` / `cargo bench -p tests` rebuild only the `tests` package, so an
/// `hvtrace` left in `target/` by an older build would otherwise be run.
pub fn fresh_hvtrace_path() -> PathBuf {
    let (profile_dir, bin) = hvtrace_location();
    build_hvtrace(&profile_dir);
    bin
}

/// (target/<profile>, target/<profile>/hvtrace) for the running test executable.
fn hvtrace_location() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/hvtrace
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile> directory")
        .to_path_buf();
    let bin = profile_dir.join("hvtrace");
    (profile_dir, bin)
}

/// Builds `hvtrace` into `profile_dir` (release when that is `target/release`).
fn build_hvtrace(profile_dir: &std::path::Path) {
    let mut args = vec!["build", "-p", "vmm", "--bin", "hvtrace"];
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        args.push("--release");
    }
    let status = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .expect("run cargo build for hvtrace");
    assert!(status.success(), "building hvtrace failed");
}

/// What a finished `hvtrace` run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit status (None if killed by a signal).
    pub status: Option<i32>,
    /// Standard output (the guest's serial output).
    pub stdout: String,
    /// Standard error (hvtrace's own messages).
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// `hvtrace run --guest GUEST --cpus CPUS --cmdline CMDLINE --timeout 60 -q -n PROGRAM`,
/// killed after 120 s (see [`run_hvtrace`]).
pub fn trace_guest(guest: &str, cpus: &str, cmdline: &str, program: &str) -> RunOutput {
    run_hvtrace(
        &[
            "run",
            "--guest",
            guest,
            "--cpus",
            cpus,
            "--cmdline",
            cmdline,
            "--timeout",
            "60",
            "-q",
            "-n",
            program,
        ],
        Duration::from_secs(120),
    )
}

/// Runs `hvtrace ARGS`, killing it and failing the test if it is still running after
/// `bound` (which names what was stuck).
pub fn run_hvtrace(args: &[&str], bound: Duration) -> RunOutput {
    let start = Instant::now();
    let mut child = Command::new(hvtrace_path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hvtrace");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for hvtrace") {
            break status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_thread.join().unwrap_or_default();
            let stderr = err_thread.join().unwrap_or_default();
            panic!(
                "hvtrace {args:?} was still running after {bound:?}; killed it.\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    RunOutput {
        status: status.code(),
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// Writes `bytes` to a fresh temporary file named after `tag` and returns its path.
pub fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hvtrace-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(tag);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

/// The parsed ELF image of built-in guest `guest` (read with the `object` crate, independently
/// of the tracer's own ELF reading).
fn guest_elf(guest: &str) -> object::File<'static> {
    let image = guest::find(guest).expect("guest exists").image;
    object::File::parse(image).unwrap_or_else(|e| panic!("guest {guest}: {e}"))
}

/// Address and size of `symbol` in built-in guest `guest`, read from its ELF symbol table.
pub fn guest_symbol(guest: &str, symbol: &str) -> (u64, u64) {
    use object::{Object, ObjectSymbol};
    guest_elf(guest)
        .symbols()
        .find(|s| s.name() == Ok(symbol))
        .map(|s| (s.address(), s.size()))
        .unwrap_or_else(|| panic!("symbol {symbol} not found in guest {guest}"))
}

/// Serial output kept in memory, readable while the guest runs (for tests and benchmarks that
/// drive `vmm::Vm` as a library).
pub use vmm::devices::MemoryOutput as MemorySerial;

/// Waits (polling every millisecond) until the guest has printed `needle`; panics with what it
/// printed after `bound`.
pub fn wait_for_serial(serial: &MemorySerial, needle: &str, bound: Duration) {
    let start = std::time::Instant::now();
    while !serial.text().contains(needle) {
        assert!(
            start.elapsed() < bound,
            "the guest did not print `{needle}` within {bound:?}:\n{}",
            serial.text()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Builds (does not run) a VM for built-in guest `name` with 256 MiB, serial output captured.
pub fn library_vm(
    name: &str,
    cpus: usize,
    irqchip: vmm::IrqChipMode,
    cmdline: &str,
    timeout: Duration,
) -> (vmm::Vm, MemorySerial) {
    library_vm_with_probes(name, cpus, irqchip, cmdline, timeout, &[]).expect("build VM")
}

/// Like [`library_vm`], with function-boundary probes armed before the first instruction.
pub fn library_vm_with_probes(
    name: &str,
    cpus: usize,
    irqchip: vmm::IrqChipMode,
    cmdline: &str,
    timeout: Duration,
    probes: &[&str],
) -> Result<(vmm::Vm, MemorySerial), vmm::VmmError> {
    let serial = MemorySerial::default();
    let mut config = library_config(name, cpus, irqchip, cmdline, timeout, &serial);
    config.probes = probes.iter().map(|p| p.to_string()).collect();
    Ok((vmm::Vm::new(config)?, serial))
}

/// Like [`library_vm`], serving a control socket at `socket` for attached tracing clients.
pub fn library_vm_with_control(
    name: &str,
    cpus: usize,
    cmdline: &str,
    timeout: Duration,
    socket: &std::path::Path,
) -> Result<(vmm::Vm, MemorySerial), vmm::VmmError> {
    let serial = MemorySerial::default();
    let mut config = library_config(
        name,
        cpus,
        vmm::IrqChipMode::Emulated,
        cmdline,
        timeout,
        &serial,
    );
    config.control = Some(socket.to_path_buf());
    Ok((vmm::Vm::new(config)?, serial))
}

/// The configuration of built-in guest `name` with 256 MiB and serial output into `serial`.
fn library_config(
    name: &str,
    cpus: usize,
    irqchip: vmm::IrqChipMode,
    cmdline: &str,
    timeout: Duration,
    serial: &MemorySerial,
) -> vmm::VmConfig {
    let g = guest::find(name).expect("built-in guest");
    vmm::VmConfig {
        image: vmm::Image {
            name: g.name.into(),
            bytes: g.image.to_vec(),
        },
        cpus,
        mem: 256 << 20,
        irqchip,
        cmdline: cmdline.into(),
        modules: Vec::new(),
        timeout: Some(timeout),
        serial_out: Box::new(serial.clone()),
        probes: Vec::new(),
        trace: None,
        control: None,
        timeline: None,
        verbose: false,
    }
}

/// The address range `[start, end)` covering every executable section of a built-in guest's
/// image (read from its ELF section headers, independently of the tracer).
pub fn guest_text_range(guest: &str) -> (u64, u64) {
    use object::{Object, ObjectSection, SectionFlags, SectionKind};
    const SHF_EXECINSTR: u64 = 4;
    let (mut start, mut end) = (u64::MAX, 0);
    for section in guest_elf(guest).sections() {
        let exec = matches!(section.flags(), SectionFlags::Elf { sh_flags } if sh_flags & SHF_EXECINSTR != 0);
        if exec && section.kind() != SectionKind::UninitializedData {
            start = start.min(section.address());
            end = end.max(section.address() + section.size());
        }
    }
    assert!(start < end, "{guest} has no executable section");
    (start, end)
}

/// The sum of `calls=N` over the `xcall-lab: VARIANT: ok calls=N ...` lines the guest printed:
/// its own count of completed cross calls.
pub fn xcall_lab_calls(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("xcall-lab: ") && l.contains(": ok calls="))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
