//! End-to-end: bad input gets one clear error line and a non-zero status, never a panic.

use std::time::Duration;

use tests::{kvm_or_skip, run_hvtrace, temp_file};

const BOUND: Duration = Duration::from_secs(60);

fn assert_clean_error(args: &[&str], needle: &str) {
    let out = run_hvtrace(args, BOUND);
    assert_ne!(out.status, Some(0), "{args:?}: {out:?}");
    assert!(out.status.is_some(), "killed by a signal: {out:?}");
    assert!(
        out.stderr.contains(needle),
        "{args:?}: expected '{needle}' in stderr: {out:?}"
    );
    assert!(!out.stderr.contains("panicked"), "{args:?}: {out:?}");
}

#[test]
fn truncated_elf_is_rejected_clearly() {
    if !kvm_or_skip("truncated_elf_is_rejected_clearly") {
        return;
    }
    let image = guest::find("hello").unwrap().image;
    for (i, cut) in [20, 64, 100, image.len() / 2].into_iter().enumerate() {
        let path = temp_file(&format!("truncated-{i}.elf"), &image[..cut]);
        let p = path.to_str().unwrap();
        assert_clean_error(
            &["run", "--kernel", p, "--irqchip", "kvm"],
            "cannot load kernel image",
        );
    }
}

#[test]
fn non_elf_file_is_rejected_clearly() {
    if !kvm_or_skip("non_elf_file_is_rejected_clearly") {
        return;
    }
    let path = temp_file("script.sh", b"#!/bin/sh\necho not a kernel\n");
    assert_clean_error(
        &[
            "run",
            "--kernel",
            path.to_str().unwrap(),
            "--irqchip",
            "kvm",
        ],
        "not an ELF file",
    );
}

#[test]
fn missing_image_is_rejected_clearly() {
    assert_clean_error(
        &[
            "run",
            "--kernel",
            "/nonexistent/vmlinux",
            "--irqchip",
            "kvm",
        ],
        "cannot read kernel image /nonexistent/vmlinux",
    );
}

#[test]
fn bad_flags_are_rejected_clearly() {
    if !kvm_or_skip("bad_flags_are_rejected_clearly") {
        return;
    }
    assert_clean_error(
        &["run", "--guest", "hello", "--irqchip", "kvm", "--cpus", "0"],
        "--cpus 0 is out of range",
    );
    assert_clean_error(
        &[
            "run",
            "--guest",
            "hello",
            "--irqchip",
            "kvm",
            "--cpus",
            "1000",
        ],
        "--cpus 1000 is out of range",
    );
    assert_clean_error(
        &["run", "--guest", "hello", "--mem", "lots"],
        "invalid memory size 'lots'",
    );
    assert_clean_error(
        &["run", "--guest", "hello", "--irqchip", "kvm", "--mem", "1M"],
        "memory size 1048576 bytes is out of range",
    );
    assert_clean_error(
        &["run", "--guest", "nosuch", "--irqchip", "kvm"],
        "no built-in guest named 'nosuch'",
    );
    assert_clean_error(
        &["run", "--guest", "hello", "--irqchip", "pic"],
        "invalid value 'pic'",
    );
    assert_clean_error(
        &["run", "--guest", "hello", "--timeout", "0"],
        "invalid timeout",
    );
}

#[test]
fn guests_lists_every_built_in_guest() {
    let out = run_hvtrace(&["guests"], BOUND);
    assert_eq!(out.status, Some(0), "{out:?}");
    for name in ["hello", "smp", "fault", "spin"] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(name)),
            "{name} missing: {out:?}"
        );
    }
}

#[test]
fn no_permission_on_dev_kvm_is_one_clear_line() {
    // Needs a user without access to /dev/kvm: run as `nobody` through setpriv when we are root.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !root || !setpriv.exists() || !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("not applicable: needs root, /usr/bin/setpriv and /dev/kvm to drop access");
        return;
    }
    let bin = tests::hvtrace_path();
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["run", "--guest", "hello"])
        .output()
        .expect("run setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied") && stderr.contains(&bin.display().to_string()) {
        eprintln!("not applicable: `nobody` cannot execute {}", bin.display());
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open /dev/kvm: Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("add yourself to the 'kvm' group"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        stderr.matches("Permission denied").count(),
        1,
        "the cause is said once: {stderr}"
    );
}
