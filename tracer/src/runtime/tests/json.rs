//! The direct JSON writer against the `serde_json` object building it replaced (kept here as
//! the reference): the same bytes for every record kind, every aggregating function and
//! strings with quotes, backslashes, control characters and non-ASCII text; every line
//! parses.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Map, Value as Json};

use super::*;
use crate::lang::{AggDecl, AggFunc, Type};
use crate::runtime::{Fault, ProbeInfo, Record, RecordKind, StackFrame};

/// The reference: a D value as a `serde_json` value.
fn value_json(v: &Value) -> Json {
    match v {
        Value::Int(n) => json!(n),
        Value::Uint(n) => json!(n),
        Value::Str(s) => json!(&**s),
    }
}

/// The reference: a histogram's non-empty buckets (their bounds from the writer's own
/// [`histogram_buckets`]; the consumer's tests check those bounds).
fn buckets_json(v: &AggValue, func: AggFunc) -> Json {
    histogram_buckets(v, func)
        .into_iter()
        .map(|(min, max, count)| json!({"min": min, "max": max, "count": count}))
        .collect()
}

/// The reference: an aggregation object.
fn aggregation_json(decl: &AggDecl, set: &AggSet, agg: usize) -> Json {
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

/// The reference: a record object, `None` for records without output.
fn record_json(record: &Record, decls: &[AggDecl], aggs: &AggSet) -> Option<Json> {
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
            "provider": &*record.probe.provider,
            "module": &*record.probe.module,
            "function": &*record.probe.function,
            "name": &*record.probe.name,
        }),
    );
    if let Json::Object(extra) = extra {
        obj.extend(extra);
    }
    Some(Json::Object(obj))
}

/// Strings that need every kind of escaping, and some that need none.
fn nasty_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "plain",
        "say \"hi\"",
        "back\\slash",
        "a/b",
        "tab\there\nnew line\r\n",
        "\u{8}\u{c}\u{0}\u{1f}\u{7f}",
        "é ü ß — 漢字 🦀",
        "\u{2028}\u{2029}\u{feff}",
        "\"\\\"\\",
        "end\\",
        "\u{1}x\u{2}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push((0u8..0x80).map(char::from).collect());
    v
}

fn record(probe: &Arc<ProbeInfo>, kind: RecordKind) -> Record {
    Record {
        cpu: 3,
        timestamp_ns: u64::MAX - 7,
        probe: Arc::clone(probe),
        epid: 9,
        firing: 1,
        kind,
    }
}

/// Declarations of every aggregating function (keyed by a string and an integer) and a set
/// holding entries for each.
fn aggregations() -> (Vec<AggDecl>, AggSet) {
    let funcs = [
        AggFunc::Count,
        AggFunc::Sum,
        AggFunc::Min,
        AggFunc::Max,
        AggFunc::Avg,
        AggFunc::Quantize,
        AggFunc::Lquantize {
            lo: -10,
            hi: 10,
            step: 5,
        },
    ];
    let decls: Vec<AggDecl> = funcs
        .iter()
        .enumerate()
        .map(|(i, &func)| AggDecl {
            name: if i == 0 {
                String::new()
            } else {
                format!("a\"{i}")
            },
            func,
            key_types: vec![Type::Str, Type::Int],
        })
        .collect();
    let mut set = AggSet::with_len(decls.len());
    let values = [
        i64::MIN,
        -1000,
        -11,
        -3,
        -1,
        0,
        1,
        2,
        7,
        9,
        10,
        99,
        i64::MAX,
    ];
    for (agg, decl) in decls.iter().enumerate() {
        for (j, s) in nasty_strings().into_iter().enumerate() {
            for (k, &v) in values.iter().enumerate() {
                let key = vec![Value::str(s.as_str()), Value::Int((j * k) as i64 - 20)];
                assert!(set.add(agg, decl.func, key, v, usize::MAX));
            }
        }
        // An unsigned key and an empty key.
        assert!(set.add(agg, decl.func, vec![Value::Uint(u64::MAX)], 5, usize::MAX));
        assert!(set.add(agg, decl.func, Vec::new(), -5, usize::MAX));
    }
    (decls, set)
}

