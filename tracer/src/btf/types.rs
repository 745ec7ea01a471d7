//! The BTF type model: one [`Type`] per type ID, with its kind-specific data.

/// A BTF type ID; 0 is `void`.
pub type TypeId = u32;

/// One member of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name (empty for an anonymous struct/union member).
    pub name: String,
    /// The member's type.
    pub ty: TypeId,
    /// Offset from the start of the struct, in bits.
    pub bit_offset: u32,
    /// Width of a bitfield in bits (0: not a bitfield).
    pub bitfield_size: u32,
}

/// One parameter of a function prototype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Name (may be empty).
    pub name: String,
    /// Type (0 with an empty name: the `...` of a variadic function).
    pub ty: TypeId,
}

/// One enumerator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enumerator {
    /// Name.
    pub name: String,
    /// Value (sign-extended for signed 32-bit enums).
    pub value: i64,
}

/// One variable of a data section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecVar {
    /// The `VAR` (or `FUNC`) type.
    pub ty: TypeId,
    /// Offset in the section.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// What a type is, with the data its kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `void` (type 0 only).
    Void,
    /// An integer: `size` bytes, `bits` wide, at `offset` bits; signed, char or bool.
    Int {
        /// Size in bytes.
        size: u32,
        /// Width in bits.
        bits: u8,
        /// Bit offset.
        offset: u8,
        /// Signed?
        signed: bool,
        /// A character type?
        char: bool,
        /// `_Bool`?
        bool: bool,
    },
    /// A pointer to `target`.
    Ptr {
        /// The pointee.
        target: TypeId,
    },
    /// An array of `len` `elem`s.
    Array {
        /// Element type.
        elem: TypeId,
        /// Index type.
        index: TypeId,
        /// Element count.
        len: u32,
    },
    /// A struct of `size` bytes.
    Struct {
        /// Size in bytes.
        size: u32,
        /// Members.
        members: Vec<Member>,
    },
    /// A union of `size` bytes.
    Union {
        /// Size in bytes.
        size: u32,
        /// Members.
        members: Vec<Member>,
    },
    /// An enum (32-bit values) or `ENUM64`.
    Enum {
        /// Size in bytes.
        size: u32,
        /// Signed values?
        signed: bool,
        /// Enumerators.
        values: Vec<Enumerator>,
    },
    /// A forward declaration of a struct (`union_` false) or union.
    Fwd {
        /// A union rather than a struct?
        union_: bool,
    },
    /// `typedef target name`.
    Typedef {
        /// The aliased type.
        target: TypeId,
    },
    /// `volatile target`.
    Volatile {
        /// The qualified type.
        target: TypeId,
    },
    /// `const target`.
    Const {
        /// The qualified type.
        target: TypeId,
    },
    /// `restrict target`.
    Restrict {
        /// The qualified type.
        target: TypeId,
    },
    /// A function: its name and its `FUNC_PROTO`.
    Func {
        /// The prototype.
        proto: TypeId,
        /// Linkage: 0 static, 1 global, 2 extern.
        linkage: u16,
    },
    /// A function prototype.
    FuncProto {
        /// Return type (0: void).
        ret: TypeId,
        /// Parameters.
        params: Vec<Param>,
    },
    /// A variable.
    Var {
        /// Its type.
        ty: TypeId,
        /// Linkage: 0 static, 1 global.
        linkage: u32,
    },
    /// A data section and its variables.
    Datasec {
        /// Size in bytes.
        size: u32,
        /// Variables.
        vars: Vec<SecVar>,
    },
    /// A floating-point type of `size` bytes.
    Float {
        /// Size in bytes.
        size: u32,
    },
    /// A declaration tag on `target` (`component`: member/parameter index, -1 for the type).
    DeclTag {
        /// The tagged type.
        target: TypeId,
        /// Member or parameter index, or -1.
        component: i32,
    },
    /// A type tag (`__user`, `__rcu`, ...) on `target`.
    TypeTag {
        /// The tagged type.
        target: TypeId,
    },
}

/// One BTF type: its name (empty for anonymous types) and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    /// Name, or empty.
    pub name: String,
    /// Kind and kind-specific data.
    pub kind: Kind,
}
