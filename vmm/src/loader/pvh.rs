//! PVH kernels: an ELF64 image (a Linux `vmlinux`) that names a 32-bit entry point in an ELF
//! note (`XEN_ELFNOTE_PHYS32_ENTRY`, type 18, owner "Xen"), booted as Xen's PVH boot protocol
//! specifies (and as QEMU, Firecracker and Cloud Hypervisor boot `vmlinux`).
//!
//! The image is checked by [`super::elf`] (every `PT_LOAD` in RAM, clear of the VMM's tables)
//! and then written by linux-loader's ELF loader, which also parses the note. The kernel's
//! `PT_LOAD`s go to their physical addresses; Linux links its text at
//! `0xffffffff81000000 + (p - 16 MiB)`, so virtual and physical addresses differ: the
//! mappings are returned for the probes ([`LoadedImage::mappings`]).
//!
//! What the kernel gets, all in the VMM's reserved low area (`crate::layout`, reserved in the
//! memory map):
//! - `hvm_start_info` (version 1) at [`PVH_INFO_ADDR`]: magic `0x336ec578`, the command line,
//!   the RSDP, the memory map (the same as multiboot kernels get, [`super::mbi::memory_map`])
//!   and the modules (`--initrd` / `--module`: Linux takes the first as its initramfs);
//! - the command line at [`PVH_CMDLINE_ADDR`], NUL-terminated, at most [`PVH_CMDLINE_MAX`]
//!   bytes with the NUL (Linux's `COMMAND_LINE_SIZE`);
//! - modules page-aligned at the top of RAM below the MMIO hole (where boot loaders put an
//!   initrd), above the kernel.
//!
//! The bootstrap processor enters in 32-bit protected mode, paging off, flat segments
//! (`crate::boot32`), EBX = the `hvm_start_info`.

use std::io::Cursor;

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use object::elf::{FileHeader64, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::elf::plan_native;
use super::mbi::memory_map;
use super::{write, BootProtocol, LoadError, LoadedImage, Mapping, Module};
use crate::layout::{HIMEM_START, MMIO_HOLE_START, PVH_CMDLINE_ADDR, PVH_CMDLINE_MAX};
use crate::layout::{PVH_INFO_ADDR, PVH_MEMMAP_ADDR, PVH_MEMMAP_MAX, PVH_MODLIST_ADDR};

/// The command line a PVH kernel gets when `--cmdline` is empty: what Debian's 6.12 kernel
/// needs to get through early boot on any KVM host, and as far as it goes on a software one
/// (the README explains each word):
/// - `console=ttyS0 earlyprintk=serial,ttyS0,115200`: messages on COM1, from the earliest;
/// - `noxsave`: hosts whose emulator lacks XSAVE/XRSTOR (HOST.md) kill the kernel at its
///   first XRSTOR otherwise;
/// - `clearcpuid=popcnt,cx16,smap,ssse3`: such hosts force POPCNT into CPUID and the emulator
///   lacks it once alternatives patch it in; SLUB's `lock cmpxchg16b` (CX16) and SMAP's
///   `clac`/`stac` are not emulated either, nor the SSE of `blake2s_compress_ssse3` (SSSE3:
///   the kernel then uses its generic C BLAKE2s).
///
/// No `nokaslr`: the PVH entry does not randomise (the kernel even reports the word unknown).
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 earlyprintk=serial,ttyS0,115200 noxsave clearcpuid=popcnt,cx16,smap,ssse3";

/// `hvm_start_info.magic`.
pub const START_MAGIC: u32 = 0x336e_c578;
/// The ELF note type that holds the 32-bit PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Most modules hvtrace passes (they share one page with the start info).
pub const MAX_MODULES: usize = 8;

const PAGE: u64 = 0x1000;

/// The 32-bit PVH entry point named by `image`'s notes, if it is an ELF64 with one.
pub fn pvh_entry(image: &[u8]) -> Option<u64> {
    let header = FileHeader64::<Endianness>::parse(image).ok()?;
    let endian = header.endian().ok()?;
    for ph in header.program_headers(endian, image).ok()? {
        if ph.p_type(endian) != PT_NOTE {
            continue;
        }
        let Ok(Some(mut notes)) = ph.notes(endian, image) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY {
                let desc = note.desc();
                return match desc.len() {
                    4 => Some(u64::from(u32::from_le_bytes(desc.try_into().ok()?))),
                    8 => Some(u64::from_le_bytes(desc.try_into().ok()?)),
                    _ => None,
                };
            }
        }
    }
    None
}

