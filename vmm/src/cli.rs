//! The command line of the `hvtrace` binary (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::irqchip::IrqChipMode;

/// hvtrace: a KVM virtual machine monitor that traces its guest kernel from outside.
#[derive(Debug, Parser)]
#[command(name = "hvtrace", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a guest kernel. Its serial output goes to stdout; its debug-exit status becomes
    /// hvtrace's exit status: a write of `v` to port 0xf4 exits with `v` for hvtrace's own
    /// 64-bit guests, and with `(v << 1) | 1` for multiboot kernels, as QEMU's isa-debug-exit
    /// (also at QEMU's default port 0x501). 124: --timeout expired, 125: the guest hit an
    /// error such as an instruction KVM cannot emulate or a triple fault.
    Run(RunArgs),
    /// List the built-in guests.
    Guests,
    /// List the probes of an image, like `dtrace -l` (optionally only those matching a
    /// `provider:module:function:name` description with globs).
    List(ListArgs),
    /// Run the same guest under hvtrace's APIC (emulated), KVM's (kvm) and split, several times
    /// each, and print a side-by-side comparison with every difference marked.
    Compare(CompareArgs),
    /// Attach a D program to a running VM (`hvtrace run --control SOCKET`) until the program
    /// calls `exit()`, Ctrl-C, or the VM ends. The exit status is the program's `exit()`
    /// status (0 otherwise).
    Trace(TraceArgs),
}

/// Arguments of `hvtrace list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Built-in guest whose probes to list (the default guest when neither --guest nor
    /// --kernel is given).
    #[arg(long, value_name = "NAME", conflicts_with = "kernel")]
    pub guest: Option<String>,
    /// Kernel image whose probes to list: an ELF64 (a Linux vmlinux), or a Linux bzImage
    /// (its zstd payload is decompressed for symbols and types).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Only probes matching this description, e.g. `fbt::xcall_*:entry`.
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Print each fbt probe's function prototype from the image's BTF (`.BTF` section),
    /// like `bpftrace -lv`.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Arguments of `hvtrace run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The guest and its machine.
    #[command(flatten)]
    pub g: GuestArgs,
    /// A boot module for a multiboot or PVH kernel: FILE's bytes, with ARGS (everything after
    /// the first comma, may hold spaces) as its string (repeatable, in order).
    #[arg(long = "module", value_name = "FILE[,ARGS]")]
    pub modules: Vec<String>,
    /// An initramfs for a Linux kernel: a PVH kernel's first boot module, a bzImage's
    /// `ramdisk_image`.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Interrupt controller: hvtrace's own user-space APIC (emulated), KVM's in-kernel irqchip
    /// (kvm), or KVM local APICs with a user-space IOAPIC (split).
    #[arg(long, value_enum, default_value_t = IrqChipMode::Emulated)]
    pub irqchip: IrqChipMode,
    /// Stop the guest after this many seconds and print each vCPU's state (exit status 124).
    #[arg(long, value_parser = parse_timeout, value_name = "SECS")]
    pub timeout: Option<Duration>,
    /// The D program and how to print its output.
    #[command(flatten)]
    pub d: ProgramArgs,
    /// Verbose: probe how this host's KVM handles trap instructions (int3, hardware
    /// breakpoints, single-step) and print the results and the trap strategy probes would use
    /// to stderr; for a bzImage, also when and at which KASLR slide its probes were armed.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Write a Chrome trace-event / Perfetto JSON timeline of the run to FILE: per-vCPU tracks
    /// with running/halted/stopped states, exits, APIC events (emulated irqchip) and probe hits
    /// (at most 500,000 events; a truncated file says so).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Serve a control socket at this path (created mode 0600, removed at the end) so that
    /// `hvtrace trace --attach SOCKET` can attach D programs to the running VM.
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
}

/// The guest and its machine, shared by `run` and `compare`.
#[derive(Debug, Args)]
pub struct GuestArgs {
    /// Built-in guest (see `hvtrace guests`); each subcommand has a default when neither
    /// --guest nor --kernel is given.
    #[arg(long, value_name = "NAME", conflicts_with = "kernel")]
    pub guest: Option<String>,
    /// Kernel image: a Multiboot (v1) kernel (ELF32 or a.out kludge, entered in 32-bit
    /// protected mode with a multiboot information structure, as QEMU's -kernel), a Linux
    /// vmlinux (PVH entry) or bzImage (64-bit boot protocol), or else an ELF64 image loaded
    /// at its physical addresses and entered in 64-bit mode.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Number of vCPUs (1 to the host's limit, at most 254).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cpus: usize,
    /// Guest RAM: bytes, or a number with a K, M or G suffix (KiB/MiB/GiB accepted).
    #[arg(long, default_value = "256M", value_parser = parse_mem_size, value_name = "SIZE")]
    pub mem: u64,
    /// Command line handed to the guest (built-in guests read options from it).
    #[arg(long, default_value = "", value_name = "STR")]
    pub cmdline: String,
}

