//! Whether, and how, a guest's own `int3` must be reflected to it, probed on this host.
//!
//! A one-vCPU throwaway VM (the trap probes' VM, `crate::host_traps`) runs `int3; hlt` at CPL0
//! with an IDT whose #BP handler is `mov (%rsp),%rax; hlt`, so the RIP the guest finds in its
//! exception frame comes back in RAX:
//! - the handler's `hlt` comes first with RAX = the address after the `int3`: the host
//!   delivers `int3` itself ([`Int3Support::Native`]);
//! - an emulation failure on `0xCC`: #BP is injected (`KVM_SET_VCPU_EVENTS`) with RIP left on
//!   the `int3`; if the frame then holds the address after it, that is the convention
//!   ([`Int3Reflection::AtInstruction`]); otherwise a second VM moves RIP past the `int3`
//!   before injecting, and that must give the native frame
//!   ([`Int3Reflection::AfterInstruction`]);
//! - anything else: the guest's `int3` cannot be delivered ([`Int3Support::Unsupported`]).
//!
//! Probed once per process, on the first `int3` a guest could not run (a VM that never
//! executes one pays nothing).

use std::fmt;
use std::sync::{Arc, OnceLock};

use kvm_bindings::kvm_run;
use kvm_ioctls::{Kvm, VcpuExit};
use vcpu::reflect::{inject_breakpoint, INT3};
use vcpu::{Fatal, Int3Reflection};
use vm_memory::{Bytes, GuestAddress};

use crate::boot::CODE_SELECTOR;
use crate::host_traps::{bounded, probe_setup, probe_vm, KickSlot, CODE, PROBE_BOUND};

/// Where the #BP handler goes.
const HANDLER: u64 = CODE + 0x100;
/// Where the IDT goes (vectors 0-3 used).
const IDT: u64 = CODE + 0x1000;
/// `mov (%rsp),%rax; hlt`.
const HANDLER_CODE: [u8; 5] = [0x48, 0x8b, 0x04, 0x24, 0xf4];
/// `int3; hlt`.
const TEST_CODE: [u8; 2] = [INT3, 0xf4];

/// What the host does with a guest's CPL0 `int3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Int3Support {
    /// Delivered to the guest's IDT by the host itself.
    Native,
    /// An emulation failure; injecting #BP as said gives the native frame.
    Reflect(Int3Reflection),
    /// Neither: why.
    Unsupported(String),
}

impl fmt::Display for Int3Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Int3Support::Native => f.write_str("the host delivers a guest's int3 itself"),
            Int3Support::Reflect(Int3Reflection::AtInstruction) => f.write_str(
                "a guest's int3 is an emulation failure; hvtrace injects #BP with RIP on it",
            ),
            Int3Support::Reflect(Int3Reflection::AfterInstruction) => f.write_str(
                "a guest's int3 is an emulation failure; hvtrace injects #BP with RIP past it",
            ),
            Int3Support::Unsupported(why) => write!(f, "a guest's int3 cannot be delivered: {why}"),
        }
    }
}

/// This host's answer, probed on first use.
pub fn host_int3() -> &'static Int3Support {
    static HOST: OnceLock<Int3Support> = OnceLock::new();
    HOST.get_or_init(probe)
}

/// Probes the host (each VM bounded by [`PROBE_BOUND`]).
pub fn probe() -> Int3Support {
    let (kvm, cpuid) = match probe_setup() {
        Ok(s) => s,
        Err(why) => return Int3Support::Unsupported(why),
    };
    let trial = |advance: Option<Int3Reflection>| {
        let (kvm, cpuid) = (Arc::clone(&kvm), Arc::clone(&cpuid));
        let (result, _) = bounded("probe-int3-reflect", PROBE_BOUND, move |slot| {
            run_trial(&kvm, &cpuid, slot, advance)
        });
        result.unwrap_or_else(|failed| Err(failed.to_string()))
    };
    let after_int3 = CODE + 1;
    match trial(None) {
        Ok(Trial::Handled(frame)) if frame == after_int3 => Int3Support::Native,
        Ok(Trial::Handled(frame)) => {
            Int3Support::Unsupported(format!("native #BP frame holds RIP {frame:#x}"))
        }
        Ok(Trial::Injected(frame)) if frame == after_int3 => {
            Int3Support::Reflect(Int3Reflection::AtInstruction)
        }
        Ok(Trial::Injected(_)) => match trial(Some(Int3Reflection::AfterInstruction)) {
            Ok(Trial::Injected(frame)) if frame == after_int3 => {
                Int3Support::Reflect(Int3Reflection::AfterInstruction)
            }
            Ok(other) => Int3Support::Unsupported(format!(
                "injected #BP frames hold neither convention ({other:?})"
            )),
            Err(why) => Int3Support::Unsupported(why),
        },
        Err(why) => Int3Support::Unsupported(why),
    }
}

/// What one trial saw: the frame's RIP from the handler after a native delivery, or after
/// an injected #BP.
#[derive(Debug)]
enum Trial {
    Handled(u64),
    Injected(u64),
}

