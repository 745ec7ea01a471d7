//! Tests of evaluation: every expression form, variables, built-ins, guest memory, faults,
//! the ERROR probe, limits. Helpers here are shared by the other runtime test modules.

mod eval;
mod exec;

use std::sync::Arc;

use super::testing::FakeContext;
use super::{
    merge_records, Consumer, ConsumerOptions, Limits, Output, OutputFormat, ProbeInfo, Record,
    Runtime, VcpuState,
};
use crate::lang::compile_str;

/// A compiled program, its runtime and one vCPU.
pub(crate) struct Harness {
    pub(crate) runtime: Runtime,
    pub(crate) vcpus: Vec<VcpuState>,
    pub(crate) ctx: FakeContext,
}

impl Harness {
    pub(crate) fn new(src: &str) -> Self {
        Self::with_limits(src, Limits::default())
    }

    pub(crate) fn with_limits(src: &str, limits: Limits) -> Self {
        let program = compile_str(src).unwrap_or_else(|e| panic!("{e}"));
        let runtime = Runtime::new(Arc::new(program), limits);
        let vcpus = vec![runtime.new_vcpu(), runtime.new_vcpu()];
        let mut ctx = FakeContext {
            timestamp: 1000,
            walltimestamp: 1_700_000_000_000_000_000,
            args: [0x1000, 2, 3, 4, 5, 6],
            caller: 0x2010,
            symbols: vec![(0x2000, 0x100, "xcall_send".into())],
            ..FakeContext::default()
        };
        ctx.write(0x1000, b"hello\0");
        Self {
            runtime,
            vcpus,
            ctx,
        }
    }

    /// Fires `probe` on vCPU `cpu` (the context's cpu set to match).
    pub(crate) fn fire_on(&mut self, cpu: usize, probe: &ProbeInfo) -> super::FireSummary {
        let clauses = self.runtime.program().clauses_matching(
            &probe.provider,
            &probe.module,
            &probe.function,
            &probe.name,
        );
        self.ctx.cpu = cpu as u32;
        let probe = Arc::new(probe.clone());
        self.runtime
            .fire(&mut self.vcpus[cpu], &probe, &clauses, &self.ctx)
    }

    pub(crate) fn fire(&mut self, probe: &ProbeInfo) -> super::FireSummary {
        self.fire_on(0, probe)
    }

    /// Drains every vCPU.
    pub(crate) fn records(&mut self) -> Vec<Record> {
        merge_records(self.vcpus.iter_mut().map(VcpuState::take_records).collect())
    }

    /// Drains every vCPU into a consumer and finishes it.
    pub(crate) fn output(&mut self, quiet: bool, format: OutputFormat) -> Output {
        let mut consumer = Consumer::new(
            Arc::clone(self.runtime.program()),
            ConsumerOptions { quiet, format },
        );
        let mut out = Output::default();
        for v in &mut self.vcpus {
            consumer.fold(v.take_aggregations());
        }
        let records = self.records();
        consumer.consume(&records, &mut out);
        consumer.finish(&mut out);
        out
    }
}

/// Runs `src`'s BEGIN clauses once and returns the quiet text output (without the blank
/// line the end of a trace prints before aggregations).
pub(crate) fn run(src: &str) -> String {
    let mut h = Harness::new(src);
    h.fire(&ProbeInfo::begin());
    let out = h.output(true, OutputFormat::Text);
    out.stdout
        .strip_suffix('\n')
        .unwrap_or(&out.stdout)
        .to_string()
}

#[test]
fn runtime_types_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Runtime>();
    send_sync::<crate::lang::Program>();
    send_sync::<Record>();
    send::<VcpuState>();
    send::<Consumer>();
}

/// The quiet output of `trace(EXPR)` in BEGIN.
pub(crate) fn value(expr: &str) -> String {
    run(&format!("BEGIN {{ trace({expr}); }}"))
}
