//! The timeline as Chrome trace-event JSON (the format the Perfetto UI and `chrome://tracing`
//! open): one process for the VM, one thread track per vCPU with its run states as slices, and
//! exits, APIC events and probe hits as instant events; a truncated timeline says so in
//! `otherData` and with a global marker.

use std::io::{self, Write};

use apic::ApicEvent;
use serde_json::{json, Value};
use vcpu::RunState;

use super::{Event, EventKind};

/// Writes `events` (in time order; `dropped` more were not kept) for a VM of `cpus` vCPUs,
/// titled `title`, ending at `end_ns`.
pub fn write_trace_events(
    w: &mut dyn Write,
    title: &str,
    cpus: usize,
    events: &[Event],
    dropped: u64,
    end_ns: u64,
) -> io::Result<()> {
    writeln!(w, "{{\"displayTimeUnit\":\"ns\",")?;
    let other = json!({
        "title": title,
        "truncated": dropped > 0,
        "dropped_events": dropped,
        "events": events.len(),
    });
    writeln!(w, "\"otherData\":{other},")?;
    writeln!(w, "\"traceEvents\":[")?;
    let mut first = true;
    let mut emit = |w: &mut dyn Write, v: Value| -> io::Result<()> {
        if !first {
            writeln!(w, ",")?;
        }
        first = false;
        write!(w, "{v}")
    };
    emit(
        w,
        json!({"ph": "M", "pid": 1, "name": "process_name", "args": {"name": title}}),
    )?;
    for cpu in 0..cpus {
        let name = format!("vCPU {cpu}");
        emit(
            w,
            json!({"ph": "M", "pid": 1, "tid": cpu, "name": "thread_name", "args": {"name": name}}),
        )?;
        emit(
            w,
            json!({"ph": "M", "pid": 1, "tid": cpu, "name": "thread_sort_index", "args": {"sort_index": cpu}}),
        )?;
    }
    // Run states become slices from one state change to the next.
    let mut open: Vec<Option<(RunState, u64)>> = vec![None; cpus];
    for e in events {
        let cpu = e.cpu as usize;
        match &e.kind {
            EventKind::State(state) => {
                if let Some(Some((prev, since))) = open.get(cpu) {
                    emit(w, slice(cpu, *prev, *since, e.ts_ns))?;
                }
                if let Some(slot) = open.get_mut(cpu) {
                    *slot = Some((*state, e.ts_ns));
                }
            }
            EventKind::Exit(kind, arg) => emit(
                w,
                instant(
                    cpu,
                    e.ts_ns,
                    &format!("exit {kind}"),
                    "exit",
                    json!({"arg": format!("{arg:#x}")}),
                ),
            )?,
            EventKind::Apic(ev) => {
                let (name, args) = describe_apic(ev);
                emit(w, instant(cpu, e.ts_ns, &name, "apic", args))?;
            }
            EventKind::Probe(name) => {
                emit(w, instant(cpu, e.ts_ns, name, "probe", json!({})))?;
            }
        }
    }
    for (cpu, slot) in open.iter().enumerate() {
        if let Some((state, since)) = slot {
            emit(w, slice(cpu, *state, *since, end_ns.max(*since)))?;
        }
    }
    if dropped > 0 {
        let at = events.last().map_or(0, |e| e.ts_ns);
        emit(
            w,
            json!({"ph": "i", "s": "g", "pid": 1, "tid": 0, "ts": us(at), "cat": "timeline",
                   "name": format!("timeline truncated: {dropped} later events dropped")}),
        )?;
    }
    writeln!(w, "\n]}}")
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn slice(cpu: usize, state: RunState, from: u64, to: u64) -> Value {
    let name = match state {
        RunState::Running => "running",
        RunState::Halted => "halted",
        RunState::Paused => "stopped by VMM",
        RunState::Exiting | RunState::Exited => "exited",
    };
    json!({"ph": "X", "pid": 1, "tid": cpu, "ts": us(from), "dur": us(to.saturating_sub(from)),
           "name": name, "cat": "state"})
}

fn instant(cpu: usize, ts: u64, name: &str, cat: &str, args: Value) -> Value {
    json!({"ph": "i", "s": "t", "pid": 1, "tid": cpu, "ts": us(ts), "name": name, "cat": cat,
           "args": args})
}

/// A name such as `inject 0x30` and the event's fields as arguments.
fn describe_apic(ev: &ApicEvent) -> (String, Value) {
    match *ev {
        ApicEvent::Accept { vector, level, .. } => (
            format!("accept {vector:#x}"),
            json!({"vector": vector, "level": level}),
        ),
        ApicEvent::Inject { vector, .. } => {
            (format!("inject {vector:#x}"), json!({"vector": vector}))
        }
        ApicEvent::Eoi {
            vector, broadcast, ..
        } => (
            match vector {
                Some(v) => format!("eoi {v:#x}"),
                None => "eoi (none in service)".into(),
            },
            json!({"vector": vector, "broadcast": broadcast}),
        ),
        ApicEvent::IpiSent { ipi } => (
            format!("ipi {:#x} -> {:#x}", ipi.vector, ipi.dest),
            json!({"vector": ipi.vector, "dest": ipi.dest, "delivery": format!("{:?}", ipi.delivery),
                   "shorthand": format!("{:?}", ipi.shorthand)}),
        ),
        ApicEvent::TimerFired { vector, masked, .. } => (
            format!("timer {vector:#x}"),
            json!({"vector": vector, "masked": masked}),
        ),
        ApicEvent::Spurious { vector, .. } => {
            (format!("spurious {vector:#x}"), json!({"vector": vector}))
        }
        ref other => (
            format!("{other:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or("apic")
                .to_lowercase(),
            json!({"event": format!("{other:?}")}),
        ),
    }
}

/// The vCPU an APIC event belongs to (the target's, the sender's for an IPI; 0 for IOAPIC and
/// MSI messages).
pub(crate) fn apic_event_cpu(ev: &ApicEvent) -> usize {
    let apic = match *ev {
        ApicEvent::Accept { apic, .. }
        | ApicEvent::Reject { apic, .. }
        | ApicEvent::Inject { apic, .. }
        | ApicEvent::Spurious { apic, .. }
        | ApicEvent::Eoi { apic, .. }
        | ApicEvent::IpiDropped { apic, .. }
        | ApicEvent::TimerFired { apic, .. }
        | ApicEvent::Nmi { apic }
        | ApicEvent::Init { apic }
        | ApicEvent::Sipi { apic, .. }
        | ApicEvent::Smi { apic }
        | ApicEvent::Error { apic, .. }
        | ApicEvent::ModeChange { apic, .. } => apic,
        ApicEvent::IpiSent { ipi } => ipi.source,
        ApicEvent::Msi { .. } | ApicEvent::IoApicSend { .. } | ApicEvent::IoApicEoi { .. } => 0,
    };
    apic as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_parses_with_a_track_per_vcpu_and_closed_slices() {
        let events = vec![
            Event {
                ts_ns: 0,
                cpu: 0,
                kind: EventKind::State(RunState::Running),
            },
            Event {
                ts_ns: 1000,
                cpu: 0,
                kind: EventKind::Exit("io", 0x3f8),
            },
            Event {
                ts_ns: 2000,
                cpu: 1,
                kind: EventKind::Apic(ApicEvent::Inject {
                    apic: 1,
                    vector: 0x30,
                }),
            },
            Event {
                ts_ns: 3000,
                cpu: 0,
                kind: EventKind::State(RunState::Halted),
            },
            Event {
                ts_ns: 4000,
                cpu: 1,
                kind: EventKind::Probe("fbt:kernel:f:entry".into()),
            },
        ];
        let mut out = Vec::new();
        write_trace_events(&mut out, "test", 2, &events, 7, 5000).unwrap();
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        let list = v["traceEvents"].as_array().unwrap();
        let names: Vec<&str> = list.iter().filter_map(|e| e["name"].as_str()).collect();
        for want in [
            "thread_name",
            "running",
            "halted",
            "exit io",
            "inject 0x30",
            "fbt:kernel:f:entry",
        ] {
            assert!(names.contains(&want), "{want} missing in {names:?}");
        }
        assert_eq!(v["otherData"]["truncated"], true);
        assert!(names.iter().any(|n| n.starts_with("timeline truncated: 7")));
        // The halted slice runs to the end.
        let halted = list.iter().find(|e| e["name"] == "halted").unwrap();
        assert_eq!(halted["dur"].as_f64(), Some(2.0));
    }
}
