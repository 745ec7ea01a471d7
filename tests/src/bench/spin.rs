//! One timed run of the `spin` guest (or `spin-scale`) in this process: the guest times `n`
//! iterations of its loop with the TSC from inside (`spin: MODE done n=N ticks=T
//! tsc_khz=K`), so VM creation, boot and teardown stay out of the numbers.

use std::time::Duration;

use vmm::{IrqChipMode, Outcome};

use crate::library_vm_with_probes;

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// TSC ticks of the loop.
    pub ticks: u64,
    /// The guest's TSC frequency (boot info), 0 if unknown.
    pub tsc_khz: u64,
    /// Exits the BSP handled, less two per serial byte (an LSR read and a THR write).
    pub exits: i64,
    /// Hits summed over the armed probes.
    pub hits: u64,
}

impl Sample {
    /// Microseconds per loop iteration.
    pub fn us_per_iteration(&self, n: u64) -> f64 {
        if self.tsc_khz == 0 || n == 0 {
            return f64::NAN;
        }
        self.ticks as f64 / self.tsc_khz as f64 * 1000.0 / n as f64
    }
}

/// The value of `key=` in `line`.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Runs `guest` (`spin` or `spin-scale`) once, 1 vCPU, in `mode` for `n` iterations with
/// `probes` armed; panics with the guest's output when it fails.
pub fn run(guest: &str, irqchip: IrqChipMode, mode: &str, n: u64, probes: &[&str]) -> Sample {
    let cmdline = format!("mode={mode} n={n}");
    let what = format!(
        "{guest} {cmdline} --irqchip {irqchip} probes {}",
        probes.len()
    );
    let (vm, serial) = library_vm_with_probes(
        guest,
        1,
        irqchip,
        &cmdline,
        Duration::from_secs(600),
        probes,
    )
    .unwrap_or_else(|e| panic!("{what}: build VM: {e}"));
    let world = vm.world();
    let armed = vm.probes();
    let outcome = vm.run().unwrap_or_else(|e| panic!("{what}: run: {e}"));
    let text = serial.text();
    assert!(
        matches!(outcome, Outcome::GuestExit(0)),
        "{what}: {outcome:?}\n{text}"
    );
    let done = format!("spin: {mode} done ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&done))
        .unwrap_or_else(|| panic!("{what}: no `{done}` line in\n{text}"));
    let hits = armed
        .map(|set| set.probes().iter().map(|p| p.hits()).sum())
        .unwrap_or(0);
    Sample {
        ticks: field(line, "ticks").unwrap_or_else(|| panic!("no ticks in {line}")),
        tsc_khz: field(line, "tsc_khz").unwrap_or(0),
        exits: world.snapshots()[0].1.exits as i64 - 2 * text.len() as i64,
        hits,
    }
}
