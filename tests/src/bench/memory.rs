//! The VMM's resident memory beyond guest RAM, in a fresh `hvtrace run` process while its
//! guest runs: the process's resident set (`/proc/PID/smaps`) less the resident part of the
//! guest-RAM mapping (the anonymous mapping of exactly `--mem` bytes). Firecracker publishes
//! <= 5 MiB.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Goal, Row, Size};
use crate::fresh_hvtrace_path;

/// Guest RAM of the measured runs.
const MEM_KIB: u64 = 256 * 1024;

/// (total resident KiB, resident KiB of the guest-RAM mapping) of process `pid`.
fn resident(pid: u32) -> Option<(u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut total, mut guest) = (0, 0);
    let mut size = 0;
    for line in smaps.lines() {
        let kib = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if line.starts_with("Size:") {
            size = kib();
        } else if line.starts_with("Rss:") {
            total += kib();
            if size == MEM_KIB {
                guest += kib();
            }
        }
    }
    Some((total, guest))
}

/// The memory rows.
pub fn rows(size: Size) -> Vec<Row> {
    let settle = Duration::from_millis(size.pick(300, 1000, 2000));
    let bin = fresh_hvtrace_path();
    let mut out = Vec::new();
    for cpus in ["1", "4"] {
        let mut child = Command::new(&bin)
            .args(["run", "--guest", "spin", "--cpus", cpus, "--mem", "256M"])
            .args(["--cmdline", "cpus=all mode=busy", "--timeout", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn hvtrace");
        let start = Instant::now();
        let mut peak: Option<(u64, u64)> = None;
        while start.elapsed() < settle {
            if let Some((total, guest)) = resident(child.id()) {
                if peak.is_none_or(|(t, g)| total - guest > t - g) {
                    peak = Some((total, guest));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        let (total, guest) = peak.expect("read the hvtrace process's smaps");
        let mib = |k: u64| k as f64 / 1024.0;
        out.push(
            Row::new(
                "memory",
                format!(
                    "VMM resident memory beyond guest RAM (spin, {cpus} busy vCPU(s), 256 MiB)"
                ),
                mib(total - guest),
                "MiB",
            )
            .against("Firecracker's published figure", 5.0)
            .goal(Goal::MaxValue(5.0))
            .note(format!(
                "process resident {:.2} MiB, of which {:.2} MiB guest RAM (peak over {} ms)",
                mib(total),
                mib(guest),
                settle.as_millis()
            )),
        );
    }
    out
}
