//! [`Region`]: a byte range of the kernel image (or of guest memory) at a known virtual
//! address, with bounds-checked little-endian reads. Every table read goes through it, so no
//! input can index out of bounds.

/// Bytes that the kernel sees at virtual address `base` onwards.
#[derive(Debug, Clone, Copy)]
pub(super) struct Region<'a> {
    /// The bytes.
    pub bytes: &'a [u8],
    /// Virtual address of `bytes[0]`.
    pub base: u64,
}

impl<'a> Region<'a> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// `len` bytes at `off`.
    pub fn get(&self, off: usize, len: usize) -> Option<&'a [u8]> {
        self.bytes.get(off..off.checked_add(len)?)
    }

    /// One byte at `off`.
    pub fn u8(&self, off: usize) -> Option<u8> {
        self.bytes.get(off).copied()
    }

    /// Little-endian u16 at `off`.
    pub fn u16(&self, off: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.get(off, 2)?.try_into().ok()?))
    }

    /// Little-endian u32 at `off`.
    pub fn u32(&self, off: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.get(off, 4)?.try_into().ok()?))
    }

    /// Little-endian u64 at `off`.
    pub fn u64(&self, off: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.get(off, 8)?.try_into().ok()?))
    }

    /// Virtual address of offset `off`.
    pub fn address(&self, off: usize) -> u64 {
        self.base.wrapping_add(off as u64)
    }
}

/// `off` rounded up to a multiple of `align` (a power of two), `None` on overflow.
pub(super) fn align_up(off: usize, align: usize) -> Option<usize> {
    Some(off.checked_add(align - 1)? & !(align - 1))
}
