//! The comparison as one self-contained HTML file (no external resources, opens offline): the
//! side-by-side tables with differences highlighted, an IPI latency histogram and per-vCPU
//! interrupt timelines as inline SVG.

use std::fmt::Write;

use super::report::SECTIONS;
use super::rows::rows;
use super::{Comparison, ModeRuns};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left;vertical-align:top}\
tr.diff td{background:#fff1c7}tr.diff td.mark{color:#b00;font-weight:bold}\
td.note{color:#555;max-width:60em}.n-a{color:#999}h2{margin-top:1.5em}\
svg{border:1px solid #ddd;margin:0.5em 0;background:#fff}";

/// The HTML report.
pub fn html_report(c: &Comparison) -> String {
    let rows = rows(c);
    let mut h = String::new();
    let title = format!("hvtrace compare: {}, {} vCPU(s)", c.guest, c.cpus);
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p>{} run(s) per mode.{} Rows marked <b>*</b> differ between the irqchips; n/a: not observable under that irqchip.</p>",
        esc(&title),
        c.runs,
        if c.software_kvm {
            " Host: nested software KVM (kvm_pvm): differences it causes are labelled <i>host</i>."
        } else {
            ""
        }
    );
    for (section, heading) in SECTIONS {
        let list: Vec<_> = rows.iter().filter(|r| r.section == section).collect();
        if list.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<h2>{}</h2><table class=\"cmp\" data-section=\"{section}\"><tr><th></th><th>{}</th>",
            esc(heading),
            if section == "checks" {
                "check"
            } else {
                "measure"
            }
        );
        for m in &c.modes {
            let _ = write!(h, "<th>{}</th>", esc(&m.label.clone()));
        }
        h.push_str("<th>note</th></tr>");
        for r in list {
            let _ = write!(
                h,
                "<tr{}><td class=\"mark\">{}</td><td>{}</td>",
                if r.differs { " class=\"diff\"" } else { "" },
                if r.differs { "*" } else { "" },
                esc(&r.name)
            );
            for cell in &r.cells {
                let class = if cell == "n/a" { " class=\"n-a\"" } else { "" };
                let _ = write!(h, "<td{class}>{}</td>", esc(cell));
            }
            let _ = write!(h, "<td class=\"note\">{}</td></tr>", esc(&r.note));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>IPI latency recorded by hvtrace's APIC</h2>");
    match c
        .modes
        .iter()
        .flat_map(|m| m.runs.iter())
        .find_map(|r| r.apic.as_ref())
    {
        Some(m) if !m.ipi_latency_ns.is_empty() => h.push_str(&histogram(&m.ipi_latency_ns)),
        _ => h.push_str("<p>No fixed IPIs were recorded (or no run used hvtrace's APIC).</p>"),
    }
    h.push_str("<h2>Per-vCPU timelines (first run of each mode)</h2>");
    for m in &c.modes {
        h.push_str(&timeline(m));
    }
    h.push_str(
        "<script>try{var t=document.querySelectorAll('table.cmp');\
         document.body.dataset.rendered=t.length>0?'ok':'no-table';}\
         catch(e){document.body.dataset.rendered='error: '+e;}</script></body></html>\n",
    );
    h
}

/// A histogram of `values_ns` (sorted) in 20 bins, in µs.
fn histogram(values_ns: &[u64]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    let (lo, hi) = (
        values_ns.first().copied().unwrap_or(0),
        values_ns.last().copied().unwrap_or(0),
    );
    let bins = 20usize;
    let width = ((hi - lo) / bins as u64).max(1);
    let mut counts = vec![0usize; bins];
    for v in values_ns {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut s = format!(
        "<svg class=\"hist\" width=\"{W}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        H + 30.0
    );
    let bar = W / bins as f64;
    for (i, n) in counts.iter().enumerate() {
        let bh = *n as f64 / max * H;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a7bd0\"><title>{n} IPIs</title></rect>",
            i as f64 * bar,
            H - bh,
            bar - 2.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{}\" font-size=\"12\">{:.1} µs</text><text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{:.1} µs</text></svg>",
        H + 20.0,
        lo as f64 / 1000.0,
        W,
        H + 20.0,
        hi as f64 / 1000.0
    );
    s
}

/// One strip per vCPU of the mode's first run: interrupt deliveries where hvtrace's APIC
/// recorded them, exits otherwise.
fn timeline(m: &ModeRuns) -> String {
    let Some(run) = m.runs.first() else {
        return String::new();
    };
    let deliveries = run.deliveries_us.iter().any(|d| !d.is_empty());
    let (what, points) = if deliveries {
        ("interrupt deliveries", &run.deliveries_us)
    } else {
        (
            "exits (KVM's APIC does not report its deliveries)",
            &run.exits_us,
        )
    };
    let end = points.iter().flatten().copied().fold(1.0f64, f64::max);
    const W: f64 = 640.0;
    const STRIP: f64 = 24.0;
    let mut s = format!(
        "<h3>{}: {what}</h3><svg class=\"timeline\" width=\"{}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(&m.label.clone()),
        W + 70.0,
        STRIP * points.len() as f64 + 20.0
    );
    for (cpu, list) in points.iter().enumerate() {
        let y = cpu as f64 * STRIP;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">vCPU {cpu}</text>",
            y + 16.0
        );
        for t in list {
            let x = 70.0 + t / end * W;
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c04040\"/>",
                y + 4.0,
                y + STRIP - 4.0
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"70\" y=\"{:.1}\" font-size=\"11\">0</text><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.0} ms</text></svg>",
        STRIP * points.len() as f64 + 15.0,
        W + 70.0,
        STRIP * points.len() as f64 + 15.0,
        end / 1000.0
    );
    s
}
