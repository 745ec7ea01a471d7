//! Keeping traps out of the kernel's way while it patches its own text.
//!
//! Linux rewrites its text while it runs (alternatives, `apply_returns`, IBT sealing,
//! `ftrace_init` and ftrace itself, static calls, jump labels), and it *reads* the bytes
//! before it rewrites them (`ftrace_bug` when the ftrace call is not what it expects,
//! warnings from `apply_returns`/`poison_endbr`). Watching its writes would come too late, so
//! the probes get out of the way instead:
//!
//! 1. Hidden **guard** traps sit on the entry of each text patcher of [`PATCHERS`] that the
//!    kernel has (with the same entry rule as probes: after `endbr64`). They are not probes:
//!    no session sees them, and a user probe on the same site shares the trap as usual.
//! 2. When a vCPU enters a patcher, the other vCPUs are stopped, **every** trap byte is lifted
//!    (the original bytes go back; the sites stay known), and a hardware execution
//!    breakpoint (DR[`LIFT_DR`], on that vCPU only) is set on the patcher's return address,
//!    read from `[rsp]` at the guard. A breakpoint changes no memory, so the patcher sees
//!    exactly the kernel's own text. Everything runs again, the patcher with its original
//!    first instruction.
//! 3. When the breakpoint hits (the patcher returned), the world is stopped again, each
//!    site's function is re-decoded from the (possibly rewritten) live text, and every site
//!    that still is an instruction boundary (a return site for return probes) is patched
//!    again, taking the bytes now there as its original bytes. A site the kernel turned into
//!    something else is dropped with a warning. Nested and concurrent patchers keep the
//!    traps lifted until the last one returns.
//!
//! Probe hits while lifted are not seen; under `-v` ([`report_lifts`]) each lift is
//! reported with the patcher, how long it lasted and what was re-armed. Under the hardware
//! breakpoint strategy nothing is patched, so no guards are needed (and every debug register
//! is the probes').

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashMap;
use tracer::symbols::{ElfSymbols, Function, SymbolSource};

use tracer::traps::{
    decode_function, entry_site, DecodedFunction, GuestMemory, GuestText, Regs, TrapTable,
};
use vm_memory::GuestMemoryMmap;

use super::{Armed, Hit, ProbeSet, ReportedStop, StopReason, STEP_STOP_BOUND};

/// The kernel functions that patch (and first read) kernel text, outermost phases first.
/// Those the kernel lacks are skipped.
pub const PATCHERS: [&str; 30] = [
    "jump_label_init",
    "static_call_init",
    "ftrace_init",
    "alternative_instructions",
    "callthunks_patch_builtin_calls",
    "apply_alternatives",
    "apply_retpolines",
    "apply_returns",
    "apply_seal_endbr",
    "ftrace_modify_all_code",
    "ftrace_replace_code",
    "arch_ftrace_update_code",
    "ftrace_process_locs",
    "__static_call_update",
    "static_call_force_reinit",
    "arch_static_call_transform",
    "__static_call_transform",
    "__jump_label_update",
    "jump_label_init_ro",
    "arch_jump_label_transform",
    "arch_jump_label_transform_queue",
    "arch_jump_label_transform_apply",
    "text_poke_early",
    "text_poke",
    "text_poke_bp",
    "text_poke_bp_batch",
    "text_poke_queue",
    "text_poke_copy",
    "text_poke_set",
    "text_poke_finish",
];

/// The debug register that catches a patcher's return.
pub const LIFT_DR: usize = 3;

/// Whether lifts are reported on stderr (`hvtrace run -v`).
static REPORT: AtomicBool = AtomicBool::new(false);

/// Reports every lift on stderr from now on (`on`), or stops reporting.
pub fn report_lifts(on: bool) {
    REPORT.store(on, Ordering::Relaxed);
}

/// What a trap site is, for re-checking it after the kernel patched its text.
#[derive(Clone, Debug)]
pub(super) struct SiteOrigin {
    /// The function it lies in.
    pub(super) function: Function,
    /// A return site (else an entry or guard site, which only has to stay a boundary).
    pub(super) is_return: bool,
}

/// One vCPU inside a patcher.
#[derive(Clone, Debug)]
pub(super) struct Lift {
    /// The patcher.
    guard: &'static str,
    /// Its return address (the breakpoint).
    ret: u64,
    /// When it was entered.
    since: Instant,
}

/// Lifts so far, for the end-of-run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiftStats {
    /// Completed lifts.
    pub count: u64,
    /// Time spent lifted in all (overlapping lifts counted once per vCPU).
    pub lifted: Duration,
    /// Sites dropped because the kernel rewrote them into something else.
    pub dropped: u64,
}

