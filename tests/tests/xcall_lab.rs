//! End-to-end: the `xcall-lab` guest (a DTrace-style cross call inside the guest) under
//! hvtrace's own APIC and KVM's in-kernel APIC, with 2 and 4 vCPUs. Every variant must have
//! the outcome it has on real hardware: `mutual` and `recursion-irqs-off` deadlock and are
//! reported as a HANG by the guest's own deadman (the run still ends by itself, exit status
//! 0, long before hvtrace's `--timeout`); every other variant completes all its calls.

use std::sync::Mutex;
use std::time::Duration;

use tests::{kvm_or_skip, run_hvtrace, RunOutput};

/// hvtrace's own bound on each run: a real hang ends as exit status 124 with a timeout report.
const VMM_TIMEOUT_SECS: &str = "120";
/// The test's bound on each run (beyond the VMM's, in case hvtrace itself hangs).
const BOUND: Duration = Duration::from_secs(150);
/// The guest's default number of calls per variant.
const CALLS: u32 = 50;
/// The guest's default deadman, in milliseconds.
const DEADMAN_MS: u64 = 200;

/// One run at a time: every cross call is bounded by the guest's 200 ms deadman, and several
/// 4-vCPU guests at once on a 2-core host stretch round trips towards it.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What a variant ended with, as the guest reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Hang,
    Fail,
}

/// Every variant, in the order `variant=all` runs them, with the outcome real hardware gives.
const VARIANTS: &[(&str, Outcome)] = &[
    ("eoi-early", Outcome::Ok),
    ("eoi-late", Outcome::Ok),
    ("caller-irqs-on", Outcome::Ok),
    ("caller-irqs-off", Outcome::Ok),
    ("mutual", Outcome::Hang),
    ("mutual-irqs-on", Outcome::Ok),
    ("recursion", Outcome::Ok),
    ("recursion-irqs-off", Outcome::Hang),
    ("timer", Outcome::Ok),
];

/// One `xcall-lab: NAME: ...` result line.
#[derive(Debug)]
struct VariantLine {
    name: String,
    outcome: Outcome,
    /// The `expected=` word the guest printed.
    expected: String,
    /// The guest flagged the result as not the expected one.
    unexpected: bool,
    /// The whole line, for messages.
    line: String,
}

/// The value after `key` (up to the next space) in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].split(' ').next()
}

/// The numeric value after `key` in `line`.
fn number(line: &str, key: &str) -> Option<u64> {
    field(line, key)?.trim_end_matches(')').parse().ok()
}

/// The result lines of a run, in order (the header and summary lines are not results).
fn variant_lines(stdout: &str) -> Vec<VariantLine> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("xcall-lab: ")?;
            let (name, result) = rest.split_once(": ")?;
            if name == "summary" || !result.contains(" expected=") {
                return None;
            }
            let outcome = if result.starts_with("ok ") {
                Outcome::Ok
            } else if result.starts_with("HANG ") {
                Outcome::Hang
            } else {
                Outcome::Fail
            };
            Some(VariantLine {
                name: name.to_string(),
                outcome,
                expected: field(result, "expected=")?.to_string(),
                unexpected: result.ends_with(" UNEXPECTED"),
                line: line.to_string(),
            })
        })
        .collect()
}

/// Runs `xcall-lab` with `cmdline`, one run at a time.
fn run_lab(irqchip: &str, cpus: usize, cmdline: &str) -> RunOutput {
    let _one = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let n = cpus.to_string();
    run_hvtrace(
        &[
            "run",
            "--guest",
            "xcall-lab",
            "--irqchip",
            irqchip,
            "--cpus",
            &n,
            "--timeout",
            VMM_TIMEOUT_SECS,
            "--cmdline",
            cmdline,
        ],
        BOUND,
    )
}

/// Asserts what a run's line for a variant with outcome `want` says.
fn check_line(v: &VariantLine, want: Outcome, out: &RunOutput) {
    let word = match want {
        Outcome::Ok => "ok",
        Outcome::Hang => "hang",
        Outcome::Fail => unreachable!("no variant is expected to fail"),
    };
    assert_eq!(v.outcome, want, "{}: {out:?}", v.line);
    assert_eq!(v.expected, word, "{}: {out:?}", v.line);
    assert!(!v.unexpected, "{}: {out:?}", v.line);
    match want {
        Outcome::Ok => {
            let calls = number(&v.line, "calls=").expect("calls=");
            let per_round = if v.name.starts_with("mutual") { 2 } else { 1 };
            assert_eq!(calls, u64::from(CALLS * per_round), "{}", v.line);
            let median = number(&v.line, "median=").expect("median=");
            let p99 = number(&v.line, "p99=").expect("p99=");
            assert!(median > 0 && p99 >= median, "{}", v.line);
        }
        _ => {
            assert!(
                v.line.contains(": HANG detected by deadman after "),
                "{}",
                v.line
            );
            let ms = number(&v.line, "after ").expect("after N ms");
            assert!(
                (DEADMAN_MS..DEADMAN_MS * 10).contains(&ms),
                "the deadman fires after {DEADMAN_MS} ms: {}",
                v.line
            );
            // The two CPUs that wait for each other: the BSP and CPU 1.
            let cpu = number(&v.line, "(cpu ").expect("(cpu X");
            let waits_for = number(&v.line, "waiting for cpu ").expect("waiting for cpu Y");
            assert!(
                (cpu, waits_for) == (0, 1) || (cpu, waits_for) == (1, 0),
                "{}",
                v.line
            );
        }
    }
}

