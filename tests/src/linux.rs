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
