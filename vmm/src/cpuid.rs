//! The CPUID each vCPU sees: KVM's supported set, with the topology fields made true.

use kvm_bindings::CpuId;

/// Leaf 1 ECX bit 31: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX bit 28: more than one logical processor per package.
const LEAF1_EDX_HTT: u32 = 1 << 28;

/// Patches `cpuid` (KVM's supported set) for vCPU `apic_id` of `cpu_count`.
pub fn patch_for_vcpu(cpuid: &mut CpuId, apic_id: u32, cpu_count: u32) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => {
                entry.ebx = (entry.ebx & 0x0000_ffff)
                    | ((cpu_count.min(255)) << 16)
                    | ((apic_id & 0xff) << 24);
                entry.ecx |= LEAF1_ECX_HYPERVISOR;
                if cpu_count > 1 {
                    entry.edx |= LEAF1_EDX_HTT;
                }
            }
            0xb | 0x1f => entry.edx = apic_id,
            _ => {}
        }
    }
}

/// Leaf 1 ECX bit 21: x2APIC.
const LEAF1_ECX_X2APIC: u32 = 1 << 21;
/// Leaf 1 ECX bit 24: TSC-deadline timer.
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// KVM paravirtual feature leaf.
const KVM_FEATURES_LEAF: u32 = 0x4000_0001;
/// KVM PV features that need KVM's own local APIC: PV EOI (6), PV IPI (11), poll control (12),
/// async-PF delivered as an interrupt (14).
const KVM_PV_APIC_FEATURES: u32 = (1 << 6) | (1 << 11) | (1 << 12) | (1 << 14);

/// Makes CPUID tell the truth about hvtrace's emulated APIC: x2APIC and TSC-deadline are
/// implemented; KVM's paravirtual APIC features are not available without KVM's APIC.
pub fn patch_for_emulated_apic(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => entry.ecx |= LEAF1_ECX_X2APIC | LEAF1_ECX_TSC_DEADLINE,
            KVM_FEATURES_LEAF => entry.eax &= !KVM_PV_APIC_FEATURES,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn apic_id_and_count_land_in_leaf_1_and_0xb() {
        let mut cpuid = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xffff_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                ..Default::default()
            },
        ])
        .unwrap();
        patch_for_vcpu(&mut cpuid, 3, 4);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx, 0x0304_0800);
        assert!(e[0].ecx & LEAF1_ECX_HYPERVISOR != 0);
        assert!(e[0].edx & LEAF1_EDX_HTT != 0);
        assert_eq!(e[1].edx, 3);
    }

    #[test]
    fn emulated_apic_features_are_advertised_and_pv_apic_hidden() {
        let mut cpuid = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: 1,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: KVM_FEATURES_LEAF,
                eax: 0xffff_ffff,
                ..Default::default()
            },
        ])
        .unwrap();
        patch_for_emulated_apic(&mut cpuid);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ecx & LEAF1_ECX_X2APIC, LEAF1_ECX_X2APIC);
        assert_eq!(e[0].ecx & LEAF1_ECX_TSC_DEADLINE, LEAF1_ECX_TSC_DEADLINE);
        assert_eq!(e[1].eax & KVM_PV_APIC_FEATURES, 0);
        assert_eq!(e[1].eax | KVM_PV_APIC_FEATURES, 0xffff_ffff);
    }
}
