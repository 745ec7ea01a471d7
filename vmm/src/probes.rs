//! Function-boundary probes placed in the guest from outside: `hlt` traps on the entry and
//! return sites of guest functions, hit counts per vCPU, and the displaced instruction emulated
//! so a hit costs one exit.
//!
//! Trap strategy on this host: `int3` with `KVM_SET_GUEST_DEBUG` is not delivered by the nested
//! software KVM (an emulation failure instead, see `../shared/HOST.md`), and `hlt` exits to user
//! space only when no in-kernel irqchip is present, so probes need `--irqchip emulated`. Probes
//! are armed before the first guest instruction and disarmed (guest memory restored) when the
//! run ends. A site whose first instruction cannot be emulated is refused when arming, with the
//! instruction named (the single-step fallback is not implemented yet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tracer::probes::{catalogue, Probe};
use tracer::symbols::{ElfSymbols, SymbolSource};
use tracer::traps::{
    decode_function, emulate, Emulation, GuestMemory, GuestText, MemoryFault, Regs, TextError,
    TrapKind, TrapTable,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Why probes could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The image has no usable symbols.
    #[error("cannot read the image's symbols: {0}")]
    Symbols(#[from] tracer::symbols::SymbolError),
    /// No probe matched.
    #[error("no probe matches '{0}' (see `hvtrace list`)")]
    NoMatch(String),
    /// Only fbt probes can be armed by this mechanism.
    #[error("probe {0} is not a function-boundary (fbt) probe")]
    NotFbt(String),
    /// A function's code could not be decoded.
    #[error("cannot place probe {probe}: {why}")]
    Placement {
        /// The probe.
        probe: String,
        /// Why.
        why: String,
    },
    /// The instruction under a trap cannot be emulated.
    #[error("cannot place probe {probe}: the instruction at {site:#x} ({insn}) is not emulated and single-stepping displaced instructions is not implemented yet")]
    NotEmulated {
        /// The probe.
        probe: String,
        /// Trap address.
        site: u64,
        /// The instruction.
        insn: String,
    },
    /// Writing the trap failed.
    #[error("cannot arm the trap at {site:#x}: {why}")]
    Arm {
        /// Trap address.
        site: u64,
        /// Why.
        why: String,
    },
}

/// An armed probe and its hit counts.
pub struct ArmedProbe {
    /// Which probe.
    pub probe: Probe,
    /// Trap addresses (one for entry, one per return site for return).
    pub sites: Vec<u64>,
    hits: Vec<AtomicU64>,
}

impl ArmedProbe {
    /// Hits per vCPU.
    pub fn hits_per_cpu(&self) -> Vec<u64> {
        self.hits
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect()
    }

    /// Hits on all vCPUs.
    pub fn hits(&self) -> u64 {
        self.hits.iter().map(|h| h.load(Ordering::Relaxed)).sum()
    }
}

/// The armed probes of one VM.
pub struct ProbeSet {
    probes: Vec<ArmedProbe>,
    traps: Mutex<TrapTable>,
    /// For each trap address, the probes that fire there (indices into `probes`).
    by_site: std::collections::HashMap<u64, Vec<usize>>,
}

/// Guest text and stack accessed through guest-physical memory. The built-in guests and ELF
/// images run under the VMM's identity map, so guest-virtual = guest-physical here.
struct IdentityMemory<'a>(&'a GuestMemoryMmap);

impl GuestText for IdentityMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TextError> {
        self.0
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| TextError {
                addr,
                len: buf.len(),
            })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TextError> {
        self.0
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| TextError {
                addr,
                len: data.len(),
            })
    }
}

impl GuestMemory for IdentityMemory<'_> {
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault> {
        self.0
            .read_obj(GuestAddress(gva))
            .map_err(|_| MemoryFault { gva })
    }

    fn write_u64(&mut self, gva: u64, value: u64) -> Result<(), MemoryFault> {
        self.0
            .write_obj(value, GuestAddress(gva))
            .map_err(|_| MemoryFault { gva })
    }
}

