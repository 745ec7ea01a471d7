//! Unit tests for displaced-instruction emulation: every emulated form with known bytes,
//! flags against known values and against the host CPU, refusals, and a no-panic proptest.

use super::*;
use proptest::prelude::*;

const TEXT: u64 = 0xffff_ffff_8100_0000;
const STACK_LO: u64 = 0xffff_c900_0000_0000;
const STACK_HI: u64 = STACK_LO + 0x1000;

/// A stack page: `[STACK_LO, STACK_HI)` readable and writable, nothing else.
#[derive(Debug, Clone)]
struct Stack {
    bytes: Vec<u8>,
}

impl Stack {
    fn new() -> Self {
        Self {
            bytes: (0..0x1000).map(|i| i as u8).collect(),
        }
    }

    fn offset(gva: u64) -> Result<usize, MemoryFault> {
        if gva >= STACK_LO && gva.checked_add(8).is_some_and(|e| e <= STACK_HI) {
            Ok((gva - STACK_LO) as usize)
        } else {
            Err(MemoryFault { gva })
        }
    }

    fn at(&self, gva: u64) -> u64 {
        let o = Self::offset(gva).expect("in stack");
        u64::from_le_bytes(self.bytes[o..o + 8].try_into().expect("8 bytes"))
    }
}

impl GuestMemory for Stack {
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault> {
        Self::offset(gva)?;
        Ok(self.at(gva))
    }

