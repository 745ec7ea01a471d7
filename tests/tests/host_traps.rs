//! The host trap probes against real KVM: every probe answers with a typed outcome within its
//! bound, the choice follows from them, and `hvtrace run -v` prints them (only with `-v`).

use std::time::Duration;

use tests::{kvm_or_skip, run_hvtrace};
use vmm::host_traps::{choose_strategy, HostTraps, ProbeOutcome, TrapStrategy, PROBE_BOUND};
use vmm::IrqChipMode;

#[test]
fn every_probe_answers_with_a_typed_outcome_within_its_bound() {
    if !kvm_or_skip("every_probe_answers_with_a_typed_outcome_within_its_bound") {
        return;
    }
    let host = HostTraps::probe();
    for line in host.lines() {
        eprintln!("{line}");
    }
    eprintln!("probing took {:?}", host.took);
    for (name, r) in [
        ("int3", &host.int3),
        ("hw_breakpoint", &host.hw_breakpoint),
        ("single_step", &host.single_step),
    ] {
        // A host with KVM can always build the probe VM: an Error is a bug in the probe.
        assert!(
            !matches!(r.outcome, ProbeOutcome::Error(_)),
            "{name}: {}",
            r.outcome
        );
        assert!(
            r.took <= PROBE_BOUND * 2 + Duration::from_millis(200),
            "{name} took {:?}",
            r.took
        );
    }
    assert!(host.took <= PROBE_BOUND * 6 + Duration::from_millis(500));
    // Whatever this host does, the user-space APIC always has a strategy (int3 or hlt).
    let choice = choose_strategy(&host, IrqChipMode::Emulated).unwrap();
    assert!(
        matches!(choice.strategy, TrapStrategy::Int3 | TrapStrategy::Hlt),
        "{choice}"
    );
    // And the choice under KVM's APIC follows the probes.
    match choose_strategy(&host, IrqChipMode::Kvm) {
        Ok(c) if host.int3.outcome.works() => assert_eq!(c.strategy, TrapStrategy::Int3),
        Ok(c) => {
            assert!(host.hw_breakpoint.outcome.works());
            assert_eq!(c.strategy, TrapStrategy::HwBreakpoints);
        }
        Err(e) => {
            assert!(
                !host.int3.outcome.works() && !host.hw_breakpoint.outcome.works(),
                "{e}"
            )
        }
    }
}

#[test]
fn run_v_prints_the_probes_and_the_strategy_and_a_plain_run_does_not() {
    if !kvm_or_skip("run_v_prints_the_probes_and_the_strategy_and_a_plain_run_does_not") {
        return;
    }
    let bound = Duration::from_secs(60);
    let verbose = run_hvtrace(&["run", "--guest", "hello", "-v"], bound);
    assert_eq!(verbose.status, Some(0), "{}", verbose.stderr);
    for needle in [
        "hvtrace: host probe: int3+USE_SW_BP: ",
        "hvtrace: host probe: hardware breakpoint (DR0): ",
        "hvtrace: host probe: single-step: ",
        "hvtrace: trap strategy: ",
    ] {
        assert!(
            verbose.stderr.contains(needle),
            "{needle:?} not in {}",
            verbose.stderr
        );
    }
    let plain = run_hvtrace(&["run", "--guest", "hello"], bound);
    assert_eq!(plain.status, Some(0), "{}", plain.stderr);
    assert!(!plain.stderr.contains("trap strategy"), "{}", plain.stderr);
    assert!(!plain.stderr.contains("host probe"), "{}", plain.stderr);
}
