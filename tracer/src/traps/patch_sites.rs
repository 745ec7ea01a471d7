//! Where a Linux kernel rewrites its own text at run time, so that no trap goes there.
//!
//! The kernel turns jump labels (`static_branch_*`: a 2- or 5-byte `jmp` or NOP) and static
//! calls (a 5-byte `call`/`jmp` to a trampoline, and the `__SCT__*` trampolines themselves)
//! on and off while it runs, with `text_poke_bp`, which checks the bytes it replaces. A trap
//! on such an instruction would be read back as garbage or overwritten, and the displaced
//! instruction would change under it, so [`KernelPatchSites::conflict`] names the site a
//! probe must not use.
//!
//! The tables come from the image, read through the boundary symbols of
//! [`MARKERS`](crate::symbols::MARKERS) (a `vmlinux` keeps them inside `.data`/`.init.data`,
//! without section headers of their own):
//! - `__jump_table`: 16-byte entries `{ s32 code, s32 target, s64 key }`, each field relative
//!   to its own address; the instruction at `code` is a 2-byte (`jmp rel8`, `66 90`) or a
//!   5-byte one (`jmp rel32`, `nopl 0(%rax,%rax)`), as the image's bytes there say.
//! - `.static_call_sites`: 8-byte entries `{ s32 addr, s32 key }`, relative likewise; the
//!   instruction at `addr` is a 5-byte `call` or `jmp`.
//! - `.static_call.text`: the trampolines, rewritten whole.
//!
//! An image without these symbols (the built-in guests) has no such sites.

use object::{Object, ObjectSegment};

use crate::symbols::ElfSymbols;

/// The longest instruction the kernel writes at a jump-label or static-call site.
pub const PATCH_LEN: u64 = 5;

/// What the kernel patches at a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// A jump label (`__jump_table`).
    JumpLabel,
    /// A static-call site (`.static_call_sites`).
    StaticCall,
    /// A static-call trampoline (`.static_call.text`).
    StaticCallTrampoline,
}

impl std::fmt::Display for PatchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PatchKind::JumpLabel => "jump-label",
            PatchKind::StaticCall => "static-call",
            PatchKind::StaticCallTrampoline => "static-call trampoline",
        })
    }
}

/// A range of kernel text the kernel rewrites at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchSite {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Which mechanism patches it.
    pub kind: PatchKind,
}

/// Why the tables could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchSitesError {
    /// One boundary symbol of a pair is there, the other is not, or they are reversed.
    #[error("the image has {have} but not a matching {missing} after it")]
    UnpairedMarker {
        /// The symbol found.
        have: &'static str,
        /// The symbol missing (or below the first).
        missing: &'static str,
    },
    /// The table's bytes are not in the file.
    #[error("the {table} table ({start:#x}..{end:#x}) is not stored in the image")]
    NotInImage {
        /// Which table.
        table: &'static str,
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// The image is not ELF.
    #[error("cannot read the image as ELF: {0}")]
    Malformed(String),
}

/// Every jump-label and static-call site of a kernel image, sorted by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelPatchSites {
    sites: Vec<PatchSite>,
    /// The sites longer than [`PATCH_LEN`] (the trampoline text), also in `sites`.
    long: Vec<PatchSite>,
}

impl KernelPatchSites {
    /// No sites (an image that is not a Linux kernel).
    pub fn none() -> Self {
        Self::default()
    }

    /// A set of the given sites (sorted here).
    pub fn from_sites(mut sites: Vec<PatchSite>) -> Self {
        sites.sort_by_key(|s| (s.start, s.end));
        sites.dedup();
        let long = sites
            .iter()
            .filter(|s| s.end.saturating_sub(s.start) > PATCH_LEN)
            .copied()
            .collect();
        Self { sites, long }
    }

    /// Reads the sites of `image`, whose symbols are `symbols`.
    pub fn from_image(image: &[u8], symbols: &ElfSymbols) -> Result<Self, PatchSitesError> {
        let mut sites = Vec::new();
        let bounds = |start: &'static str, stop: &'static str| match (
            symbols.marker(start),
            symbols.marker(stop),
        ) {
            (None, None) => Ok(None),
            (Some(a), Some(b)) if a <= b => Ok(Some((a, b))),
            (Some(_), _) => Err(PatchSitesError::UnpairedMarker {
                have: start,
                missing: stop,
            }),
            (None, Some(_)) => Err(PatchSitesError::UnpairedMarker {
                have: stop,
                missing: start,
            }),
        };
        // The tables are read from the file at their link addresses; the code addresses in
        // them are relative to each entry's own (slid) address, so they come out slid.
        let slide = symbols.slide();
        let jump = bounds("__start___jump_table", "__stop___jump_table")?;
        let calls = bounds("__start_static_call_sites", "__stop_static_call_sites")?;
        if jump.is_some() || calls.is_some() {
            let file = object::File::parse(image)
                .map_err(|e| PatchSitesError::Malformed(e.to_string()))?;
            if let Some((start, end)) = jump {
                let table = read_virtual(
                    &file,
                    image,
                    start.wrapping_sub(slide),
                    end.wrapping_sub(slide),
                    "__jump_table",
                )?;
                for (i, entry) in table.chunks_exact(16).enumerate() {
                    let at = start + (i as u64) * 16;
                    let code = relative(at, entry);
                    let len = symbols
                        .bytes_at(image, code, 2)
                        .map_or(PATCH_LEN, jump_label_len);
                    sites.push(PatchSite {
                        start: code,
                        end: code.wrapping_add(len),
                        kind: PatchKind::JumpLabel,
                    });
                }
            }
            if let Some((start, end)) = calls {
                let table = read_virtual(
                    &file,
                    image,
                    start - slide,
                    end - slide,
                    ".static_call_sites",
                )?;
                for (i, entry) in table.chunks_exact(8).enumerate() {
                    let at = start + (i as u64) * 8;
                    let code = relative(at, entry);
                    sites.push(PatchSite {
                        start: code,
                        end: code.wrapping_add(PATCH_LEN),
                        kind: PatchKind::StaticCall,
                    });
                }
            }
        }
        if let Some((start, end)) = bounds("__static_call_text_start", "__static_call_text_end")? {
            sites.push(PatchSite {
                start,
                end,
                kind: PatchKind::StaticCallTrampoline,
            });
        }
        Ok(Self::from_sites(sites))
    }

