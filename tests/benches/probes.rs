//! Probe benchmark: the per-hit cost of an emulated `fbt` probe (a `hlt` trap whose displaced
//! instruction the VMM emulates, one exit per hit) and of a single-stepped one (a displaced
//! instruction the VMM does not emulate: the original byte is put back, the instruction is
//! single-stepped with `KVM_GUESTDBG_SINGLESTEP` and the trap re-armed, two exits per hit),
//! each as a ratio over a bare PIO exit measured in the same run, and the exits each hit
//! costs. Printed, never asserted (it fails only when a run fails or the hit counts are not
//! exactly N).
//!
//! Run with `cargo bench -p tests --bench probes` (`HVTRACE_BENCH_PROBE_N` sets the loop
//! iterations, default 20000; `HVTRACE_BENCH_REPS` the runs per case, default 5).
//!
//! Every case is one run of the `spin` guest, 1 vCPU, `--irqchip emulated` (probes need it),
//! timing a loop of N iterations with the TSC from inside the guest (`spin: MODE done n=N
//! ticks=T tsc_khz=K`), so VM creation, boot and teardown stay out of the numbers:
//!
//! - `loop`: `dec; jnz` alone, the loop's own cost;
//! - `outs`: `outb %al, $0x80; dec; jnz`, a port the VMM ignores: one bare PIO exit each;
//! - `calls`: `call bench_target; dec; jnz`, where `bench_target` is `push %rbp; mov
//!   %rsp, %rbp; pop %rbp; ret`, without probes, with `fbt::bench_target:entry`, and with
//!   `entry` and `return`;
//! - `stepcalls`: `call bench_target_step; dec; jnz`, where `bench_target_step` is
//!   `bench_target` preceded by `test %rdi, %rdi` (not in the emulated set of
//!   `tracer::traps::emulate`), without probes and with `fbt::bench_target_step:entry`, which
//!   is therefore single-stepped (1 vCPU, so stopping the others stops nobody).
//!
//! A bare exit costs (outs - loop) / N: what an iteration pays for its `outb`. A probe hit
//! costs (calls with probes - calls without) / hits, and (stepcalls with the probe -
//! stepcalls without) / hits for the single-stepped one: what the trap adds. Both are medians of
//! the runs (cases interleaved, so drift on a shared host hits each alike), in TSC ticks and
//! converted to µs with the guest's `tsc_khz`; their ratio is the result. On a software-KVM
//! host every CPL0 instruction is interpreted (~1 µs), so the `outb` itself and the
//! displaced instruction that the VMM emulates instead of KVM are part of those costs.
//!
//! Exits are counted by the VMM (`Snapshot::exits` of the BSP), less two per serial byte
//! (`serial_putc`: an LSR read, the VMM's UART being always ready, and a THR write) since the
//! `ticks=` numbers differ in length: exits per hit = (exits with probes - exits without) /
//! hits, 1.0 on the emulated path and 2.0 on the single-stepped one (the `hlt` trap, then the
//! debug exit after the step).

use std::time::{Duration, Instant};

use tests::bench::{env_or, median};
use tests::{kvm_or_skip, library_vm_with_probes};
use vmm::{IrqChipMode, Outcome};

const BOUND: Duration = Duration::from_secs(600);
const ENTRY: &str = "fbt::bench_target:entry";
const RETURN: &str = "fbt::bench_target:return";
const STEP_ENTRY: &str = "fbt::bench_target_step:entry";

/// One benchmark case: a `spin` mode and the probes armed.
struct Case {
    label: &'static str,
    mode: &'static str,
    probes: &'static [&'static str],
}

