//! Stop-the-world latency (request to every vCPU stopped, p50 and p99) for 1, 2, 4 and 8
//! vCPUs with busy and with halted guests, under hvtrace's APIC and KVM's, against the
//! in-guest cross call (`xcall-lab`'s median round trip) measured in the same run.

use std::time::{Duration, Instant};

use vmm::IrqChipMode;

use super::{percentile, us, Goal, Row, Size};
use crate::{library_vm, wait_for_serial};

/// Stop latencies (µs) of `samples` stops of a spinning guest.
fn stop_latencies(cpus: usize, irqchip: IrqChipMode, mode: &str, samples: usize) -> Vec<f64> {
    let cmdline = format!("cpus=all mode={mode}");
    let (vm, serial) = library_vm("spin", cpus, irqchip, &cmdline, Duration::from_secs(60));
    let world = vm.world();
    let end = vm.end_handle();
    let mut lat = Vec::with_capacity(samples);
    std::thread::scope(|s| {
        let runner = s.spawn(|| vm.run());
        wait_for_serial(&serial, "spin: mode=", Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..samples {
            let t = Instant::now();
            let guard = world.stop(Duration::from_secs(2)).expect("stop");
            lat.push(us(t.elapsed()));
            drop(guard);
            std::thread::sleep(Duration::from_micros(300));
        }
        end.end();
        runner.join().expect("runner").expect("run");
    });
    lat
}

/// Median in-guest cross-call round trip (µs) of xcall-lab at `cpus`.
pub fn xcall_round_trip(cpus: usize, irqchip: IrqChipMode, calls: u32) -> Option<f64> {
    let (vm, serial) = library_vm(
        "xcall-lab",
        cpus,
        irqchip,
        &format!("variant=eoi-early,eoi-late calls={calls}"),
        Duration::from_secs(120),
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
                .parse()
                .ok()
        })
        .collect();
    (!medians.is_empty()).then(|| medians.iter().sum::<f64>() / medians.len() as f64 / 1000.0)
}

/// The stop-the-world rows.
pub fn rows(size: Size) -> Vec<Row> {
    let samples = size.pick(10, 200, 1000);
    let cpu_counts: &[usize] = size.pick(&[1, 2], &[1, 2, 4, 8], &[1, 2, 4, 8]);
    let mut out = Vec::new();
    for irqchip in [IrqChipMode::Emulated, IrqChipMode::Kvm] {
        let xcall = xcall_round_trip(2, irqchip, size.pick(5, 50, 200));
        for mode in ["busy", "halt"] {
            for &cpus in cpu_counts {
                let lat = stop_latencies(cpus, irqchip, mode, samples);
                let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
                let name = format!(
                    "stop the world, {cpus} vCPU(s), {} guest, --irqchip {irqchip}: p50",
                    if mode == "busy" { "busy" } else { "halted" }
                );
                let mut row = Row::new("stop-the-world", name, p50, "µs")
                    .note(format!("p99 {p99:.1} µs; {samples} stops"))
                    .samples(lat);
                if let (2, Some(x)) = (cpus, xcall) {
                    row = row
                        .against("in-guest cross call (xcall-lab, 2 vCPUs)", x)
                        .goal(Goal::MaxRatio(0.5));
                }
                out.push(row);
            }
        }
    }
    out
}
