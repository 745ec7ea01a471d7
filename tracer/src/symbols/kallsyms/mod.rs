//! kallsyms: the kernel's own compressed symbol table, decoded from the image without
//! `System.map` or a `.symtab`.
//!
//! `scripts/kallsyms` links these tables into `.rodata` (every kernel since 6.1 is
//! supported):
//!
//! | table | what | found by |
//! |---|---|---|
//! | `kallsyms_token_table`, `_token_index` | 256 substrings and their offsets | [`tokens`]: the digits keep their own codes |
//! | `kallsyms_num_syms`, `_names`, `_markers` | count; length-prefixed token codes per symbol (1- or 2-byte lengths); offset of every 256th name | [`names`]: a count whose names chain into agreeing markers |
//! | `kallsyms_offsets`, `_relative_base` (or `kallsyms_addresses`) | one address per symbol | [`addresses`]: the layouts of 6.1-6.3 and 6.4+, addresses sorted |
//! | `kallsyms_seqs_of_names` (6.2+) | symbol numbers in name order | [`seqs`]: a permutation that sorts the names |
//!
//! The search needs nothing but the bytes and their virtual address ([`Kallsyms::from_region`]:
//! a vmlinux's `.rodata`, or guest memory once a bzImage has decompressed itself);
//! [`Kallsyms::from_elf`] restricts it to `.rodata` of an ELF image. A layout it cannot make
//! sense of is a typed [`KallsymsError`], never a guess. [`ImageKallsyms`] decodes an image's
//! tables once for all their users in a run.
//!
//! Functions for probes ([`Kallsyms::functions`]): kallsyms has no sizes, so a function ends
//! where the next symbol at a higher address starts, or at the end of its executable range.
//! The call-padding symbols `__pfx_*` and `__cfi_*` (the 16 bytes before a function) end the
//! function before them but are not functions themselves.

mod addresses;
mod names;
mod region;
mod seqs;
mod shared;
#[cfg(test)]
mod tests;
mod tokens;

use std::ops::Range;

use object::{Object, ObjectSection};

pub use addresses::AddressMode;
use region::Region;
pub use shared::ImageKallsyms;

use super::Function;

/// Why no kallsyms table could be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KallsymsError {
    /// The image is not an ELF file.
    #[error("this image is not an ELF file")]
    NotElf,
    /// The ELF structure is damaged.
    #[error("malformed ELF image: {0}")]
    Malformed(String),
    /// The ELF image has no `.rodata` section with contents, where kallsyms lives.
    #[error("this image has no .rodata section to search for kallsyms")]
    NoRodata,
    /// No `kallsyms_token_table` with a matching `kallsyms_token_index` was found: the kernel
    /// was built without `CONFIG_KALLSYMS`, or this is not a kernel.
    #[error("no kallsyms token table found (kernel built without CONFIG_KALLSYMS?)")]
    NoTokenTable,
    /// A token table was found but no symbol count and names that it decodes into markers
    /// that agree: a layout this decoder does not know.
    #[error("kallsyms token table at {token_table:#x}, but no names and markers that fit it: unknown kallsyms layout")]
    UnknownNamesLayout {
        /// Virtual address of the token table found.
        token_table: u64,
    },
    /// Names were decoded but no address table (6.1-6.3 or 6.4+ layout, relative or
    /// absolute) gives sorted addresses for them.
    #[error("kallsyms names at {names:#x} ({num_syms} symbols), but no address table that fits them: unknown kallsyms layout")]
    UnknownAddressLayout {
        /// Virtual address of `kallsyms_names`.
        names: u64,
        /// The symbol count found.
        num_syms: usize,
    },
}

/// One kallsyms symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KallSym {
    /// The name, e.g. `start_kernel`.
    pub name: String,
    /// The type character as `nm` prints it (`T`/`t` text, `D`/`d` data, `B`/`b` bss,
    /// `R`/`r` read-only, `A` absolute, `W`/`w` weak, ...); upper case is global.
    pub kind: char,
    /// The address the kernel was linked at (before any KASLR slide).
    pub address: u64,
}

/// Where the tables were found (virtual addresses) and how they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KallsymsLayout {
    /// `kallsyms_num_syms`.
    pub num_syms_at: u64,
    /// `kallsyms_names`.
    pub names: u64,
    /// `kallsyms_markers`.
    pub markers: u64,
    /// Bytes per marker: 4 (6.1+) or 8.
    pub marker_width: usize,
    /// `kallsyms_token_table`.
    pub token_table: u64,
    /// `kallsyms_token_index`.
    pub token_index: u64,
    /// `kallsyms_offsets`, or `kallsyms_addresses` in [`AddressMode::Absolute`].
    pub offsets: u64,
    /// `kallsyms_relative_base`, if any.
    pub relative_base_at: Option<u64>,
    /// The value of `kallsyms_relative_base` (0 when absolute).
    pub relative_base: u64,
    /// How offsets were decoded.
    pub mode: AddressMode,
    /// `kallsyms_seqs_of_names`, if the kernel has it (6.2+).
    pub seqs_of_names: Option<u64>,
}

/// The decoded kallsyms table: every symbol in the kernel's (address) order.
#[derive(Debug, Clone)]
pub struct Kallsyms {
    symbols: Vec<KallSym>,
    /// Symbol numbers in name order: the kernel's own index when present, else built here.
    by_name: Vec<u32>,
    layout: KallsymsLayout,
}