/// The guard sites of `symbols`' patchers: (site, patcher, function), from the image's bytes.
pub(super) fn guard_sites(
    image: &[u8],
    symbols: &ElfSymbols,
) -> Vec<(u64, &'static str, Function)> {
    let thunks = symbols.return_thunks();
    PATCHERS
        .iter()
        .filter_map(|name| {
            let f = symbols.by_name(name)?;
            let bytes = symbols.function_bytes(image, f)?;
            let decoded = decode_function(f, bytes, &thunks).ok()?;
            Some((entry_site(&decoded, bytes), *name, f.clone()))
        })
        .collect()
}

impl ProbeSet {
    /// A guard trap at `site` for `guard` was hit by `cpu` with `regs`: lifts every trap until
    /// the patcher returns, and resumes at the (now original) guard site.
    pub(super) fn lift(
        &self,
        cpu: usize,
        site: u64,
        guard: &'static str,
        regs: &mut Regs,
        memory: &GuestMemoryMmap,
    ) -> Result<Hit, String> {
        let ret = self
            .view(memory, Some(cpu))
            .read_u64(regs.rsp)
            .map_err(|e| format!("guard on {guard}: cannot read its return address: {e}"))?;
        let _stopped = self.stop_others_for(cpu)?;
        let mut armed = self.lock();
        if armed.lifts.get(cpu).is_some_and(Option::is_some) {
            // An exit of this vCPU that raced with its own lift: the trap is gone already.
            regs.rip = site;
            return Ok(Hit::Lifted);
        }
        let first = armed.lifts.iter().all(Option::is_none);
        if first {
            for (addr, e) in armed.traps.lift_all(&mut self.view(memory, None)) {
                eprintln!("hvtrace: cannot lift the trap at {addr:#x} for {guard}: {e}");
            }
        }
        let sites = armed.traps.len();
        if let Some(slot) = armed.lifts.get_mut(cpu) {
            *slot = Some(Lift {
                guard,
                ret,
                since: Instant::now(),
            });
        }
        if let Some(d) = self.debug.get(cpu) {
            d.update(|c| c.hw_breakpoints[LIFT_DR] = Some(ret));
        }
        if REPORT.load(Ordering::Relaxed) {
            eprintln!(
                "hvtrace: vcpu {cpu} entered {guard}: {} until it returns to {ret:#x}",
                if first {
                    format!("lifted {sites} trap sites")
                } else {
                    "trap sites stay lifted".into()
                }
            );
        }
        regs.rip = site;
        Ok(Hit::Lifted)
    }

    /// A hardware breakpoint in DR[`LIFT_DR`] hit `cpu` at `exit_addr`: if it is the return
    /// of the patcher `cpu` is in, ends that lift (re-arming every site once no vCPU is in a
    /// patcher). `None` when it is not such a return.
    pub(super) fn lift_return(
        &self,
        cpu: usize,
        exit_addr: u64,
        memory: &GuestMemoryMmap,
    ) -> Result<Option<Hit>, String> {
        let ours = self
            .lock()
            .lifts
            .get(cpu)
            .and_then(Option::as_ref)
            .is_some_and(|l| l.ret == exit_addr);
        if !ours {
            return Ok(None);
        }
        if !self.take_step_token(cpu) {
            // Another vCPU single-steps; the breakpoint hits again on re-entry.
            return Ok(Some(Hit::Retry));
        }
        let result = self.end_lift(cpu, memory);
        self.step_owner.store(0, Ordering::SeqCst);
        result.map(|()| Some(Hit::Lifted))
    }

    /// Ends `cpu`'s lift (with the step token held).
    fn end_lift(&self, cpu: usize, memory: &GuestMemoryMmap) -> Result<(), String> {
        let _stopped = self.stop_others_for(cpu)?;
        let mut armed = self.lock();
        let Some(lift) = armed.lifts.get_mut(cpu).and_then(Option::take) else {
            return Ok(());
        };
        if let Some(d) = self.debug.get(cpu) {
            d.update(|c| c.hw_breakpoints[LIFT_DR] = None);
        }
        let took = lift.since.elapsed();
        armed.lift_stats.count += 1;
        armed.lift_stats.lifted += took;
        if armed.lifts.iter().any(Option::is_some) {
            return Ok(());
        }
        let (rearmed, dropped) = self.rearm(&mut armed, memory);
        armed.lift_stats.dropped += dropped.len() as u64;
        for (addr, why) in &dropped {
            eprintln!(
                "hvtrace: warning: after {}, the probe site {addr:#x} is dropped: {why}",
                lift.guard
            );
        }
        if REPORT.load(Ordering::Relaxed) {
            eprintln!(
                "hvtrace: vcpu {cpu} returned from {} after {:.3} s (probe hits in that time \
                 were not seen); re-armed {rearmed} trap sites, dropped {}",
                lift.guard,
                took.as_secs_f64(),
                dropped.len()
            );
        }
        Ok(())
    }

