//! APIC benchmark: IPI round trip between two halted vCPUs and interrupt latency into a halted
//! vCPU, under `--irqchip emulated` (hvtrace's own APIC), `kvm` (in-kernel) and `split`, measured
//! in one run by the `ipi-bench` guest. Printed as a Markdown table with the ratio
//! emulated/kvm; never asserted. It fails only if the guest fails or prints nothing parseable.
//!
//! Run with `cargo bench -p tests --bench apic`. `HVTRACE_BENCH_RUNS` sets the runs per irqchip
//! (default 3; the table shows the median of the per-run medians and of the per-run p99s),
//! `HVTRACE_BENCH_ITERS` the recorded rounds per run (default 200, at most 10000).

use std::collections::BTreeMap;
use std::path::Path;

use tests::ipi_bench::{self, Report, Stats, IRQCHIPS, MEASUREMENTS};
use tests::{fresh_hvtrace_path, kvm_or_skip};

/// `--timeout` for one guest run, in seconds.
const RUN_TIMEOUT_S: u64 = 120;

/// What kind of KVM this host has.
fn host_kind() -> String {
    if Path::new("/sys/module/kvm_pvm").exists() {
        return "software KVM (kvm_pvm)".to_string();
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_flag = |flag: &str| {
        cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|w| w == flag))
    };
    if has_flag("vmx") {
        "hardware KVM (Intel VT-x)".to_string()
    } else if has_flag("svm") {
        "hardware KVM (AMD-V)".to_string()
    } else {
        "KVM without vmx/svm in /proc/cpuinfo (unknown kind)".to_string()
    }
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

/// Runs the guest once and parses it; panics with its output if it fails.
fn run_once(irqchip: &str, iters: u32) -> Report {
    let out = ipi_bench::run(irqchip, iters, RUN_TIMEOUT_S);
    let report = ipi_bench::parse(&out.stdout);
    match (out.status, report) {
        (Some(0), Ok(report)) => report,
        (status, report) => panic!(
            "ipi-bench under --irqchip {irqchip} failed (exit {status:?}, parse: {:?}).\n\
             stdout:\n{}\nstderr:\n{}",
            report.err(),
            out.stdout,
            out.stderr
        ),
    }
}

/// (median of medians, median of p99s) in ns for one measurement, if it ran.
fn summarize(reports: &[Report], measurement: &str) -> Option<(u64, u64)> {
    let stats: Vec<Stats> = reports.iter().filter_map(|r| r.ns(measurement)).collect();
    if stats.is_empty() {
        return None;
    }
    Some((
        median(stats.iter().map(|s| s.median).collect()),
        median(stats.iter().map(|s| s.p99).collect()),
    ))
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn main() {
    if !kvm_or_skip("bench apic") {
        return;
    }
    fresh_hvtrace_path();
    let runs = env_or("HVTRACE_BENCH_RUNS", 3).max(1);
    let iters = env_or("HVTRACE_BENCH_ITERS", 200).clamp(1, 10_000);

    // Interleave the irqchips so that load drifting during the run hits each about equally.
    let mut reports: BTreeMap<&str, Vec<Report>> = BTreeMap::new();
    for _ in 0..runs {
        for irqchip in IRQCHIPS {
            reports
                .entry(irqchip)
                .or_default()
                .push(run_once(irqchip, iters));
        }
    }
    let first = &reports[IRQCHIPS[0]][0];

    println!("hvtrace APIC benchmark (guest `ipi-bench`, 2 vCPUs)");
    println!("host: {}", host_kind());
    println!(
        "{runs} runs per irqchip, each {iters} recorded rounds per measurement after {} \
         warm-up rounds; guest TSC {} kHz; cells: median / p99 in µs (median over runs of \
         each run's median and p99)",
        first.warmup, first.tsc_khz
    );
    println!();
    println!(
        "| measurement | emulated | kvm | split | emulated / kvm (median) | \
         emulated / kvm (p99) | goal |"
    );
    println!("|---|---|---|---|---|---|---|");
    for measurement in MEASUREMENTS {
        let title = match measurement {
            "ipi_roundtrip" => "IPI round trip between two halted vCPUs",
            "irq_latency" => "interrupt latency into a halted vCPU (IOAPIC edge)",
            other => other,
        };
        let cells: Vec<Option<(u64, u64)>> = IRQCHIPS
            .iter()
            .map(|chip| summarize(&reports[chip], measurement))
            .collect();
        let cell = |i: usize| match cells[i] {
            Some((m, p)) => format!("{} / {}", us(m), us(p)),
            None => "n/a".to_string(),
        };
        let (ratio_median, ratio_p99, goal) = match (cells[0], cells[1]) {
            (Some((em, ep)), Some((km, kp))) if km > 0 && kp > 0 => {
                let rm = em as f64 / km as f64;
                let rp = ep as f64 / kp as f64;
                let verdict = if rm <= 1.0 { "met" } else { "not met" };
                (
                    format!("{rm:.2}x"),
                    format!("{rp:.2}x"),
                    format!("emulated <= 1.0x kvm: {verdict}"),
                )
            }
            _ => (
                "n/a".to_string(),
                "n/a".to_string(),
                "emulated <= 1.0x kvm".to_string(),
            ),
        };
        println!(
            "| {title} | {} | {} | {} | {ratio_median} | {ratio_p99} | {goal} |",
            cell(0),
            cell(1),
            cell(2)
        );
    }
}
