//! The benchmark suite runs in its tiny mode and produces well-formed results: every group
//! present, every value a number with a unit, ratios where there are baselines, JSON that
//! parses, a Markdown table and SVG plots, and the docs' generated section replaced in place.
//! No timing is asserted.

use tests::bench::report::{cdf_svg, markdown, to_json, update_docs, Results};
use tests::bench::{run_all, Goal, Size, BELOW_NOISE, GROUPS};
use tests::kvm_or_skip;

#[test]
fn the_benchmark_suite_runs_tiny_and_its_results_are_well_formed() {
    if !kvm_or_skip("the_benchmark_suite_runs_tiny_and_its_results_are_well_formed") {
        return;
    }
    let start = std::time::Instant::now();
    let rows = run_all(Size::Tiny, &[], &mut |group| {
        eprintln!(
            "bench smoke: {group} at {:.1} s",
            start.elapsed().as_secs_f64()
        )
    });
    for group in GROUPS {
        assert!(rows.iter().any(|r| r.group == group), "no {group} rows");
    }
    for group in ["probes", "probe scaling"] {
        assert!(rows.iter().any(|r| r.group == group), "no {group} rows");
    }
    for r in &rows {
        assert!(!r.unit.is_empty() && !r.name.is_empty(), "{r:?}");
        assert!(r.value.is_finite(), "{r:?}");
        // A busy machine can push a difference of two tiny timed runs to <= 0: the row must
        // then say so and judge nothing.
        if r.note.contains(BELOW_NOISE) {
            assert_eq!(r.goal, Goal::Report, "{r:?}");
            continue;
        }
        assert!(r.value >= 0.0, "{r:?}");
        if let Some((name, v)) = &r.baseline {
            assert!(!name.is_empty() && v.is_finite() && *v > 0.0, "{r:?}");
            assert!(r.ratio().is_some_and(f64::is_finite), "{r:?}");
        }
    }
    // Exactly one exit per emulated hit, whatever the timing.
    let emulated = rows
        .iter()
        .find(|r| r.name.starts_with("probe hit, emulated path (hlt trap"))
        .expect("emulated probe row");
    assert!(
        emulated.note.starts_with("1.000 exits per hit"),
        "{emulated:?}"
    );
    let results = Results {
        command: "cargo bench -p tests --bench hvtrace -- --tiny".into(),
        size: Size::Tiny.name(),
        host: tests::bench::host_kind(),
        machine: tests::bench::machine(),
        date: "test".into(),
        took_s: 0.0,
        rows,
    };
    let json = to_json(&results);
    let text = serde_json::to_string(&json).unwrap();
    let back: serde_json::Value = serde_json::from_str(&text).expect("JSON round trip");
    assert_eq!(
        back["rows"].as_array().map(Vec::len),
        Some(results.rows.len())
    );
    let table = markdown(&results);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        results.rows.len() + 1,
        "one table line per row plus the header"
    );
    let svg = cdf_svg(&results, "stop-the-world", "stw").expect("a plot");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // The generated section is replaced, not appended, on a second run.
    let dir = std::env::temp_dir().join(format!("hvtrace-bench-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("BENCHMARKS.md"),
        "# Benchmarks\n\nhand-written notes\n",
    )
    .unwrap();
    update_docs(&results, &dir).unwrap();
    update_docs(&results, &dir).unwrap();
    let md = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
    assert_eq!(md.matches("<!-- bench:begin -->").count(), 1, "{md}");
    assert!(md.contains("hand-written notes"));
    assert!(dir.join("bench/stw-latency.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
