//! The built-in guests under QEMU (`qemu-system-x86_64 -kernel`, through their multiboot
//! header and 32-bit stub), with KVM's irqchip and with QEMU's own APIC, and `hvtrace compare
//! --with-qemu`. Skipped loudly without /dev/kvm or without QEMU (`.ci/run` installs it).

use std::path::PathBuf;
use std::time::Duration;

use tests::{kvm_or_skip, report_skip, run_hvtrace};
use vmm::qemu::{find_qemu, run, QemuEnding, QemuIrqchip, QemuMachine, QemuSpec};

/// Bound on one QEMU run that should finish (SeaBIOS alone takes seconds here).
const BOUND: Duration = Duration::from_secs(90);
/// Bound on a QEMU run known to hang on this project's hosts.
const HANG_BOUND: Duration = Duration::from_secs(20);

fn qemu_or_skip(test: &str) -> Option<PathBuf> {
    if !kvm_or_skip(test) {
        return None;
    }
    match find_qemu() {
        Ok(path) => Some(path),
        Err(e) => {
            report_skip(&format!("SKIPPED: {test}: {e}"));
            None
        }
    }
}

fn boot(
    qemu: &std::path::Path,
    guest: &str,
    cpus: usize,
    irqchip: QemuIrqchip,
    bound: Duration,
) -> (QemuEnding, String) {
    let spec = QemuSpec {
        image: guest::find(guest).unwrap().image.to_vec(),
        cpus,
        mem: 256 << 20,
        cmdline: String::new(),
        irqchip,
        machine: QemuMachine::Pc,
        timeout: bound,
    };
    let r = run(qemu, &spec).expect("QEMU runs");
    eprintln!(
        "{guest} on {cpus} vCPU(s), {}: {:?} in {:?}",
        irqchip.label(),
        r.ending,
        r.wall
    );
    (r.ending, r.serial)
}

/// apic-conformance ends with its number of failures, and says so in its summary.
fn conformance_consistent(ending: &QemuEnding, serial: &str) {
    let failed = serial.lines().filter(|l| l.starts_with("FAIL ")).count();
    assert!(serial.contains("apic-conformance: "), "{serial}");
    assert_eq!(ending, &QemuEnding::GuestExit(failed as u8), "{serial}");
}

#[test]
fn built_in_guests_boot_under_qemu() {
    let Some(qemu) = qemu_or_skip("built_in_guests_boot_under_qemu") else {
        return;
    };
    for irqchip in [QemuIrqchip::Kernel, QemuIrqchip::User] {
        let (ending, serial) = boot(&qemu, "hello", 1, irqchip, BOUND);
        assert_eq!(ending, QemuEnding::GuestExit(0), "{serial}");
        assert_eq!(serial, "hello from hvtrace guest\n");
        let (ending, serial) = boot(&qemu, "apic-conformance", 1, irqchip, BOUND);
        conformance_consistent(&ending, &serial);
    }
    for cpus in [1, 2, 3, 4] {
        let (ending, serial) = boot(&qemu, "smp", cpus, QemuIrqchip::Kernel, BOUND);
        assert_eq!(ending, QemuEnding::GuestExit(0), "{serial}");
        assert!(
            serial.contains(&format!("smp: {cpus} of {cpus} cpus online")),
            "{serial}"
        );
    }
    let (ending, serial) = boot(&qemu, "apic-conformance", 2, QemuIrqchip::Kernel, BOUND);
    conformance_consistent(&ending, &serial);
    assert!(serial.contains("PASS ap_startup"), "{serial}");
    // QEMU 7.2's own APIC hangs with 2 vCPUs on this project's hosts (HOST.md): a bounded
    // hang is the expected outcome there; anywhere it works, it must work fully.
    let (ending, serial) = boot(&qemu, "smp", 2, QemuIrqchip::User, HANG_BOUND);
    match ending {
        QemuEnding::Hang => eprintln!("smp on 2 vCPUs under QEMU's own APIC: hang (known)"),
        other => {
            assert_eq!(other, QemuEnding::GuestExit(0), "{serial}");
            assert!(serial.contains("smp: 2 of 2 cpus online"), "{serial}");
        }
    }
}

#[test]
fn compare_with_qemu_adds_two_columns_with_every_check() {
    if qemu_or_skip("compare_with_qemu_adds_two_columns_with_every_check").is_none() {
        return;
    }
    let out = run_hvtrace(
        &[
            "compare",
            "--guest",
            "apic-conformance",
            "--runs",
            "1",
            "--with-qemu",
            "--format",
            "json",
        ],
        Duration::from_secs(400),
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON report");
    let labels: Vec<&str> = v["modes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mode"].as_str())
        .collect();
    assert_eq!(
        labels,
        ["emulated", "kvm", "split", "qemu-kvm", "qemu-user"]
    );
    let rows = v["rows"].as_array().unwrap();
    let checks: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["section"] == "checks").collect();
    assert!(checks.len() >= 20, "{checks:?}");
    for r in &checks {
        for label in ["qemu-kvm", "qemu-user"] {
            let cell = r["cells"][label].as_str().unwrap_or("");
            assert!(
                ["PASS", "FAIL", "SKIP"].contains(&cell),
                "{} under {label}: {cell:?}",
                r["name"]
            );
        }
    }
    for m in &v["modes"].as_array().unwrap()[3..] {
        let ending = m["runs"][0]["ending"].as_str().unwrap();
        assert!(ending.starts_with("exit "), "{}: {ending}", m["mode"]);
    }
    // Exits are not observable inside QEMU: n/a, and no difference because of it.
    for r in rows.iter().filter(|r| r["section"] == "exits") {
        assert_eq!(r["cells"]["qemu-kvm"], "n/a", "{r}");
    }
}