/// Stack memory that accepts everything, to ask whether an instruction is emulated at all.
struct AnyMemory;

impl GuestMemory for AnyMemory {
    fn read_u64(&mut self, _: u64) -> Result<u64, MemoryFault> {
        Ok(0)
    }
    fn write_u64(&mut self, _: u64, _: u64) -> Result<(), MemoryFault> {
        Ok(())
    }
}

/// Called for every probe that fires at a trap, before the displaced instruction runs.
pub trait HitHook: Send + Sync {
    /// `probe` (index `index` in the set) fired on `cpu` at trap `site` with `regs`.
    fn hit(&self, cpu: usize, index: usize, probe: &Probe, site: u64, regs: &Regs);
}

impl ProbeSet {
    /// Arms every fbt probe of `image` matching one of `patterns` in `memory` (the image is
    /// already loaded there), for `cpus` vCPUs.
    pub fn arm(
        image: &[u8],
        memory: &GuestMemoryMmap,
        patterns: &[String],
        cpus: usize,
    ) -> Result<ProbeSet, ProbeError> {
        let wanted = Self::resolve(image, patterns)?;
        Self::arm_probes(image, memory, &wanted, cpus)
    }

    /// The probes of `image` that `patterns` name, each once, in catalogue order per pattern.
    pub fn resolve(image: &[u8], patterns: &[String]) -> Result<Vec<Probe>, ProbeError> {
        let symbols = ElfSymbols::parse(image)?;
        let catalogue = catalogue(image, &symbols);
        let mut wanted: Vec<Probe> = Vec::new();
        for pattern in patterns {
            let matching: Vec<&Probe> = catalogue.iter().filter(|p| p.matches(pattern)).collect();
            if matching.is_empty() {
                return Err(ProbeError::NoMatch(pattern.clone()));
            }
            for p in matching {
                if !wanted.contains(p) {
                    wanted.push(p.clone());
                }
            }
        }
        Ok(wanted)
    }

    /// Arms exactly `wanted` (fbt probes of `image`'s catalogue) in `memory`.
    pub fn arm_probes(
        image: &[u8],
        memory: &GuestMemoryMmap,
        wanted: &[Probe],
        cpus: usize,
    ) -> Result<ProbeSet, ProbeError> {
        let symbols = ElfSymbols::parse(image)?;
        let thunks = symbols.return_thunks();
        let mut probes = Vec::new();
        {
            for probe in wanted {
                if probe.provider != "fbt" {
                    return Err(ProbeError::NotFbt(probe.to_string()));
                }
                if probes.iter().any(|a: &ArmedProbe| &a.probe == probe) {
                    continue;
                }
                let placement = |why: String| ProbeError::Placement {
                    probe: probe.to_string(),
                    why,
                };
                let f = symbols
                    .by_name(&probe.function)
                    .ok_or_else(|| placement("function not found".into()))?;
                let bytes = symbols
                    .function_bytes(image, f)
                    .ok_or_else(|| placement("function bytes not in the image".into()))?;
                let decoded =
                    decode_function(f, bytes, &thunks).map_err(|e| placement(e.to_string()))?;
                let sites: Vec<u64> = if probe.name == "entry" {
                    vec![f.address]
                } else {
                    decoded.return_sites().iter().map(|r| r.address).collect()
                };
                for &site in &sites {
                    let offset = (site - f.address) as usize;
                    let insn = &bytes[offset..];
                    if let Emulation::NeedsSingleStep(_) =
                        emulate(insn, site, &Regs::default(), &mut AnyMemory)
                    {
                        return Err(ProbeError::NotEmulated {
                            probe: probe.to_string(),
                            site,
                            insn: crate::disasm::decode_one(insn, 64, site)
                                .map_or_else(|| "undecodable".into(), |(_, asm)| asm),
                        });
                    }
                }
                probes.push(ArmedProbe {
                    probe: probe.clone(),
                    sites,
                    hits: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
                });
            }
        }
        let mut traps = TrapTable::new();
        let mut by_site: std::collections::HashMap<u64, Vec<usize>> = Default::default();
        let mut text = IdentityMemory(memory);
        for (i, p) in probes.iter().enumerate() {
            for &site in &p.sites {
                if !by_site.contains_key(&site) {
                    traps
                        .arm(site, TrapKind::Hlt, &mut text)
                        .map_err(|e| ProbeError::Arm {
                            site,
                            why: e.to_string(),
                        })?;
                }
                by_site.entry(site).or_default().push(i);
            }
        }
        Ok(ProbeSet {
            probes,
            traps: Mutex::new(traps),
            by_site,
        })
    }

