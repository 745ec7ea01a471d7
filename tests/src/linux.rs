//! The Debian Linux guest that `scripts/fetch-linux-guest.sh` fetches: where it is, and a loud
//! skip where it has not been fetched.

use std::path::PathBuf;

use crate::report_skip;

/// The directory the fetch script fills: `$HVTRACE_LINUX_DIR`, else `target/linux-guest/` of
/// the workspace.
pub fn linux_guest_dir() -> PathBuf {
    match std::env::var_os("HVTRACE_LINUX_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("linux-guest"),
    }
}

/// The fetched file `name` (`vmlinux`, `bzImage`, `initramfs.cpio`); where it is missing,
/// prints a loud SKIPPED line naming `test` and how to fetch it, and returns `None`.
pub fn linux_guest_or_skip(test: &str, name: &str) -> Option<PathBuf> {
    let path = linux_guest_dir().join(name);
    if path.is_file() {
        return Some(path);
    }
    report_skip(&format!(
        "SKIPPED: {test}: needs the Debian Linux guest ({} is missing: run scripts/fetch-linux-guest.sh)",
        path.display()
    ));
    None
}

/// For a test that boots the fetched kernel: its `vmlinux`, or `None` after a loud skip where
/// `/dev/kvm` or the kernel is missing.
pub fn vmlinux_on_kvm_or_skip(test: &str) -> Option<PathBuf> {
    if !crate::kvm_or_skip(test) {
        return None;
    }
    linux_guest_or_skip(test, "vmlinux")
}

/// A traced run of the fetched vmlinux: what it printed and what the D program recorded.
pub struct TracedRun {
    /// hvtrace's output (the guest's serial console on stdout).
    pub run: crate::RunOutput,
    /// The D program's records (`-o` file).
    pub trace: String,
}

/// Boots the fetched vmlinux with `cpus` vCPUs and 256 MiB under hvtrace's `--timeout
/// timeout_s`, traced by `program`; `None` (after a loud SKIPPED line naming `test`) where
/// `/dev/kvm` or the guest is missing. The test's own bound is a minute past hvtrace's.
pub fn run_traced_vmlinux(
    test: &str,
    cpus: usize,
    timeout_s: u64,
    program: &str,
) -> Option<TracedRun> {
    run_traced_vmlinux_with(test, cpus, timeout_s, &[], program)
}

/// [`run_traced_vmlinux`] with `extra` hvtrace flags (such as `-v`) before the program.
pub fn run_traced_vmlinux_with(
    test: &str,
    cpus: usize,
    timeout_s: u64,
    extra: &[&str],
    program: &str,
) -> Option<TracedRun> {
    let vmlinux = vmlinux_on_kvm_or_skip(test)?;
    let trace_file = crate::temp_file(&format!("{}-trace.txt", test.replace(':', "_")), b"");
    let (cpus, timeout) = (cpus.to_string(), timeout_s.to_string());
    let mut args = vec![
        "run",
        "--kernel",
        vmlinux.to_str().expect("UTF-8 path"),
        "--cpus",
        &cpus,
        "--mem",
        "256M",
        "--timeout",
        &timeout,
    ];
    args.extend_from_slice(extra);
    args.extend([
        "-q",
        "-o",
        trace_file.to_str().expect("UTF-8 path"),
        "-n",
        program,
    ]);
    let run = crate::run_hvtrace(&args, std::time::Duration::from_secs(timeout_s + 60));
    let trace = std::fs::read_to_string(&trace_file).unwrap_or_default();
    Some(TracedRun { run, trace })
}

/// The last `n` lines of `text`, indented (for a failing boot test's "how far it got").
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}\n"))
        .collect()
}
