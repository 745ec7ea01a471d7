//! Boot-time benchmark: from `hvtrace run` start to the guest's first serial byte and to its
//! exit, for `hello` and `smp --cpus 4`, median of several runs (printed, never asserted).
//!
//! Run with `cargo bench -p tests --bench boot` (set `HVTRACE_BENCH_RUNS` to change the
//! number of runs, default 20).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{fresh_hvtrace_path, kvm_or_skip};

/// Times one run: (time to first stdout byte, time to exit).
fn time_run(bin: &Path, args: &[&str]) -> (Duration, Duration) {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hvtrace");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut byte = [0u8; 1];
    let first = match stdout.read(&mut byte) {
        Ok(1) => start.elapsed(),
        _ => panic!("hvtrace {args:?} printed nothing"),
    };
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    let status = child.wait().expect("wait hvtrace");
    let exit = start.elapsed();
    assert!(status.success(), "hvtrace {args:?} failed: {status}");
    (first, exit)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !kvm_or_skip("bench boot") {
        return;
    }
    let runs: usize = std::env::var("HVTRACE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .max(1);
    let cases: [(&str, &[&str]); 4] = [
        (
            "hello",
            &["run", "--guest", "hello", "--irqchip", "emulated"],
        ),
        ("hello", &["run", "--guest", "hello", "--irqchip", "kvm"]),
        (
            "smp --cpus 4",
            &[
                "run",
                "--guest",
                "smp",
                "--cpus",
                "4",
                "--irqchip",
                "emulated",
            ],
        ),
        (
            "smp --cpus 4",
            &["run", "--guest", "smp", "--cpus", "4", "--irqchip", "kvm"],
        ),
    ];
    let bin = fresh_hvtrace_path();
    println!("hvtrace boot benchmark, {runs} runs each, median");
    println!("| guest | irqchip | start -> first serial byte | start -> exit |");
    println!("|---|---|---|---|");
    for (name, args) in cases {
        let irqchip = args.last().copied().unwrap_or("");
        let _ = time_run(&bin, args); // warm the page cache
        let (firsts, exits): (Vec<_>, Vec<_>) = (0..runs).map(|_| time_run(&bin, args)).unzip();
        println!(
            "| {name} | {irqchip} | {:.2} ms | {:.2} ms |",
            median(firsts).as_secs_f64() * 1e3,
            median(exits).as_secs_f64() * 1e3
        );
    }
}
