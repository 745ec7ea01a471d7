//! Helpers shared by the vcpu crate's KVM tests.

use kvm_ioctls::Kvm;

/// Opens KVM, or prints a loud SKIPPED line (also appended to `$HVTRACE_SKIP_LOG`, which
/// `.ci/run` checks; the same protocol as the `tests` crate's `report_skip`, which this crate
/// cannot use without a dependency cycle) and returns `None`.
pub fn kvm_or_skip(test: &str) -> Option<Kvm> {
    match Kvm::new() {
        Ok(k) => Some(k),
        Err(e) => {
            let line = format!("SKIPPED: {test}: needs /dev/kvm ({e})");
            eprintln!("{line}");
            if let Some(path) = std::env::var_os("HVTRACE_SKIP_LOG") {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open HVTRACE_SKIP_LOG");
                writeln!(f, "{line}").expect("write HVTRACE_SKIP_LOG");
            }
            None
        }
    }
}
