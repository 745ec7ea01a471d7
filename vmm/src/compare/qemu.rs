//! One run of the guest under QEMU (`crate::qemu`), as a column of `hvtrace compare`: the
//! guest's checks and numbers parsed from QEMU's serial output, its ending (a hang when QEMU
//! outlived the bound). Nothing inside QEMU is observable from here: no APIC events, no exits.

use std::collections::BTreeMap;
use std::path::Path;

use super::guest_output::{checks, metrics};
use super::run::{RunResult, RunSpec};
use crate::qemu::{self, QemuEnding, QemuError, QemuIrqchip, QemuMachine, QemuSpec};

/// Runs `spec` once under the QEMU at `qemu_bin` with `irqchip` (the `pc` machine).
pub fn run_once_qemu(
    qemu_bin: &Path,
    spec: &RunSpec,
    irqchip: QemuIrqchip,
) -> Result<RunResult, QemuError> {
    let run = qemu::run(
        qemu_bin,
        &QemuSpec {
            image: spec.image.bytes.clone(),
            cpus: spec.cpus,
            mem: spec.mem,
            cmdline: spec.cmdline.clone(),
            irqchip,
            machine: QemuMachine::Pc,
            timeout: spec.timeout,
        },
    )?;
    let (ending, status, hung) = match &run.ending {
        QemuEnding::GuestExit(s) => (format!("exit {s}"), Some(*s), false),
        QemuEnding::Hang => (
            format!(
                "hang: QEMU still running after {:.0} s (killed)",
                spec.timeout.as_secs_f64()
            ),
            None,
            true,
        ),
        QemuEnding::Failed(code, line) => (
            format!(
                "QEMU failed ({}): {line}",
                code.map_or("killed by a signal".into(), |c| format!("status {c}"))
            ),
            None,
            false,
        ),
    };
    Ok(RunResult {
        ending,
        status,
        hung,
        wall: run.wall,
        checks: checks(&run.serial),
        guest_metrics: metrics(&run.serial),
        apic: None,
        exits: BTreeMap::new(),
        deliveries_us: vec![Vec::new(); spec.cpus],
        exits_us: vec![Vec::new(); spec.cpus],
        final_apic: Default::default(),
        serial: run.serial,
    })
}
