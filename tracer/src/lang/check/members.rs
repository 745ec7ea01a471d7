//! Kernel types in expressions: `args[N]` typed from the probed function's BTF prototype
//! (at a return probe, as in DTrace, `args[0]` is the return offset and `args[1]` the
//! return value),
//! `->member` and `.member` resolved against BTF struct layouts into guest-memory loads,
//! `char` arrays read as strings, and the Linux built-ins `curthread`, `execname`, `pid`
//! and `tid`.
//!
//! Every member access is resolved here, at compile time: a missing member, a `->` on a
//! non-pointer or a type the runtime cannot load is an error naming the member and type.

use super::Checker;
use crate::btf::{Btf, Kind, TypeId};
use crate::lang::ast;
use crate::lang::diag::{type_error, ErrorKind, LangError};
use crate::lang::ir::{BinaryOp, Builtin, Expr, ExprKind, Type};
use crate::lang::kernel::Kernel;
use crate::lang::source::Span;
use crate::probes::Probe;

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

/// The type of `args[N]` at one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgType {
    /// A parameter's (or, at a return probe, the return value's) BTF type.
    Btf(TypeId),
    /// A return probe's `args[0]`: the return site's offset in the function.
    Offset,
}

impl ArgType {
    fn name(self, btf: &Btf) -> String {
        match self {
            ArgType::Btf(ty) => btf.type_name(ty),
            ArgType::Offset => "the return offset".into(),
        }
    }
}

/// The type of `args[n]` at fbt probe `p`: parameter `n` at an entry; at a return, as in
/// DTrace, `args[0]` the offset of the return site and `args[1]` the return value.
fn arg_type(btf: &Btf, p: &Probe, n: usize) -> Result<ArgType, String> {
    let Some(proto) = btf.function(&p.function) else {
        return Err(format!(
            "function `{}` has no prototype in the kernel's BTF, so args[] is not available; use arg{n}",
            p.function
        ));
    };
    if p.name == "return" {
        return match n {
            0 => Ok(ArgType::Offset),
            1 if proto.ret == 0 => Err(format!(
                "`{}` returns void, so its return probe has no args[1]",
                p.function
            )),
            1 => Ok(ArgType::Btf(proto.ret)),
            _ => Err(format!(
                "at fbt return probes only args[0] (the return offset) and args[1] (the return value) exist, and this clause matches {}:{}:{}:{}",
                p.provider, p.module, p.function, p.name
            )),
        };
    }
    match proto.params.get(n) {
        Some(param) if param.ty != 0 => Ok(ArgType::Btf(param.ty)),
        Some(_) => Err(format!(
            "args[{n}] is a variadic argument of `{}`; use arg{n}",
            p.function
        )),
        None => Err(format!(
            "`{}` has {} parameter{}, so there is no args[{n}]",
            btf.render_prototype(&proto),
            proto.params.len(),
            if proto.params.len() == 1 { "" } else { "s" }
        )),
    }
}

/// An object in guest memory: its address (an expression) and BTF type, and for a
/// bitfield its bit position and width.
struct Lvalue {
    addr: Expr,
    ty: TypeId,
    bitfield: Option<(u8, u8)>,
}

