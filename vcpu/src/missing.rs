//! Instructions a host's emulator may lack that the vCPU layer completes itself, exactly as
//! the SDM defines them, when KVM reports an emulation failure on one (HOST.md: a software KVM
//! interprets CPL0 code and fails on some instructions). A host that runs them never gets here.
//!
//! - `fwait`/`wait` (`0x9B`): checks for a pending unmasked x87 exception. With FSW.ES set it
//!   raises #MF (CR0.NE set) — the VMM injects it; otherwise it does nothing and RIP moves
//!   past it. (With CR0.NE clear the legacy FERR# path applies; hvtrace emulates no FERR#
//!   line, so the failure stays fatal there.)

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;

/// The `fwait` opcode.
pub const FWAIT: u8 = 0x9b;
/// The x87 floating-point error exception.
const MF_VECTOR: u8 = 16;
/// FSW.ES: an unmasked exception is pending.
const FSW_ES: u16 = 1 << 7;
/// CR0.NE: native x87 error reporting (#MF).
const CR0_NE: u64 = 1 << 5;

/// What completing an `fwait` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwait {
    /// No pending exception: RIP moved past it.
    Completed,
    /// A pending unmasked exception: #MF injected (RIP stays on it, a fault).
    RaisedMf,
    /// A pending exception with CR0.NE clear (FERR#): not emulated.
    Unsupported,
}

/// Completes the `fwait` at `regs.rip` on `fd` (changes `regs` in place; the caller writes
/// them back).
pub fn complete_fwait(
    fd: &VcpuFd,
    regs: &mut kvm_regs,
    sregs: &kvm_sregs,
) -> Result<Fwait, kvm_ioctls::Error> {
    let fpu = fd.get_fpu()?;
    if fpu.fsw & FSW_ES == 0 {
        regs.rip = regs.rip.wrapping_add(1);
        return Ok(Fwait::Completed);
    }
    if sregs.cr0 & CR0_NE == 0 {
        return Ok(Fwait::Unsupported);
    }
    crate::reflect::inject_exception(fd, MF_VECTOR)?;
    Ok(Fwait::RaisedMf)
}