const CASES: [Case; 7] = [
    Case {
        label: "empty loop",
        mode: "loop",
        probes: &[],
    },
    Case {
        label: "bare PIO exit (outb 0x80)",
        mode: "outs",
        probes: &[],
    },
    Case {
        label: "calls, no probes",
        mode: "calls",
        probes: &[],
    },
    Case {
        label: "calls, entry probe",
        mode: "calls",
        probes: &[ENTRY],
    },
    Case {
        label: "calls, entry + return probes",
        mode: "calls",
        probes: &[ENTRY, RETURN],
    },
    Case {
        label: "stepcalls, no probes",
        mode: "stepcalls",
        probes: &[],
    },
    Case {
        label: "stepcalls, entry probe (single-stepped)",
        mode: "stepcalls",
        probes: &[STEP_ENTRY],
    },
];

/// What one run measured.
struct Sample {
    /// TSC ticks the guest's loop took.
    ticks: u64,
    /// The guest's TSC frequency (boot info), 0 if unknown.
    tsc_khz: u64,
    /// Host wall time of `Vm::run` (boot and teardown included).
    wall: Duration,
    /// Exits the BSP handled, less two per serial byte.
    exits: i64,
    /// Hits summed over the armed probes.
    hits: u64,
}

/// The value of `key=` in `line`.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn run_case(case: &Case, n: u64) -> Sample {
    let cmdline = format!("mode={} n={n}", case.mode);
    let (vm, serial) = library_vm_with_probes(
        "spin",
        1,
        IrqChipMode::Emulated,
        &cmdline,
        BOUND,
        case.probes,
    )
    .unwrap_or_else(|e| panic!("{}: build VM: {e}", case.label));
    let world = vm.world();
    let armed = vm.probes();
    let start = Instant::now();
    let outcome = vm
        .run()
        .unwrap_or_else(|e| panic!("{}: run: {e}", case.label));
    let wall = start.elapsed();
    let text = serial.text();
    assert!(
        matches!(outcome, Outcome::GuestExit(0)),
        "{}: {outcome:?}\n{text}",
        case.label
    );
    let done = format!("spin: {} done ", case.mode);
    let line = text
        .lines()
        .find(|l| l.starts_with(&done))
        .unwrap_or_else(|| panic!("{}: no `{done}` line in\n{text}", case.label));
    assert_eq!(field(line, "n"), Some(n), "{}: {line}", case.label);
    let ticks = field(line, "ticks").unwrap_or_else(|| panic!("no ticks in {line}"));
    let tsc_khz = field(line, "tsc_khz").unwrap_or(0);
    let mut hits = 0;
    if let Some(set) = &armed {
        for p in set.probes() {
            assert_eq!(p.hits(), n, "{}: hits of {}", case.label, p.probe);
            hits += p.hits();
        }
    }
    assert_eq!(
        armed.map_or(0, |s| s.probes().len()),
        case.probes.len(),
        "{}: probes armed",
        case.label
    );
    let exits = world.snapshots()[0].1.exits as i64 - 2 * text.len() as i64;
    Sample {
        ticks,
        tsc_khz,
        wall,
        exits,
        hits,
    }
}

