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

use serde_json::{json, Map, Value as Json};

use super::agg::{quantize_bucket_value, AggSet, AggValue, QUANTIZE_BUCKETS, QUANTIZE_ZERO};
use super::record::{Record, RecordKind};
use super::value::Value;
use crate::lang::{AggDecl, AggFunc};

/// A D value as JSON (integers as numbers, strings as strings).
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Int(n) => json!(n),
        Value::Uint(n) => json!(n),
        Value::Str(s) => json!(s),
    }
}

fn buckets_json(v: &AggValue, func: AggFunc) -> Json {
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
                out.push(json!({"min": min, "max": max, "count": count}));
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
                    (Json::Null, json!(lo - 1))
                } else if i > levels {
                    (json!(lo + levels * step), Json::Null)
                } else {
                    let start = lo + (i - 1) * step;
                    (json!(start), json!(start + step - 1))
                };
                out.push(json!({"min": min, "max": max, "count": count}));
            }
        }
        _ => {}
    }
    Json::Array(out)
}

/// An aggregation as a JSON object (entries in DTrace's order).
pub fn aggregation_json(decl: &AggDecl, set: &AggSet, agg: usize) -> Json {
    let entries: Vec<Json> = set
        .sorted(agg, decl.func)
        .into_iter()
        .map(|(keys, v)| {
            let value = match v.scalar() {
                Some(n) => json!(n),
                None => buckets_json(v, decl.func),
            };
            json!({
                "keys": keys.iter().map(value_json).collect::<Vec<_>>(),
                "value": value,
            })
        })
        .collect();
    json!({
        "type": "aggregation",
        "name": decl.display_name(),
        "function": decl.func.name(),
        "entries": entries,
    })
}

/// A record as a JSON object, or `None` for records with no output of their own (`clear`,
/// `trunc`). `printa` records need the folded aggregations: `aggs` and the program's
/// aggregation declarations.
pub fn record_json(record: &Record, decls: &[AggDecl], aggs: &AggSet) -> Option<Json> {
    let mut obj = Map::new();
    let (ty, extra): (&str, Json) = match &record.kind {
        RecordKind::Fired => ("fire", json!({})),
        RecordKind::Printf(text) => ("printf", json!({"text": text})),
        RecordKind::Trace(v) => ("trace", json!({"value": value_json(v)})),
        RecordKind::Stack(frames) => (
            "stack",
            json!({"frames": frames
                .iter()
                .map(|f| json!({"address": f.address, "symbol": f.symbol}))
                .collect::<Vec<_>>()}),
        ),
        RecordKind::StackUnavailable => (
            "stack_unavailable",
            json!({"message": "no unwinder for this image"}),
        ),
        RecordKind::Exit(status) => ("exit", json!({"status": status})),
        RecordKind::Printa { agg, .. } => {
            let decl = decls.get(*agg)?;
            (
                "printa",
                json!({"aggregation": aggregation_json(decl, aggs, *agg)}),
            )
        }
        RecordKind::Clear(_) | RecordKind::Trunc { .. } => return None,
        RecordKind::Error { action, fault } => (
            "error",
            json!({
                "epid": record.epid,
                "action": action,
                "fault": fault.kind(),
                "value": fault.value(),
                "message": record.error_message(),
            }),
        ),
    };
    obj.insert("type".into(), json!(ty));
    obj.insert("cpu".into(), json!(record.cpu));
    obj.insert("timestamp".into(), json!(record.timestamp_ns));
    obj.insert(
        "probe".into(),
        json!({
            "id": record.probe.id,
            "provider": record.probe.provider,
            "module": record.probe.module,
            "function": record.probe.function,
            "name": record.probe.name,
        }),
    );
    if let Json::Object(extra) = extra {
        obj.extend(extra);
    }
    Some(Json::Object(obj))
}
