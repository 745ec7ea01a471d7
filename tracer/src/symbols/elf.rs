//! [`ElfSymbols`]: the functions of an ELF executable image, read from its `.symtab`.
//!
//! Which symbols count as functions: `STT_FUNC` (and `STT_GNU_IFUNC`) symbols with a non-zero
//! size defined in some section, plus `STT_NOTYPE` symbols with a non-zero size defined in an
//! executable section (Linux's `SYM_CODE_START`/`SYM_CODE_END` assembly, the return thunk
//! among it, produces those). Section-relative, undefined, absolute and zero-sized symbols are
//! skipped. Only executables (`ET_EXEC`, `ET_DYN`) are meaningful: their symbol values are
//! the guest-virtual addresses the code runs at.
//!
//! An image without a `.symtab` (a Linux kernel as distributions ship it) gets its functions
//! from the kernel's own kallsyms table instead ([`ElfSymbols::from_kallsyms`]; [`ElfSymbols::load`]
//! picks; [`ElfSymbols::load_with`] leaves the decoded table to the run's other users): the
//! section headers still say where the executable code is.
//!
//! Module names: every function of the image gets the module [`KERNEL_MODULE`] (`"kernel"`),
//! as FreeBSD's DTrace names the kernel proper in `fbt:kernel:...`. The image is one kernel,
//! whatever file it came from; loadable modules (which a kallsyms source will add) get their
//! own names. [`ElfSymbols::parse_with_module`] chooses another name.

use object::{
    Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SectionKind, SymbolKind, SymbolSection,
};

use super::kallsyms::{ImageKallsyms, KallsymsError};
use super::{Function, SymbolSource, SymbolTable};

/// The module name given to the functions of a kernel image (DTrace's `probemod`).
pub const KERNEL_MODULE: &str = "kernel";

/// Why an image's functions could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SymbolError {
    /// The image is not an ELF file (wrong magic); `hvtrace` only reads ELF symbol tables.
    #[error("this image is not an ELF file, so it has no symbol table to read")]
    NotElf,
    /// The image is ELF but has no `.symtab` (it was stripped).
    #[error("this image has no symbol table")]
    NoSymbolTable,
    /// The ELF structure is damaged (truncated headers, bad section table, ...).
    #[error("malformed ELF image: {0}")]
    Malformed(String),
    /// The image has no `.symtab`, and no kallsyms table could be decoded either.
    #[error("this image has no symbol table, and its kallsyms could not be read: {0}")]
    NoKallsyms(#[from] KallsymsError),
}

/// One executable section with file contents: maps guest addresses back into the image.
#[derive(Debug, Clone, Copy)]
struct TextSection {
    address: u64,
    size: u64,
    file_offset: u64,
}

/// The functions of an ELF image, indexed; implements [`SymbolSource`].
///
/// Keeps no reference to the image: [`ElfSymbols::function_bytes`] takes the image again
/// to hand out a function's bytes (the image of a real kernel is tens of MiB).
#[derive(Debug, Clone)]
pub struct ElfSymbols {
    table: SymbolTable,
    text: Vec<TextSection>,
    /// Addresses of the section-boundary symbols of [`MARKERS`] the image has.
    markers: Vec<(&'static str, u64)>,
    /// How far every address here is from the image's link address (a KASLR slide; 0 unless
    /// made by [`ElfSymbols::slid`]).
    slide: u64,
}

/// Linker-defined symbols that bound tables the kernel keeps in its data (no section of
/// their own in a `vmlinux`): the jump-label table, the static-call sites and the
/// static-call trampolines. Kept from kallsyms (or `.symtab`) for [`ElfSymbols::marker`].
pub const MARKERS: [&str; 6] = [
    "__start___jump_table",
    "__stop___jump_table",
    "__start_static_call_sites",
    "__stop_static_call_sites",
    "__static_call_text_start",
    "__static_call_text_end",
];

impl ElfSymbols {
    /// Reads the functions of `image`, module name [`KERNEL_MODULE`].
    pub fn parse(image: &[u8]) -> Result<Self, SymbolError> {
        Self::parse_with_module(image, KERNEL_MODULE)
    }

    /// Reads the functions of `image`, giving each the module name `module`.
    pub fn parse_with_module(image: &[u8], module: &str) -> Result<Self, SymbolError> {
        let file = open(image)?;
        let symtab = file.symbol_table().ok_or(SymbolError::NoSymbolTable)?;

        let mut functions = Vec::new();
        let mut markers = Vec::new();
        for sym in symtab.symbols() {
            if let Some(m) = sym
                .name()
                .ok()
                .and_then(|n| MARKERS.iter().find(|m| **m == n))
            {
                markers.push((*m, sym.address()));
            }
            if sym.size() == 0 {
                continue;
            }
            let SymbolSection::Section(index) = sym.section() else {
                continue;
            };
            let is_function = match sym.kind() {
                SymbolKind::Text => true,
                SymbolKind::Unknown => file
                    .section_by_index(index)
                    .is_ok_and(|s| s.kind() == SectionKind::Text),
                _ => false,
            };
            if !is_function {
                continue;
            }
            let Ok(name) = sym.name_bytes() else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            functions.push(Function {
                name: String::from_utf8_lossy(name).into_owned(),
                address: sym.address(),
                size: sym.size(),
                module: module.to_owned(),
            });
        }
        Ok(Self {
            table: SymbolTable::new(functions),
            text: text_sections(&file),
            markers,
            slide: 0,
        })
    }

