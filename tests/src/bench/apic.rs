//! IPI round trip between two halted vCPUs and interrupt latency into a halted vCPU, measured
//! by the `ipi-bench` guest under hvtrace's APIC (`emulated`), KVM's (`kvm`) and `split`, in
//! one run, against KVM's APIC. QEMU on the same guest image joins when it is installed and
//! the image boots in it (the built-in guests need a multiboot header for `-kernel`).

use crate::ipi_bench::{self, Report};

use super::{median, Goal, Row, Size};

/// The two measurements: the guest's line name and the row's words.
const MEASURES: [(&str, &str); 2] = [
    ("ipi_roundtrip", "IPI round trip, 2 halted vCPUs"),
    ("irq_latency", "interrupt latency into a halted vCPU"),
];

fn run_once(irqchip: &str, iters: u32) -> Report {
    let out = ipi_bench::run(irqchip, iters, 120);
    match (out.status, ipi_bench::parse(&out.stdout)) {
        (Some(0), Ok(report)) => report,
        (status, report) => panic!(
            "ipi-bench under --irqchip {irqchip} failed (exit {status:?}, parse: {:?}):\n{}\n{}",
            report.err(),
            out.stdout,
            out.stderr
        ),
    }
}

/// The APIC rows.
pub fn rows(size: Size) -> Vec<Row> {
    let runs = size.pick(1, 3, 7);
    let iters = size.pick(20, 200, 1000);
    let mut reports: Vec<(&str, Vec<Report>)> = ipi_bench::IRQCHIPS
        .iter()
        .map(|&irqchip| (irqchip, Vec::new()))
        .collect();
    for _ in 0..runs {
        for (irqchip, list) in &mut reports {
            list.push(run_once(irqchip, iters));
        }
    }
    let stat = |irqchip: &str, measure: &str| -> Option<(f64, f64)> {
        let list = &reports.iter().find(|(i, _)| *i == irqchip)?.1;
        let stats: Vec<_> = list.iter().filter_map(|r| r.ns(measure)).collect();
        if stats.is_empty() {
            return None;
        }
        let m = median(&stats.iter().map(|s| s.median as f64).collect::<Vec<_>>());
        let p99 = median(&stats.iter().map(|s| s.p99 as f64).collect::<Vec<_>>());
        Some((m / 1000.0, p99 / 1000.0))
    };
    let mut out = Vec::new();
    for (measure, words) in MEASURES {
        let Some((kvm, kvm_p99)) = stat("kvm", measure) else {
            continue;
        };
        out.push(
            Row::new(
                "apic",
                format!("{words}, --irqchip kvm (baseline)"),
                kvm,
                "µs",
            )
            .note(format!(
                "p99 {kvm_p99:.1} µs; QEMU not measured: the built-in guests boot in QEMU \
                     only with a multiboot header (not yet)"
            )),
        );
        for irqchip in ["emulated", "split"] {
            if let Some((v, p99)) = stat(irqchip, measure) {
                let mut row = Row::new("apic", format!("{words}, --irqchip {irqchip}"), v, "µs")
                    .against("--irqchip kvm", kvm)
                    .note(format!("p99 {p99:.1} µs"));
                if irqchip == "emulated" {
                    row = row.goal(Goal::MaxRatio(1.0));
                }
                out.push(row);
            }
        }
    }
    out
}
