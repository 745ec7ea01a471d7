//! End-to-end: the `ipi-bench` guest behind the benchmark suite's `apic` group runs and prints
//! well-formed results under every irqchip, so the benchmark never rots. No timing is asserted.

use std::time::Duration;

use tests::ipi_bench;
use tests::{kvm_or_skip, run_hvtrace};

#[test]
fn ipi_bench_reports_well_formed_lines_under_every_irqchip() {
    if !kvm_or_skip("ipi_bench_reports_well_formed_lines_under_every_irqchip") {
        return;
    }
    for irqchip in ipi_bench::IRQCHIPS {
        let out = ipi_bench::run(irqchip, 5, 60);
        assert_eq!(out.status, Some(0), "{irqchip}: {out:?}");
        let report =
            ipi_bench::parse(&out.stdout).unwrap_or_else(|e| panic!("{irqchip}: {e}: {out:?}"));
        assert_eq!((report.iters, report.irq), (5, true), "{irqchip}: {out:?}");
        assert!(
            report.ns("ipi_roundtrip").is_some_and(|s| s.n == 5),
            "{irqchip}: {out:?}"
        );
        assert!(report.ns("irq_latency").is_some(), "{irqchip}: {out:?}");
    }
}

#[test]
fn ipi_bench_needs_two_vcpus_and_fails_cleanly_with_one() {
    if !kvm_or_skip("ipi_bench_needs_two_vcpus_and_fails_cleanly_with_one") {
        return;
    }
    let out = run_hvtrace(
        &[
            "run",
            "--guest",
            "ipi-bench",
            "--cpus",
            "1",
            "--timeout",
            "60",
        ],
        Duration::from_secs(90),
    );
    assert_eq!(out.status, Some(6), "{out:?}");
    assert!(
        out.stdout.contains("ipi-bench: FAIL needs 2 or more vCPUs"),
        "{out:?}"
    );
}