    /// Reads the functions of a kernel image from its kallsyms table (see
    /// [`Kallsyms::functions`](super::kallsyms::Kallsyms::functions)): text symbols inside the image's executable sections, each
    /// ending where the next symbol starts. Module name [`KERNEL_MODULE`].
    pub fn from_kallsyms(image: &[u8]) -> Result<Self, SymbolError> {
        Self::from_decoded(&ImageKallsyms::new(image))
    }

    /// [`ElfSymbols::from_kallsyms`] from tables decoded once for several users.
    fn from_decoded(kallsyms: &ImageKallsyms<'_>) -> Result<Self, SymbolError> {
        let file = open(kallsyms.image())?;
        let kallsyms = kallsyms.get()?;
        let text = text_sections(&file);
        let ranges: Vec<_> = text
            .iter()
            .map(|s| s.address..s.address.saturating_add(s.size))
            .collect();
        let markers = MARKERS
            .iter()
            .filter_map(|m| Some((*m, kallsyms.by_name(m).first()?.address)))
            .collect();
        Ok(Self {
            table: SymbolTable::new(kallsyms.functions(&ranges, KERNEL_MODULE)),
            text,
            markers,
            slide: 0,
        })
    }

    /// The functions of `image` from its `.symtab`, or, where it has none, from its kallsyms
    /// table ([`ElfSymbols::from_kallsyms`]).
    pub fn load(image: &[u8]) -> Result<Self, SymbolError> {
        Self::load_with(&ImageKallsyms::new(image))
    }

    /// [`ElfSymbols::load`] for the image of `kallsyms`, decoding its kallsyms (only if it has
    /// no `.symtab`) into `kallsyms`, where the run's other users find them decoded.
    pub fn load_with(kallsyms: &ImageKallsyms<'_>) -> Result<Self, SymbolError> {
        match Self::parse(kallsyms.image()) {
            Err(SymbolError::NoSymbolTable) => Self::from_decoded(kallsyms),
            other => other,
        }
    }

    /// The same functions and text sections moved by `slide` bytes (a KASLR kernel runs at
    /// its link addresses plus the slide): every address the tracer then sees, looks up or
    /// traps is the address the guest runs at. `function_bytes`/`bytes_at` still read the
    /// image's bytes, at the slid addresses.
    pub fn slid(&self, slide: u64) -> ElfSymbols {
        let functions = self
            .table
            .functions()
            .iter()
            .map(|f| Function {
                address: f.address.wrapping_add(slide),
                ..f.clone()
            })
            .collect();
        ElfSymbols {
            table: SymbolTable::new(functions),
            text: self
                .text
                .iter()
                .map(|s| TextSection {
                    address: s.address.wrapping_add(slide),
                    ..*s
                })
                .collect(),
            markers: self
                .markers
                .iter()
                .map(|&(m, a)| (m, a.wrapping_add(slide)))
                .collect(),
            slide: self.slide.wrapping_add(slide),
        }
    }

    /// How far these addresses are from the image's link addresses (the KASLR slide of
    /// [`ElfSymbols::slid`]; 0 for symbols read from the image).
    pub fn slide(&self) -> u64 {
        self.slide
    }

    /// The bytes of `function` as stored in `image` (the same image this was parsed from),
    /// or `None` where the function does not lie wholly inside one executable section with
    /// file contents. Live guest text may differ (the guest patches itself); the tracer
    /// decodes live memory where it can.
    pub fn function_bytes<'a>(&self, image: &'a [u8], function: &Function) -> Option<&'a [u8]> {
        self.bytes_at(image, function.address, function.size)
    }

    /// `len` bytes of executable-section contents at guest address `address`, from `image`.
    pub fn bytes_at<'a>(&self, image: &'a [u8], address: u64, len: u64) -> Option<&'a [u8]> {
        let section = self.text.iter().find(|s| {
            address >= s.address
                && address
                    .checked_add(len)
                    .is_some_and(|end| end <= s.address.saturating_add(s.size))
        })?;
        let start = section.file_offset.checked_add(address - section.address)?;
        let end = start.checked_add(len)?;
        image.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// The address of the boundary symbol `name` (one of [`MARKERS`]), if the image has it.
    pub fn marker(&self, name: &str) -> Option<u64> {
        self.markers
            .iter()
            .find(|(m, _)| *m == name)
            .map(|&(_, a)| a)
    }

    /// The index behind this source.
    pub fn table(&self) -> &SymbolTable {
        &self.table
    }
}

