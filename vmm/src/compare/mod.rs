//! `hvtrace compare`: the same guest under hvtrace's APIC (`emulated`), KVM's (`kvm`) and
//! KVM's local APICs with hvtrace's IOAPIC (`split`), several times each, side by side: the
//! guest's own results (each conformance check), its own numbers, what hvtrace's APIC recorded
//! (deliveries, nesting, EOIs, IPI latency, timer period), and the exits each irqchip costs.
//! Every difference is marked; where the conformance guest can tell, the report says which side
//! the SDM supports, and known causes (KVM's design, this host's software KVM) are labelled.
//! With `--with-qemu`, QEMU runs the same image as two more columns ([`Column::Qemu`]: KVM's
//! irqchip and QEMU's own APIC), its checks and numbers read from its serial output.

mod guest_output;
mod html;
mod known;
mod metrics;
mod qemu;
mod report;
mod rows;
mod run;

pub use guest_output::{Check, Verdict};
pub use html::html_report;
pub use known::{software_kvm, Cause};
pub use metrics::ApicMetrics;
pub use qemu::run_once_qemu;
pub use report::{json_report, text_report};
pub use rows::{rows, Row};
pub use run::{RunResult, RunSpec};

use std::path::Path;

use crate::irqchip::IrqChipMode;
use crate::qemu::{QemuError, QemuIrqchip};
use crate::VmmError;

/// One column of the comparison: who runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// hvtrace, in this process, under an irqchip mode.
    Hvtrace(IrqChipMode),
    /// QEMU (`qemu-system-x86_64 -kernel`) with KVM's or its own APIC.
    Qemu(QemuIrqchip),
}

impl Column {
    /// The column's heading: the irqchip mode, or `qemu-kvm` / `qemu-user`.
    pub fn label(self) -> String {
        match self {
            Column::Hvtrace(mode) => mode.to_string(),
            Column::Qemu(q) => q.label().to_string(),
        }
    }
}

/// Every run of one column.
#[derive(Clone, Debug)]
pub struct ModeRuns {
    /// The column's heading (an irqchip mode, `qemu-kvm`, `qemu-user`).
    pub label: String,
    /// Whether hvtrace ran it, so its exits (and, under the emulated APIC, APIC events) were
    /// observed; a QEMU column's are `n/a`.
    pub observed: bool,
    /// Its runs, in order.
    pub runs: Vec<RunResult>,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// hvtrace could not run the guest.
    #[error(transparent)]
    Vm(#[from] VmmError),
    /// QEMU could not be run.
    #[error("QEMU: {0}")]
    Qemu(#[from] QemuError),
}

/// A whole comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The image's name.
    pub guest: String,
    /// vCPUs.
    pub cpus: usize,
    /// Runs per mode.
    pub runs: usize,
    /// Whether this machine's KVM is the nested software one.
    pub software_kvm: bool,
    /// The modes, in column order.
    pub modes: Vec<ModeRuns>,
}

/// The modes compared, in column order.
pub const MODES: [IrqChipMode; 3] = [IrqChipMode::Emulated, IrqChipMode::Kvm, IrqChipMode::Split];

/// The QEMU columns of `--with-qemu`, after [`MODES`].
pub const QEMU_COLUMNS: [QemuIrqchip; 2] = [QemuIrqchip::Kernel, QemuIrqchip::User];

/// Runs `spec` `runs` times in each of `columns` (QEMU ones with the binary `qemu`, which
/// they need), telling `progress` (column label, run index) before each run.
pub fn compare(
    spec: &RunSpec,
    runs: usize,
    columns: &[Column],
    qemu: Option<&Path>,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<Comparison, CompareError> {
    let mut all = Vec::new();
    for &column in columns {
        let label = column.label();
        let mut list = Vec::new();
        for i in 0..runs {
            progress(&label, i);
            list.push(match column {
                Column::Hvtrace(mode) => run::run_once(spec, mode)?,
                Column::Qemu(irqchip) => {
                    let bin = qemu.ok_or(QemuError::NotInstalled)?;
                    run_once_qemu(bin, spec, irqchip)?
                }
            });
        }
        all.push(ModeRuns {
            label,
            observed: matches!(column, Column::Hvtrace(_)),
            runs: list,
        });
    }
    Ok(Comparison {
        guest: spec.image.name.clone(),
        cpus: spec.cpus,
        runs,
        software_kvm: software_kvm(),
        modes: all,
    })
}
