//! Exit and probe costs, all timed by the `spin` guest from inside (TSC) and medians over
//! repetitions with the cases interleaved: bare exit round trips (PIO, MMIO, MSR under
//! hvtrace's APIC; a hardware-breakpoint debug exit under KVM's) against a `getppid()`
//! syscall of this process; probe hits (emulated, single-stepped) against a bare PIO exit;
//! and the hit cost as the number of armed sites grows (1, 100, 10,000) against one site.

use std::time::Instant;

use vmm::host_traps::trap_strategy;
use vmm::IrqChipMode;

use super::spin::{run, Sample};
use super::{median, Goal, Row, Size};

/// One timed case.
struct Case {
    key: &'static str,
    guest: &'static str,
    irqchip: IrqChipMode,
    mode: &'static str,
    probes: Vec<String>,
}

fn case(key: &'static str, mode: &'static str, probes: &[&str]) -> Case {
    Case {
        key,
        guest: "spin",
        irqchip: IrqChipMode::Emulated,
        mode,
        probes: probes.iter().map(|p| p.to_string()).collect(),
    }
}

/// Nanoseconds per `getppid()` system call (median of 5 batches).
pub fn getppid_ns(calls: u32) -> f64 {
    let batch = || {
        let t = Instant::now();
        for _ in 0..calls {
            // SAFETY: getppid has no preconditions and cannot fail.
            std::hint::black_box(unsafe { libc::getppid() });
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(calls)
    };
    median(&(0..5).map(|_| batch()).collect::<Vec<_>>())
}

/// The exit and probe rows.
pub fn rows(size: Size) -> Vec<Row> {
    let n: u64 = size.pick(300, 20_000, 50_000);
    let reps = size.pick(1, 5, 11);
    let entry = "fbt::bench_target:entry";
    let ret = "fbt::bench_target:return";
    let mut cases = vec![
        case("loop", "loop", &[]),
        case("outs", "outs", &[]),
        case("mmios", "mmios", &[]),
        case("msrs", "msrs", &[]),
        case("calls", "calls", &[]),
        case("calls+entry", "calls", &[entry]),
        case("calls+both", "calls", &[entry, ret]),
        case("step", "stepcalls", &[]),
        case("step+entry", "stepcalls", &["fbt::bench_target_step:entry"]),
    ];
    // A debug exit needs a breakpoint strategy under KVM's APIC (hardware breakpoints here).
    let kvm_traps = trap_strategy(IrqChipMode::Kvm).is_ok();
    if kvm_traps {
        for (key, probes) in [("kvm calls", vec![]), ("kvm calls+entry", vec![entry])] {
            let mut c = case(key, "calls", &probes);
            c.irqchip = IrqChipMode::Kvm;
            cases.push(c);
        }
    }
    // Sites armed but never hit: 1, 101 (many_fn_0..99) and 10,001 (every many_fn).
    let scale: [(&str, &[&str]); 3] = [
        ("1 site", &[]),
        (
            "101 sites",
            &["fbt::many_fn_?:entry", "fbt::many_fn_??:entry"],
        ),
        ("10,001 sites", &["fbt::many_fn_*:entry"]),
    ];
    for (key, extra) in scale {
        let mut probes = vec![entry.to_string()];
        probes.extend(extra.iter().map(|p| p.to_string()));
        cases.push(Case {
            key,
            guest: "spin-scale",
            irqchip: IrqChipMode::Emulated,
            mode: "calls",
            probes,
        });
    }
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..reps {
        for (c, out) in cases.iter().zip(&mut samples) {
            let probes: Vec<&str> = c.probes.iter().map(String::as_str).collect();
            out.push(run(c.guest, c.irqchip, c.mode, n, &probes));
        }
    }
    let get = |key: &str| -> (f64, f64, u64) {
        let i = cases.iter().position(|c| c.key == key).expect("case");
        let s = &samples[i];
        let us = median(&s.iter().map(|x| x.us_per_iteration(n)).collect::<Vec<_>>());
        let exits = median(&s.iter().map(|x| x.exits as f64).collect::<Vec<_>>());
        (us, exits, s[0].hits)
    };
    let per_hit = |with: &str, without: &str| -> (f64, f64) {
        let (a, ea, hits) = get(with);
        let (b, eb, _) = get(without);
        let hits = hits.max(1) as f64;
        ((a - b) * n as f64 / hits, (ea - eb) / hits)
    };
    let syscall_us = getppid_ns(size.pick(10_000, 1_000_000, 5_000_000) as u32) / 1000.0;
    let (loop_us, _, _) = get("loop");
    let bare = |key: &str| get(key).0 - loop_us;
    let pio = bare("outs");
    let unit = "getppid() syscall";
    let mut out = vec![
        Row::new(
            "exits",
            "getppid() syscall (this process)",
            syscall_us,
            "µs",
        )
        .note("the unit of the exit rows"),
        Row::new("exits", "bare PIO exit round trip (outb 0x80)", pio, "µs")
            .against(unit, syscall_us),
        Row::new(
            "exits",
            "bare MMIO exit round trip (local APIC ID read, hvtrace's APIC)",
            bare("mmios"),
            "µs",
        )
        .against(unit, syscall_us),
        Row::new(
            "exits",
            "bare MSR exit round trip (rdmsr IA32_TSC_DEADLINE, filtered)",
            bare("msrs"),
            "µs",
        )
        .against(unit, syscall_us),
    ];
    if kvm_traps {
        let (hit, exits) = per_hit("kvm calls+entry", "kvm calls");
        out.push(
            Row::new(
                "exits",
                "debug exit round trip (hardware-breakpoint probe hit, --irqchip kvm)",
                hit,
                "µs",
            )
            .against(unit, syscall_us)
            .note(format!(
                "{exits:.3} exits per hit; includes emulating the displaced `push %rbp`"
            )),
        );
    }
    let (hit, exits) = per_hit("calls+entry", "calls");
    out.push(
        Row::new(
            "probes",
            "probe hit, emulated path (hlt trap, entry)",
            hit,
            "µs",
        )
        .against("bare PIO exit", pio)
        .goal(Goal::MaxRatio(1.2))
        .note(format!("{exits:.3} exits per hit (must be 1)")),
    );
    let (hit, exits) = per_hit("calls+both", "calls");
    out.push(
        Row::new(
            "probes",
            "probe hit, emulated path (entry + return)",
            hit,
            "µs",
        )
        .against("bare PIO exit", pio)
        .goal(Goal::MaxRatio(1.2))
        .note(format!("{exits:.3} exits per hit")),
    );
    let (hit, exits) = per_hit("step+entry", "step");
    out.push(
        Row::new("probes", "probe hit, single-stepped path", hit, "µs")
            .against("bare PIO exit", pio)
            .note(format!(
                "{exits:.3} exits per hit (the trap, then the step)"
            )),
    );
    let (one, _) = per_hit("1 site", "calls");
    for (key, _) in scale {
        let (hit, _) = per_hit(key, "calls");
        out.push(
            Row::new(
                "probe scaling",
                format!("probe hit with {key} armed"),
                hit,
                "µs",
            )
            .against("1 site armed", one)
            .goal(Goal::MaxRatio(1.2))
            .note("the goal: flat"),
        );
    }
    // Every row but the syscall's is a difference of two timed runs.
    out.into_iter().map(Row::checked_difference).collect()
}
