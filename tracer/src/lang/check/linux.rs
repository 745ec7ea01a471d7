//! The Linux side of the language: `args[N]` typed from the probed function's BTF prototype
//! (at a return probe, as in DTrace, `args[0]` is the return offset and `args[1]` the
//! return value), and the built-ins `curthread`, `execname`, `pid` and `tid` read through the
//! per-CPU current task.

use super::members::{add, int_shape, int_type};
use super::Checker;
use crate::btf::{Btf, Kind, TypeId};
use crate::lang::ast;
use crate::lang::diag::{type_error, ErrorKind, LangError};
use crate::lang::ir::{Builtin, Expr, ExprKind, Type};
use crate::lang::kernel::Kernel;
use crate::lang::source::Span;
use crate::probes::Probe;

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

impl Checker<'_> {
    /// The kernel the program is compiled against, or an error saying `what` needs one.
    pub(crate) fn kernel(&self, what: &str, span: Span) -> Result<&Kernel, LangError> {
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
}
