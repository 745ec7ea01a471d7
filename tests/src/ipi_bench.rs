//! Running the `ipi-bench` guest and parsing what it prints, for the `apic` benchmark and the
//! test that keeps that benchmark from rotting.
//!
//! The guest prints (see `guest/asm/ipi_bench.S`):
//!
//! ```text
//! ipi-bench: tsc_khz=2596152 iters=200 warmup=10 irq=1
//! ipi-bench: ipi_roundtrip_ticks median=329056 p99=739752 min=223964 n=200
//! ipi-bench: ipi_roundtrip_ns median=126747 p99=284941 min=86267 n=200
//! ipi-bench: irq_latency_ticks median=136058 p99=381030 min=89674 n=200
//! ipi-bench: irq_latency_ns median=52407 p99=146767 min=34541 n=200
//! ```
//!
//! With `irq=0` on the guest's command line the two `irq_latency` lines are replaced by
//! `ipi-bench: irq_latency_ns skipped`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{run_hvtrace, RunOutput};

/// The irqchips the benchmark compares, in column order.
pub const IRQCHIPS: [&str; 3] = ["emulated", "kvm", "split"];

/// The guest's measurements, in the order it reports them.
pub const MEASUREMENTS: [&str; 2] = ["ipi_roundtrip", "irq_latency"];

/// The `hvtrace` arguments that run `ipi-bench` on 2 vCPUs under `irqchip` with `iters`
/// recorded rounds per measurement (`timeout_s` is also handed to `--timeout`).
pub fn args(irqchip: &str, iters: u32, timeout_s: u64) -> Vec<String> {
    let cmdline = format!("iters={iters}");
    [
        "run",
        "--guest",
        "ipi-bench",
        "--cpus",
        "2",
        "--irqchip",
        irqchip,
        "--cmdline",
        &cmdline,
        "--timeout",
        &timeout_s.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `ipi-bench` once (see [`args`]); the run is killed after `timeout_s` + 30 s.
pub fn run(irqchip: &str, iters: u32, timeout_s: u64) -> RunOutput {
    let args = args(irqchip, iters, timeout_s);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_hvtrace(&args, Duration::from_secs(timeout_s + 30))
}

/// One statistics line: `median`, `p99`, `min` in the line's unit, over `n` samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Median (nearest rank).
    pub median: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Smallest sample.
    pub min: u64,
    /// Number of samples.
    pub n: u64,
}

/// Everything one run of the guest printed, checked for consistency by [`parse`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// TSC frequency the guest converted with (kHz).
    pub tsc_khz: u64,
    /// Recorded rounds per measurement.
    pub iters: u64,
    /// Unrecorded warm-up rounds per measurement.
    pub warmup: u64,
    /// Whether the interrupt-latency measurement ran.
    pub irq: bool,
    /// Statistics by line name (`ipi_roundtrip_ns`, `irq_latency_ticks`, ...).
    pub stats: BTreeMap<String, Stats>,
    /// Lines reported as `<name> skipped`.
    pub skipped: Vec<String>,
}

impl Report {
    /// The nanosecond statistics of `measurement` (`ipi_roundtrip` or `irq_latency`), if it ran.
    pub fn ns(&self, measurement: &str) -> Option<Stats> {
        self.stats.get(&format!("{measurement}_ns")).copied()
    }
}

/// Parses `key=value` as a number, checking the key.
fn field(word: &str, key: &str) -> Result<u64, String> {
    let value = word
        .strip_prefix(key)
        .and_then(|w| w.strip_prefix('='))
        .ok_or_else(|| format!("expected `{key}=`, found `{word}`"))?;
    value
        .parse()
        .map_err(|e| format!("`{key}={value}` is not a number: {e}"))
}

/// Whether `name` is one of the guest's statistics lines (`<measurement>_<unit>`).
fn known_line(name: &str, units: &[&str]) -> bool {
    MEASUREMENTS
        .iter()
        .any(|m| units.iter().any(|u| name == format!("{m}_{u}")))
}

/// Parses one line after the `ipi-bench: ` prefix into `report`.
fn parse_line(line: &str, report: &mut Report, seen_header: &mut bool) -> Result<(), String> {
    let words: Vec<&str> = line.split(' ').collect();
    let name = words[0];
    if name.starts_with("tsc_khz=") {
        if words.len() != 4 {
            return Err("expected `tsc_khz=K iters=N warmup=W irq=0|1`".to_string());
        }
        report.tsc_khz = field(words[0], "tsc_khz")?;
        report.iters = field(words[1], "iters")?;
        report.warmup = field(words[2], "warmup")?;
        report.irq = match field(words[3], "irq")? {
            0 => false,
            1 => true,
            v => return Err(format!("irq={v}: expected 0 or 1")),
        };
        *seen_header = true;
        return Ok(());
    }
    if !*seen_header {
        return Err("a result line before the header line".to_string());
    }
    if words[1..] == ["skipped"] {
        if !known_line(name, &["ns"]) {
            return Err(format!("unknown line `{name}`"));
        }
        report.skipped.push(name.to_string());
        return Ok(());
    }
    if !known_line(name, &["ns", "ticks"]) {
        return Err(format!("unknown line `{name}`"));
    }
    if words.len() != 5 {
        return Err("expected `<name> median=M p99=P min=L n=N`".to_string());
    }
    let stats = Stats {
        median: field(words[1], "median")?,
        p99: field(words[2], "p99")?,
        min: field(words[3], "min")?,
        n: field(words[4], "n")?,
    };
    if !(stats.min <= stats.median && stats.median <= stats.p99) {
        return Err(format!("expected min <= median <= p99: {stats:?}"));
    }
    if stats.n != report.iters {
        return Err(format!("n={} but iters={}", stats.n, report.iters));
    }
    if report.stats.insert(name.to_string(), stats).is_some() {
        return Err(format!("`{name}` printed twice"));
    }
    Ok(())
}

