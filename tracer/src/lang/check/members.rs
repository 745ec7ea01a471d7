//! Kernel types in expressions: `->member`, `.member`, `[index]` and `*p` resolved against
//! BTF struct layouts into guest-memory loads, `char` arrays read as strings. (`args[N]` and
//! the Linux built-ins, which produce the typed pointers, are in [`super::linux`].)
//!
//! Every member access is resolved here, at compile time: a missing member, a `->` on a
//! non-pointer or a type the runtime cannot load is an error naming the member and type.

use super::Checker;
use crate::btf::{Btf, Kind, TypeId};
use crate::lang::ast;
use crate::lang::diag::{type_error, ErrorKind, LangError};
use crate::lang::ir::{BinaryOp, Expr, ExprKind, Type};
use crate::lang::source::Span;

/// A member found in a struct or union (through anonymous members).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FoundMember {
    /// Offset from the start of the outermost struct, in bits.
    pub(crate) bit_offset: u64,
    /// Bitfield width (0: not a bitfield).
    pub(crate) bitfield_size: u32,
    /// The member's type.
    pub(crate) ty: TypeId,
}

/// Finds member `name` of the struct or union `id`, looking inside anonymous struct and
/// union members as C does.
pub(crate) fn find_member(btf: &Btf, id: TypeId, name: &str) -> Option<FoundMember> {
    find_at_depth(btf, id, name, 0)
}

fn find_at_depth(btf: &Btf, id: TypeId, name: &str, depth: usize) -> Option<FoundMember> {
    if depth > 32 {
        return None;
    }
    let members = match &btf.get(btf.resolve(id))?.kind {
        Kind::Struct { members, .. } | Kind::Union { members, .. } => members,
        _ => return None,
    };
    for m in members {
        if m.name == name {
            return Some(FoundMember {
                bit_offset: u64::from(m.bit_offset),
                bitfield_size: m.bitfield_size,
                ty: m.ty,
            });
        }
    }
    members.iter().filter(|m| m.name.is_empty()).find_map(|m| {
        let inner = find_at_depth(btf, m.ty, name, depth + 1)?;
        Some(FoundMember {
            bit_offset: inner.bit_offset + u64::from(m.bit_offset),
            ..inner
        })
    })
}

/// An object in guest memory: its address (an expression) and BTF type, and for a
/// bitfield its bit position and width.
struct Lvalue {
    addr: Expr,
    ty: TypeId,
    bitfield: Option<(u8, u8)>,
}

/// `addr + offset` (just `addr` for 0).
pub(crate) fn add(addr: Expr, offset: u64) -> Expr {
    if offset == 0 {
        return addr;
    }
    Expr {
        kind: ExprKind::Binary {
            op: BinaryOp::Add,
            signed: false,
            lhs: Box::new(addr),
            rhs: Box::new(Expr {
                kind: ExprKind::Int(offset),
                ty: Type::Uint,
            }),
        },
        ty: Type::Uint,
    }
}

/// The D integer type of a BTF integer or enum of `size` bytes: (bytes, signed).
pub(crate) fn int_shape(btf: &Btf, id: TypeId) -> Option<(u8, bool)> {
    match &btf.get(btf.resolve(id))?.kind {
        Kind::Int { size, signed, .. } | Kind::Enum { size, signed, .. }
            if matches!(size, 1 | 2 | 4 | 8) =>
        {
            Some((*size as u8, *signed))
        }
        _ => None,
    }
}

pub(crate) fn int_type(signed: bool) -> Type {
    if signed {
        Type::Int
    } else {
        Type::Uint
    }
}

/// The element type of `id` if it is an array of 1-byte integers (a C string buffer), and
/// the array's length.
fn char_array(btf: &Btf, id: TypeId) -> Option<u32> {
    match &btf.get(btf.resolve(id))?.kind {
        Kind::Array { elem, len, .. } if matches!(int_shape(btf, *elem), Some((1, _))) => {
            Some(*len)
        }
        _ => None,
    }
}

