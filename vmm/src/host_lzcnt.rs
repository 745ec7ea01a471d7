//! Whether this host runs `lzcnt` at CPL0 as the SDM defines it, probed in a throwaway VM.
//!
//! `lzcnt` (`F3 0F BD`) was `rep bsr` before LZCNT existed, and an instruction emulator that
//! ignores the `F3` prefix runs it as `bsr`: no exit, just a wrong result (for 1, `bsr` gives
//! 0 where `lzcnt` gives 31). Linux's zstd decompressor (in every zstd bzImage) picks its
//! BMI2 code path from CPUID, which uses `lzcnt`; on such a host it reports "ZSTD-compressed
//! data is corrupt". The probe runs `mov $1,%eax; lzcnt %eax,%ecx; hlt` (one vCPU, the trap
//! probes' VM, `crate::host_traps`) and reads ECX back: 31 is right, 0 is `bsr`.
//!
//! Probed once per process, only when a bzImage boots. Where `lzcnt` is wrong, the VM's build
//! traps the decompressor's `lzcnt` sites (`decompressor_traps`) and the vCPU's `hlt`
//! exit completes them ([`complete_count`]), `tzcnt` too (`F3 0F BC`, which such a host
//! runs as `bsf`: the same count for a non-zero source, different flags).

use std::sync::OnceLock;

use kvm_bindings::{kvm_regs, kvm_run};
use kvm_ioctls::VcpuExit;
use tracer::bzimage::SetupHeader;
use vcpu::bmi::reg_mut;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::error::VmmError;
use crate::host_traps::{bounded, probe_setup, probe_vm, PROBE_BOUND};
use crate::irqchip::IrqChipMode;
use crate::loader::{BootProtocol, LoadedImage};

/// `mov $1,%eax; lzcnt %eax,%ecx; hlt`.
const TEST_CODE: [u8; 10] = [0xb8, 1, 0, 0, 0, 0xf3, 0x0f, 0xbd, 0xc8, 0xf4];

/// What the host does with a CPL0 `lzcnt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lzcnt {
    /// It counts leading zeros.
    Correct,
    /// It runs as `bsr` (the `F3` prefix ignored).
    RunsAsBsr,
    /// Something else (an emulation failure, another result, the probe failed).
    Other(String),
}

/// This host's answer, probed on first use.
pub fn host_lzcnt() -> &'static Lzcnt {
    static HOST: OnceLock<Lzcnt> = OnceLock::new();
    HOST.get_or_init(probe)
}

/// Probes the host (bounded by [`PROBE_BOUND`]).
pub fn probe() -> Lzcnt {
    let (kvm, cpuid) = match probe_setup() {
        Ok(s) => s,
        Err(why) => return Lzcnt::Other(why),
    };
    let (result, _) = bounded("probe-lzcnt", PROBE_BOUND, move |slot| {
        let mut vm = probe_vm(&kvm, &cpuid, &TEST_CODE)?;
        slot.publish(vm.vcpu.get_kvm_run() as *mut kvm_run);
        let exit = match vm.vcpu.run() {
            Ok(VcpuExit::Hlt) => Ok(()),
            Ok(other) => Err(format!("unexpected exit {other:?}")),
            Err(e) => Err(format!("KVM_RUN failed: {e}")),
        };
        slot.withdraw();
        exit?;
        vm.vcpu
            .get_regs()
            .map(|r| r.rcx)
            .map_err(|e| format!("KVM_GET_REGS failed: {e}"))
    });
    match result {
        Ok(Ok(31)) => Lzcnt::Correct,
        Ok(Ok(0)) => Lzcnt::RunsAsBsr,
        Ok(Ok(other)) => Lzcnt::Other(format!("lzcnt of 1 gave {other}")),
        Ok(Err(why)) => Lzcnt::Other(why),
        Err(outcome) => Lzcnt::Other(outcome.to_string()),
    }
}

/// The length of a register-form `lzcnt`/`tzcnt` (`F3 [REX] 0F BD|BC /r`, mod = 3) at the
/// start of `bytes`, if that is what they hold.
fn count_insn_len(bytes: &[u8]) -> Option<usize> {
    let rex = usize::from(matches!(bytes.get(1), Some(0x40..=0x4f)));
    match bytes.get(..4 + rex)? {
        [0xf3, .., 0x0f, 0xbc | 0xbd, modrm] if modrm >> 6 == 3 => Some(4 + rex),
        _ => None,
    }
}