    fn write_u64(&mut self, gva: u64, value: u64) -> Result<(), MemoryFault> {
        let o = Self::offset(gva)?;
        self.bytes[o..o + 8].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

fn regs() -> Regs {
    Regs {
        rax: 0x1111,
        rbx: 0x2222,
        rcx: 0x3333,
        rdx: 0x4444,
        rsi: 0x5555,
        rdi: 0x6666,
        rsp: STACK_LO + 0x800,
        rbp: 0x7777,
        r8: 0x8888,
        r9: 0x9999,
        r10: 0xaaaa,
        r11: 0xbbbb,
        r12: 0xcccc,
        r13: 0xdddd,
        r14: 0xeeee,
        r15: 0xffff,
        rip: 0xdead,
        rflags: 0x2 | rflags::RF,
    }
}

/// Emulates `bytes` at `TEXT` with `r`, expecting success.
fn run_with(bytes: &[u8], r: &Regs, mem: &mut Stack) -> Regs {
    match emulate(bytes, TEXT, r, mem) {
        Emulation::Emulated(out) => out,
        other => panic!("{bytes:02x?}: {other:?}"),
    }
}

fn run(bytes: &[u8]) -> (Regs, Stack) {
    let mut mem = Stack::new();
    let out = run_with(bytes, &regs(), &mut mem);
    (out, mem)
}

/// The registers after an instruction that only advances RIP.
fn advanced(len: u64) -> Regs {
    Regs {
        rip: TEXT + len,
        rflags: 0x2,
        ..regs()
    }
}

fn step_reason(bytes: &[u8], r: &Regs) -> StepReason {
    match emulate(bytes, TEXT, r, &mut Stack::new()) {
        Emulation::NeedsSingleStep(why) => why,
        other => panic!("{bytes:02x?}: expected a single-step, got {other:?}"),
    }
}

#[test]
fn nop_forms_only_advance_rip() {
    let nops: &[&[u8]] = &[
        &[0x90],
        &[0x66, 0x90],
        &[0x48, 0x90],
        &[0x0f, 0x1f, 0x00],
        &[0x0f, 0x1f, 0x40, 0x00],
        &[0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
        &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[
            0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00,
        ],
        &[0x48, 0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0xf3, 0x0f, 0x1e, 0xfa], // endbr64
    ];
    for nop in nops {
        let (out, mem) = run(nop);
        assert_eq!(out, advanced(nop.len() as u64), "{nop:02x?}");
        assert_eq!(mem.bytes, Stack::new().bytes, "{nop:02x?} touched memory");
    }
}

#[test]
fn trailing_bytes_after_the_instruction_are_ignored() {
    let (out, _) = run(&[0x90, 0xcc, 0xcc, 0xcc]);
    assert_eq!(out.rip, TEXT + 1);
}

#[test]
fn not_nops() {
    // 41 90 is xchg r8d, eax; f3 90 is pause; 0f 1f /1 is a reserved NOP, not NOP r/m.
    assert_eq!(
        step_reason(&[0x41, 0x90], &regs()),
        StepReason::NotEmulated(Code::Xchg_r32_EAX)
    );
    assert_eq!(
        step_reason(&[0xf3, 0x90], &regs()),
        StepReason::NotEmulated(Code::Pause)
    );
    assert!(matches!(
        step_reason(&[0x0f, 0x1f, 0xc8], &regs()),
        StepReason::NotEmulated(_)
    ));
}

#[test]
fn push_pop() {
    let r = regs();
    let (out, mem) = run(&[0x55]); // push rbp
    assert_eq!(out.rsp, r.rsp - 8);
    assert_eq!(mem.at(out.rsp), r.rbp);
    assert_eq!(out.rip, TEXT + 1);

    let (out, mem) = run(&[0x41, 0x54]); // push r12
    assert_eq!(mem.at(out.rsp), r.r12);
    assert_eq!(out.rip, TEXT + 2);

    let (out, mem) = run(&[0x54]); // push rsp pushes the old value
    assert_eq!(mem.at(out.rsp), r.rsp);

    let mut mem = Stack::new();
    mem.write_u64(r.rsp, 0x1234_5678_9abc_def0).expect("write");
    let out = run_with(&[0x5d], &r, &mut mem); // pop rbp
    assert_eq!(
        (out.rbp, out.rsp, out.rip),
        (0x1234_5678_9abc_def0, r.rsp + 8, TEXT + 1)
    );

    let out = run_with(&[0x41, 0x5f], &r, &mut mem); // pop r15
    assert_eq!(
        (out.r15, out.rsp, out.rip),
        (0x1234_5678_9abc_def0, r.rsp + 8, TEXT + 2)
    );

    mem.write_u64(r.rsp, STACK_LO + 0x40).expect("write");
    let out = run_with(&[0x5c], &r, &mut mem); // pop rsp: rsp = popped value
    assert_eq!(out.rsp, STACK_LO + 0x40);
}

#[test]
fn push_r16_is_not_push_r64() {
    assert_eq!(
        step_reason(&[0x66, 0x55], &regs()),
        StepReason::NotEmulated(Code::Push_r16)
    );
}

#[test]
fn stack_faults_single_step_and_change_nothing() {
    let r = Regs {
        rsp: STACK_LO + 4, // push would write below the stack page
        ..regs()
    };
    let mut mem = Stack::new();
    let before = mem.bytes.clone();
    for bytes in [&[0x55][..], &[0xe8, 0, 0, 0, 0]] {
        assert_eq!(
            emulate(bytes, TEXT, &r, &mut mem),
            Emulation::NeedsSingleStep(StepReason::MemoryFault(STACK_LO - 4))
        );
    }
    assert_eq!(mem.bytes, before);
    let r = Regs {
        rsp: STACK_HI - 4,
        ..regs()
    };
    for bytes in [&[0x5d][..], &[0xc3], &[0xc2, 8, 0]] {
        assert_eq!(
            emulate(bytes, TEXT, &r, &mut mem),
            Emulation::NeedsSingleStep(StepReason::MemoryFault(STACK_HI - 4))
        );
    }
}

#[test]
fn mov_reg_reg_both_encodings() {
    let r = regs();
    let (out, _) = run(&[0x48, 0x89, 0xe5]); // mov rbp, rsp (89)
    assert_eq!(
        out,
        Regs {
            rbp: r.rsp,
            ..advanced(3)
        }
    );
    let (out, _) = run(&[0x48, 0x8b, 0xec]); // mov rbp, rsp (8B)
    assert_eq!(
        out,
        Regs {
            rbp: r.rsp,
            ..advanced(3)
        }
    );
    let (out, _) = run(&[0x49, 0x89, 0xf8]); // mov r8, rdi
    assert_eq!(
        out,
        Regs {
            r8: r.rdi,
            ..advanced(3)
        }
    );
    let (out, _) = run(&[0x4c, 0x89, 0xf8]); // mov rax, r15
    assert_eq!(
        out,
        Regs {
            rax: r.r15,
            ..advanced(3)
        }
    );
    let (out, _) = run(&[0x4d, 0x8b, 0xe5]); // mov r12, r13
    assert_eq!(
        out,
        Regs {
            r12: r.r13,
            ..advanced(3)
        }
    );
    let (out, _) = run(&[0x48, 0x89, 0xec]); // mov rsp, rbp
    assert_eq!(
        out,
        Regs {
            rsp: r.rbp,
            ..advanced(3)
        }
    );
}

#[test]
fn mov_forms_not_emulated() {
    // mov [rdi], rax ; mov rax, [rdi] ; mov ebp, esp (32-bit)
    assert_eq!(
        step_reason(&[0x48, 0x89, 0x07], &regs()),
        StepReason::NotEmulated(Code::Mov_rm64_r64)
    );
    assert_eq!(
        step_reason(&[0x48, 0x8b, 0x07], &regs()),
        StepReason::NotEmulated(Code::Mov_r64_rm64)
    );
    assert_eq!(
        step_reason(&[0x89, 0xe5], &regs()),
        StepReason::NotEmulated(Code::Mov_rm32_r32)
    );
}

#[test]
fn add_sub_rsp_values() {
    let r = regs();
    let (out, _) = run(&[0x48, 0x83, 0xec, 0x10]); // sub rsp, 0x10
    assert_eq!((out.rsp, out.rip), (r.rsp - 0x10, TEXT + 4));
    let (out, _) = run(&[0x48, 0x81, 0xec, 0x00, 0x01, 0x00, 0x00]); // sub rsp, 0x100
    assert_eq!((out.rsp, out.rip), (r.rsp - 0x100, TEXT + 7));
    let (out, _) = run(&[0x48, 0x83, 0xc4, 0x08]); // add rsp, 8
    assert_eq!(out.rsp, r.rsp + 8);
    let (out, _) = run(&[0x48, 0x83, 0xc4, 0xf8]); // add rsp, -8 (sign-extended imm8)
    assert_eq!(out.rsp, r.rsp - 8);
    let (out, _) = run(&[0x48, 0x81, 0xc4, 0x00, 0x00, 0x00, 0x80]); // add rsp, -2^31
    assert_eq!(out.rsp, r.rsp.wrapping_sub(0x8000_0000));
    // Only rsp is in the list.
    assert_eq!(
        step_reason(&[0x48, 0x83, 0xe8, 0x01], &regs()),
        StepReason::NotEmulated(Code::Sub_rm64_imm8)
    );
}

/// Runs `op rsp, imm` with `rsp = a` and returns (rsp, status flags).
fn arith(bytes: &[u8], a: u64, flags_in: u64) -> (u64, u64) {
    let r = Regs {
        rsp: a,
        rflags: flags_in,
        ..regs()
    };
    let out = run_with(bytes, &r, &mut Stack::new());
    assert_eq!(
        out.rflags & !rflags::ARITH,
        flags_in & !(rflags::ARITH | rflags::RF)
    );
    (out.rsp, out.rflags & rflags::ARITH)
}

#[test]
fn add_sub_flags_known_values() {
    use rflags::*;
    const SUB8: [u8; 3] = [0x48, 0x83, 0xec];
    const ADD8: [u8; 3] = [0x48, 0x83, 0xc4];
    let with = |op: [u8; 3], imm: u8| [op[0], op[1], op[2], imm];
    // 0x10 - 0x10 = 0: ZF PF.
    assert_eq!(arith(&with(SUB8, 0x10), 0x10, 0x2), (0, ZF | PF));
    // 8 - 0x10 = -8: CF (borrow), SF, AF? (8 ^ 0x10 ^ 0x..f8) bit 4 = 0; low byte f8 has 5
    // ones: PF clear.
    assert_eq!(
        arith(&with(SUB8, 0x10), 8, 0x2),
        (0xffff_ffff_ffff_fff8, CF | SF)
    );
    // 0x1000 - 1: AF (borrow from bit 4), low byte ff: PF.
    assert_eq!(arith(&with(SUB8, 1), 0x1000, 0x2), (0xfff, AF | PF));
    // i64::MIN - 1 overflows to i64::MAX: OF, AF, PF.
    assert_eq!(
        arith(&with(SUB8, 1), 0x8000_0000_0000_0000, 0x2),
        (0x7fff_ffff_ffff_ffff, OF | AF | PF)
    );
    // -8 + 8 = 0 with carry out: CF ZF PF AF.
    assert_eq!(
        arith(&with(ADD8, 8), 0xffff_ffff_ffff_fff8, 0x2),
        (0, CF | ZF | PF | AF)
    );
    // i64::MAX + 1: OF SF AF PF.
    assert_eq!(
        arith(&with(ADD8, 1), 0x7fff_ffff_ffff_ffff, 0x2),
        (0x8000_0000_0000_0000, OF | SF | AF | PF)
    );
    // Old status flags are replaced, other flags (IF here) kept.
    assert_eq!(
        arith(&with(ADD8, 1), 0x10, 0x2 | ARITH | (1 << 9)),
        (0x11, PF)
    );
}

/// Flags computed by the host CPU for `add`/`sub` of 64-bit values.
#[cfg(target_arch = "x86_64")]
fn host(sub: bool, a: u64, b: u64) -> (u64, u64) {
    let result: u64;
    let flags: u64;
    if sub {
        // SAFETY: register-only arithmetic plus a balanced pushfq/pop on our own stack.
        unsafe {
            std::arch::asm!("sub {a}, {b}", "pushfq", "pop {f}", a = inout(reg) a => result,
                b = in(reg) b, f = out(reg) flags);
        }
    } else {
        // SAFETY: as above.
        unsafe {
            std::arch::asm!("add {a}, {b}", "pushfq", "pop {f}", a = inout(reg) a => result,
                b = in(reg) b, f = out(reg) flags);
        }
    }
    (result, flags & rflags::ARITH)
}

#[cfg(target_arch = "x86_64")]
#[test]
fn flags_match_the_host_cpu_at_edges() {
    let edges = [
        0u64,
        1,
        7,
        8,
        0xf,
        0x10,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        0xffff_ffff_ffff_fff0,
        u64::MAX,
    ];
    for &a in &edges {
        for &b in &edges {
            assert_eq!(add64(a, b), host(false, a, b), "add {a:#x}, {b:#x}");
            assert_eq!(sub64(a, b), host(true, a, b), "sub {a:#x}, {b:#x}");
        }
    }
}

#[test]
fn lea_forms() {
    let r = regs();
    let (out, _) = run(&[0x48, 0x8d, 0x44, 0x24, 0x08]); // lea rax, [rsp+8]
    assert_eq!(
        out,
        Regs {
            rax: r.rsp + 8,
            ..advanced(5)
        }
    );
    let (out, _) = run(&[0x48, 0x8d, 0x6c, 0x24, 0xf0]); // lea rbp, [rsp-0x10]
    assert_eq!(out.rbp, r.rsp - 0x10);
    let (out, _) = run(&[0x4a, 0x8d, 0x04, 0xb7]); // lea rax, [rdi+r14*4]
    assert_eq!(out.rax, r.rdi + r.r14 * 4);
    let (out, _) = run(&[0x48, 0x8d, 0x84, 0xc8, 0x00, 0x01, 0x00, 0x00]); // [rax+rcx*8+0x100]
    assert_eq!(out.rax, r.rax + r.rcx * 8 + 0x100);
    let (out, _) = run(&[0x4c, 0x8d, 0x04, 0x8d, 0x10, 0x00, 0x00, 0x00]); // lea r8, [rcx*4+0x10]
    assert_eq!(out.r8, r.rcx * 4 + 0x10);
    let (out, _) = run(&[0x48, 0x8d, 0x05, 0x10, 0x00, 0x00, 0x00]); // lea rax, [rip+0x10]
    assert_eq!(
        out,
        Regs {
            rax: TEXT + 7 + 0x10,
            ..advanced(7)
        }
    );
    let (out, _) = run(&[0x48, 0x8d, 0x05, 0xf0, 0xff, 0xff, 0xff]); // lea rax, [rip-0x10]
    assert_eq!(out.rax, TEXT + 7 - 0x10);
    // 32-bit address size: the sum wraps at 4 GiB and is zero-extended.
    let wide = Regs {
        rdi: 0x1_ffff_fff0,
        rcx: 0x20,
        ..regs()
    };
    let out = run_with(&[0x67, 0x48, 0x8d, 0x04, 0x0f], &wide, &mut Stack::new());
    assert_eq!(out.rax, 0x10);
    // lea r32 is not in the list.
    assert_eq!(
        step_reason(&[0x8d, 0x04, 0x0f], &regs()),
        StepReason::NotEmulated(Code::Lea_r32_m)
    );
}

#[test]
fn jumps() {
    let (out, _) = run(&[0xeb, 0x10]);
    assert_eq!(
        out,
        Regs {
            rip: TEXT + 2 + 0x10,
            ..advanced(0)
        }
    );
    let (out, _) = run(&[0xeb, 0xfe]);
    assert_eq!(out.rip, TEXT, "jmp to itself");
    let (out, _) = run(&[0xeb, 0x80]);
    assert_eq!(out.rip, TEXT + 2 - 0x80);
    let (out, _) = run(&[0xe9, 0x00, 0x10, 0x00, 0x00]);
    assert_eq!(out.rip, TEXT + 5 + 0x1000);
    let (out, _) = run(&[0xe9, 0xfb, 0xff, 0xff, 0xff]);
    assert_eq!(out.rip, TEXT, "jmp rel32 to itself");
    assert_eq!(
        step_reason(&[0x66, 0xe9, 0x00, 0x10, 0x00, 0x00], &regs()),
        StepReason::OperandSizePrefix
    );
}

#[test]
fn jump_to_non_canonical_target_is_stepped() {
    let low_top = 0x0000_7fff_ffff_fff0u64;
    let mut mem = Stack::new();
    // jmp rel32 from just below the canonical hole to above it.
    let why = emulate(
        &[0xe9, 0x00, 0x01, 0x00, 0x00],
        low_top - 0x80,
        &regs(),
        &mut mem,
    );
    assert!(matches!(
        why,
        Emulation::NeedsSingleStep(StepReason::NonCanonicalTarget(_))
    ));
}

#[test]
fn call_pushes_the_return_address() {
    let r = regs();
    let (out, mem) = run(&[0xe8, 0x00, 0x02, 0x00, 0x00]);
    assert_eq!(out.rip, TEXT + 5 + 0x200);
    assert_eq!(out.rsp, r.rsp - 8);
    assert_eq!(mem.at(out.rsp), TEXT + 5);
    let (out, _) = run(&[0xe8, 0xf0, 0xff, 0xff, 0xff]);
    assert_eq!(out.rip, TEXT + 5 - 0x10);
}

#[test]
fn returns() {
    let r = regs();
    let mut mem = Stack::new();
    mem.write_u64(r.rsp, TEXT + 0x1234).expect("write");
    let out = run_with(&[0xc3], &r, &mut mem);
    assert_eq!((out.rip, out.rsp), (TEXT + 0x1234, r.rsp + 8));
    let out = run_with(&[0xf3, 0xc3], &r, &mut mem); // rep ret
    assert_eq!((out.rip, out.rsp), (TEXT + 0x1234, r.rsp + 8));
    let out = run_with(&[0xc2, 0x10, 0x00], &r, &mut mem); // ret 0x10
    assert_eq!((out.rip, out.rsp), (TEXT + 0x1234, r.rsp + 8 + 0x10));
    assert_eq!(out.rflags & rflags::RF, 0, "RF cleared at completion");
    mem.write_u64(r.rsp, 0x8000_0000_0000_0000).expect("write");
    assert_eq!(
        emulate(&[0xc3], TEXT, &r, &mut mem),
        Emulation::NeedsSingleStep(StepReason::NonCanonicalTarget(0x8000_0000_0000_0000))
    );
}

#[test]
fn trap_flag_and_others_are_stepped() {
    let tf = Regs {
        rflags: 0x2 | rflags::TF,
        ..regs()
    };
    assert_eq!(step_reason(&[0x90], &tf), StepReason::TrapFlag);
    assert_eq!(
        step_reason(&[0xfa], &regs()),
        StepReason::NotEmulated(Code::Cli)
    );
    assert_eq!(
        step_reason(&[0xf4], &regs()),
        StepReason::NotEmulated(Code::Hlt)
    );
    assert_eq!(
        step_reason(&[0xcc], &regs()),
        StepReason::NotEmulated(Code::Int3)
    );
    assert_eq!(step_reason(&[0x06], &regs()), StepReason::Undecodable);
    assert_eq!(step_reason(&[], &regs()), StepReason::Undecodable);
    assert_eq!(step_reason(&[0xe9, 0x00], &regs()), StepReason::Undecodable);
}

#[test]
fn regs_accessors() {
    let mut r = regs();
    assert_eq!(r.get(Register::R13), Some(0xdddd));
    assert_eq!(r.get(Register::R13D), Some(0xdddd));
    assert_eq!(r.get(Register::AL), None);
    assert!(r.set(Register::R9, 5));
    assert_eq!(r.r9, 5);
    assert!(!r.set(Register::R9D, 6));
    assert!(!r.set(Register::RIP, 6));
    assert_eq!(r.r9, 5);
}

proptest! {
    #[test]
    fn emulate_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..20),
        addr in any::<u64>(),
        rsp in prop_oneof![any::<u64>(), STACK_LO..STACK_HI],
        rflags in any::<u64>(),
    ) {
        let r = Regs { rsp, rflags, ..regs() };
        let mut mem = Stack::new();
        let _ = emulate(&bytes, addr, &r, &mut mem);
    }

    #[test]
    fn emulated_nops_and_pushes_are_consistent(prefix in 0usize..3, reg in 0u8..16) {
        // push/pop round trip through the emulated stack restores every register.
        let r = regs();
        let mut mem = Stack::new();
        let rex = if reg >= 8 { vec![0x41] } else { vec![] };
        let mut push = rex.clone();
        push.push(0x50 + (reg & 7));
        let mut pop = rex;
        pop.push(0x58 + (reg & 7));
        let mid = run_with(&push, &r, &mut mem);
        let mut nop = vec![0x66; prefix];
        nop.extend_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00]);
        let mid = run_with(&nop, &mid, &mut mem);
        let end = run_with(&pop, &mid, &mut mem);
        prop_assert_eq!(Regs { rip: r.rip, rflags: r.rflags, ..end }, r);
    }
}

#[cfg(target_arch = "x86_64")]
proptest! {
    #[test]
    fn flags_match_the_host_cpu(a in any::<u64>(), b in any::<u64>()) {
        prop_assert_eq!(add64(a, b), host(false, a, b));
        prop_assert_eq!(sub64(a, b), host(true, a, b));
    }
}