impl Checker<'_> {
    /// `base->name` or `base.name`, read from guest memory.
    pub(crate) fn member(
        &self,
        base: &ast::Expr,
        name: &str,
        arrow: bool,
        name_span: Span,
        span: Span,
    ) -> Result<Expr, LangError> {
        if arrow {
            let ptr = self.expr(base)?;
            return self.arrow(ptr, name, name_span, span);
        }
        let object = self.object(base, &format!(".{name}"))?;
        let lv = self.member_of(object, name, name_span)?;
        self.load(lv, name, span)
    }

    pub(crate) fn arrow(
        &self,
        ptr: Expr,
        name: &str,
        name_span: Span,
        span: Span,
    ) -> Result<Expr, LangError> {
        let lv = self.deref(ptr, &format!("->{name}"), span)?;
        let lv = self.member_of(lv, name, name_span)?;
        self.load(lv, name, span)
    }

    /// The object a pointer expression points to.
    fn deref(&self, ptr: Expr, what: &str, span: Span) -> Result<Lvalue, LangError> {
        let Type::Ptr(target) = ptr.ty else {
            return Err(type_error(
                span,
                format!(
                    "`{what}` needs a pointer to a struct or union, found {}",
                    ptr.ty.describe()
                ),
            ));
        };
        Ok(Lvalue {
            addr: Expr {
                ty: Type::Uint,
                ..ptr
            },
            ty: target,
            bitfield: None,
        })
    }

    /// The struct, union or array object an expression names without reading it: the base
    /// of `.member` or of `[index]`.
    fn object(&self, e: &ast::Expr, what: &str) -> Result<Lvalue, LangError> {
        match &e.kind {
            ast::ExprKind::Member {
                base,
                name,
                arrow,
                name_span,
            } => {
                let outer = if *arrow {
                    let ptr = self.expr(base)?;
                    self.deref(ptr, &format!("->{name}"), e.span)?
                } else {
                    self.object(base, &format!(".{name}"))?
                };
                self.member_of(outer, name, *name_span)
            }
            ast::ExprKind::Index { base, keys } if is_member(base) => {
                self.element(base, keys, e.span)
            }
            ast::ExprKind::Unary {
                op: ast::UnOp::Deref,
                operand,
            } => {
                let ptr = self.expr(operand)?;
                self.deref(ptr, what, e.span)
            }
            _ => {
                let v = self.expr(e)?;
                Err(type_error(
                    e.span,
                    format!(
                        "`{what}` needs a struct or union, found {}{}",
                        v.ty.describe(),
                        if matches!(v.ty, Type::Ptr(_)) {
                            " (use `->`)"
                        } else {
                            ""
                        }
                    ),
                ))
            }
        }
    }

    /// `member[index]` for an array member.
    fn element(
        &self,
        base: &ast::Expr,
        keys: &[ast::Expr],
        span: Span,
    ) -> Result<Lvalue, LangError> {
        let btf = &self.kernel("`[]` on a member", span)?.btf;
        let array = self.object(base, "[]")?;
        let Some(Kind::Array { elem, len, .. }) =
            btf.get(btf.resolve(array.ty)).map(|t| t.kind.clone())
        else {
            return Err(type_error(
                span,
                format!(
                    "only arrays can be indexed, and this is `{}`",
                    btf.type_name(array.ty)
                ),
            ));
        };
        if keys.len() != 1 {
            return Err(type_error(span, "an array takes exactly one index"));
        }
        let index = self.int_expr(&keys[0], "an array index")?;
        if let ExprKind::Int(i) = index.kind {
            if i >= u64::from(len) {
                return Err(type_error(
                    keys[0].span,
                    format!("index {i} is past the end of `{}`", btf.type_name(array.ty)),
                ));
            }
        }
        let Some(size) = btf.size_of(elem) else {
            return Err(type_error(
                span,
                format!(
                    "the elements of `{}` have no size in the kernel's BTF",
                    btf.type_name(array.ty)
                ),
            ));
        };
        let offset = Expr {
            kind: ExprKind::Binary {
                op: BinaryOp::Mul,
                signed: false,
                lhs: Box::new(index),
                rhs: Box::new(Expr {
                    kind: ExprKind::Int(size),
                    ty: Type::Uint,
                }),
            },
            ty: Type::Uint,
        };
        Ok(Lvalue {
            addr: Expr {
                kind: ExprKind::Binary {
                    op: BinaryOp::Add,
                    signed: false,
                    lhs: Box::new(array.addr),
                    rhs: Box::new(offset),
                },
                ty: Type::Uint,
            },
            ty: elem,
            bitfield: None,
        })
    }

    fn member_of(&self, outer: Lvalue, name: &str, span: Span) -> Result<Lvalue, LangError> {
        let btf = &self.kernel(&format!("member `{name}`"), span)?.btf;
        let resolved = btf.resolve(outer.ty);
        let kind = btf.get(resolved).map(|t| &t.kind);
        if matches!(kind, Some(Kind::Fwd { .. })) {
            return Err(type_error(
                span,
                format!(
                    "`{}` is only declared in the kernel's BTF (no layout), so it has no member `{name}`",
                    btf.type_name(outer.ty)
                ),
            ));
        }
        if !matches!(kind, Some(Kind::Struct { .. } | Kind::Union { .. })) {
            return Err(type_error(
                span,
                format!(
                    "`{}` is not a struct or union, so it has no member `{name}`",
                    btf.type_name(outer.ty)
                ),
            ));
        }
        let Some(m) = find_member(btf, resolved, name) else {
            return Err(type_error(
                span,
                format!("{} has no member '{name}'", btf.type_name(resolved)),
            ));
        };
        let bitfield = if m.bitfield_size > 0 {
            let shift = (m.bit_offset % 8) as u8;
            let width = m.bitfield_size;
            if u32::from(shift) + width > 64 {
                return Err(LangError::new(
                    ErrorKind::Unsupported(format!("bitfield `{name}` spans more than 8 bytes")),
                    span,
                ));
            }
            Some((shift, width as u8))
        } else {
            None
        };
        Ok(Lvalue {
            addr: add(outer.addr, m.bit_offset / 8),
            ty: m.ty,
            bitfield,
        })
    }

    /// Reads an object's value: integers, enums and pointers load; `char` arrays become
    /// strings; anything else is an error naming it.
    fn load(&self, lv: Lvalue, name: &str, span: Span) -> Result<Expr, LangError> {
        let btf = &self.kernel(&format!("member `{name}`"), span)?.btf;
        let kind = btf.get(btf.resolve(lv.ty)).map(|t| &t.kind);
        if let Some(Kind::Ptr { target }) = kind {
            return Ok(Expr {
                kind: ExprKind::Load {
                    addr: Box::new(lv.addr),
                    bytes: 8,
                    signed: false,
                    bits: None,
                },
                ty: Type::Ptr(*target),
            });
        }
        if let Some(len) = char_array(btf, lv.ty) {
            return Ok(Expr {
                kind: ExprKind::ReadChars {
                    addr: Box::new(lv.addr),
                    len,
                },
                ty: Type::Str,
            });
        }
        if let Some((bytes, signed)) = int_shape(btf, lv.ty) {
            let bytes = match lv.bitfield {
                Some((shift, width)) => (u32::from(shift) + u32::from(width)).div_ceil(8) as u8,
                None => bytes,
            };
            return Ok(Expr {
                kind: ExprKind::Load {
                    addr: Box::new(lv.addr),
                    bytes,
                    signed,
                    bits: lv.bitfield,
                },
                ty: int_type(signed),
            });
        }
        let what = match kind {
            Some(Kind::Struct { .. } | Kind::Union { .. }) => "reach one of its members with `.`",
            Some(Kind::Array { .. }) => "index it with `[]`",
            _ => "D holds only integers, pointers and strings",
        };
        Err(type_error(
            span,
            format!("`{name}` is `{}`: {what}", btf.type_name(lv.ty)),
        ))
    }

    /// `*ptr`: the value a kernel pointer points to.
    pub(crate) fn deref_value(&self, ptr: Expr, span: Span) -> Result<Expr, LangError> {
        if !matches!(ptr.ty, Type::Ptr(_)) {
            return Err(LangError::new(
                ErrorKind::Unsupported(format!(
                    "`*` needs a pointer typed by the kernel's BTF (args[N], a member, curthread), found {}: use stringof(addr) to read a string",
                    ptr.ty.describe()
                )),
                span,
            ));
        }
        let lv = self.deref(ptr, "*", span)?;
        self.load(lv, "*", span)
    }

    /// `member[index]` read as a value.
    pub(crate) fn member_index(
        &self,
        base: &ast::Expr,
        keys: &[ast::Expr],
        span: Span,
    ) -> Result<Expr, LangError> {
        let lv = self.element(base, keys, span)?;
        self.load(lv, "[]", span)
    }
}

/// Whether `e` is a member access (whose `[]` indexes an array member).
pub(crate) fn is_member(e: &ast::Expr) -> bool {
    matches!(e.kind, ast::ExprKind::Member { .. })
}
