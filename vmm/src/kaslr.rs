//! KASLR: where a running Linux kernel really is, from its vCPU's state.
//!
//! A bzImage's decompressor picks the kernel's physical and virtual place itself (unless
//! `nokaslr`). The virtual slide is found against the link addresses in the kernel's own
//! kallsyms (read from the bzImage's payload):
//! - **IDT**: once `x86_64_start_kernel` has loaded `idt_table` (before `start_kernel`), IDTR
//!   base = `idt_table` + slide, with the slide a multiple of `CONFIG_PHYSICAL_ALIGN` (2 MiB);
//!   the gate of vector 0 must then point at `early_idt_handler_array` or, after
//!   `trap_init`, `asm_exc_divide_error`, plus the same slide;
//! - **`MSR_LSTAR`**: once `syscall_init` has run (in `start_kernel`'s `trap_init`), LSTAR =
//!   `entry_SYSCALL_64` + slide: it must agree with the IDT's, or the slide is refused.
//!
//! The physical placement follows from the vCPU's page tables: each of the kernel's `PT_LOAD`
//! segments in the high mapping is translated at its slid address ([`Slide::mappings`]), so
//! probes write the right bytes whatever physical slide the decompressor chose.

use kvm_bindings::kvm_sregs;
use tracer::symbols::kallsyms::Kallsyms;
use vm_memory::GuestMemoryMmap;

use crate::loader::Mapping;
use crate::trace::paging::{read, to_physical, Translation};

/// `CONFIG_PHYSICAL_ALIGN` of x86-64 kernels: the unit of KASLR slides.
pub const SLIDE_ALIGN: u64 = 2 << 20;
/// The start of the kernel's high mapping (`__START_KERNEL_map`).
pub const KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// Why the slide cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KaslrError {
    /// A symbol the slide is computed against is missing from kallsyms.
    #[error("the kernel's kallsyms have no {0}: cannot compute its KASLR slide")]
    MissingSymbol(&'static str),
    /// The IDT and `MSR_LSTAR` give different slides.
    #[error("KASLR slides disagree: the IDT (base {idt_base:#x}) gives {idt:#x}, MSR_LSTAR ({lstar:#x}) gives {from_lstar:#x}")]
    Disagree {
        /// IDTR base.
        idt_base: u64,
        /// The slide from the IDT.
        idt: u64,
        /// LSTAR.
        lstar: u64,
        /// The slide from LSTAR.
        from_lstar: u64,
    },
    /// A kernel segment is not mapped by the vCPU's page tables at its slid address.
    #[error("the kernel segment linked at {link:#x} is not mapped at {slid:#x} (slide {slide:#x}) by the vCPU's page tables")]
    Unmapped {
        /// Its link address.
        link: u64,
        /// Its slid address.
        slid: u64,
        /// The slide.
        slide: u64,
    },
}

/// The link addresses the slide is computed against, and the kernel's segments.
#[derive(Clone, Debug)]
pub struct Anchors {
    entry_syscall_64: u64,
    idt_table: u64,
    /// What the gate of vector 0 may point at: `early_idt_handler_array`,
    /// `asm_exc_divide_error` (where present).
    divide_error: Vec<u64>,
    /// The kernel's `PT_LOAD`s in the high mapping: (link address, bytes).
    segments: Vec<(u64, u64)>,
}

impl Anchors {
    /// The anchors of the kernel ELF `elf` with kallsyms `k`.
    pub fn new(elf: &[u8], k: &Kallsyms) -> Result<Anchors, KaslrError> {
        let one = |name: &'static str| {
            k.by_name(name)
                .first()
                .map(|s| s.address)
                .ok_or(KaslrError::MissingSymbol(name))
        };
        let divide_error = ["early_idt_handler_array", "asm_exc_divide_error"]
            .iter()
            .filter_map(|n| k.by_name(n).first().map(|s| s.address))
            .collect::<Vec<_>>();
        if divide_error.is_empty() {
            return Err(KaslrError::MissingSymbol("early_idt_handler_array"));
        }
        Ok(Anchors {
            entry_syscall_64: one("entry_SYSCALL_64")?,
            idt_table: one("idt_table")?,
            divide_error,
            segments: high_segments(elf),
        })
    }
}