/// Parses the guest's serial output: every line must be one of the documented forms, the
/// header must come first, and each measurement must be reported (in ticks and in ns) or,
/// only the interrupt latency with `irq=0`, be skipped.
pub fn parse(stdout: &str) -> Result<Report, String> {
    let mut report = Report::default();
    let mut seen_header = false;
    for line in stdout.lines() {
        let rest = line
            .strip_prefix("ipi-bench: ")
            .ok_or_else(|| format!("line without the `ipi-bench: ` prefix: `{line}`"))?;
        parse_line(rest, &mut report, &mut seen_header).map_err(|e| format!("`{line}`: {e}"))?;
    }
    if !seen_header {
        return Err("no `ipi-bench: tsc_khz=...` header line".to_string());
    }
    if report.tsc_khz == 0 {
        return Err("tsc_khz=0: the guest could not convert to nanoseconds".to_string());
    }
    for m in MEASUREMENTS {
        let ran = m != "irq_latency" || report.irq;
        for unit in ["ticks", "ns"] {
            let name = format!("{m}_{unit}");
            if report.stats.contains_key(&name) != ran {
                return Err(format!("`{name}` reported: expected {ran}"));
            }
        }
        let skipped = report.skipped.contains(&format!("{m}_ns"));
        if skipped == ran {
            return Err(format!("`{m}_ns skipped` printed: expected {}", !ran));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "ipi-bench: tsc_khz=2596152 iters=200 warmup=10 irq=1\n\
        ipi-bench: ipi_roundtrip_ticks median=329056 p99=739752 min=223964 n=200\n\
        ipi-bench: ipi_roundtrip_ns median=126747 p99=284941 min=86267 n=200\n\
        ipi-bench: irq_latency_ticks median=136058 p99=381030 min=89674 n=200\n\
        ipi-bench: irq_latency_ns median=52407 p99=146767 min=34541 n=200\n";

    const SPLIT: &str = "ipi-bench: tsc_khz=2596152 iters=5 warmup=10 irq=0\n\
        ipi-bench: ipi_roundtrip_ticks median=56836 p99=92482 min=52572 n=5\n\
        ipi-bench: ipi_roundtrip_ns median=21892 p99=35622 min=20249 n=5\n\
        ipi-bench: irq_latency_ns skipped\n";

    #[test]
    fn parses_both_forms() {
        let r = parse(FULL).unwrap();
        assert_eq!(
            (r.tsc_khz, r.iters, r.warmup, r.irq),
            (2596152, 200, 10, true)
        );
        assert_eq!(
            r.ns("irq_latency"),
            Some(Stats {
                median: 52407,
                p99: 146767,
                min: 34541,
                n: 200
            })
        );
        let r = parse(SPLIT).unwrap();
        assert!(!r.irq);
        assert_eq!(r.ns("ipi_roundtrip").unwrap().median, 21892);
        assert_eq!(r.ns("irq_latency"), None);
        assert_eq!(r.skipped, ["irq_latency_ns"]);
    }

    #[test]
    fn rejects_malformed_output() {
        assert!(parse("").is_err());
        assert!(parse("ipi-bench: tsc_khz=1 iters=200 warmup=10 irq=1\n").is_err());
        let fail = FULL.replace(
            "ipi-bench: irq_latency_ticks",
            "ipi-bench: FAIL timeout\nipi-bench: irq_latency_ticks",
        );
        assert!(parse(&fail).is_err());
        assert!(parse(&FULL.replace("p99=739752", "p99=1")).is_err());
        assert!(parse(&FULL.replace(
            "n=200\nipi-bench: irq_latency_ns",
            "n=7\nipi-bench: irq_latency_ns"
        ))
        .is_err());
        assert!(parse(&FULL.replace("tsc_khz=2596152", "tsc_khz=0")).is_err());
        assert!(parse(&SPLIT.replace("irq=0", "irq=1")).is_err());
        assert!(parse(&format!("{FULL}ipi-bench: irq_latency_ns skipped\n")).is_err());
        assert!(parse(&format!("{FULL}trailing noise\n")).is_err());
    }
}
