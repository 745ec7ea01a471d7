//! Instructions a host's emulator may lack that the vCPU layer completes itself, exactly as
//! the SDM defines them, when KVM reports an emulation failure on one (HOST.md: a software KVM
//! interprets CPL0 code and fails on some instructions). A host that runs them never gets here.
//!
//! - `fwait`/`wait` (`0x9B`): checks for a pending unmasked x87 exception. With FSW.ES set it
//!   raises #MF (CR0.NE set) — the VMM injects it; otherwise it does nothing and RIP moves
//!   past it. (With CR0.NE clear the legacy FERR# path applies; hvtrace emulates no FERR#
//!   line, so the failure stays fatal there.)
//! - `ldmxcsr m32` / `stmxcsr m32` (`0F AE /2`, `/3`; Linux's `kernel_fpu_begin` runs
//!   `ldmxcsr`): decoded with iced-x86, the operand's linear address from the registers and
//!   segment bases, translated through the guest's page tables (`KVM_TRANSLATE`) and read or
//!   written in guest RAM; MXCSR read and written in the vCPU's XSAVE image. Faults as the
//!   SDM lists them: #UD (CR0.EM set or CR4.OSFXSR clear), #NM (CR0.TS), #GP(0) for an
//!   `ldmxcsr` value with a bit outside MXCSR_MASK. An operand that would page-fault (not
//!   mapped, or read-only under CR0.WP) or is not RAM is not completed: the failure stands.

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

/// Guest RAM as the vCPU layer may touch it to complete an instruction with a memory
/// operand (guest-physical addresses; false where there is no RAM).
pub trait GuestRam {
    /// Reads `buf.len()` bytes at `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Writes `buf` at `gpa`.
    fn write(&self, gpa: u64, buf: &[u8]) -> bool;
}

/// The invalid-opcode exception.
const UD_VECTOR: u8 = 6;
/// Device not available.
const NM_VECTOR: u8 = 7;
/// General protection.
const GP_VECTOR: u8 = 13;
/// CR0.EM: x87/SSE emulation (SSE instructions raise #UD).
const CR0_EM: u64 = 1 << 2;
/// CR0.TS: task switched (SSE instructions raise #NM).
const CR0_TS: u64 = 1 << 3;
/// CR0.WP: supervisor writes honour read-only pages.
const CR0_WP: u64 = 1 << 16;
/// CR4.OSFXSR: the OS supports SSE (FXSAVE/FXRSTOR).
const CR4_OSFXSR: u64 = 1 << 9;
/// The MXCSR_MASK the SDM says to assume when FXSAVE stores 0 there (DAZ not supported).
pub const DEFAULT_MXCSR_MASK: u32 = 0xffbf;

/// `ldmxcsr m32` (load) or `stmxcsr m32` (store), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MxcsrAccess {
    /// `stmxcsr`: MXCSR to memory; else `ldmxcsr`: memory to MXCSR.
    pub store: bool,
    /// The operand's linear address.
    pub address: u64,
    /// Instruction length.
    pub len: u64,
}

/// What completing an `ldmxcsr`/`stmxcsr` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxcsrOutcome {
    /// The access happened and RIP moved past the instruction.
    Completed(MxcsrAccess),
    /// A fault the SDM lists for the instruction was injected (RIP stays on it): #UD, #NM,
    /// or #GP(0) for an `ldmxcsr` value with reserved bits set.
    Raised(u8),
    /// Not completed (the emulation failure stands), with the reason: not one of these
    /// instructions, or an operand hvtrace does not fault for (an unmapped or read-only
    /// page, which would be a #PF, or memory that is not RAM).
    Unsupported(String),
}

