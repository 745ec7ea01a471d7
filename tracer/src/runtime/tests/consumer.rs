//! The consumer: DTrace's per-firing lines, quiet mode, aggregation actions, errors, drops,
//! JSON lines and merging.

use std::sync::Arc;

use super::*;
use crate::runtime::tests::Harness;
use crate::runtime::{Fault, ProbeInfo, StackFrame};

#[test]
fn non_quiet_text_has_a_heading_and_a_line_per_firing() {
    let mut h = Harness::new(
        "BEGIN {}\n\
         fbt::xcall_send:entry { printf(\"hi %d\", arg1); trace(arg1); trace(probefunc); }\n\
         fbt::xcall_send:entry { x = 1; }\n\
         END { exit(0); }",
    );
    h.ctx.timestamp = 1;
    h.fire(&ProbeInfo::begin());
    h.ctx.timestamp = 2;
    h.fire_on(1, &ProbeInfo::new(77, "fbt", "k", "xcall_send", "entry"));
    h.ctx.timestamp = 3;
    h.fire(&ProbeInfo::end());
    let out = h.output(false, OutputFormat::Text);
    let want = [
        "CPU     ID                    FUNCTION:NAME\n",
        "  0      1                           :BEGIN \n",
        &format!(
            "  1     77                 xcall_send:entry hi 2 {:>16}  {:<33}\n",
            2, "xcall_send"
        ),
        "  0      2                             :END \n",
        "\n",
    ]
    .concat();
    assert_eq!(out.stdout, want);
    assert_eq!(out.stderr, "");
}

#[test]
fn quiet_text_is_only_the_data() {
    let mut h = Harness::new("BEGIN {} BEGIN { printf(\"a\"); trace(1); trace(\"b\"); }");
    h.fire(&ProbeInfo::begin());
    assert_eq!(h.output(true, OutputFormat::Text).stdout, "a1b\n");
}

#[test]
fn errors_go_to_stderr_and_stacks_print_one_frame_a_line() {
    let mut h = Harness::new("BEGIN { trace(stringof(0)); } BEGIN { stack(); } BEGIN { stack(); }");
    h.fire(&ProbeInfo::begin());
    h.ctx.stack = Some(vec![0x2004, 0x77]);
    h.fire(&ProbeInfo::begin());
    let out = h.output(true, OutputFormat::Text);
    assert_eq!(
        out.stderr,
        "hvtrace: error on enabled probe ID 1 (ID 1: dtrace:::BEGIN): invalid address (0x0) in action #1\n\
         hvtrace: stack(): no unwinder for this image (it has no frame pointers)\n\
         hvtrace: error on enabled probe ID 1 (ID 1: dtrace:::BEGIN): invalid address (0x0) in action #1\n"
    );
    let frames = "\n              xcall_send+0x4\n              0x77\n";
    assert_eq!(out.stdout, format!("{frames}{frames}\n"));
}

#[test]
fn clear_trunc_and_printed_aggregations() {
    let mut h = Harness::new(
        "BEGIN { @a[1] = count(); @a[2] = count(); @a[2] = count(); @b = count(); @c = sum(5); }\n\
         END { trunc(@a, 1); clear(@b); printa(@c); }",
    );
    h.fire(&ProbeInfo::begin());
    h.fire(&ProbeInfo::end());
    let out = h.output(true, OutputFormat::Text);
    let want = [
        // printa(@c)
        "\n",
        "                5\n",
        // end of trace: @a truncated to its largest entry, @b cleared, @c already printed.
        "\n",
        "                2                2\n",
        "                0\n",
    ]
    .concat();
    assert_eq!(out.stdout, want);
}

#[test]
fn drops_are_reported() {
    let program = Arc::new(crate::lang::compile_str("BEGIN {}").unwrap_or_else(|e| panic!("{e}")));
    let mut c = Consumer::new(Arc::clone(&program), ConsumerOptions::default());
    let mut out = Output::default();
    c.report_drops(
        3,
        Drops {
            records: 5,
            aggregations: 1,
        },
        &mut out,
    );
    c.report_drops(0, Drops::default(), &mut out);
    c.report_dynamic_drops(2, &mut out);
    c.report_dynamic_drops(0, &mut out);
    assert_eq!(
        out.stderr,
        "hvtrace: 5 drops on CPU 3\nhvtrace: 1 aggregation drop on CPU 3\nhvtrace: 2 dynamic variable drops\n"
    );
    let mut c = Consumer::new(
        program,
        ConsumerOptions {
            quiet: false,
            format: OutputFormat::Json,
        },
    );
    let mut out = Output::default();
    c.report_drops(
        3,
        Drops {
            records: 5,
            aggregations: 0,
        },
        &mut out,
    );
    c.report_dynamic_drops(2, &mut out);
    assert_eq!(
        out.stdout,
        "{\"count\":5,\"cpu\":3,\"kind\":\"records\",\"type\":\"drops\"}\n{\"count\":2,\"kind\":\"dynamic\",\"type\":\"drops\"}\n"
    );
}

