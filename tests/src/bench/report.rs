//! The suite's results: the table printed, `target/bench/results.json`, the regenerated tables
//! in `docs/BENCHMARKS.md` (between `<!-- bench:begin -->` and `<!-- bench:end -->`) and SVG
//! plots of the latency distributions next to it.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::{fmt_value, Row};

/// A whole run of the suite.
#[derive(Clone, Debug)]
pub struct Results {
    /// The command line that produced it.
    pub command: String,
    /// `tiny`, `default` or `long`.
    pub size: &'static str,
    /// Software or hardware KVM.
    pub host: String,
    /// CPU model and count.
    pub machine: String,
    /// When (UTC, `date -u` style).
    pub date: String,
    /// Wall time of the whole run, in seconds.
    pub took_s: f64,
    /// Every row, in order.
    pub rows: Vec<Row>,
}

fn cell(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or("-".into(), fmt_value)
}

/// The table, in Markdown.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "`{}` ({} size) on {}, {}; {}; {:.0} s.\n",
        r.command, r.size, r.host, r.machine, r.date, r.took_s
    );
    s.push_str(
        "| group | measurement | value | baseline (same run) | ratio | goal | met | note |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for row in &r.rows {
        let baseline = row.baseline.as_ref().map_or("-".into(), |(name, v)| {
            format!("{name}: {} {}", cell(Some(*v)), row.unit)
        });
        let ratio = row
            .ratio()
            .filter(|r| r.is_finite())
            .map_or("-".into(), |r| format!("{r:.2}x"));
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} {} | {baseline} | {ratio} | {} | {met} | {} |",
            row.group,
            row.name,
            cell(Some(row.value)),
            row.unit,
            row.goal.text(row.unit),
            row.note.replace('|', "\\|")
        );
    }
    s
}

fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// The results as JSON.
pub fn to_json(r: &Results) -> Value {
    let rows: Vec<Value> = r
        .rows
        .iter()
        .map(|row| {
            json!({
                "group": row.group,
                "name": row.name,
                "value": num(row.value),
                "unit": row.unit,
                "baseline": row.baseline.as_ref().map(|(n, v)| json!({"name": n, "value": num(*v)})),
                "ratio": row.ratio().map_or(Value::Null, num),
                "goal": row.goal.text(row.unit),
                "met": row.met(),
                "note": row.note,
                "samples": row.samples.len(),
            })
        })
        .collect();
    json!({
        "command": r.command,
        "size": r.size,
        "host": r.host,
        "machine": r.machine,
        "date": r.date,
        "took_s": r.took_s,
        "rows": rows,
    })
}

/// Cumulative distributions of every row with samples in `group`, as one SVG.
pub fn cdf_svg(r: &Results, group: &str, title: &str) -> Option<String> {
    let rows: Vec<&Row> = r
        .rows
        .iter()
        .filter(|row| row.group == group && !row.samples.is_empty())
        .collect();
    if rows.is_empty() {
        return None;
    }
    const W: f64 = 720.0;
    const H: f64 = 360.0;
    const LEFT: f64 = 60.0;
    let max = rows
        .iter()
        .flat_map(|row| row.samples.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    // Log scale from 1 µs (or the smallest sample) to the largest.
    let min = rows
        .iter()
        .flat_map(|row| row.samples.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(max, f64::min)
        .max(0.1);
    let x = |v: f64| LEFT + (v.max(min).ln() - min.ln()) / (max.ln() - min.ln()).max(1e-9) * W;
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/><text x=\"{LEFT}\" y=\"16\" font-size=\"13\">{}</text>",
        LEFT + W + 20.0,
        H + 60.0 + 14.0 * rows.len() as f64,
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/><text x=\"{LEFT}\" y=\"{}\">{} µs</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} µs (log scale)</text>",
        H + 30.0,
        LEFT + W,
        H + 30.0,
        H + 44.0,
        fmt_value(min),
        LEFT + W,
        H + 44.0,
        fmt_value(max)
    );
    for (i, row) in rows.iter().enumerate() {
        let mut v: Vec<f64> = row
            .samples
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        let color = colors[i % colors.len()];
        let points: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(k, val)| {
                let y = 30.0 + H - (k + 1) as f64 / v.len() as f64 * H;
                format!("{:.1},{:.1}", x(*val), y)
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{LEFT}\" y=\"{:.0}\" fill=\"{color}\">{}</text>",
            points.join(" "),
            H + 60.0 + 14.0 * i as f64,
            esc(&row.name)
        );
    }
    s.push_str("</svg>\n");
    Some(s)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `results.json` into `dir`.
pub fn write_json(r: &Results, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_string_pretty(&to_json(r)).unwrap_or_default();
    std::fs::write(dir.join("results.json"), text)
}

/// Replaces the generated part of `docs/BENCHMARKS.md` (between the markers, added at the top
/// when missing) with the table, and writes the SVG plots into `docs/bench/`.
pub fn update_docs(r: &Results, docs: &Path) -> std::io::Result<()> {
    const BEGIN: &str = "<!-- bench:begin -->";
    const END: &str = "<!-- bench:end -->";
    let md_path = docs.join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&md_path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let mut generated = format!(
        "{BEGIN}\n## The suite: every measurement with its baseline from the same run\n\n\
         Generated by `cargo bench -p tests --bench hvtrace`; do not edit by hand.\n\n{}",
        markdown(r)
    );
    let plots = [(
        "stop-the-world",
        "stw-latency.svg",
        "Stop-the-world latency, cumulative distribution",
    )];
    std::fs::create_dir_all(docs.join("bench"))?;
    for (group, file, title) in plots {
        if let Some(svg) = cdf_svg(r, group, title) {
            std::fs::write(docs.join("bench").join(file), svg)?;
            let _ = write!(generated, "\n![{title}](bench/{file})\n");
        }
    }
    generated.push_str(END);
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{generated}{}", &old[..a], &old[b + END.len()..]),
        _ => match old.find('\n') {
            Some(eol) => format!("{}\n\n{generated}\n{}", &old[..eol], &old[eol + 1..]),
            None => format!("{old}\n\n{generated}\n"),
        },
    };
    std::fs::write(md_path, new)
}
