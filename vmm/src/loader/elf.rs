//! ELF images: the ELF64 x86_64 executables of hvtrace's own boot protocol, and (through the
//! same code) the ELF32 i386 images of multiboot kernels.
//!
//! Each `PT_LOAD` segment is copied to its physical address (`p_paddr`) and its bss is zeroed.
//! Segments must lie in RAM and stay clear of the VMM's own tables (see [`crate::layout`]).

use object::elf::{FileHeader32, FileHeader64, EM_386, EM_X86_64, ET_EXEC, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use vm_memory::GuestMemoryMmap;

use super::{check_range, write_pieces, BootProtocol, LoadError, LoadedImage, Piece};

/// A parsed, validated ELF executable: its entry and its loadable segments.
pub(crate) struct ElfPlan {
    /// `e_entry` as written in the file.
    pub entry: u64,
    /// Each `PT_LOAD` segment, with its virtual address.
    pub segments: Vec<(Piece, u64)>,
}

impl ElfPlan {
    /// The pieces to write.
    pub fn pieces(&self) -> Vec<Piece> {
        self.segments.iter().map(|(p, _)| p.clone()).collect()
    }

    /// Whether physical address `addr` lies in a loaded segment.
    pub fn holds(&self, addr: u64) -> bool {
        self.segments
            .iter()
            .any(|(p, _)| addr >= p.paddr && addr < p.paddr + p.memsz)
    }
}

/// Parses and validates an ELF executable of class `Elf` for `machine` (named `arch` in
/// messages) for a guest with `mem` bytes of RAM, without writing anything.
fn plan<Elf: FileHeader<Endian = Endianness>>(
    image: &[u8],
    mem: u64,
    machine: u16,
    arch: &str,
) -> Result<ElfPlan, LoadError> {
    if image.len() < 4 || &image[..4] != b"\x7fELF" {
        return Err(LoadError::NotElf);
    }
    let header = Elf::parse(image).map_err(|e| LoadError::Malformed(e.to_string()))?;
    let endian = header
        .endian()
        .map_err(|e| LoadError::Malformed(e.to_string()))?;
    if header.e_machine(endian) != machine {
        return Err(LoadError::Unsupported(format!(
            "machine {} is not {arch}",
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
        let offset: u64 = ph.p_offset(endian).into();
        let filesz: u64 = ph.p_filesz(endian).into();
        let memsz: u64 = ph.p_memsz(endian).into();
        let paddr: u64 = ph.p_paddr(endian).into();
        let vaddr: u64 = ph.p_vaddr(endian).into();
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
        check_range(index, paddr, end, mem)?;
        let piece = Piece {
            paddr,
            file_range: offset as usize..file_end as usize,
            memsz,
        };
        segments.push((piece, vaddr));
    }
    if segments.is_empty() {
        return Err(LoadError::NoSegments);
    }
    Ok(ElfPlan {
        entry: header.e_entry(endian).into(),
        segments,
    })
}

/// Plans an ELF64 x86_64 image of hvtrace's own protocol: its entry must be a physical
/// address inside a loaded segment (vaddr == paddr).
pub(crate) fn plan_native(image: &[u8], mem: u64) -> Result<ElfPlan, LoadError> {
    let plan = plan::<FileHeader64<Endianness>>(image, mem, EM_X86_64, "x86_64")?;
    if !plan.holds(plan.entry) {
        return Err(LoadError::BadEntry(plan.entry));
    }
    Ok(plan)
}

/// Plans the ELF32 i386 image of a multiboot kernel (the entry is checked by the caller).
pub(crate) fn plan_elf32(image: &[u8], mem: u64) -> Result<ElfPlan, LoadError> {
    plan::<FileHeader32<Endianness>>(image, mem, EM_386, "i386 (a multiboot ELF must be 32-bit)")
}

/// Loads the ELF64 `image` into `memory` (a guest of `mem` bytes) and returns its entry point.
pub fn load_elf(
    memory: &GuestMemoryMmap,
    mem: u64,
    image: &[u8],
) -> Result<LoadedImage, LoadError> {
    let plan = plan_native(image, mem)?;
    let segments = write_pieces(memory, image, &plan.pieces())?;
    Ok(LoadedImage {
        entry: plan.entry,
        segments,
        protocol: BootProtocol::Native,
        warnings: Vec::new(),
        mappings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::create_guest_memory;
    use vm_memory::{Bytes, GuestAddress};

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
