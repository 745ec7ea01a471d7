//! Synthetic bzImages: header parsing, payload bounds, formats, sizes; garbage never panics.

use super::*;
use ruzstd::encoding::{compress_to_vec, CompressionLevel};

/// A bzImage-shaped file: 1 setup sector, header version `version`, then `payload` at
/// offset 0x10 of the protected-mode part.
fn image(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 1024 + 0x10];
    b[0x1f1] = 1;
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    b[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes());
    b[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes());
    b[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

fn zstd_payload(data: &[u8], size_word: u32) -> Vec<u8> {
    let mut p = compress_to_vec(data, CompressionLevel::Fastest);
    p.extend_from_slice(&size_word.to_le_bytes());
    p
}

#[test]
fn header_fields_and_payload_range() {
    let b = image(0x020f, b"\x28\xb5\x2f\xfdxyz");
    let h = SetupHeader::find(&b).expect("header");
    assert_eq!(h.version, 0x020f);
    assert_eq!(h.code32_start, 0x100000);
    assert_eq!(h.kernel_offset(), 1024);
    assert_eq!(h.payload(&b).unwrap(), b"\x28\xb5\x2f\xfdxyz");
}

#[test]
fn zero_setup_sects_means_four() {
    let mut b = image(0x020f, b"");
    b[0x1f1] = 0;
    assert_eq!(SetupHeader::find(&b).unwrap().kernel_offset(), 5 * 512);
}

#[test]
fn elf_and_short_files_have_no_header() {
    assert_eq!(SetupHeader::find(b"\x7fELF"), None);
    assert_eq!(SetupHeader::find(&[0u8; 0x1000]), None);
    let elf = b"\x7fELF rest".to_vec();
    assert!(matches!(kernel_elf(&elf), Ok(Cow::Borrowed(_))));
}

#[test]
fn payload_round_trips_and_checks_its_size_word() {
    let elf: Vec<u8> = b"\x7fELF"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(100_000))
        .collect();
    let b = image(0x020f, &zstd_payload(&elf, elf.len() as u32));
    assert_eq!(kernel_elf(&b).unwrap().as_ref(), elf.as_slice());
    let wrong = image(0x020f, &zstd_payload(&elf, 7));
    assert_eq!(
        kernel_elf(&wrong),
        Err(BzImageError::SizeMismatch {
            got: elf.len() as u64,
            expected: 7
        })
    );
}

#[test]
fn a_payload_that_is_not_elf_is_refused() {
    let b = image(0x020f, &zstd_payload(b"plain text", 10));
    assert_eq!(kernel_elf(&b), Err(BzImageError::NotElf(10)));
}

#[test]
fn other_formats_are_named() {
    for (magic, name) in [
        (&b"\x1f\x8b\x08"[..], "gzip"),
        (b"\xfd7zXZ\0", "xz"),
        (b"BZh9", "bzip2"),
        (b"\x02\x21\x4c\x18", "lz4"),
        (b"\x89LZO", "lzo"),
        (b"\x5d\0\0\x80", "lzma"),
    ] {
        let b = image(0x020f, magic);
        assert_eq!(
            kernel_elf(&b),
            Err(BzImageError::UnsupportedCompression(name))
        );
        assert!(kernel_elf(&b).unwrap_err().to_string().contains(name));
    }
}

#[test]
fn old_protocols_and_truncation_are_errors() {
    let b = image(0x0207, b"\x28\xb5\x2f\xfd");
    let e = kernel_elf(&b).unwrap_err();
    assert!(
        matches!(
            e,
            BzImageError::OldProtocol {
                major: 2,
                minor: 7,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("2.07"), "{e}");
    let mut t = image(0x020f, b"\x28\xb5\x2f\xfd");
    t.truncate(t.len() - 2);
    assert!(matches!(
        kernel_elf(&t),
        Err(BzImageError::Truncated { .. })
    ));
}

#[test]
fn corrupt_zstd_is_an_error_not_a_panic() {
    let mut p = zstd_payload(&[0x7f; 5000], 5000);
    for i in (4..p.len()).step_by(3) {
        p[i] ^= 0x5a;
    }
    let b = image(0x020f, &p);
    assert!(kernel_elf(&b).is_err());
}
