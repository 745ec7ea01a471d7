//! `hvtrace run --timeline FILE`: a Chrome trace-event / Perfetto JSON file with a track per
//! vCPU, checked against what the guest did.

use std::time::Duration;

use tests::{kvm_or_skip, run_hvtrace, temp_file};

#[test]
fn a_two_vcpu_cross_call_run_gives_tracks_ipis_and_eois_in_time_order() {
    if !kvm_or_skip("a_two_vcpu_cross_call_run_gives_tracks_ipis_and_eois_in_time_order") {
        return;
    }
    let path = temp_file("timeline.json", b"");
    let out = run_hvtrace(
        &[
            "run",
            "--guest",
            "xcall-lab",
            "--cpus",
            "2",
            "--cmdline",
            "variant=eoi-early calls=5",
            "--timeline",
            path.to_str().unwrap(),
            "-q",
            "-n",
            "fbt::xcall:entry { }",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("trace-event JSON");
    assert_eq!(v["otherData"]["truncated"], false);
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let named = |tid: u64, prefix: &str| -> Vec<f64> {
        events
            .iter()
            .filter(|e| {
                e["tid"] == tid && e["name"].as_str().is_some_and(|n| n.starts_with(prefix))
            })
            .map(|e| e["ts"].as_f64().unwrap_or(-1.0))
            .collect()
    };
    for cpu in 0..2u64 {
        let track = events
            .iter()
            .any(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["tid"] == cpu);
        assert!(track, "no track for vCPU {cpu}");
        assert!(!named(cpu, "running").is_empty(), "vCPU {cpu} never ran");
    }
    // Five cross calls (vector 0xe0): the caller (vCPU 0) sends the IPIs (INIT, SIPI, SIPI
    // first), the callee (vCPU 1) takes and EOIs each one, and each EOI follows its injection.
    // Before exiting, the guest parks vCPU 1 (a command and its kick, vector 0x50), so every
    // interrupt vCPU 1 took was EOI'd by then.
    assert_eq!(
        named(1, "inject ").len(),
        named(1, "eoi ").len(),
        "vCPU 1 exited with an interrupt in service"
    );
    let ipis = named(0, "ipi ");
    let injects = named(1, "inject 0xe0");
    let eois = named(1, "eoi 0xe0");
    assert!(ipis.len() >= 5, "{} IPIs", ipis.len());
    assert_eq!(injects.len(), 5, "injections on vCPU 1");
    assert_eq!(eois.len(), 5, "EOIs on vCPU 1");
    assert_eq!(named(0, "fbt:kernel:xcall:entry").len(), 5, "probe hits");
    for (i, (inject, eoi)) in injects.iter().zip(&eois).enumerate() {
        assert!(
            inject <= eoi,
            "call {i}: EOI at {eoi} before its injection at {inject}"
        );
        let sent_before = ipis.iter().filter(|&&t| t <= *inject).count();
        assert!(
            sent_before >= 4 + i,
            "call {i}: injected before its IPI was sent"
        );
    }
    let instants: Vec<f64> = events
        .iter()
        .filter(|e| e["ph"] == "i")
        .map(|e| e["ts"].as_f64().unwrap())
        .collect();
    assert!(
        instants.windows(2).all(|w| w[0] <= w[1]),
        "events not in time order"
    );
}
