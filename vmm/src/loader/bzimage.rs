//! Linux `bzImage` kernels through the x86 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst), as Firecracker and Cloud Hypervisor boot them.
//!
//! linux-loader copies the protected-mode part (the decompressor and its compressed payload)
//! to `code32_start` (1 MiB) and returns the setup header. hvtrace then writes:
//! - the zero page (`boot_params`) at [`ZERO_PAGE_ADDR`]: the image's setup header with
//!   `type_of_loader` = 0xff (undefined), `LOADED_HIGH`, the command line, the initrd, the e820
//!   map (the same RAM/reserved layout PVH kernels get, [`super::mbi::memory_map`]) and the
//!   ACPI root pointer;
//! - the command line at [`PVH_CMDLINE_ADDR`] (reserved in the e820 map), at most the header's
//!   `cmdline_size` bytes;
//! - the initrd page-aligned at the top of RAM below the MMIO hole and `initrd_addr_max`,
//!   above the memory the decompressor uses (`pref_address + init_size`);
//! - a GDT with the boot protocol's `__BOOT_CS` (0x10) and `__BOOT_DS` (0x18)
//!   ([`crate::boot::linux_gdt`], at [`LINUX_GDT_ADDR`]).
//!
//! The bootstrap processor enters the 64-bit entry (`code32_start + 0x200`) in long mode with
//! the VMM's identity page tables (`crate::boot`) and RSI = the zero page. The decompressor
//! then picks the kernel's physical and virtual place itself (KASLR unless `nokaslr`).

use std::io::Cursor;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::KernelLoader;
use tracer::bzimage::SetupHeader;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::mbi::memory_map;
use super::pvh::place_modules;
use super::{write, BootProtocol, LoadError, LoadedImage, Module};
use crate::layout::{HIMEM_START, LINUX_GDT_ADDR, PVH_CMDLINE_ADDR, PVH_CMDLINE_MAX};

/// Where the zero page (`struct boot_params`) goes: low RAM below the VMM's reserved area.
pub const ZERO_PAGE_ADDR: u64 = 0x9_e000;
/// Lowest boot protocol with the 64-bit entry (`xloadflags`, 2.12).
pub const MIN_VERSION: u16 = 0x020c;
/// `xloadflags` bit: the kernel has the 64-bit entry at `code32_start + 0x200`.
pub const XLF_KERNEL_64: u16 = 1;
/// `loadflags` bit: the protected-mode code is loaded at 1 MiB.
pub const LOADED_HIGH: u8 = 1;
/// `type_of_loader` for a boot loader without an assigned ID.
pub const LOADER_UNDEFINED: u8 = 0xff;
/// Offset of the 64-bit entry from the protected-mode code's start.
pub const ENTRY_64_OFFSET: u64 = 0x200;

/// Whether `image` is a bzImage (has the "HdrS" setup header).
pub fn is_bzimage(image: &[u8]) -> bool {
    SetupHeader::find(image).is_some()
}

/// What a bzImage is handed besides its image.
pub struct BzInputs<'a> {
    /// `--initrd` (at most one module).
    pub modules: &'a [Module],
    /// The command line.
    pub cmdline: &'a str,
    /// The ACPI root pointer (0: none).
    pub rsdp: u64,
}

/// Checks the header: a protocol with the 64-bit entry, loaded high.
fn check_header(h: &SetupHeader) -> Result<(), LoadError> {
    h.require(MIN_VERSION, "the 64-bit entry")
        .map_err(|e| LoadError::Unsupported(format!("bzImage: {e}")))?;
    if h.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LoadError::Unsupported(format!(
            "bzImage: xloadflags {:#x} lack XLF_KERNEL_64: not a 64-bit kernel (hvtrace enters bzImages through the 64-bit entry only)",
            h.xloadflags
        )));
    }
    if h.loadflags & LOADED_HIGH == 0 {
        return Err(LoadError::Unsupported(
            "bzImage: loadflags lack LOADED_HIGH (a zImage loaded at 0x10000 is not supported)"
                .into(),
        ));
    }
    Ok(())
}

