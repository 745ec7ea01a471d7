//! Probes stay safe while the unmodified Debian kernel (`scripts/fetch-linux-guest.sh`)
//! patches its own text: one boot by PVH with 1 vCPU, probes armed from the first
//! instruction on functions called before and after `jump_label_init`, `static_call_init`,
//! `ftrace_init` and `alternative_instructions` (alternatives, `apply_returns`, IBT sealing),
//! run until `kernel_init` (after all of them), and:
//! - the console has none of the kernel's own complaints about its text: `ftrace_bug`'s
//!   messages (`ftrace faulted`, `ftrace failed to modify`, `ftrace record flags`), a `WARN()`
//!   splat (`------------[ cut here ]------------`, `WARNING: CPU:`), `BUG:` or a panic;
//! - the entry and return probes of `kmem_cache_alloc_noprof` and the entry probe of
//!   `vprintk_emit` fired before `ftrace_init` and the entry and return probes fired again after
//!   the alternatives (return sites are re-checked after `apply_returns` rewrote them);
//! - a probe on a patcher itself (`ftrace_init`, whose entry holds hvtrace's hidden guard) fired
//!   once, and `-v` reported the lifts for `ftrace_init` and `alternative_instructions`.
//!
//! On this project's software KVM the boot takes about 3-4 minutes (the alternatives alone
//! about 100 s); a failure says how far it got.

use tests::linux::{run_traced_vmlinux_with, tail, TracedRun};

/// hvtrace's own limit on the run; the test's bound is a minute more.
const TIMEOUT_S: u64 = 420;

const PROGRAM: &str = r#"
fbt::kmem_cache_alloc_noprof:entry { printf("alloc %d\n", phase); }
fbt::kmem_cache_alloc_noprof:return { printf("allocret %d\n", phase); }
fbt::vprintk_emit:entry { printf("printk %d\n", phase); }
fbt::ftrace_init:entry { printf("ftrace_init\n"); }
fbt::early_trace_init:entry { phase = 1; printf("early_trace_init\n"); }
fbt::acpi_subsystem_init:entry { phase = 2; printf("acpi_subsystem_init\n"); }
fbt::kernel_init:entry { printf("kernel_init\n"); exit(0); }
"#;

/// What the kernel prints when it finds its text not as it expects, or worse.
const COMPLAINTS: [&str; 7] = [
    "ftrace faulted",
    "ftrace failed to modify",
    "ftrace record flags",
    "------------[ cut here ]------------",
    "WARNING: CPU:",
    "BUG:",
    "Kernel panic",
];

#[test]
fn probes_survive_the_kernels_own_text_patching() {
    let test = "linux_patching::probes_survive_the_kernels_own_text_patching";
    let Some(TracedRun { run, trace }) =
        run_traced_vmlinux_with(test, 1, TIMEOUT_S, &["-v"], PROGRAM)
    else {
        return;
    };
    let records: Vec<&str> = trace.lines().filter(|l| !l.trim().is_empty()).collect();
    let lifts: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("entered") || l.contains("returned from"))
        .filter(|l| !l.contains("__static_call_update") && !l.contains("__jump_label_update"))
        .collect();
    let how_far = format!(
        "the run took {:.1} s, exit status {:?}; the boot got this far:\n  last console lines:\n{}  last probe records:\n{}  lifts (the many short static-call and jump-label updates left out):\n{}  hvtrace's last messages:\n{}",
        run.elapsed.as_secs_f64(),
        run.status,
        tail(&run.stdout, 12),
        tail(&trace, 6),
        tail(&lifts.join("\n"), 20),
        tail(&run.stderr, 6),
    );
    println!("{how_far}");

    for complaint in COMPLAINTS {
        assert!(
            !run.stdout.contains(complaint),
            "the kernel printed '{complaint}' about its text; {how_far}"
        );
    }
    assert!(
        records.contains(&"kernel_init"),
        "the boot never reached kernel_init (after the alternatives); {how_far}"
    );
    assert_eq!(run.status, Some(0), "exit(0) was not the ending; {how_far}");

    let count = |what: &str| records.iter().filter(|l| **l == what).count();
    assert_eq!(count("ftrace_init"), 1, "fbt::ftrace_init:entry; {how_far}");
    for before in ["alloc 0", "allocret 0", "printk 0"] {
        assert!(
            count(before) > 0,
            "no '{before}' before ftrace_init; {how_far}"
        );
    }
    for after in ["alloc 2", "allocret 2"] {
        assert!(
            count(after) > 0,
            "no '{after}' after the alternatives: the probes did not come back; {how_far}"
        );
    }
    for patcher in ["ftrace_init", "alternative_instructions"] {
        assert!(
            lifts
                .iter()
                .any(|l| l.contains(&format!("returned from {patcher} after"))),
            "no lift reported for {patcher}; {how_far}"
        );
    }
    println!(
        "records: {} alloc/allocret/printk before ftrace_init, {} alloc/allocret after the alternatives",
        count("alloc 0") + count("allocret 0") + count("printk 0"),
        count("alloc 2") + count("allocret 2")
    );
}