/// Where each module goes: page-aligned, packed downwards from the top of RAM below the MMIO
/// hole, the first module highest. Each must stay above `kernel_end`.
pub(crate) fn place_modules(
    modules: &[Module],
    kernel_end: u64,
    mem: u64,
) -> Result<Vec<u64>, LoadError> {
    if modules.len() > MAX_MODULES {
        return Err(LoadError::TooManyModules {
            count: modules.len(),
            max: MAX_MODULES,
        });
    }
    let mut top = mem.min(MMIO_HOLE_START);
    let mut placed = Vec::with_capacity(modules.len());
    for (index, m) in modules.iter().enumerate() {
        let len = m.bytes.len() as u64;
        let start = top
            .checked_sub(len)
            .map(|s| s & !(PAGE - 1))
            .filter(|s| *s >= kernel_end.max(HIMEM_START))
            .ok_or(LoadError::ModuleDoesNotFit {
                index,
                len,
                kernel_end,
                mem,
            })?;
        placed.push(start);
        top = start;
    }
    Ok(placed)
}

/// What a PVH kernel is handed besides its image.
pub struct PvhInputs<'a> {
    /// Boot modules (the first is Linux's initramfs).
    pub modules: &'a [Module],
    /// The command line.
    pub cmdline: &'a str,
    /// The ACPI root pointer (0: none).
    pub rsdp: u64,
}

/// Loads the PVH kernel `image` (its entry from its note) with `inputs` into `memory` (a
/// guest of `mem` bytes).
pub fn load(
    memory: &GuestMemoryMmap,
    mem: u64,
    image: &[u8],
    inputs: &PvhInputs<'_>,
) -> Result<LoadedImage, LoadError> {
    let PvhInputs {
        modules,
        cmdline,
        rsdp,
    } = *inputs;
    let plan = plan_native(image, mem)?;
    if cmdline.len() + 1 > PVH_CMDLINE_MAX || cmdline.contains('\0') {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max: PVH_CMDLINE_MAX - 1,
        });
    }
    let kernel_end = plan
        .segments
        .iter()
        .map(|(p, _)| p.range().1)
        .max()
        .unwrap_or(HIMEM_START);
    let placed = place_modules(modules, kernel_end, mem)?;
    let map = memory_map(mem);
    if map.len() > PVH_MEMMAP_MAX {
        return Err(LoadError::Write(format!(
            "{} memory-map entries do not fit the PVH table ({PVH_MEMMAP_MAX})",
            map.len()
        )));
    }

    let result = Elf::load(
        memory,
        None,
        &mut Cursor::new(image),
        Some(GuestAddress(HIMEM_START)),
    )
    .map_err(|e| LoadError::Write(format!("linux-loader: {e}")))?;
    let entry = match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => addr.0,
        other => {
            return Err(LoadError::Unsupported(format!(
                "no PVH entry point: {other}"
            )))
        }
    };
    if !plan.holds(entry) {
        return Err(LoadError::BadEntry(entry));
    }

    let mut text = cmdline.as_bytes().to_vec();
    text.push(0);
    write(memory, PVH_CMDLINE_ADDR, &text)?;
    let mut modlist = Vec::with_capacity(modules.len());
    for (m, &at) in modules.iter().zip(&placed) {
        write(memory, at, &m.bytes)?;
        modlist.push(hvm_modlist_entry {
            paddr: at,
            size: m.bytes.len() as u64,
            ..Default::default()
        });
    }
    let memmap: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|&(addr, size, type_)| hvm_memmap_table_entry {
            addr,
            size,
            type_,
            reserved: 0,
        })
        .collect();
    let info = hvm_start_info {
        magic: START_MAGIC,
        version: 1,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() {
            0
        } else {
            PVH_MODLIST_ADDR
        },
        cmdline_paddr: PVH_CMDLINE_ADDR,
        rsdp_paddr: rsdp,
        memmap_paddr: PVH_MEMMAP_ADDR,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_ADDR));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_ADDR));
    if !modlist.is_empty() {
        params.set_modules(&modlist, GuestAddress(PVH_MODLIST_ADDR));
    }
    PvhBootConfigurator::write_bootparams(&params, memory)
        .map_err(|e| LoadError::Write(e.to_string()))?;

    Ok(LoadedImage {
        entry,
        segments: plan.pieces().iter().map(|p| p.range()).collect(),
        protocol: BootProtocol::Pvh {
            start_info: PVH_INFO_ADDR,
        },
        warnings: Vec::new(),
        mappings: plan
            .segments
            .iter()
            .filter(|(p, vaddr)| *vaddr != p.paddr)
            .map(|(p, vaddr)| Mapping {
                vaddr: *vaddr,
                paddr: p.paddr,
                len: p.memsz,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests;