/// Loads the bzImage `image` with `inputs` into `memory` (a guest of `mem` bytes).
pub fn load(
    memory: &GuestMemoryMmap,
    mem: u64,
    image: &[u8],
    inputs: &BzInputs<'_>,
) -> Result<LoadedImage, LoadError> {
    let BzInputs {
        modules,
        cmdline,
        rsdp,
    } = *inputs;
    let header = SetupHeader::find(image).ok_or(LoadError::NotElf)?;
    check_header(&header)?;
    if modules.len() > 1 {
        return Err(LoadError::TooManyModules {
            count: modules.len(),
            max: 1,
        });
    }
    let max_cmdline = (header.cmdline_size as usize).min(PVH_CMDLINE_MAX - 1);
    if cmdline.len() > max_cmdline || cmdline.contains('\0') {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max: max_cmdline,
        });
    }
    let load_at = u64::from(header.code32_start);
    let kernel_len =
        image
            .len()
            .checked_sub(header.kernel_offset())
            .ok_or(LoadError::Truncated {
                index: 0,
                start: header.kernel_offset() as u64,
                end: header.kernel_offset() as u64,
                len: image.len() as u64,
            })? as u64;
    super::check_range(0, load_at, load_at + kernel_len, mem)?;
    // The decompressor works from the preferred address up to `init_size` past it (without
    // KASLR; with it, it picks free RAM avoiding the initrd): the initrd stays above that.
    let busy_end = header.pref_address.max(load_at) + u64::from(header.init_size);
    if busy_end > mem {
        return Err(LoadError::OutsideRam {
            index: 0,
            start: load_at,
            end: busy_end,
            mem,
        });
    }
    let top = mem.min(u64::from(header.initrd_addr_max) + 1);
    let placed = place_modules(modules, busy_end, top)?;

    let result = BzImage::load(
        memory,
        Some(GuestAddress(load_at)),
        &mut Cursor::new(image),
        Some(GuestAddress(HIMEM_START)),
    )
    .map_err(|e| LoadError::Write(format!("linux-loader: {e}")))?;
    let mut hdr = result
        .setup_header
        .ok_or_else(|| LoadError::Write("linux-loader returned no setup header".into()))?;

    let mut text = cmdline.as_bytes().to_vec();
    text.push(0);
    write(memory, PVH_CMDLINE_ADDR, &text)?;
    hdr.type_of_loader = LOADER_UNDEFINED;
    hdr.loadflags |= LOADED_HIGH;
    hdr.cmd_line_ptr = PVH_CMDLINE_ADDR as u32;
    hdr.cmdline_size = cmdline.len() as u32;
    if let (Some(m), Some(&at)) = (modules.first(), placed.first()) {
        write(memory, at, &m.bytes)?;
        hdr.ramdisk_image = at as u32;
        hdr.ramdisk_size = m.bytes.len() as u32;
    }
    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: rsdp,
        ..Default::default()
    };
    let map = memory_map(mem);
    if map.len() > params.e820_table.len() {
        return Err(LoadError::Write(format!(
            "{} memory-map entries do not fit the zero page",
            map.len()
        )));
    }
    for (slot, &(addr, size, type_)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr,
            size,
            r#type: type_,
        };
    }
    params.e820_entries = map.len() as u8;
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_ADDR)),
        memory,
    )
    .map_err(|e| LoadError::Write(e.to_string()))?;
    let gdt: Vec<u8> = crate::boot::linux_gdt()
        .iter()
        .flat_map(|e| e.to_le_bytes())
        .collect();
    write(memory, LINUX_GDT_ADDR, &gdt)?;

    Ok(LoadedImage {
        entry: load_at + ENTRY_64_OFFSET,
        segments: vec![(load_at, result.kernel_end)],
        protocol: BootProtocol::Linux64 {
            boot_params: ZERO_PAGE_ADDR,
        },
        warnings: Vec::new(),
        mappings: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
