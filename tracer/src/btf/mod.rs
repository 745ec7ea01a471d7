//! BTF: the kernel's own type information (`CONFIG_DEBUG_INFO_BTF`), read from the `.BTF`
//! section of a vmlinux without debug files.
//!
//! An own reader, no dependency (the format is small, and it keeps licences simple): [`parse`]
//! decodes the header, the type section (every
//! kind up to `ENUM64`) and the string section into [`Type`]s; [`render`] writes types and
//! function prototypes as C (`long do_sys_openat2(int dfd, const char *filename, struct
//! open_how *how)`); [`layout`] gives type sizes and struct layouts.
//!
//! What the tracer uses: [`Btf::function`] (a function's prototype by name, for `args[N]` and
//! `hvtrace list -v`), [`Btf::struct_layout`] (member names, bit offsets and types), and
//! [`Btf::size_of`].

mod layout;
mod parse;
mod render;
#[cfg(test)]
mod tests;
mod types;

use std::collections::HashMap;

use object::{Object, ObjectSection};

pub use layout::{MemberLayout, StructLayout};
pub use types::{Enumerator, Kind, Member, Param, SecVar, Type, TypeId};

/// Why a `.BTF` section could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// The image is not an ELF file.
    #[error("this image is not an ELF file")]
    NotElf,
    /// The ELF structure is damaged.
    #[error("malformed ELF image: {0}")]
    Malformed(String),
    /// The image has no `.BTF` section (a kernel built without `CONFIG_DEBUG_INFO_BTF`).
    #[error("this image has no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF?)")]
    NoBtf,
    /// The blob does not start with the BTF magic 0xeb9f.
    #[error("not BTF: magic {0:#06x}, expected 0xeb9f")]
    BadMagic(u16),
    /// Big-endian BTF (a big-endian target's kernel), which this reader does not handle.
    #[error("big-endian BTF is not supported")]
    BigEndian,
    /// A BTF version other than 1.
    #[error("BTF version {0} is not supported (only 1)")]
    Version(u8),
    /// A header, section or record extends past the data.
    #[error("BTF truncated: {0} extends past the data")]
    Truncated(&'static str),
    /// A name offset outside the string section, or a string without its NUL.
    #[error("BTF name offset {0:#x} is outside the string section")]
    BadString(u32),
    /// A kind number this reader does not know (newer than `ENUM64`).
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind {
        /// The type's ID.
        id: u32,
        /// Its kind number.
        kind: u32,
    },
}

/// A function's prototype, from its `FUNC` and `FUNC_PROTO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncProto {
    /// The function's name.
    pub name: String,
    /// Its `FUNC` type ID.
    pub func: TypeId,
    /// Return type (0: void).
    pub ret: TypeId,
    /// Parameters in order (a variadic function's last one is `ty` 0 with an empty name).
    pub params: Vec<Param>,
}

/// All the types of a BTF blob, indexed by name.
#[derive(Debug, Clone)]
pub struct Btf {
    /// Type `id` is `types[id - 1]`; 0 is void.
    types: Vec<Type>,
    /// `FUNC` IDs by name.
    funcs: HashMap<String, Vec<TypeId>>,
    /// Struct and union IDs by name (complete types only, not `FWD`).
    structs: HashMap<String, Vec<TypeId>>,
}

/// `void`, as type 0.
static VOID: Type = Type {
    name: String::new(),
    kind: Kind::Void,
};

impl Btf {
    /// Parses a raw BTF blob (the contents of `.BTF`, or `/sys/kernel/btf/vmlinux`).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let (types, strings) = parse::sections(data)?;
        let types = parse::types(types, strings)?;
        let mut funcs: HashMap<String, Vec<TypeId>> = HashMap::new();
        let mut structs: HashMap<String, Vec<TypeId>> = HashMap::new();
        for (i, t) in types.iter().enumerate() {
            let id = i as TypeId + 1;
            match t.kind {
                Kind::Func { .. } => funcs.entry(t.name.clone()).or_default().push(id),
                Kind::Struct { .. } | Kind::Union { .. } if !t.name.is_empty() => {
                    structs.entry(t.name.clone()).or_default().push(id)
                }
                _ => {}
            }
        }
        Ok(Self {
            types,
            funcs,
            structs,
        })
    }

    /// Parses the `.BTF` section of the ELF image `image`.
    pub fn from_elf(image: &[u8]) -> Result<Self, BtfError> {
        if !image.starts_with(b"\x7fELF") {
            return Err(BtfError::NotElf);
        }
        let file = object::File::parse(image).map_err(|e| BtfError::Malformed(e.to_string()))?;
        let section = file.section_by_name(".BTF").ok_or(BtfError::NoBtf)?;
        let data = section
            .data()
            .map_err(|e| BtfError::Malformed(e.to_string()))?;
        Self::parse(data)
    }

    /// Number of types (not counting void).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Has the blob no types?
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Type `id` (0 is void), if it exists.
    pub fn get(&self, id: TypeId) -> Option<&Type> {
        match id {
            0 => Some(&VOID),
            _ => self.types.get(id as usize - 1),
        }
    }

    /// Every type with its ID.
    pub fn types(&self) -> impl Iterator<Item = (TypeId, &Type)> {
        (1..).zip(self.types.iter())
    }

    /// The prototype of the function named `name` (the first `FUNC` of that name).
    pub fn function(&self, name: &str) -> Option<FuncProto> {
        let &func = self.funcs.get(name)?.first()?;
        let Kind::Func { proto, .. } = self.get(func)?.kind else {
            return None;
        };
        let Kind::FuncProto { ret, params } = &self.get(proto)?.kind else {
            return None;
        };
        Some(FuncProto {
            name: name.to_owned(),
            func,
            ret: *ret,
            params: params.clone(),
        })
    }

    /// The names of every function BTF describes.
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.funcs.keys().map(String::as_str)
    }

    /// The first complete struct or union named `name`.
    pub fn struct_by_name(&self, name: &str) -> Option<TypeId> {
        self.structs.get(name)?.first().copied()
    }

    /// `id` with typedefs, qualifiers and type tags peeled off.
    pub fn resolve(&self, mut id: TypeId) -> TypeId {
        // A cycle is malformed BTF; give up after as many steps as there are types.
        for _ in 0..=self.types.len() {
            match self.get(id).map(|t| &t.kind) {
                Some(
                    Kind::Typedef { target }
                    | Kind::Const { target }
                    | Kind::Volatile { target }
                    | Kind::Restrict { target }
                    | Kind::TypeTag { target },
                ) => id = *target,
                _ => return id,
            }
        }
        id
    }
}
