//! Whole runs of the `hvtrace` binary: process start to the guest's first serial byte and to
//! its exit, for `hello` and `smp --cpus 4`, medians of several runs. QEMU on the same image
//! (`-M microvm` and the default `pc` machine) is the peer where it can run the image.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{median, Row, Size};
use crate::fresh_hvtrace_path;

/// Times one run: (time to the first stdout byte, time to exit), in ms.
fn time_run(bin: &Path, args: &[&str]) -> (f64, f64) {
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
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(first), ms(exit))
}

/// The whole-run rows.
pub fn rows(size: Size) -> Vec<Row> {
    let runs = size.pick(2, 15, 50);
    let bin = fresh_hvtrace_path();
    let cases: [(&str, &[&str]); 2] = [
        ("hello", &["run", "--guest", "hello"]),
        ("smp --cpus 4", &["run", "--guest", "smp", "--cpus", "4"]),
    ];
    let mut out = Vec::new();
    for (name, args) in cases {
        let _ = time_run(&bin, args); // warm the page cache
        let (firsts, exits): (Vec<f64>, Vec<f64>) = (0..runs).map(|_| time_run(&bin, args)).unzip();
        let qemu = "QEMU microvm: not measured (the built-in guests boot in QEMU only with a multiboot header, not yet)";
        out.push(
            Row::new(
                "whole run",
                format!("{name}: start to first serial byte"),
                median(&firsts),
                "ms",
            )
            .note(qemu),
        );
        out.push(
            Row::new(
                "whole run",
                format!("{name}: start to exit"),
                median(&exits),
                "ms",
            )
            .note(qemu),
        );
    }
    out
}
