//! Loading ELF64 guest images into guest memory.
//!
//! Each `PT_LOAD` segment is copied to its physical address (`p_paddr`) and its bss is zeroed.
//! Segments must lie in RAM and stay clear of the VMM's own tables (see [`crate::layout`]).

use object::elf::{FileHeader64, EM_X86_64, ET_EXEC, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{in_ram, VMM_RESERVED};

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// The file does not start with the ELF magic.
    #[error("not an ELF file (it does not start with \\x7fELF)")]
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
    /// Writing guest memory failed.
    #[error("guest memory write failed: {0}")]
    Write(String),
}

/// The result of loading an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The entry point (a physical = virtual address under the identity map).
    pub entry: u64,
    /// Loaded physical ranges `[start, end)`.
    pub segments: Vec<(u64, u64)>,
}

/// One loadable segment, validated.
struct Segment {
    paddr: u64,
    file_range: std::ops::Range<usize>,
    memsz: u64,
}

/// Parses and validates `image` for a guest with `mem` bytes of RAM, without writing anything.
fn plan(image: &[u8], mem: u64) -> Result<(u64, Vec<Segment>), LoadError> {
    if image.len() < 4 || &image[..4] != b"\x7fELF" {
        return Err(LoadError::NotElf);
    }
    let header = FileHeader64::<Endianness>::parse(image)
        .map_err(|e| LoadError::Malformed(e.to_string()))?;
    let endian = header
        .endian()
        .map_err(|e| LoadError::Malformed(e.to_string()))?;
    if header.e_machine(endian) != EM_X86_64 {
        return Err(LoadError::Unsupported(format!(
            "machine {} is not x86_64",
            header.e_machine(endian)
        )));
    }
    if header.e_type(endian) != ET_EXEC {
        return Err(LoadError::Unsupported(format!(
            "type {} is not an executable (ET_EXEC)",
            header.e_type(endian)
        )));
    }
    let phdrs = header
        .program_headers(endian, image)
        .map_err(|e| LoadError::Malformed(e.to_string()))?;
    let len = image.len() as u64;
    let mut segments = Vec::new();
    for (index, ph) in phdrs.iter().enumerate() {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let (offset, filesz, memsz) =
            (ph.p_offset(endian), ph.p_filesz(endian), ph.p_memsz(endian));
        let paddr = ph.p_paddr(endian);
        let file_end = offset
            .checked_add(filesz)
            .ok_or_else(|| LoadError::Malformed(format!("segment {index} file range overflows")))?;
        if file_end > len {
            return Err(LoadError::Truncated {
                index,
                start: offset,
                end: file_end,
                len,
            });
        }
        if memsz < filesz {
            return Err(LoadError::Malformed(format!(
                "segment {index} has p_memsz {memsz:#x} < p_filesz {filesz:#x}"
            )));
        }
        let end = paddr
            .checked_add(memsz)
            .ok_or_else(|| LoadError::Malformed(format!("segment {index} address overflows")))?;
        if !in_ram(mem, paddr, end) {
            return Err(LoadError::OutsideRam {
                index,
                start: paddr,
                end,
                mem,
            });
        }
        if let Some(&(rstart, rend, what)) = VMM_RESERVED
            .iter()
            .find(|(rs, re, _)| paddr < *re && end > *rs)
        {
            return Err(LoadError::Reserved {
                index,
                start: paddr,
                end,
                what,
                rstart,
                rend,
            });
        }
        segments.push(Segment {
            paddr,
            file_range: offset as usize..file_end as usize,
            memsz,
        });
    }
    if segments.is_empty() {
        return Err(LoadError::NoSegments);
    }
    let entry = header.e_entry(endian);
    if !segments
        .iter()
        .any(|s| entry >= s.paddr && entry < s.paddr + s.memsz)
    {
        return Err(LoadError::BadEntry(entry));
    }
    Ok((entry, segments))
}

