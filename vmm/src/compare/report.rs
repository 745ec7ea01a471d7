//! The comparison as text (a side-by-side table per section, differences marked `*`) and as
//! JSON (the same rows, plus every run's ending, checks and numbers).

use serde_json::{json, Value};

use super::rows::{rows, Row};
use super::Comparison;

/// Section titles, in order.
pub(super) const SECTIONS: [(&str, &str); 6] = [
    ("run", "Runs"),
    (
        "checks",
        "The guest's checks (PASS = the behaviour the SDM specifies)",
    ),
    (
        "guest numbers",
        "The guest's own measurements (medians over the runs)",
    ),
    (
        "apic",
        "APIC behaviour recorded by hvtrace's APIC (medians over the runs)",
    ),
    (
        "final apic",
        "Each local APIC at the end of the run (KVM_GET_LAPIC for KVM's APIC)",
    ),
    ("exits", "Exits to hvtrace (medians over the runs)"),
];

/// The side-by-side text report.
pub fn text_report(c: &Comparison) -> String {
    let rows = rows(c);
    let heads: Vec<String> = c.modes.iter().map(|m| m.label.clone()).collect();
    let mut out = format!(
        "hvtrace compare: {}, {} vCPU(s), {} run(s) per mode{}\n",
        c.guest,
        c.cpus,
        c.runs,
        if c.software_kvm {
            "; host: nested software KVM (kvm_pvm), see HOST.md"
        } else {
            ""
        }
    );
    for (section, title) in SECTIONS {
        let list: Vec<&Row> = rows.iter().filter(|r| r.section == section).collect();
        if list.is_empty() {
            continue;
        }
        let name_w = list.iter().map(|r| r.name.len()).max().unwrap_or(0).max(5);
        let cell_w: Vec<usize> = heads
            .iter()
            .enumerate()
            .map(|(i, h)| {
                list.iter()
                    .filter_map(|r| r.cells.get(i))
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
                    .max(h.len())
            })
            .collect();
        out.push_str(&format!("\n{title}\n"));
        out.push_str(&format!("  {:<name_w$}", ""));
        for (h, w) in heads.iter().zip(&cell_w) {
            out.push_str(&format!("  {h:<w$}"));
        }
        out.push('\n');
        for r in list {
            out.push_str(if r.differs { "* " } else { "  " });
            out.push_str(&format!("{:<name_w$}", r.name));
            for (cell, w) in r.cells.iter().zip(&cell_w) {
                out.push_str(&format!("  {cell:<w$}"));
            }
            if !r.note.is_empty() && (r.differs || section == "checks") {
                out.push_str(&format!("  {}", r.note));
            }
            out.push('\n');
        }
    }
    let differing = rows.iter().filter(|r| r.differs).count();
    out.push_str(&format!(
        "\n{differing} row(s) differ (marked *). n/a: not observable under that irqchip.\n"
    ));
    out
}

/// The JSON report: the rows and every run.
pub fn json_report(c: &Comparison) -> Value {
    let rows: Vec<Value> = rows(c)
        .iter()
        .map(|r| {
            let cells: serde_json::Map<String, Value> = c
                .modes
                .iter()
                .zip(&r.cells)
                .map(|(m, cell)| (m.label.clone(), Value::String(cell.clone())))
                .collect();
            json!({
                "section": r.section,
                "name": r.name,
                "cells": cells,
                "differs": r.differs,
                "note": r.note,
            })
        })
        .collect();
    let modes: Vec<Value> = c
        .modes
        .iter()
        .map(|m| {
            let runs: Vec<Value> = m
                .runs
                .iter()
                .map(|r| {
                    let checks: Vec<Value> = r
                        .checks
                        .iter()
                        .map(|k| json!({"name": k.name, "verdict": k.verdict.word(), "detail": k.detail}))
                        .collect();
                    json!({
                        "ending": r.ending,
                        "status": r.status,
                        "hung": r.hung,
                        "wall_ms": r.wall.as_secs_f64() * 1e3,
                        "checks": checks,
                        "guest_numbers": r.guest_metrics,
                        "exits": r.exits,
                        "apic_recorded": r.apic.is_some(),
                    })
                })
                .collect();
            json!({"mode": m.label.clone(), "runs": runs})
        })
        .collect();
    json!({
        "guest": c.guest,
        "cpus": c.cpus,
        "runs_per_mode": c.runs,
        "host": {"software_kvm": c.software_kvm},
        "rows": rows,
        "modes": modes,
    })
}