/// Every kind of record, with the nasty strings wherever a record carries a string.
fn records(decls: &[AggDecl]) -> Vec<Record> {
    let mut out = Vec::new();
    for s in nasty_strings() {
        let probe = Arc::new(ProbeInfo::new(
            u32::MAX,
            s.clone(),
            format!("m{s}"),
            format!("{s}f"),
            s.clone(),
        ));
        for kind in [
            RecordKind::Fired,
            RecordKind::Printf(s.clone()),
            RecordKind::Trace(Value::str(s.as_str())),
            RecordKind::Stack(vec![
                StackFrame {
                    address: u64::MAX,
                    symbol: Some(s.clone()),
                },
                StackFrame {
                    address: 0,
                    symbol: None,
                },
            ]),
        ] {
            out.push(record(&probe, kind));
        }
    }
    let probe = Arc::new(ProbeInfo::begin());
    for kind in [
        RecordKind::Trace(Value::Int(i64::MIN)),
        RecordKind::Trace(Value::Uint(u64::MAX)),
        RecordKind::Stack(Vec::new()),
        RecordKind::StackUnavailable,
        RecordKind::Exit(-1),
        RecordKind::Exit(i32::MAX),
        RecordKind::Clear(0),
        RecordKind::Trunc {
            agg: 0,
            keep: Some(1),
        },
        RecordKind::Printa {
            agg: decls.len(),
            format: None,
        },
        RecordKind::Error {
            action: None,
            fault: Fault::DivideByZero,
        },
        RecordKind::Error {
            action: Some(2),
            fault: Fault::BadAddress(u64::MAX),
        },
        RecordKind::Error {
            action: Some(1),
            fault: Fault::BadRegister(40),
        },
    ] {
        out.push(record(&probe, kind));
    }
    for agg in 0..decls.len() {
        out.push(record(&probe, RecordKind::Printa { agg, format: None }));
    }
    out
}

#[test]
fn records_are_the_bytes_serde_json_wrote() {
    let (decls, set) = aggregations();
    for r in records(&decls) {
        let mut out = String::from("before\n");
        let wrote = write_record(&mut out, &r, &decls, &set);
        let line = out
            .strip_prefix("before\n")
            .unwrap_or_else(|| panic!("{out}"));
        match record_json(&r, &decls, &set) {
            None => {
                assert!(!wrote, "{r:?}");
                assert_eq!(line, "", "{r:?}");
            }
            Some(want) => {
                assert!(wrote, "{r:?}");
                assert_eq!(line, format!("{want}\n"), "{r:?}");
                let line = line.strip_suffix('\n').unwrap_or_else(|| panic!("{line}"));
                assert!(!line.contains('\n'));
                let parsed: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(parsed, want, "{r:?}");
            }
        }
    }
}

#[test]
fn aggregations_are_the_bytes_serde_json_wrote() {
    let (decls, set) = aggregations();
    for (agg, decl) in decls.iter().enumerate() {
        let mut out = String::new();
        write_aggregation(&mut out, decl, &set, agg);
        let want = aggregation_json(decl, &set, agg);
        assert_eq!(out, want.to_string(), "{decl:?}");
        let parsed: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, want);
    }
    // An aggregation with no entries.
    let mut out = String::new();
    write_aggregation(&mut out, &decls[0], &AggSet::with_len(1), 0);
    assert_eq!(
        out,
        aggregation_json(&decls[0], &AggSet::with_len(1), 0).to_string()
    );
}

#[test]
fn escapes_like_serde_json() {
    let mut out = String::new();
    write_str(&mut out, "\"\\/\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\té🦀");
    assert_eq!(out, "\"\\\"\\\\/\\u0000\\u001f\u{7f}\\b\\f\\n\\r\\té🦀\"");
}

proptest! {
    #[test]
    fn any_string_escapes_like_serde_json(s in any::<String>()) {
        let mut out = String::new();
        write_str(&mut out, &s);
        prop_assert_eq!(&out, &Json::String(s.clone()).to_string());
        prop_assert_eq!(serde_json::from_str::<String>(&out).ok(), Some(s));
    }

    #[test]
    fn any_value_is_written_like_serde_json(n in any::<i64>(), u in any::<u64>(), s in "\\PC*") {
        for v in [Value::Int(n), Value::Uint(u), Value::str(s.as_str())] {
            let mut out = String::new();
            write_value(&mut out, &v);
            prop_assert_eq!(out, value_json(&v).to_string());
        }
    }
}
