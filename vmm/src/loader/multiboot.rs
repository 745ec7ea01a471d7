//! Multiboot (version 1) kernels, loaded as QEMU's `-kernel` loads them.
//!
//! The header is the first 4-byte-aligned `0x1BADB002` in the first 8 KiB of the file whose
//! `magic + flags + checksum` is 0. Flags:
//! - bit 0 (page-align modules) and bit 1 (memory information): always honoured;
//! - bit 2 (video mode): hvtrace has no display; like QEMU it boots the kernel anyway, without
//!   video information (MBI flags bits 11 and 12 stay clear), and says so in a warning;
//! - bits 3-15: requirements this loader does not know; the spec says to refuse the kernel;
//! - bit 16 (a.out kludge): load `[load_addr, load_end_addr)` from the file (the header sits at
//!   `header_addr`), zero up to `bss_end_addr`, enter at `entry_addr`; used for any file,
//!   ELF or not;
//! - without bit 16 the file must be an ELF32 i386 executable: its `PT_LOAD` segments go to
//!   their physical addresses, and an entry given as a virtual address is translated through
//!   the segment holding it (higher-half kernels). QEMU refuses ELF64 files here, and so does
//!   hvtrace.
//!
//! Boot modules are placed page-aligned after the kernel, the multiboot information structure
//! after them ([`super::mbi`]), as QEMU does.

use vm_memory::GuestMemoryMmap;

use super::elf::plan_elf32;
use super::mbi;
use super::{
    check_range, write, write_pieces, BootProtocol, LoadError, LoadedImage, Module, Piece,
};

/// The header magic.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// How far into the file the header may start.
pub const SEARCH_LEN: usize = 8192;
/// Flags bit 2: the kernel asks for a video mode.
pub const FLAG_VIDEO: u32 = 1 << 2;
/// Flags bit 16: the header holds the a.out-kludge addresses.
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Requirement bits (0-15) this loader understands: page alignment, memory info, video.
pub const KNOWN_REQUIRED: u32 = 0b111;

/// What is wrong with a multiboot kernel.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MultibootError {
    /// A magic was found but no header with a good checksum.
    #[error("header at file offset {offset:#x} has a bad checksum (magic + flags + checksum = {sum:#x}, must be 0)")]
    BadChecksum {
        /// File offset of the magic.
        offset: usize,
        /// The wrapped sum.
        sum: u32,
    },
    /// The file ends inside the header.
    #[error("header at file offset {offset:#x} is truncated: it needs {need} bytes, the file has {have} from there")]
    TruncatedHeader {
        /// File offset of the header.
        offset: usize,
        /// Bytes the header needs.
        need: usize,
        /// Bytes left in the file.
        have: usize,
    },
    /// The kernel requires features (flags bits 3-15) this loader does not know.
    #[error("header flags {flags:#010x} require features hvtrace does not know (bits {bits:#06x} of 3-15); the multiboot spec says to refuse such a kernel")]
    UnsupportedFlags {
        /// The flags word.
        flags: u32,
        /// The unknown required bits.
        bits: u32,
    },
    /// No a.out kludge, and the file is an ELF64.
    #[error("an ELF64 file whose header has no a.out-kludge addresses (flags bit 16): multiboot loads only ELF32 images (QEMU refuses these too); link it as ELF32 or set bit 16")]
    Elf64WithoutKludge,
    /// No a.out kludge, and the file is not an ELF at all.
    #[error("the header has no a.out-kludge addresses (flags bit 16) and the file is not an ELF32 image, so there is no way to know where to load it")]
    NoLayout,
    /// `load_addr` is above `header_addr`.
    #[error("a.out kludge: load_addr {load:#x} is above header_addr {header:#x}")]
    LoadAfterHeader {
        /// load_addr.
        load: u32,
        /// header_addr.
        header: u32,
    },
    /// `header_addr - load_addr` is more than the header's offset in the file.
    #[error("a.out kludge: header_addr {header:#x} - load_addr {load:#x} = {gap:#x} is more than the header's file offset {offset:#x}: the load would start before the file")]
    LoadBeforeFile {
        /// header_addr.
        header: u32,
        /// load_addr.
        load: u32,
        /// Their difference.
        gap: u32,
        /// The header's file offset.
        offset: usize,
    },
    /// `load_end_addr` is below `load_addr`.
    #[error("a.out kludge: load_end_addr {end:#x} is below load_addr {load:#x}")]
    LoadEndBeforeLoad {
        /// load_addr.
        load: u32,
        /// load_end_addr.
        end: u32,
    },
    /// The text and data run past the end of the file.
    #[error("a.out kludge: loading needs file bytes {start:#x}..{end:#x}, but the file is only {len:#x} bytes (truncated?)")]
    LoadPastFile {
        /// File offset of the load.
        start: u64,
        /// End of the load in the file.
        end: u64,
        /// File length.
        len: u64,
    },
    /// `bss_end_addr` is below `load_end_addr`.
    #[error("a.out kludge: bss_end_addr {bss:#x} is below the end of the loaded bytes {end:#x}")]
    BssBeforeLoadEnd {
        /// bss_end_addr.
        bss: u32,
        /// End of the loaded bytes.
        end: u64,
    },
    /// `entry_addr` is not inside the loaded kernel.
    #[error(
        "a.out kludge: entry_addr {entry:#x} is not inside the loaded kernel {start:#x}..{end:#x}"
    )]
    EntryOutside {
        /// entry_addr.
        entry: u32,
        /// Start of the kernel.
        start: u64,
        /// End of the kernel (bss included).
        end: u64,
    },
    /// Modules and the information structure do not fit below the 32-bit MMIO hole.
    #[error("the modules and the multiboot information need memory up to {end:#x}, but RAM below 4 GiB ends at {ram:#x} (use a larger --mem)")]
    DoesNotFit {
        /// Where they would end.
        end: u64,
        /// End of RAM below the hole.
        ram: u64,
    },
}

