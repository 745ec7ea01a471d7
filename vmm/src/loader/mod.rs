//! Loading guest images into guest memory.
//!
//! Two boot protocols, told apart by the image itself:
//! - a **Multiboot (version 1)** kernel (a valid header in the first 8 KiB, see [`multiboot`])
//!   is loaded as QEMU's `-kernel` does: through its a.out-kludge addresses when flags bit 16
//!   is set, else as an ELF32 image; modules follow it in memory and a multiboot information
//!   structure ([`mbi`]) follows them. It is entered in 32-bit protected mode (`crate::boot32`).
//! - an ELF64 with a PVH entry note (a Linux `vmlinux`, see [`pvh`]) boots through Xen's PVH
//!   protocol: 32-bit protected mode, EBX = an `hvm_start_info` with the memory map, command
//!   line (a default one when none is given, [`pvh::DEFAULT_CMDLINE`]), modules (the initramfs)
//!   and ACPI root pointer.
//! - a Linux **bzImage** (the setup header's "HdrS", see [`bzimage`]) boots through the x86
//!   64-bit boot protocol: long mode, RSI = the zero page (`boot_params`) with the e820 map,
//!   command line (the same default as PVH) and initrd.
//! - any other image must be an ELF64 x86_64 executable ([`elf`]), entered in 64-bit long mode
//!   with hvtrace's boot-info block (`crate::boot`).
//! - an image that is both, an ELF64 x86_64 executable with a multiboot header whose a.out-kludge
//!   `entry_addr` differs from its ELF entry (which lies in a loaded segment), carries both
//!   protocols: hvtrace boots it through its ELF entry, the 64-bit way, and QEMU or GRUB use the
//!   header. The built-in guests are such images ([`native_despite_multiboot`]). An ELF64
//!   whose ELF entry is the multiboot entry boots as multiboot, as before.
//!
//! Every loaded range must lie in RAM and stay clear of the VMM's own tables (see
//! [`crate::layout`]); nothing is written before the whole image has been checked.

pub mod bzimage;
#[cfg(test)]
mod dual_boot_tests;
pub mod elf;
pub mod mbi;
pub mod multiboot;
pub mod pvh;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{in_ram, VMM_RESERVED};
pub use multiboot::MultibootError;

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// The file does not start with the ELF magic (and has no multiboot header).
    #[error("not an ELF file (it does not start with \\x7fELF) and it has no multiboot header")]
    NotElf,
    /// The ELF header or program headers could not be parsed.
    #[error("malformed or truncated ELF: {0}")]
    Malformed(String),
    /// An ELF file, but not the kind the VMM boots.
    #[error("unsupported ELF: {0}")]
    Unsupported(String),
    /// No loadable segment.
    #[error("the ELF has no PT_LOAD segment")]
    NoSegments,
    /// A segment's file range runs past the end of the file.
    #[error("segment {index} needs file bytes {start:#x}..{end:#x}, but the file is only {len:#x} bytes (truncated?)")]
    Truncated {
        /// Program header index.
        index: usize,
        /// File offset of the segment.
        start: u64,
        /// End of its bytes in the file.
        end: u64,
        /// File length.
        len: u64,
    },
    /// A segment does not fit in guest RAM.
    #[error("segment {index} at {start:#x}..{end:#x} lies outside guest RAM ({mem} bytes)")]
    OutsideRam {
        /// Program header index.
        index: usize,
        /// Physical start.
        start: u64,
        /// Physical end.
        end: u64,
        /// RAM size.
        mem: u64,
    },
    /// A segment overlaps memory the VMM uses.
    #[error("segment {index} at {start:#x}..{end:#x} overlaps {what} ({rstart:#x}..{rend:#x})")]
    Reserved {
        /// Program header index.
        index: usize,
        /// Physical start.
        start: u64,
        /// Physical end.
        end: u64,
        /// What lives there.
        what: &'static str,
        /// Reserved range start.
        rstart: u64,
        /// Reserved range end.
        rend: u64,
    },
    /// The entry point is not inside a loaded executable segment.
    #[error("entry point {0:#x} is not inside any loaded segment")]
    BadEntry(u64),
    /// A multiboot kernel's header or layout is unusable.
    #[error("multiboot: {0}")]
    Multiboot(#[from] MultibootError),
    /// A multiboot kernel's load failed a check shared with ELF64 images (range, entry, ELF).
    #[error("multiboot kernel ({layout}): {source}")]
    InMultiboot {
        /// How it is laid out: "a.out kludge" or "ELF32".
        layout: &'static str,
        /// What is wrong.
        source: Box<LoadError>,
    },
    /// Modules were given for an image that is not a multiboot or PVH kernel.
    #[error("--module/--initrd need a multiboot or PVH (Linux vmlinux) kernel; this image is an ELF64 booted with hvtrace's own 64-bit protocol, which has no modules")]
    ModulesNeedMultiboot,
    /// More modules than the PVH start info holds.
    #[error("{count} modules given; this kernel takes at most {max} (a PVH kernel 8, a bzImage only its --initrd)")]
    TooManyModules {
        /// Modules given.
        count: usize,
        /// Most accepted.
        max: usize,
    },
    /// A module does not fit between the kernel and the top of low RAM.
    #[error("module {index} ({len:#x} bytes) does not fit in RAM between the kernel's end ({kernel_end:#x}) and the top of memory below 3 GiB ({mem} bytes of RAM): use a larger --mem")]
    ModuleDoesNotFit {
        /// Module index.
        index: usize,
        /// Its size.
        len: u64,
        /// End of the kernel image.
        kernel_end: u64,
        /// RAM size.
        mem: u64,
    },
    /// The command line is longer than the kernel takes.
    #[error("the command line is {len} bytes; a PVH kernel takes at most {max} (and no NUL byte)")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// Most accepted.
        max: usize,
    },
    /// Writing guest memory failed.
    #[error("guest memory write failed: {0}")]
    Write(String),
}

