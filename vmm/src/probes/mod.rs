//! Function-boundary probes placed in the guest from outside: traps on the entry and return
//! sites of guest functions, per session, with hit counts per vCPU, and the displaced
//! instruction emulated so a hit costs one exit.
//!
//! The trap kind follows the VM's strategy ([`crate::host_traps`]): `hlt` traps under the
//! user-space APIC, `int3` where KVM delivers it, hardware breakpoints (at most four sites)
//! otherwise. Sessions arm and disarm at any time (with the vCPUs stopped once they run); the
//! end of the run restores every site. When the displaced instruction is not one the tracer
//! emulates, the hit stops every other vCPU, puts the original byte back (or lifts the
//! breakpoint), single-steps that one instruction, re-arms the trap and resumes the others
//! (two exits instead of one).
//!
//! Placement: entry probes trap on the ftrace site after `endbr64` where a function starts
//! with one, return probes on the return sites ([`tracer::traps::sites`]); a site the
//! kernel rewrites at run time (jump labels, static calls: [`KernelPatchSites`]) is refused
//! for a probe named exactly and skipped with a note for a glob. While the kernel patches its
//! own text, every trap is lifted ([`lift`]).

mod lift;
mod memory;
mod regs;
mod sync_events;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracer::probes::Probe;
use tracer::symbols::{ElfSymbols, SymbolSource};
use tracer::traps::{
    check_sites, decode_function, emulate, fbt_sites, Emulation, GuestText, KernelPatchSites, Regs,
    SiteConflict, TrapKind, TrapTable,
};
use vcpu::GuestDebug;
use vm_memory::GuestMemoryMmap;

use crate::host_traps::TrapStrategy;
use crate::trace::{GuestPaging, Translation};
pub use lift::{report_lifts, LiftStats, LIFT_DR, PATCHERS};
use lift::{Lift, SiteOrigin};
pub use memory::AddressMap;
use memory::{DryRun, ProbeMemory};
pub use regs::{regs_from_kvm, regs_to_kvm};
use sync_events::ReportedStop;
pub use sync_events::{StopReason, SyncObserver};

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
    /// The trap strategy holds fewer sites than asked for.
    #[error("{sites} probe sites wanted, but the {strategy} trap strategy holds at most {max} (use --irqchip emulated for `hlt` traps without a limit)")]
    TooManySites {
        /// Distinct sites wanted (with those already armed).
        sites: usize,
        /// Most the strategy holds.
        max: usize,
        /// The strategy.
        strategy: &'static str,
    },
    /// The vCPUs did not stop for a run-time patch.
    #[error("cannot stop the vCPUs to patch guest text: {0}")]
    Stop(String),
    /// A probe named exactly would trap where the kernel rewrites its text.
    #[error("cannot place probe {probe}: {conflict}")]
    KernelPatchSite {
        /// The probe.
        probe: String,
        /// Which site, and whose.
        conflict: SiteConflict,
    },
    /// The kernel's jump-label or static-call tables could not be read.
    #[error("cannot read where the kernel patches its text: {0}")]
    PatchSites(#[from] tracer::traps::PatchSitesError),
    /// Writing the trap failed.
    #[error("cannot arm the trap at {site:#x}: {why}")]
    Arm {
        /// Trap address.
        site: u64,
        /// Why.
        why: String,
    },
}

/// The `explicit` rule of [`ProbeSet::arm`]: a probe is named exactly when one of
/// `patterns` (`provider:module:function:name`, fewer fields binding to the right) names its
/// function without a glob.
pub fn named_exactly<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
) -> impl Fn(&Probe) -> bool + 'static {
    let exact: std::collections::HashSet<String> = patterns
        .into_iter()
        .filter_map(|p| {
            let fields: Vec<&str> = p.split(':').collect();
            let function = fields.len().checked_sub(2).map(|i| fields[i])?;
            (!function.is_empty() && !tracer::symbols::is_glob(function))
                .then(|| function.to_owned())
        })
        .collect();
    move |probe: &Probe| exact.contains(&probe.function)
}

