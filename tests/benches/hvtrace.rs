//! The benchmark suite in one command: `cargo bench -p tests --bench hvtrace [-- --tiny |
//! --long] [--only GROUP,...] [--no-docs]`. Every row is printed with its baseline measured
//! in the same run, the ratio and the goal; `target/bench/results.json` is written, and (for a
//! full default or long run) the tables in `docs/BENCHMARKS.md` and the SVG plots in
//! `docs/bench/` are regenerated. Timings are printed, never asserted.

use std::path::Path;
use std::time::Instant;

use tests::bench::report::{markdown, update_docs, write_json, Results};
use tests::bench::{host_kind, machine, run_all, Size, GROUPS};
use tests::kvm_or_skip;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = if args.iter().any(|a| a == "--tiny") {
        Size::Tiny
    } else if args.iter().any(|a| a == "--long") {
        Size::Long
    } else {
        Size::Default
    };
    let only: Vec<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(bad) = only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        eprintln!("unknown group `{bad}`; groups: {}", GROUPS.join(", "));
        std::process::exit(2);
    }
    if !kvm_or_skip("benchmark suite") {
        return;
    }
    let mut command = "cargo bench -p tests --bench hvtrace".to_string();
    let flags: Vec<&String> = args.iter().filter(|a| *a != "--bench").collect();
    if !flags.is_empty() {
        command.push_str(" --");
        for f in flags {
            command.push(' ');
            command.push_str(f);
        }
    }
    let start = Instant::now();
    let rows = run_all(size, &only, &mut |group| eprintln!("bench: {group} ..."));
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let results = Results {
        command,
        size: size.name(),
        host: host_kind(),
        machine: machine(),
        date,
        took_s: start.elapsed().as_secs_f64(),
        rows,
    };
    print!("{}", markdown(&results));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = write_json(&results, &root.join("target/bench")) {
        eprintln!("bench: cannot write target/bench/results.json: {e}");
    }
    let full = size != Size::Tiny && only.is_empty() && !args.iter().any(|a| a == "--no-docs");
    if full {
        match update_docs(&results, &root.join("docs")) {
            Ok(()) => eprintln!("bench: docs/BENCHMARKS.md and docs/bench/*.svg regenerated"),
            Err(e) => eprintln!("bench: cannot update docs/BENCHMARKS.md: {e}"),
        }
    }
}
