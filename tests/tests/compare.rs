//! `hvtrace compare` on the APIC conformance guest: every check for every irqchip mode, the
//! emulated APIC passing all, every difference marked, and an HTML report that renders in
//! headless Chromium.

use std::time::Duration;

use tests::{kvm_or_skip, report_skip, run_hvtrace, temp_file};

const BOUND: Duration = Duration::from_secs(300);

/// The checks the guest itself reports, with their verdicts (one plain run under hvtrace's
/// APIC, which fails none: a check that does not apply, such as AP start-up on one vCPU, is
/// skipped).
fn guest_checks(cpus: &str) -> Vec<(String, String)> {
    let out = run_hvtrace(
        &["run", "--guest", "apic-conformance", "--cpus", cpus],
        BOUND,
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    out.stdout
        .lines()
        .filter_map(|l| {
            let (verdict, rest) = l.split_once(' ')?;
            ["PASS", "SKIP", "FAIL"].contains(&verdict).then(|| {
                let name = rest.split(':').next().unwrap_or(rest);
                (name.to_string(), verdict.to_string())
            })
        })
        .collect()
}

#[test]
fn compare_lists_every_check_for_every_mode_and_marks_every_difference() {
    if !kvm_or_skip("compare_lists_every_check_for_every_mode_and_marks_every_difference") {
        return;
    }
    for cpus in ["1", "2"] {
        let expected = guest_checks(cpus);
        assert!(expected.len() >= 20, "{expected:?}");
        assert!(expected.iter().all(|(_, v)| v != "FAIL"), "{expected:?}");
        let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let html = temp_file(&format!("compare-{cpus}.html"), b"");
        let out = run_hvtrace(
            &[
                "compare",
                "--guest",
                "apic-conformance",
                "--cpus",
                cpus,
                "--runs",
                "1",
                "--format",
                "json",
                "--report",
                html.to_str().unwrap(),
            ],
            BOUND,
        );
        assert_eq!(out.status, Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON report");
        let rows = v["rows"].as_array().expect("rows");
        let checks: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["section"] == "checks").collect();
        let listed: Vec<&str> = checks.iter().filter_map(|r| r["name"].as_str()).collect();
        assert_eq!(listed, names, "{cpus} cpus: the checks listed");
        for r in &checks {
            let cells = r["cells"].as_object().expect("cells");
            for mode in ["emulated", "kvm", "split"] {
                let cell = cells.get(mode).and_then(|c| c.as_str()).unwrap_or("");
                assert!(
                    ["PASS", "FAIL", "SKIP"].contains(&cell),
                    "{cpus} cpus: {} under {mode}: {cell:?}",
                    r["name"]
                );
            }
            let own = expected
                .iter()
                .find(|(n, _)| r["name"] == n.as_str())
                .map(|(_, v)| v.as_str());
            assert_eq!(
                cells["emulated"].as_str(),
                own,
                "{cpus} cpus: {}",
                r["name"]
            );
        }
        // Marked exactly where the cells differ, in every section.
        for r in rows {
            let cells: Vec<&str> = r["cells"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|c| c.as_str())
                .filter(|c| *c != "n/a")
                .collect();
            let equal = cells.windows(2).all(|w| w[0] == w[1]);
            if r["section"] == "checks" || r["section"] == "run" && r["name"] == "ending" {
                assert_eq!(r["differs"], !equal, "{cpus} cpus: {r}");
            }
            let emulated_passes = r["cells"]["emulated"] == "PASS";
            if r["differs"] == true && r["section"] == "checks" && emulated_passes {
                let note = r["note"].as_str().unwrap_or("");
                assert!(note.contains("SDM supports emulated"), "{r}");
            }
        }
        let page = std::fs::read_to_string(&html).expect("HTML report");
        for name in &names {
            assert!(
                page.contains(&format!("<td>{name}</td>")),
                "{name} not in the HTML"
            );
        }
        render_in_chromium(&html);
    }
}

/// Loads the report in headless Chromium: its script marks the body once the tables exist.
fn render_in_chromium(html: &std::path::Path) {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        report_skip(
            "SKIPPED: compare HTML rendering: no chromium on this machine (.ci/run installs it)",
        );
        return;
    };
    let url = format!("file://{}", html.display());
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &url,
        ])
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the report's script did not run cleanly:\n{dom}"
    );
    assert!(dom.contains("<table class=\"cmp\""), "no table rendered");
}