/// An armed probe and its hit counts.
pub struct ArmedProbe {
    /// Which probe.
    pub probe: Probe,
    /// Trap addresses (one for entry, one per return site for return).
    pub sites: Vec<u64>,
    /// `provider:module:function:name`, for timelines.
    pub name: Arc<str>,
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
    /// The kernel entered or left one of its text patchers: the traps were lifted or
    /// re-armed ([`lift`]) and the vCPU resumes with the original instruction.
    Lifted,
}

/// How long a probe hit waits for the other vCPUs to stop before a single step.
const STEP_STOP_BOUND: Duration = Duration::from_secs(2);
/// How long arming or disarming at run time waits for every vCPU to stop.
const PATCH_STOP_BOUND: Duration = Duration::from_secs(2);

/// Who armed a group of probes: a D program of `run`, a client attached through the control
/// socket, or the plain `--probe` counters. Each session's probes come and go together.
pub type SessionId = u64;

/// One user of a trap site: which session's probe fires there, and its hook.
#[derive(Clone)]
struct SiteUser {
    session: SessionId,
    /// Index of the probe in its session's arming order.
    index: usize,
    probe: Arc<ArmedProbe>,
    hook: Option<Arc<dyn HitHook>>,
}

/// Everything that changes when probes are armed or disarmed.
#[derive(Default)]
struct Armed {
    traps: TrapTable,
    /// For each trap address, the probes that fire there.
    by_site: HashMap<u64, Vec<SiteUser>>,
    /// Every armed probe, by session, in arming order.
    sessions: Vec<(SessionId, Vec<Arc<ArmedProbe>>)>,
    /// Hidden guard traps on the kernel's text patchers: site -> patcher.
    guards: HashMap<u64, &'static str>,
    /// Where each site lies, to re-check it after the kernel patched its text.
    origins: HashMap<u64, SiteOrigin>,
    /// Per vCPU: the patcher it is in, while the traps are lifted.
    lifts: Vec<Option<Lift>>,
    /// Lifts so far.
    lift_stats: LiftStats,
    /// Per site: the hash of its function's bytes when last re-checked after a lift, and the
    /// verdict then.
    checked: HashMap<u64, (u64, Result<(), String>)>,
}

/// The map of a set whose image needs none (a static, so views can borrow it).
static IDENTITY: AddressMap = AddressMap::IDENTITY;

/// A single step in progress on one vCPU: the trap's site and kind, and the stop of the
/// others that covers it.
type Stepping = (u64, TrapKind, ReportedStop<vcpu::OwnedStopGuard>);

/// The armed probes of one VM, of every session.
pub struct ProbeSet {
    armed: Mutex<Armed>,
    cpus: usize,
    /// How sites trap (chosen by probing the host).
    strategy: TrapStrategy,
    /// Per vCPU: the breakpoints KVM must enforce (`int3` and hardware strategies).
    debug: Vec<GuestDebug>,
    /// Every vCPU, for stopping them around patches and single steps (set once they exist).
    world: OnceLock<vcpu::World>,
    /// Per vCPU: the trap being single-stepped and the stop that covers it.
    stepping: Mutex<Vec<Option<Stepping>>>,
    /// Told of every stop-the-world (the `sync` provider).
    observer: OnceLock<Arc<dyn SyncObserver>>,
    /// Where hits are recorded, when the run keeps a timeline.
    timeline: OnceLock<Arc<crate::timeline::Timeline>>,
    /// Which vCPU (index + 1) holds the single-step token; 0 when free. One step at a time:
    /// two vCPUs stopping each other for their own steps would wait for each other for ever.
    step_owner: AtomicUsize,
    next_session: AtomicU64,
    /// Where the image's text lies in guest-physical memory.
    /// (Set once: at construction, or when a KASLR kernel's slide is known, before arming.)
    map: OnceLock<AddressMap>,
    /// Each vCPU's translation at its trap exits, for the stack of emulated instructions.
    paging: OnceLock<Arc<GuestPaging>>,
    /// The image's return thunks (set by the first arming).
    thunks: OnceLock<Vec<u64>>,
    /// Where the kernel rewrites its text (read by the first arming).
    patch_sites: OnceLock<KernelPatchSites>,
    /// Whether the guard traps of [`lift`] have been placed.
    guarded: std::sync::atomic::AtomicBool,
}

