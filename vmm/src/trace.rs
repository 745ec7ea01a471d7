//! A D program running against the VM: which probes it needs, its per-vCPU runtime state, the
//! probe context built from a trapped vCPU, and the consumer thread that prints records and,
//! at the end, the aggregations.
//!
//! Providers wired so far: `dtrace:::BEGIN` (before the first guest instruction),
//! `dtrace:::END` (after the run ends), `profile:::tick-N` (a VMM timer, fired as CPU 0 with no
//! guest registers), `vmexit:::KIND` (fired by the exit dispatcher on the vCPU's thread) and
//! `fbt` entry/return probes (hlt traps, see [`crate::probes`]). A clause naming only other
//! providers (`apic`, `sync`, `profile-N`) is refused when the program is set up, naming the
//! provider.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tracer::lang::{compile, Program, Source, TimerKind};
use tracer::probes::Probe;
use tracer::runtime::{
    Consumer, ConsumerOptions, Limits, MemoryError, Output, OutputFormat, ProbeContext, ProbeInfo,
    Runtime, VcpuState,
};
use tracer::symbols::{ElfSymbols, SymbolSource};
use tracer::traps::Regs;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::probes::HitHook;

/// How often the consumer thread drains the per-vCPU buffers.
const CONSUMER_PERIOD: Duration = Duration::from_millis(20);
/// Deepest `stack()` walk.
const MAX_FRAMES: usize = 32;

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