    /// Re-checks every lifted site against the live text and patches it again: (re-armed,
    /// dropped with why). Every site is checked before any is patched again, and through the
    /// shadow, so no trap byte shows in a decode. A function whose bytes are as at its site's
    /// last check keeps that verdict without decoding it again (a lift may cover thousands of
    /// probed functions, of which a patcher changes a few).
    fn rearm(&self, armed: &mut Armed, memory: &GuestMemoryMmap) -> (usize, Vec<(u64, String)>) {
        let mut text = self.view(memory, None);
        let thunks = self.thunks.get().cloned().unwrap_or_default();
        // Per function this round: the hash of its live bytes, and its decode once needed.
        let mut live: HashMap<u64, LiveFunction> = HashMap::new();
        let mut verdicts: Vec<(u64, Result<(), String>)> = Vec::new();
        for addr in armed.traps.addresses() {
            let Some(origin) = armed.origins.get(&addr) else {
                verdicts.push((addr, Ok(())));
                continue;
            };
            let f = &origin.function;
            let now = live
                .entry(f.address)
                .or_insert_with(|| LiveFunction::read(f, &armed.traps, &text));
            let verdict = match (armed.checked.get(&addr), now.hash) {
                (Some((hash, verdict)), Some(h)) if *hash == h => verdict.clone(),
                _ => {
                    let verdict = now
                        .decoded(f, &thunks)
                        .and_then(|d| still_a_site(d, origin, addr));
                    if let Some(h) = now.hash {
                        armed.checked.insert(addr, (h, verdict.clone()));
                    }
                    verdict
                }
            };
            verdicts.push((addr, verdict));
        }
        let mut rearmed = 0;
        let mut dropped = Vec::new();
        for (addr, verdict) in verdicts {
            match verdict.and_then(|()| {
                armed
                    .traps
                    .repatch(addr, &mut text)
                    .map_err(|e| e.to_string())
            }) {
                Ok(()) => rearmed += 1,
                Err(why) => dropped.push((addr, why)),
            }
        }
        (rearmed, dropped)
    }

    /// Stops every vCPU but `cpu` (once the vCPUs exist), reported as a patch stop.
    fn stop_others_for(
        &self,
        cpu: usize,
    ) -> Result<Option<ReportedStop<vcpu::OwnedStopGuard>>, String> {
        let Some(world) = self.world.get() else {
            return Ok(None);
        };
        let asked = Instant::now();
        let guard = world
            .stop_others(STEP_STOP_BOUND)
            .map_err(|e| format!("cannot stop the other vCPUs to lift the probes: {e}"))?;
        Ok(Some(ReportedStop::new(
            guard,
            self.observer.get().cloned(),
            cpu,
            StopReason::Patch,
            world.len().saturating_sub(1),
            asked,
        )))
    }

    /// Lifts so far.
    pub fn lift_stats(&self) -> LiftStats {
        self.lock().lift_stats
    }
}

/// One probed function's live bytes during a re-arm (read as if no trap were there).
struct LiveFunction {
    /// The bytes, or why they could not be read.
    bytes: Result<Vec<u8>, String>,
    /// Their hash (`None` when unreadable).
    hash: Option<u64>,
    /// The decode, once asked for.
    decoded: Option<Result<DecodedFunction, String>>,
}

impl LiveFunction {
    /// Reads `f` from `text` through the shadow of `traps`.
    fn read(f: &Function, traps: &TrapTable, text: &dyn GuestText) -> Self {
        let bytes = usize::try_from(f.size)
            .map_err(|e| e.to_string())
            .and_then(|size| {
                let mut bytes = vec![0u8; size];
                traps
                    .shadow_read(text, f.address, &mut bytes)
                    .map_err(|e| format!("cannot read {}: {e}", f.name))?;
                Ok(bytes)
            });
        let hash = bytes.as_ref().ok().map(|b| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            b.hash(&mut h);
            h.finish()
        });
        Self {
            bytes,
            hash,
            decoded: None,
        }
    }

    /// The function decoded from these bytes (decoded once).
    fn decoded(&mut self, f: &Function, thunks: &[u64]) -> Result<&DecodedFunction, String> {
        let bytes = &self.bytes;
        self.decoded
            .get_or_insert_with(|| {
                let bytes = bytes.as_ref().map_err(Clone::clone)?;
                decode_function(f, bytes, thunks).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Is `addr` still a trap site of `origin` in its function as `decoded` now?
fn still_a_site(decoded: &DecodedFunction, origin: &SiteOrigin, addr: u64) -> Result<(), String> {
    if !origin.is_return {
        return decoded.check_trap_site(addr).map_err(|e| e.to_string());
    }
    if decoded.return_sites().iter().any(|r| r.address == addr) {
        Ok(())
    } else {
        let f = &origin.function;
        Err(format!(
            "{}+{:#x} is no longer a return",
            f.name,
            addr - f.address
        ))
    }
}

#[cfg(test)]
mod tests;
