//! The `hvtrace` binary: parses the command line and runs the VMM.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use vmm::cli::{
    parse_module_arg, Cli, Command, CompareArgs, ListArgs, ProgramArgs, RunArgs, TraceArgs,
};
use vmm::loader::Module;
use vmm::{Image, Outcome, Vm, VmConfig, VmmError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Guests => {
            list_guests();
            Ok(ExitCode::SUCCESS)
        }
        Command::List(args) => list_probes(&args),
        Command::Trace(args) => attach(&args),
        Command::Compare(args) => compare(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("hvtrace: error: {}", error_line(&e));
        ExitCode::FAILURE
    })
}

/// The error and its causes on one line, each cause once (typed errors often already name
/// their source in their own message).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn list_guests() {
    let guests = || guest::all().iter().chain(guest::multiboot_kernels());
    let width = guests().map(|g| g.name.len()).max().unwrap_or(0);
    for g in guests() {
        let default = if g.name == guest::DEFAULT_GUEST {
            " (default)"
        } else {
            ""
        };
        println!("{:<width$}  {}{default}", g.name, g.description);
    }
}

fn list_probes(args: &ListArgs) -> Result<ExitCode> {
    let image = image(args.guest.as_deref(), args.kernel.as_deref())?;
    // `.symtab` where the image has one, else the kernel's own kallsyms (a distribution's
    // vmlinux).
    // A bzImage's symbols and types are in the kernel ELF its payload decompresses to.
    let elf = tracer::bzimage::kernel_elf(&image.bytes)
        .with_context(|| format!("cannot list the probes of {}", image.name))?;
    let symbols = tracer::symbols::ElfSymbols::load(&elf)
        .with_context(|| format!("cannot list the probes of {}", image.name))?;
    let probes = tracer::probes::catalogue(&elf, &symbols);
    let pattern = args.pattern.as_deref().unwrap_or("");
    let matching: Vec<_> = (1..)
        .zip(&probes)
        .filter(|(_, p)| p.matches(pattern))
        .collect();
    if matching.is_empty() {
        anyhow::bail!("no probe of {} matches '{pattern}'", image.name);
    }
    if !args.verbose {
        print!("{}", tracer::probes::listing(matching));
        return Ok(ExitCode::SUCCESS);
    }
    let btf = match tracer::btf::Btf::from_elf(&elf) {
        Ok(btf) => Some(btf),
        Err(e) => {
            eprintln!("hvtrace: no prototypes for {}: {e}", image.name);
            None
        }
    };
    let detail = |p: &tracer::probes::Probe| {
        let btf = btf.as_ref()?;
        if p.provider != "fbt" {
            return None;
        }
        Some(match btf.function(&p.function) {
            Some(proto) => btf.render_prototype(&proto),
            None => "(no BTF prototype)".to_owned(),
        })
    };
    print!("{}", tracer::probes::listing_with(matching, detail));
    Ok(ExitCode::SUCCESS)
}

