//! How each vCPU translates addresses right now, for scripts that read guest memory: the
//! control registers (and GS base, for Linux's `curthread`) of its last trap exit
//! (`ExitHandler::trap_sregs`, carried in `kvm_run` sync_regs: no extra ioctl), and reads of
//! guest-virtual memory through its page tables ([`tracer::pagewalk`]: 4- and 5-level, large
//! pages, bounded on garbage tables).

use std::sync::atomic::{AtomicU64, Ordering};

use tracer::pagewalk::{read_virtual, PhysMemory};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

/// One vCPU's translation state as of its last trap exit.
#[derive(Default)]
struct Slot {
    cr0: AtomicU64,
    cr3: AtomicU64,
    cr4: AtomicU64,
    efer: AtomicU64,
    /// The GS base (Linux's per-CPU base in kernel mode), for `curthread`.
    gs_base: AtomicU64,
    /// `MSR_KERNEL_GS_BASE` where the GS base was a user one at that exit (else 0).
    kernel_gs_base: AtomicU64,
}

/// How a vCPU's addresses translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// Paging is off (or not known yet): addresses are guest-physical.
    Physical,
    /// Long-mode paging rooted at `cr3` (5-level with `la57`).
    LongMode {
        /// CR3.
        cr3: u64,
        /// CR4.LA57.
        la57: bool,
    },
    /// 32-bit or PAE paging outside long mode: not walked.
    Legacy,
}

/// The translation state of every vCPU.
pub struct GuestPaging {
    slots: Vec<Slot>,
    /// Whether to ask for `MSR_KERNEL_GS_BASE` when GS holds a user base (a Linux kernel).
    wants_kernel_gs_base: std::sync::atomic::AtomicBool,
}