/// Decodes `insn` (the failed instruction's bytes, code of `bitness` 16/32/64 at `rip`) as
/// `ldmxcsr`/`stmxcsr` with a memory operand and computes its linear address from `regs`
/// and the segment bases in `sregs`; `None` for anything else (a LOCK prefix included:
/// that is #UD on hardware, left to the host).
pub fn decode_mxcsr(
    insn: &[u8],
    bitness: u32,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
) -> Option<MxcsrAccess> {
    use iced_x86::{Code, Decoder, DecoderOptions, Register};
    let mut decoder = Decoder::with_ip(bitness, insn, regs.rip, DecoderOptions::NONE);
    let decoded = decoder.decode();
    let store = match decoded.code() {
        Code::Ldmxcsr_m32 => false,
        Code::Stmxcsr_m32 => true,
        _ => return None,
    };
    if decoded.has_lock_prefix() {
        return None;
    }
    let gpr = |r: Register| -> Option<u64> {
        let full = match r.full_register() {
            Register::RAX => regs.rax,
            Register::RBX => regs.rbx,
            Register::RCX => regs.rcx,
            Register::RDX => regs.rdx,
            Register::RSI => regs.rsi,
            Register::RDI => regs.rdi,
            Register::RBP => regs.rbp,
            Register::RSP => regs.rsp,
            Register::R8 => regs.r8,
            Register::R9 => regs.r9,
            Register::R10 => regs.r10,
            Register::R11 => regs.r11,
            Register::R12 => regs.r12,
            Register::R13 => regs.r13,
            Register::R14 => regs.r14,
            Register::R15 => regs.r15,
            _ => return None,
        };
        Some(match r.size() {
            2 => full & 0xffff,
            4 => full & 0xffff_ffff,
            _ => full,
        })
    };
    let segment_base = |r: Register| -> Option<u64> {
        let segment = match r {
            Register::FS => &sregs.fs,
            Register::GS => &sregs.gs,
            // Long mode ignores the other bases.
            _ if bitness == 64 => return Some(0),
            Register::ES => &sregs.es,
            Register::CS => &sregs.cs,
            Register::SS => &sregs.ss,
            Register::DS => &sregs.ds,
            _ => return None,
        };
        Some(segment.base)
    };
    let address = decoded.virtual_address(0, 0, |r, _, _| {
        if r.is_segment_register() {
            segment_base(r)
        } else {
            gpr(r)
        }
    })?;
    let address = if bitness == 64 {
        address
    } else {
        address & 0xffff_ffff
    };
    Some(MxcsrAccess {
        store,
        address,
        len: decoded.len() as u64,
    })
}

/// The fault an SSE instruction takes before touching its operand, per the SDM's
/// "Exceptions" for `ldmxcsr`/`stmxcsr`: #UD when CR0.EM is set or CR4.OSFXSR clear,
/// else #NM when CR0.TS is set.
pub fn sse_fault(cr0: u64, cr4: u64) -> Option<u8> {
    if cr0 & CR0_EM != 0 || cr4 & CR4_OSFXSR == 0 {
        Some(UD_VECTOR)
    } else if cr0 & CR0_TS != 0 {
        Some(NM_VECTOR)
    } else {
        None
    }
}

/// Whether `ldmxcsr` of `value` raises #GP(0): a bit set outside `mxcsr_mask` (MXCSR_MASK
/// as FXSAVE stores it; 0 there means [`DEFAULT_MXCSR_MASK`]).
pub fn ldmxcsr_faults(value: u32, mxcsr_mask: u32) -> bool {
    let mask = if mxcsr_mask == 0 {
        DEFAULT_MXCSR_MASK
    } else {
        mxcsr_mask
    };
    value & !mask != 0
}

/// Where a vCPU's MXCSR is read and written: its XSAVE image (`KVM_GET_XSAVE`, whose first
/// 512 bytes are the FXSAVE layout: MXCSR at byte 24, MXCSR_MASK at 28), or `KVM_GET_FPU`
/// where the host has no XSAVE ioctl. (This project's software KVM returns MXCSR 0 from
/// `KVM_GET_FPU` while the XSAVE image has the true value, so XSAVE comes first.)
enum SseState {
    Xsave(Box<kvm_bindings::kvm_xsave>),
    Fpu(Box<kvm_bindings::kvm_fpu>),
}

/// Dword index of MXCSR, and of MXCSR_MASK, in the XSAVE image.
const XSAVE_MXCSR: usize = 6;
const XSAVE_MXCSR_MASK: usize = 7;
/// Dword index of XSTATE_BV's low half (the XSAVE header starts at byte 512).
const XSAVE_HEADER_BV: usize = 128;
/// XSTATE_BV bit of the SSE state (XMM registers and MXCSR).
const XFEATURE_SSE: u32 = 1 << 1;

impl SseState {
    fn get(fd: &VcpuFd) -> Result<Self, kvm_ioctls::Error> {
        match fd.get_xsave() {
            Ok(xsave) => Ok(Self::Xsave(Box::new(xsave))),
            Err(_) => fd.get_fpu().map(|f| Self::Fpu(Box::new(f))),
        }
    }

    fn mxcsr(&self) -> u32 {
        match self {
            Self::Xsave(x) => x.region[XSAVE_MXCSR],
            Self::Fpu(f) => f.mxcsr,
        }
    }

    /// MXCSR_MASK, or 0 (the SDM's "use the default") where only `KVM_GET_FPU` answers.
    fn mxcsr_mask(&self) -> u32 {
        match self {
            Self::Xsave(x) => x.region[XSAVE_MXCSR_MASK],
            Self::Fpu(_) => 0,
        }
    }

