//! Function-boundary probes placed in the guest from outside: `hlt` traps on the entry and
//! return sites of guest functions, hit counts per vCPU, and the displaced instruction emulated
//! so a hit costs one exit.
//!
//! Trap strategy on this host: `int3` with `KVM_SET_GUEST_DEBUG` is not delivered by the nested
//! software KVM (an emulation failure instead, see `../shared/HOST.md`), and `hlt` exits to user
//! space only when no in-kernel irqchip is present, so probes need `--irqchip emulated`. Probes
//! are armed before the first guest instruction and disarmed (guest memory restored) when the
//! run ends. When the displaced instruction is not one the tracer emulates, the hit stops every
//! other vCPU, puts the original byte back, single-steps that one instruction on the CPU, re-arms
//! the trap and resumes the others (two exits instead of one).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tracer::probes::Probe;
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

/// What a `hlt` exit turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// Not one of our traps: the guest's own `hlt`.
    NotOurs,
    /// A probe hit whose displaced instruction was emulated into the registers.
    Emulated,
    /// A probe hit whose displaced instruction must be single-stepped: the other vCPUs are
    /// stopped, the original byte is back and RIP points at it; call
    /// [`ProbeSet::step_done`] after the step.
    SingleStep,
    /// Another vCPU is single-stepping: RIP was set back to the trap, so this vCPU takes the
    /// hit again after that step (nothing was counted yet).
    Retry,
}

/// How long a probe hit waits for the other vCPUs to stop before a single step.
const STEP_STOP_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// The armed probes of one VM.
pub struct ProbeSet {
    probes: Vec<ArmedProbe>,
    traps: Mutex<TrapTable>,
    /// For each trap address, the probes that fire there (indices into `probes`).
    by_site: std::collections::HashMap<u64, Vec<usize>>,
    /// Every vCPU, for stopping the others around a single step (set once they exist).
    world: std::sync::OnceLock<vcpu::World>,
    /// Per vCPU: the trap being single-stepped and the stop that covers it.
    stepping: Mutex<Vec<Option<(u64, vcpu::OwnedStopGuard)>>>,
    /// Which vCPU (index + 1) holds the single-step token; 0 when free. One step at a time:
    /// two vCPUs stopping each other for their own steps would wait for each other for ever.
    step_owner: AtomicUsize,
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

/// Guest memory for a dry run of the emulator: reads are real, writes are dropped.
struct DryRun<'a>(&'a GuestMemoryMmap);

impl GuestMemory for DryRun<'_> {
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault> {
        IdentityMemory(self.0).read_u64(gva)
    }
    fn write_u64(&mut self, gva: u64, _: u64) -> Result<(), MemoryFault> {
        let mut probe = [0u8; 8];
        self.0
            .read_slice(&mut probe, GuestAddress(gva))
            .map_err(|_| MemoryFault { gva })
    }
}

/// Called for every probe that fires at a trap, before the displaced instruction runs.
pub trait HitHook: Send + Sync {
    /// `probe` (index `index` in the set) fired on `cpu` at trap `site` with `regs`.
    fn hit(&self, cpu: usize, index: usize, probe: &Probe, site: u64, regs: &Regs);
}