impl GuestPaging {
    /// Unknown (physical) for `cpus` vCPUs.
    pub fn new(cpus: usize) -> Self {
        GuestPaging {
            slots: (0..cpus).map(|_| Slot::default()).collect(),
            wants_kernel_gs_base: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Asks for `MSR_KERNEL_GS_BASE` at exits where GS holds a user base (for a Linux kernel,
    /// whose `curthread` is read through the kernel's per-CPU base).
    pub fn set_wants_kernel_gs_base(&self, wants: bool) {
        self.wants_kernel_gs_base.store(wants, Ordering::Relaxed);
    }

    /// Whether [`GuestPaging::set_wants_kernel_gs_base`] asked for it.
    pub fn wants_kernel_gs_base(&self) -> bool {
        self.wants_kernel_gs_base.load(Ordering::Relaxed)
    }

    /// Records `cpu`'s `MSR_KERNEL_GS_BASE` at this exit (GS held a user base).
    pub fn record_kernel_gs_base(&self, cpu: usize, base: u64) {
        if let Some(s) = self.slots.get(cpu) {
            s.kernel_gs_base.store(base, Ordering::Relaxed);
        }
    }

    /// Records `cpu`'s system registers at a trap exit.
    pub fn record(&self, cpu: usize, sregs: &kvm_bindings::kvm_sregs) {
        if let Some(s) = self.slots.get(cpu) {
            s.cr0.store(sregs.cr0, Ordering::Relaxed);
            s.cr3.store(sregs.cr3, Ordering::Relaxed);
            s.cr4.store(sregs.cr4, Ordering::Relaxed);
            s.efer.store(sregs.efer, Ordering::Relaxed);
            s.gs_base.store(sregs.gs.base, Ordering::Relaxed);
            s.kernel_gs_base.store(0, Ordering::Relaxed);
        }
    }

    /// `cpu`'s kernel-mode GS base as of its last trap exit (0 before any): the GS base, or,
    /// where that was a user one and `MSR_KERNEL_GS_BASE` was read, the MSR (user mode, or
    /// kernel entry before `swapgs`).
    pub fn gs_base(&self, cpu: usize) -> u64 {
        let Some(s) = self.slots.get(cpu) else {
            return 0;
        };
        let gs = s.gs_base.load(Ordering::Relaxed);
        match s.kernel_gs_base.load(Ordering::Relaxed) {
            kernel if gs >> 63 == 0 && kernel >> 63 == 1 => kernel,
            _ => gs,
        }
    }

    /// How `cpu`'s addresses translate now.
    pub fn translation(&self, cpu: usize) -> Translation {
        let Some(s) = self.slots.get(cpu) else {
            return Translation::Physical;
        };
        Translation::from_registers(
            s.cr0.load(Ordering::Relaxed),
            s.cr3.load(Ordering::Relaxed),
            s.cr4.load(Ordering::Relaxed),
            s.efer.load(Ordering::Relaxed),
        )
    }
}

impl Translation {
    /// The translation CR0, CR3, CR4 and EFER describe.
    pub fn from_registers(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> Translation {
        if cr0 & CR0_PG == 0 {
            Translation::Physical
        } else if efer & EFER_LMA != 0 && cr4 & CR4_PAE != 0 {
            Translation::LongMode {
                cr3,
                la57: cr4 & CR4_LA57 != 0,
            }
        } else {
            Translation::Legacy
        }
    }

    /// The translation of a vCPU with system registers `sregs`.
    pub fn of(sregs: &kvm_bindings::kvm_sregs) -> Translation {
        Translation::from_registers(sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer)
    }
}

/// Guest RAM as the page walker reads it.
struct Ram<'a>(&'a GuestMemoryMmap);

impl PhysMemory for Ram<'_> {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        self.0.read_obj(GuestAddress(gpa)).ok()
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        self.0.read_slice(buf, GuestAddress(gpa)).is_ok()
    }
}

/// The guest-physical address of `addr` as `translation` says; `None` when it is not mapped
/// (or paging is in a mode that is not walked).
pub fn to_physical(memory: &GuestMemoryMmap, translation: Translation, addr: u64) -> Option<u64> {
    match translation {
        Translation::Physical => Some(addr),
        Translation::LongMode { cr3, la57 } => {
            tracer::pagewalk::translate(&Ram(memory), cr3, la57, addr)
                .ok()
                .map(|t| t.gpa)
        }
        Translation::Legacy => None,
    }
}

/// Reads `buf.len()` bytes at `addr` as `translation` says; false if any byte is not mapped
/// or not backed.
pub fn read(memory: &GuestMemoryMmap, translation: Translation, addr: u64, buf: &mut [u8]) -> bool {
    match translation {
        Translation::Physical => memory.read_slice(buf, GuestAddress(addr)).is_ok(),
        Translation::LongMode { cr3, la57 } => {
            read_virtual(&Ram(memory), cr3, la57, addr, buf).is_ok()
        }
        Translation::Legacy => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sregs(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> kvm_bindings::kvm_sregs {
        kvm_bindings::kvm_sregs {
            cr0,
            cr3,
            cr4,
            efer,
            ..Default::default()
        }
    }

    #[test]
    fn the_mode_follows_the_control_registers() {
        let p = GuestPaging::new(2);
        assert_eq!(p.translation(0), Translation::Physical);
        assert_eq!(p.translation(7), Translation::Physical);
        p.record(1, &sregs(CR0_PG | 1, 0x5000, CR4_PAE, EFER_LMA));
        assert_eq!(
            p.translation(1),
            Translation::LongMode {
                cr3: 0x5000,
                la57: false
            }
        );
        p.record(1, &sregs(CR0_PG | 1, 0x6000, CR4_PAE | CR4_LA57, EFER_LMA));
        assert_eq!(
            p.translation(1),
            Translation::LongMode {
                cr3: 0x6000,
                la57: true
            }
        );
        p.record(0, &sregs(CR0_PG | 1, 0x7000, 0, 0));
        assert_eq!(p.translation(0), Translation::Legacy);
    }

    #[test]
    fn the_kernel_gs_base_stands_in_for_a_user_one() {
        let p = GuestPaging::new(1);
        assert!(!p.wants_kernel_gs_base());
        p.set_wants_kernel_gs_base(true);
        assert!(p.wants_kernel_gs_base());
        let kernel = 0xffff_8880_0f00_0000;
        let mut s = sregs(CR0_PG, 0x1000, CR4_PAE, EFER_LMA);
        s.gs.base = kernel;
        p.record(0, &s);
        assert_eq!(p.gs_base(0), kernel, "in the kernel after swapgs");
        s.gs.base = 0x7f12_3456_0000;
        p.record(0, &s);
        assert_eq!(p.gs_base(0), 0x7f12_3456_0000, "no MSR read: the user base");
        p.record_kernel_gs_base(0, kernel);
        assert_eq!(p.gs_base(0), kernel, "user mode: MSR_KERNEL_GS_BASE");
        p.record(0, &s);
        assert_eq!(p.gs_base(0), 0x7f12_3456_0000, "each exit starts afresh");
        p.record_kernel_gs_base(0, 0);
        assert_eq!(p.gs_base(0), 0x7f12_3456_0000, "early boot: both user");
        assert_eq!(p.gs_base(5), 0);
    }

    #[test]
    fn reads_walk_the_tables() {
        let memory = crate::layout::create_guest_memory(64 << 20).unwrap();
        // PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000 with a 2 MiB page at 0x200000,
        // mapping virtual 0xffff_8000_0000_0000.
        let (pml4, pdpt, pd) = (0x1000u64, 0x2000u64, 0x3000u64);
        memory
            .write_obj(pdpt | 3, GuestAddress(pml4 + 256 * 8))
            .unwrap();
        memory.write_obj(pd | 3, GuestAddress(pdpt)).unwrap();
        memory
            .write_obj(0x20_0000u64 | 0x83, GuestAddress(pd))
            .unwrap();
        memory
            .write_slice(b"mapped", GuestAddress(0x20_0010))
            .unwrap();
        let t = Translation::LongMode {
            cr3: pml4,
            la57: false,
        };
        let mut buf = [0u8; 6];
        assert!(read(&memory, t, 0xffff_8000_0000_0010, &mut buf));
        assert_eq!(&buf, b"mapped");
        assert!(!read(&memory, t, 0x10, &mut buf), "unmapped");
        assert!(!read(&memory, Translation::Legacy, 0x10, &mut buf));
        assert!(read(&memory, Translation::Physical, 0x20_0010, &mut buf));
        assert_eq!(&buf, b"mapped");
    }
}