    fn set_mxcsr(&mut self, fd: &VcpuFd, value: u32) -> Result<(), kvm_ioctls::Error> {
        match self {
            Self::Xsave(x) => {
                x.region[XSAVE_MXCSR] = value;
                // XSTATE_BV's SSE bit: while it is clear (SSE state in its initial
                // configuration) KVM_SET_XSAVE ignores the MXCSR field. Setting it loads the XMM
                // registers from the image, which KVM_GET_XSAVE filled with their values (the
                // initial ones while the bit was clear).
                x.region[XSAVE_HEADER_BV] |= XFEATURE_SSE;
                // SAFETY: `x` is the 4096-byte image KVM_GET_XSAVE just filled for this vCPU,
                // changed only in MXCSR. KVM_SET_XSAVE reads more than 4096 bytes only when the
                // process enabled dynamic XSTATE features (arch_prctl), which hvtrace never
                // does, so the kernel reads only this struct.
                unsafe { fd.set_xsave(x) }
            }
            Self::Fpu(f) => {
                f.mxcsr = value;
                fd.set_fpu(f)
            }
        }
    }
}

/// Guest-physical addresses of the 4 bytes at linear `address`, one per page touched;
/// `Err` names the page that does not translate (or is read-only, for a `store` where
/// CR0.WP protects it).
fn translate_operand(fd: &VcpuFd, address: u64, store: bool, cr0: u64) -> Result<[u64; 4], String> {
    let mut gpas = [0u64; 4];
    for (i, gpa) in gpas.iter_mut().enumerate() {
        let linear = address.wrapping_add(i as u64);
        let t = fd
            .translate_gva(linear)
            .map_err(|e| format!("KVM_TRANSLATE of {linear:#x} failed: {e}"))?;
        if t.valid == 0 {
            return Err(format!("operand at {linear:#x} is not mapped (a #PF)"));
        }
        if store && t.writeable == 0 && cr0 & CR0_WP != 0 {
            return Err(format!("operand at {linear:#x} is read-only (a #PF)"));
        }
        *gpa = t.physical_address;
    }
    Ok(gpas)
}

/// Completes the `ldmxcsr`/`stmxcsr` whose bytes are `insn` at `regs.rip` on `fd` (changes
/// `regs` in place; the caller writes them back): MXCSR through `KVM_GET_FPU`/`KVM_SET_FPU`,
/// the operand through the guest's page tables (`KVM_TRANSLATE`) and `ram`.
pub fn complete_mxcsr(
    fd: &VcpuFd,
    regs: &mut kvm_regs,
    sregs: &kvm_sregs,
    insn: &[u8],
    ram: &dyn GuestRam,
) -> Result<MxcsrOutcome, kvm_ioctls::Error> {
    let bitness = if sregs.cs.l != 0 {
        64
    } else if sregs.cs.db != 0 {
        32
    } else {
        16
    };
    let Some(access) = decode_mxcsr(insn, bitness, regs, sregs) else {
        return Ok(MxcsrOutcome::Unsupported(
            "not ldmxcsr/stmxcsr with a memory operand".into(),
        ));
    };
    if let Some(vector) = sse_fault(sregs.cr0, sregs.cr4) {
        crate::reflect::inject_exception(fd, vector)?;
        return Ok(MxcsrOutcome::Raised(vector));
    }
    let gpas = match translate_operand(fd, access.address, access.store, sregs.cr0) {
        Ok(gpas) => gpas,
        Err(why) => return Ok(MxcsrOutcome::Unsupported(why)),
    };
    let mut state = SseState::get(fd)?;
    if access.store {
        for (gpa, byte) in gpas.iter().zip(state.mxcsr().to_le_bytes()) {
            if !ram.write(*gpa, &[byte]) {
                return Ok(MxcsrOutcome::Unsupported(format!(
                    "operand at guest-physical {gpa:#x} is not RAM"
                )));
            }
        }
    } else {
        let mut bytes = [0u8; 4];
        for (gpa, byte) in gpas.iter().zip(bytes.iter_mut()) {
            if !ram.read(*gpa, std::slice::from_mut(byte)) {
                return Ok(MxcsrOutcome::Unsupported(format!(
                    "operand at guest-physical {gpa:#x} is not RAM"
                )));
            }
        }
        let value = u32::from_le_bytes(bytes);
        if ldmxcsr_faults(value, state.mxcsr_mask()) {
            inject_fault_with_code(fd, GP_VECTOR, 0)?;
            return Ok(MxcsrOutcome::Raised(GP_VECTOR));
        }
        state.set_mxcsr(fd, value)?;
    }
    regs.rip = regs.rip.wrapping_add(access.len);
    Ok(MxcsrOutcome::Completed(access))
}

