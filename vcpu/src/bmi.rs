//! VEX-encoded BMI1/BMI2 integer instructions completed by the vCPU layer when the host's
//! emulator fails on them (HOST.md: a software KVM fails on every VEX instruction at CPL0,
//! yet forces BMI1/BMI2 into CPUID leaf 7, so code that picks them at run time, like the
//! zstd decompressor of a Linux bzImage, runs into them).
//!
//! Completed exactly as the SDM defines them: `shlx`, `shrx`, `sarx`, `rorx` and `mulx` (flags
//! untouched), `bzhi`, `andn`, `bextr`, `blsr`, `blsi`, `blsmsk` (flags as the SDM lists
//! them), with a register or memory source (ModRM, SIB, displacement, RIP-relative; read
//! through the caller, which walks the vCPU's page tables). Another VEX instruction, an
//! unreadable operand or a bad encoding leaves the emulation failure standing.

use kvm_bindings::kvm_regs;

/// The first byte of a three-byte VEX prefix.
pub const VEX3: u8 = 0xc4;

const CF: u64 = 1;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;
/// Flags the BMI1 instructions define or clear (PF and AF are undefined; cleared here).
const ARITH: u64 = CF | (1 << 2) | (1 << 4) | ZF | SF | OF;

/// The general register numbered `index` as instructions encode it (0 RAX .. 15 R15).
pub fn reg_mut(regs: &mut kvm_regs, index: u8) -> &mut u64 {
    match index & 15 {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        _ => &mut regs.r15,
    }
}

fn get(regs: &mut kvm_regs, index: u8) -> u64 {
    *reg_mut(regs, index)
}

/// The r/m operand.
enum Rm {
    /// A register (its number).
    Reg(u8),
    /// Memory at this guest-virtual address.
    Mem(u64),
}

/// A decoded VEX instruction.
struct Vex {
    map: u8,
    w: bool,
    pp: u8,
    vvvv: u8,
    opcode: u8,
    reg: u8,
    rm: Rm,
    modrm_reg: u8,
    len: u64,
    imm: u8,
}

/// Little-endian `n` bytes of `b` from `at`, sign-extended.
fn disp(b: &[u8], at: usize, n: usize) -> Option<u64> {
    Some(match n {
        0 => 0,
        1 => *b.get(at)? as i8 as i64 as u64,
        _ => i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as i64 as u64,
    })
}

fn decode(insn: &[u8], regs: &mut kvm_regs) -> Option<Vex> {
    let [VEX3, b1, b2, opcode, modrm, ..] = *insn else {
        return None;
    };
    let (rex_r, rex_x, rex_b) = ((!b1 >> 7) & 1, (!b1 >> 6) & 1, (!b1 >> 5) & 1);
    let map = b1 & 0x1f;
    if map != 2 && map != 3 {
        return None;
    }
    let (mode, rm_bits) = (modrm >> 6, modrm & 7);
    let mut at = 5;
    let rm = if mode == 3 {
        Rm::Reg((rex_b << 3) | rm_bits)
    } else {
        let mut base = Some((rex_b << 3) | rm_bits);
        let mut index = None;
        let mut scale = 0;
        let mut rip_relative = false;
        if rm_bits == 4 {
            let sib = *insn.get(at)?;
            at += 1;
            scale = sib >> 6;
            let i = (rex_x << 3) | ((sib >> 3) & 7);
            index = (i != 4).then_some(i);
            base = Some((rex_b << 3) | (sib & 7));
            if mode == 0 && sib & 7 == 5 {
                base = None;
            }
        } else if mode == 0 && rm_bits == 5 {
            base = None;
            rip_relative = true;
        }
        let n = match mode {
            1 => 1,
            2 => 4,
            _ if base.is_none() => 4,
            _ => 0,
        };
        let mut addr = disp(insn, at, n)?;
        at += n;
        if let Some(b) = base {
            addr = addr.wrapping_add(get(regs, b));
        }
        if let Some(i) = index {
            addr = addr.wrapping_add(get(regs, i) << scale);
        }
        if rip_relative {
            // Relative to the next instruction: add its length once it is known.
            let len = at as u64 + u64::from(map == 3);
            addr = addr.wrapping_add(regs.rip).wrapping_add(len);
        }
        Rm::Mem(addr)
    };
    let imm = if map == 3 {
        let imm = *insn.get(at)?;
        at += 1;
        imm
    } else {
        0
    };
    Some(Vex {
        map,
        w: b2 & 0x80 != 0,
        pp: b2 & 3,
        vvvv: (!b2 >> 3) & 15,
        opcode,
        reg: (rex_r << 3) | ((modrm >> 3) & 7),
        rm,
        modrm_reg: (modrm >> 3) & 7,
        len: at as u64,
        imm,
    })
}