/// Loads `image` into `memory` (a guest of `mem` bytes) and returns its entry point.
pub fn load_elf(
    memory: &GuestMemoryMmap,
    mem: u64,
    image: &[u8],
) -> Result<LoadedImage, LoadError> {
    let (entry, segments) = plan(image, mem)?;
    let mut loaded = Vec::with_capacity(segments.len());
    for s in &segments {
        let bytes = &image[s.file_range.clone()];
        memory
            .write_slice(bytes, GuestAddress(s.paddr))
            .map_err(|e| LoadError::Write(e.to_string()))?;
        let bss = s.memsz - bytes.len() as u64;
        if bss > 0 {
            let zeros = vec![0u8; bss as usize];
            memory
                .write_slice(&zeros, GuestAddress(s.paddr + bytes.len() as u64))
                .map_err(|e| LoadError::Write(e.to_string()))?;
        }
        loaded.push((s.paddr, s.paddr + s.memsz));
    }
    Ok(LoadedImage {
        entry,
        segments: loaded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::create_guest_memory;

    const MEM: u64 = 64 << 20;

    /// Builds a minimal ELF64 x86_64 executable with one PT_LOAD segment.
    fn elf(paddr: u64, code: &[u8], memsz: u64, entry: u64) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1; // version
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R+X
        f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        f[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn loads_segment_and_zeroes_bss() {
        let mem = create_guest_memory(MEM).unwrap();
        mem.write_slice(&[0xaa; 16], GuestAddress(0x10_0004))
            .unwrap();
        let image = elf(0x10_0000, &[0xf4, 0x90, 0x90, 0x90], 16, 0x10_0000);
        let loaded = load_elf(&mem, MEM, &image).unwrap();
        assert_eq!(loaded.entry, 0x10_0000);
        assert_eq!(loaded.segments, vec![(0x10_0000, 0x10_0010)]);
        let mut buf = [0u8; 16];
        mem.read_slice(&mut buf, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(&buf[..4], &[0xf4, 0x90, 0x90, 0x90]);
        assert!(buf[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn rejects_non_elf() {
        let mem = create_guest_memory(MEM).unwrap();
        assert_eq!(
            load_elf(&mem, MEM, b"#!/bin/sh\necho hi\n"),
            Err(LoadError::NotElf)
        );
        assert_eq!(load_elf(&mem, MEM, b""), Err(LoadError::NotElf));
    }

    #[test]
    fn rejects_truncated_elf() {
        let mem = create_guest_memory(MEM).unwrap();
        let image = elf(0x10_0000, &[0x90; 64], 64, 0x10_0000);
        for cut in [10, 64, 100, 130] {
            let err = load_elf(&mem, MEM, &image[..cut]).unwrap_err();
            assert!(
                matches!(err, LoadError::Malformed(_) | LoadError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn rejects_segments_outside_ram_or_over_vmm_tables() {
        let mem = create_guest_memory(MEM).unwrap();
        let high = elf(MEM - 8, &[0x90; 16], 16, MEM - 8);
        assert!(matches!(
            load_elf(&mem, MEM, &high),
            Err(LoadError::OutsideRam { .. })
        ));
        let low = elf(0x2000, &[0x90; 16], 16, 0x2000);
        assert!(matches!(
            load_elf(&mem, MEM, &low),
            Err(LoadError::Reserved { .. })
        ));
    }

    #[test]
    fn rejects_entry_outside_segments() {
        let mem = create_guest_memory(MEM).unwrap();
        let image = elf(0x10_0000, &[0x90; 16], 16, 0x20_0000);
        assert_eq!(
            load_elf(&mem, MEM, &image),
            Err(LoadError::BadEntry(0x20_0000))
        );
    }

    #[test]
    fn rejects_wrong_machine() {
        let mem = create_guest_memory(MEM).unwrap();
        let mut image = elf(0x10_0000, &[0x90; 16], 16, 0x10_0000);
        image[18] = 183; // aarch64
        assert!(matches!(
            load_elf(&mem, MEM, &image),
            Err(LoadError::Unsupported(_))
        ));
    }
}
