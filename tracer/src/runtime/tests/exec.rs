//! Clause execution: actions, faults and the ERROR probe, limits.

use super::Harness;
use crate::runtime::{
    Drops, Fault, Limits, OutputFormat, ProbeInfo, RecordKind, StackFrame, Value,
};

fn kinds(h: &mut Harness) -> Vec<RecordKind> {
    h.records().into_iter().map(|r| r.kind).collect()
}

#[test]
fn actions_produce_records() {
    let mut h = Harness::new(
        "BEGIN { printf(\"%s!\", probename); trace(7); trace(\"s\"); stack(2); printa(@a); clear(@a); trunc(@a); trunc(@a, -2); exit(3); @a = count(); }",
    );
    h.ctx.stack = Some(vec![0x2004, 0x9999, 0x2008]);
    let summary = h.fire(&ProbeInfo::begin());
    assert_eq!(summary.exit, Some(3));
    assert_eq!(summary.records, 9);
    assert_eq!(summary.clauses_run, 1);
    assert_eq!(
        kinds(&mut h),
        vec![
            RecordKind::Printf("BEGIN!".into()),
            RecordKind::Trace(Value::Int(7)),
            RecordKind::Trace(Value::Str("s".into())),
            RecordKind::Stack(vec![
                StackFrame {
                    address: 0x2004,
                    symbol: Some("xcall_send+0x4".into())
                },
                StackFrame {
                    address: 0x9999,
                    symbol: None
                },
            ]),
            RecordKind::Printa {
                agg: 0,
                format: None
            },
            RecordKind::Clear(0),
            RecordKind::Trunc { agg: 0, keep: None },
            RecordKind::Trunc {
                agg: 0,
                keep: Some(-2)
            },
            RecordKind::Exit(3),
        ]
    );
}

#[test]
fn clauses_without_statements_record_that_they_fired() {
    let mut h = Harness::new("BEGIN {} BEGIN { x = 1; } BEGIN");
    h.fire(&ProbeInfo::begin());
    assert_eq!(kinds(&mut h), vec![RecordKind::Fired, RecordKind::Fired]);
}

#[test]
fn predicates_select_clauses() {
    let mut h = Harness::new("BEGIN /arg1 == 2/ { trace(1); } BEGIN /arg1 != 2/ { trace(2); } BEGIN /probefunc == \"\"/ { trace(3); }");
    let s = h.fire(&ProbeInfo::begin());
    assert_eq!(s.clauses_run, 2);
    assert_eq!(
        kinds(&mut h),
        vec![
            RecordKind::Trace(Value::Int(1)),
            RecordKind::Trace(Value::Int(3))
        ]
    );
}

#[test]
fn stack_without_unwinder() {
    let mut h = Harness::new("BEGIN { stack(); }");
    h.fire(&ProbeInfo::begin());
    assert_eq!(kinds(&mut h), vec![RecordKind::StackUnavailable]);
}

#[test]
fn a_fault_stops_the_clause_discards_its_records_and_fires_error() {
    let mut h = Harness::new(
        "BEGIN { trace(1); x = stringof(arg1); trace(2); }\n\
         BEGIN { trace(3); }\n\
         BEGIN /1 / (arg1 - 2)/ { trace(4); }\n\
         ERROR { printf(\"ERROR %d %d %d %d %d\", arg1, arg2, arg3, arg4, arg5); }",
    );
    let s = h.fire(&ProbeInfo::begin());
    assert_eq!(s.errors, 2);
    let records = h.records();
    let got: Vec<(u32, RecordKind)> = records.iter().map(|r| (r.epid, r.kind.clone())).collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                RecordKind::Error {
                    action: Some(2),
                    fault: Fault::BadAddress(2)
                }
            ),
            (4, RecordKind::Printf("ERROR 1 2 0 1 2".into())),
            (2, RecordKind::Trace(Value::Int(3))),
            (
                3,
                RecordKind::Error {
                    action: None,
                    fault: Fault::DivideByZero
                }
            ),
            (4, RecordKind::Printf("ERROR 3 0 0 4 0".into())),
        ]
    );
    assert_eq!(&*records[4].probe.name, "ERROR");
    assert_eq!(
        records[0].error_message().as_deref(),
        Some("error on enabled probe ID 1 (ID 1: dtrace:::BEGIN): invalid address (0x2) in action #2")
    );
    assert_eq!(
        records[3].error_message().as_deref(),
        Some("error on enabled probe ID 3 (ID 1: dtrace:::BEGIN): divide-by-zero in predicate")
    );
}

