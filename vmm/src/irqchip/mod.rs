//! Interrupt controller selection: hvtrace's own emulated APIC, KVM's in-kernel irqchip, or
//! the split irqchip (local APICs in KVM, IOAPIC in user space).

pub mod clock;
pub mod emulated;
pub mod split;
pub mod timer;

use std::fmt;

use kvm_bindings::{
    kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER,
    KVM_MSR_EXIT_REASON_INVAL, KVM_MSR_EXIT_REASON_UNKNOWN,
};
use kvm_ioctls::{Cap, Kvm, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};

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
        IrqChipMode::Emulated => route_apic_msrs_to_user_space(kvm_handle, vm),
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

/// `IA32_APIC_BASE`.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// `IA32_TSC_DEADLINE`.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// First x2APIC MSR.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Number of x2APIC MSRs.
pub const MSR_X2APIC_COUNT: u32 = 0x100;

/// With no in-kernel irqchip, makes every APIC MSR exit to user space: x2APIC MSRs,
/// `IA32_APIC_BASE` and `IA32_TSC_DEADLINE` are denied by an MSR filter (KVM would otherwise
/// swallow the last two), and denied or unknown MSRs exit instead of raising #GP in KVM.
fn route_apic_msrs_to_user_space(kvm_handle: &Kvm, vm: &VmFd) -> Result<(), VmmError> {
    if !kvm_handle.check_extension(Cap::X86UserSpaceMsr) {
        return Err(VmmError::MissingCapability(
            "KVM_CAP_X86_USER_SPACE_MSR (needed by --irqchip emulated)",
        ));
    }
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        ..Default::default()
    };
    cap.args[0] = u64::from(
        KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_FILTER,
    );
    vm.enable_cap(&cap)
        .map_err(kvm("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)"))?;
    let deny_one = [0u8; 1];
    let deny_x2apic = [0u8; (MSR_X2APIC_COUNT / 8) as usize];
    let both = MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE;
    let ranges = [
        MsrFilterRange {
            flags: both,
            base: MSR_APIC_BASE,
            msr_count: 1,
            bitmap: &deny_one,
        },
        MsrFilterRange {
            flags: both,
            base: MSR_TSC_DEADLINE,
            msr_count: 1,
            bitmap: &deny_one,
        },
        MsrFilterRange {
            flags: both,
            base: MSR_X2APIC_FIRST,
            msr_count: MSR_X2APIC_COUNT,
            bitmap: &deny_x2apic,
        },
    ];
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &ranges)
        .map_err(kvm("KVM_X86_SET_MSR_FILTER"))
}