fn image(guest_name: Option<&str>, kernel: Option<&std::path::Path>) -> Result<Image> {
    if let Some(path) = kernel {
        let bytes = std::fs::read(path).map_err(|source| VmmError::ImageRead {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(Image {
            name: path.display().to_string(),
            bytes,
        });
    }
    let name = guest_name.unwrap_or(guest::DEFAULT_GUEST);
    let g = guest::find(name).ok_or_else(|| VmmError::UnknownGuest {
        name: name.to_string(),
        known: guest::all()
            .iter()
            .chain(guest::multiboot_kernels())
            .map(|g| g.name)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    Ok(Image {
        name: format!("built-in guest '{}'", g.name),
        bytes: g.image.to_vec(),
    })
}

/// Reads the `--initrd FILE` (first, with no string) and each `--module FILE[,ARGS]`.
fn modules(initrd: Option<&std::path::Path>, specs: &[String]) -> Result<Vec<Module>> {
    let initrd = initrd.map(|p| (p.to_path_buf(), String::new()));
    initrd
        .into_iter()
        .chain(specs.iter().map(|spec| parse_module_arg(spec)))
        .map(|(path, args)| {
            let bytes = std::fs::read(&path).map_err(|source| VmmError::ModuleRead {
                path: path.clone(),
                source,
            })?;
            Ok(Module { bytes, args })
        })
        .collect()
}

/// The D program given with `-n` / `-s`, if any.
fn trace_spec(args: &ProgramArgs) -> Result<Option<vmm::trace::TraceSpec>> {
    if args.program.is_empty() && args.script.is_empty() {
        return Ok(None);
    }
    let mut sources = Vec::new();
    for (i, p) in args.program.iter().enumerate() {
        sources.push((format!("-n #{}", i + 1), p.clone()));
    }
    for path in &args.script {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read D script {}", path.display()))?;
        sources.push((path.display().to_string(), text));
    }
    Ok(Some(vmm::trace::TraceSpec {
        sources,
        quiet: args.quiet,
        json: args.format == vmm::cli::TraceFormat::Json,
        output: args.output.clone(),
    }))
}

/// `-v`: the host's trap probes and the strategy probes of this run would use, on stderr.
/// Only here does a run without probes pay for probing (milliseconds).
fn print_trap_strategy(irqchip: vmm::IrqChipMode) {
    let host = vmm::host_traps::host_traps();
    for line in host.lines() {
        eprintln!("hvtrace: {line}");
    }
    match vmm::host_traps::choose_strategy(host, irqchip) {
        Ok(choice) => eprintln!(
            "hvtrace: {choice} [probing took {:.3} ms]",
            host.took.as_secs_f64() * 1e3
        ),
        Err(none) => eprintln!("hvtrace: {none}"),
    }
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let config = VmConfig {
        image: image(args.g.guest.as_deref(), args.g.kernel.as_deref())?,
        cpus: args.g.cpus,
        mem: args.g.mem,
        irqchip: args.irqchip,
        cmdline: args.g.cmdline.clone(),
        modules: modules(args.initrd.as_deref(), &args.modules)?,
        timeout: args.timeout,
        serial_out: Box::new(vmm::console::stdout().guest()),
        probes: Vec::new(),
        trace: trace_spec(&args.d)?,
        control: args.control.clone(),
        timeline: args
            .timeline
            .as_ref()
            .map(|_| vmm::timeline::Timeline::new(vmm::timeline::DEFAULT_MAX_EVENTS)),
        verbose: args.verbose,
    };
    let timeline = config.timeline.clone();
    let title = format!(
        "hvtrace: {}, {} vCPUs, --irqchip {}",
        config.image.name, config.cpus, config.irqchip
    );
    let vm = Vm::new(config).map_err(|e| match e {
        // A program error is about the program, not the VM: say it as it is.
        VmmError::Trace(t) => anyhow::Error::new(t),
        other => anyhow::Error::new(other).context("cannot start the VM"),
    })?;
    // After the VM exists: on this project's software KVM, a guest created after the probes'
    // throwaway VMs ran its bzImage decompressor many times slower (measured: no output in
    // 25 s, against 2 MiB in 25 s when the probes ran after it).
    if args.verbose {
        print_trap_strategy(args.irqchip);
        vmm::probes::report_lifts(true);
    }
    let end = vm.end_handle();
    on_ctrl_c(move || end.end())?;
    let outcome = vm.run();
    // Whatever ended the run, the guest's unfinished last line is not lost.
    vmm::console::settle_stdout();
    let outcome = outcome?;
    if let (Some(path), Some(timeline)) = (&args.timeline, &timeline) {
        write_timeline(path, &title, args.g.cpus, timeline)?;
    }
    match &outcome {
        Outcome::GuestExit(_) => {}
        Outcome::Stopped => eprintln!("hvtrace: the run was ended from outside the guest"),
        Outcome::TraceExit(_) => {}
        Outcome::Fault(details) => eprintln!("hvtrace: {details}"),
        Outcome::Timeout { after, vcpus } => {
            eprintln!(
                "hvtrace: timeout: the guest was still running after {:.3} s; vCPU state:",
                after.as_secs_f64()
            );
            for v in vcpus {
                eprintln!("  {v}");
            }
        }
    }
    Ok(ExitCode::from(outcome.exit_status()))
}

/// Runs `stop` on the first Ctrl-C (SIGINT, SIGTERM or SIGHUP); a second one exits at once
/// with status 130.
fn on_ctrl_c(stop: impl Fn() + Send + 'static) -> Result<()> {
    let pressed = std::sync::atomic::AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if pressed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        stop();
    })
    .context("cannot install the Ctrl-C handler")
}

/// `hvtrace trace --attach SOCKET`: runs a D program in a running VM.
fn attach(args: &TraceArgs) -> Result<ExitCode> {
    let spec = trace_spec(&args.d)?
        .ok_or_else(|| anyhow::anyhow!("nothing to trace: give a D program with -n or -s"))?;
    let attachment = vmm::control::Attachment::connect(&args.attach, &spec)?;
    on_ctrl_c(attachment.stopper()?)?;
    let mut out: Box<dyn std::io::Write> = match &args.d.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot open the trace output {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let quiet = spec.quiet;
    let ended = attachment.run(&mut out, &mut std::io::stderr(), &mut |probes| {
        if !quiet {
            eprintln!(
                "hvtrace: attached to {}: {probes} fbt probes armed",
                args.attach.display()
            );
        }
    })?;
    if ended.reason == "vm-ended" && !quiet {
        eprintln!("hvtrace: the VM ended");
    }
    Ok(ExitCode::from(ended.status.map_or(0, |s| (s & 0xff) as u8)))
}

/// Writes the run's timeline to `path` as trace-event JSON, saying so when it was truncated.
fn write_timeline(
    path: &std::path::Path,
    title: &str,
    cpus: usize,
    timeline: &vmm::timeline::Timeline,
) -> Result<()> {
    let (events, dropped) = timeline.snapshot();
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot write the timeline {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    vmm::timeline::write_trace_events(&mut w, title, cpus, &events, dropped, timeline.now_ns())
        .and_then(|()| std::io::Write::flush(&mut w))
        .with_context(|| format!("cannot write the timeline {}", path.display()))?;
    if dropped > 0 {
        eprintln!(
            "hvtrace: timeline truncated: kept the first {} events, dropped {dropped} (see {})",
            events.len(),
            path.display()
        );
    }
    Ok(())
}

/// `hvtrace compare`: every irqchip mode, side by side.
fn compare(args: &CompareArgs) -> Result<ExitCode> {
    use vmm::compare::Column;
    let guest = args
        .g
        .guest
        .as_deref()
        .or(args.g.kernel.is_none().then_some("apic-conformance"));
    let spec = vmm::compare::RunSpec {
        image: image(guest, args.g.kernel.as_deref())?,
        cpus: args.g.cpus,
        mem: args.g.mem,
        cmdline: args.g.cmdline.clone(),
        timeout: args.timeout,
    };
    let runs = args.runs as usize;
    let mut columns: Vec<Column> = vmm::compare::MODES.map(Column::Hvtrace).to_vec();
    let qemu = if args.with_qemu {
        match vmm::qemu::find_qemu() {
            Ok(path) => {
                columns.extend(vmm::compare::QEMU_COLUMNS.map(Column::Qemu));
                Some(path)
            }
            Err(e) => {
                eprintln!("hvtrace: compare: --with-qemu: {e}; comparing hvtrace's irqchips only");
                None
            }
        }
    } else {
        None
    };
    let comparison =
        vmm::compare::compare(&spec, runs, &columns, qemu.as_deref(), &mut |label, i| {
            eprintln!("hvtrace: compare: {label}, run {} of {runs}", i + 1)
        })
        .context("cannot run the comparison")?;
    match args.format {
        vmm::cli::TraceFormat::Text => print!("{}", vmm::compare::text_report(&comparison)),
        vmm::cli::TraceFormat::Json => println!("{}", vmm::compare::json_report(&comparison)),
    }
    if let Some(path) = &args.report {
        std::fs::write(path, vmm::compare::html_report(&comparison))
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        eprintln!("hvtrace: compare: HTML report in {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
