//! A D program running against the VM: which probes it needs, its per-vCPU runtime state, the
//! probe context built from a trapped vCPU, and the consumer thread that prints records and,
//! at the end, the aggregations.
//!
//! Providers: `dtrace:::BEGIN/END`, `fbt` entry/return probes (traps, see [`crate::probes`]),
//! `profile:::tick-N` and `profile-N` (timers, `timers.rs`), and the event providers
//! `vmexit`, `apic` (`apic_events.rs`) and `sync` (`registry.rs`). Every running program (the
//! one of `run -n`, one per attached client) is a [`Tracing`] in the [`Sessions`] registry.

mod apic_events;
mod context;
pub(crate) mod paging;
mod registry;
mod session;
mod sink;
mod timers;

use std::time::Duration;

use tracer::lang::{compile_for, Kernel, Program, Source, Target, TimerKind};
use tracer::probes::Probe;
use tracer::symbols::kallsyms::ImageKallsyms;

pub use paging::{GuestPaging, Translation};
pub use registry::{Sessions, VcpuAccess};
pub use session::{OnExit, Tracing};
pub use sink::{LocalSink, TraceSink};

/// Why a trace could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The program does not compile (the rendered diagnostic, with line, column and caret).
    #[error("{0}")]
    Compile(String),
    /// A clause matches no probe of the image.
    #[error("probe description {0} does not match any probes (see `hvtrace list`)")]
    NoProbes(String),
    /// A clause needs a provider that is not wired into the VMM yet.
    #[error("probe {0}: the {1} provider is not implemented yet")]
    Unsupported(String, String),
    /// The output file could not be opened.
    #[error("cannot open the trace output {path}: {source}")]
    Output {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The VM a trace runs against.
#[derive(Clone)]
pub struct TraceTarget {
    /// The image's symbols (`%a`, `func()`, probe sites).
    pub symbols: tracer::symbols::ElfSymbols,
    /// Guest RAM.
    pub memory: vm_memory::GuestMemoryMmap,
    /// How each vCPU translates addresses (scripts' memory reads).
    pub paging: std::sync::Arc<GuestPaging>,
    /// vCPU count.
    pub cpus: usize,
    /// When the VM started (`timestamp` counts from it).
    pub boot: std::time::Instant,
    /// The image's kernel types (BTF, current task) for programs, or why it has none.
    pub kernel: std::sync::Arc<Result<Kernel, String>>,
}

/// The kernel types of the image of `kallsyms` for [`plan`]: a Linux kernel's BTF and
/// current-task location, or why there are none (a built-in guest has no `.BTF`). The current
/// task comes from the kallsyms the run's symbol table already decoded, if it did.
pub fn kernel_types(kallsyms: &ImageKallsyms<'_>) -> Result<Kernel, String> {
    Kernel::from_image_with(kallsyms).map_err(|e| e.to_string())
}

/// What to trace and how to print it.
#[derive(Clone, Debug, Default)]
pub struct TraceSpec {
    /// The program's sources: (`-n` / file name, text), in order.
    pub sources: Vec<(String, String)>,
    /// `-q`.
    pub quiet: bool,
    /// `--format json`.
    pub json: bool,
    /// `-o FILE` (stdout otherwise).
    pub output: Option<std::path::PathBuf>,
}

/// Shortest `tick-N` / `profile-N` period honoured (a faster rate would only load the host).
pub(crate) const MIN_TICK: Duration = Duration::from_micros(100);

/// What a program needs from the VM.
pub struct Plan {
    /// The compiled program.
    pub program: Program,
    /// The fbt probes to arm.
    pub fbt: Vec<Probe>,
    /// `tick-N` probes: (probe name, period).
    pub ticks: Vec<(String, Duration)>,
    /// `profile-N` probes: (probe name, period).
    pub profiles: Vec<(String, Duration)>,
    /// Probes fired by VMM events (`vmexit`, `apic`, `sync`), each once.
    pub events: Vec<Probe>,
}

impl Plan {
    /// The program's probe descriptions as `provider:module:function:name` (for
    /// [`crate::probes::named_exactly`]).
    pub fn descriptions(&self) -> Vec<String> {
        self.program
            .clauses
            .iter()
            .flat_map(|c| c.descs.iter())
            .map(|d| format!("{}:{}:{}:{}", d.provider, d.module, d.function, d.name))
            .collect()
    }
}

/// Compiles `spec` against the image's probe catalogue and kernel types (see
/// [`kernel_types`]) and resolves the probes it needs.
pub fn plan(
    spec: &TraceSpec,
    all: &[Probe],
    kernel: &Result<Kernel, String>,
) -> Result<Plan, TraceError> {
    let sources: Vec<Source> = spec
        .sources
        .iter()
        .map(|(name, text)| Source::new(name.clone(), text.clone()))
        .collect();
    let target = Target {
        kernel: kernel.as_ref().map_err(String::as_str),
        probes: all,
    };
    let program = compile_for(&sources, target).map_err(|d| {
        let text = d.render();
        TraceError::Compile(text.strip_prefix("error: ").unwrap_or(&text).to_string())
    })?;
    let mut fbt = Vec::new();
    let mut fbt_seen: std::collections::HashSet<&Probe> = Default::default();
    let mut ticks: Vec<(String, Duration)> = Vec::new();
    let mut profiles: Vec<(String, Duration)> = Vec::new();
    let mut events: Vec<Probe> = Vec::new();
    for clause in &program.clauses {
        let mut any = false;
        for desc in &clause.descs {
            if matches!(desc.provider.as_str(), "" | "profile") {
                match desc.timer() {
                    Some(Ok((kind, ns))) => {
                        any = true;
                        let list = match kind {
                            TimerKind::Tick => &mut ticks,
                            TimerKind::Profile => &mut profiles,
                        };
                        if !list.iter().any(|(n, _)| *n == desc.name) {
                            let period = Duration::from_nanos(ns).max(MIN_TICK);
                            list.push((desc.name.clone(), period));
                        }
                        continue;
                    }
                    Some(Err(why)) => return Err(TraceError::Compile(format!("{desc}: {why}"))),
                    None => {}
                }
            }
            for p in all
                .iter()
                .filter(|p| desc.matches(&p.provider, &p.module, &p.function, &p.name))
            {
                any = true;
                match p.provider.as_str() {
                    "fbt" => {
                        if fbt_seen.insert(p) {
                            fbt.push(p.clone());
                        }
                    }
                    // Timers are resolved from the description's name above; the catalogue's
                    // `profile` entries are examples.
                    "dtrace" | "profile" => {}
                    "vmexit" | "apic" | "sync" => {
                        if !events.contains(p) {
                            events.push(p.clone());
                        }
                    }
                    other => return Err(TraceError::Unsupported(p.to_string(), other.into())),
                }
            }
        }
        if !any {
            let descs: Vec<String> = clause.descs.iter().map(|d| d.to_string()).collect();
            return Err(TraceError::NoProbes(descs.join(", ")));
        }
    }
    Ok(Plan {
        program,
        fbt,
        ticks,
        profiles,
        events,
    })
}
