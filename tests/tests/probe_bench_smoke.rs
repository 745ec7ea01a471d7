//! Smoke test of the probe benchmark's guest modes (`spin mode=calls|outs|loop|stepcalls`,
//! see `src/bench/exits.rs`): exact counts only, never timings. Under `--irqchip emulated` an
//! `fbt` probe on `bench_target` is hit once per call, and each hit costs exactly one exit
//! (the displaced instruction is emulated in the VMM, no single-step); one on
//! `bench_target_step`, whose first instruction is not emulated, costs exactly two (the trap
//! and the single step).

use std::time::Duration;

use tests::{kvm_or_skip, library_vm_with_probes};
use vmm::{IrqChipMode, Outcome};

const BOUND: Duration = Duration::from_secs(60);

/// What one run of the `spin` guest left behind.
struct Run {
    /// Serial output.
    text: String,
    /// Hits per armed probe, in the order given.
    hits: Vec<u64>,
    /// Exits the BSP handled, less the two per serial byte (`serial_putc`: an LSR read, which
    /// finds the VMM's UART always ready, and the THR write), so runs whose `ticks=` differ in
    /// length compare exactly.
    exits_besides_serial: i64,
}

fn run_spin(cmdline: &str, probes: &[&str]) -> Run {
    let (vm, serial) =
        library_vm_with_probes("spin", 1, IrqChipMode::Emulated, cmdline, BOUND, probes)
            .expect("build VM with probes");
    let world = vm.world();
    let armed = vm.probes();
    let outcome = vm.run().expect("run");
    let text = serial.text();
    assert!(
        matches!(outcome, Outcome::GuestExit(0)),
        "{cmdline} {probes:?}: {outcome:?}\n{text}"
    );
    let hits = probes
        .iter()
        .map(|want| {
            let set = armed.as_ref().expect("probes armed");
            let found = set.probes().into_iter().find(|p| {
                let name = p.probe.to_string();
                let (_, func_name) = want.split_once("::").expect("fbt::FUNC:NAME");
                name.ends_with(&format!(":{func_name}"))
            });
            found.unwrap_or_else(|| panic!("{want} not armed")).hits()
        })
        .collect();
    let exits = world.snapshots()[0].1.exits;
    Run {
        exits_besides_serial: exits as i64 - 2 * text.len() as i64,
        text,
        hits,
    }
}

/// Iterations of every bounded run here.
const N: u64 = 100;

/// Runs `spin mode=MODE n=N` with `probes` armed and checks that its loop finished.
fn run_mode(mode: &str, probes: &[&str]) -> Run {
    let run = run_spin(&format!("mode={mode} n={N}"), probes);
    assert!(
        run.text
            .contains(&format!("spin: {mode} done n={N} ticks=")),
        "{mode} {probes:?}: {}",
        run.text
    );
    run
}

#[test]
fn entry_and_return_probes_cost_one_exit_per_hit() {
    if !kvm_or_skip("entry_and_return_probes_cost_one_exit_per_hit") {
        return;
    }
    let base = run_mode("calls", &[]);
    let traced = run_mode(
        "calls",
        &["fbt::bench_target:entry", "fbt::bench_target:return"],
    );
    assert_eq!(traced.hits, [N, N], "entry and return hits");
    let hits: u64 = traced.hits.iter().sum();
    let extra = traced.exits_besides_serial - base.exits_besides_serial;
    // Exits per hit is exactly 1.0: one `hlt` exit per trap, nothing else.
    assert_eq!(extra, hits as i64, "exits added by {hits} probe hits");
}

#[test]
fn outs_mode_exits_zero_with_one_pio_exit_per_iteration() {
    if !kvm_or_skip("outs_mode_exits_zero_with_one_pio_exit_per_iteration") {
        return;
    }
    let outs = run_mode("outs", &[]);
    let empty = run_mode("loop", &[]);
    assert_eq!(
        outs.exits_besides_serial - empty.exits_besides_serial,
        N as i64,
        "one bare PIO exit per outb"
    );
}

#[test]
fn single_stepped_entry_probe_costs_two_exits_per_hit() {
    if !kvm_or_skip("single_stepped_entry_probe_costs_two_exits_per_hit") {
        return;
    }
    let base = run_mode("stepcalls", &[]);
    let traced = run_mode("stepcalls", &["fbt::bench_target_step:entry"]);
    assert_eq!(traced.hits, [N], "entry hits");
    let extra = traced.exits_besides_serial - base.exits_besides_serial;
    // The `hlt` trap, then the debug exit after single-stepping the displaced `test`.
    assert_eq!(
        extra,
        2 * N as i64,
        "exits added by {N} single-stepped hits"
    );
}