/// Arguments of `hvtrace compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The guest (default: apic-conformance) and its machine.
    #[command(flatten)]
    pub g: GuestArgs,
    /// Runs per irqchip mode.
    #[arg(long, default_value_t = 3, value_name = "R", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Bound on each run, in seconds (a run still going then counts as a hang).
    #[arg(long, default_value = "60", value_parser = parse_timeout, value_name = "SECS")]
    pub timeout: Duration,
    /// Also write a self-contained HTML report (tables and plots) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Output format of the comparison on stdout.
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,
    /// Also run the same image under QEMU (qemu-system-x86_64 -kernel, through the guest's
    /// multiboot header) with KVM's irqchip (column qemu-kvm) and with QEMU's own APIC
    /// (qemu-user, kernel_irqchip=off). Without QEMU installed hvtrace says so and compares
    /// its own irqchips only.
    #[arg(long)]
    pub with_qemu: bool,
}

/// Arguments of `hvtrace trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The control socket of a running `hvtrace run --control SOCKET`.
    #[arg(long, value_name = "SOCKET")]
    pub attach: PathBuf,
    /// The D program and how to print its output.
    #[command(flatten)]
    pub d: ProgramArgs,
}

/// A D program (`-n`, `-s`) and its output options, shared by `run` and `trace`.
#[derive(Debug, Args)]
pub struct ProgramArgs {
    /// A D program to run against the guest, e.g.
    /// `fbt::xcall*:entry { @[probefunc, cpu] = count(); }` (repeatable).
    #[arg(short = 'n', value_name = "PROGRAM")]
    pub program: Vec<String>,
    /// A file holding a D program (repeatable).
    #[arg(short = 's', value_name = "FILE")]
    pub script: Vec<PathBuf>,
    /// Quiet: only the program's own output, not a line per probe firing.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// Write the trace output to FILE instead of stdout (the guest's serial output stays on
    /// stdout).
    #[arg(short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Trace output format.
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,
}

/// How trace records and aggregations are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    /// DTrace's text layout.
    Text,
    /// One JSON object per record and per aggregation.
    Json,
}

/// Parses a memory size such as `256M`, `1GiB`, `65536` or `512k`.
pub fn parse_mem_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!("invalid memory size '{s}': expected a number with an optional K, M or G suffix, e.g. 256M")
    };
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("memory size '{s}' is too large"))
}

/// Splits a `--module FILE[,ARGS]` value into the file and its string (empty without a comma).
pub fn parse_module_arg(s: &str) -> (PathBuf, String) {
    match s.split_once(',') {
        Some((file, args)) => (PathBuf::from(file), args.to_string()),
        None => (PathBuf::from(s), String::new()),
    }
}

/// Parses a positive number of seconds (fractions allowed).
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid timeout '{s}': expected a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite() && secs < 1e9) {
        return Err(format!(
            "invalid timeout '{s}': must be a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem_size("256M"), Ok(256 << 20));
        assert_eq!(parse_mem_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_mem_size("512k"), Ok(512 << 10));
        assert_eq!(parse_mem_size("65536"), Ok(65536));
        for bad in ["", "M", "12X", "-1M", "1.5G", "ten"] {
            assert!(parse_mem_size(bad).is_err(), "{bad}");
        }
        assert!(parse_mem_size("99999999999999G").is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "x", "inf", "NaN"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "hvtrace",
            "run",
            "--guest",
            "smp",
            "--cpus",
            "4",
            "--mem",
            "64M",
            "--irqchip",
            "kvm",
            "--timeout",
            "3",
            "--cmdline",
            "a=b",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.g.guest.as_deref(), Some("smp"));
        assert_eq!(args.g.cpus, 4);
        assert_eq!(args.g.mem, 64 << 20);
        assert_eq!(args.irqchip, IrqChipMode::Kvm);
        assert_eq!(args.timeout, Some(Duration::from_secs(3)));
        assert_eq!(args.g.cmdline, "a=b");
        assert!(args.modules.is_empty());
        assert!(!args.verbose);
        let cli = Cli::try_parse_from([
            "hvtrace", "run", "--kernel", "k", "--module", "a,x y", "--module", "b",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.modules, ["a,x y", "b"]);
        assert_eq!(
            parse_module_arg("a,x y,z"),
            (PathBuf::from("a"), "x y,z".into())
        );
        assert_eq!(parse_module_arg("b"), (PathBuf::from("b"), String::new()));
        let cli = Cli::try_parse_from(["hvtrace", "run", "-v"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert!(args.verbose);
    }

    #[test]
    fn defaults_and_conflicts() {
        let cli = Cli::try_parse_from(["hvtrace", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.irqchip, IrqChipMode::Emulated);
        assert_eq!(args.g.mem, 256 << 20);
        assert_eq!(args.g.cpus, 1);
        assert!(Cli::try_parse_from(["hvtrace", "run", "--guest", "a", "--kernel", "b"]).is_err());
        assert!(Cli::try_parse_from(["hvtrace", "run", "--irqchip", "pic"]).is_err());
        assert!(Cli::try_parse_from(["hvtrace", "run", "--mem", "lots"]).is_err());
        assert!(Cli::try_parse_from(["hvtrace", "trace", "-n", "BEGIN {}"]).is_err());
        let cli =
            Cli::try_parse_from(["hvtrace", "trace", "--attach", "s", "-q", "-n", "x"]).unwrap();
        let Command::Trace(args) = cli.command else {
            panic!("not trace")
        };
        assert_eq!(args.attach, PathBuf::from("s"));
        assert!(args.d.quiet);
        Cli::command().debug_assert();
    }
}
