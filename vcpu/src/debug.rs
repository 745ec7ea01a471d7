//! Guest debugging through KVM: the breakpoint configuration a VMM publishes for a vCPU
//! ([`GuestDebug`], [`DebugConfig`]) and the breakpoint exits it gets back ([`DebugEvent`]).
//!
//! Any thread may publish a new [`DebugConfig`] with [`GuestDebug::set`]; the vCPU's own thread
//! applies it (`KVM_SET_GUEST_DEBUG`) before its next `KVM_RUN`, so a vCPU that is inside the
//! guest keeps the old configuration until its next exit (kick it to apply at once). The check
//! before each entry is one atomic load of the generation. Single-step, which the vCPU layer
//! turns on for [`crate::HltAction::SingleStep`], is OR-ed into whatever is configured, and
//! turning it off goes back to exactly the configured breakpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kvm_bindings::{
    kvm_guest_debug, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
    KVM_GUESTDBG_USE_SW_BP,
};

/// How many hardware breakpoints x86 has (DR0-DR3).
pub const HW_BREAKPOINTS: usize = 4;

/// DR7 bits that are always set: bit 10 (reserved, reads as 1) and GE (bit 9), as QEMU's gdb
/// stub writes them.
const DR7_FIXED: u64 = 0x600;
/// DR6.BS: the debug exception came from a single step.
pub const DR6_BS: u64 = 1 << 14;
/// DR6.B0-B3: which hardware breakpoint matched.
pub const DR6_B0_B3: u64 = 0xf;
/// `#DB`, the exception of hardware breakpoints and single steps.
pub const DB_VECTOR: u32 = 1;
/// `#BP`, the exception of `int3`.
pub const BP_VECTOR: u32 = 3;

/// The breakpoints a vCPU should run with (single-step is the vCPU layer's business).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugConfig {
    /// `KVM_GUESTDBG_USE_SW_BP`: a guest `int3` exits to the VMM (`KVM_EXIT_DEBUG`, exception
    /// 3) instead of being delivered to the guest.
    pub sw_breakpoints: bool,
    /// Execution breakpoints in DR0-DR3 (guest-virtual addresses); `None` leaves the
    /// register unused.
    pub hw_breakpoints: [Option<u64>; HW_BREAKPOINTS],
}

impl DebugConfig {
    /// Whether this configuration asks KVM for nothing.
    pub fn is_empty(&self) -> bool {
        !self.sw_breakpoints && self.hw_breakpoints.iter().all(Option::is_none)
    }

