//! Displaced-instruction emulation: after a trap hit, execute the instruction the trap
//! displaced in the VMM, so that the hit costs one exit.
//!
//! Emulated exactly (everything else is [`Emulation::NeedsSingleStep`]):
//! `nop` (90, 66 90, 48 90), `nop r/m` (0F 1F /0 with any prefixes, the 5-byte
//! `0f 1f 44 00 00` included), `endbr64`, `push r64`, `pop r64`, `mov r64, r64` (89 and 8B,
//! register operands only), `add`/`sub rsp, imm8/imm32` (with RFLAGS computed as the CPU
//! does), `lea r64, m` (RIP-relative and 32-bit address size included), `jmp rel8/rel32`,
//! `call rel32`, `ret` and `ret imm16`.
//!
//! Rules that keep it exact: memory goes through [`GuestMemory`] and a failed access makes
//! the instruction single-stepped instead, with nothing changed (the CPU then raises the
//! fault itself); an operand-size prefix on a branch (Intel ignores it, AMD honours it) and a
//! branch target that is not canonical are single-stepped; a set trap flag (the guest is
//! single-stepping itself) is single-stepped so the guest gets its #DB. After an emulated
//! instruction RIP is the next instruction or the branch target, and RFLAGS.RF is cleared as
//! the CPU clears it when an instruction completes.
//!
//! The caller makes sure the vCPU is in 64-bit mode (EFER.LMA and CS.L set); for 16/32-bit
//! code it single-steps instead. Privilege does not matter: the stack accesses go through the
//! caller's [`GuestMemory`], which translates with the vCPU's own page tables.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, OpKind, Register};

use super::decode::MAX_INSN_LEN;

/// RFLAGS bits the emulator reads or writes.
pub mod rflags {
    /// Carry flag.
    pub const CF: u64 = 1 << 0;
    /// Parity flag (even parity of the low result byte).
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry flag (carry/borrow out of bit 3).
    pub const AF: u64 = 1 << 4;
    /// Zero flag.
    pub const ZF: u64 = 1 << 6;
    /// Sign flag.
    pub const SF: u64 = 1 << 7;
    /// Trap flag (single-step).
    pub const TF: u64 = 1 << 8;
    /// Overflow flag.
    pub const OF: u64 = 1 << 11;
    /// Resume flag.
    pub const RF: u64 = 1 << 16;
    /// The status flags an `add`/`sub` writes.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// The general registers, RIP and RFLAGS of one vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RSP.
    pub rsp: u64,
    /// RBP.
    pub rbp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
}

impl Regs {
    /// The value of a general-purpose register: a 64-bit one, or the 64-bit register holding
    /// a 32-bit one (whole, for address arithmetic that is truncated afterwards); `None` for
    /// other registers.
    pub fn get(&self, reg: Register) -> Option<u64> {
        use Register as R;
        Some(match reg {
            R::RAX | R::EAX => self.rax,
            R::RCX | R::ECX => self.rcx,
            R::RDX | R::EDX => self.rdx,
            R::RBX | R::EBX => self.rbx,
            R::RSP | R::ESP => self.rsp,
            R::RBP | R::EBP => self.rbp,
            R::RSI | R::ESI => self.rsi,
            R::RDI | R::EDI => self.rdi,
            R::R8 | R::R8D => self.r8,
            R::R9 | R::R9D => self.r9,
            R::R10 | R::R10D => self.r10,
            R::R11 | R::R11D => self.r11,
            R::R12 | R::R12D => self.r12,
            R::R13 | R::R13D => self.r13,
            R::R14 | R::R14D => self.r14,
            R::R15 | R::R15D => self.r15,
            _ => return None,
        })
    }

    /// Sets a 64-bit general-purpose register; false (nothing changed) for other registers.
    pub fn set(&mut self, reg: Register, value: u64) -> bool {
        use Register as R;
        let slot = match reg {
            R::RAX => &mut self.rax,
            R::RCX => &mut self.rcx,
            R::RDX => &mut self.rdx,
            R::RBX => &mut self.rbx,
            R::RSP => &mut self.rsp,
            R::RBP => &mut self.rbp,
            R::RSI => &mut self.rsi,
            R::RDI => &mut self.rdi,
            R::R8 => &mut self.r8,
            R::R9 => &mut self.r9,
            R::R10 => &mut self.r10,
            R::R11 => &mut self.r11,
            R::R12 => &mut self.r12,
            R::R13 => &mut self.r13,
            R::R14 => &mut self.r14,
            R::R15 => &mut self.r15,
            _ => return false,
        };
        *slot = value;
        true
    }
}

/// A guest-virtual memory access failed (not mapped, not writable, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest memory at {gva:#x} is not accessible")]
pub struct MemoryFault {
    /// The guest-virtual address of the failed access.
    pub gva: u64,
}

