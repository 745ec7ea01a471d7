//! One run of the guest under one irqchip, in this process, with its serial output captured
//! and a timeline recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::guest_output::{checks, metrics, Check};
use super::metrics::{apic_metrics, exits_by_kind, ApicMetrics};
use crate::devices::MemoryOutput;
use crate::irqchip::IrqChipMode;
use crate::timeline::{EventKind, Timeline, DEFAULT_MAX_EVENTS};
use crate::{Image, Outcome, Vm, VmConfig, VmmError};

/// What one run showed.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// How it ended, in words (`exit 0`, `timeout after 60 s (hang)`, `guest error: ...`).
    pub ending: String,
    /// The guest's exit status, when it exited.
    pub status: Option<u8>,
    /// Whether it hung (the timeout expired).
    pub hung: bool,
    /// Wall time of the run.
    pub wall: Duration,
    /// The guest's own checks.
    pub checks: Vec<Check>,
    /// The guest's own numbers.
    pub guest_metrics: BTreeMap<String, f64>,
    /// What hvtrace's APIC recorded (`None` under KVM's APIC).
    pub apic: Option<ApicMetrics>,
    /// Exits to the VMM per kind.
    pub exits: BTreeMap<String, u64>,
    /// Per vCPU: the times (µs) of its interrupt deliveries (emulated APIC) — for plots.
    pub deliveries_us: Vec<Vec<f64>>,
    /// Per vCPU: the times (µs) of its exits — for plots.
    pub exits_us: Vec<Vec<f64>>,
    /// Each vCPU's local APIC at the end (`KVM_GET_LAPIC` for KVM's APIC, the router's state
    /// for hvtrace's; empty for a QEMU run).
    pub final_apic: std::collections::BTreeMap<usize, crate::timeline::ApicSnapshot>,
    /// The serial output.
    pub serial: String,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The image.
    pub image: Image,
    /// vCPUs.
    pub cpus: usize,
    /// RAM bytes.
    pub mem: u64,
    /// Guest command line.
    pub cmdline: String,
    /// Bound on each run.
    pub timeout: Duration,
}

/// Most points per vCPU kept for plots.
const PLOT_POINTS: usize = 2000;

/// Runs `spec` once under `irqchip`.
pub fn run_once(spec: &RunSpec, irqchip: IrqChipMode) -> Result<RunResult, VmmError> {
    let serial = MemoryOutput::default();
    let timeline = Timeline::new(DEFAULT_MAX_EVENTS);
    let vm = Vm::new(VmConfig {
        image: spec.image.clone(),
        cpus: spec.cpus,
        mem: spec.mem,
        irqchip,
        cmdline: spec.cmdline.clone(),
        modules: Vec::new(),
        timeout: Some(spec.timeout),
        serial_out: Box::new(serial.clone()),
        probes: Vec::new(),
        trace: None,
        control: None,
        timeline: Some(Arc::clone(&timeline)),
        verbose: false,
    })?;
    let start = Instant::now();
    let outcome = vm.run()?;
    let wall = start.elapsed();
    let text = serial.text();
    let (ending, status, hung) = match &outcome {
        Outcome::GuestExit(s) => (format!("exit {s}"), Some(*s), false),
        Outcome::Timeout { after, .. } => (
            format!("hang: still running after {:.0} s", after.as_secs_f64()),
            None,
            true,
        ),
        Outcome::Fault(details) => (
            format!("guest error: {}", details.report.fatal),
            None,
            false,
        ),
        Outcome::Stopped | Outcome::TraceExit(_) => ("stopped".into(), None, false),
    };
    let (events, _) = timeline.snapshot();
    let mut deliveries_us = vec![Vec::new(); spec.cpus];
    let mut exits_us = vec![Vec::new(); spec.cpus];
    for e in &events {
        let list = match e.kind {
            EventKind::Apic(apic::ApicEvent::Inject { .. }) => &mut deliveries_us,
            EventKind::Exit(..) => &mut exits_us,
            _ => continue,
        };
        if let Some(points) = list.get_mut(e.cpu as usize) {
            if points.len() < PLOT_POINTS {
                points.push(e.ts_ns as f64 / 1000.0);
            }
        }
    }
    Ok(RunResult {
        ending,
        status,
        hung,
        wall,
        checks: checks(&text),
        guest_metrics: metrics(&text),
        apic: apic_metrics(&events, spec.cpus),
        exits: exits_by_kind(&events),
        deliveries_us,
        exits_us,
        final_apic: timeline.final_apics(),
        serial: text,
    })
}
