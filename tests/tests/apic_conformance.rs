//! End-to-end: the `apic-conformance` guest, which checks the local APIC and IOAPIC against
//! the Intel SDM and prints one `PASS name`, `FAIL name: detail` or `SKIP name: reason` line
//! per check, then `apic-conformance: P passed, F failed, S skipped`, and exits with F.
//!
//! Under `--irqchip kvm` the results are whatever KVM does on the host (on the nested
//! software-KVM development machines several checks fail: that is a finding, reported, not
//! asserted away); the test asserts that the guest runs to its end and reports consistently.
//! Under `--irqchip emulated` (hvtrace's own APIC) every check must pass.

use std::time::Duration;

use tests::{kvm_or_skip, run_hvtrace, RunOutput};

const BOUND: Duration = Duration::from_secs(120);

/// Every check the guest runs, in its order.
const CHECKS: &[&str] = &[
    "interrupt_return",
    "version",
    "apic_id",
    "reset_state",
    "ap_startup",
    "readonly_registers",
    "tpr_cr8",
    "tpr_masking",
    "ppr_rule",
    "priority_order",
    "nested_interrupts",
    "early_eoi",
    "self_ipi",
    "icr_shorthands",
    "logical_flat",
    "logical_cluster",
    "lowest_priority",
    "nmi",
    "timer_oneshot",
    "timer_periodic",
    "timer_tsc_deadline",
    "ioapic_level",
    "directed_eoi",
    "esr_illegal_vector",
    "x2apic_switch",
];

/// Checks that need at least two CPUs (they SKIP with one).
const NEED_TWO_CPUS: &[&str] = &["ap_startup", "lowest_priority"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    Skip,
}

/// One check's line.
#[derive(Debug)]
struct CheckLine {
    name: String,
    verdict: Verdict,
    /// What follows `name: ` (empty for PASS).
    detail: String,
}

/// A parsed run of the guest.
#[derive(Debug)]
struct Report {
    checks: Vec<CheckLine>,
    /// The summary line's counts: passed, failed, skipped.
    summary: (usize, usize, usize),
}

impl Report {
    fn count(&self, verdict: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == verdict).count()
    }

    fn get(&self, name: &str) -> &CheckLine {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no line for check {name}: {self:?}"))
    }
}

/// Parses the guest's output; panics (naming the run) on any line that is not a check line or
/// the summary.
fn parse(out: &RunOutput, what: &str) -> Report {
    let mut checks = Vec::new();
    let mut summary = None;
    for line in out.stdout.lines() {
        if let Some(counts) = line.strip_prefix("apic-conformance: ") {
            assert!(summary.is_none(), "{what}: two summary lines: {out:?}");
            summary = Some(
                parse_summary(counts)
                    .unwrap_or_else(|| panic!("{what}: malformed summary line {line:?}: {out:?}")),
            );
            continue;
        }
        assert!(
            summary.is_none(),
            "{what}: output after the summary line: {line:?}: {out:?}"
        );
        let (verdict, rest) = if let Some(rest) = line.strip_prefix("PASS ") {
            (Verdict::Pass, rest)
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            (Verdict::Fail, rest)
        } else if let Some(rest) = line.strip_prefix("SKIP ") {
            (Verdict::Skip, rest)
        } else {
            panic!("{what}: line is neither PASS, FAIL, SKIP nor the summary: {line:?}: {out:?}");
        };
        let (name, detail) = match rest.split_once(": ") {
            Some((name, detail)) => (name, detail),
            None => (rest, ""),
        };
        assert!(
            !name.is_empty() && !name.contains(' '),
            "{what}: bad check name in {line:?}"
        );
        match verdict {
            Verdict::Pass => assert!(detail.is_empty(), "{what}: PASS with a detail: {line:?}"),
            Verdict::Fail | Verdict::Skip => assert!(
                !detail.trim().is_empty(),
                "{what}: {verdict:?} without a detail: {line:?}"
            ),
        }
        checks.push(CheckLine {
            name: name.to_string(),
            verdict,
            detail: detail.to_string(),
        });
    }
    let summary = summary.unwrap_or_else(|| panic!("{what}: no summary line: {out:?}"));
    Report { checks, summary }
}

/// Parses "P passed, F failed, S skipped".
fn parse_summary(s: &str) -> Option<(usize, usize, usize)> {
    let mut parts = s.split(", ");
    let mut field =
        |suffix: &str| -> Option<usize> { parts.next()?.strip_suffix(suffix)?.parse().ok() };
    let counts = (field(" passed")?, field(" failed")?, field(" skipped")?);
    parts.next().is_none().then_some(counts)
}

/// Runs the guest with `irqchip` and `cpus` vCPUs and checks that the report is complete and
/// consistent: it ended by itself, one line per check in the usual order, a summary that
/// matches the lines, and an exit status equal to the number of failures.
fn run_guest(irqchip: &str, cpus: usize) -> Report {
    let what = format!("apic-conformance --irqchip {irqchip} --cpus {cpus}");
    let n = cpus.to_string();
    let out = run_hvtrace(
        &[
            "run",
            "--guest",
            "apic-conformance",
            "--irqchip",
            irqchip,
            "--cpus",
            &n,
            "--timeout",
            "60",
        ],
        BOUND,
    );
    eprintln!("{what} ({:?}):\n{}", out.elapsed, out.stdout);
    let report = parse(&out, &what);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, CHECKS, "{what}: the checks reported: {out:?}");
    let (passed, failed, skipped) = report.summary;
    assert_eq!(
        (passed, failed, skipped),
        (
            report.count(Verdict::Pass),
            report.count(Verdict::Fail),
            report.count(Verdict::Skip)
        ),
        "{what}: the summary disagrees with the lines: {out:?}"
    );
    assert_eq!(
        out.status,
        Some(failed.min(255) as i32),
        "{what}: the exit status is not the number of failures: {out:?}"
    );
    for name in NEED_TWO_CPUS {
        let line = report.get(name);
        if cpus == 1 {
            assert_eq!(line.verdict, Verdict::Skip, "{what}: {line:?}");
        } else {
            assert_ne!(line.verdict, Verdict::Skip, "{what}: {line:?}");
        }
    }
    report
}

#[test]
fn apic_conformance_reports_every_check_under_the_kvm_irqchip() {
    if !kvm_or_skip("apic_conformance_reports_every_check_under_the_kvm_irqchip") {
        return;
    }
    // KVM's local APICs under `kvm` and `split` (with hvtrace's user-space IOAPIC): the
    // results are findings, not requirements; show them.
    for irqchip in ["kvm", "split"] {
        for cpus in [1, 2, 4] {
            let report = run_guest(irqchip, cpus);
            for c in report.checks.iter().filter(|c| c.verdict != Verdict::Pass) {
                eprintln!(
                    "{irqchip}, {cpus} cpus: {:?} {}: {}",
                    c.verdict, c.name, c.detail
                );
            }
        }
    }
}

#[test]
fn apic_conformance_passes_every_check_under_the_emulated_apic() {
    if !kvm_or_skip("apic_conformance_passes_every_check_under_the_emulated_apic") {
        return;
    }
    for cpus in [1, 2, 4] {
        let report = run_guest("emulated", cpus);
        for c in &report.checks {
            let may_skip = cpus == 1 && NEED_TWO_CPUS.contains(&c.name.as_str());
            let want = if may_skip {
                Verdict::Skip
            } else {
                Verdict::Pass
            };
            assert_eq!(
                c.verdict, want,
                "emulated APIC, {cpus} cpus: check {} ({}): {report:?}",
                c.name, c.detail
            );
        }
    }
}