#[test]
fn faults_inside_error_clauses_do_not_recurse() {
    let mut h = Harness::new("BEGIN { x = 1 / (arg1 - 2); } ERROR { y = 1 / (arg1 - arg1); }");
    let s = h.fire(&ProbeInfo::begin());
    assert_eq!(s.errors, 2);
    assert_eq!(h.records().len(), 2);
}

#[test]
fn bad_registers_fault() {
    let mut h = Harness::new("BEGIN { trace(regs[R_RAX]); trace(regs[-1]); }");
    h.ctx.regs.insert(0, 5);
    h.fire(&ProbeInfo::begin());
    assert_eq!(
        kinds(&mut h),
        vec![RecordKind::Error {
            action: Some(2),
            fault: Fault::BadRegister(u64::MAX)
        }]
    );
}

#[test]
fn full_buffers_drop_whole_clauses_and_count() {
    let mut h = Harness::with_limits(
        "BEGIN { trace(1); trace(2); }",
        Limits {
            records_per_cpu: 5,
            ..Limits::default()
        },
    );
    for _ in 0..3 {
        h.fire(&ProbeInfo::begin());
    }
    assert_eq!(h.vcpus[0].pending_records(), 4);
    assert_eq!(
        h.vcpus[0].take_drops(),
        Drops {
            records: 2,
            aggregations: 0
        }
    );
    assert_eq!(h.vcpus[0].take_drops(), Drops::default());
}

#[test]
fn aggregation_and_array_limits_drop_and_count() {
    let mut h = Harness::with_limits(
        "fbt:::entry { @[arg1] = count(); a[arg1] = 1; }",
        Limits {
            // Room for two 8-byte-keyed count() entries.
            agg_bytes_per_cpu: 2 * (64 + 32 + 16),
            dynamic_entries: 3,
            ..Limits::default()
        },
    );
    let p = ProbeInfo::new(9, "fbt", "", "f", "entry");
    for i in 0..5 {
        h.ctx.args[1] = i;
        h.fire(&p);
    }
    assert_eq!(h.vcpus[0].take_drops().aggregations, 3);
    assert_eq!(h.runtime.take_dynamic_drops(), 2);
    assert_eq!(h.runtime.take_dynamic_drops(), 0);
    // Assigning zero deletes an element, making room.
    let mut h = Harness::with_limits(
        "fbt:::entry { a[arg1] = 1; a[arg1] = 0; }",
        Limits {
            dynamic_entries: 1,
            ..Limits::default()
        },
    );
    for i in 0..5 {
        h.ctx.args[1] = i;
        h.fire(&p);
    }
    assert_eq!(h.runtime.take_dynamic_drops(), 0);
}

#[test]
fn globals_are_visible_to_the_vmm() {
    let mut h = Harness::new("BEGIN { n = 41; n++; s = \"x\"; }");
    h.fire(&ProbeInfo::begin());
    assert_eq!(h.runtime.global("n"), Some(Value::Int(42)));
    assert_eq!(h.runtime.global("s"), Some(Value::Str("x".into())));
    assert_eq!(h.runtime.global("nope"), None);
}

#[test]
fn aggregations_accumulate_per_vcpu_and_fold() {
    let mut h = Harness::new(
        "fbt:::entry { @c[probefunc] = count(); @s = sum(arg1); @q = quantize(arg1); }",
    );
    let p = ProbeInfo::new(9, "fbt", "", "f", "entry");
    h.fire_on(0, &p);
    h.fire_on(1, &p);
    h.fire_on(1, &p);
    let out = h.output(true, OutputFormat::Text);
    let want = format!("\n  {:<50} {:>16}\n {:>16}\n", "f", 3, 6);
    assert!(out.stdout.starts_with(&want), "{}", out.stdout);
}