/// Parses `image` as ELF.
fn open(image: &[u8]) -> Result<object::File<'_>, SymbolError> {
    if !image.starts_with(b"\x7fELF") {
        return Err(SymbolError::NotElf);
    }
    object::File::parse(image).map_err(|e| SymbolError::Malformed(e.to_string()))
}

/// The executable sections of `file` that have file contents.
fn text_sections(file: &object::File<'_>) -> Vec<TextSection> {
    let mut text = Vec::new();
    for section in file.sections() {
        if section.kind() != SectionKind::Text {
            continue;
        }
        if let Some((file_offset, size)) = section.file_range() {
            text.push(TextSection {
                address: section.address(),
                size: size.min(section.size()),
                file_offset,
            });
        }
    }
    text
}

impl SymbolSource for ElfSymbols {
    fn functions(&self) -> &[Function] {
        self.table.functions()
    }

    fn lookup(&self, addr: u64) -> Option<(&Function, u64)> {
        self.table.lookup(addr)
    }

    fn by_name(&self, name: &str) -> Option<&Function> {
        self.table.by_name(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slide_moves_every_function_and_its_bytes() {
        let image = smp();
        let syms = ElfSymbols::load(image).unwrap();
        let slid = syms.slid(0x20_0000);
        assert_eq!(slid.functions().len(), syms.functions().len());
        for f in syms.functions() {
            let g = slid.by_name(&f.name).unwrap();
            assert_eq!(g.address, f.address + 0x20_0000, "{}", f.name);
            assert_eq!(
                slid.lookup(g.address).map(|(h, o)| (&h.name, o)),
                Some((&f.name, 0))
            );
            assert_eq!(slid.function_bytes(image, g), syms.function_bytes(image, f));
        }
    }

    fn smp() -> &'static [u8] {
        guest::find("smp").expect("smp guest").image
    }

    #[test]
    fn reads_the_smp_guest() {
        let syms = ElfSymbols::parse(smp()).expect("parse");
        for name in [
            "_start",
            "start_aps",
            "ap_main",
            "serial_putc",
            "guest_main",
        ] {
            let f = syms
                .by_name(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(f.size > 0);
            assert_eq!(f.module, KERNEL_MODULE);
        }
        assert!(
            syms.by_name("cpu_apic_ids").is_none(),
            "data objects are not functions"
        );
        assert!(
            syms.by_name("msg_cpu").is_none(),
            "NOTYPE data labels are not functions"
        );
        let putc = syms.by_name("serial_putc").expect("serial_putc");
        let (f, off) = syms.lookup(putc.address + 3).expect("lookup");
        assert_eq!((f.name.as_str(), off), ("serial_putc", 3));
        let bytes = syms.function_bytes(smp(), putc).expect("bytes");
        assert_eq!(bytes.len() as u64, putc.size);
    }

    #[test]
    fn module_name_is_configurable() {
        let syms = ElfSymbols::parse_with_module(smp(), "smp").expect("parse");
        assert!(syms.functions().iter().all(|f| f.module == "smp"));
    }

    #[test]
    fn refuses_non_elf() {
        assert_eq!(
            ElfSymbols::parse(b"MZ\x90\x00").unwrap_err(),
            SymbolError::NotElf
        );
        assert_eq!(ElfSymbols::parse(b"").unwrap_err(), SymbolError::NotElf);
    }

    #[test]
    fn truncated_elf_is_malformed_not_a_panic() {
        let img = smp();
        for len in [4, 16, 63, 64, 100] {
            match ElfSymbols::parse(&img[..len]) {
                Err(SymbolError::Malformed(_)) | Err(SymbolError::NoSymbolTable) => {}
                other => panic!("len {len}: {other:?}"),
            }
        }
    }

    /// Strips `.symtab` by renaming its section type to `SHT_NULL` in a copy of the image.
    #[test]
    fn stripped_image_has_no_symbol_table() {
        let mut img = smp().to_vec();
        let shoff = u64::from_le_bytes(img[0x28..0x30].try_into().unwrap()) as usize;
        let shentsize = u16::from_le_bytes(img[0x3a..0x3c].try_into().unwrap()) as usize;
        let shnum = u16::from_le_bytes(img[0x3c..0x3e].try_into().unwrap()) as usize;
        let mut stripped = 0;
        for i in 0..shnum {
            let sh_type = shoff + i * shentsize + 4;
            if u32::from_le_bytes(img[sh_type..sh_type + 4].try_into().unwrap()) == 2 {
                img[sh_type..sh_type + 4].copy_from_slice(&0u32.to_le_bytes());
                stripped += 1;
            }
        }
        assert_eq!(stripped, 1);
        let err = ElfSymbols::parse(&img).unwrap_err();
        assert_eq!(err, SymbolError::NoSymbolTable);
        assert_eq!(err.to_string(), "this image has no symbol table");
    }
}
