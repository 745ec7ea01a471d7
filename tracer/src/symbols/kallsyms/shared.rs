//! [`ImageKallsyms`]: one image's kallsyms, decoded at most once and shared by everything that
//! reads them during a run (the functions of an image without `.symtab`, the current task of
//! the Linux built-ins, a bzImage's KASLR anchors and its check against guest memory).
//!
//! A decode of a distribution kernel's tables (about 155,000 symbols) costs about 0.1 s in a
//! release build and about 1 s in a debug one; before this, a traced run decoded the same
//! image's tables two or three times.

use std::cell::OnceCell;
use std::sync::Arc;

use super::{Kallsyms, KallsymsError};

/// The kallsyms of one ELF image, decoded from its `.rodata` ([`Kallsyms::from_elf`]) when
/// first asked for, then kept: every later [`ImageKallsyms::get`] answers the same table (or
/// the same error) without decoding again. Nothing is decoded if nobody asks (an image whose
/// `.symtab` gives the functions and that has no BTF needs no kallsyms).
pub struct ImageKallsyms<'a> {
    image: &'a [u8],
    decoded: OnceCell<Result<Arc<Kallsyms>, KallsymsError>>,
}

impl<'a> ImageKallsyms<'a> {
    /// The (not yet decoded) kallsyms of the ELF image `image`.
    pub fn new(image: &'a [u8]) -> Self {
        ImageKallsyms {
            image,
            decoded: OnceCell::new(),
        }
    }

    /// The image these kallsyms are read from.
    pub fn image(&self) -> &'a [u8] {
        self.image
    }

    /// The decoded tables, decoding them on the first call; the error is the first call's.
    pub fn get(&self) -> Result<&Arc<Kallsyms>, KallsymsError> {
        self.decoded
            .get_or_init(|| Kallsyms::from_elf(self.image).map(Arc::new))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the tables have been decoded (or tried) yet.
    pub fn is_decoded(&self) -> bool {
        self.decoded.get().is_some()
    }
}
