//! Linux `bzImage` files: the x86 boot protocol's setup header and the compressed kernel
//! (the payload) inside, decompressed on the host to the `vmlinux` ELF it was built from.
//!
//! The setup header (Documentation/arch/x86/boot.rst) starts at file offset 0x1f1; "HdrS" at
//! 0x202 marks it. The protected-mode code starts after `(setup_sects + 1) * 512` bytes and
//! `payload_offset`/`payload_length` (protocol 2.08+) name the compressed kernel relative to
//! it. Debian compresses with zstd; the kernel's build appends the decompressed size as a
//! 32-bit little-endian word after the zstd frame, which is checked here. Other formats are
//! recognised by their magic and refused with their name.

use std::borrow::Cow;
use std::io::Read;

/// File offset of the setup header's first field (`setup_sects`).
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// File offset of the `HdrS` magic.
pub const HDRS_OFFSET: usize = 0x202;
/// `HdrS`, as the header stores it.
pub const HDRS_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
/// Lowest boot-protocol version whose header names the payload (`payload_offset`).
pub const MIN_PAYLOAD_VERSION: u16 = 0x0208;
/// Most bytes a payload may decompress to (a guard against a corrupt size word).
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Why a bzImage could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BzImageError {
    /// The file is shorter than its setup header or than a range it names.
    #[error("bzImage truncated: {what} needs bytes {start:#x}..{end:#x}, the file has {len:#x}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// First byte needed.
        start: u64,
        /// End of the bytes needed.
        end: u64,
        /// File length.
        len: u64,
    },
    /// The boot protocol is older than this reader supports.
    #[error("bzImage boot protocol {major}.{minor:02} is too old: {need} needs {min_major}.{min_minor:02} or newer")]
    OldProtocol {
        /// Major version in the header.
        major: u8,
        /// Minor version in the header.
        minor: u8,
        /// What needed the newer version.
        need: &'static str,
        /// Lowest major version accepted.
        min_major: u8,
        /// Lowest minor version accepted.
        min_minor: u8,
    },
    /// The payload is compressed with a format hvtrace does not decompress.
    #[error("the bzImage payload is {0}-compressed; hvtrace decompresses zstd only (boot the uncompressed vmlinux, or extract it with the kernel's scripts/extract-vmlinux)")]
    UnsupportedCompression(&'static str),
    /// The payload's zstd stream is corrupt.
    #[error("the bzImage payload's zstd stream is corrupt: {0}")]
    Zstd(String),
    /// The decompressed size disagrees with the size word after the zstd frame.
    #[error("the bzImage payload decompressed to {got} bytes, but its trailing size word says {expected}")]
    SizeMismatch {
        /// Bytes decompressed.
        got: u64,
        /// The size the kernel build recorded.
        expected: u64,
    },
    /// The decompressed kernel is not an ELF file.
    #[error("the bzImage payload decompressed to {0} bytes that are not an ELF file")]
    NotElf(usize),
}

/// The setup header fields hvtrace uses (offsets are file offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// 512-byte sectors of real-mode setup code after the boot sector (0 means 4).
    pub setup_sects: u8,
    /// Boot protocol version, major in the high byte (`0x020f` is 2.15).
    pub version: u16,
    /// `loadflags` (bit 0 LOADED_HIGH).
    pub loadflags: u8,
    /// Where the 32-bit kernel is loaded by default (the 64-bit entry is 0x200 past it).
    pub code32_start: u32,
    /// Highest address an initrd may end at (2.03+).
    pub initrd_addr_max: u32,
    /// Physical alignment the kernel needs (2.05+).
    pub kernel_alignment: u32,
    /// Whether the kernel may be loaded at any aligned address (2.05+).
    pub relocatable_kernel: bool,
    /// `xloadflags` (2.12+): bit 0 XLF_KERNEL_64, the 64-bit entry exists.
    pub xloadflags: u16,
    /// Longest command line without its NUL (2.06+).
    pub cmdline_size: u32,
    /// The payload's offset from the protected-mode code (2.08+).
    pub payload_offset: u32,
    /// The payload's length (2.08+).
    pub payload_length: u32,
    /// The preferred load address (2.10+).
    pub pref_address: u64,
    /// Bytes the kernel needs from its load address while it decompresses (2.10+).
    pub init_size: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// End of the header fields read here (`init_size` ends at 0x264).
const HEADER_END: usize = 0x264;