/// Completes the register-form `lzcnt` or `tzcnt` whose original bytes are `bytes` in `regs`
/// (RIP on the instruction), as the SDM defines it: the count (the operand size for a zero
/// source), CF = the source was zero, ZF = the result is zero, OF/SF/PF/AF cleared
/// (undefined). False when the bytes are not such an instruction.
pub fn complete_count(bytes: &[u8], regs: &mut kvm_regs) -> bool {
    let Some(len) = count_insn_len(bytes) else {
        return false;
    };
    let rex = if len == 5 { bytes[1] } else { 0 };
    let (opcode, modrm) = (bytes[len - 2], bytes[len - 1]);
    let wide = rex & 8 != 0;
    let reg = ((rex & 4) << 1) | ((modrm >> 3) & 7);
    let rm = ((rex & 1) << 3) | (modrm & 7);
    let src = *reg_mut(regs, rm);
    let (src, count) = match (wide, opcode) {
        (true, 0xbd) => (src, u64::from(src.leading_zeros())),
        (true, _) => (src, u64::from(src.trailing_zeros())),
        (false, 0xbd) => (src & 0xffff_ffff, u64::from((src as u32).leading_zeros())),
        (false, _) => (src & 0xffff_ffff, u64::from((src as u32).trailing_zeros())),
    };
    *reg_mut(regs, reg) = count;
    let mut flags = regs.rflags & !(1 | (1 << 2) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 11));
    if src == 0 {
        flags |= 1;
    }
    if count == 0 {
        flags |= 1 << 6;
    }
    regs.rflags = flags;
    regs.rip = regs.rip.wrapping_add(len as u64);
    true
}

/// Bytes of context before a site that identify it where the decompressor has moved itself.
const BEFORE: usize = 8;
/// Most bytes of a trapped instruction.
const MAX_LEN: usize = 5;
/// The `hlt` that replaces a site's first byte.
const HLT: u8 = 0xf4;

/// One trapped site: `BEFORE` bytes of context, then the instruction's original bytes.
#[derive(Debug)]
struct Site {
    window: [u8; BEFORE + MAX_LEN],
    len: usize,
}

impl Site {
    fn bytes(&self) -> &[u8] {
        &self.window[..BEFORE + self.len]
    }
}

/// The decompressor's `lzcnt` and `tzcnt` sites (a host that ignores `F3` on `0F BD` runs
/// `0F BC` as `bsf`, whose flags differ), trapped with `hlt` (the first byte, `F3`,
/// replaced): the decompressor copies itself elsewhere before it runs, traps included, so a
/// hit is recognised by the bytes around it, not by its address.
#[derive(Debug, Default)]
pub struct LzcntTraps {
    sites: Vec<Site>,
}

impl LzcntTraps {
    /// File offsets in the bzImage `image` of the decompressor's register-form `lzcnt` and
    /// `tzcnt` instructions (which iced-x86 decodes as such there): the protected-mode code
    /// outside the compressed payload.
    pub fn sites(image: &[u8], header: &SetupHeader) -> Vec<usize> {
        let start = header.kernel_offset();
        let payload = start + header.payload_offset as usize;
        let payload_end = payload + header.payload_length as usize;
        let mut out = Vec::new();
        for range in [start..payload, payload_end..image.len()] {
            let Some(code) = image.get(range.clone()) else {
                continue;
            };
            for i in 0..code.len() {
                let at = range.start + i;
                if code[i] == 0xf3 && at >= BEFORE {
                    if let Some(len) = count_insn_len(&code[i..]) {
                        if is_count(&code[i..i + len]) {
                            out.push(at);
                        }
                    }
                }
            }
        }
        out
    }

    /// Traps every site of `image`, loaded at `load_at` in `memory`.
    pub fn install(
        memory: &GuestMemoryMmap,
        image: &[u8],
        header: &SetupHeader,
        load_at: u64,
    ) -> Result<LzcntTraps, vm_memory::GuestMemoryError> {
        let mut sites = Vec::new();
        for at in Self::sites(image, header) {
            let len = count_insn_len(&image[at..]).unwrap_or(4);
            let mut window = [0; BEFORE + MAX_LEN];
            window[..BEFORE + len].copy_from_slice(&image[at - BEFORE..at + len]);
            let guest = load_at + (at - header.kernel_offset()) as u64;
            memory.write_slice(&[HLT], GuestAddress(guest))?;
            sites.push(Site { window, len });
        }
        Ok(LzcntTraps { sites })
    }

