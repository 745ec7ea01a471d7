//! The control socket's wire format: JSON lines, one object per line, both ways.
//!
//! Client to VMM:
//! - first line, the request: `{"sources": [[NAME, TEXT], ...], "quiet": BOOL, "format":
//!   "text" | "json"}`;
//! - later, optionally: `{"stop": true}` (Ctrl-C: fire END, print the aggregations, detach).
//!
//! VMM to client:
//! - `{"attached": {"probes": N, "sites": M}}` once the probes are armed, or
//!   `{"error": MESSAGE}` and the connection closes;
//! - `{"stdout": TEXT}` and `{"stderr": TEXT}` as the program prints;
//! - `{"end": {"reason": "exit" | "stopped" | "vm-ended", "status": N | null}}` last.
//!
//! A client that goes away (closes, crashes, is killed) is detached: its probes are removed
//! and the guest text restored.

use serde_json::{json, Value};

use crate::trace::TraceSpec;

/// Longest request line accepted (a D program is text; 1 MiB is generous).
pub const MAX_REQUEST: usize = 1 << 20;

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The program called `exit()`.
    Exit,
    /// The client asked to stop (Ctrl-C).
    Stopped,
    /// The VM ended.
    VmEnded,
}

impl EndReason {
    /// The word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exit => "exit",
            EndReason::Stopped => "stopped",
            EndReason::VmEnded => "vm-ended",
        }
    }
}

/// Parses a request line into a trace spec (its output goes to the socket, so `output` is
/// always `None`).
pub fn parse_request(line: &str) -> Result<TraceSpec, String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("request is not valid JSON: {e}"))?;
    let sources = v
        .get("sources")
        .and_then(Value::as_array)
        .ok_or("request has no \"sources\" array")?;
    let mut parsed = Vec::with_capacity(sources.len());
    for s in sources {
        match s.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(text)]) => {
                parsed.push((name.clone(), text.clone()))
            }
            _ => return Err("each source must be [NAME, TEXT]".into()),
        }
    }
    if parsed.is_empty() {
        return Err("request has no program".into());
    }
    let json = match v.get("format").and_then(Value::as_str) {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => return Err(format!("unknown format '{other}' (text or json)")),
    };
    Ok(TraceSpec {
        sources: parsed,
        quiet: v.get("quiet").and_then(Value::as_bool).unwrap_or(false),
        json,
        output: None,
    })
}

/// The request line for `spec`.
pub fn request(spec: &TraceSpec) -> String {
    let sources: Vec<Value> = spec.sources.iter().map(|(n, t)| json!([n, t])).collect();
    json!({
        "sources": sources,
        "quiet": spec.quiet,
        "format": if spec.json { "json" } else { "text" },
    })
    .to_string()
}

/// `{"stop": true}`.
pub fn stop() -> String {
    json!({ "stop": true }).to_string()
}

/// Whether a client line is `{"stop": true}`.
pub fn is_stop(line: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("stop").and_then(Value::as_bool))
        == Some(true)
}

/// `{"attached": ...}`.
pub fn attached(probes: usize, sites: usize) -> String {
    json!({ "attached": { "probes": probes, "sites": sites } }).to_string()
}

/// `{"error": why}`.
pub fn error(why: &str) -> String {
    json!({ "error": why }).to_string()
}

/// `{"stdout": text}` or `{"stderr": text}`.
pub fn output(stream: &str, text: &str) -> String {
    json!({ stream: text }).to_string()
}

/// `{"end": ...}`.
pub fn end(reason: EndReason, status: Option<i32>) -> String {
    json!({ "end": { "reason": reason.as_str(), "status": status } }).to_string()
}

/// A message from the VMM, as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Probes armed.
    Attached {
        /// Probes armed.
        probes: u64,
    },
    /// Setup failed.
    Error(String),
    /// Program output.
    Stdout(String),
    /// Warnings.
    Stderr(String),
    /// The session ended.
    End {
        /// Why (the wire word).
        reason: String,
        /// `exit()`'s status.
        status: Option<i32>,
    },
}

/// Parses one line from the VMM.
pub fn parse_message(line: &str) -> Result<Message, String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("bad message from the VMM: {e}"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(a) = v.get("attached") {
        return Ok(Message::Attached {
            probes: a.get("probes").and_then(Value::as_u64).unwrap_or(0),
        });
    }
    if let Some(e) = text("error") {
        return Ok(Message::Error(e));
    }
    if let Some(t) = text("stdout") {
        return Ok(Message::Stdout(t));
    }
    if let Some(t) = text("stderr") {
        return Ok(Message::Stderr(t));
    }
    if let Some(e) = v.get("end") {
        return Ok(Message::End {
            reason: e
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            status: e.get("status").and_then(Value::as_i64).map(|s| s as i32),
        });
    }
    Err(format!("unknown message from the VMM: {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let spec = TraceSpec {
            sources: vec![("-n".into(), "BEGIN { exit(0); }".into())],
            quiet: true,
            json: true,
            output: None,
        };
        let back = parse_request(&request(&spec)).unwrap();
        assert_eq!(back.sources, spec.sources);
        assert!(back.quiet && back.json);
        for bad in [
            "",
            "{}",
            "{\"sources\": []}",
            "{\"sources\": [1]}",
            "{\"sources\": [[\"a\",\"b\"]], \"format\": \"xml\"}",
        ] {
            assert!(parse_request(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_round_trip() {
        assert_eq!(
            parse_message(&attached(3, 4)).unwrap(),
            Message::Attached { probes: 3 }
        );
        assert_eq!(
            parse_message(&output("stdout", "a\n")).unwrap(),
            Message::Stdout("a\n".into())
        );
        assert_eq!(
            parse_message(&end(EndReason::Exit, Some(3))).unwrap(),
            Message::End {
                reason: "exit".into(),
                status: Some(3)
            }
        );
        assert_eq!(
            parse_message(&error("bad")).unwrap(),
            Message::Error("bad".into())
        );
        assert!(parse_message("{\"what\": 1}").is_err());
        assert!(is_stop(&stop()));
        assert!(!is_stop("{\"stop\": false}") && !is_stop("stop"));
    }
}