    /// The `KVM_SET_GUEST_DEBUG` argument for this configuration, with single-step OR-ed in
    /// when `single_step`. An empty configuration without single-step is `control = 0`
    /// (guest debugging off).
    pub fn to_kvm(&self, single_step: bool) -> kvm_guest_debug {
        let mut debug = kvm_guest_debug::default();
        if self.sw_breakpoints {
            debug.control |= KVM_GUESTDBG_USE_SW_BP;
        }
        if self.hw_breakpoints.iter().any(Option::is_some) {
            debug.control |= KVM_GUESTDBG_USE_HW_BP;
            let mut dr7 = DR7_FIXED;
            for (n, addr) in self.hw_breakpoints.iter().enumerate() {
                if let Some(addr) = addr {
                    debug.arch.debugreg[n] = *addr;
                    // G<n> (global enable); R/W<n> = 00 (execution) and LEN<n> = 00 (1 byte)
                    // stay zero.
                    dr7 |= 2 << (2 * n);
                }
            }
            debug.arch.debugreg[7] = dr7;
        }
        if single_step {
            debug.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if debug.control != 0 {
            debug.control |= KVM_GUESTDBG_ENABLE;
        }
        debug
    }
}

/// One vCPU's published [`DebugConfig`] and its generation (bumped by every [`GuestDebug::set`]).
#[derive(Debug, Default)]
pub struct GuestDebug {
    generation: AtomicU64,
    config: Mutex<DebugConfig>,
}

impl GuestDebug {
    /// No breakpoints, generation 0 (which the vCPU layer treats as already applied).
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `config`; the vCPU applies it before its next `KVM_RUN`.
    pub fn set(&self, config: DebugConfig) {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        *current = config;
        // Bumped after the write and under the lock: a reader that sees the new generation
        // reads this configuration or a newer one.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes the published configuration in place (e.g. one debug register) and publishes it.
    pub fn update(&self, change: impl FnOnce(&mut DebugConfig)) {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut current);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The published configuration.
    pub fn get(&self) -> DebugConfig {
        *self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The generation: changes whenever the configuration is published.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// A `KVM_EXIT_DEBUG` that is a breakpoint hit, not the end of a single step the vCPU layer
/// asked for (`kvm_run.debug.arch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugEvent {
    /// The exception: 3 (`#BP`, an `int3` under `KVM_GUESTDBG_USE_SW_BP`) or 1 (`#DB`, a
    /// hardware breakpoint or a single step).
    pub exception: u32,
    /// KVM's `pc`: the linear address of the `int3` or of the instruction whose execution
    /// breakpoint matched (both are reported before the instruction runs).
    pub pc: u64,
    /// DR6 as KVM reports it (B0-B3: which hardware breakpoint matched; BS: single step).
    pub dr6: u64,
    /// DR7 as KVM reports it.
    pub dr7: u64,
}

impl DebugEvent {
    /// The debug register (0-3) whose execution breakpoint matched (the lowest DR6.B<n> set),
    /// for a `#DB` that is not a single step.
    pub fn hw_breakpoint(&self) -> Option<u8> {
        (self.exception == DB_VECTOR && !self.is_single_step())
            .then(|| (self.dr6 & DR6_B0_B3).trailing_zeros() as u8)
    }

    /// Whether this exit ends a single step: `#DB` with DR6.BS, or `#DB` with no breakpoint
    /// bit (hosts that leave DR6 empty for steps).
    pub fn is_single_step(&self) -> bool {
        self.exception == DB_VECTOR && (self.dr6 & DR6_BS != 0 || self.dr6 & DR6_B0_B3 == 0)
    }
}

impl std::fmt::Display for DebugEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.exception {
            BP_VECTOR => write!(f, "int3 (#BP) at {:#x}", self.pc),
            DB_VECTOR => write!(f, "#DB at {:#x}, dr6 {:#x}", self.pc, self.dr6),
            n => write!(f, "exception {n} at {:#x}, dr6 {:#x}", self.pc, self.dr6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_turns_debugging_off() {
        let d = DebugConfig::default().to_kvm(false);
        assert_eq!(d.control, 0);
        assert_eq!(d.arch.debugreg, [0; 8]);
        assert!(DebugConfig::default().is_empty());
    }

    #[test]
    fn single_step_is_or_ed_into_the_breakpoints() {
        let config = DebugConfig {
            sw_breakpoints: true,
            hw_breakpoints: [None, Some(0x1234), None, Some(0x5678)],
        };
        let off = config.to_kvm(false);
        assert_eq!(
            off.control,
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP
        );
        assert_eq!(off.arch.debugreg[1], 0x1234);
        assert_eq!(off.arch.debugreg[3], 0x5678);
        assert_eq!(off.arch.debugreg[7], 0x600 | (2 << 2) | (2 << 6));
        let on = config.to_kvm(true);
        assert_eq!(on.control, off.control | KVM_GUESTDBG_SINGLESTEP);
        assert_eq!(on.arch.debugreg, off.arch.debugreg);
        let step_only = DebugConfig::default().to_kvm(true);
        assert_eq!(
            step_only.control,
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP
        );
    }

    #[test]
    fn every_publication_bumps_the_generation() {
        let g = GuestDebug::new();
        assert_eq!(g.generation(), 0);
        g.set(DebugConfig {
            sw_breakpoints: true,
            ..DebugConfig::default()
        });
        g.update(|c| c.hw_breakpoints[2] = Some(0x10));
        assert_eq!(g.generation(), 2);
        assert_eq!(
            g.get(),
            DebugConfig {
                sw_breakpoints: true,
                hw_breakpoints: [None, None, Some(0x10), None],
            }
        );
    }

    #[test]
    fn events_classify() {
        let step = DebugEvent {
            exception: DB_VECTOR,
            dr6: 0xffff_4ff0,
            ..DebugEvent::default()
        };
        assert!(step.is_single_step());
        assert_eq!(step.hw_breakpoint(), None);
        let hw = DebugEvent {
            exception: DB_VECTOR,
            dr6: 0xffff_0ff4,
            ..DebugEvent::default()
        };
        assert!(!hw.is_single_step());
        assert_eq!(hw.hw_breakpoint(), Some(2));
        let bp = DebugEvent {
            exception: BP_VECTOR,
            ..DebugEvent::default()
        };
        assert!(!bp.is_single_step());
        assert_eq!(bp.hw_breakpoint(), None);
    }
}