impl SetupHeader {
    /// The setup header of `image`, if it has one ("HdrS" at 0x202 and the 0xAA55 boot
    /// flag). An ELF or any other file gives `None`.
    pub fn find(image: &[u8]) -> Option<SetupHeader> {
        if image.len() < HEADER_END
            || u32_at(image, HDRS_OFFSET) != HDRS_MAGIC
            || u16_at(image, 0x1fe) != 0xaa55
        {
            return None;
        }
        Some(SetupHeader {
            setup_sects: image[0x1f1],
            version: u16_at(image, 0x206),
            loadflags: image[0x211],
            code32_start: u32_at(image, 0x214),
            initrd_addr_max: u32_at(image, 0x22c),
            kernel_alignment: u32_at(image, 0x230),
            relocatable_kernel: image[0x234] != 0,
            xloadflags: u16_at(image, 0x236),
            cmdline_size: u32_at(image, 0x238),
            payload_offset: u32_at(image, 0x248),
            payload_length: u32_at(image, 0x24c),
            pref_address: u64::from(u32_at(image, 0x258)) | (u64::from(u32_at(image, 0x25c)) << 32),
            init_size: u32_at(image, 0x260),
        })
    }

    /// File offset of the protected-mode kernel (after the real-mode setup sectors).
    pub fn kernel_offset(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            usize::from(self.setup_sects)
        };
        (sects + 1) * 512
    }

    /// An error unless the protocol is at least `min`; `need` says what needed it.
    pub fn require(&self, min: u16, need: &'static str) -> Result<(), BzImageError> {
        if self.version >= min {
            return Ok(());
        }
        Err(BzImageError::OldProtocol {
            major: (self.version >> 8) as u8,
            minor: self.version as u8,
            need,
            min_major: (min >> 8) as u8,
            min_minor: min as u8,
        })
    }

    /// The compressed payload's bytes in `image`.
    pub fn payload<'a>(&self, image: &'a [u8]) -> Result<&'a [u8], BzImageError> {
        self.require(MIN_PAYLOAD_VERSION, "finding the compressed kernel")?;
        let start = self.kernel_offset() as u64 + u64::from(self.payload_offset);
        let end = start + u64::from(self.payload_length);
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| image.get(s..e))
            .ok_or(BzImageError::Truncated {
                what: "the payload",
                start,
                end,
                len: image.len() as u64,
            })
    }
}

/// The compression format of a kernel payload, by its magic.
pub fn compression(payload: &[u8]) -> &'static str {
    const MAGICS: [(&[u8], &str); 7] = [
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0x1f, 0x8b], "gzip"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x5d, 0, 0], "lzma"),
        (b"BZh", "bzip2"),
        (&[0x89, b'L', b'Z', b'O'], "lzo"),
        (&[0x02, 0x21, 0x4c, 0x18], "lz4"),
    ];
    MAGICS
        .iter()
        .find(|(magic, _)| payload.starts_with(magic))
        .map_or("an unknown format", |(_, name)| name)
}

/// Decompresses a zstd kernel payload: one zstd frame followed by the 32-bit decompressed
/// size the kernel build appends (checked when present).
pub fn decompress_payload(payload: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let format = compression(payload);
    if format != "zstd" {
        return Err(BzImageError::UnsupportedCompression(format));
    }
    let mut reader = payload;
    let decoder = ruzstd::decoding::StreamingDecoder::new(&mut reader)
        .map_err(|e| BzImageError::Zstd(e.to_string()))?;
    let mut out = Vec::new();
    decoder
        .take(MAX_DECOMPRESSED)
        .read_to_end(&mut out)
        .map_err(|e| BzImageError::Zstd(e.to_string()))?;
    if let [a, b, c, d] = *reader {
        let expected = u64::from(u32::from_le_bytes([a, b, c, d]));
        if expected != out.len() as u64 {
            return Err(BzImageError::SizeMismatch {
                got: out.len() as u64,
                expected,
            });
        }
    }
    if !out.starts_with(b"\x7fELF") {
        return Err(BzImageError::NotElf(out.len()));
    }
    Ok(out)
}

/// The kernel ELF of `image`: the decompressed payload of a bzImage, or `image` itself for
/// anything else (symbols, types and probe sites are read from it).
pub fn kernel_elf(image: &[u8]) -> Result<Cow<'_, [u8]>, BzImageError> {
    match SetupHeader::find(image) {
        Some(header) => Ok(Cow::Owned(decompress_payload(header.payload(image)?)?)),
        None => Ok(Cow::Borrowed(image)),
    }
}

#[cfg(test)]
mod tests;
