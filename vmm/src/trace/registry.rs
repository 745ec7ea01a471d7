//! Every D program tracing the VM right now (the one of `run -n`, and one per attached client),
//! so that providers fired outside the trap path (`vmexit`, `apic`, `sync`, `profile`) reach
//! each of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tracer::traps::Regs;
use vcpu::{Kicker, World};

use super::Tracing;
use crate::probes::SessionId;

/// What `profile-N` needs to sample the vCPUs: their states and a way to kick each.
#[derive(Clone)]
pub struct VcpuAccess {
    /// Every vCPU (states and snapshots).
    pub world: World,
    /// A kicker per vCPU, in vCPU order.
    pub kickers: Vec<Kicker>,
}

/// The running trace sessions.
#[derive(Default)]
pub struct Sessions {
    list: RwLock<Vec<(SessionId, Arc<Tracing>)>>,
    /// Whether any session uses the `apic` provider (the APIC records events only then).
    apic: AtomicBool,
    /// Whether any session uses `profile-N` (kicked exits look for samples only then).
    profile: AtomicBool,
    vcpus: OnceLock<VcpuAccess>,
}

impl Sessions {
    /// Adds a running session.
    pub fn add(&self, id: SessionId, tracing: Arc<Tracing>) {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        list.push((id, tracing));
        self.update_interest(&list);
    }

    /// Removes a session (its providers stop firing); returns it.
    pub fn remove(&self, id: SessionId) -> Option<Arc<Tracing>> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        let at = list.iter().position(|(s, _)| *s == id)?;
        let removed = list.remove(at).1;
        self.update_interest(&list);
        Some(removed)
    }

    fn update_interest(&self, list: &[(SessionId, Arc<Tracing>)]) {
        let uses = |provider| list.iter().any(|(_, t)| t.uses(provider));
        self.apic.store(uses("apic"), Ordering::SeqCst);
        self.profile.store(uses("profile"), Ordering::SeqCst);
    }

    /// Connects the vCPUs (for `profile-N`), once they exist.
    pub fn set_vcpus(&self, access: VcpuAccess) {
        let _ = self.vcpus.set(access);
    }

    /// The vCPUs, once connected.
    pub fn vcpus(&self) -> Option<VcpuAccess> {
        self.vcpus.get().cloned()
    }

    /// A VMM event on `cpu`: fires `provider:::name` in every session that uses it.
    pub fn event(&self, cpu: usize, provider: &str, name: &str, args: [u64; 4]) {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        for (_, t) in list.iter() {
            t.event(cpu, provider, name, args);
        }
    }

    /// Whether any session wants the emulated APIC's events.
    pub fn wants_apic(&self) -> bool {
        self.apic.load(Ordering::Relaxed)
    }

    /// Whether some session owes `cpu` a `profile-N` sample (cheap: checked on kicked exits).
    pub fn wants_sample(&self, cpu: usize) -> bool {
        if !self.profile.load(Ordering::Relaxed) {
            return false;
        }
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.iter().any(|(_, t)| t.wants_sample(cpu))
    }

    /// `cpu` left the guest at `regs` after a kick: fires the samples it owes.
    pub fn sample(&self, cpu: usize, regs: &Regs) {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        for (_, t) in list.iter() {
            t.sample(cpu, regs);
        }
    }
}

/// The `sync` provider: `sync:::stop` (arg0 vCPUs stopped, arg1 ns it took to stop them,
/// arg2 why: 0 a run-time patch, 1 a single-stepped probe hit) and `sync:::resume` (arg0
/// vCPUs, arg1 ns they were stopped, arg2 why), fired as the vCPU that asked (0 for a patch).
impl crate::probes::SyncObserver for Sessions {
    fn stopped(&self, cpu: usize, reason: crate::probes::StopReason, vcpus: usize, took_ns: u64) {
        let args = [vcpus as u64, took_ns, reason as u64, 0];
        self.event(cpu, "sync", "stop", args);
    }

    fn resumed(&self, cpu: usize, reason: crate::probes::StopReason, vcpus: usize, ns: u64) {
        let args = [vcpus as u64, ns, reason as u64, 0];
        self.event(cpu, "sync", "resume", args);
    }
}