    /// How many sites are trapped.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// Whether no site is trapped.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// A `hlt` exit with `regs` (RIP after the `hlt`): if it is one of the traps, completes
    /// its instruction and returns true. The decompressor runs identity-mapped, so its
    /// addresses are read as guest-physical.
    pub fn on_hlt(&self, memory: &GuestMemoryMmap, regs: &mut kvm_regs) -> bool {
        if self.sites.is_empty() {
            return false;
        }
        let Some(from) = regs.rip.checked_sub(1 + BEFORE as u64) else {
            return false;
        };
        let mut seen = [0u8; BEFORE + MAX_LEN];
        if memory.read_slice(&mut seen, GuestAddress(from)).is_err() || seen[BEFORE] != HLT {
            return false;
        }
        let Some(site) = self.sites.iter().find(|s| {
            let b = s.bytes();
            b[..BEFORE] == seen[..BEFORE] && b[BEFORE + 1..] == seen[BEFORE + 1..b.len()]
        }) else {
            return false;
        };
        let rip = regs.rip;
        regs.rip = rip - 1;
        if complete_count(&site.bytes()[BEFORE..], regs) {
            return true;
        }
        regs.rip = rip;
        false
    }
}

/// Whether iced-x86 decodes all of `bytes` as one `lzcnt` or `tzcnt`.
fn is_count(bytes: &[u8]) -> bool {
    let mut d = iced_x86::Decoder::new(64, bytes, iced_x86::DecoderOptions::NONE);
    let insn = d.decode();
    matches!(
        insn.mnemonic(),
        iced_x86::Mnemonic::Lzcnt | iced_x86::Mnemonic::Tzcnt
    ) && insn.len() == bytes.len()
}