/// How the bootstrap processor enters a loaded image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// 64-bit long mode with hvtrace's boot-info block in RDI (`crate::boot`).
    Native,
    /// 32-bit protected mode, EAX = 0x2BADB002, EBX = the multiboot information structure.
    Multiboot {
        /// Physical address of the multiboot information structure.
        mbi: u64,
    },
    /// The x86 64-bit boot protocol of a bzImage: long mode with the boot protocol's GDT
    /// (`__BOOT_CS` 0x10, `__BOOT_DS` 0x18), RSI = the zero page.
    Linux64 {
        /// Physical address of the zero page (`struct boot_params`).
        boot_params: u64,
    },
    /// Xen's PVH entry: 32-bit protected mode, paging off, EBX = the `hvm_start_info`.
    Pvh {
        /// Physical address of the `hvm_start_info`.
        start_info: u64,
    },
}

/// A loaded segment whose virtual addresses differ from its physical ones (a Linux kernel
/// runs its text at `0xffffffff81000000`, loaded at 16 MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address.
    pub vaddr: u64,
    /// Where it is loaded.
    pub paddr: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The result of loading an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The entry point (a physical address).
    pub entry: u64,
    /// Loaded physical ranges `[start, end)` of the image itself (modules and MBI excluded).
    pub segments: Vec<(u64, u64)>,
    /// How to enter it.
    pub protocol: BootProtocol,
    /// Things the loader accepted but could not honour (e.g. a requested video mode), for the
    /// user to see.
    pub warnings: Vec<String>,
    /// Segments whose virtual addresses are not their physical ones (empty when the image
    /// runs identity-mapped).
    pub mappings: Vec<Mapping>,
}

/// A boot module of a multiboot kernel (`--module FILE[,ARGS]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The string the kernel sees with it (its command line).
    pub args: String,
}

/// One validated range to write: bytes from the file at `paddr`, then zeros up to `memsz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Physical load address.
    pub paddr: u64,
    /// Its bytes in the image file.
    pub file_range: std::ops::Range<usize>,
    /// Bytes in memory (the rest after the file bytes is zeroed).
    pub memsz: u64,
}

impl Piece {
    /// `[start, end)` in guest-physical memory.
    pub fn range(&self) -> (u64, u64) {
        (self.paddr, self.paddr + self.memsz)
    }
}

