//! Aggregations in DTrace's text layout.
//!
//! Each entry is its keys (integers as ` %16d`, strings as `  %-50s`) and its value
//! (` %16d` for scalars; for `quantize`/`lquantize`, the ASCII histogram) and a newline:
//!
//! ```text
//!   xcall_send                                                        7
//!
//!            value  ------------- Distribution ------------- count
//!                0 |                                         0
//!                1 |@@@@@@@@@@                               1
//!                2 |@@@@@@@@@@@@@@@@@@@@                     2
//! ```
//!
//! Histogram rows run from the bucket before the first non-empty one to the bucket after
//! the last; each bar has `round(40 * count / total)` `@`s (the count column is left-aligned
//! in nine characters, so rows end in spaces, as DTrace's do).

use std::fmt::Write;

use super::agg::{quantize_bucket_value, AggKey, AggValue, QUANTIZE_BUCKETS, QUANTIZE_ZERO};
use super::printf::{self, AggArg};
use super::value::Value;
use crate::lang::{AggDecl, AggFunc, Format};

const BAR: usize = 40;

/// The histogram header line (preceded by a newline), as `dt_print_quanthdr` prints it.
fn header(out: &mut String) {
    let _ = writeln!(
        out,
        "\n{:>16} {:>41} {:<9}",
        "value", "------------- Distribution -------------", "count"
    );
}

/// One histogram row after its value column: bar and count.
fn bar_line(out: &mut String, count: u64, total: f64) {
    let depth = if total > 0.0 {
        ((count as f64 * BAR as f64) / total + 0.5) as usize
    } else {
        0
    }
    .min(BAR);
    let _ = writeln!(
        out,
        "|{}{} {:<9}",
        "@".repeat(depth),
        " ".repeat(BAR - depth),
        count as i64
    );
}

/// The first and last rows to print for `counts`: around the non-empty buckets, or the
/// `empty` range when every bucket is empty.
fn row_range(counts: &[u64], empty: (usize, usize)) -> (usize, usize) {
    let Some(first) = counts.iter().position(|&c| c != 0) else {
        return empty;
    };
    let last = counts.iter().rposition(|&c| c != 0).unwrap_or(first);
    (
        first.saturating_sub(1),
        (last + 1).min(counts.len().saturating_sub(1)),
    )
}

/// A `quantize` histogram, header included.
pub fn quantize_histogram(buckets: &[u64; QUANTIZE_BUCKETS], out: &mut String) {
    let (first, last) = row_range(buckets, (QUANTIZE_ZERO - 1, QUANTIZE_ZERO + 1));
    let total: f64 = buckets[first..=last].iter().map(|&c| c as f64).sum();
    header(out);
    for (i, &count) in buckets.iter().enumerate().take(last + 1).skip(first) {
        let _ = write!(out, "{:>16} ", quantize_bucket_value(i));
        bar_line(out, count, total);
    }
}

/// An `lquantize(x, lo, hi, step)` histogram, header included.
pub fn lquantize_histogram(buckets: &[u64], lo: i64, step: i64, out: &mut String) {
    let levels = buckets.len().saturating_sub(2);
    let (first, last) = row_range(buckets, (0, 2.min(buckets.len().saturating_sub(1))));
    let total: f64 = buckets[first..=last].iter().map(|&c| c as f64).sum();
    header(out);
    for (i, &count) in buckets.iter().enumerate().take(last + 1).skip(first) {
        let label = if i == 0 {
            format!("< {lo}")
        } else if i == levels + 1 {
            format!(">= {}", lo + levels as i64 * step)
        } else {
            (lo + (i as i64 - 1) * step).to_string()
        };
        let _ = write!(out, "{label:>16} ");
        bar_line(out, count, total);
    }
}

/// A key as DTrace prints it in an aggregation listing.
fn key(out: &mut String, k: &Value) {
    let _ = match k {
        Value::Int(v) => write!(out, " {v:>16}"),
        Value::Uint(v) => write!(out, " {:>16}", *v as i64),
        Value::Str(s) => write!(out, "  {s:<50}"),
    };
}

/// A value as DTrace prints it in an aggregation listing.
fn value(out: &mut String, v: &AggValue, func: AggFunc) {
    match (v, func) {
        (AggValue::Quantize(b), _) => quantize_histogram(b, out),
        (AggValue::Lquantize(b), AggFunc::Lquantize { lo, step, .. }) => {
            lquantize_histogram(b, lo, step, out);
        }
        (v, _) => {
            let _ = write!(out, " {:>16}", v.scalar().unwrap_or(0));
        }
    }
}

/// The entries of an aggregation (already sorted) in the default layout, as at the end of a
/// trace or by `printa(@a)` (which prints a newline first).
pub fn print_entries(decl: &AggDecl, entries: &[(&AggKey, &AggValue)], out: &mut String) {
    for (keys, v) in entries {
        for k in keys.iter() {
            key(out, k);
        }
        value(out, v, decl.func);
        out.push('\n');
    }
}

/// The entries of an aggregation (already sorted) through a `printa` format: plain
/// conversions take the keys in order, `%@` conversions the value (a histogram for
/// `quantize`/`lquantize`).
pub fn print_entries_with(
    decl: &AggDecl,
    entries: &[(&AggKey, &AggValue)],
    format: &Format,
    symbolize: &dyn Fn(u64) -> Option<String>,
    out: &mut String,
) {
    for (keys, v) in entries {
        let arg = match v.scalar() {
            Some(n) => AggArg::Scalar(n),
            None => {
                let mut hist = String::new();
                value(&mut hist, v, decl.func);
                AggArg::Text(hist)
            }
        };
        out.push_str(&printf::format(format, keys, Some(&arg), symbolize));
    }
}

#[cfg(test)]
#[path = "tests/agg_print.rs"]
mod tests;