fn main() {
    if !kvm_or_skip("bench probes") {
        return;
    }
    let n = env_or("HVTRACE_BENCH_PROBE_N", 20_000).clamp(1, 10_000_000);
    let reps = env_or("HVTRACE_BENCH_REPS", 5).max(1) as usize;
    let host = if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        "software KVM (kvm_pvm)"
    } else {
        "hardware KVM"
    };
    // Warm-up (page faults, caches), not counted.
    for case in &CASES {
        run_case(case, n.min(1000));
    }
    let mut samples: Vec<Vec<Sample>> = CASES.iter().map(|_| Vec::new()).collect();
    for _ in 0..reps {
        for (case, out) in CASES.iter().zip(&mut samples) {
            out.push(run_case(case, n));
        }
    }
    let tsc_khz = samples[0][0].tsc_khz;
    let ticks: Vec<f64> = samples
        .iter()
        .map(|s| median(&s.iter().map(|x| x.ticks as f64).collect::<Vec<_>>()))
        .collect();
    let to_us = |t: f64| {
        if tsc_khz == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", t / tsc_khz as f64 * 1000.0)
        }
    };
    let exits = |i: usize| median(&samples[i].iter().map(|s| s.exits).collect::<Vec<_>>());
    let hits = |i: usize| samples[i][0].hits;
    let nf = n as f64;
    let [empty, outs, base, entry, both, step_base, step] = [0, 1, 2, 3, 4, 5, 6];

    println!(
        "hvtrace probe benchmark; host: {host}; --irqchip emulated, 1 vCPU; N = {n} iterations \
         per run; median of {reps} runs per case; tsc_khz = {tsc_khz}"
    );
    println!();
    println!(
        "| case | guest loop, median (ticks) | per iteration (µs) | exits besides serial | \
         probe hits | Vm::run wall, median (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, case) in CASES.iter().enumerate() {
        let wall = median(&samples[i].iter().map(|s| s.wall).collect::<Vec<_>>());
        println!(
            "| `spin mode={} n={n}`: {} | {:.0} | {} | {} | {} | {:.1} |",
            case.mode,
            case.label,
            ticks[i],
            to_us(ticks[i] / nf),
            exits(i),
            hits(i),
            wall.as_secs_f64() * 1e3
        );
    }

    let bare = (ticks[outs] - ticks[empty]) / nf;
    let bare_exits = (exits(outs) - exits(empty)) as f64 / nf;
    // A probed case against the unprobed case of the same mode.
    let baseline = |i: usize| if i == step { step_base } else { base };
    let per_hit = |i: usize| (ticks[i] - ticks[baseline(i)]) / hits(i) as f64;
    let exits_per_hit = |i: usize| (exits(i) - exits(baseline(i))) as f64 / hits(i) as f64;
    let emulated = per_hit(entry);
    let stepped = per_hit(step);
    let verdict = if emulated <= 1.2 * bare {
        "met"
    } else {
        "not met"
    };
    println!();
    println!("| measure | ticks | µs | ratio over a bare PIO exit | exits per hit |");
    println!("|---|---|---|---|---|");
    println!(
        "| bare PIO exit: (outs - empty loop) / N | {bare:.0} | {} | 1.00x | {bare_exits:.3} per outb |",
        to_us(bare)
    );
    println!(
        "| emulated probe hit, entry only: (entry - no probes) / hits | {emulated:.0} | {} | {:.2}x | {:.3} |",
        to_us(emulated),
        emulated / bare,
        exits_per_hit(entry)
    );
    println!(
        "| emulated probe hit, entry + return (2 traps per call): (both - no probes) / hits | {:.0} | {} | {:.2}x | {:.3} |",
        per_hit(both),
        to_us(per_hit(both)),
        per_hit(both) / bare,
        exits_per_hit(both)
    );
    println!(
        "| a probed call, entry + return: (both - no probes) / N | {:.0} | {} | {:.2}x | - |",
        (ticks[both] - ticks[base]) / nf,
        to_us((ticks[both] - ticks[base]) / nf),
        (ticks[both] - ticks[base]) / nf / bare
    );
    println!(
        "| single-stepped probe hit, entry only: (stepcalls entry - stepcalls no probes) / hits | {stepped:.0} | {} | {:.2}x | {:.3} |",
        to_us(stepped),
        stepped / bare,
        exits_per_hit(step)
    );
    println!();
    println!(
        "Goal: emulated hit <= 1.2x a bare exit: {verdict} ({:.2}x). Exits per hit must be \
         1.0 on the emulated path (measured {:.3}). Single-stepped hit: {:.2}x a bare exit, \
         {:.2}x an emulated hit, {:.3} exits per hit (expected 2: the trap, then the debug \
         exit after the step).",
        emulated / bare,
        exits_per_hit(entry),
        stepped / bare,
        stepped / emulated,
        exits_per_hit(step)
    );
}
