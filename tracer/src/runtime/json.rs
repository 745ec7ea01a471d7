//! The JSON form of records and aggregations, for `--format json`: one object per line.
//!
//! Every record object has `type`, `cpu`, `timestamp` (ns since boot) and `probe`
//! (`{id, provider, module, function, name}`), plus by type: `printf` `{text}`, `trace`
//! `{value}`, `stack` `{frames: [{address, symbol}]}`, `stack_unavailable`, `exit`
//! `{status}`, `error` `{epid, action, fault, value, message}`, `fire` (a clause without
//! statements fired) and `printa` `{aggregation}`. An aggregation object is
//! `{type: "aggregation", name: "@x", function: "count", entries: [{keys: [...], value}]}`,
//! entries in DTrace's order; a `quantize`/`lquantize` value is its non-empty buckets as
//! `[{min, max, count}]` with inclusive bounds (`null` for an open end).
//!
//! Objects are written straight into the output string (no intermediate JSON tree), compact,
//! with their keys in byte order: the bytes `serde_json` gives for the same objects.

use super::agg::{quantize_bucket_value, AggSet, AggValue, QUANTIZE_BUCKETS, QUANTIZE_ZERO};
use super::record::{Record, RecordKind};
use super::value::Value;
use crate::lang::{AggDecl, AggFunc};

/// Appends `s` as a JSON string (quoted; `"`, `\` and control characters escaped as
/// `serde_json` escapes them, everything else, non-ASCII included, as is).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\t' => "\\t",
            b'\r' => "\\r",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Every byte that needs escaping is ASCII, so `start..i` ends on a char boundary.
        out.push_str(&s[start..i]);
        start = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends an integer as a JSON number.
fn write_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends an integer as a JSON number, or `null` for `None`.
fn write_opt_int(out: &mut String, n: Option<impl itoa::Integer>) {
    match n {
        Some(n) => write_int(out, n),
        None => out.push_str("null"),
    }
}

/// Appends a D value as JSON (integers as numbers, strings as strings).
pub fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Int(n) => write_int(out, *n),
        Value::Uint(n) => write_int(out, *n),
        Value::Str(s) => write_str(out, s),
    }
}

/// The non-empty buckets of a histogram value (`quantize`, `lquantize`; none for a scalar):
/// inclusive bounds, `None` for an open end, and the count.
pub(crate) fn histogram_buckets(
    v: &AggValue,
    func: AggFunc,
) -> Vec<(Option<i64>, Option<i64>, u64)> {
    let mut out = Vec::new();
    match (v, func) {
        (AggValue::Quantize(b), _) => {
            for (i, &count) in b.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let v = quantize_bucket_value(i);
                // Bucket 63 holds 0; positive buckets [v, 2v); negative ones (2v, v].
                let (min, max) = match i.cmp(&QUANTIZE_ZERO) {
                    std::cmp::Ordering::Equal => (0, 0),
                    std::cmp::Ordering::Greater if i == QUANTIZE_BUCKETS - 1 => (v, i64::MAX),
                    std::cmp::Ordering::Greater => (v, quantize_bucket_value(i + 1) - 1),
                    std::cmp::Ordering::Less if i == 0 => (i64::MIN, v),
                    std::cmp::Ordering::Less => (v.saturating_mul(2) + 1, v),
                };
                out.push((Some(min), Some(max), count));
            }
        }
        (AggValue::Lquantize(b), AggFunc::Lquantize { lo, step, .. }) => {
            let levels = b.len().saturating_sub(2) as i64;
            for (i, &count) in b.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let i = i as i64;
                let (min, max) = if i == 0 {
                    (None, Some(lo - 1))
                } else if i > levels {
                    (Some(lo + levels * step), None)
                } else {
                    let start = lo + (i - 1) * step;
                    (Some(start), Some(start + step - 1))
                };
                out.push((min, max, count));
            }
        }
        _ => {}
    }
    out
}

/// Appends the non-empty buckets of a histogram value as a JSON array of
/// `{"count":..,"max":..,"min":..}`.
fn write_buckets(out: &mut String, v: &AggValue, func: AggFunc) {
    out.push('[');
    for (i, (min, max, count)) in histogram_buckets(v, func).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"count\":");
        write_int(out, count);
        out.push_str(",\"max\":");
        write_opt_int(out, max);
        out.push_str(",\"min\":");
        write_opt_int(out, min);
        out.push('}');
    }
    out.push(']');
}

/// Appends an aggregation as a JSON object (entries in DTrace's order), without a newline.
pub fn write_aggregation(out: &mut String, decl: &AggDecl, set: &AggSet, agg: usize) {
    out.push_str("{\"entries\":[");
    for (i, (keys, v)) in set.sorted(agg, decl.func).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"keys\":[");
        for (j, k) in keys.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            write_value(out, k);
        }
        out.push_str("],\"value\":");
        match v.scalar() {
            Some(n) => write_int(out, n),
            None => write_buckets(out, v, decl.func),
        }
        out.push('}');
    }
    out.push_str("],\"function\":");
    write_str(out, decl.func.name());
    out.push_str(",\"name\":");
    write_str(out, &decl.display_name());
    out.push_str(",\"type\":\"aggregation\"}");
}

