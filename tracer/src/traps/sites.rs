//! Where an fbt probe traps in a decoded function, and whether the kernel would rewrite it.
//!
//! - **Entry**: a function that starts with `endbr64` (IBT) traps on the instruction after
//!   it, the 5-byte ftrace site of a traced kernel function (`call __fentry__` in the image, a
//!   NOP after `ftrace_init`, a call to a trampoline while ftrace traces it). The `endbr64`
//!   stays untouched, so IBT sealing (`poison_endbr`) finds it, and the hit emulates whatever
//!   is really at the site. Any other function traps on its first byte (the built-in guests).
//! - **Return**: every return site of [`DecodedFunction::return_sites`].
//!
//! [`check_sites`] refuses a site whose instruction overlaps a jump-label or static-call site
//! ([`KernelPatchSites`]).

use super::decode::DecodedFunction;
use super::patch_sites::{KernelPatchSites, PatchSite};

/// The `endbr64` encoding.
pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// The entry trap site of `decoded`, whose bytes start with `first` (at least its first four
/// bytes): after a leading `endbr64` when another instruction follows it, else the first byte.
pub fn entry_site(decoded: &DecodedFunction, first: &[u8]) -> u64 {
    let after = decoded.start().wrapping_add(ENDBR64.len() as u64);
    if first.starts_with(&ENDBR64) && decoded.is_boundary(after) && decoded.size() > 4 {
        after
    } else {
        decoded.start()
    }
}

/// The trap sites of the fbt probe `name` (`entry` or `return`) of `decoded`, whose bytes
/// start with `first`.
pub fn fbt_sites(name: &str, decoded: &DecodedFunction, first: &[u8]) -> Vec<u64> {
    if name == "entry" {
        vec![entry_site(decoded, first)]
    } else {
        decoded.return_sites().iter().map(|r| r.address).collect()
    }
}

/// A probe site the kernel rewrites at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{function}+{offset:#x} overlaps the {} site at {:#x}, which the kernel rewrites at run \
     time; a trap there would break its patching",
    patch.kind,
    patch.start
)]
pub struct SiteConflict {
    /// The function.
    pub function: String,
    /// The refused site's offset in it.
    pub offset: u64,
    /// The kernel's site it overlaps.
    pub patch: PatchSite,
}

/// Accepts `sites` of `decoded` unless one's instruction overlaps a site of `patch`.
pub fn check_sites(
    decoded: &DecodedFunction,
    sites: &[u64],
    patch: &KernelPatchSites,
) -> Result<(), SiteConflict> {
    for &site in sites {
        let len = decoded.instruction_len(site).unwrap_or(1);
        if let Some(p) = patch.conflict(site, len) {
            return Err(SiteConflict {
                function: decoded.name().to_owned(),
                offset: site - decoded.start(),
                patch: p,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::{Function, KERNEL_MODULE};
    use crate::traps::decode_function;

    fn decoded(bytes: &[u8]) -> DecodedFunction {
        let f = Function {
            name: "f".into(),
            address: 0x1000,
            size: bytes.len() as u64,
            module: KERNEL_MODULE.into(),
        };
        decode_function(&f, bytes, &[]).expect("decodes")
    }

    #[test]
    fn entry_goes_after_endbr64_when_present() {
        // endbr64; call rel32; ret
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0, 0, 0, 0, 0xc3];
        let d = decoded(&code);
        assert_eq!(entry_site(&d, &code), 0x1004);
        assert_eq!(fbt_sites("entry", &d, &code), [0x1004]);
        assert_eq!(fbt_sites("return", &d, &code), [0x1009]);
        // push rbp; ret: the first byte.
        let plain = [0x55, 0xc3];
        assert_eq!(entry_site(&decoded(&plain), &plain), 0x1000);
        // endbr64 alone: nothing after it to trap on.
        let only = ENDBR64;
        assert_eq!(entry_site(&decoded(&only), &only), 0x1000);
    }

    #[test]
    fn sites_overlapping_kernel_patch_sites_are_refused() {
        use crate::traps::patch_sites::PatchKind;
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0, 0, 0, 0, 0xc3];
        let d = decoded(&code);
        let none = KernelPatchSites::none();
        assert_eq!(check_sites(&d, &[0x1004, 0x1009], &none), Ok(()));
        let patch = KernelPatchSites::from_sites(vec![PatchSite {
            start: 0x1006,
            end: 0x100b,
            kind: PatchKind::JumpLabel,
        }]);
        let err = check_sites(&d, &[0x1004], &patch).expect_err("overlaps");
        assert_eq!(err.offset, 4);
        assert!(
            err.to_string()
                .contains("f+0x4 overlaps the jump-label site at 0x1006"),
            "{err}"
        );
    }
}