fn add(addr: Expr, offset: u64) -> Expr {
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
fn int_shape(btf: &Btf, id: TypeId) -> Option<(u8, bool)> {
    match &btf.get(btf.resolve(id))?.kind {
        Kind::Int { size, signed, .. } | Kind::Enum { size, signed, .. }
            if matches!(size, 1 | 2 | 4 | 8) =>
        {
            Some((*size as u8, *signed))
        }
        _ => None,
    }
}

fn int_type(signed: bool) -> Type {
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
    fn kernel(&self, what: &str, span: Span) -> Result<&Kernel, LangError> {
        self.target.kernel.map_err(|why| {
            LangError::new(
                ErrorKind::Kernel(format!(
                    "{what} needs a Linux kernel with BTF, and this image has none: {why}"
                )),
                span,
            )
        })
    }

    /// `curthread`, `execname`, `pid`, `tid`, if `name` is one of them.
    pub(crate) fn linux_builtin(&self, name: &str, span: Span) -> Option<Result<Expr, LangError>> {
        if !matches!(name, "curthread" | "execname" | "pid" | "tid") {
            return None;
        }
        Some(self.linux_builtin_inner(name, span))
    }

    /// The current task pointer: `pcpu_hot.current_task` read through the per-CPU base.
    pub(crate) fn curthread(&self, what: &str, span: Span) -> Result<Expr, LangError> {
        let kernel = self.kernel(&format!("`{what}`"), span)?;
        let current = kernel.current.as_ref().map_err(|why| {
            LangError::new(
                ErrorKind::Kernel(format!("`{what}` is not available for this kernel: {why}")),
                span,
            )
        })?;
        let base = Expr {
            kind: ExprKind::Builtin(Builtin::PerCpuBase),
            ty: Type::Uint,
        };
        Ok(Expr {
            kind: ExprKind::Load {
                addr: Box::new(add(base, current.percpu_offset)),
                bytes: 8,
                signed: false,
                bits: None,
            },
            ty: Type::Ptr(current.task_struct),
        })
    }

    fn linux_builtin_inner(&self, name: &str, span: Span) -> Result<Expr, LangError> {
        let task = self.curthread(name, span)?;
        let member = match name {
            "curthread" => return Ok(task),
            "execname" => "comm",
            "pid" => "tgid",
            _ => "pid",
        };
        self.arrow(task, member, span, span)
    }

    /// `args[index]`: the probed function's argument typed from its BTF prototype.
    pub(crate) fn typed_arg(&self, index: &ast::Expr, span: Span) -> Result<Expr, LangError> {
        let n =
            match self.expr(index)? {
                Expr {
                    kind: ExprKind::Int(n),
                    ..
                } if n < 6 => n as usize,
                Expr {
                    kind: ExprKind::Int(_),
                    ..
                } => return Err(LangError::new(
                    ErrorKind::Kernel(
                        "only args[0] to args[5] are available (later arguments are on the stack)"
                            .into(),
                    ),
                    index.span,
                )),
                _ => {
                    return Err(type_error(
                        index.span,
                        "the index of args[] must be an integer constant",
                    ))
                }
            };
        let kernel = self.kernel("args[]", span)?;
        let btf = &kernel.btf;
        let mut found: Option<(String, ArgType)> = None;
        let mut any = false;
        let fail = |msg: String| LangError::new(ErrorKind::Kernel(msg), span);
        for p in self.target.probes.iter().filter(|p| {
            p.provider == "fbt"
                && self
                    .clause_descs
                    .iter()
                    .any(|d| d.matches(&p.provider, &p.module, &p.function, &p.name))
        }) {
            any = true;
            let ty = arg_type(btf, p, n).map_err(fail)?;
            match &found {
                Some((f, seen)) if *seen != ty => {
                    return Err(fail(format!(
                        "args[{n}] is `{}` in `{f}` but `{}` in `{}`; use arg{n} or a narrower probe description",
                        seen.name(btf),
                        ty.name(btf),
                        p.function
                    )))
                }
                Some(_) => {}
                None => found = Some((p.function.clone(), ty)),
            }
        }
        let Some((function, ty)) = found else {
            return Err(fail(if any {
                "args[] matches no function".into()
            } else {
                "args[] is only available in clauses of fbt probes".into()
            }));
        };
        let ArgType::Btf(ty) = ty else {
            // A return probe's args[0]: the offset of the return site in the function.
            return Ok(Expr {
                kind: ExprKind::Builtin(Builtin::Arg(0)),
                ty: Type::Uint,
            });
        };
        let raw = Expr {
            kind: ExprKind::Builtin(Builtin::Arg(n as u8)),
            ty: Type::Uint,
        };
        match &btf.get(btf.resolve(ty)).map(|t| &t.kind) {
            Some(Kind::Ptr { target }) => Ok(Expr {
                ty: Type::Ptr(*target),
                ..raw
            }),
            _ => match int_shape(btf, ty) {
                Some((bytes, signed)) => Ok(Expr {
                    kind: ExprKind::Cast {
                        bytes,
                        signed,
                        operand: Box::new(raw),
                    },
                    ty: int_type(signed),
                }),
                None => Err(LangError::new(
                    ErrorKind::Kernel(format!(
                        "args[{n}] of `{function}` is `{}`, which D cannot hold (only integers and pointers)",
                        btf.type_name(ty)
                    )),
                    span,
                )),
            },
        }
    }

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

    fn arrow(&self, ptr: Expr, name: &str, name_span: Span, span: Span) -> Result<Expr, LangError> {
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
        let size = btf.size_of(elem).unwrap_or(0);
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