impl ProbeSet {
    /// The probes of `catalogue` that `patterns` name, each once, in catalogue order per
    /// pattern.
    pub fn resolve(catalogue: &[Probe], patterns: &[String]) -> Result<Vec<Probe>, ProbeError> {
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

    /// Arms exactly `wanted` (fbt probes of `image`, whose functions are `symbols`) in
    /// `memory`.
    pub fn arm_probes(
        image: &[u8],
        symbols: &ElfSymbols,
        memory: &GuestMemoryMmap,
        wanted: &[Probe],
        cpus: usize,
    ) -> Result<ProbeSet, ProbeError> {
        let thunks = symbols.return_thunks();
        let mut probes = Vec::new();
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
            probes.push(ArmedProbe {
                probe: probe.clone(),
                sites,
                hits: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            });
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
            world: std::sync::OnceLock::new(),
            stepping: Mutex::new((0..cpus).map(|_| None).collect()),
            step_owner: AtomicUsize::new(0),
        })
    }

    /// Connects the vCPUs (needed for single-stepped hits).
    pub fn set_world(&self, world: vcpu::World) {
        let _ = self.world.set(world);
    }

    /// The armed probes.
    pub fn probes(&self) -> &[ArmedProbe] {
        &self.probes
    }

    /// A `hlt` exit of `cpu` with `regs` (RIP after the `hlt`): if it is one of our traps,
    /// counts the hit, runs `hook`, and either emulates the displaced instruction into `regs`
    /// or prepares a single step of it (see [`Hit`]).
    pub fn on_hlt(
        &self,
        cpu: usize,
        regs: &mut Regs,
        memory: &GuestMemoryMmap,
        hook: Option<&dyn HitHook>,
    ) -> Result<Hit, String> {
        let traps = self.traps.lock().unwrap_or_else(|p| p.into_inner());
        let Some(trap) = traps.hit(TrapKind::Hlt, regs.rip) else {
            return Ok(Hit::NotOurs);
        };
        let site = trap.addr;
        let mut original = [0u8; 16];
        traps
            .shadow_read(&IdentityMemory(memory), site, &mut original)
            .map_err(|e| format!("probe site {site:#x}: cannot read its original bytes: {e}"))?;
        // Decide first (without side effects) whether this hit needs a single step, and take
        // the step token before anything is counted, so a hit that must wait is retried whole.
        let needs_step = matches!(
            emulate(&original, site, regs, &mut DryRun(memory)),
            Emulation::NeedsSingleStep(_)
        );
        if needs_step
            && self
                .step_owner
                .compare_exchange(0, cpu + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            regs.rip = site;
            return Ok(Hit::Retry);
        }
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
        if !needs_step {
            if let Emulation::Emulated(after) =
                emulate(&original, site, regs, &mut IdentityMemory(memory))
            {
                *regs = after;
                return Ok(Hit::Emulated);
            }
            return Err(format!(
                "probe site {site:#x}: the displaced instruction faulted when emulated for real"
            ));
        }
        drop(traps);
        match self.prepare_step(cpu, site, original[0], memory) {
            Ok(()) => {
                regs.rip = site;
                Ok(Hit::SingleStep)
            }
            Err(e) => {
                self.step_owner.store(0, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// With the step token held by `cpu`: stops the other vCPUs and puts the original byte
    /// back at `site`, remembering the stop until [`ProbeSet::step_done`].
    fn prepare_step(
        &self,
        cpu: usize,
        site: u64,
        original: u8,
        memory: &GuestMemoryMmap,
    ) -> Result<(), String> {
        let world = self
            .world
            .get()
            .ok_or("probe single step before the vCPUs exist")?;
        let guard = world.stop_others(STEP_STOP_BOUND).map_err(|e| {
            format!("probe site {site:#x}: cannot stop the others to single-step: {e}")
        })?;
        IdentityMemory(memory)
            .write(site, &[original])
            .map_err(|e| format!("probe site {site:#x}: cannot restore the original byte: {e}"))?;
        let mut stepping = self.stepping.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = stepping.get_mut(cpu) {
            *slot = Some((site, guard));
        }
        Ok(())
    }

    /// The single step on `cpu` finished: re-arms its trap and resumes the other vCPUs.
    pub fn step_done(&self, cpu: usize, memory: &GuestMemoryMmap) -> Result<(), String> {
        let pending = self
            .stepping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(cpu)
            .and_then(Option::take);
        let Some((site, guard)) = pending else {
            return Err(format!(
                "vcpu {cpu}: a single step finished that no probe asked for"
            ));
        };
        let result = IdentityMemory(memory)
            .write(site, TrapKind::Hlt.patch_bytes())
            .map_err(|e| format!("probe site {site:#x}: cannot re-arm after the single step: {e}"));
        drop(guard);
        self.step_owner.store(0, Ordering::SeqCst);
        result
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
