//! Guest-virtual to guest-physical translation through the vCPU's own page tables, for
//! scripts that read guest memory (`copyin`, strings, `stack()`).
//!
//! Covers x86-64 long-mode paging: 4-level (CR4.LA57 = 0) and 5-level (LA57 = 1), 4 KiB pages
//! and 2 MiB / 1 GiB large pages (PS bit in a PDE / PDPTE). The walk reads at most one entry
//! per level (4 or 5 reads), whatever the tables contain: garbage, cycles and self-references
//! cannot make it loop, and nothing guest-controlled can make it panic. Failures name the level.
//! Not covered: legacy 32-bit and PAE paging, paging disabled, EPT/NPT (the VMM's memory is
//! the guest-physical space), and access checks (the walk reports W/U/NX, it enforces none).
//! MAXPHYADDR is taken as 52; NX is reported as if EFER.NXE were set.

use std::fmt;

/// Guest-physical memory, as the VMM sees it.
pub trait PhysMemory {
    /// Reads the little-endian u64 at `gpa`, or `None` if it is not backed by memory.
    fn read_u64(&self, gpa: u64) -> Option<u64>;

    /// Reads `buf.len()` bytes at `gpa`; false if any of them is not backed (then `buf` is
    /// unspecified). The default goes through [`PhysMemory::read_u64`] word by word; the VMM
    /// can copy directly instead.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Some(at) = gpa.checked_add(done as u64) else {
                return false;
            };
            let word_at = at & !7;
            let skip = (at - word_at) as usize;
            let Some(word) = self.read_u64(word_at) else {
                return false;
            };
            let bytes = word.to_le_bytes();
            let n = (8 - skip).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
            done += n;
        }
        true
    }
}

/// A level of the paging structures, from the root down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// PML5 (5-level paging only).
    Pml5,
    /// PML4.
    Pml4,
    /// Page-directory-pointer table (PS here: 1 GiB page).
    Pdpt,
    /// Page directory (PS here: 2 MiB page).
    Pd,
    /// Page table (4 KiB pages).
    Pt,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Pml5 => "PML5",
            Level::Pml4 => "PML4",
            Level::Pdpt => "PDPT",
            Level::Pd => "PD",
            Level::Pt => "PT",
        })
    }
}

/// The size of the page a translation ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB.
    Size2M,
    /// 1 GiB.
    Size1G,
}

impl PageSize {
    /// The page size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The guest-physical address.
    pub gpa: u64,
    /// The page it lies in.
    pub page_size: PageSize,
    /// Writable at every level (R/W set throughout).
    pub writable: bool,
    /// User-accessible at every level (U/S set throughout).
    pub user: bool,
    /// Executable (NX clear at every level).
    pub executable: bool,
}

/// Why a translation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// The address is not canonical for the paging mode.
    #[error(
        "{gva:#x} is not a canonical address ({} paging)",
        if *la57 { "5-level" } else { "4-level" }
    )]
    NonCanonical {
        /// The address.
        gva: u64,
        /// 5-level paging?
        la57: bool,
    },
    /// The entry at `level` has P = 0.
    #[error("{gva:#x}: not present at the {level} level (entry {entry:#x})")]
    NotPresent {
        /// The address.
        gva: u64,
        /// The level whose entry is not present.
        level: Level,
        /// The entry.
        entry: u64,
    },
    /// The entry at `level` has reserved bits set (PS in a PML4E/PML5E, or address bits
    /// of a large page that must be zero).
    #[error("{gva:#x}: reserved bits set at the {level} level (entry {entry:#x})")]
    ReservedBits {
        /// The address.
        gva: u64,
        /// The level of the bad entry.
        level: Level,
        /// The entry.
        entry: u64,
    },
    /// The table for `level` lies outside guest memory.
    #[error("{gva:#x}: the {level} entry at physical {entry_gpa:#x} is outside guest memory")]
    Unreadable {
        /// The address.
        gva: u64,
        /// The level whose entry could not be read.
        level: Level,
        /// Where the entry would be.
        entry_gpa: u64,
    },
}

/// Why a virtual read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A page of the range did not translate; `done` bytes were read before it.
    #[error("{err} (after {done} bytes)")]
    Walk {
        /// The translation failure.
        err: WalkError,
        /// Bytes read before it.
        done: usize,
    },
    /// A page translated to guest-physical memory that is not backed.
    #[error("{gva:#x} maps to physical {gpa:#x}, outside guest memory (after {done} bytes)")]
    Physical {
        /// The virtual address.
        gva: u64,
        /// Its physical address.
        gpa: u64,
        /// Bytes read before it.
        done: usize,
    },
    /// The range wraps past the top of the address space.
    #[error("the range at {gva:#x} wraps past the top of the address space")]
    Wraps {
        /// The start of the range.
        gva: u64,
    },
}

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
/// Physical-address bits 51:12 of an entry or of CR3.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Is `gva` canonical: bits 63..47 (or 63..56 with LA57) all equal?
pub fn is_canonical(gva: u64, la57: bool) -> bool {
    let bits = if la57 { 57 } else { 48 };
    let top = (gva as i64) >> (bits - 1);
    top == 0 || top == -1
}

