//! Stop-the-world benchmark: latency from the request to every vCPU stopped (p50, p99) for 1,
//! 2, 4 and 8 vCPUs with busy and with halted guests, next to the in-guest cross-call round
//! trip that `xcall-lab` measures in the same run, under the emulated and the kvm irqchips.
//! Printed, never asserted.
//!
//! Run with `cargo bench -p tests --bench stw` (`HVTRACE_BENCH_STOPS` sets the samples per
//! row, default 300).

use std::time::{Duration, Instant};

use tests::{kvm_or_skip, library_vm, MemorySerial};
use vmm::{IrqChipMode, Vm};

fn start(
    guest_name: &str,
    cpus: usize,
    irqchip: IrqChipMode,
    cmdline: &str,
    timeout: Duration,
) -> (Vm, MemorySerial) {
    library_vm(guest_name, cpus, irqchip, cmdline, timeout)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 of `samples` stop-the-world latencies on a spinning guest.
fn stop_latency(
    cpus: usize,
    irqchip: IrqChipMode,
    mode: &str,
    samples: usize,
) -> (Duration, Duration) {
    let cmdline = format!("cpus=all mode={mode}");
    let (vm, serial) = start("spin", cpus, irqchip, &cmdline, Duration::from_secs(30));
    let world = vm.world();
    let end = vm.end_handle();
    let mut lat = Vec::with_capacity(samples);
    std::thread::scope(|s| {
        let runner = s.spawn(|| vm.run());
        let t = Instant::now();
        while !serial.text().contains("spin: mode=") {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "spin guest did not start: {}",
                serial.text()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..samples {
            let t = Instant::now();
            let guard = world.stop(Duration::from_secs(2)).expect("stop");
            lat.push(t.elapsed());
            drop(guard);
            std::thread::sleep(Duration::from_micros(300));
        }
        end.end();
        runner.join().expect("runner").expect("run");
    });
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// Median in-guest cross-call round trip (µs) of xcall-lab's `eoi-late` variant at `cpus`.
fn xcall_round_trip(cpus: usize, irqchip: IrqChipMode) -> Option<f64> {
    let (vm, serial) = start(
        "xcall-lab",
        cpus,
        irqchip,
        "variant=eoi-early,eoi-late calls=50",
        Duration::from_secs(60),
    );
    let _ = vm.run().expect("xcall-lab run");
    let text = serial.text();
    let medians: Vec<f64> = text
        .lines()
        .filter(|l| l.contains(": ok calls="))
        .filter_map(|l| {
            l.split("median=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .collect();
    (!medians.is_empty()).then(|| medians.iter().sum::<f64>() / medians.len() as f64 / 1000.0)
}

fn main() {
    if !kvm_or_skip("bench stw") {
        return;
    }
    let samples: usize = std::env::var("HVTRACE_BENCH_STOPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
        .max(10);
    let host = if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        "software KVM (kvm_pvm)"
    } else {
        "hardware KVM"
    };
    println!("hvtrace stop-the-world benchmark; host: {host}; {samples} stops per row");
    println!();
    println!("| irqchip | guest | vCPUs | stop p50 (µs) | stop p99 (µs) | in-guest cross call, median (µs) | p50 / cross call |");
    println!("|---|---|---|---|---|---|---|");
    for irqchip in [IrqChipMode::Emulated, IrqChipMode::Kvm] {
        let xcall2 = xcall_round_trip(2, irqchip);
        for mode in ["busy", "halt"] {
            for cpus in [1usize, 2, 4, 8] {
                let (p50, p99) = stop_latency(cpus, irqchip, mode, samples);
                let p50_us = p50.as_secs_f64() * 1e6;
                let (xcall, ratio) = match (cpus, xcall2) {
                    (2, Some(x)) => (
                        format!("{x:.1}"),
                        format!("{:.2}x (goal <= 0.5x)", p50_us / x),
                    ),
                    _ => ("-".into(), "-".into()),
                };
                println!(
                    "| {irqchip} | {mode} | {cpus} | {p50_us:.1} | {:.1} | {xcall} | {ratio} |",
                    p99.as_secs_f64() * 1e6
                );
            }
        }
    }
}
