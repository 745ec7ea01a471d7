//! Reflecting a guest's own `int3` back to it where the host cannot run it.
//!
//! A software KVM (HOST.md) ends the guest with an emulation failure (`KVM_EXIT_INTERNAL_ERROR`,
//! suberror 1, instruction byte `0xCC`) at a CPL0 `int3`, where hardware would deliver #BP to the
//! guest's IDT. Linux needs that delivery (its int3 self-test, text patching). The VMM injects
//! the #BP itself with `KVM_SET_VCPU_EVENTS`; how RIP must be set for the guest to see the frame
//! of a native `int3` (the saved RIP just past it) depends on the host, so it is probed by the
//! VMM (`vmm::host_int3`) and handed in as an [`Int3Reflection`].

use kvm_bindings::kvm_regs;
use kvm_ioctls::VcpuFd;

/// The `int3` opcode.
pub const INT3: u8 = 0xcc;
/// The breakpoint exception vector.
pub const BP_VECTOR: u8 = 3;

/// How to inject #BP so the guest gets the frame of a native `int3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int3Reflection {
    /// Inject with RIP on the `int3`: the host pushes the address after it (it treats the
    /// injected #BP as the software exception of that instruction).
    AtInstruction,
    /// Move RIP past the one-byte `int3` first, then inject: the host pushes RIP as it is.
    AfterInstruction,
}

/// Injects #BP into `fd` as `how` says; `regs` are its registers at the failed `int3` (RIP on
/// it), changed in place for [`Int3Reflection::AfterInstruction`] (the caller writes them
/// back before the next entry).
pub fn inject_breakpoint(
    fd: &VcpuFd,
    regs: &mut kvm_regs,
    how: Int3Reflection,
) -> Result<(), kvm_ioctls::Error> {
    if how == Int3Reflection::AfterInstruction {
        regs.rip = regs.rip.wrapping_add(1);
    }
    inject_exception(fd, BP_VECTOR)
}

/// Injects exception `vector` (one without an error code) into `fd` with
/// `KVM_SET_VCPU_EVENTS`, delivered at its next entry.
pub fn inject_exception(fd: &VcpuFd, vector: u8) -> Result<(), kvm_ioctls::Error> {
    let mut events = fd.get_vcpu_events()?;
    events.exception.injected = 1;
    events.exception.nr = vector;
    events.exception.has_error_code = 0;
    events.exception.pending = 0;
    events.exception.error_code = 0;
    events.exception_has_payload = 0;
    events.exception_payload = 0;
    fd.set_vcpu_events(&events)
}
