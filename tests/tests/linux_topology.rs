//! Boots the unmodified Debian Linux kernel with 2 vCPUs and checks that its topology code
//! sees what `--cpus 2` means (one package, 2 cores, 1 thread each; `vmm::cpuid`): the
//! kernel's own `CPU topo:` lines give those counts, its leaf 0xB parser accepts the leaf, and nothing
//! warns (a CPUID whose leaves disagree makes `parse_legacy` and friends `WARN`).
//!
//! The run ends with `exit(0)` when `topology_init_possible_cpus` returns (right after those
//! lines are printed; about 30 s on a software KVM, HOST.md), or at hvtrace's `--timeout`.

use tests::linux::{run_traced_vmlinux, TracedRun};

/// vCPUs of the run.
const CPUS: usize = 2;
/// hvtrace's own limit on the run; the test's bound is a minute more.
const TIMEOUT_S: u64 = 180;

const PROGRAM: &str = r#"
fbt::parse_topology_leaf:entry { leaf = arg1; }
fbt::parse_topology_leaf:return { printf("leaf %x parsed %d\n", leaf, arg1 & 0xff); }
fbt::topology_init_possible_cpus:return { printf("possible cpus set\n"); exit(0); }
"#;

/// The number the kernel printed after `label` on a `CPU topo:` line.
fn topo_count(console: &str, label: &str) -> Option<usize> {
    console
        .lines()
        .filter_map(|l| l.split("CPU topo: ").nth(1))
        .find_map(|l| l.strip_prefix(label)?.trim().parse().ok())
}

#[test]
fn linux_sees_one_package_of_two_cores_without_warnings() {
    let test = "linux_topology::linux_sees_one_package_of_two_cores_without_warnings";
    let Some(TracedRun { run, trace }) = run_traced_vmlinux(test, CPUS, TIMEOUT_S, PROGRAM) else {
        return;
    };
    let topo: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("CPU topo:") || l.contains("WARNING"))
        .collect();
    let how_far = format!(
        "the run took {:.1} s, exit status {:?}\n  CPU topo / WARNING lines: {topo:#?}\n  probe records: {trace}\n  hvtrace's messages: {}",
        run.elapsed.as_secs_f64(),
        run.status,
        run.stderr.trim_end(),
    );
    println!("{how_far}");

    assert!(
        trace.contains("possible cpus set"),
        "the boot never finished topology_init_possible_cpus; {how_far}"
    );
    assert!(
        trace.contains("leaf b parsed 1"),
        "the kernel's leaf 0xB parser did not accept the leaf; {how_far}"
    );
    assert!(
        !run.stdout.contains("WARNING:"),
        "the kernel warned; {how_far}\n  console:\n{}",
        run.stdout
    );
    let expect = [
        ("Max. logical packages:", 1),
        ("Max. threads per core:", 1),
        ("Num. cores per package:", CPUS),
        ("Num. threads per package:", CPUS),
    ];
    for (label, n) in expect {
        assert_eq!(
            topo_count(&run.stdout, label),
            Some(n),
            "{label}; {how_far}"
        );
    }
    let allowing = format!("Allowing {CPUS} present CPUs plus 0 hotplug CPUs");
    assert!(run.stdout.contains(&allowing), "no '{allowing}'; {how_far}");
    assert_eq!(run.status, Some(0), "exit(0) was not the ending; {how_far}");
}

#[test]
fn topo_lines_are_read_as_the_kernel_prints_them() {
    let console = "[    4.59] CPU topo: Max. threads per core:   1\n\
                   [    4.63] CPU topo: Num. cores per package:     2\n";
    assert_eq!(topo_count(console, "Num. cores per package:"), Some(2));
    assert_eq!(topo_count(console, "Max. threads per core:"), Some(1));
    assert_eq!(topo_count(console, "Max. logical dies:"), None);
}
