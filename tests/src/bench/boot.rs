//! Whole runs of the `hvtrace` binary: process start to the guest's first serial byte and to
//! its exit, for `hello` and `smp --cpus 4`, medians of several runs, against QEMU on the same
//! image (`-M microvm,x-option-roms=off,rtc=off`, and the default `pc` machine with its
//! firmware) where QEMU is installed and runs the image.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmm::qemu::{boot_times, find_qemu, QemuEnding, QemuMachine};

use super::{median, Goal, Row, Size};
use crate::fresh_hvtrace_path;

/// QEMU's median (first byte, exit) in ms for `guest` on `cpus` under `machine`, or why not.
fn qemu_times(
    guest: &str,
    cpus: usize,
    machine: QemuMachine,
    runs: usize,
) -> Result<(f64, f64), String> {
    let qemu = find_qemu().map_err(|e| e.to_string())?;
    let image = guest::find(guest).expect("guest").image;
    let mut firsts = Vec::new();
    let mut exits = Vec::new();
    for _ in 0..runs {
        let t = boot_times(&qemu, image, cpus, machine, Duration::from_secs(60))
            .map_err(|e| e.to_string())?;
        if t.ending != QemuEnding::GuestExit(0) {
            return Err(format!("the guest does not run there ({:?})", t.ending));
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        firsts.push(t.to_first_byte.map_or(f64::NAN, ms));
        exits.push(ms(t.to_exit));
    }
    Ok((median(&firsts), median(&exits)))
}

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
    let qemu_runs = size.pick(1, 5, 15);
    let pc_runs = size.pick(1, 2, 5);
    let bin = fresh_hvtrace_path();
    let cases: [(&str, &str, usize, &[&str]); 2] = [
        ("hello", "hello", 1, &["run", "--guest", "hello"]),
        (
            "smp --cpus 4",
            "smp",
            4,
            &["run", "--guest", "smp", "--cpus", "4"],
        ),
    ];
    let mut out = Vec::new();
    for (name, guest, cpus, args) in cases {
        let _ = time_run(&bin, args); // warm the page cache
        let (firsts, exits): (Vec<f64>, Vec<f64>) = (0..runs).map(|_| time_run(&bin, args)).unzip();
        let (first, exit) = (median(&firsts), median(&exits));
        let mut first_row = Row::new(
            "whole run",
            format!("{name}: start to first serial byte"),
            first,
            "ms",
        );
        let mut exit_row = Row::new("whole run", format!("{name}: start to exit"), exit, "ms");
        match qemu_times(guest, cpus, QemuMachine::Microvm, qemu_runs) {
            Ok((qf, qe)) => {
                let peer = "QEMU -M microvm, same image";
                first_row = first_row.against(peer, qf).goal(Goal::MaxRatio(0.5));
                exit_row = exit_row.against(peer, qe).goal(Goal::MaxRatio(0.5));
            }
            Err(why) => {
                first_row = first_row.note(format!("QEMU microvm: {why}"));
                exit_row = exit_row.note(format!("QEMU microvm: {why}"));
            }
        }
        out.push(first_row);
        out.push(exit_row);
        match qemu_times(guest, cpus, QemuMachine::Pc, pc_runs) {
            Ok((_, qe)) => out.push(
                Row::new(
                    "whole run",
                    format!("{name}: start to exit under QEMU's default pc machine (firmware)"),
                    qe,
                    "ms",
                )
                .against("hvtrace, same image", exit)
                .note("the peer's own number; its ratio is QEMU over hvtrace"),
            ),
            Err(why) => {
                if let Some(row) = out.last_mut() {
                    row.note.push_str(&format!("; QEMU pc: {why}"));
                }
            }
        }
    }
    out
}
