//! Interrupt controller selection: hvtrace's own emulated APIC, KVM's in-kernel irqchip, or
//! the split irqchip (local APICs in KVM, IOAPIC in user space).

use std::fmt;

use kvm_bindings::{kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP};
use kvm_ioctls::{Cap, Kvm, VmFd};

use crate::error::{kvm, VmmError};
use crate::layout::{KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR};

/// Number of IOAPIC pins routed when the IOAPIC is in user space.
pub const IOAPIC_PINS: u64 = 24;

/// Which interrupt controller the guest gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IrqChipMode {
    /// hvtrace's own local APIC and IOAPIC, in user space.
    Emulated,
    /// KVM's in-kernel local APICs, IOAPIC and PIC.
    Kvm,
    /// KVM's in-kernel local APICs with the IOAPIC in user space.
    Split,
}

impl fmt::Display for IrqChipMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IrqChipMode::Emulated => "emulated",
            IrqChipMode::Kvm => "kvm",
            IrqChipMode::Split => "split",
        })
    }
}

/// Creates the irqchip for `mode` on `vm`. Must run before any vCPU is created.
pub fn setup(kvm_handle: &Kvm, vm: &VmFd, mode: IrqChipMode) -> Result<(), VmmError> {
    // Needed by Intel VMX to run real-mode code (application processors start there).
    vm.set_tss_address(KVM_TSS_ADDR as usize)
        .map_err(kvm("KVM_SET_TSS_ADDR"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
        .map_err(kvm("KVM_SET_IDENTITY_MAP_ADDR"))?;
    match mode {
        IrqChipMode::Emulated => Err(VmmError::IrqchipUnavailable("emulated")),
        IrqChipMode::Kvm => {
            if !kvm_handle.check_extension(Cap::Irqchip) {
                return Err(VmmError::MissingCapability("KVM_CAP_IRQCHIP"));
            }
            vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))
        }
        IrqChipMode::Split => {
            let mut cap = kvm_enable_cap {
                cap: KVM_CAP_SPLIT_IRQCHIP,
                ..Default::default()
            };
            cap.args[0] = IOAPIC_PINS;
            vm.enable_cap(&cap)
                .map_err(kvm("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))
        }
    }
}