/// Called for every probe that fires at a trap, before the displaced instruction runs.
pub trait HitHook: Send + Sync {
    /// `probe` (index `index` in its session's arming order) fired on `cpu` at trap `site`
    /// with `regs`.
    fn hit(&self, cpu: usize, index: usize, probe: &Probe, site: u64, regs: &Regs);
}

/// The probes one session wants, decoded and ready to patch.
struct Placed {
    probes: Vec<Arc<ArmedProbe>>,
    /// Each site's function, for re-checking it after a lift.
    origins: Vec<(u64, SiteOrigin)>,
    /// Probes left out because a site is one the kernel rewrites (globs only).
    skipped: Vec<(Probe, SiteConflict)>,
}

impl ProbeSet {
    /// An empty set for a VM with `cpus` vCPUs whose probes trap by `strategy`.
    pub fn new(cpus: usize, strategy: TrapStrategy) -> ProbeSet {
        let debug: Vec<GuestDebug> = (0..cpus).map(|_| GuestDebug::new()).collect();
        if strategy == TrapStrategy::Int3 {
            for d in &debug {
                d.update(|c| c.sw_breakpoints = true);
            }
        }
        ProbeSet {
            armed: Mutex::new(Armed {
                lifts: (0..cpus).map(|_| None).collect(),
                ..Armed::default()
            }),
            cpus,
            strategy,
            debug,
            world: OnceLock::new(),
            stepping: Mutex::new((0..cpus).map(|_| None).collect()),
            step_owner: AtomicUsize::new(0),
            next_session: AtomicU64::new(1),
            observer: OnceLock::new(),
            timeline: OnceLock::new(),
            map: OnceLock::new(),
            paging: OnceLock::new(),
            thunks: OnceLock::new(),
            patch_sites: OnceLock::new(),
            guarded: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The armed state, even after a panic elsewhere poisoned the lock.
    fn lock(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the one-at-a-time token for single steps and lifts; false if another vCPU has it.
    fn take_step_token(&self, cpu: usize) -> bool {
        self.step_owner
            .compare_exchange(0, cpu + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// This set with the image's text found through `map` (identity by default).
    pub fn with_address_map(self, map: AddressMap) -> Self {
        let _ = self.map.set(map);
        self
    }

    /// Finds the image's text through `map` from now on (a KASLR kernel's, once its slide is
    /// known); false if a map was already set (it stays).
    pub fn set_address_map(&self, map: AddressMap) -> bool {
        self.map.set(map).is_ok()
    }

    /// Emulated stack accesses go through each vCPU's page tables as `paging` records them
    /// (guest-physical until set).
    pub fn set_paging(&self, paging: Arc<GuestPaging>) {
        let _ = self.paging.set(paging);
    }

    /// Guest memory as the traps see it, with `cpu`'s translation for the stack (`None`:
    /// no vCPU, physical).
    fn view<'a>(&'a self, memory: &'a GuestMemoryMmap, cpu: Option<usize>) -> ProbeMemory<'a> {
        let translation = match (cpu, self.paging.get()) {
            (Some(cpu), Some(p)) => p.translation(cpu),
            _ => Translation::Physical,
        };
        ProbeMemory {
            ram: memory,
            map: self.map.get().unwrap_or(&IDENTITY),
            translation,
        }
    }

    /// Records every probe hit in `timeline`.
    pub fn set_timeline(&self, timeline: Arc<crate::timeline::Timeline>) {
        let _ = self.timeline.set(timeline);
    }

    /// Reports every stop-the-world the probes make to `observer`.
    pub fn set_sync_observer(&self, observer: Arc<dyn SyncObserver>) {
        let _ = self.observer.set(observer);
    }

    /// A fresh session id.
    pub fn new_session(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// The probes of `catalogue` that `patterns` name, each once, in catalogue order per
    /// pattern.
    pub fn resolve(catalogue: &[Probe], patterns: &[String]) -> Result<Vec<Probe>, ProbeError> {
        let mut wanted: Vec<Probe> = Vec::new();
        let mut seen: std::collections::HashSet<&Probe> = Default::default();
        for pattern in patterns {
            let matching: Vec<&Probe> = catalogue.iter().filter(|p| p.matches(pattern)).collect();
            if matching.is_empty() {
                return Err(ProbeError::NoMatch(pattern.clone()));
            }
            for p in matching {
                if seen.insert(p) {
                    wanted.push(p.clone());
                }
            }
        }
        Ok(wanted)
    }

    /// Decodes where each of `wanted` (fbt probes of `image`, whose functions are
    /// `symbols`) traps, in order, each probe once. A probe whose site the kernel rewrites is
    /// an error where `explicit` says it was named exactly, else skipped.
    fn place(
        &self,
        image: &[u8],
        symbols: &ElfSymbols,
        wanted: &[Probe],
        explicit: &dyn Fn(&Probe) -> bool,
    ) -> Result<Placed, ProbeError> {
        let thunks = self.thunks.get_or_init(|| symbols.return_thunks()).clone();
        let patch_sites = match self.patch_sites.get() {
            Some(p) => p,
            None => {
                let read = KernelPatchSites::from_image(image, symbols)?;
                self.patch_sites.get_or_init(|| read)
            }
        };
        let mut origins = Vec::new();
        let mut skipped = Vec::new();
        let mut probes: Vec<Arc<ArmedProbe>> = Vec::new();
        let mut seen: std::collections::HashSet<&Probe> = Default::default();
        for probe in wanted {
            if probe.provider != "fbt" {
                return Err(ProbeError::NotFbt(probe.to_string()));
            }
            if !seen.insert(probe) {
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
            let sites = fbt_sites(&probe.name, &decoded, bytes);
            if let Err(conflict) = check_sites(&decoded, &sites, patch_sites) {
                if explicit(probe) {
                    return Err(ProbeError::KernelPatchSite {
                        probe: probe.to_string(),
                        conflict,
                    });
                }
                skipped.push((probe.clone(), conflict));
                continue;
            }
            let is_return = probe.name != "entry";
            origins.extend(sites.iter().map(|&site| {
                let function = f.clone();
                (
                    site,
                    SiteOrigin {
                        function,
                        is_return,
                    },
                )
            }));
            probes.push(Arc::new(ArmedProbe {
                probe: probe.clone(),
                name: probe.to_string().into(),
                sites,
                hits: (0..self.cpus).map(|_| AtomicU64::new(0)).collect(),
            }));
        }
        Ok(Placed {
            probes,
            origins,
            skipped,
        })
    }

    /// Arms `wanted` (fbt probes of `image`, whose functions are `symbols`) in `memory` as
    /// session `session`, with `hook` called on each hit. Once the vCPUs exist
    /// ([`ProbeSet::set_world`]) they are stopped while the traps are written. On an error
    /// nothing of this session stays armed. Returns the armed probes in the order hooks see
    /// their indices (`wanted` without repeats). A probe whose site the kernel rewrites
    /// (jump label, static call) is refused where `explicit` says it was named exactly, and
    /// skipped with a note otherwise (a glob).
    #[allow(clippy::too_many_arguments)]
    pub fn arm(
        &self,
        session: SessionId,
        image: &[u8],
        symbols: &ElfSymbols,
        memory: &GuestMemoryMmap,
        wanted: &[Probe],
        explicit: &dyn Fn(&Probe) -> bool,
        hook: Option<Arc<dyn HitHook>>,
    ) -> Result<Vec<Probe>, ProbeError> {
        let placed = self.place(image, symbols, wanted, explicit)?;
        if let Some((probe, why)) = placed.skipped.first() {
            eprintln!(
                "hvtrace: note: {} of the probes matched are skipped: they would trap where \
                 the kernel rewrites its text (the first: {probe}: {why})",
                placed.skipped.len()
            );
        }
        let _stopped = self.stop_world()?;
        let mut armed = self.lock();
        self.arm_guards(&mut armed, image, symbols, memory);
        if let Some(max) = self.strategy.max_sites() {
            let mut sites: Vec<u64> = armed.by_site.keys().copied().collect();
            sites.extend(placed.probes.iter().flat_map(|p| p.sites.iter().copied()));
            sites.sort_unstable();
            sites.dedup();
            if sites.len() > max {
                return Err(ProbeError::TooManySites {
                    sites: sites.len(),
                    max,
                    strategy: self.strategy.name(),
                });
            }
        }
        let mut text = self.view(memory, None);
        let mut done: Vec<u64> = Vec::new();
        for (index, p) in placed.probes.iter().enumerate() {
            for &site in &p.sites {
                let kind = match armed.traps.get(site) {
                    Some(existing) => existing.kind,
                    None => self.new_trap_kind(&armed.traps),
                };
                if let Err(e) = armed.traps.arm(site, kind, &mut text) {
                    for site in done {
                        let _ = armed.traps.disarm(site, &mut text);
                    }
                    self.publish_breakpoints(&armed.traps);
                    armed
                        .by_site
                        .values_mut()
                        .for_each(|users| users.retain(|u| u.session != session));
                    armed.by_site.retain(|_, users| !users.is_empty());
                    return Err(ProbeError::Arm {
                        site,
                        why: e.to_string(),
                    });
                }
                done.push(site);
                armed.by_site.entry(site).or_default().push(SiteUser {
                    session,
                    index,
                    probe: Arc::clone(p),
                    hook: hook.clone(),
                });
            }
        }
        self.publish_breakpoints(&armed.traps);
        for (site, origin) in placed.origins {
            armed.origins.entry(site).or_insert(origin);
        }
        if armed.lifts.iter().any(Option::is_some) {
            // The kernel is patching its text: the new traps wait for the re-arm too.
            for (site, e) in armed.traps.lift_all(&mut text) {
                eprintln!("hvtrace: cannot lift the new trap at {site:#x}: {e}");
            }
        }
        let list: Vec<Probe> = placed.probes.iter().map(|p| p.probe.clone()).collect();
        armed.sessions.push((session, placed.probes));
        Ok(list)
    }

    /// Removes every probe of `session`, restoring guest text where no other session still
    /// traps (with the vCPUs stopped once they exist). Returns the number of sites restored.
    pub fn disarm(
        &self,
        session: SessionId,
        memory: &GuestMemoryMmap,
    ) -> Result<usize, ProbeError> {
        let _stopped = self.stop_world()?;
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = armed.sessions.iter().position(|(id, _)| *id == session) else {
            return Ok(0);
        };
        let (_, probes) = armed.sessions.remove(at);
        let mut text = self.view(memory, None);
        let mut restored = 0;
        let mut failed = None;
        for p in &probes {
            for &site in &p.sites {
                match armed.traps.disarm(site, &mut text) {
                    Ok(tracer::traps::Disarmed::Removed(_)) => {
                        armed.origins.remove(&site);
                        armed.checked.remove(&site);
                        restored += 1;
                    }
                    Ok(_) => {}
                    Err(e) => failed = Some((site, e.to_string())),
                }
                if let Some(users) = armed.by_site.get_mut(&site) {
                    users.retain(|u| u.session != session);
                    if users.is_empty() {
                        armed.by_site.remove(&site);
                    }
                }
            }
        }
        self.publish_breakpoints(&armed.traps);
        match failed {
            Some((site, why)) => Err(ProbeError::Arm { site, why }),
            None => Ok(restored),
        }
    }

    /// Places the hidden guard traps of [`lift`] on the kernel's text patchers, once, where
    /// traps patch text (not hardware breakpoints) and the image patches itself (it has
    /// jump-label or static-call sites). A guard that cannot go in is reported and left out.
    fn arm_guards(
        &self,
        armed: &mut Armed,
        image: &[u8],
        symbols: &ElfSymbols,
        memory: &GuestMemoryMmap,
    ) {
        let patches = self.strategy != TrapStrategy::HwBreakpoints
            && self
                .patch_sites
                .get()
                .is_some_and(|p| !p.sites().is_empty());
        if !patches || self.guarded.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut text = self.view(memory, None);
        for (site, guard, function) in lift::guard_sites(image, symbols) {
            if let Err(e) = armed
                .traps
                .arm(site, self.new_trap_kind(&armed.traps), &mut text)
            {
                eprintln!("hvtrace: warning: no guard on {guard} ({site:#x}): {e}");
                continue;
            }
            armed.guards.insert(site, guard);
            armed.origins.entry(site).or_insert(SiteOrigin {
                function,
                is_return: false,
            });
        }
    }

    /// The trap kind for a new site under this set's strategy.
    fn new_trap_kind(&self, traps: &TrapTable) -> TrapKind {
        match self.strategy {
            TrapStrategy::Hlt => TrapKind::Hlt,
            TrapStrategy::Int3 => TrapKind::Int3,
            // The site count was checked against the registers before arming.
            TrapStrategy::HwBreakpoints => {
                TrapKind::HwBreakpoint(traps.free_debug_register().unwrap_or(0))
            }
        }
    }

    /// Publishes the hardware breakpoints of `traps` to every vCPU (applied before its next
    /// entry; the vCPUs are stopped while this changes).
    fn publish_breakpoints(&self, traps: &TrapTable) {
        if self.strategy != TrapStrategy::HwBreakpoints {
            return;
        }
        let mut regs = [None; 4];
        for (dr, slot) in regs.iter_mut().enumerate() {
            *slot = traps.debug_register_user(dr as u8);
        }
        for d in &self.debug {
            d.update(|c| c.hw_breakpoints = regs);
        }
    }

    /// The breakpoints `cpu` must have KVM enforce: the probes' under the `int3` and hardware
    /// strategies, and under every strategy the breakpoint that ends a lift ([`lift`]).
    pub fn guest_debug(&self, cpu: usize) -> Option<&GuestDebug> {
        self.debug.get(cpu)
    }

    /// How this set's probes trap.
    pub fn strategy(&self) -> TrapStrategy {
        self.strategy
    }

    /// Stops every vCPU while traps are patched, once they exist (before that nothing runs).
    fn stop_world(&self) -> Result<Option<ReportedStop<vcpu::StopGuard<'_>>>, ProbeError> {
        let Some(world) = self.world.get() else {
            return Ok(None);
        };
        let asked = std::time::Instant::now();
        let guard = world
            .stop(PATCH_STOP_BOUND)
            .map_err(|e| ProbeError::Stop(e.to_string()))?;
        Ok(Some(ReportedStop::new(
            guard,
            self.observer.get().cloned(),
            0,
            StopReason::Patch,
            world.len(),
            asked,
        )))
    }

    /// Connects the vCPUs (needed for single-stepped hits and run-time patching).
    pub fn set_world(&self, world: vcpu::World) {
        let _ = self.world.set(world);
    }

    /// Every armed probe of every session, with its hit counts.
    pub fn probes(&self) -> Vec<Arc<ArmedProbe>> {
        let armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed
            .sessions
            .iter()
            .flat_map(|(_, probes)| probes.iter().cloned())
            .collect()
    }

    /// Whether the byte at `addr` is a trap that some session placed (the guest text as the
    /// guest sees it, for tests and checks).
    pub fn is_trapped(&self, addr: u64) -> bool {
        let armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.traps.get(addr).is_some()
    }

    /// A `hlt` exit of `cpu` with `regs` (RIP after the `hlt`): see [`ProbeSet::on_trap`].
    pub fn on_hlt(
        &self,
        cpu: usize,
        regs: &mut Regs,
        memory: &GuestMemoryMmap,
    ) -> Result<Hit, String> {
        let rip = regs.rip;
        self.on_trap(cpu, TrapKind::Hlt, rip, regs, memory)
    }

    /// A trap exit of `kind` reported at `exit_addr` (RIP after a `hlt`; the breakpoint
    /// address for `int3` and hardware breakpoints) on `cpu` with `regs`: if it is one of our
    /// traps, counts the hit, runs the hooks, and either emulates the displaced instruction
    /// into `regs` or prepares a single step of it (see [`Hit`]).
    pub fn on_trap(
        &self,
        cpu: usize,
        kind: TrapKind,
        exit_addr: u64,
        regs: &mut Regs,
        memory: &GuestMemoryMmap,
    ) -> Result<Hit, String> {
        if kind == TrapKind::HwBreakpoint(LIFT_DR as u8) {
            if let Some(hit) = self.lift_return(cpu, exit_addr, memory)? {
                return Ok(hit);
            }
        }
        let armed = self.lock();
        let Some(trap) = armed.traps.hit(kind, exit_addr) else {
            drop(armed);
            return Ok(match kind {
                TrapKind::Hlt => stale_trap(regs, &self.view(memory, None)),
                _ => Hit::NotOurs,
            });
        };
        let site = trap.addr;
        let kind = trap.kind;
        if let Some(&guard) = armed.guards.get(&site) {
            if !self.take_step_token(cpu) {
                regs.rip = site;
                return Ok(Hit::Retry);
            }
            self.fire(&armed, cpu, site, regs);
            drop(armed);
            let result = self.lift(cpu, site, guard, regs, memory);
            self.step_owner.store(0, Ordering::SeqCst);
            return result;
        }
        let mut original = [0u8; 16];
        armed
            .traps
            .shadow_read(&self.view(memory, None), site, &mut original)
            .map_err(|e| format!("probe site {site:#x}: cannot read its original bytes: {e}"))?;
        // Decide first (without side effects) whether this hit needs a single step, and take
        // the step token before anything is counted, so a hit that must wait is retried whole.
        let needs_step = matches!(
            emulate(
                &original,
                site,
                regs,
                &mut DryRun(self.view(memory, Some(cpu)))
            ),
            Emulation::NeedsSingleStep(_)
        );
        if needs_step && !self.take_step_token(cpu) {
            regs.rip = site;
            return Ok(Hit::Retry);
        }
        self.fire(&armed, cpu, site, regs);
        if !needs_step {
            if let Emulation::Emulated(after) =
                emulate(&original, site, regs, &mut self.view(memory, Some(cpu)))
            {
                *regs = after;
                return Ok(Hit::Emulated);
            }
            return Err(format!(
                "probe site {site:#x}: the displaced instruction faulted when emulated for real"
            ));
        }
        drop(armed);
        match self.prepare_step(cpu, site, kind, original[0], memory) {
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

    /// Counts and runs every probe at `site` for a hit on `cpu` with `regs`.
    fn fire(&self, armed: &Armed, cpu: usize, site: u64, regs: &Regs) {
        let Some(users) = armed.by_site.get(&site) else {
            return;
        };
        // Registers as at the trap: RIP on the probed instruction.
        let at_trap = Regs { rip: site, ..*regs };
        for u in users {
            if let Some(h) = u.probe.hits.get(cpu) {
                h.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(t) = self.timeline.get() {
                t.record(
                    cpu,
                    crate::timeline::EventKind::Probe(Arc::clone(&u.probe.name)),
                );
            }
            if let Some(hook) = &u.hook {
                hook.hit(cpu, u.index, &u.probe.probe, site, &at_trap);
            }
        }
    }

    /// With the step token held by `cpu`: stops the other vCPUs and puts the original byte
    /// back at `site`, remembering the stop until [`ProbeSet::step_done`].
    fn prepare_step(
        &self,
        cpu: usize,
        site: u64,
        kind: TrapKind,
        original: u8,
        memory: &GuestMemoryMmap,
    ) -> Result<(), String> {
        let world = self
            .world
            .get()
            .ok_or("probe single step before the vCPUs exist")?;
        let asked = std::time::Instant::now();
        let guard = world.stop_others(STEP_STOP_BOUND).map_err(|e| {
            format!("probe site {site:#x}: cannot stop the others to single-step: {e}")
        })?;
        let guard = ReportedStop::new(
            guard,
            self.observer.get().cloned(),
            cpu,
            StopReason::SingleStep,
            world.len().saturating_sub(1),
            asked,
        );
        match kind {
            // No text patched: the breakpoint is lifted on this vCPU for the step.
            TrapKind::HwBreakpoint(dr) => {
                if let Some(d) = self.debug.get(cpu) {
                    d.update(|c| c.hw_breakpoints[usize::from(dr & 3)] = None);
                }
            }
            TrapKind::Hlt | TrapKind::Int3 => self
                .view(memory, None)
                .write(site, &[original])
                .map_err(|e| {
                    format!("probe site {site:#x}: cannot restore the original byte: {e}")
                })?,
        }
        let mut stepping = self.stepping.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = stepping.get_mut(cpu) {
            *slot = Some((site, kind, guard));
        }
        Ok(())
    }

    /// The single step on `cpu` finished: re-arms its trap (if a session still wants it)
    /// and resumes the other vCPUs.
    pub fn step_done(&self, cpu: usize, memory: &GuestMemoryMmap) -> Result<(), String> {
        let pending = self
            .stepping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(cpu)
            .and_then(Option::take);
        let Some((site, kind, guard)) = pending else {
            return Err(format!(
                "vcpu {cpu}: a single step finished that no probe asked for"
            ));
        };
        let still_armed = self.is_trapped(site);
        let result = match kind {
            TrapKind::HwBreakpoint(dr) => {
                if let Some(d) = self.debug.get(cpu) {
                    let again = still_armed.then_some(site);
                    d.update(|c| c.hw_breakpoints[usize::from(dr & 3)] = again);
                }
                Ok(())
            }
            TrapKind::Hlt | TrapKind::Int3 if still_armed => self
                .view(memory, None)
                .write(site, kind.patch_bytes())
                .map_err(|e| {
                    format!("probe site {site:#x}: cannot re-arm after the single step: {e}")
                }),
            TrapKind::Hlt | TrapKind::Int3 => Ok(()),
        };
        drop(guard);
        self.step_owner.store(0, Ordering::SeqCst);
        result
    }

    /// Restores the original bytes at every trap of every session (the end of the run; the
    /// probes and their hit counts stay listed).
    pub fn disarm_all(&self, memory: &GuestMemoryMmap) {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        for (site, e) in armed.traps.disarm_all(&mut self.view(memory, None)) {
            eprintln!("hvtrace: could not restore the guest text at {site:#x}: {e}");
        }
        armed.by_site.clear();
        armed.guards.clear();
        armed.origins.clear();
        armed.checked.clear();
    }

    /// (probe, total hits) for every armed probe.
    pub fn counts(&self) -> Vec<(Probe, u64)> {
        self.probes()
            .iter()
            .map(|p| (p.probe.clone(), p.hits()))
            .collect()
    }
}

/// A `hlt` exit that is not (or no longer) one of our traps. If the byte before RIP is not a
/// `hlt` any more, it was a trap removed between the exit and its handling: RIP goes back so
/// the restored instruction runs. Otherwise it is the guest's own `hlt`.
fn stale_trap(regs: &mut Regs, text: &ProbeMemory<'_>) -> Hit {
    let at = regs.rip.wrapping_sub(1);
    let mut byte = [0u8];
    match text.read(at, &mut byte) {
        Ok(()) if byte[0] != TrapKind::Hlt.patch_bytes()[0] => {
            regs.rip = at;
            Hit::Retry
        }
        _ => Hit::NotOurs,
    }
}