/// Guest-virtual memory of the trapped vCPU, for stack pushes and pops. Each access is
/// all-or-nothing (an 8-byte access that crosses into an unmapped page fails whole).
pub trait GuestMemory {
    /// Reads the little-endian u64 at `gva`.
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault>;
    /// Writes the little-endian u64 `value` at `gva`.
    fn write_u64(&mut self, gva: u64, value: u64) -> Result<(), MemoryFault>;
}

/// Why an instruction is left to the CPU (single-step) instead of emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepReason {
    /// The bytes do not decode to a valid 64-bit instruction.
    Undecodable,
    /// The instruction is not one the emulator handles.
    NotEmulated(Code),
    /// A stack access failed; the CPU will raise the fault.
    MemoryFault(u64),
    /// RFLAGS.TF is set: the guest is single-stepping and must see its #DB.
    TrapFlag,
    /// An operand-size prefix on a branch, whose meaning differs between Intel and AMD.
    OperandSizePrefix,
    /// The branch target is not canonical; the CPU will raise #GP.
    NonCanonicalTarget(u64),
}

/// The outcome of [`emulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulation {
    /// Done: resume the vCPU with these registers (stack writes already made).
    Emulated(Regs),
    /// Restore the original bytes and single-step the vCPU instead.
    NeedsSingleStep(StepReason),
}

/// Decodes the single instruction at the start of `bytes`, located at guest address `addr`.
/// `None` if it is invalid or needs more bytes than given.
pub fn decode_one(bytes: &[u8], addr: u64) -> Option<Instruction> {
    let bytes = &bytes[..bytes.len().min(MAX_INSN_LEN)];
    let mut decoder = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
    let insn = decoder.decode();
    (!insn.is_invalid()).then_some(insn)
}

/// Emulates the instruction encoded at the start of `bytes` (the *original* bytes, from the
/// trap's shadow) as if executed at `addr` with `regs`. `regs.rip` is ignored on input.
pub fn emulate(bytes: &[u8], addr: u64, regs: &Regs, mem: &mut dyn GuestMemory) -> Emulation {
    let Some(insn) = decode_one(bytes, addr) else {
        return Emulation::NeedsSingleStep(StepReason::Undecodable);
    };
    match emulate_decoded(&insn, &bytes[..insn.len()], regs, mem) {
        Ok(regs) => Emulation::Emulated(regs),
        Err(reason) => Emulation::NeedsSingleStep(reason),
    }
}

/// Emulates the decoded `insn`, whose encoding is `raw`.
fn emulate_decoded(
    insn: &Instruction,
    raw: &[u8],
    regs: &Regs,
    mem: &mut dyn GuestMemory,
) -> Result<Regs, StepReason> {
    if regs.rflags & rflags::TF != 0 {
        return Err(StepReason::TrapFlag);
    }
    let mut out = *regs;
    out.rip = insn.next_ip();
    out.rflags &= !rflags::RF;
    let fault = |f: MemoryFault| StepReason::MemoryFault(f.gva);
    match insn.code() {
        Code::Nopw | Code::Nopd | Code::Nopq | Code::Nop_rm16 | Code::Nop_rm32 | Code::Nop_rm64 => {
        }
        Code::Endbr64 => {}
        Code::Push_r64 => {
            let value = reg_operand(regs, insn, 0)?;
            out.rsp = regs.rsp.wrapping_sub(8);
            mem.write_u64(out.rsp, value).map_err(fault)?;
        }
        Code::Pop_r64 => {
            let value = mem.read_u64(regs.rsp).map_err(fault)?;
            out.rsp = regs.rsp.wrapping_add(8);
            // `pop rsp` loads the popped value (the increment is overwritten).
            set_reg(&mut out, insn.op0_register(), value, insn.code())?;
        }
        Code::Mov_rm64_r64 | Code::Mov_r64_rm64 => {
            if insn.op0_kind() != OpKind::Register || insn.op1_kind() != OpKind::Register {
                return Err(StepReason::NotEmulated(insn.code()));
            }
            let value = reg_operand(regs, insn, 1)?;
            set_reg(&mut out, insn.op0_register(), value, insn.code())?;
        }
        Code::Add_rm64_imm8 | Code::Add_rm64_imm32 | Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32
            if insn.op0_kind() == OpKind::Register && insn.op0_register() == Register::RSP =>
        {
            let imm = insn.immediate(1);
            let (result, flags) = match insn.code() {
                Code::Add_rm64_imm8 | Code::Add_rm64_imm32 => add64(regs.rsp, imm),
                _ => sub64(regs.rsp, imm),
            };
            out.rsp = result;
            out.rflags = (out.rflags & !rflags::ARITH) | flags;
        }
        Code::Lea_r64_m => {
            let addr = insn
                .virtual_address(1, 0, |reg, _, _| match reg {
                    Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
                    Register::FS | Register::GS => Some(0), // lea ignores segments
                    _ => regs.get(reg),
                })
                .ok_or(StepReason::NotEmulated(insn.code()))?;
            set_reg(&mut out, insn.op0_register(), addr, insn.code())?;
        }
        Code::Jmp_rel8_64 | Code::Jmp_rel32_64 => {
            out.rip = branch_target(insn, raw)?;
        }
        Code::Call_rel32_64 => {
            let target = branch_target(insn, raw)?;
            out.rsp = regs.rsp.wrapping_sub(8);
            mem.write_u64(out.rsp, insn.next_ip()).map_err(fault)?;
            out.rip = target;
        }
        Code::Retnq | Code::Retnq_imm16 => {
            let target = mem.read_u64(regs.rsp).map_err(fault)?;
            if !is_canonical48(target) {
                return Err(StepReason::NonCanonicalTarget(target));
            }
            let release = if insn.code() == Code::Retnq_imm16 {
                u64::from(insn.immediate16())
            } else {
                0
            };
            out.rsp = regs.rsp.wrapping_add(8).wrapping_add(release);
            out.rip = target;
        }
        code => return Err(StepReason::NotEmulated(code)),
    }
    Ok(out)
}

