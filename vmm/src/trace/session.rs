//! One running D program ([`Tracing`]): its runtime and per-vCPU state, the consumer thread
//! that prints records, the `tick-N` timer, and the END/aggregation output at the end.
//!
//! A `run -n PROG` has one; every client attached through the control socket has its own,
//! with its own output, aggregations and `exit()`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracer::probes::Probe;
use tracer::runtime::{
    Consumer, ConsumerOptions, Limits, Output, OutputFormat, ProbeInfo, Runtime, VcpuState,
};
use tracer::symbols::{ElfSymbols, SymbolSource};
use tracer::traps::Regs;
use vm_memory::GuestMemoryMmap;

use super::context::{symbolize, HitContext};
use super::sink::TraceSink;
use super::{GuestPaging, Plan, TraceSpec, TraceTarget, VcpuAccess};
use crate::probes::HitHook;

/// How often the consumer thread drains the per-vCPU buffers.
pub(super) const CONSUMER_PERIOD: Duration = Duration::from_millis(20);

/// What to do when the program calls `exit()`: end the VM (`run`) or the session (attach).
pub type OnExit = Box<dyn Fn() + Send + Sync>;

/// The running trace.
pub struct Tracing {
    runtime: Runtime,
    vcpus: Vec<Mutex<VcpuState>>,
    /// `ProbeInfo` and matching clauses per armed probe (indexed like the `ProbeSet`).
    armed: Vec<(Arc<ProbeInfo>, Vec<usize>, u64)>,
    pub(super) symbols: ElfSymbols,
    pub(super) memory: GuestMemoryMmap,
    pub(super) paging: Arc<GuestPaging>,
    boot: Instant,
    consumer: Mutex<Consumer>,
    sink: Box<dyn TraceSink>,
    exit_requested: AtomicBool,
    on_exit: Mutex<Option<OnExit>>,
    /// `--format json`.
    json: bool,
    thread: Mutex<Option<JoinHandle<()>>>,
    stop: AtomicBool,
    /// `tick-N` probes: (probe, clauses, period).
    pub(super) ticks: Vec<(Arc<ProbeInfo>, Vec<usize>, Duration)>,
    /// `profile-N` probes: (probe, clauses, period).
    pub(super) profiles: Vec<(Arc<ProbeInfo>, Vec<usize>, Duration)>,
    /// Per vCPU: the `profile-N` probes (bit i = `profiles[i]`) waiting for its next sample.
    pub(super) samples: Vec<AtomicU64>,
    /// Probes fired by VMM events (`vmexit`, `apic`, `sync`): (probe, clauses).
    events: Vec<(Arc<ProbeInfo>, Vec<usize>)>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl Tracing {
    /// The runtime for `plan` against `target`, printing to `sink`. Its fbt probes are to be
    /// armed in `plan.fbt`'s order (hook indices refer to it); `all` is the image's probe
    /// catalogue (for probe ids).
    pub fn new(
        spec: &TraceSpec,
        plan: Plan,
        all: &[Probe],
        target: &TraceTarget,
        sink: Box<dyn TraceSink>,
    ) -> Arc<Self> {
        let TraceTarget {
            symbols,
            memory,
            paging,
            cpus,
            boot,
            kernel: _,
        } = target.clone();
        let Plan {
            program,
            fbt: armed,
            ticks,
            profiles,
            events,
        } = plan;
        let program = Arc::new(program);
        let runtime = Runtime::new(Arc::clone(&program), Limits::default());
        let ids: std::collections::HashMap<&Probe, u32> = all.iter().zip(1..).collect();
        let id_of = |p: &Probe| ids.get(p).copied().unwrap_or(0);
        let armed = armed
            .iter()
            .map(|p| {
                let info = Arc::new(ProbeInfo::new(
                    id_of(p),
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
        let timers = |list: Vec<(String, Duration)>| -> Vec<_> {
            list.into_iter()
                .map(|(name, period)| {
                    let info = Arc::new(ProbeInfo::new(0, "profile", "", "", name.clone()));
                    let clauses = program.clauses_matching("profile", "", "", &name);
                    (info, clauses, period)
                })
                .collect()
        };
        let ticks = timers(ticks);
        let profiles = timers(profiles);
        let events = events
            .iter()
            .map(|p| {
                let info = Arc::new(ProbeInfo::new(
                    id_of(p),
                    p.provider.clone(),
                    p.module.clone(),
                    p.function.clone(),
                    p.name.clone(),
                ));
                let clauses =
                    program.clauses_matching(&p.provider, &p.module, &p.function, &p.name);
                (info, clauses)
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
        Arc::new(Tracing {
            vcpus: (0..cpus).map(|_| Mutex::new(runtime.new_vcpu())).collect(),
            runtime,
            armed,
            symbols,
            memory,
            paging,
            boot,
            consumer: Mutex::new(consumer),
            sink,
            exit_requested: AtomicBool::new(false),
            on_exit: Mutex::new(None),
            json: spec.json,
            thread: Mutex::new(None),
            stop: AtomicBool::new(false),
            ticks,
            samples: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            profiles,
            events,
            ticker: Mutex::new(None),
        })
    }

    /// Fires BEGIN and starts the consumer thread and the timers; `on_exit` runs once when
    /// the program calls `exit()`; `vcpus` lets `profile-N` sample every vCPU.
    pub fn start(self: &Arc<Self>, on_exit: OnExit, vcpus: Option<VcpuAccess>) {
        *self.on_exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(on_exit);
        self.fire_dtrace(ProbeInfo::begin());
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
        if !self.ticks.is_empty() || !self.profiles.is_empty() {
            let me = Arc::clone(self);
            let ticker = std::thread::Builder::new()
                .name("trace-timers".into())
                .spawn(move || me.run_timers(vcpus.as_ref()))
                .ok();
            *self.ticker.lock().unwrap_or_else(|p| p.into_inner()) = ticker;
        }
        self.drain();
    }

    /// A VMM event on `cpu`: fires `provider:::name` if the program uses it, with `args` as
    /// `arg0`..`arg3` (see each provider's documentation in the README).
    pub fn event(&self, cpu: usize, provider: &str, name: &str, args: [u64; 4]) {
        let Some((info, clauses)) = self
            .events
            .iter()
            .find(|(i, _)| *i.name == *name && *i.provider == *provider)
        else {
            return;
        };
        let ctx = HitContext::without_registers(self, cpu as u32, Some(args));
        self.fire_on(cpu, info, clauses, &ctx);
    }

    /// Whether the program uses any probe of `provider` (`apic`, `vmexit`, `sync`).
    pub fn uses(&self, provider: &str) -> bool {
        match provider {
            "profile" => !self.profiles.is_empty(),
            _ => self.events.iter().any(|(i, _)| *i.provider == *provider),
        }
    }

    /// Fires `clauses` of `info` with `ctx` in `cpu`'s per-vCPU state.
    pub(super) fn fire_on(
        &self,
        cpu: usize,
        info: &Arc<ProbeInfo>,
        clauses: &[usize],
        ctx: &HitContext<'_>,
    ) {
        if clauses.is_empty() {
            return;
        }
        if let Some(v) = self.vcpus.get(cpu) {
            let mut state = v.lock().unwrap_or_else(|p| p.into_inner());
            self.runtime.fire(&mut state, info, clauses, ctx);
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
    pub(super) fn fire_without_registers(&self, info: &Arc<ProbeInfo>, clauses: &[usize]) {
        let ctx = HitContext::without_registers(self, 0, None);
        self.fire_on(0, info, clauses, &ctx);
    }

    pub(super) fn now_ns(&self) -> u64 {
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
            if let Some(on_exit) = self
                .on_exit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                on_exit();
            }
        }
    }

    /// Under `--format json`, writes `facts` (e.g. the trap strategy) as the first line; text
    /// output prints them only with `-v`.
    pub fn announce(&self, facts: &serde_json::Value) {
        if self.json {
            self.sink.stdout(&format!("{facts}\n"));
        }
    }

    /// Whether the trace is shutting down (timers stop).
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether the program called `exit()`.
    pub fn exit_requested(&self) -> bool {
        self.exit_requested.load(Ordering::SeqCst)
    }

    fn write(&self, out: &Output) {
        if !out.stdout.is_empty() {
            self.sink.stdout(&out.stdout);
        }
        if !out.stderr.is_empty() {
            self.sink.stderr(&out.stderr);
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
        let ctx = HitContext::at_trap(self, cpu as u32, regs, site, *start, probe.name == "return");
        self.fire_on(cpu, info, clauses, &ctx);
    }
}
