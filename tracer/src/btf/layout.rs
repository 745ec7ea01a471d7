//! Sizes of types and layouts of structs and unions.

use super::types::{Kind, TypeId};
use super::Btf;

/// One member of a [`StructLayout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLayout {
    /// Name (empty for an anonymous struct/union member).
    pub name: String,
    /// Offset from the start, in bits.
    pub bit_offset: u32,
    /// Bitfield width in bits (0: not a bitfield).
    pub bitfield_size: u32,
    /// The member's type.
    pub ty: TypeId,
    /// The type as C (`struct list_head`, `const char *`).
    pub type_name: String,
}

/// The layout of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructLayout {
    /// Its type ID.
    pub id: TypeId,
    /// Its name.
    pub name: String,
    /// A union rather than a struct?
    pub union_: bool,
    /// Size in bytes.
    pub size: u32,
    /// Members in declaration order.
    pub members: Vec<MemberLayout>,
}

impl Btf {
    /// The size in bytes of `id` (through typedefs and qualifiers; pointers are 8 bytes).
    /// `None` for void, functions, forward declarations and malformed types.
    pub fn size_of(&self, id: TypeId) -> Option<u64> {
        self.size_at_depth(id, 0)
    }

    fn size_at_depth(&self, id: TypeId, depth: usize) -> Option<u64> {
        if depth > 64 {
            return None;
        }
        match &self.get(self.resolve(id))?.kind {
            Kind::Int { size, .. }
            | Kind::Struct { size, .. }
            | Kind::Union { size, .. }
            | Kind::Enum { size, .. }
            | Kind::Float { size }
            | Kind::Datasec { size, .. } => Some(u64::from(*size)),
            Kind::Ptr { .. } => Some(8),
            Kind::Array { elem, len, .. } => self
                .size_at_depth(*elem, depth + 1)?
                .checked_mul(u64::from(*len)),
            Kind::Var { ty, .. } => self.size_at_depth(*ty, depth + 1),
            _ => None,
        }
    }

    /// The layout of the struct or union `id` (through typedefs and qualifiers).
    pub fn layout_of(&self, id: TypeId) -> Option<StructLayout> {
        let id = self.resolve(id);
        let t = self.get(id)?;
        let (size, members, union_) = match &t.kind {
            Kind::Struct { size, members } => (*size, members, false),
            Kind::Union { size, members } => (*size, members, true),
            _ => return None,
        };
        Some(StructLayout {
            id,
            name: t.name.clone(),
            union_,
            size,
            members: members
                .iter()
                .map(|m| MemberLayout {
                    name: m.name.clone(),
                    bit_offset: m.bit_offset,
                    bitfield_size: m.bitfield_size,
                    ty: m.ty,
                    type_name: self.type_name(m.ty),
                })
                .collect(),
        })
    }

    /// The layout of the struct or union named `name` (`task_struct`, not `struct
    /// task_struct`).
    pub fn struct_layout(&self, name: &str) -> Option<StructLayout> {
        self.layout_of(self.struct_by_name(name)?)
    }
}