/// Injects fault `vector` with error code `code` (#GP, ...) into `fd`.
fn inject_fault_with_code(fd: &VcpuFd, vector: u8, code: u32) -> Result<(), kvm_ioctls::Error> {
    let mut events = fd.get_vcpu_events()?;
    events.exception.injected = 1;
    events.exception.nr = vector;
    events.exception.has_error_code = 1;
    events.exception.pending = 0;
    events.exception.error_code = code;
    events.exception_has_payload = 0;
    events.exception_payload = 0;
    fd.set_vcpu_events(&events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> kvm_regs {
        kvm_regs {
            rip: 0x1000,
            rax: 0x10,
            rbx: 0xffff_ffff_0000_2000,
            rbp: 0x3000,
            rsp: 0x7000,
            r12: 0x40,
            ..Default::default()
        }
    }

    fn sregs() -> kvm_sregs {
        let mut s = kvm_sregs::default();
        s.fs.base = 0x10_0000;
        s.gs.base = 0xffff_8880_0000_0000;
        s.ds.base = 0x5000;
        s
    }

    fn decode(bytes: &[u8], bitness: u32) -> Option<MxcsrAccess> {
        decode_mxcsr(bytes, bitness, &regs(), &sregs())
    }

    #[test]
    fn ldmxcsr_and_stmxcsr_operands_are_found_as_the_sdm_encodes_them() {
        // 0F AE /2 = ldmxcsr, /3 = stmxcsr (SDM Vol. 2B); ModRM picks the operand.
        let cases: &[(&[u8], u32, bool, u64, u64)] = &[
            // ldmxcsr 0x8(%rsp): kernel_fpu_begin's form (ModRM 0x54, SIB 0x24, disp8).
            (&[0x0f, 0xae, 0x54, 0x24, 0x08], 64, false, 0x7008, 5),
            // stmxcsr -0x4(%rbp)
            (&[0x0f, 0xae, 0x5d, 0xfc], 64, true, 0x2ffc, 4),
            // ldmxcsr (%rax,%r12,2) with REX.X
            (&[0x42, 0x0f, 0xae, 0x14, 0x60], 64, false, 0x10 + 0x80, 5),
            // ldmxcsr 0x10(%rip): relative to the next instruction
            (
                &[0x0f, 0xae, 0x15, 0x10, 0, 0, 0],
                64,
                false,
                0x1000 + 7 + 0x10,
                7,
            ),
            // stmxcsr %gs:0x20 (absolute, with SIB, GS base applies in long mode)
            (
                &[0x65, 0x0f, 0xae, 0x1c, 0x25, 0x20, 0, 0, 0],
                64,
                true,
                0xffff_8880_0000_0020,
                9,
            ),
            // stmxcsr (%ebx) in 32-bit code: DS base applies, the address wraps at 4 GiB.
            (&[0x0f, 0xae, 0x1b], 32, true, 0x7000, 3),
        ];
        for &(bytes, bitness, store, address, len) in cases {
            assert_eq!(
                decode(bytes, bitness),
                Some(MxcsrAccess {
                    store,
                    address,
                    len
                }),
                "{bytes:x?}"
            );
        }
    }

    #[test]
    fn other_instructions_are_not_taken_for_mxcsr_accesses() {
        // fxsave (0F AE /0), xrstor (0F AE /5), lfence (0F AE E8), vldmxcsr (VEX), lock-prefixed.
        for bytes in [
            &[0x0f, 0xae, 0x00][..],
            &[0x0f, 0xae, 0x28],
            &[0x0f, 0xae, 0xe8],
            &[0xc5, 0xf8, 0xae, 0x10],
            &[0xf0, 0x0f, 0xae, 0x10],
            &[0x9b],
            &[],
        ] {
            assert_eq!(decode(bytes, 64), None, "{bytes:x?}");
        }
    }

    #[test]
    fn sse_faults_follow_cr0_and_cr4() {
        assert_eq!(sse_fault(0x8000_0033, CR4_OSFXSR), None);
        assert_eq!(sse_fault(0x8000_0033 | CR0_TS, CR4_OSFXSR), Some(NM_VECTOR));
        assert_eq!(sse_fault(CR0_EM | CR0_TS, CR4_OSFXSR), Some(UD_VECTOR));
        assert_eq!(sse_fault(0x8000_0033, 0), Some(UD_VECTOR));
    }

    #[test]
    fn reserved_mxcsr_bits_raise_gp() {
        // The reset value and every defined bit of a DAZ-capable mask are fine.
        assert!(!ldmxcsr_faults(0x1f80, 0xffff));
        assert!(!ldmxcsr_faults(0xffff, 0xffff));
        // Bits 31:16 are reserved; with the default mask (mask 0 stored) DAZ (bit 6) too.
        assert!(ldmxcsr_faults(0x1_1f80, 0xffff));
        assert!(ldmxcsr_faults(0x1f80 | 0x40, 0));
        assert!(!ldmxcsr_faults(0x1f80, 0));
        // AMD's MM bit (17) where MXCSR_MASK has it.
        assert!(!ldmxcsr_faults(0x2_1f80, 0x2_ffff));
    }
}
