//! The comparison as rows of a side-by-side table: one cell per mode, whether the cells
//! differ, and a note (which side the SDM supports, a known cause, the ratio of numbers).

use std::collections::BTreeMap;

use super::guest_output::Verdict;
use super::known::explain;
use super::metrics::quantile;
use super::{Comparison, ModeRuns};

/// One row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `run`, `checks`, `guest numbers`, `apic` or `exits`.
    pub section: &'static str,
    /// What the row measures.
    pub name: String,
    /// One cell per mode, in the comparison's column order.
    pub cells: Vec<String>,
    /// Whether the modes differ here.
    pub differs: bool,
    /// Why, or who is right, when known.
    pub note: String,
}

/// Numbers that differ by more than this factor are marked.
const NUMBER_TOLERANCE: f64 = 1.25;

/// Every row of `c`.
pub fn rows(c: &Comparison) -> Vec<Row> {
    let mut out = Vec::new();
    run_rows(c, &mut out);
    check_rows(c, &mut out);
    number_rows(
        c,
        "guest numbers",
        &|r| r.guest_metrics.clone(),
        "the guest's own measurement",
        false,
        &mut out,
    );
    apic_rows(c, &mut out);
    final_apic_rows(c, &mut out);
    let start = out.len();
    number_rows(
        c,
        "exits",
        &|r| {
            r.exits
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64))
                .collect()
        },
        "exits to hvtrace per run",
        true,
        &mut out,
    );
    mark_unobserved(
        c,
        &mut out[start..],
        &|m| !m.observed,
        "not observable outside hvtrace (n/a)",
    );
    out
}

/// Sets the cells of the columns `unobserved` says saw nothing to `n/a`, and marks a row as
/// differing only where the observed cells differ (else its note becomes `note`).
fn mark_unobserved(
    c: &Comparison,
    rows: &mut [Row],
    unobserved: &dyn Fn(&ModeRuns) -> bool,
    note: &str,
) {
    for row in rows {
        for (cell, m) in row.cells.iter_mut().zip(&c.modes) {
            if unobserved(m) {
                *cell = "n/a".into();
            }
        }
        let observed: Vec<&String> = row.cells.iter().filter(|c| *c != "n/a").collect();
        row.differs = !observed.windows(2).all(|w| w[0] == w[1]) && observed.len() > 1;
        if !row.differs {
            row.note = note.into();
        }
    }
}

fn run_rows(c: &Comparison, out: &mut Vec<Row>) {
    let endings: Vec<String> = c
        .modes
        .iter()
        .map(|m| summarize(m.runs.iter().map(|r| r.ending.clone())))
        .collect();
    let differs = !all_equal(&endings);
    out.push(Row {
        section: "run",
        name: "ending".into(),
        note: if differs {
            "the runs end differently".into()
        } else {
            String::new()
        },
        cells: endings,
        differs,
    });
    let walls: Vec<String> = c
        .modes
        .iter()
        .map(|m| {
            let mut ms: Vec<u64> = m.runs.iter().map(|r| r.wall.as_millis() as u64).collect();
            ms.sort_unstable();
            quantile(&ms, 0.5).map_or("-".into(), |v| format!("{v} ms"))
        })
        .collect();
    out.push(Row {
        section: "run",
        name: "wall time (median)".into(),
        cells: walls,
        differs: false,
        note: String::new(),
    });
}

