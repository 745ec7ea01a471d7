//! Differences between the APICs that are understood: which side causes them (KVM's design, or
//! this host's software KVM), so the report labels them instead of hiding them.

/// Who causes a known difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// KVM's in-kernel APIC behaves so on any host.
    Kvm,
    /// The nested software KVM of this project's machines (`kvm_pvm`, see HOST.md).
    Host,
    /// The firmware QEMU boots through before the guest (SeaBIOS), which leaves state behind.
    Firmware,
}

impl Cause {
    /// The label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Kvm => "KVM",
            Cause::Host => "host (kvm_pvm)",
            Cause::Firmware => "QEMU's firmware",
        }
    }
}

/// Whether this machine's KVM is the nested software one (`/sys/module/kvm_pvm`).
pub fn software_kvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// The explanation of check `name` failing or being skipped under `mode` (`kvm` or `split`,
/// or the QEMU columns: `qemu-kvm` has KVM's APIC, `qemu-user` QEMU's own, whose differences
/// are not catalogued), when known. Host-caused ones are given only where that host is present.
pub fn explain(name: &str, mode: &str, software_kvm: bool) -> Option<(Cause, &'static str)> {
    if mode.starts_with("qemu") {
        return match (name, mode) {
            ("reset_state", _) => Some((
                Cause::Firmware,
                "QEMU enters the guest after SeaBIOS, which already enabled the BSP's APIC (SVR 0x1ff) and set LINT0 to ExtINT",
            )),
            (_, "qemu-kvm") => explain(name, "kvm", software_kvm),
            _ => None,
        };
    }
    let known = match (name, mode) {
        ("reset_state", _) => (
            Cause::Kvm,
            "KVM resets the BSP's LVT LINT0 to ExtINT (0x700), as PC firmware would; the SDM's reset value is masked (0x10000)",
        ),
        ("ppr_rule" | "nested_interrupts" | "ioapic_level", _) => (
            Cause::Host,
            "this host's KVM never sets ISR bits: each interrupt is EOI'd in effect at delivery (HOST.md)",
        ),
        ("lowest_priority", _) => (
            Cause::Kvm,
            "KVM delivers lowest-priority interrupts by vector hashing, not to the lowest processor priority",
        ),
        ("esr_illegal_vector", _) => (
            Cause::Kvm,
            "KVM does not latch ESR bit 5 (send illegal vector) for a self IPI",
        ),
        ("directed_eoi", "split") => (
            Cause::Kvm,
            "KVM forwards EOIs to the user-space IOAPIC even with EOI-broadcast suppression set",
        ),
        ("directed_eoi", _) => (
            Cause::Kvm,
            "KVM's APIC with its in-kernel IOAPIC does not offer EOI-broadcast suppression (version bit 24)",
        ),
        _ => return None,
    };
    (known.0 == Cause::Kvm || software_kvm).then_some(known)
}
