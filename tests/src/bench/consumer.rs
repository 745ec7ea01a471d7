//! The consumer rows: how fast one thread turns what probe firings produced into output, in
//! records per second for printed records and in aggregation updates per second for folding,
//! and what a probe firing costs the vCPU thread (ns per `Runtime::fire`). It fails only when a
//! firing drops data or records go missing. Needs no KVM.
//!
//! Each workload is a D program compiled as `hvtrace -n` compiles it, with one
//! `fbt:kernel:FUNC:entry` probe for each of 64 functions. A repetition runs rounds the way
//! `hvtrace`'s tracing does (`vmm/src/trace.rs`): 65,536 firings per round spread over 4 vCPU
//! states (16,384 each, a quarter of the default per-vCPU record buffer), each
//! `Runtime::fire` with the probe's matching clauses and a [`FakeContext`] (the tracer's test
//! context: arguments, CPU and a timestamp that grows across the vCPUs, so the merge has to
//! interleave them), all on this thread; then one drain, as the consumer thread does every
//! 20 ms: take every vCPU's partial aggregates and records, `merge_records`, `Consumer::fold`
//! each partial, `Consumer::consume` the merged records into an `Output` (the text the VMM
//! would write; the write itself is left out).
//!
//! Timed separately, on one thread: the firings (ns per fire), the consumer's record work
//! (take + merge + consume: records/s) and its aggregation work (take + fold: updates/s, an
//! update being one aggregating firing; per-vCPU partial aggregates pre-combine updates to the
//! same key, so the fold's real work is its entries, also printed). Medians over the
//! repetitions of each repetition's totals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{median, Goal, Row, Size};
use tracer::lang::{compile, Source};
use tracer::runtime::testing::FakeContext;
use tracer::runtime::{
    merge_records, Consumer, ConsumerOptions, Limits, Output, OutputFormat, ProbeInfo, Runtime,
};

/// vCPU states the firings are spread over.
const CPUS: usize = 4;
/// Probed functions (one `fbt` entry probe each).
const FUNCS: usize = 64;
/// Firings per drain round (all vCPUs together).
const FIRINGS_PER_ROUND: usize = 65_536;
/// Distinct `arg0` values the firings draw from: the top 12 bits of a 64-bit hash.
const ARG0_VALUES: u64 = 1 << 12;
/// The consumer goal, records (or updates) per second on one core.
const GOAL_PER_S: f64 = 5e6;

/// One program and how its output is rendered.
struct Workload {
    label: &'static str,
    program: &'static str,
    format: OutputFormat,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        label: "printf, text (-q)",
        program: r#"fbt:::entry { printf("%s cpu=%d arg0=%x arg1=%d\n", probefunc, cpu, arg0, arg1); }"#,
        format: OutputFormat::Text,
    },
    Workload {
        label: "printf, JSON (-q --format json)",
        program: r#"fbt:::entry { printf("%s cpu=%d arg0=%x arg1=%d\n", probefunc, cpu, arg0, arg1); }"#,
        format: OutputFormat::Json,
    },
    Workload {
        label: "count by function and CPU",
        program: "fbt:::entry { @[probefunc, cpu] = count(); }",
        format: OutputFormat::Text,
    },
    Workload {
        label: "count by function and arg0 (4096 values)",
        program: "fbt:::entry { @[probefunc, arg0] = count(); }",
        format: OutputFormat::Text,
    },
];

/// What one repetition of a workload measured (totals over its rounds).
#[derive(Default)]
struct Sample {
    firings: u64,
    fire: Duration,
    records: u64,
    consume: Duration,
    output_bytes: u64,
    /// Aggregation updates (aggregating firings) folded.
    updates: u64,
    /// Entries of the partial aggregates folded.
    entries: u64,
    fold: Duration,
}

