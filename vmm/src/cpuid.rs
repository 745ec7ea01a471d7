//! The CPUID each vCPU sees: KVM's supported set, with the topology fields made true.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// Leaf 1 ECX bit 31: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX bit 28: more than one logical processor per package.
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Extended topology enumeration leaves (x2APIC topology; V2 on newer Intel parts).
const TOPOLOGY_LEAVES: [u32; 2] = [0xb, 0x1f];
/// Deterministic cache parameters (Intel; reserved, all zero, on AMD).
const CACHE_LEAF: u32 = 4;
/// AMD's cache topology leaf, laid out like leaf 4.
const AMD_CACHE_LEAF: u32 = 0x8000_001d;
/// AMD: processor capacity (ECX: core count and APIC ID size).
const AMD_CAPACITY_LEAF: u32 = 0x8000_0008;
/// AMD: extended APIC ID, core and node identifiers.
const AMD_IDS_LEAF: u32 = 0x8000_001e;
/// Leaf 0xB/0x1F level types (ECX[15:8]).
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// The CPUID table could not be rebuilt.
#[derive(Debug, thiserror::Error)]
#[error("the patched CPUID table ({entries} entries) does not fit KVM's limit: {source}")]
pub struct CpuidError {
    entries: usize,
    source: vmm_sys_util::fam::Error,
}

/// The topology hvtrace presents: one package of `cpus` cores, one thread each, APIC ID =
/// vCPU index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Topology {
    cpus: u32,
    /// APIC ID bits that number the cores of the package: ceil(log2(cpus)).
    core_shift: u32,
}

impl Topology {
    fn new(cpus: u32) -> Self {
        let cpus = cpus.max(1);
        Self {
            cpus,
            core_shift: 32 - (cpus - 1).leading_zeros(),
        }
    }

    /// Addressable APIC IDs in the package (a power of two).
    fn addressable(self) -> u32 {
        1 << self.core_shift
    }

    /// Leaf 4 / 0x8000_001D EAX with the sharing fields true: EAX[25:14] logical processors
    /// sharing the cache - 1 (a core's own for L1/L2, the package's for L3), and for leaf 4
    /// EAX[31:26] addressable core IDs - 1. An empty subleaf (type 0) stays as it is.
    fn cache_eax(self, eax: u32, with_cores: bool) -> u32 {
        if eax & 0x1f == 0 {
            return eax;
        }
        let level = (eax >> 5) & 0x7;
        let sharing = if level >= 3 {
            self.addressable() - 1
        } else {
            0
        };
        let mut eax = (eax & !(0xfff << 14)) | ((sharing.min(0xfff)) << 14);
        if with_cores {
            eax = (eax & 0x03ff_ffff) | ((self.addressable() - 1).min(63) << 26);
        }
        eax
    }

    /// Leaf 0xB/0x1F subleaves 0 (SMT: shift 0, 1 thread), 1 (core: shift `core_shift`,
    /// `cpus` logical processors) and 2 (invalid, ends the enumeration), for `apic_id`.
    fn topology_subleaves(self, function: u32, apic_id: u32) -> [kvm_cpuid_entry2; 3] {
        let entry = |index: u32, eax: u32, ebx: u32, level_type: u32| kvm_cpuid_entry2 {
            function,
            index,
            flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            eax,
            ebx,
            ecx: (level_type << 8) | index,
            edx: apic_id,
            ..Default::default()
        };
        [
            entry(0, 0, 1, LEVEL_SMT),
            entry(1, self.core_shift, self.cpus, LEVEL_CORE),
            entry(2, 0, 0, 0),
        ]
    }
}

/// Whether leaf 0 names an AMD (or Hygon, its licensee) processor.
fn is_amd_like(entries: &[kvm_cpuid_entry2]) -> bool {
    entries.iter().any(|e| {
        e.function == 0
            && matches!(
                (e.ebx, e.edx, e.ecx),
                // "AuthenticAMD", "HygonGenuine" as EBX, EDX, ECX.
                (0x6874_7541, 0x6974_6e65, 0x444d_4163) | (0x6f67_7948, 0x6e65_476e, 0x656e_6975)
            )
    })
}

