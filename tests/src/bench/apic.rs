//! IPI round trip between two halted vCPUs and interrupt latency into a halted vCPU, measured
//! by the `ipi-bench` guest under hvtrace's APIC (`emulated`), KVM's (`kvm`) and `split`, in
//! one run, against KVM's APIC. QEMU on the same guest image joins when it is installed and
//! the image boots in it (the built-in guests need a multiboot header for `-kernel`).

use std::time::Duration;

use vmm::qemu::{find_qemu, run as run_qemu, QemuEnding, QemuIrqchip, QemuMachine, QemuSpec};

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

/// QEMU (KVM's APIC, `pc`) on the same `ipi-bench` image: median IPI round trips (µs) of
/// `runs` runs, or why not. QEMU has no IRQ test device, so only the IPI measurement runs.
fn qemu_ipi(runs: usize, iters: u32) -> Result<(f64, f64), String> {
    let qemu = find_qemu().map_err(|e| e.to_string())?;
    let image = guest::find("ipi-bench").expect("ipi-bench").image.to_vec();
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..runs {
        let spec = QemuSpec {
            image: image.clone(),
            cpus: 2,
            mem: 256 << 20,
            cmdline: format!("iters={iters} irq=0"),
            irqchip: QemuIrqchip::Kernel,
            machine: QemuMachine::Pc,
            timeout: Duration::from_secs(120),
        };
        let run = run_qemu(&qemu, &spec).map_err(|e| e.to_string())?;
        if run.ending != QemuEnding::GuestExit(0) {
            return Err(format!("QEMU: {:?}", run.ending));
        }
        let report = ipi_bench::parse(&run.serial).map_err(|e| format!("QEMU output: {e}"))?;
        let stats = report
            .ns("ipi_roundtrip")
            .ok_or("QEMU: no IPI round trip")?;
        medians.push(stats.median as f64 / 1000.0);
        p99s.push(stats.p99 as f64 / 1000.0);
    }
    Ok((median(&medians), median(&p99s)))
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
    let qemu = qemu_ipi(runs, iters);
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
            .note(format!("p99 {kvm_p99:.1} µs")),
        );
        if measure == "ipi_roundtrip" {
            match &qemu {
                Ok((q, q99)) => out.push(
                    Row::new(
                        "apic",
                        format!("{words}, QEMU 7.2 (KVM's APIC, same image)"),
                        *q,
                        "µs",
                    )
                    .against("--irqchip kvm", kvm)
                    .note(format!(
                        "p99 {q99:.1} µs; QEMU's own APIC (kernel_irqchip=off) hangs with 2 \
                             vCPUs (HOST.md), not run"
                    )),
                ),
                Err(why) => {
                    if let Some(kvm_row) = out.last_mut() {
                        kvm_row
                            .note
                            .push_str(&format!("; QEMU not measured: {why}"));
                    }
                }
            }
        }
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