    /// The armed probes.
    pub fn probes(&self) -> &[ArmedProbe] {
        &self.probes
    }

    /// A `hlt` exit of `cpu` with `regs` (RIP after the `hlt`): if it is one of our traps,
    /// counts the hit and emulates the displaced instruction into `regs`, returning true; a
    /// guest's own `hlt` returns false. An error means the displaced instruction could not be
    /// completed (a stack access outside guest RAM).
    pub fn on_hlt(
        &self,
        cpu: usize,
        regs: &mut Regs,
        memory: &GuestMemoryMmap,
        hook: Option<&dyn HitHook>,
    ) -> Result<bool, String> {
        let traps = self.traps.lock().unwrap_or_else(|p| p.into_inner());
        let Some(trap) = traps.hit(TrapKind::Hlt, regs.rip) else {
            return Ok(false);
        };
        let site = trap.addr;
        if let Some(indices) = self.by_site.get(&site) {
            for &i in indices {
                let Some(p) = self.probes.get(i) else {
                    continue;
                };
                if let Some(h) = p.hits.get(cpu) {
                    h.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(hook) = hook {
                    // Registers as at the trap: RIP on the probed instruction.
                    let at_trap = Regs { rip: site, ..*regs };
                    hook.hit(cpu, i, &p.probe, site, &at_trap);
                }
            }
        }
        let mut original = [0u8; 16];
        traps
            .shadow_read(&IdentityMemory(memory), site, &mut original)
            .map_err(|e| format!("probe site {site:#x}: cannot read its original bytes: {e}"))?;
        match emulate(&original, site, regs, &mut IdentityMemory(memory)) {
            Emulation::Emulated(after) => {
                *regs = after;
                Ok(true)
            }
            // Emulation was checked when arming; what is left is a stack access outside RAM.
            Emulation::NeedsSingleStep(why) => Err(format!(
                "probe site {site:#x}: the displaced instruction could not be emulated ({why:?})"
            )),
        }
    }

    /// Restores the original bytes at every trap.
    pub fn disarm_all(&self, memory: &GuestMemoryMmap) {
        let mut traps = self.traps.lock().unwrap_or_else(|p| p.into_inner());
        for (site, e) in traps.disarm_all(&mut IdentityMemory(memory)) {
            eprintln!("hvtrace: could not restore the guest text at {site:#x}: {e}");
        }
    }

    /// (probe, total hits) for every armed probe.
    pub fn counts(&self) -> Vec<(Probe, u64)> {
        self.probes
            .iter()
            .map(|p| (p.probe.clone(), p.hits()))
            .collect()
    }
}

/// The tracer's view of KVM's general registers.
pub fn regs_from_kvm(r: &kvm_bindings::kvm_regs) -> Regs {
    Regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

/// Writes the tracer's registers back into KVM's.
pub fn regs_to_kvm(r: &Regs, k: &mut kvm_bindings::kvm_regs) {
    k.rax = r.rax;
    k.rbx = r.rbx;
    k.rcx = r.rcx;
    k.rdx = r.rdx;
    k.rsi = r.rsi;
    k.rdi = r.rdi;
    k.rsp = r.rsp;
    k.rbp = r.rbp;
    k.r8 = r.r8;
    k.r9 = r.r9;
    k.r10 = r.r10;
    k.r11 = r.r11;
    k.r12 = r.r12;
    k.r13 = r.r13;
    k.r14 = r.r14;
    k.r15 = r.r15;
    k.rip = r.rip;
    k.rflags = r.rflags;
}