/// `PASS`, or `PASS 2/3, FAIL 1/3` when runs disagree.
fn summarize(values: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = values.collect();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for v in &all {
        match counts.iter_mut().find(|(k, _)| k == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v.clone(), 1)),
        }
    }
    match counts.as_slice() {
        [] => "-".into(),
        [(only, _)] => only.clone(),
        many => many
            .iter()
            .map(|(v, n)| format!("{v} {n}/{}", all.len()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn all_equal(cells: &[String]) -> bool {
    cells.windows(2).all(|w| w[0] == w[1])
}

fn check_rows(c: &Comparison, out: &mut Vec<Row>) {
    let mut names: Vec<String> = Vec::new();
    for m in &c.modes {
        for r in &m.runs {
            for check in &r.checks {
                if !names.contains(&check.name) {
                    names.push(check.name.clone());
                }
            }
        }
    }
    for name in names {
        let verdicts: Vec<Vec<Option<Verdict>>> = c
            .modes
            .iter()
            .map(|m| {
                m.runs
                    .iter()
                    .map(|r| r.checks.iter().find(|k| k.name == name).map(|k| k.verdict))
                    .collect()
            })
            .collect();
        let cells: Vec<String> = verdicts
            .iter()
            .map(|v| {
                summarize(
                    v.iter()
                        .map(|v| v.map_or("missing", Verdict::word).to_string()),
                )
            })
            .collect();
        let differs = !all_equal(&cells);
        let mut notes = Vec::new();
        if differs {
            let conforming: Vec<String> = c
                .modes
                .iter()
                .zip(&verdicts)
                .filter(|(_, v)| v.iter().all(|v| *v == Some(Verdict::Pass)))
                .map(|(m, _)| m.label.clone())
                .collect();
            if !conforming.is_empty() {
                notes.push(format!("SDM supports {}", conforming.join(", ")));
            }
        }
        // What each non-conforming mode says, modes with the same words grouped.
        let mut said: Vec<(Vec<String>, String)> = Vec::new();
        for (m, v) in c.modes.iter().zip(&verdicts) {
            if v.iter().all(|v| *v == Some(Verdict::Pass)) {
                continue;
            }
            let mode = m.label.clone();
            let mut words = first_detail(m, &name).unwrap_or_default();
            if let Some((cause, why)) = explain(&name, &mode, c.software_kvm) {
                words = format!("{words} [{}: {why}]", cause.label());
            }
            match said.iter_mut().find(|(_, w)| *w == words) {
                Some((modes, _)) => modes.push(mode),
                None => said.push((vec![mode], words)),
            }
        }
        for (modes, words) in said {
            notes.push(format!("{}: {}", modes.join(", "), words.trim()));
        }
        out.push(Row {
            section: "checks",
            name,
            cells,
            differs,
            note: notes.join("; "),
        });
    }
}

fn first_detail(m: &ModeRuns, name: &str) -> Option<String> {
    m.runs
        .iter()
        .flat_map(|r| r.checks.iter())
        .find(|k| k.name == name && k.verdict != Verdict::Pass && !k.detail.is_empty())
        .map(|k| k.detail.clone())
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Rows of per-run numbers (medians over the runs); numbers apart by more than
/// [`NUMBER_TOLERANCE`] are marked with their ratio to the first mode. With `missing_is_zero`,
/// a run without a number counts it as 0 (exits of a kind that never happened).
fn number_rows(
    c: &Comparison,
    section: &'static str,
    values: &dyn Fn(&super::RunResult) -> BTreeMap<String, f64>,
    what: &str,
    missing_is_zero: bool,
    out: &mut Vec<Row>,
) {
    let per_mode: Vec<Vec<BTreeMap<String, f64>>> = c
        .modes
        .iter()
        .map(|m| m.runs.iter().map(values).collect())
        .collect();
    let mut names: Vec<String> = per_mode
        .iter()
        .flatten()
        .flat_map(|m| m.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let medians: Vec<Option<f64>> = per_mode
            .iter()
            .map(|runs| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|m| m.get(&name).copied().or(missing_is_zero.then_some(0.0)))
                    .collect();
                median(&v)
            })
            .collect();
        let present: Vec<f64> = medians.iter().flatten().copied().collect();
        let (lo, hi) = present.iter().fold((f64::INFINITY, 0f64), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
        let differs = present.len() != medians.len()
            || (hi > 0.0 && (lo <= 0.0 || hi / lo > NUMBER_TOLERANCE));
        let note = if differs {
            match medians.first().copied().flatten() {
                Some(base) if base > 0.0 => {
                    let ratios: Vec<String> = c
                        .modes
                        .iter()
                        .zip(&medians)
                        .skip(1)
                        .map(|(m, v)| match v {
                            Some(v) => format!("{} {:.2}x", m.label, v / base),
                            None => format!("{} none", m.label),
                        })
                        .collect();
                    format!(
                        "{what}; against {}: {}",
                        c.modes[0].label,
                        ratios.join(", ")
                    )
                }
                _ => what.to_string(),
            }
        } else {
            String::new()
        };
        out.push(Row {
            section,
            name,
            cells: medians
                .iter()
                .map(|v| v.map_or("-".into(), number))
                .collect(),
            differs,
            note,
        });
    }
}

fn apic_rows(c: &Comparison, out: &mut Vec<Row>) {
    let us = |ns: u64| ns as f64 / 1000.0;
    let derived = |m: &super::ApicMetrics| -> BTreeMap<String, f64> {
        let mut v = BTreeMap::new();
        v.insert(
            "deliveries (all vectors)".into(),
            m.deliveries.values().sum::<u64>() as f64,
        );
        for (vector, n) in &m.deliveries {
            v.insert(format!("deliveries of vector {vector:#04x}"), *n as f64);
        }
        v.insert("max in-service nesting".into(), f64::from(m.max_nesting));
        v.insert("EOIs".into(), m.eois as f64);
        v.insert("IPIs sent".into(), m.ipis as f64);
        v.insert("spurious interrupts".into(), m.spurious as f64);
        let q = |list: &[u64], p: f64| quantile(list, p).map(us);
        for (name, value) in [
            ("EOI to next delivery p50 (us)", q(&m.eoi_to_next_ns, 0.5)),
            ("IPI latency p50 (us)", q(&m.ipi_latency_ns, 0.5)),
            ("IPI latency p99 (us)", q(&m.ipi_latency_ns, 0.99)),
            ("timer period p50 (us)", q(&m.timer_periods_ns, 0.5)),
        ] {
            if let Some(value) = value {
                v.insert(name.into(), value);
            }
        }
        if let (Some(p50), Some(p99)) = (
            quantile(&m.timer_periods_ns, 0.5),
            quantile(&m.timer_periods_ns, 0.99),
        ) {
            v.insert(
                "timer jitter p99-p50 (us)".into(),
                us(p99.saturating_sub(p50)),
            );
        }
        v
    };
    let observed = c
        .modes
        .iter()
        .any(|m| m.runs.iter().any(|r| r.apic.is_some()));
    if !observed {
        return;
    }
    let start = out.len();
    number_rows(
        c,
        "apic",
        &|r| r.apic.as_ref().map(derived).unwrap_or_default(),
        "hvtrace's APIC event stream",
        false,
        out,
    );
    // KVM's APIC reports no deliveries: say so instead of marking every row as a difference.
    mark_unobserved(
        c,
        &mut out[start..],
        &|m| m.runs.iter().all(|r| r.apic.is_none()),
        "not observable in KVM's in-kernel APIC or QEMU (n/a)",
    );
}

/// Vectors as `0x31 0x62`, or `none`.
fn vectors(v: &[u8]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|x| format!("{x:#04x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each vCPU's ISR, IRR, TMR and PPR at the end of the runs, summarised over the runs; `n/a`
/// where the column could not be read (QEMU).
fn final_apic_rows(c: &Comparison, out: &mut Vec<Row>) {
    let cpus = c
        .modes
        .iter()
        .flat_map(|m| m.runs.iter())
        .flat_map(|r| r.final_apic.keys().copied())
        .max();
    let Some(last) = cpus else {
        return;
    };
    type Field = fn(&crate::timeline::ApicSnapshot) -> String;
    let fields: [(&str, Field); 4] = [
        ("ISR", |s| vectors(&s.isr)),
        ("IRR", |s| vectors(&s.irr)),
        ("TMR", |s| vectors(&s.tmr)),
        ("PPR", |s| format!("{:#04x}", s.ppr)),
    ];
    for cpu in 0..=last {
        for (name, field) in fields {
            let cells: Vec<String> = c
                .modes
                .iter()
                .map(|m| {
                    if m.runs.iter().all(|r| r.final_apic.is_empty()) {
                        return "n/a".into();
                    }
                    summarize(
                        m.runs
                            .iter()
                            .map(|r| r.final_apic.get(&cpu).map_or("-".into(), field)),
                    )
                })
                .collect();
            let observed: Vec<&String> = cells.iter().filter(|c| *c != "n/a").collect();
            let differs = observed.len() > 1 && !observed.windows(2).all(|w| w[0] == w[1]);
            out.push(Row {
                section: "final apic",
                name: format!("vCPU {cpu} {name}"),
                cells,
                differs,
                note: if differs {
                    "the APICs end in different states".into()
                } else {
                    String::new()
                },
            });
        }
    }
}
