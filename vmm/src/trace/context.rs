//! The probe context a clause sees: a vCPU stopped at a probe (registers, arguments, guest
//! memory, a frame-pointer stack), or a probe that has no guest registers (BEGIN, END,
//! tick-N, vmexit).

use std::time::SystemTime;

use tracer::runtime::{MemoryError, ProbeContext};
use tracer::symbols::{ElfSymbols, SymbolSource};
use tracer::traps::Regs;

use super::Tracing;

/// Deepest `stack()` walk.
const MAX_FRAMES: usize = 32;

/// A vCPU stopped at a probe, as the runtime sees it.
pub(super) struct HitContext<'a> {
    tracing: &'a Tracing,
    cpu: u32,
    regs: Regs,
    site: u64,
    start: u64,
    is_return: bool,
    timestamp: u64,
    /// Arguments of a probe without guest registers (`vmexit`); registers read as absent.
    args: Option<[u64; 4]>,
    /// Whether `regs` are the vCPU's (`regs[]`, `caller`, `stack()` read them).
    has_regs: bool,
    /// Whether the vCPU stopped here (an fbt hit or a profile sample): its system registers,
    /// GS base included, are those of this exit.
    trapped: bool,
}

impl<'a> HitContext<'a> {
    /// A probe with no guest registers (BEGIN, END, tick-N, vmexit) firing as `cpu`, with
    /// `args` as `arg0`..`arg3` where it has them.
    pub(super) fn without_registers(
        tracing: &'a Tracing,
        cpu: u32,
        args: Option<[u64; 4]>,
    ) -> Self {
        HitContext {
            tracing,
            cpu,
            regs: Regs::default(),
            site: 0,
            start: 0,
            is_return: false,
            timestamp: tracing.now_ns(),
            args,
            has_regs: args.is_none(),
            trapped: false,
        }
    }

    /// An fbt probe of the function starting at `start` firing on `cpu`, trapped at `site`
    /// with `regs` (a `return` probe when `is_return`).
    pub(super) fn at_trap(
        tracing: &'a Tracing,
        cpu: u32,
        regs: &Regs,
        site: u64,
        start: u64,
        is_return: bool,
    ) -> Self {
        HitContext {
            tracing,
            cpu,
            regs: *regs,
            site,
            start,
            is_return,
            timestamp: tracing.now_ns(),
            args: None,
            has_regs: true,
            trapped: true,
        }
    }

    /// A `profile-N` sample of `cpu` at `regs`: `arg0` is the PC (the guest runs in kernel
    /// mode, so `arg1`, the user PC, is 0), and the registers are readable.
    pub(super) fn sample(tracing: &'a Tracing, cpu: u32, regs: &Regs) -> Self {
        HitContext {
            tracing,
            cpu,
            regs: *regs,
            site: regs.rip,
            start: 0,
            is_return: false,
            timestamp: tracing.now_ns(),
            args: Some([regs.rip, 0, 0, 0]),
            has_regs: true,
            trapped: true,
        }
    }

    fn read_u64(&self, gva: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gva, &mut b).then(|| u64::from_le_bytes(b))
    }

    /// Reads guest memory at `gva` as this vCPU sees it (through its page tables when paging
    /// is on).
    fn read(&self, gva: u64, buf: &mut [u8]) -> bool {
        let translation = self.tracing.paging.translation(self.cpu as usize);
        super::paging::read(&self.tracing.memory, translation, gva, buf)
    }
}

impl ProbeContext for HitContext<'_> {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn timestamp_ns(&self) -> u64 {
        self.timestamp
    }

    fn walltimestamp_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn arg(&self, n: usize) -> u64 {
        if let Some(args) = self.args {
            return args.get(n).copied().unwrap_or(0);
        }
        let r = &self.regs;
        if self.is_return {
            // DTrace fbt return: arg0 = offset of the return site, arg1 = return value.
            return match n {
                0 => self.site.wrapping_sub(self.start),
                1 => r.rax,
                _ => 0,
            };
        }
        match n {
            0 => r.rdi,
            1 => r.rsi,
            2 => r.rdx,
            3 => r.rcx,
            4 => r.r8,
            5 => r.r9,
            _ => 0,
        }
    }

    fn reg(&self, n: usize) -> Option<u64> {
        if !self.has_regs {
            return None;
        }
        let r = &self.regs;
        Some(match n {
            0 => r.rax,
            1 => r.rcx,
            2 => r.rdx,
            3 => r.rbx,
            4 => r.rsp,
            5 => r.rbp,
            6 => r.rsi,
            7 => r.rdi,
            8 => r.r8,
            9 => r.r9,
            10 => r.r10,
            11 => r.r11,
            12 => r.r12,
            13 => r.r13,
            14 => r.r14,
            15 => r.r15,
            16 => r.rip,
            17 => r.rflags,
            _ => return None,
        })
    }

    fn caller(&self) -> u64 {
        if !self.has_regs {
            return 0;
        }
        if self.args.is_some() {
            // A profile sample lands anywhere in a function: its frame holds the return address.
            return self.read_u64(self.regs.rbp.wrapping_add(8)).unwrap_or(0);
        }
        // At an fbt entry and at a `ret`, the return address is on top of the stack.
        self.read_u64(self.regs.rsp).unwrap_or(0)
    }

    fn read_memory(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.read(gva, buf) {
            Ok(())
        } else {
            Err(MemoryError { address: gva })
        }
    }

    fn symbolize(&self, addr: u64) -> Option<String> {
        symbolize(&self.tracing.symbols, addr)
    }

    fn gs_base(&self) -> Option<u64> {
        // fbt hits and profile samples carry the vCPU's system registers; BEGIN, tick-N and
        // vmexit do not.
        self.trapped
            .then(|| self.tracing.paging.gs_base(self.cpu as usize))
    }

    fn stack(&self, max: usize) -> Option<Vec<u64>> {
        if !self.has_regs {
            return Some(Vec::new());
        }
        // Frame-pointer walk: the built-in guests keep `push %rbp; mov %rsp,%rbp` frames.
        let mut frames = vec![self.regs.rip, self.caller()];
        let mut rbp = self.regs.rbp;
        while frames.len() < max.min(MAX_FRAMES) {
            let (Some(next), Some(ret)) = (self.read_u64(rbp), self.read_u64(rbp.wrapping_add(8)))
            else {
                break;
            };
            if ret == 0 || next <= rbp {
                break;
            }
            frames.push(ret);
            rbp = next;
        }
        frames.truncate(max);
        Some(frames)
    }
}

pub(super) fn symbolize(symbols: &ElfSymbols, addr: u64) -> Option<String> {
    let (f, off) = symbols.lookup(addr)?;
    Some(if off == 0 {
        f.name.clone()
    } else {
        format!("{}+{off:#x}", f.name)
    })
}
