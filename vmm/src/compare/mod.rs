//! `hvtrace compare`: the same guest under hvtrace's APIC (`emulated`), KVM's (`kvm`) and
//! KVM's local APICs with hvtrace's IOAPIC (`split`), several times each, side by side: the
//! guest's own results (each conformance check), its own numbers, what hvtrace's APIC recorded
//! (deliveries, nesting, EOIs, IPI latency, timer period), and the exits each irqchip costs.
//! Every difference is marked; where the conformance guest can tell, the report says which side
//! the SDM supports, and known causes (KVM's design, this host's software KVM) are labelled.

mod guest_output;
mod html;
mod known;
mod metrics;
mod report;
mod rows;
mod run;

pub use guest_output::{Check, Verdict};
pub use html::html_report;
pub use known::{software_kvm, Cause};
pub use metrics::ApicMetrics;
pub use report::{json_report, text_report};
pub use rows::{rows, Row};
pub use run::{RunResult, RunSpec};

use crate::irqchip::IrqChipMode;
use crate::VmmError;

/// Every run of one irqchip mode.
#[derive(Clone, Debug)]
pub struct ModeRuns {
    /// The mode.
    pub mode: IrqChipMode,
    /// Its runs, in order.
    pub runs: Vec<RunResult>,
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

/// Runs `spec` `runs` times under each of `modes`, telling `progress` before each run.
pub fn compare(
    spec: &RunSpec,
    runs: usize,
    modes: &[IrqChipMode],
    progress: &mut dyn FnMut(IrqChipMode, usize),
) -> Result<Comparison, VmmError> {
    let mut all = Vec::new();
    for &mode in modes {
        let mut list = Vec::new();
        for i in 0..runs {
            progress(mode, i);
            list.push(run::run_once(spec, mode)?);
        }
        all.push(ModeRuns { mode, runs: list });
    }
    Ok(Comparison {
        guest: spec.image.name.clone(),
        cpus: spec.cpus,
        runs,
        software_kvm: software_kvm(),
        modes: all,
    })
}