    /// Every site, sorted by start.
    pub fn sites(&self) -> &[PatchSite] {
        &self.sites
    }

    /// The first site overlapping `[addr, addr + len)`, if any.
    pub fn conflict(&self, addr: u64, len: u64) -> Option<PatchSite> {
        let end = addr.saturating_add(len.max(1));
        // Sites are at most a few bytes long, except the trampoline text: look at every
        // site starting below `end` whose end is past `addr`, starting a little below.
        let first = self
            .sites
            .partition_point(|s| s.start < addr.saturating_sub(PATCH_LEN));
        let near = self.sites[first..]
            .iter()
            .take_while(|s| s.start < end)
            .find(|s| s.end > addr);
        near.or_else(|| self.long.iter().find(|s| s.start < end && s.end > addr))
            .copied()
    }
}

/// The length of the jump label whose first bytes are `first`: 2 for a short `jmp` (EB) or
/// the 2-byte NOP (66 90) the kernel swaps it with, else 5 (`jmp rel32` or the 5-byte NOP).
fn jump_label_len(first: &[u8]) -> u64 {
    match first {
        [0xeb, ..] | [0x66, 0x90, ..] => 2,
        _ => PATCH_LEN,
    }
}

/// The address a relative `s32` at the start of `entry` (located at `at`) points to.
fn relative(at: u64, entry: &[u8]) -> u64 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&entry[..4]);
    at.wrapping_add_signed(i64::from(i32::from_le_bytes(raw)))
}

/// The file bytes at virtual `[start, end)`, which must lie in one loaded segment.
fn read_virtual<'a>(
    file: &object::File<'a>,
    image: &'a [u8],
    start: u64,
    end: u64,
    table: &'static str,
) -> Result<&'a [u8], PatchSitesError> {
    let missing = PatchSitesError::NotInImage { table, start, end };
    let segment = file
        .segments()
        .find(|s| {
            let (_, filesz) = s.file_range();
            start >= s.address() && end <= s.address().saturating_add(filesz)
        })
        .ok_or(missing.clone())?;
    let (offset, _) = segment.file_range();
    let from = offset + (start - segment.address());
    let to = from + (end - start);
    usize::try_from(from)
        .ok()
        .zip(usize::try_from(to).ok())
        .and_then(|(a, b)| image.get(a..b))
        .ok_or(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(start: u64, end: u64, kind: PatchKind) -> PatchSite {
        PatchSite { start, end, kind }
    }

    #[test]
    fn conflict_finds_overlaps_only() {
        let sites = KernelPatchSites::from_sites(vec![
            site(0x100, 0x105, PatchKind::JumpLabel),
            site(0x200, 0x205, PatchKind::StaticCall),
            site(0x1000, 0x1100, PatchKind::StaticCallTrampoline),
        ]);
        assert_eq!(sites.conflict(0x0fb, 5), None, "ends right before");
        assert_eq!(
            sites.conflict(0x0fc, 5).map(|s| s.kind),
            Some(PatchKind::JumpLabel)
        );
        assert_eq!(
            sites.conflict(0x104, 1).map(|s| s.kind),
            Some(PatchKind::JumpLabel)
        );
        assert_eq!(sites.conflict(0x105, 3), None, "starts right after");
        assert_eq!(
            sites.conflict(0x1f0, 0x20).map(|s| s.kind),
            Some(PatchKind::StaticCall)
        );
        assert_eq!(
            sites.conflict(0x1080, 1).map(|s| s.kind),
            Some(PatchKind::StaticCallTrampoline)
        );
        assert_eq!(sites.conflict(0x1100, 1), None);
        assert_eq!(KernelPatchSites::none().conflict(0x100, 5), None);
    }

    #[test]
    fn relative_fields_point_from_their_own_address() {
        assert_eq!(relative(0x1000, &(-0x10i32).to_le_bytes()), 0xff0);
        assert_eq!(relative(0x1000, &0x20i32.to_le_bytes()), 0x1020);
    }

    #[test]
    fn built_in_guests_have_no_sites() {
        let image = guest::find("smp").expect("smp guest").image;
        let symbols = ElfSymbols::parse(image).expect("symbols");
        assert_eq!(
            KernelPatchSites::from_image(image, &symbols).expect("sites"),
            KernelPatchSites::none()
        );
    }
}