/// The `PT_LOAD`s of `elf` linked in the kernel's high mapping: (address, bytes in memory).
fn high_segments(elf: &[u8]) -> Vec<(u64, u64)> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(elf) else {
        return Vec::new();
    };
    let Ok(endian) = header.endian() else {
        return Vec::new();
    };
    header
        .program_headers(endian, elf)
        .map(|phs| {
            phs.iter()
                .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
                .map(|p| (p.p_vaddr(endian), p.p_memsz(endian)))
                .filter(|&(v, n)| v >= KERNEL_MAP && n > 0)
                .collect()
        })
        .unwrap_or_default()
}

/// A running kernel's KASLR slide and where its segments are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slide {
    /// Virtual slide: run address minus link address (0 with `nokaslr`).
    pub virt: u64,
    /// Each high-mapped segment at its slid address and its physical place.
    pub mappings: Vec<Mapping>,
    /// Whether `MSR_LSTAR` confirmed it (else only the IDT and its gate did).
    pub lstar_checked: bool,
}

impl Slide {
    /// The physical address of the first segment (the kernel's `_text`).
    pub fn physical_base(&self) -> Option<u64> {
        self.mappings.first().map(|m| m.paddr)
    }
}

/// The slide of the kernel `cpu` runs, from its system registers and `lstar`: `Ok(None)`
/// while it cannot be told yet (the decompressor or the kernel's earliest code runs, or the
/// IDT is not `idt_table` with a matching gate), an error when the evidence disagrees.
pub fn find_slide(
    anchors: &Anchors,
    sregs: &kvm_sregs,
    lstar: u64,
    memory: &GuestMemoryMmap,
) -> Result<Option<Slide>, KaslrError> {
    let translation = Translation::of(sregs);
    if !matches!(translation, Translation::LongMode { .. }) {
        return Ok(None);
    }
    let idt_base = sregs.idt.base;
    let slide = idt_base.wrapping_sub(anchors.idt_table);
    if idt_base < KERNEL_MAP || !slide.is_multiple_of(SLIDE_ALIGN) {
        return Ok(None);
    }
    let mut gate = [0u8; 16];
    if !read(memory, translation, idt_base, &mut gate) {
        return Ok(None);
    }
    let target = u64::from(u16::from_le_bytes([gate[0], gate[1]]))
        | (u64::from(u16::from_le_bytes([gate[6], gate[7]])) << 16)
        | (u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]])) << 32);
    if !anchors.divide_error.contains(&target.wrapping_sub(slide)) {
        return Ok(None);
    }
    let lstar_checked = lstar != 0;
    if lstar_checked {
        let from_lstar = lstar.wrapping_sub(anchors.entry_syscall_64);
        if from_lstar != slide {
            return Err(KaslrError::Disagree {
                idt_base,
                idt: slide,
                lstar,
                from_lstar,
            });
        }
    }
    let mut mappings = Vec::with_capacity(anchors.segments.len());
    for &(link, len) in &anchors.segments {
        let slid = link.wrapping_add(slide);
        // The image is one physical run (the decompressor writes it so); its start is
        // translated (later, the kernel unmaps freed parts such as its init sections).
        let paddr = to_physical(memory, translation, slid).ok_or(KaslrError::Unmapped {
            link,
            slid,
            slide,
        })?;
        mappings.push(Mapping {
            vaddr: slid,
            paddr,
            len,
        });
    }
    Ok(Some(Slide {
        virt: slide,
        mappings,
        lstar_checked,
    }))
}

pub mod place;
#[cfg(test)]
mod tests;