/// Translates `gva` through the page tables rooted at `cr3`.
pub fn translate<M: PhysMemory + ?Sized>(
    mem: &M,
    cr3: u64,
    la57: bool,
    gva: u64,
) -> Result<Translation, WalkError> {
    if !is_canonical(gva, la57) {
        return Err(WalkError::NonCanonical { gva, la57 });
    }
    let levels: &[(Level, u32)] = if la57 {
        &[
            (Level::Pml5, 48),
            (Level::Pml4, 39),
            (Level::Pdpt, 30),
            (Level::Pd, 21),
            (Level::Pt, 12),
        ]
    } else {
        &[
            (Level::Pml4, 39),
            (Level::Pdpt, 30),
            (Level::Pd, 21),
            (Level::Pt, 12),
        ]
    };
    let mut table = cr3 & ADDR_MASK;
    let (mut writable, mut user, mut executable) = (true, true, true);
    for &(level, shift) in levels {
        let index = (gva >> shift) & 0x1ff;
        let entry_gpa = table | (index * 8);
        let entry = mem.read_u64(entry_gpa).ok_or(WalkError::Unreadable {
            gva,
            level,
            entry_gpa,
        })?;
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent { gva, level, entry });
        }
        writable &= entry & WRITABLE != 0;
        user &= entry & USER != 0;
        executable &= entry & NX == 0;
        let large = match level {
            Level::Pml5 | Level::Pml4 if entry & PS != 0 => {
                return Err(WalkError::ReservedBits { gva, level, entry });
            }
            Level::Pdpt if entry & PS != 0 => Some(PageSize::Size1G),
            Level::Pd if entry & PS != 0 => Some(PageSize::Size2M),
            Level::Pt => Some(PageSize::Size4K),
            _ => None,
        };
        if let Some(page_size) = large {
            let offset_mask = page_size.bytes() - 1;
            // Bits 12 (PAT) and above, below the page size, must be zero except PAT.
            let reserved = entry & ADDR_MASK & offset_mask & !(1 << 12);
            if page_size != PageSize::Size4K && reserved != 0 {
                return Err(WalkError::ReservedBits { gva, level, entry });
            }
            let base = entry & ADDR_MASK & !offset_mask;
            return Ok(Translation {
                gpa: base | (gva & offset_mask),
                page_size,
                writable,
                user,
                executable,
            });
        }
        table = entry & ADDR_MASK;
    }
    // Unreachable in practice: the PT level always returns. Report it as a PT failure
    // rather than panicking.
    Err(WalkError::Unreadable {
        gva,
        level: Level::Pt,
        entry_gpa: table,
    })
}

/// Reads `buf.len()` bytes of guest-virtual memory at `gva`, crossing page boundaries.
pub fn read_virtual<M: PhysMemory + ?Sized>(
    mem: &M,
    cr3: u64,
    la57: bool,
    gva: u64,
    buf: &mut [u8],
) -> Result<(), ReadError> {
    if gva.checked_add(buf.len() as u64).is_none() {
        return Err(ReadError::Wraps { gva });
    }
    let mut done = 0;
    while done < buf.len() {
        let at = gva + done as u64;
        let t = translate(mem, cr3, la57, at).map_err(|err| ReadError::Walk { err, done })?;
        let in_page = t.page_size.bytes() - (at & (t.page_size.bytes() - 1));
        let n = (buf.len() - done).min(usize::try_from(in_page).unwrap_or(usize::MAX));
        if !mem.read(t.gpa, &mut buf[done..done + n]) {
            return Err(ReadError::Physical {
                gva: at,
                gpa: t.gpa,
                done,
            });
        }
        done += n;
    }
    Ok(())
}

/// A NUL-terminated string read from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestString {
    /// The bytes before the NUL (or the first `max_len` bytes when none came).
    pub bytes: Vec<u8>,
    /// Was the NUL found within `max_len` bytes? False: the string was cut at `max_len`.
    pub terminated: bool,
}

/// Reads a NUL-terminated string at `gva`, at most `max_len` bytes (without the NUL). Reads
/// no further than needed, page by page, so a string that ends just before an unmapped page
/// reads fine.
pub fn read_cstring<M: PhysMemory + ?Sized>(
    mem: &M,
    cr3: u64,
    la57: bool,
    gva: u64,
    max_len: usize,
) -> Result<GuestString, ReadError> {
    const CHUNK: u64 = 256;
    let mut bytes = Vec::new();
    while bytes.len() < max_len {
        let at = gva
            .checked_add(bytes.len() as u64)
            .ok_or(ReadError::Wraps { gva })?;
        let to_page_end = 0x1000 - (at & 0xfff);
        let want = CHUNK.min(to_page_end).min((max_len - bytes.len()) as u64) as usize;
        let mut chunk = vec![0u8; want];
        read_virtual(mem, cr3, la57, at, &mut chunk).map_err(|e| match e {
            ReadError::Walk { err, done } => ReadError::Walk {
                err,
                done: bytes.len() + done,
            },
            ReadError::Physical { gva, gpa, done } => ReadError::Physical {
                gva,
                gpa,
                done: bytes.len() + done,
            },
            other => other,
        })?;
        if let Some(nul) = chunk.iter().position(|&b| b == 0) {
            bytes.extend_from_slice(&chunk[..nul]);
            return Ok(GuestString {
                bytes,
                terminated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(GuestString {
        bytes,
        terminated: false,
    })
}

#[cfg(test)]
mod tests;