/// Checks that range `index` at `[start, end)` lies in RAM and clear of the VMM's tables.
pub(crate) fn check_range(index: usize, start: u64, end: u64, mem: u64) -> Result<(), LoadError> {
    if !in_ram(mem, start, end) {
        return Err(LoadError::OutsideRam {
            index,
            start,
            end,
            mem,
        });
    }
    if let Some(&(rstart, rend, what)) = VMM_RESERVED
        .iter()
        .find(|(rs, re, _)| start < *re && end > *rs)
    {
        return Err(LoadError::Reserved {
            index,
            start,
            end,
            what,
            rstart,
            rend,
        });
    }
    Ok(())
}

/// Writes `bytes` at `addr`.
pub(crate) fn write(memory: &GuestMemoryMmap, addr: u64, bytes: &[u8]) -> Result<(), LoadError> {
    memory
        .write_slice(bytes, GuestAddress(addr))
        .map_err(|e| LoadError::Write(e.to_string()))
}

/// Writes each piece of `image` (file bytes, then zeros) and returns the loaded ranges.
pub(crate) fn write_pieces(
    memory: &GuestMemoryMmap,
    image: &[u8],
    pieces: &[Piece],
) -> Result<Vec<(u64, u64)>, LoadError> {
    for p in pieces {
        let bytes = &image[p.file_range.clone()];
        write(memory, p.paddr, bytes)?;
        let bss = p.memsz - bytes.len() as u64;
        if bss > 0 {
            write(
                memory,
                p.paddr + bytes.len() as u64,
                &vec![0u8; bss as usize],
            )?;
        }
    }
    Ok(pieces.iter().map(Piece::range).collect())
}

/// Whether `image`, which has the multiboot `header`, is an ELF64 x86_64 executable that also
/// has its own 64-bit entry: a valid native image (entry in a loaded segment) whose ELF entry
/// is not the header's a.out-kludge `entry_addr`.
pub fn native_despite_multiboot(
    image: &[u8],
    mem: u64,
    header: &multiboot::MultibootHeader,
) -> bool {
    match (&header.kludge, elf::plan_native(image, mem)) {
        (Some(k), Ok(plan)) => plan.entry != u64::from(k.entry_addr),
        _ => false,
    }
}

/// Loads `image` into `memory` (a guest of `mem` bytes): a bzImage with its initrd and command
/// line (the default Linux one when empty), a multiboot kernel with its
/// `modules` and `cmdline`, a PVH kernel with its modules, command line (the default Linux one
/// when empty) and `rsdp` (the ACPI root pointer, 0 for none), or else an ELF64 image (which
/// takes no modules).
pub fn load_image(
    memory: &GuestMemoryMmap,
    mem: u64,
    image: &[u8],
    modules: &[Module],
    cmdline: &str,
    rsdp: u64,
) -> Result<LoadedImage, LoadError> {
    if bzimage::is_bzimage(image) {
        let inputs = bzimage::BzInputs {
            modules,
            cmdline: if cmdline.is_empty() {
                pvh::DEFAULT_CMDLINE
            } else {
                cmdline
            },
            rsdp,
        };
        return bzimage::load(memory, mem, image, &inputs);
    }
    match multiboot::find_header(image)? {
        Some(header) if !native_despite_multiboot(image, mem, &header) => {
            multiboot::load(memory, mem, image, &header, modules, cmdline)
        }
        Some(_) if !modules.is_empty() => Err(LoadError::ModulesNeedMultiboot),
        Some(_) => elf::load_elf(memory, mem, image),
        None if pvh::pvh_entry(image).is_some() => {
            let cmdline = if cmdline.is_empty() {
                pvh::DEFAULT_CMDLINE
            } else {
                cmdline
            };
            let inputs = pvh::PvhInputs {
                modules,
                cmdline,
                rsdp,
            };
            pvh::load(memory, mem, image, &inputs)
        }
        None if !modules.is_empty() => {
            elf::plan_native(image, mem)?;
            Err(LoadError::ModulesNeedMultiboot)
        }
        None => elf::load_elf(memory, mem, image),
    }
}