/// Traps the `lzcnt` sites of a bzImage's decompressor where this host runs `lzcnt` as `bsr`
/// (`crate::host_lzcnt`; probed only for a bzImage). The traps are `hlt`s, which reach
/// hvtrace only under `--irqchip emulated`: elsewhere the decompressor is left as it is, with
/// a warning.
pub(crate) fn decompressor_traps(
    memory: &GuestMemoryMmap,
    image: &[u8],
    loaded: &LoadedImage,
    irqchip: IrqChipMode,
) -> Result<LzcntTraps, VmmError> {
    let header = match (&loaded.protocol, SetupHeader::find(image)) {
        (BootProtocol::Linux64 { .. }, Some(h)) => h,
        _ => return Ok(LzcntTraps::default()),
    };
    if *host_lzcnt() != Lzcnt::RunsAsBsr || LzcntTraps::sites(image, &header).is_empty() {
        return Ok(LzcntTraps::default());
    }
    if irqchip != IrqChipMode::Emulated {
        eprintln!(
            "hvtrace: warning: this host runs lzcnt as bsr, and the bzImage's zstd decompressor uses lzcnt: it may report corrupt data (hvtrace traps those sites with hlt only under --irqchip emulated)"
        );
        return Ok(LzcntTraps::default());
    }
    let load_at = loaded.segments.first().map_or(0, |s| s.0);
    LzcntTraps::install(memory, image, &header, load_at).map_err(|source| VmmError::GuestWrite {
        what: "the decompressor's lzcnt traps",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_the_decompressor_forms() {
        // lzcnt %eax,%ecx (f3 0f bd c8) with eax = 1.
        let mut r = kvm_regs {
            rax: 1,
            rcx: 0xdead,
            rip: 0x100,
            rflags: 2,
            ..Default::default()
        };
        assert!(complete_count(&[0xf3, 0x0f, 0xbd, 0xc8], &mut r));
        assert_eq!((r.rcx, r.rip, r.rflags), (31, 0x104, 2));
        // lzcnt %esi,%eax with esi = 0: 32, CF set.
        let mut r = kvm_regs {
            rsi: 0xffff_ffff_0000_0000,
            ..Default::default()
        };
        assert!(complete_count(&[0xf3, 0x0f, 0xbd, 0xc6], &mut r));
        assert_eq!((r.rax, r.rflags & 1), (32, 1));
        assert!(!complete_count(&[0xf3, 0x0f, 0xbd, 0x00], &mut r));
        assert!(!complete_count(&[0x0f, 0xbd, 0xc8], &mut r));
        // lzcnt %edi,%r8d (f3 44 0f bd c7) and tzcnt %rdx,%rdx (f3 48 0f bc d2).
        let mut r = kvm_regs {
            rdi: 0x10,
            rdx: 0x100,
            ..Default::default()
        };
        assert!(complete_count(&[0xf3, 0x44, 0x0f, 0xbd, 0xc7], &mut r));
        assert_eq!((r.r8, r.rip), (27, 5));
        assert!(complete_count(&[0xf3, 0x48, 0x0f, 0xbc, 0xd2], &mut r));
        assert_eq!((r.rdx, r.rflags & 0x41), (8, 0));
        // tzcnt of 1: 0, ZF set.
        let mut r = kvm_regs {
            rcx: 1,
            ..Default::default()
        };
        assert!(complete_count(&[0xf3, 0x0f, 0xbc, 0xc9], &mut r));
        assert_eq!((r.rcx, r.rflags & 0x41), (0, 0x40));
    }

    #[test]
    fn traps_are_found_outside_the_payload_and_recognised_anywhere() {
        // A bzImage-shaped file: setup sector, then code with an lzcnt, a payload that
        // holds the same bytes (never patched), and code after it with another.
        let mut b = vec![0u8; 1024];
        b[0x1f1] = 1;
        b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        let lz = [
            0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xf3, 0x0f, 0xbd, 0xc8,
        ];
        b.extend_from_slice(&lz); // code: site at 1024 + 8
        b.extend_from_slice(&lz); // payload: offset 12, length 12
        let mut tail = lz;
        tail[0] = 0x31;
        b.extend_from_slice(&tail); // code after the payload: site at 1024 + 24 + 8
        b[0x248..0x24c].copy_from_slice(&12u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&12u32.to_le_bytes());
        let h = SetupHeader::find(&b).unwrap();
        assert_eq!(LzcntTraps::sites(&b, &h), vec![1032, 1056]);

        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        mem.write_slice(&b[1024..], GuestAddress(0x1_0000)).unwrap();
        let traps = LzcntTraps::install(&mem, &b, &h, 0x1_0000).unwrap();
        assert_eq!(traps.len(), 2);
        let mut byte = [0u8];
        mem.read_slice(&mut byte, GuestAddress(0x1_0008)).unwrap();
        assert_eq!(byte[0], HLT);
        mem.read_slice(&mut byte, GuestAddress(0x1_0014)).unwrap();
        assert_eq!(byte[0], 0xf3, "the payload is left alone");
        // The decompressor copies itself: the trap is recognised at its new place.
        let mut moved = [0u8; 48];
        mem.read_slice(&mut moved, GuestAddress(0x1_0000)).unwrap();
        mem.write_slice(&moved, GuestAddress(0x8_0000)).unwrap();
        let mut r = kvm_regs {
            rax: 0x100,
            rip: 0x8_0021, // after the hlt of the second site (0x8_0000 + 24 + 8)
            ..Default::default()
        };
        assert!(traps.on_hlt(&mem, &mut r));
        assert_eq!((r.rcx, r.rip), (23, 0x8_0024));
        // A guest's own hlt elsewhere is not a trap.
        let mut r = kvm_regs {
            rip: 0x9_0001,
            ..Default::default()
        };
        mem.write_slice(&[HLT], GuestAddress(0x9_0000)).unwrap();
        assert!(!traps.on_hlt(&mem, &mut r));
        assert_eq!(r.rip, 0x9_0001);
    }

    #[test]
    fn the_probe_gives_an_answer() {
        if std::fs::metadata("/dev/kvm").is_err() {
            eprintln!("SKIPPED: the_probe_gives_an_answer: no /dev/kvm");
            return;
        }
        let answer = probe();
        eprintln!("lzcnt on this host: {answer:?}");
        assert!(
            matches!(answer, Lzcnt::Correct | Lzcnt::RunsAsBsr),
            "{answer:?}"
        );
    }
}