/// Patches `cpuid` (KVM's supported set) for vCPU `apic_id` of `cpu_count`: one package of
/// `cpu_count` cores with one thread each, told the same way by every leaf that describes it
/// (leaf 1, the cache leaves 4 and 0x8000_001D, the extended topology leaves 0xB and 0x1F
/// where the host has them, and on AMD 0x8000_0008 and 0x8000_001E), as the host's own
/// values would describe the host instead.
pub fn patch_for_vcpu(cpuid: &mut CpuId, apic_id: u32, cpu_count: u32) -> Result<(), CpuidError> {
    let topo = Topology::new(cpu_count);
    let amd = is_amd_like(cpuid.as_slice());
    let mut entries: Vec<kvm_cpuid_entry2> = Vec::with_capacity(cpuid.as_slice().len() + 4);
    for entry in cpuid.as_slice() {
        let mut entry = *entry;
        match entry.function {
            1 => {
                entry.ebx = (entry.ebx & 0x0000_ffff)
                    | (topo.addressable().min(255) << 16)
                    | ((apic_id & 0xff) << 24);
                entry.ecx |= LEAF1_ECX_HYPERVISOR;
                if topo.cpus > 1 {
                    entry.edx |= LEAF1_EDX_HTT;
                } else {
                    entry.edx &= !LEAF1_EDX_HTT;
                }
            }
            CACHE_LEAF => entry.eax = topo.cache_eax(entry.eax, true),
            AMD_CACHE_LEAF => entry.eax = topo.cache_eax(entry.eax, false),
            AMD_CAPACITY_LEAF if amd => {
                // ECX[7:0] cores - 1, ECX[15:12] APIC ID bits for them; the rest kept.
                entry.ecx = (entry.ecx & !0xf0ff)
                    | (topo.cpus - 1).min(255)
                    | (topo.core_shift.min(15) << 12);
            }
            AMD_IDS_LEAF if amd => {
                // EAX extended APIC ID; EBX[7:0] core ID, [15:8] threads per core - 1;
                // ECX node 0 of 1.
                entry.eax = apic_id;
                entry.ebx = (entry.ebx & !0xffff) | (apic_id & 0xff);
                entry.ecx &= !0x7ff;
            }
            f if TOPOLOGY_LEAVES.contains(&f) => {
                // Replaced below by subleaves that describe this topology.
                if entries.iter().any(|e| e.function == f) {
                    continue;
                }
                entries.extend(topo.topology_subleaves(f, apic_id));
                continue;
            }
            _ => {}
        }
        entries.push(entry);
    }
    *cpuid = CpuId::from_entries(&entries).map_err(|source| CpuidError {
        entries: entries.len(),
        source,
    })?;
    Ok(())
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

    fn leaf(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags: u32::from(index > 0 || [4, 0xb, 0x1f, 0x8000_001d].contains(&function)),
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..Default::default()
        }
    }

    /// The supported set of this project's AMD EPYC build host (KVM_GET_SUPPORTED_CPUID,
    /// the topology leaves): 2 threads of a core, APIC ID size 7, leaf 0xB empty.
    fn amd_host() -> Vec<kvm_cpuid_entry2> {
        vec![
            leaf(0, 0, [0x1c, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
            leaf(1, 0, [0x00a1_0f11, 0x0102_0800, 0x8120_2000, 0x078b_fbff]),
            leaf(4, 0, [0; 4]),
            leaf(0xb, 0, [0, 0, 0, 1]),
            leaf(0x8000_0008, 0, [0x3030, 0x5002_0005, 0x7001, 0]),
            leaf(0x8000_001d, 0, [0x121, 0x01c0_003f, 0x3f, 0]),
            leaf(0x8000_001d, 3, [0x4163, 0x03c0_003f, 0x7fff, 1]),
            leaf(0x8000_001e, 0, [0; 4]),
        ]
    }

    /// An Intel host with 16 cores of 2 threads: leaf 4 as such a part reports it (L1d
    /// shared by 2 threads, L3 by 32; 16 core IDs), leaf 0xB/0x1F with SMT and core levels.
    fn intel_host() -> Vec<kvm_cpuid_entry2> {
        vec![
            leaf(0, 0, [0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]),
            leaf(1, 0, [0x0005_0657, 0x0020_0800, 0x7ffe_fbff, 0xbfeb_fbff]),
            leaf(4, 0, [0x3c00_4121, 0x01c0_003f, 0x3f, 0]),
            leaf(4, 3, [0x3c07_c163, 0x03c0_003f, 0x6fff, 4]),
            leaf(0xb, 0, [1, 2, 0x100, 0]),
            leaf(0xb, 1, [5, 32, 0x201, 0]),
            leaf(0x1f, 0, [1, 2, 0x100, 0]),
            leaf(0x1f, 1, [5, 32, 0x201, 0]),
            leaf(0x8000_0008, 0, [0x3027, 0, 0, 0]),
        ]
    }

    fn patched(host: Vec<kvm_cpuid_entry2>, apic_id: u32, cpus: u32) -> Vec<kvm_cpuid_entry2> {
        let mut cpuid = CpuId::from_entries(&host).unwrap();
        patch_for_vcpu(&mut cpuid, apic_id, cpus).unwrap();
        cpuid.as_slice().to_vec()
    }

    fn find(entries: &[kvm_cpuid_entry2], function: u32, index: u32) -> kvm_cpuid_entry2 {
        *entries
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap_or_else(|| panic!("no CPUID leaf {function:#x}.{index}"))
    }

    /// SDM: ceil(log2(n)), the APIC ID bits that n IDs need.
    fn bits_for(n: u32) -> u32 {
        (0..32).find(|b| 1u64 << b >= u64::from(n)).unwrap()
    }

    /// Walks leaf `function` (0xB or 0x1F) as the SDM describes (subleaves until level type 0)
    /// and returns each level's (type, shift to the next level, logical processors, x2APIC ID).
    fn walk_levels(entries: &[kvm_cpuid_entry2], function: u32) -> Vec<(u32, u32, u32, u32)> {
        (0..)
            .map_while(|i| {
                entries
                    .iter()
                    .find(|e| e.function == function && e.index == i)
            })
            .take_while(|e| (e.ecx >> 8) & 0xff != 0)
            .map(|e| ((e.ecx >> 8) & 0xff, e.eax & 0x1f, e.ebx & 0xffff, e.edx))
            .collect()
    }

    #[test]
    fn every_leaf_tells_one_package_of_n_single_thread_cores() {
        for (host, name) in [(amd_host(), "AMD"), (intel_host(), "Intel")] {
            for cpus in [1u32, 2, 3, 4, 8, 64] {
                for apic_id in [0, cpus - 1] {
                    let e = patched(host.clone(), apic_id, cpus);
                    let what = format!("{name} host, --cpus {cpus}, APIC ID {apic_id}");
                    let l1 = find(&e, 1, 0);
                    // Leaf 1: the APIC ID, and addressable logical processor IDs that cover
                    // every vCPU (Linux's parse_legacy warns when they are fewer than the
                    // core IDs of leaf 4).
                    assert_eq!(l1.ebx >> 24, apic_id, "{what}");
                    let nproc = (l1.ebx >> 16) & 0xff;
                    assert!(nproc >= cpus && nproc.is_power_of_two(), "{what}: {nproc}");
                    assert_eq!(l1.edx & LEAF1_EDX_HTT != 0, cpus > 1, "{what}");
                    // Leaf 4: core IDs per package cover the vCPUs and fit leaf 1's count;
                    // L1 is one core's own, L3 the package's.
                    for c in e.iter().filter(|c| c.function == 4 && c.eax & 0x1f != 0) {
                        let cores = (c.eax >> 26) + 1;
                        assert!(
                            cores >= cpus && bits_for(cores) <= bits_for(nproc),
                            "{what}"
                        );
                        let sharing = ((c.eax >> 14) & 0xfff) + 1;
                        let level = (c.eax >> 5) & 7;
                        assert_eq!(sharing, if level >= 3 { nproc } else { 1 }, "{what}");
                    }
                    // Leaf 0xB (and 0x1F where the host has it): SMT level of 1 thread,
                    // core level of `cpus` processors with enough APIC ID bits, then the end.
                    for f in [0xb, 0x1f] {
                        if !host.iter().any(|h| h.function == f) {
                            assert!(e.iter().all(|x| x.function != f), "{what}");
                            continue;
                        }
                        let levels = walk_levels(&e, f);
                        assert_eq!(
                            levels,
                            vec![
                                (LEVEL_SMT, 0, 1, apic_id),
                                (LEVEL_CORE, bits_for(cpus), cpus, apic_id)
                            ],
                            "{what}: leaf {f:#x}"
                        );
                        assert_eq!(find(&e, f, 2).edx, apic_id, "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn amd_leaves_give_core_count_apic_id_size_and_extended_apic_id() {
        let e = patched(amd_host(), 5, 6);
        let cap = find(&e, 0x8000_0008, 0);
        assert_eq!(cap.ecx & 0xff, 5, "cores - 1");
        assert_eq!((cap.ecx >> 12) & 0xf, 3, "APIC ID bits for 6 cores");
        assert_eq!(cap.eax, 0x3030, "address sizes kept");
        let ids = find(&e, 0x8000_001e, 0);
        assert_eq!(ids.eax, 5, "extended APIC ID");
        assert_eq!(ids.ebx & 0xff, 5, "core ID");
        assert_eq!((ids.ebx >> 8) & 0xff, 0, "threads per core - 1");
        assert_eq!(ids.ecx & 0x7ff, 0, "node 0 of 1");
        let l1d = find(&e, 0x8000_001d, 0);
        assert_eq!((l1d.eax >> 14) & 0xfff, 0, "L1d is one core's");
        assert_eq!(l1d.eax & 0x3fff, 0x121, "cache type and level kept");
        let l3 = find(&e, 0x8000_001d, 3);
        assert_eq!(
            (l3.eax >> 14) & 0xfff,
            7,
            "L3 shared by the 8 addressable IDs"
        );
        assert!(find(&e, 1, 0).ecx & LEAF1_ECX_HYPERVISOR != 0);
    }

    #[test]
    fn intel_capacity_leaf_is_left_alone() {
        let e = patched(intel_host(), 1, 2);
        assert_eq!(find(&e, 0x8000_0008, 0).ecx, 0);
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