/// The running trace.
pub struct Tracing {
    runtime: Runtime,
    vcpus: Vec<Mutex<VcpuState>>,
    /// `ProbeInfo` and matching clauses per armed probe (indexed like the `ProbeSet`).
    armed: Vec<(Arc<ProbeInfo>, Vec<usize>, u64)>,
    symbols: ElfSymbols,
    memory: GuestMemoryMmap,
    boot: Instant,
    consumer: Mutex<Consumer>,
    out: Mutex<Box<dyn Write + Send>>,
    exit_requested: AtomicBool,
    end: Mutex<Option<crate::outcome::EndHandle>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stop: AtomicBool,
    /// `tick-N` probes: (probe, clauses, period).
    ticks: Vec<(Arc<ProbeInfo>, Vec<usize>, Duration)>,
    /// `vmexit:::KIND` probes: (kind, probe, clauses).
    vmexits: Vec<(String, Arc<ProbeInfo>, Vec<usize>)>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// Shortest `tick-N` period honoured (a faster rate would only load the host).
const MIN_TICK: Duration = Duration::from_micros(100);

/// What a program needs from the VM.
pub struct Plan {
    /// The compiled program.
    pub program: Program,
    /// The fbt probes to arm.
    pub fbt: Vec<Probe>,
    /// `tick-N` probes: (probe name, period).
    pub ticks: Vec<(String, Duration)>,
    /// `vmexit:::KIND` probes the program uses.
    pub vmexits: Vec<String>,
}

/// Compiles `spec` and resolves the probes it needs against the image's probe catalogue.
pub fn plan(spec: &TraceSpec, all: &[Probe]) -> Result<Plan, TraceError> {
    let sources: Vec<Source> = spec
        .sources
        .iter()
        .map(|(name, text)| Source::new(name.clone(), text.clone()))
        .collect();
    let program = compile(&sources).map_err(|d| {
        let text = d.render();
        TraceError::Compile(text.strip_prefix("error: ").unwrap_or(&text).to_string())
    })?;
    let mut fbt = Vec::new();
    let mut ticks: Vec<(String, Duration)> = Vec::new();
    let mut vmexits: Vec<String> = Vec::new();
    for clause in &program.clauses {
        let mut any = false;
        for desc in &clause.descs {
            if matches!(desc.provider.as_str(), "" | "profile") {
                match desc.timer() {
                    Some(Ok((TimerKind::Tick, ns))) => {
                        any = true;
                        if !ticks.iter().any(|(n, _)| *n == desc.name) {
                            let period = Duration::from_nanos(ns).max(MIN_TICK);
                            ticks.push((desc.name.clone(), period));
                        }
                        continue;
                    }
                    Some(Ok((TimerKind::Profile, _))) => {
                        return Err(TraceError::Unsupported(
                            desc.to_string(),
                            "profile-N".into(),
                        ))
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
                        if !fbt.contains(p) {
                            fbt.push(p.clone());
                        }
                    }
                    "dtrace" => {}
                    "vmexit" => {
                        if !vmexits.contains(&p.name) {
                            vmexits.push(p.name.clone());
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
        vmexits,
    })
}

impl Tracing {
    /// The runtime for `program` on `cpus` vCPUs; `armed` lists the fbt probes in the order the
    /// `ProbeSet` armed them.
    pub fn new(
        spec: &TraceSpec,
        plan: Plan,
        armed: &[Probe],
        symbols: ElfSymbols,
        all: &[Probe],
        memory: GuestMemoryMmap,
        cpus: usize,
    ) -> Result<Arc<Self>, TraceError> {
        let Plan {
            program,
            ticks,
            vmexits,
            ..
        } = plan;
        let program = Arc::new(program);
        let runtime = Runtime::new(Arc::clone(&program), Limits::default());
        let armed = armed
            .iter()
            .map(|p| {
                let id = all.iter().position(|q| q == p).map_or(0, |i| i as u32 + 1);
                let info = Arc::new(ProbeInfo::new(
                    id,
                    p.provider.clone(),
                    p.module.clone(),
                    p.function.clone(),
                    p.name.clone(),
                ));
                let clauses =
                    program.clauses_matching(&p.provider, &p.module, &p.function, &p.name);
                let start = symbols.by_name(&p.function).map_or(0, |f| f.address);
                (info, clauses, start)
            })
            .collect();
        let ticks = ticks
            .iter()
            .map(|(name, period)| {
                let info = Arc::new(ProbeInfo::new(0, "profile", "", "", name.clone()));
                let clauses = program.clauses_matching("profile", "", "", name);
                (info, clauses, *period)
            })
            .collect();
        let vmexits = vmexits
            .iter()
            .map(|kind| {
                let id = all
                    .iter()
                    .position(|q| q.provider == "vmexit" && q.name == *kind)
                    .map_or(0, |i| i as u32 + 1);
                let info = Arc::new(ProbeInfo::new(id, "vmexit", "", "", kind.clone()));
                let clauses = program.clauses_matching("vmexit", "", "", kind);
                (kind.clone(), info, clauses)
            })
            .collect();
        let options = ConsumerOptions {
            quiet: spec.quiet,
            format: if spec.json {
                OutputFormat::Json
            } else {
                OutputFormat::Text
            },
        };
        let sym_for_consumer = symbols.clone();
        let consumer = Consumer::new(Arc::clone(&program), options)
            .with_symbolizer(move |a| symbolize(&sym_for_consumer, a));
        let out: Box<dyn Write + Send> = match &spec.output {
            Some(path) => {
                Box::new(
                    std::fs::File::create(path).map_err(|source| TraceError::Output {
                        path: path.display().to_string(),
                        source,
                    })?,
                )
            }
            None => Box::new(std::io::stdout()),
        };
        Ok(Arc::new(Tracing {
            vcpus: (0..cpus).map(|_| Mutex::new(runtime.new_vcpu())).collect(),
            runtime,
            armed,
            symbols,
            memory,
            boot: Instant::now(),
            consumer: Mutex::new(consumer),
            out: Mutex::new(out),
            exit_requested: AtomicBool::new(false),
            end: Mutex::new(None),
            thread: Mutex::new(None),
            stop: AtomicBool::new(false),
            ticks,
            vmexits,
            ticker: Mutex::new(None),
        }))
    }

    /// Fires BEGIN and starts the consumer thread; `end` ends the run on `exit()`.
    pub fn start(self: &Arc<Self>, end: crate::outcome::EndHandle) {
        self.fire_dtrace(ProbeInfo::begin());
        *self.end.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("trace-consumer".into())
            .spawn(move || {
                while !me.stop.load(Ordering::SeqCst) {
                    me.drain();
                    std::thread::sleep(CONSUMER_PERIOD);
                }
            })
            .ok();
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = handle;
        if !self.ticks.is_empty() {
            let me = Arc::clone(self);
            let ticker = std::thread::Builder::new()
                .name("trace-tick".into())
                .spawn(move || me.run_ticks())
                .ok();
            *self.ticker.lock().unwrap_or_else(|p| p.into_inner()) = ticker;
        }
        self.drain();
    }

    /// A `kind` exit of `cpu` (from the exit dispatcher): fires `vmexit:::kind` if the program
    /// uses it. `args` become `arg0`..`arg3` (see the provider's documentation in the README).
    pub fn vmexit(&self, cpu: usize, kind: &str, args: [u64; 4]) {
        let Some((_, info, clauses)) = self.vmexits.iter().find(|(k, _, _)| k == kind) else {
            return;
        };
        let ctx = HitContext {
            tracing: self,
            cpu: cpu as u32,
            regs: Regs::default(),
            site: 0,
            start: 0,
            is_return: false,
            timestamp: self.now_ns(),
            args: Some(args),
        };
        if let Some(v) = self.vcpus.get(cpu) {
            let mut state = v.lock().unwrap_or_else(|p| p.into_inner());
            self.runtime.fire(&mut state, info, clauses, &ctx);
        }
    }

    /// Fires every `tick-N` clause at its period until the trace stops.
    fn run_ticks(&self) {
        let start = Instant::now();
        let mut next: Vec<Instant> = self.ticks.iter().map(|(_, _, p)| start + *p).collect();
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            for (i, (info, clauses, period)) in self.ticks.iter().enumerate() {
                if next[i] <= now {
                    next[i] += *period;
                    if next[i] <= now {
                        next[i] = now + *period; // fell behind: skip missed ticks
                    }
                    self.fire_without_registers(info, clauses);
                }
            }
            let wake = next.iter().min().copied().unwrap_or(now + CONSUMER_PERIOD);
            std::thread::sleep(
                wake.saturating_duration_since(Instant::now())
                    .min(CONSUMER_PERIOD),
            );
        }
    }

    /// Fires END, stops the consumer, folds and prints the aggregations. Returns the status of
    /// the program's `exit()`, if it called it.
    pub fn finish(&self) -> Option<i32> {
        self.stop.store(true, Ordering::SeqCst);
        for slot in [&self.thread, &self.ticker] {
            if let Some(t) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = t.join();
            }
        }
        if !self.exit_requested.load(Ordering::SeqCst) {
            self.fire_dtrace(ProbeInfo::end());
        }
        self.drain();
        let mut consumer = self.consumer.lock().unwrap_or_else(|p| p.into_inner());
        for v in &self.vcpus {
            let aggs = v
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take_aggregations();
            consumer.fold(aggs);
        }
        let mut out = Output::default();
        consumer.finish(&mut out);
        self.write(&out);
        consumer.exit_status()
    }

    fn fire_dtrace(&self, info: ProbeInfo) {
        let clauses = self.runtime.program().clauses_matching(
            &info.provider,
            &info.module,
            &info.function,
            &info.name,
        );
        if clauses.is_empty() {
            return;
        }
        self.fire_without_registers(&Arc::new(info), &clauses);
    }

    /// Fires `clauses` for a probe that has no guest registers (BEGIN, END, tick-N), as CPU 0.
    fn fire_without_registers(&self, info: &Arc<ProbeInfo>, clauses: &[usize]) {
        if clauses.is_empty() {
            return;
        }
        let ctx = HitContext {
            tracing: self,
            cpu: 0,
            regs: Regs::default(),
            site: 0,
            start: 0,
            is_return: false,
            timestamp: self.now_ns(),
            args: None,
        };
        if let Some(v) = self.vcpus.first() {
            let mut state = v.lock().unwrap_or_else(|p| p.into_inner());
            self.runtime.fire(&mut state, info, clauses, &ctx);
        }
    }

    fn now_ns(&self) -> u64 {
        self.boot.elapsed().as_nanos() as u64
    }

    /// Folds every vCPU's partial aggregates into the consumer, then moves their records to it
    /// and prints them (so a `printa` sees every update made before it).
    fn drain(&self) {
        let mut batches = Vec::with_capacity(self.vcpus.len());
        let mut partials = Vec::with_capacity(self.vcpus.len());
        for v in &self.vcpus {
            let mut state = v.lock().unwrap_or_else(|p| p.into_inner());
            partials.push(state.take_aggregations());
            batches.push(state.take_records());
        }
        let records = tracer::runtime::merge_records(batches);
        let mut consumer = self.consumer.lock().unwrap_or_else(|p| p.into_inner());
        for partial in partials {
            consumer.fold(partial);
        }
        let mut out = Output::default();
        consumer.consume(&records, &mut out);
        for (cpu, v) in self.vcpus.iter().enumerate() {
            let drops = v.lock().unwrap_or_else(|p| p.into_inner()).take_drops();
            consumer.report_drops(cpu as u32, drops, &mut out);
        }
        let dynamic = self.runtime.take_dynamic_drops();
        consumer.report_dynamic_drops(dynamic, &mut out);
        let exit = consumer.exit_status().is_some();
        drop(consumer);
        self.write(&out);
        if exit && !self.exit_requested.swap(true, Ordering::SeqCst) {
            if let Some(end) = self.end.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                end.end();
            }
        }
    }

    fn write(&self, out: &Output) {
        let mut w = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(out.stdout.as_bytes());
        let _ = w.flush();
        if !out.stderr.is_empty() {
            eprint!("{}", out.stderr);
        }
    }
}

impl HitHook for Tracing {
    fn hit(&self, cpu: usize, index: usize, probe: &Probe, site: u64, regs: &Regs) {
        let Some((info, clauses, start)) = self.armed.get(index) else {
            return;
        };
        if clauses.is_empty() {
            return;
        }
        let ctx = HitContext {
            tracing: self,
            cpu: cpu as u32,
            regs: *regs,
            site,
            start: *start,
            is_return: probe.name == "return",
            timestamp: self.now_ns(),
            args: None,
        };
        if let Some(v) = self.vcpus.get(cpu) {
            let mut state = v.lock().unwrap_or_else(|p| p.into_inner());
            self.runtime.fire(&mut state, info, clauses, &ctx);
        }
    }
}

/// A vCPU stopped at a probe, as the runtime sees it.
struct HitContext<'a> {
    tracing: &'a Tracing,
    cpu: u32,
    regs: Regs,
    site: u64,
    start: u64,
    is_return: bool,
    timestamp: u64,
    /// Arguments of a probe without guest registers (`vmexit`); registers read as absent.
    args: Option<[u64; 4]>,
}

impl HitContext<'_> {
    fn read_u64(&self, gva: u64) -> Option<u64> {
        self.tracing.memory.read_obj(GuestAddress(gva)).ok()
    }
}

