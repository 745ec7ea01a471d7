//! Guest memory as the trap machinery sees it.
//!
//! - **Text** (trap sites and their shadows) is addressed by the image's link addresses and
//!   found through the image's own mappings ([`AddressMap`]): a Linux `vmlinux` runs its text
//!   at `0xffffffff81000000` loaded at 16 MiB; the built-in guests and other ELF images run
//!   identity-mapped (no mapping: virtual = physical). This needs no guest page tables, so
//!   probes are armed before the first instruction.
//! - **Stack** accesses of an emulated displaced instruction (`push`, `call`, `ret`) go through
//!   the vCPU's own page tables as of its trap exit (`crate::trace::paging`), or physical
//!   memory while paging is off.
//! - A dry-run view drops the writes.

use tracer::traps::{GuestMemory, GuestText, MemoryFault, TextError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::loader::Mapping;
use crate::trace::paging::{to_physical, Translation};

/// Image addresses to guest-physical ones: through the image's mappings, else identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressMap {
    mappings: Vec<Mapping>,
}

impl AddressMap {
    /// No mappings: every address is its own guest-physical address.
    pub const IDENTITY: AddressMap = AddressMap {
        mappings: Vec::new(),
    };

    /// A map of `mappings` (identity outside them).
    pub fn new(mappings: Vec<Mapping>) -> Self {
        AddressMap { mappings }
    }

    /// The guest-physical address of `[addr, addr + len)`, which must lie in one mapping or
    /// outside every mapping.
    pub fn physical(&self, addr: u64, len: usize) -> Option<u64> {
        let end = addr.checked_add(len as u64)?;
        match self
            .mappings
            .iter()
            .find(|m| addr >= m.vaddr && addr - m.vaddr < m.len)
        {
            Some(m) if end - m.vaddr <= m.len => Some(m.paddr + (addr - m.vaddr)),
            Some(_) => None,
            None => Some(addr),
        }
    }
}

/// Guest text through the image's [`AddressMap`], and stack through `translation`.
pub(crate) struct ProbeMemory<'a> {
    pub(crate) ram: &'a GuestMemoryMmap,
    pub(crate) map: &'a AddressMap,
    /// How the trapped vCPU translates addresses (its stack); `Physical` outside a hit.
    pub(crate) translation: Translation,
}

impl ProbeMemory<'_> {
    /// Reads or writes `buf.len()` bytes at guest-virtual `gva` through the vCPU's tables,
    /// page by page, all or nothing (every page is translated before any byte moves).
    fn stack_access(&self, gva: u64, buf: &mut [u8], write: bool) -> Result<(), MemoryFault> {
        let mut chunks = Vec::with_capacity(2);
        let mut done = 0usize;
        while done < buf.len() {
            let at = gva.wrapping_add(done as u64);
            let in_page = (0x1000 - (at & 0xfff)) as usize;
            let n = in_page.min(buf.len() - done);
            let gpa = to_physical(self.ram, self.translation, at).ok_or(MemoryFault { gva })?;
            chunks.push((done, n, gpa));
            done += n;
        }
        for (done, n, gpa) in chunks {
            let chunk = &mut buf[done..done + n];
            let ok = if write {
                self.ram.write_slice(chunk, GuestAddress(gpa)).is_ok()
            } else {
                self.ram.read_slice(chunk, GuestAddress(gpa)).is_ok()
            };
            if !ok {
                return Err(MemoryFault { gva });
            }
        }
        Ok(())
    }
}

impl GuestText for ProbeMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TextError> {
        let err = TextError {
            addr,
            len: buf.len(),
        };
        let gpa = self.map.physical(addr, buf.len()).ok_or(err)?;
        self.ram.read_slice(buf, GuestAddress(gpa)).map_err(|_| err)
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TextError> {
        let err = TextError {
            addr,
            len: data.len(),
        };
        let gpa = self.map.physical(addr, data.len()).ok_or(err)?;
        self.ram
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| err)
    }
}

impl GuestMemory for ProbeMemory<'_> {
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault> {
        let mut b = [0u8; 8];
        self.stack_access(gva, &mut b, false)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u64(&mut self, gva: u64, value: u64) -> Result<(), MemoryFault> {
        self.stack_access(gva, &mut value.to_le_bytes(), true)
    }
}

/// Guest memory for a dry run of the emulator: reads are real, writes are dropped (but must
/// be possible).
pub(crate) struct DryRun<'a>(pub(crate) ProbeMemory<'a>);

impl GuestMemory for DryRun<'_> {
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault> {
        self.0.read_u64(gva)
    }
    fn write_u64(&mut self, gva: u64, _: u64) -> Result<(), MemoryFault> {
        self.0.stack_access(gva, &mut [0u8; 8], false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_like() -> AddressMap {
        AddressMap::new(vec![Mapping {
            vaddr: 0xffff_ffff_8100_0000,
            paddr: 0x100_0000,
            len: 0x20_0000,
        }])
    }

    #[test]
    fn mapped_text_goes_to_its_load_address() {
        let map = linux_like();
        assert_eq!(map.physical(0xffff_ffff_8100_0010, 4), Some(0x100_0010));
        assert_eq!(
            map.physical(0xffff_ffff_811f_fffc, 4),
            Some(0x11f_fffc),
            "the last bytes"
        );
        assert_eq!(map.physical(0xffff_ffff_811f_fffe, 4), None, "straddles");
        assert_eq!(map.physical(0x10_0000, 16), Some(0x10_0000), "identity");
        assert_eq!(AddressMap::default().physical(0x5000, 1), Some(0x5000));
    }

    #[test]
    fn text_and_physical_stack_through_the_view() {
        let ram = crate::layout::create_guest_memory(64 << 20).unwrap();
        let map = linux_like();
        let mut view = ProbeMemory {
            ram: &ram,
            map: &map,
            translation: Translation::Physical,
        };
        view.write(0xffff_ffff_8100_0100, &[0xf4]).unwrap();
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0x100_0100)).unwrap(), 0xf4);
        view.write_u64(0x8000, 0x1122).unwrap();
        assert_eq!(view.read_u64(0x8000).unwrap(), 0x1122);
        assert_eq!(
            DryRun(view).write_u64(0x8000, 7),
            Ok(()),
            "a dry run writes nothing"
        );
        assert_eq!(ram.read_obj::<u64>(GuestAddress(0x8000)).unwrap(), 0x1122);
    }
}