/// Runs every variant and checks each one's outcome and the summary.
fn all_variants_as_on_hardware(irqchip: &str, cpus: usize) {
    let out = run_lab(irqchip, cpus, "variant=all");
    assert_eq!(out.status, Some(0), "{irqchip}, {cpus} vCPUs: {out:?}");
    assert!(
        !out.stderr.contains("timeout"),
        "the guest, not hvtrace's timeout, ends the run: {out:?}"
    );
    assert!(
        out.stdout
            .starts_with(&format!("xcall-lab: cpus={cpus} tsc_khz=")),
        "{out:?}"
    );
    let lines = variant_lines(&out.stdout);
    let names: Vec<&str> = lines.iter().map(|v| v.name.as_str()).collect();
    let want: Vec<&str> = VARIANTS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, want, "{irqchip}, {cpus} vCPUs: {out:?}");
    for (v, (_, outcome)) in lines.iter().zip(VARIANTS) {
        check_line(v, *outcome, &out);
    }
    assert!(
        out.stdout
            .ends_with("xcall-lab: summary: 7 ok, 2 hang, 0 fail (every variant as expected)\n"),
        "{irqchip}, {cpus} vCPUs: {out:?}"
    );
    eprintln!(
        "xcall-lab --irqchip {irqchip} --cpus {cpus}: {:.2} s",
        out.elapsed.as_secs_f64()
    );
}

#[test]
fn xcall_lab_emulated_apic_2_cpus() {
    if !kvm_or_skip("xcall_lab_emulated_apic_2_cpus") {
        return;
    }
    all_variants_as_on_hardware("emulated", 2);
}

#[test]
fn xcall_lab_emulated_apic_4_cpus() {
    if !kvm_or_skip("xcall_lab_emulated_apic_4_cpus") {
        return;
    }
    all_variants_as_on_hardware("emulated", 4);
}

#[test]
fn xcall_lab_kvm_apic_2_cpus() {
    if !kvm_or_skip("xcall_lab_kvm_apic_2_cpus") {
        return;
    }
    all_variants_as_on_hardware("kvm", 2);
}

#[test]
fn xcall_lab_kvm_apic_4_cpus() {
    if !kvm_or_skip("xcall_lab_kvm_apic_4_cpus") {
        return;
    }
    all_variants_as_on_hardware("kvm", 4);
}

#[test]
fn xcall_lab_runs_the_selected_variants_only() {
    if !kvm_or_skip("xcall_lab_runs_the_selected_variants_only") {
        return;
    }
    let out = run_lab("emulated", 2, "variant=mutual,timer calls=10");
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines = variant_lines(&out.stdout);
    let names: Vec<&str> = lines.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["mutual", "timer"], "{out:?}");
    assert_eq!(lines[0].outcome, Outcome::Hang, "{out:?}");
    assert_eq!(lines[1].outcome, Outcome::Ok, "{out:?}");
    assert!(lines[1].line.contains(" calls=10 "), "{out:?}");
    assert!(
        out.stdout
            .ends_with("xcall-lab: summary: 1 ok, 1 hang, 0 fail (every variant as expected)\n"),
        "{out:?}"
    );
}

#[test]
fn xcall_lab_rejects_bad_options_and_one_cpu() {
    if !kvm_or_skip("xcall_lab_rejects_bad_options_and_one_cpu") {
        return;
    }
    let out = run_lab("emulated", 2, "variant=eoi-early,nope");
    assert_eq!(out.status, Some(3), "{out:?}");
    assert!(
        out.stdout.contains("xcall-lab: unknown variant `nope`"),
        "{out:?}"
    );
    let out = run_lab("emulated", 2, "calls=0");
    assert_eq!(out.status, Some(3), "{out:?}");
    let out = run_lab("emulated", 1, "");
    assert_eq!(out.status, Some(6), "{out:?}");
    assert!(out.stdout.contains("needs 2 to 16 vCPUs"), "{out:?}");
}

#[test]
fn result_lines_parse() {
    let stdout = "xcall-lab: cpus=2 tsc_khz=1 calls=50 deadman_ms=200 vector=224\n\
        xcall-lab: eoi-early: ok calls=50 rt_ns median=5 p99=9 expected=ok\n\
        xcall-lab: mutual: HANG detected by deadman after 201 ms (cpu 1 waiting for cpu 0) deadmen=1 calls=1 expected=hang\n\
        xcall-lab: timer: FAIL why (issued=1 completed=0 func_runs=0) deadmen=0 expected=ok UNEXPECTED\n\
        xcall-lab: summary: 1 ok, 1 hang, 1 fail (1 not as expected)\n";
    let lines = variant_lines(stdout);
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (
            lines[0].name.as_str(),
            lines[0].outcome,
            lines[0].unexpected
        ),
        ("eoi-early", Outcome::Ok, false)
    );
    assert_eq!(number(&lines[0].line, "median="), Some(5));
    assert_eq!(lines[1].outcome, Outcome::Hang);
    assert_eq!(number(&lines[1].line, "after "), Some(201));
    assert_eq!(number(&lines[1].line, "(cpu "), Some(1));
    assert_eq!(number(&lines[1].line, "waiting for cpu "), Some(0));
    assert_eq!(
        (
            lines[2].outcome,
            lines[2].expected.as_str(),
            lines[2].unexpected
        ),
        (Outcome::Fail, "ok", true)
    );
}