/// Flags of a BMI1 result: ZF and SF from it, CF as given, OF cleared.
fn flags(regs: &mut kvm_regs, result: u64, bits: u32, carry: bool) {
    let mut f = regs.rflags & !ARITH;
    if result == 0 {
        f |= ZF;
    }
    if result >> (bits - 1) & 1 != 0 {
        f |= SF;
    }
    if carry {
        f |= CF;
    }
    regs.rflags = f;
}

/// Completes the instruction `insn` (KVM's bytes, starting at `regs.rip`) in `regs`, reading
/// a memory operand with `read` (guest-virtual address, bytes to fill; false when it cannot);
/// false when it is not one this module completes (nothing changed then).
pub fn complete(
    insn: &[u8],
    regs: &mut kvm_regs,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
) -> bool {
    let Some(v) = decode(insn, regs) else {
        return false;
    };
    let bits: u32 = if v.w { 64 } else { 32 };
    let mask = if v.w { u64::MAX } else { u64::from(u32::MAX) };
    let src = match v.rm {
        Rm::Reg(r) => get(regs, r) & mask,
        Rm::Mem(addr) => {
            let mut b = [0u8; 8];
            let n = (bits / 8) as usize;
            if !read(addr, &mut b[..n]) {
                return false;
            }
            u64::from_le_bytes(b)
        }
    };
    let vreg = get(regs, v.vvvv) & mask;
    let count = (vreg & u64::from(bits - 1)) as u32;
    let (dest, value) = match (v.map, v.opcode, v.pp) {
        (2, 0xf7, 1) => (v.reg, src << count),
        (2, 0xf7, 3) => (v.reg, src >> count),
        (2, 0xf7, 2) => {
            let shifted = if v.w {
                ((src as i64) >> count) as u64
            } else {
                (((src as u32) as i32) >> count) as u32 as u64
            };
            (v.reg, shifted)
        }
        (3, 0xf0, 3) => {
            let n = u32::from(v.imm) & (bits - 1);
            let r = if v.w {
                src.rotate_right(n)
            } else {
                u64::from((src as u32).rotate_right(n))
            };
            (v.reg, r)
        }
        (2, 0xf6, 3) => {
            // mulx: reg (high) : vvvv (low) = rdx * rm; flags untouched.
            let product = u128::from(regs.rdx & mask) * u128::from(src);
            let (low, high) = if v.w {
                (product as u64, (product >> 64) as u64)
            } else {
                (product as u64 & mask, (product >> 32) as u64 & mask)
            };
            // The SDM writes the low half first, so the high half wins when both name one.
            *reg_mut(regs, v.vvvv) = low;
            (v.reg, high)
        }
        (2, 0xf5, 0) => {
            let index = (vreg & 0xff) as u32;
            let r = if index < bits {
                src & ((1u64 << index) - 1)
            } else {
                src
            };
            flags(regs, r & mask, bits, index > bits - 1);
            (v.reg, r)
        }
        (2, 0xf2, 0) => {
            let r = !vreg & src & mask;
            flags(regs, r, bits, false);
            (v.reg, r)
        }
        (2, 0xf7, 0) => {
            let start = (vreg & 0xff) as u32;
            let len = ((vreg >> 8) & 0xff) as u32;
            let shifted = if start < bits { src >> start } else { 0 };
            let r = if len < bits {
                shifted & ((1u64 << len) - 1)
            } else {
                shifted
            };
            flags(regs, r, bits, false);
            (v.reg, r)
        }
        (2, 0xf3, 0) => {
            let r = match v.modrm_reg {
                1 => src & src.wrapping_sub(1),
                2 => src ^ src.wrapping_sub(1),
                3 => src & src.wrapping_neg(),
                _ => return false,
            } & mask;
            // blsr/blsmsk: CF = source was zero; blsi: CF = source was not zero.
            let carry = if v.modrm_reg == 3 { src != 0 } else { src == 0 };
            flags(regs, r, bits, carry);
            if v.modrm_reg == 2 {
                regs.rflags &= !ZF;
            }
            (v.vvvv, r)
        }
        _ => return false,
    };
    *reg_mut(regs, dest) = value & mask;
    regs.rip = regs.rip.wrapping_add(v.len);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(insn: &[u8], set: impl Fn(&mut kvm_regs)) -> Option<kvm_regs> {
        let mut r = kvm_regs {
            rip: 0x1000,
            rflags: 2,
            ..Default::default()
        };
        set(&mut r);
        let mut memory = |addr: u64, buf: &mut [u8]| {
            // Guest memory for the tests: each byte is its address's low byte.
            buf.iter_mut().zip(addr..).for_each(|(b, a)| *b = a as u8);
            addr < 0x10_0000
        };
        complete(insn, &mut r, &mut memory).then_some(r)
    }

    #[test]
    fn shlx_from_the_linux_decompressor() {
        // c4 42 69 f7 c0: shlx %edx,%r8d,%r8d
        let r = run(&[0xc4, 0x42, 0x69, 0xf7, 0xc0], |r| {
            r.r8 = 0xffff_ffff_0000_0003;
            r.rdx = 33;
        })
        .unwrap();
        assert_eq!(r.r8, 6, "32-bit: count mod 32, upper half cleared");
        assert_eq!(r.rip, 0x1005);
        assert_eq!(r.rflags, 2, "flags untouched");
    }

    #[test]
    fn shrx_sarx_rorx_64() {
        // shrx %rcx,%rax,%rbx: c4 e2 f3 f7 d8 (W1, vvvv=rcx, pp=F2)
        let r = run(&[0xc4, 0xe2, 0xf3, 0xf7, 0xd8], |r| {
            r.rax = 0x8000_0000_0000_0000;
            r.rcx = 4;
        })
        .unwrap();
        assert_eq!(r.rbx, 0x0800_0000_0000_0000);
        // sarx %rcx,%rax,%rbx: pp=F3
        let r = run(&[0xc4, 0xe2, 0xf2, 0xf7, 0xd8], |r| {
            r.rax = 0x8000_0000_0000_0000;
            r.rcx = 4;
        })
        .unwrap();
        assert_eq!(r.rbx, 0xf800_0000_0000_0000);
        // rorx $8,%rax,%rbx: c4 e3 fb f0 d8 08
        let r = run(&[0xc4, 0xe3, 0xfb, 0xf0, 0xd8, 0x08], |r| r.rax = 0x12).unwrap();
        assert_eq!(r.rbx, 0x1200_0000_0000_0000);
        assert_eq!(r.rip, 0x1006);
    }

    #[test]
    fn bzhi_andn_blsr_set_flags() {
        // bzhi %ecx,%eax,%ebx: c4 e2 70 f5 d8
        let r = run(&[0xc4, 0xe2, 0x70, 0xf5, 0xd8], |r| {
            r.rax = 0xffff_ffff;
            r.rcx = 4;
        })
        .unwrap();
        assert_eq!((r.rbx, r.rflags & ARITH), (0xf, 0));
        // andn %eax,%ecx,%ebx (ebx = ~ecx & eax): c4 e2 70 f2 d8
        let r = run(&[0xc4, 0xe2, 0x70, 0xf2, 0xd8], |r| {
            r.rax = 0xf0;
            r.rcx = 0xff;
        })
        .unwrap();
        assert_eq!((r.rbx, r.rflags & ZF), (0, ZF));
        // blsr %eax,%ebx: c4 e2 60 f3 c8 (vvvv = ebx is the destination)
        let r = run(&[0xc4, 0xe2, 0x60, 0xf3, 0xc8], |r| r.rax = 0b1100).unwrap();
        assert_eq!(r.rbx, 0b1000);
    }

    #[test]
    fn memory_operands_are_read_through_the_caller() {
        // c4 e2 4b f7 01: shrx %esi,(%rcx),%eax, from the Linux decompressor.
        let r = run(&[0xc4, 0xe2, 0x4b, 0xf7, 0x01], |r| {
            r.rcx = 0x2000;
            r.rsi = 8;
        })
        .unwrap();
        assert_eq!(
            r.rax, 0x0003_0201,
            "bytes 00 01 02 03 at 0x2000, shifted right by 8"
        );
        assert_eq!(r.rip, 0x1005);
        // shrx %esi,0x10(%rcx,%rdx,4),%eax: c4 e2 4b f7 44 91 10
        let r = run(&[0xc4, 0xe2, 0x4b, 0xf7, 0x44, 0x91, 0x10], |r| {
            r.rcx = 0x2000;
            r.rdx = 1;
        })
        .unwrap();
        assert_eq!(r.rax, 0x1716_1514);
        assert_eq!(r.rip, 0x1007);
        // shrx %esi,0x100(%rip),%eax: c4 e2 4b f7 05 00 01 00 00 (from 0x1009)
        let r = run(&[0xc4, 0xe2, 0x4b, 0xf7, 0x05, 0, 1, 0, 0], |_| {}).unwrap();
        assert_eq!(r.rax, 0x0c0b_0a09);
        // An unreadable operand leaves the failure standing.
        assert!(run(&[0xc4, 0xe2, 0x4b, 0xf7, 0x01], |r| r.rcx = 1 << 40).is_none());
    }

    #[test]
    fn other_instructions_are_left_alone() {
        assert!(run(&[0xc5, 0xf8, 0x77], |_| {}).is_none());
        assert!(run(&[0xc4, 0xe2], |_| {}).is_none());
        assert!(run(&[0xc4, 0xe1, 0x70, 0xf5, 0xd8], |_| {}).is_none());
    }
}