impl Kallsyms {
    /// Finds and decodes the tables in the `.rodata` section of the ELF image `image`.
    pub fn from_elf(image: &[u8]) -> Result<Self, KallsymsError> {
        if !image.starts_with(b"\x7fELF") {
            return Err(KallsymsError::NotElf);
        }
        let file =
            object::File::parse(image).map_err(|e| KallsymsError::Malformed(e.to_string()))?;
        let rodata = file
            .section_by_name(".rodata")
            .ok_or(KallsymsError::NoRodata)?;
        let bytes = rodata.data().map_err(|_| KallsymsError::NoRodata)?;
        if bytes.is_empty() {
            return Err(KallsymsError::NoRodata);
        }
        Self::from_region(bytes, rodata.address())
    }

    /// Finds and decodes the tables in `bytes`, which the kernel sees at virtual address
    /// `base` (a `.rodata` section, or a copy of guest memory).
    pub fn from_region(bytes: &[u8], base: u64) -> Result<Self, KallsymsError> {
        let region = Region { bytes, base };
        let mut tables = tokens::find(&region);
        if tables.is_empty() {
            return Err(KallsymsError::NoTokenTable);
        }
        // The real table is the one with names in front of it; try the last first (6.1+
        // kernels put kallsyms at the end of their .rodata).
        let mut unknown = KallsymsError::NoTokenTable;
        while let Some(tokens) = tables.pop() {
            let Some(names) = names::find(&region, &tokens) else {
                if unknown == KallsymsError::NoTokenTable {
                    unknown = KallsymsError::UnknownNamesLayout {
                        token_table: region.address(tokens.table),
                    };
                }
                continue;
            };
            let Some(addrs) = addresses::find(&region, &tokens, &names) else {
                return Err(KallsymsError::UnknownAddressLayout {
                    names: region.address(names.names),
                    num_syms: names.num_syms,
                });
            };
            let decoded = names::decode(&region, &tokens, &names);
            let seqs = seqs::find(&region, &[addrs.end, names.markers_end()], &decoded);
            return Ok(Self::assemble(
                &region, &tokens, &names, addrs, decoded, seqs,
            ));
        }
        Err(unknown)
    }

    fn assemble(
        region: &Region<'_>,
        tokens: &tokens::TokenTable,
        names: &names::NamesTable,
        addrs: addresses::Addresses,
        decoded: Vec<(u8, String)>,
        seqs: Option<seqs::SeqsOfNames>,
    ) -> Self {
        let layout = KallsymsLayout {
            num_syms_at: region.address(names.num_syms_at),
            names: region.address(names.names),
            markers: region.address(names.markers),
            marker_width: names.marker_width,
            token_table: region.address(tokens.table),
            token_index: region.address(tokens.index),
            offsets: region.address(addrs.table),
            relative_base_at: addrs.relative_base_at.map(|o| region.address(o)),
            relative_base: addrs.relative_base,
            mode: addrs.mode,
            seqs_of_names: seqs.as_ref().map(|s| region.address(s.table)),
        };
        let symbols: Vec<KallSym> = decoded
            .into_iter()
            .zip(addrs.addresses)
            .map(|((kind, name), address)| KallSym {
                name,
                kind: char::from(kind),
                address,
            })
            .collect();
        let by_name = match seqs {
            Some(s) => s.seqs,
            None => {
                let mut order: Vec<u32> = (0..symbols.len() as u32).collect();
                order.sort_by(|&a, &b| {
                    symbols[a as usize]
                        .name
                        .as_bytes()
                        .cmp(symbols[b as usize].name.as_bytes())
                });
                order
            }
        };
        Self {
            symbols,
            by_name,
            layout,
        }
    }

    /// Every symbol, in the kernel's table order (by address).
    pub fn symbols(&self) -> &[KallSym] {
        &self.symbols
    }

    /// Where the tables were found and how they were read.
    pub fn layout(&self) -> &KallsymsLayout {
        &self.layout
    }

    /// Every symbol named exactly `name` (binary search in the name-sorted index).
    pub fn by_name(&self, name: &str) -> Vec<&KallSym> {
        let key = name.as_bytes();
        let sym = |i: &u32| &self.symbols[*i as usize];
        let start = self
            .by_name
            .partition_point(|i| sym(i).name.as_bytes() < key);
        self.by_name[start..]
            .iter()
            .map(sym)
            .take_while(|s| s.name.as_bytes() == key)
            .collect()
    }

    /// The functions: text symbols (`T`, `t`, `W`, `w`) inside one of the executable
    /// `ranges`, each ending where the next symbol above it starts or at the end of its
    /// range, with module name `module`. `__pfx_*`/`__cfi_*` padding symbols are left out.
    pub fn functions(&self, ranges: &[Range<u64>], module: &str) -> Vec<Function> {
        let mut starts: Vec<u64> = self.symbols.iter().map(|s| s.address).collect();
        starts.sort_unstable();
        starts.dedup();
        self.symbols
            .iter()
            .filter(|s| matches!(s.kind, 'T' | 't' | 'W' | 'w'))
            .filter(|s| !s.name.starts_with("__pfx_") && !s.name.starts_with("__cfi_"))
            .filter_map(|s| {
                let range = ranges.iter().find(|r| r.contains(&s.address))?;
                let next = starts.partition_point(|&a| a <= s.address);
                let end = starts.get(next).map_or(range.end, |&a| a.min(range.end));
                Some(Function {
                    name: s.name.clone(),
                    address: s.address,
                    size: end - s.address,
                    module: module.to_owned(),
                })
            })
            .collect()
    }
}