/// The value of register operand `op`.
fn reg_operand(regs: &Regs, insn: &Instruction, op: u32) -> Result<u64, StepReason> {
    regs.get(insn.op_register(op))
        .ok_or(StepReason::NotEmulated(insn.code()))
}

/// Writes a 64-bit register destination.
fn set_reg(out: &mut Regs, reg: Register, value: u64, code: Code) -> Result<(), StepReason> {
    if out.set(reg, value) {
        Ok(())
    } else {
        Err(StepReason::NotEmulated(code))
    }
}

/// The target of a near relative branch, refusing operand-size prefixes and non-canonical
/// targets.
fn branch_target(insn: &Instruction, raw: &[u8]) -> Result<u64, StepReason> {
    if has_operand_size_prefix(raw) {
        return Err(StepReason::OperandSizePrefix);
    }
    let target = insn.near_branch64();
    if is_canonical48(target) {
        Ok(target)
    } else {
        Err(StepReason::NonCanonicalTarget(target))
    }
}

/// Does the encoding carry a 0x66 prefix among its legacy prefixes?
fn has_operand_size_prefix(raw: &[u8]) -> bool {
    raw.iter()
        .take_while(|&&b| {
            matches!(
                b,
                0x66 | 0x67 | 0xF0 | 0xF2 | 0xF3 | 0x2E | 0x36 | 0x3E | 0x26 | 0x64 | 0x65
            )
        })
        .any(|&b| b == 0x66)
}

/// Is `addr` canonical with 48-bit linear addresses (and so with 57-bit ones too)? A target
/// canonical only under 5-level paging is single-stepped, which is merely slower.
fn is_canonical48(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == (1 << 17) - 1
}

/// Even parity of the low byte, as PF reports it.
fn parity(result: u64) -> u64 {
    if (result as u8).count_ones().is_multiple_of(2) {
        rflags::PF
    } else {
        0
    }
}

/// ZF, SF and PF of a 64-bit result.
fn zsp(result: u64) -> u64 {
    let mut f = parity(result);
    if result == 0 {
        f |= rflags::ZF;
    }
    if result >> 63 != 0 {
        f |= rflags::SF;
    }
    f
}

/// `a + b` in 64 bits and the status flags (CF PF AF ZF SF OF) the CPU sets.
pub fn add64(a: u64, b: u64) -> (u64, u64) {
    let (result, carry) = a.overflowing_add(b);
    let mut f = zsp(result);
    if carry {
        f |= rflags::CF;
    }
    if (a ^ b ^ result) & 0x10 != 0 {
        f |= rflags::AF;
    }
    if ((a ^ result) & (b ^ result)) >> 63 != 0 {
        f |= rflags::OF;
    }
    (result, f)
}

/// `a - b` in 64 bits and the status flags (CF PF AF ZF SF OF) the CPU sets.
pub fn sub64(a: u64, b: u64) -> (u64, u64) {
    let (result, borrow) = a.overflowing_sub(b);
    let mut f = zsp(result);
    if borrow {
        f |= rflags::CF;
    }
    if (a ^ b ^ result) & 0x10 != 0 {
        f |= rflags::AF;
    }
    if ((a ^ b) & (a ^ result)) >> 63 != 0 {
        f |= rflags::OF;
    }
    (result, f)
}

#[cfg(test)]
mod tests;