/// One throwaway VM: runs `int3; hlt`; on an emulation failure injects #BP (as `inject`
/// says, or with RIP on the `int3` for `None`) and runs on to the handler's `hlt`.
fn run_trial(
    kvm: &Kvm,
    cpuid: &kvm_bindings::CpuId,
    slot: &KickSlot,
    inject: Option<Int3Reflection>,
) -> Result<Trial, String> {
    let mut vm = probe_vm(kvm, cpuid, &TEST_CODE)?;
    let write = |addr: u64, bytes: &[u8]| {
        vm.memory
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|e| format!("cannot write probe memory at {addr:#x}: {e}"))
    };
    write(HANDLER, &HANDLER_CODE)?;
    write(IDT + 3 * 16, &gate(HANDLER))?;
    let mut sregs = vm
        .vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS failed: {e}"))?;
    sregs.idt.base = IDT;
    sregs.idt.limit = 4 * 16 - 1;
    vm.vcpu
        .set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS failed: {e}"))?;
    slot.publish(vm.vcpu.get_kvm_run() as *mut kvm_run);
    let result = (|| {
        let first = run_to_exit(&mut vm.vcpu)?;
        if first == Exit::Hlt {
            return Ok(Trial::Handled(rax(&vm.vcpu)?));
        }
        let mut regs = vm
            .vcpu
            .get_regs()
            .map_err(|e| format!("KVM_GET_REGS failed: {e}"))?;
        if regs.rip != CODE {
            return Err(format!(
                "after the int3 emulation failure RIP is {:#x}, not on the int3 ({CODE:#x})",
                regs.rip
            ));
        }
        inject_breakpoint(
            &vm.vcpu,
            &mut regs,
            inject.unwrap_or(Int3Reflection::AtInstruction),
        )
        .map_err(|e| format!("KVM_SET_VCPU_EVENTS failed: {e}"))?;
        vm.vcpu
            .set_regs(&regs)
            .map_err(|e| format!("KVM_SET_REGS failed: {e}"))?;
        match run_to_exit(&mut vm.vcpu)? {
            Exit::Hlt => Ok(Trial::Injected(rax(&vm.vcpu)?)),
            Exit::Int3Failure => Err("the injected #BP failed again".into()),
        }
    })();
    slot.withdraw();
    result
}

/// The exits a trial expects.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Hlt,
    Int3Failure,
}

/// Runs until `hlt` or an emulation failure on `int3`; anything else is an error.
fn run_to_exit(vcpu: &mut kvm_ioctls::VcpuFd) -> Result<Exit, String> {
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => Ok(Exit::Hlt),
        Ok(VcpuExit::InternalError) => match Fatal::from_internal_error(vcpu.get_kvm_run()) {
            Some(Fatal::InternalError { suberror: 1, insn }) if insn.first() == Some(&INT3) => {
                Ok(Exit::Int3Failure)
            }
            Some(other) => Err(other.to_string()),
            None => Err("KVM_EXIT_INTERNAL_ERROR".into()),
        },
        Ok(other) => Err(format!("unexpected exit {other:?}")),
        Err(e) if e.errno() == libc::EINTR => Err(format!("timed out after {PROBE_BOUND:?}")),
        Err(e) => Err(format!("KVM_RUN failed: {e}")),
    }
}

fn rax(vcpu: &kvm_ioctls::VcpuFd) -> Result<u64, String> {
    vcpu.get_regs()
        .map(|r| r.rax)
        .map_err(|e| format!("KVM_GET_REGS failed: {e}"))
}

/// A 64-bit interrupt gate to `handler` in the code segment, DPL 0.
fn gate(handler: u64) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    g[2..4].copy_from_slice(&CODE_SELECTOR.to_le_bytes());
    g[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
    g[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    g[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_points_at_the_handler() {
        let g = gate(0x1234_5678_9abc);
        assert_eq!(u16::from_le_bytes([g[0], g[1]]), 0x9abc);
        assert_eq!(u16::from_le_bytes([g[6], g[7]]), 0x5678);
        assert_eq!(u32::from_le_bytes([g[8], g[9], g[10], g[11]]), 0x1234);
        assert_eq!(g[5], 0x8e);
    }

    /// On any host with KVM the probe gives an answer that says what happens; on this
    /// project's software KVM (HOST.md: "an injected #BP gives the guest the same frame as a
    /// native int3") it is a reflection.
    #[test]
    fn the_probe_answers() {
        if std::fs::metadata("/dev/kvm").is_err() {
            eprintln!("SKIPPED: host_int3::the_probe_answers: needs /dev/kvm");
            return;
        }
        let support = probe();
        eprintln!("host int3: {support}");
        assert!(!matches!(support, Int3Support::Unsupported(_)), "{support}");
        if std::path::Path::new("/sys/module/kvm_pvm").exists() {
            assert!(matches!(support, Int3Support::Reflect(_)), "{support}");
        }
    }
}
