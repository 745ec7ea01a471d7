//! Arming a VM's probes and starting its D program, now or once a bzImage kernel's KASLR
//! slide is known (`crate::kaslr::place`: the same steps, run later on vCPU 0's thread).

use std::sync::{Arc, OnceLock};

use tracer::probes::Probe;
use tracer::symbols::ElfSymbols;
use vm_memory::GuestMemoryMmap;

use crate::kaslr::place::Found;
use crate::outcome::EndHandle;
use crate::probes::{named_exactly, HitHook, ProbeError, ProbeSet, SessionId};
use crate::trace::{Plan, Sessions, TraceSink, TraceSpec, TraceTarget, Tracing};

/// What arms probes: the set, the kernel ELF their sites are decoded from, guest memory.
#[derive(Clone)]
pub(super) struct Arming {
    pub(super) probes: Arc<ProbeSet>,
    pub(super) kernel: Arc<Vec<u8>>,
    pub(super) memory: GuestMemoryMmap,
    pub(super) verbose: bool,
}

impl Arming {
    /// Arms `wanted` (functions from `symbols`) as session `id`; `named` are the probe
    /// descriptions the user wrote (a site that cannot be probed is an error for a probe
    /// named exactly, a counted skip for a glob: [`named_exactly`]).
    pub(super) fn arm(
        &self,
        id: SessionId,
        symbols: &ElfSymbols,
        wanted: &[Probe],
        named: &[String],
        hook: Option<Arc<dyn HitHook>>,
    ) -> Result<Vec<Probe>, ProbeError> {
        let explicit = named_exactly(named.iter().map(String::as_str));
        self.probes.arm(
            id,
            &self.kernel,
            symbols,
            &self.memory,
            wanted,
            &explicit,
            hook,
        )
    }

    /// Arms `wanted` at the slide `found` (deferred arming): says so under `-v`, and says
    /// why not on stderr; true when armed.
    pub(super) fn arm_logged(
        &self,
        id: SessionId,
        found: &Found,
        wanted: &[Probe],
        named: &[String],
        hook: Option<Arc<dyn HitHook>>,
    ) -> bool {
        match self.arm(id, &found.symbols, wanted, named, hook) {
            Ok(armed) => {
                if self.verbose {
                    eprintln!(
                        "hvtrace: armed {} probe(s) at KASLR slide {:#x}, {:.1} s after start",
                        armed.len(),
                        found.slide.virt,
                        found.after.as_secs_f64()
                    );
                }
                true
            }
            Err(e) => {
                eprintln!(
                    "hvtrace: probes not armed at KASLR slide {:#x}: {e}",
                    found.slide.virt
                );
                false
            }
        }
    }
}

/// What starting the run's D program needs (now, or when its probes are armed).
pub(super) struct SessionStart {
    pub(super) spec: TraceSpec,
    pub(super) catalogue: Vec<Probe>,
    pub(super) target: TraceTarget,
    pub(super) sessions: Arc<Sessions>,
    /// Where the run finds its program (for END and `exit()`).
    pub(super) slot: Arc<OnceLock<Arc<Tracing>>>,
    pub(super) end: EndHandle,
    /// The trap strategy, for JSON output's first line.
    pub(super) announcement: Option<serde_json::Value>,
}

impl SessionStart {
    /// The program's runtime against `target`, printing to `sink`.
    pub(super) fn create(
        &self,
        plan: Plan,
        target: &TraceTarget,
        sink: Box<dyn TraceSink>,
    ) -> Arc<Tracing> {
        let t = Tracing::new(&self.spec, plan, &self.catalogue, target, sink);
        if let Some(a) = &self.announcement {
            t.announce(a);
        }
        t
    }

    /// Registers `t` as session `id` and the run's program; `now`: fires BEGIN and starts
    /// its consumer at once (deferred arming), else `Vm::run` does as the vCPUs start.
    pub(super) fn begin(&self, id: SessionId, t: Arc<Tracing>, now: bool) {
        self.sessions.add(id, Arc::clone(&t));
        let _ = self.slot.set(Arc::clone(&t));
        if now {
            let end = self.end.clone();
            t.start(Box::new(move || end.end()), self.sessions.vcpus());
        }
    }
}
