//! The timer-driven providers of one trace: `tick-N` (fires on one CPU, no guest registers)
//! and `profile-N` (samples every vCPU: a running vCPU is kicked and samples its own registers
//! at the kick's exit; a halted or stopped one is sampled where it waits).

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracer::traps::Regs;
use vcpu::{GuestWait, RunState};

use super::context::HitContext;
use super::session::CONSUMER_PERIOD;
use super::{Tracing, VcpuAccess};

impl Tracing {
    /// Fires every `tick-N` and `profile-N` probe at its period until the trace stops.
    pub(super) fn run_timers(&self, vcpus: Option<&VcpuAccess>) {
        let start = Instant::now();
        let periods: Vec<_> = self
            .ticks
            .iter()
            .map(|t| t.2)
            .chain(self.profiles.iter().map(|p| p.2))
            .collect();
        let mut next: Vec<Instant> = periods.iter().map(|p| start + *p).collect();
        while !self.stopping() {
            let now = Instant::now();
            for (i, period) in periods.iter().enumerate() {
                if next[i] > now {
                    continue;
                }
                next[i] += *period;
                if next[i] <= now {
                    next[i] = now + *period; // fell behind: skip missed ticks
                }
                match i.checked_sub(self.ticks.len()) {
                    None => {
                        let (info, clauses, _) = &self.ticks[i];
                        self.fire_without_registers(info, clauses);
                    }
                    Some(p) => {
                        if let Some(vcpus) = vcpus {
                            self.sample_all(p, vcpus);
                        }
                    }
                }
            }
            let wake = next.iter().min().copied().unwrap_or(now + CONSUMER_PERIOD);
            std::thread::sleep(
                wake.saturating_duration_since(Instant::now())
                    .min(CONSUMER_PERIOD),
            );
        }
    }

    /// One `profile-N` period for probe `index`: running vCPUs are asked for a sample (a
    /// kick); the others are sampled at the RIP where they wait.
    fn sample_all(&self, index: usize, vcpus: &VcpuAccess) {
        let bit = 1u64 << index;
        for (cpu, (state, snapshot)) in vcpus.world.snapshots().into_iter().enumerate() {
            if state == RunState::Running {
                if let (Some(pending), Some(kicker)) =
                    (self.samples.get(cpu), vcpus.kickers.get(cpu))
                {
                    pending.fetch_or(bit, Ordering::SeqCst);
                    kicker.kick();
                }
            } else if state != RunState::Exited
                && snapshot.wait != Some(GuestWait::Sipi)
                && snapshot.exits > 0
            {
                // Halted or stopped: sampled where it waits. A vCPU still waiting for its
                // start-up IPI, or one that has not left the guest once yet (its snapshot's
                // RIP is not a guest RIP but the initial 0), has nothing to sample.
                let regs = Regs {
                    rip: snapshot.rip,
                    ..Regs::default()
                };
                self.fire_sample(cpu, index, &regs);
            }
        }
    }

    /// Whether `cpu` owes this trace a `profile-N` sample (checked at every kicked exit).
    pub fn wants_sample(&self, cpu: usize) -> bool {
        self.samples
            .get(cpu)
            .is_some_and(|s| s.load(Ordering::Relaxed) != 0)
    }

    /// `cpu` was kicked out of the guest with `regs`: fires the `profile-N` probes it owes.
    pub fn sample(&self, cpu: usize, regs: &Regs) {
        let Some(pending) = self.samples.get(cpu) else {
            return;
        };
        let bits = pending.swap(0, Ordering::SeqCst);
        for index in (0..self.profiles.len()).filter(|i| bits & (1 << i) != 0) {
            self.fire_sample(cpu, index, regs);
        }
    }

    fn fire_sample(&self, cpu: usize, index: usize, regs: &Regs) {
        let Some((info, clauses, _)) = self.profiles.get(index) else {
            return;
        };
        let ctx = HitContext::sample(self, cpu as u32, regs);
        self.fire_on(cpu, info, clauses, &ctx);
    }
}