#[test]
fn json_lines() {
    let mut h = Harness::new(
        "BEGIN {} BEGIN { printf(\"p\"); trace(-1); trace(\"s\"); stack(); exit(2); printa(@q); clear(@q); }\n\
         BEGIN { x = 1 / (arg1 - 2); }\n\
         BEGIN { @q = quantize(arg1); @q = quantize(-3); @c[\"k\", 1] = count(); @l = lquantize(arg1, 0, 10, 5); @l = lquantize(-1, 0, 10, 5); @l = lquantize(99, 0, 10, 5); }",
    );
    h.ctx.stack = Some(vec![0x2004]);
    h.fire(&ProbeInfo::begin());
    let out = h.output(false, OutputFormat::Json);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let types: Vec<&str> = lines
        .iter()
        .map(|l| l["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        types,
        vec![
            "fire",
            "printf",
            "trace",
            "trace",
            "stack",
            "exit",
            "printa",
            "error",
            "aggregation",
            "aggregation"
        ]
    );
    assert_eq!(lines[0]["probe"]["name"], "BEGIN");
    assert_eq!(lines[0]["cpu"], 0);
    assert_eq!(lines[0]["timestamp"], 1000);
    assert_eq!(lines[2]["value"], -1);
    assert_eq!(lines[3]["value"], "s");
    assert_eq!(lines[4]["frames"][0]["symbol"], "xcall_send+0x4");
    assert_eq!(lines[5]["status"], 2);
    assert_eq!(lines[6]["aggregation"]["name"], "@q");
    assert_eq!(lines[7]["fault"], "divide-by-zero");
    assert_eq!(lines[7]["epid"], 3);
    assert_eq!(lines[7]["action"], 1);
    // @q was printed by printa: not printed again. Then @c and @l, in program order.
    assert_eq!(lines[8]["name"], "@c");
    assert_eq!(lines[8]["entries"][0]["keys"], serde_json::json!(["k", 1]));
    assert_eq!(lines[8]["entries"][0]["value"], 1);
    assert_eq!(lines[9]["name"], "@l");
    assert_eq!(
        lines[9]["entries"][0]["value"],
        serde_json::json!([
            {"min": null, "max": -1, "count": 1},
            {"min": 0, "max": 4, "count": 1},
            {"min": 10, "max": null, "count": 1},
        ])
    );
    assert_eq!(lines.len(), 10);
    let q = &lines[6]["aggregation"]["entries"][0]["value"];
    assert_eq!(
        *q,
        serde_json::json!([
            {"min": -3, "max": -2, "count": 1},
            {"min": 2, "max": 3, "count": 1},
        ])
    );
}

#[test]
fn merge_orders_by_timestamp_and_keeps_firings_together() {
    let probe = Arc::new(ProbeInfo::begin());
    let rec = |cpu: u32, ts: u64, firing: u64, n: i64| Record {
        cpu,
        timestamp_ns: ts,
        probe: Arc::clone(&probe),
        epid: 1,
        firing,
        kind: RecordKind::Trace(crate::runtime::Value::Int(n)),
    };
    let merged = merge_records(vec![
        vec![rec(0, 1, 1, 1), rec(0, 1, 1, 2), rec(0, 5, 2, 3)],
        vec![rec(1, 1, 1, 4), rec(1, 3, 2, 5)],
    ]);
    let order: Vec<u64> = merged
        .iter()
        .map(|r| match r.kind {
            RecordKind::Trace(ref v) => v.bits(),
            _ => 0,
        })
        .collect();
    assert_eq!(order, vec![1, 2, 4, 5, 3]);
    // Unused kinds still render (no panic) in both forms.
    let odd = Record {
        kind: RecordKind::Error {
            action: None,
            fault: Fault::BadRegister(9),
        },
        ..rec(0, 1, 1, 1)
    };
    let stack = Record {
        kind: RecordKind::Stack(vec![StackFrame {
            address: 1,
            symbol: None,
        }]),
        ..rec(0, 1, 1, 1)
    };
    let program = Arc::new(crate::lang::compile_str("BEGIN {}").unwrap_or_else(|e| panic!("{e}")));
    for format in [OutputFormat::Text, OutputFormat::Json] {
        let mut c = Consumer::new(
            Arc::clone(&program),
            ConsumerOptions {
                quiet: false,
                format,
            },
        );
        let mut out = Output::default();
        c.consume(&[odd.clone(), stack.clone()], &mut out);
        assert!(!out.stdout.is_empty());
    }
}