impl ProbeContext for HitContext<'_> {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn timestamp_ns(&self) -> u64 {
        self.timestamp
    }

    fn walltimestamp_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn arg(&self, n: usize) -> u64 {
        if let Some(args) = self.args {
            return args.get(n).copied().unwrap_or(0);
        }
        let r = &self.regs;
        if self.is_return {
            // DTrace fbt return: arg0 = offset of the return site, arg1 = return value.
            return match n {
                0 => self.site.wrapping_sub(self.start),
                1 => r.rax,
                _ => 0,
            };
        }
        match n {
            0 => r.rdi,
            1 => r.rsi,
            2 => r.rdx,
            3 => r.rcx,
            4 => r.r8,
            5 => r.r9,
            _ => 0,
        }
    }

    fn reg(&self, n: usize) -> Option<u64> {
        if self.args.is_some() {
            return None;
        }
        let r = &self.regs;
        Some(match n {
            0 => r.rax,
            1 => r.rcx,
            2 => r.rdx,
            3 => r.rbx,
            4 => r.rsp,
            5 => r.rbp,
            6 => r.rsi,
            7 => r.rdi,
            8 => r.r8,
            9 => r.r9,
            10 => r.r10,
            11 => r.r11,
            12 => r.r12,
            13 => r.r13,
            14 => r.r14,
            15 => r.r15,
            16 => r.rip,
            17 => r.rflags,
            _ => return None,
        })
    }

    fn caller(&self) -> u64 {
        // At an fbt entry and at a `ret`, the return address is on top of the stack.
        self.read_u64(self.regs.rsp).unwrap_or(0)
    }

    fn read_memory(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.tracing
            .memory
            .read_slice(buf, GuestAddress(gva))
            .map_err(|_| MemoryError { address: gva })
    }

    fn symbolize(&self, addr: u64) -> Option<String> {
        symbolize(&self.tracing.symbols, addr)
    }

    fn stack(&self, max: usize) -> Option<Vec<u64>> {
        // Frame-pointer walk: the built-in guests keep `push %rbp; mov %rsp,%rbp` frames.
        let mut frames = vec![self.regs.rip, self.caller()];
        let mut rbp = self.regs.rbp;
        while frames.len() < max.min(MAX_FRAMES) {
            let (Some(next), Some(ret)) = (self.read_u64(rbp), self.read_u64(rbp.wrapping_add(8)))
            else {
                break;
            };
            if ret == 0 || next <= rbp {
                break;
            }
            frames.push(ret);
            rbp = next;
        }
        frames.truncate(max);
        Some(frames)
    }
}

fn symbolize(symbols: &ElfSymbols, addr: u64) -> Option<String> {
    let (f, off) = symbols.lookup(addr)?;
    Some(if off == 0 {
        f.name.clone()
    } else {
        format!("{}+{off:#x}", f.name)
    })
}