/// The a.out-kludge addresses of a header with flags bit 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AoutKludge {
    /// Physical address of the header itself.
    pub header_addr: u32,
    /// Where the text starts (the file is read from `header offset - (header_addr - load_addr)`).
    pub load_addr: u32,
    /// End of text and data (0: to the end of the file).
    pub load_end_addr: u32,
    /// End of bss (0: no bss).
    pub bss_end_addr: u32,
    /// Entry point.
    pub entry_addr: u32,
}

/// A valid multiboot header found in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultibootHeader {
    /// Its file offset.
    pub offset: usize,
    /// Its flags word.
    pub flags: u32,
    /// The a.out-kludge addresses, when flags bit 16 is set.
    pub kludge: Option<AoutKludge>,
}

fn u32_at(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(image[at..at + 4].try_into().expect("4 bytes"))
}

fn is_elf64(image: &[u8]) -> bool {
    image.len() > 4 && &image[..4] == b"\x7fELF" && image[4] == 2
}

/// Finds the multiboot header of `image`: `None` when there is none (an ELF64 image with a
/// stray magic but no good checksum counts as none).
pub fn find_header(image: &[u8]) -> Result<Option<MultibootHeader>, MultibootError> {
    let mut bad = None;
    let end = image.len().min(SEARCH_LEN);
    for offset in (0..end.saturating_sub(3)).step_by(4) {
        if u32_at(image, offset) != HEADER_MAGIC {
            continue;
        }
        let have = image.len() - offset;
        if have < 12 {
            return Err(MultibootError::TruncatedHeader {
                offset,
                need: 12,
                have,
            });
        }
        let flags = u32_at(image, offset + 4);
        let sum = HEADER_MAGIC
            .wrapping_add(flags)
            .wrapping_add(u32_at(image, offset + 8));
        if sum != 0 {
            bad.get_or_insert(MultibootError::BadChecksum { offset, sum });
            continue;
        }
        let unknown = flags & 0xffff & !KNOWN_REQUIRED;
        if unknown != 0 {
            return Err(MultibootError::UnsupportedFlags {
                flags,
                bits: unknown,
            });
        }
        let kludge = if flags & FLAG_AOUT_KLUDGE != 0 {
            if have < 32 {
                return Err(MultibootError::TruncatedHeader {
                    offset,
                    need: 32,
                    have,
                });
            }
            let at = |i: usize| u32_at(image, offset + 12 + 4 * i);
            Some(AoutKludge {
                header_addr: at(0),
                load_addr: at(1),
                load_end_addr: at(2),
                bss_end_addr: at(3),
                entry_addr: at(4),
            })
        } else {
            None
        };
        return Ok(Some(MultibootHeader {
            offset,
            flags,
            kludge,
        }));
    }
    match bad {
        Some(_) if is_elf64(image) => Ok(None),
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// Plans an a.out-kludge load: the entry and the one piece (text, data, bss).
fn plan_kludge(
    image: &[u8],
    mem: u64,
    offset: usize,
    k: &AoutKludge,
) -> Result<(u64, Piece), LoadError> {
    if k.load_addr > k.header_addr {
        return Err(MultibootError::LoadAfterHeader {
            load: k.load_addr,
            header: k.header_addr,
        }
        .into());
    }
    let gap = k.header_addr - k.load_addr;
    let start =
        (offset as u64)
            .checked_sub(u64::from(gap))
            .ok_or(MultibootError::LoadBeforeFile {
                header: k.header_addr,
                load: k.load_addr,
                gap,
                offset,
            })?;
    let len = image.len() as u64;
    let load = u64::from(k.load_addr);
    let load_end = match k.load_end_addr {
        0 => load + (len - start),
        end if end < k.load_addr => {
            return Err(MultibootError::LoadEndBeforeLoad {
                load: k.load_addr,
                end,
            }
            .into())
        }
        end => u64::from(end),
    };
    let file_end = start + (load_end - load);
    if file_end > len {
        return Err(MultibootError::LoadPastFile {
            start,
            end: file_end,
            len,
        }
        .into());
    }
    let bss_end = match k.bss_end_addr {
        0 => load_end,
        bss if u64::from(bss) < load_end => {
            return Err(MultibootError::BssBeforeLoadEnd { bss, end: load_end }.into())
        }
        bss => u64::from(bss),
    };
    check_range(0, load, bss_end, mem)?;
    let entry = u64::from(k.entry_addr);
    if !(load..bss_end).contains(&entry) {
        return Err(MultibootError::EntryOutside {
            entry: k.entry_addr,
            start: load,
            end: bss_end,
        }
        .into());
    }
    let piece = Piece {
        paddr: load,
        file_range: start as usize..file_end as usize,
        memsz: bss_end - load,
    };
    Ok((entry, piece))
}

/// Plans an ELF32 load: the physical entry and the segments.
fn plan_elf(image: &[u8], mem: u64) -> Result<(u64, Vec<Piece>), LoadError> {
    if is_elf64(image) {
        return Err(MultibootError::Elf64WithoutKludge.into());
    }
    let plan = plan_elf32(image, mem).map_err(|e| match e {
        LoadError::NotElf => MultibootError::NoLayout.into(),
        other => other,
    })?;
    let entry = if plan.holds(plan.entry) {
        plan.entry
    } else {
        plan.segments
            .iter()
            .find(|(p, vaddr)| plan.entry >= *vaddr && plan.entry < vaddr + p.memsz)
            .map(|(p, vaddr)| plan.entry - vaddr + p.paddr)
            .ok_or(LoadError::BadEntry(plan.entry))?
    };
    Ok((entry, plan.pieces()))
}

/// Loads the multiboot kernel `image` (whose header is `header`), its `modules`, and the
/// multiboot information structure with `cmdline`, into a guest of `mem` bytes.
pub fn load(
    memory: &GuestMemoryMmap,
    mem: u64,
    image: &[u8],
    header: &MultibootHeader,
    modules: &[Module],
    cmdline: &str,
) -> Result<LoadedImage, LoadError> {
    let (layout, planned) = match &header.kludge {
        Some(k) => (
            "a.out kludge",
            plan_kludge(image, mem, header.offset, k).map(|(entry, piece)| (entry, vec![piece])),
        ),
        None => ("ELF32", plan_elf(image, mem)),
    };
    let (entry, pieces) = planned.map_err(|e| match e {
        LoadError::Multiboot(_) => e,
        other => LoadError::InMultiboot {
            layout,
            source: Box::new(other),
        },
    })?;
    let kernel_end = pieces.iter().map(|p| p.range().1).max().unwrap_or(0);
    let info = mbi::plan(kernel_end, modules, cmdline, mem)?;
    let segments = write_pieces(memory, image, &pieces)?;
    for (module, (start, _)) in modules.iter().zip(&info.modules) {
        write(memory, *start, &module.bytes)?;
    }
    write(memory, info.addr, &info.bytes)?;
    let mut warnings = Vec::new();
    if header.flags & FLAG_VIDEO != 0 {
        warnings.push(
            "the multiboot kernel asks for a video mode (flags bit 2); hvtrace has no display \
             and, like QEMU, boots it without video information"
                .to_string(),
        );
    }
    Ok(LoadedImage {
        entry,
        segments,
        protocol: BootProtocol::Multiboot { mbi: info.addr },
        warnings,
        mappings: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