fn run(workload: &Workload, rounds: usize) -> Sample {
    let program = Arc::new(
        compile(&[Source::new("bench", workload.program)])
            .unwrap_or_else(|d| panic!("{}: {d}", workload.label)),
    );
    let aggregating = !program.aggregations.is_empty();
    let runtime = Runtime::new(Arc::clone(&program), Limits::default());
    let probes: Vec<(Arc<ProbeInfo>, Vec<usize>)> = (0..FUNCS)
        .map(|f| {
            let info = ProbeInfo::new(10 + f as u32, "fbt", "kernel", format!("func_{f}"), "entry");
            let clauses = program.clauses_matching("fbt", "kernel", &info.function, "entry");
            assert!(!clauses.is_empty(), "{}: no clause matches", workload.label);
            (Arc::new(info), clauses)
        })
        .collect();
    let mut vcpus: Vec<_> = (0..CPUS).map(|_| runtime.new_vcpu()).collect();
    let mut consumer = Consumer::new(
        Arc::clone(&program),
        ConsumerOptions {
            quiet: true,
            format: workload.format,
        },
    );
    let mut ctx = FakeContext::default();
    let mut sample = Sample::default();
    let mut k: u64 = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..FIRINGS_PER_ROUND {
            let cpu = (k % CPUS as u64) as usize;
            let (probe, clauses) = &probes[(k / CPUS as u64 % FUNCS as u64) as usize];
            ctx.cpu = cpu as u32;
            ctx.timestamp = 1_000_000 + 50 * k;
            // Spread pseudo-randomly over ARG0_VALUES values (a multiplicative hash of k).
            ctx.args[0] = 0xffff_8000_0000_0000
                | (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - ARG0_VALUES.trailing_zeros()));
            ctx.args[1] = k;
            let fired = runtime.fire(&mut vcpus[cpu], probe, clauses, &ctx);
            assert_eq!(
                (fired.clauses_run, fired.dropped, fired.errors),
                (1, 0, 0),
                "{}: firing {k}",
                workload.label
            );
            k += 1;
        }
        sample.fire += start.elapsed();
        sample.firings += FIRINGS_PER_ROUND as u64;

        let start = Instant::now();
        let mut partials = Vec::with_capacity(CPUS);
        for v in &mut vcpus {
            partials.push(v.take_aggregations());
        }
        sample.entries += partials.iter().map(|p| p.len() as u64).sum::<u64>();
        for partial in partials {
            consumer.fold(partial);
        }
        sample.fold += start.elapsed();
        if aggregating {
            sample.updates += FIRINGS_PER_ROUND as u64;
        }

        let start = Instant::now();
        let batches: Vec<_> = vcpus.iter_mut().map(|v| v.take_records()).collect();
        let records = merge_records(batches);
        let mut out = Output::default();
        consumer.consume(&records, &mut out);
        sample.consume += start.elapsed();
        sample.records += records.len() as u64;
        sample.output_bytes += out.stdout.len() as u64;
        assert!(out.stderr.is_empty(), "{}: {}", workload.label, out.stderr);
        if !aggregating {
            assert_eq!(records.len(), FIRINGS_PER_ROUND, "{}", workload.label);
        }
        for v in &mut vcpus {
            let drops = v.take_drops();
            assert_eq!(
                (drops.records, drops.aggregations),
                (0, 0),
                "{}",
                workload.label
            );
        }
    }
    if aggregating {
        let folded: i64 = (0..program.aggregations.len())
            .filter_map(|i| consumer.aggregations().table(i))
            .flat_map(|t| t.values())
            .filter_map(|v| v.scalar())
            .sum();
        assert_eq!(
            folded as u64, sample.firings,
            "{}: counts folded",
            workload.label
        );
    }
    sample
}

/// `x` per second of `d`, in millions.
fn mega_per_s(x: u64, d: Duration) -> f64 {
    x as f64 / d.as_secs_f64() / 1e6
}

/// The consumer rows (no KVM needed).
pub fn rows(size: Size) -> Vec<Row> {
    let reps = size.pick(1, 5, 11);
    let rounds = size.pick(1, 8, 32);
    // Warm-up (allocator, caches), not counted.
    for w in &WORKLOADS {
        run(w, 1);
    }
    let mut samples: Vec<Vec<Sample>> = WORKLOADS.iter().map(|_| Vec::new()).collect();
    for _ in 0..reps {
        for (w, out) in WORKLOADS.iter().zip(&mut samples) {
            out.push(run(w, rounds));
        }
    }
    let mut out = Vec::new();
    for (w, s) in WORKLOADS.iter().zip(&samples) {
        let fire_ns = median(
            &s.iter()
                .map(|x| x.fire.as_secs_f64() * 1e9 / x.firings as f64)
                .collect::<Vec<_>>(),
        );
        let (what, rate) = if s[0].records > 0 {
            (
                "records/s consumed (take + merge + consume)",
                median(
                    &s.iter()
                        .map(|x| mega_per_s(x.records, x.consume))
                        .collect::<Vec<_>>(),
                ),
            )
        } else {
            (
                "aggregation updates/s folded (take + fold)",
                median(
                    &s.iter()
                        .map(|x| mega_per_s(x.updates, x.fold))
                        .collect::<Vec<_>>(),
                ),
            )
        };
        out.push(
            Row::new("consumer", format!("{}: {what}", w.label), rate, "M/s")
                .goal(Goal::MinValue(GOAL_PER_S / 1e6))
                .note(format!(
                    "`{}`; {fire_ns:.0} ns per Runtime::fire; one thread, {CPUS} vCPU states",
                    w.program
                )),
        );
    }
    out
}
