//! Conversions between KVM's register block and the tracer's [`Regs`].

use tracer::traps::Regs;

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
