//! Guest memory as the trap machinery sees it: text and stack through guest-physical memory
//! (the built-in guests and ELF images run under the VMM's identity map), and a dry-run view
//! whose writes are dropped.

use tracer::traps::{GuestMemory, GuestText, MemoryFault, TextError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest text and stack accessed through guest-physical memory. The built-in guests and ELF
/// images run under the VMM's identity map, so guest-virtual = guest-physical here.
pub(crate) struct IdentityMemory<'a>(pub(crate) &'a GuestMemoryMmap);

impl GuestText for IdentityMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TextError> {
        self.0
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| TextError {
                addr,
                len: buf.len(),
            })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TextError> {
        self.0
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| TextError {
                addr,
                len: data.len(),
            })
    }
}

impl GuestMemory for IdentityMemory<'_> {
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault> {
        self.0
            .read_obj(GuestAddress(gva))
            .map_err(|_| MemoryFault { gva })
    }

    fn write_u64(&mut self, gva: u64, value: u64) -> Result<(), MemoryFault> {
        self.0
            .write_obj(value, GuestAddress(gva))
            .map_err(|_| MemoryFault { gva })
    }
}

/// Guest memory for a dry run of the emulator: reads are real, writes are dropped.
pub(crate) struct DryRun<'a>(pub(crate) &'a GuestMemoryMmap);

impl GuestMemory for DryRun<'_> {
    fn read_u64(&mut self, gva: u64) -> Result<u64, MemoryFault> {
        IdentityMemory(self.0).read_u64(gva)
    }
    fn write_u64(&mut self, gva: u64, _: u64) -> Result<(), MemoryFault> {
        let mut probe = [0u8; 8];
        self.0
            .read_slice(&mut probe, GuestAddress(gva))
            .map_err(|_| MemoryFault { gva })
    }
}