/// Appends `"cpu":N` (the first key of most records; only `action` and `aggregation` sort
/// before it).
fn write_cpu(out: &mut String, record: &Record) {
    out.push_str("\"cpu\":");
    write_int(out, record.cpu);
}

/// Appends `"probe":{...}`.
fn write_probe(out: &mut String, record: &Record) {
    let p = &record.probe;
    out.push_str("\"probe\":{\"function\":");
    write_str(out, &p.function);
    out.push_str(",\"id\":");
    write_int(out, p.id);
    out.push_str(",\"module\":");
    write_str(out, &p.module);
    out.push_str(",\"name\":");
    write_str(out, &p.name);
    out.push_str(",\"provider\":");
    write_str(out, &p.provider);
    out.push('}');
}

/// Appends `"timestamp":..,"type":"TY"` (the last keys of most records).
fn write_timestamp_type(out: &mut String, record: &Record, ty: &str) {
    out.push_str("\"timestamp\":");
    write_int(out, record.timestamp_ns);
    out.push_str(",\"type\":\"");
    out.push_str(ty);
    out.push('"');
}

/// Appends a record as one JSON object and a newline, and returns true; or returns false
/// (writing nothing) for records with no output of their own (`clear`, `trunc`, a `printa`
/// of an unknown aggregation). `printa` records need the folded aggregations: `aggs` and
/// the program's aggregation declarations.
///
/// Keys are in byte order, as `serde_json` (without `preserve_order`) writes an object.
pub fn write_record(out: &mut String, record: &Record, decls: &[AggDecl], aggs: &AggSet) -> bool {
    // Each arm writes the keys of its type in sorted order around the common ones:
    // action, aggregation < cpu < epid, fault, frames, message < probe < status, text
    // < timestamp < type < value.
    match &record.kind {
        RecordKind::Clear(_) | RecordKind::Trunc { .. } => return false,
        RecordKind::Printa { agg, .. } => {
            let Some(decl) = decls.get(*agg) else {
                return false;
            };
            out.push_str("{\"aggregation\":");
            write_aggregation(out, decl, aggs, *agg);
            out.push(',');
            write_cpu(out, record);
            out.push(',');
            write_probe(out, record);
            out.push(',');
            write_timestamp_type(out, record, "printa");
        }
        RecordKind::Error { action, fault } => {
            out.push_str("{\"action\":");
            write_opt_int(out, action.map(|a| a as u64));
            out.push(',');
            write_cpu(out, record);
            out.push_str(",\"epid\":");
            write_int(out, record.epid);
            out.push_str(",\"fault\":");
            write_str(out, fault.kind());
            out.push_str(",\"message\":");
            match record.error_message() {
                Some(m) => write_str(out, &m),
                None => out.push_str("null"),
            }
            out.push(',');
            write_probe(out, record);
            out.push(',');
            write_timestamp_type(out, record, "error");
            out.push_str(",\"value\":");
            write_int(out, fault.value());
        }
        kind => {
            let ty = match kind {
                RecordKind::Fired => "fire",
                RecordKind::Printf(_) => "printf",
                RecordKind::Trace(_) => "trace",
                RecordKind::Stack(_) => "stack",
                RecordKind::StackUnavailable => "stack_unavailable",
                RecordKind::Exit(_) => "exit",
                // Handled above.
                RecordKind::Printa { .. }
                | RecordKind::Error { .. }
                | RecordKind::Clear(_)
                | RecordKind::Trunc { .. } => return false,
            };
            out.push('{');
            write_cpu(out, record);
            out.push(',');
            match kind {
                RecordKind::Stack(frames) => {
                    out.push_str("\"frames\":[");
                    for (i, f) in frames.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str("{\"address\":");
                        write_int(out, f.address);
                        out.push_str(",\"symbol\":");
                        match &f.symbol {
                            Some(s) => write_str(out, s),
                            None => out.push_str("null"),
                        }
                        out.push('}');
                    }
                    out.push_str("],");
                }
                RecordKind::StackUnavailable => {
                    out.push_str("\"message\":\"no unwinder for this image\",");
                }
                _ => {}
            }
            write_probe(out, record);
            out.push(',');
            match kind {
                RecordKind::Exit(status) => {
                    out.push_str("\"status\":");
                    write_int(out, *status);
                    out.push(',');
                }
                RecordKind::Printf(text) => {
                    out.push_str("\"text\":");
                    write_str(out, text);
                    out.push(',');
                }
                _ => {}
            }
            write_timestamp_type(out, record, ty);
            if let RecordKind::Trace(v) = kind {
                out.push_str(",\"value\":");
                write_value(out, v);
            }
        }
    }
    out.push_str("}\n");
    true
}

#[cfg(test)]
#[path = "tests/json.rs"]
mod tests;
