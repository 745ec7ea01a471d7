//! Checking and lowering expressions: name resolution, operator types, constant folding.
//! Built-in names and function calls are in [`super::calls`].

use super::calls::builtin;
use super::decls::GlobalRef;
use super::Checker;
use crate::lang::ast::{self, BinOp, UnOp};
use crate::lang::diag::{type_error, ErrorKind, LangError};
use crate::lang::ir::{BinaryOp, Expr, ExprKind, LogicalOp, Type, UnaryOp};
use crate::lang::registers::register_number;
use crate::lang::source::Span;

fn int_expr(v: u64, ty: Type) -> Expr {
    Expr {
        kind: ExprKind::Int(v),
        ty,
    }
}

/// The value of a constant integer expression (literals, and operators over them), if it is
/// one, as a signed 64-bit value.
pub(crate) fn const_value(e: &Expr) -> Option<i64> {
    let v = const_bits(e)?;
    Some(v as i64)
}

fn const_bits(e: &Expr) -> Option<u64> {
    Some(match &e.kind {
        ExprKind::Int(v) => *v,
        ExprKind::Unary { op, operand } => {
            let v = const_bits(operand)?;
            match op {
                UnaryOp::Neg => v.wrapping_neg(),
                UnaryOp::BitNot => !v,
                UnaryOp::Not => u64::from(v == 0),
            }
        }
        ExprKind::Binary {
            op,
            signed,
            lhs,
            rhs,
        } => {
            let (a, b) = (const_bits(lhs)?, const_bits(rhs)?);
            crate::runtime::ops::binary(*op, *signed, a, b).ok()?
        }
        ExprKind::Cast {
            bytes,
            signed,
            operand,
        } => crate::runtime::ops::cast(const_bits(operand)?, *bytes, *signed),
        ExprKind::Cond {
            cond,
            then,
            otherwise,
        } => {
            if const_bits(cond)? != 0 {
                const_bits(then)?
            } else {
                const_bits(otherwise)?
            }
        }
        _ => return None,
    })
}

fn binary_op(op: BinOp) -> Option<BinaryOp> {
    Some(match op {
        BinOp::Mul => BinaryOp::Mul,
        BinOp::Div => BinaryOp::Div,
        BinOp::Mod => BinaryOp::Mod,
        BinOp::Add => BinaryOp::Add,
        BinOp::Sub => BinaryOp::Sub,
        BinOp::Shl => BinaryOp::Shl,
        BinOp::Shr => BinaryOp::Shr,
        BinOp::Lt => BinaryOp::Lt,
        BinOp::Le => BinaryOp::Le,
        BinOp::Gt => BinaryOp::Gt,
        BinOp::Ge => BinaryOp::Ge,
        BinOp::Eq => BinaryOp::Eq,
        BinOp::Ne => BinaryOp::Ne,
        BinOp::BitAnd => BinaryOp::BitAnd,
        BinOp::BitXor => BinaryOp::BitXor,
        BinOp::BitOr => BinaryOp::BitOr,
        BinOp::And | BinOp::Xor | BinOp::Or => return None,
    })
}

/// The IR operator for an AST operator, if it is not a logical one.
pub(crate) fn lower_binop(op: BinOp) -> Option<BinaryOp> {
    binary_op(op)
}

fn is_comparison(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
    )
}

impl Checker<'_> {
    /// Checks and lowers an expression used for its value.
    pub(crate) fn expr(&self, e: &ast::Expr) -> Result<Expr, LangError> {
        match &e.kind {
            ast::ExprKind::Int(v, unsigned) => {
                let ty = if *unsigned || *v > i64::MAX as u64 {
                    Type::Uint
                } else {
                    Type::Int
                };
                Ok(int_expr(*v, ty))
            }
            ast::ExprKind::Str(s) => Ok(Expr {
                kind: ExprKind::Str(s.clone()),
                ty: Type::Str,
            }),
            ast::ExprKind::Ident(name) => self.ident(name, e.span),
            ast::ExprKind::This(name) => match self.decls.this_var(name) {
                Some(i) => Ok(Expr {
                    kind: ExprKind::This(i),
                    ty: self.decls.this_vars[i].ty,
                }),
                None => Err(LangError::new(
                    ErrorKind::UnknownVariable(format!("this->{name}")),
                    e.span,
                )),
            },
            ast::ExprKind::SelfVar(name) => match self.decls.self_var(name) {
                Some(i) => Ok(Expr {
                    kind: ExprKind::SelfVar(self.used_self(i)),
                    ty: self.decls.self_vars[i].ty,
                }),
                None => Err(LangError::new(
                    ErrorKind::UnknownVariable(format!("self->{name}")),
                    e.span,
                )),
            },
            ast::ExprKind::Agg(name) => Err(LangError::new(
                ErrorKind::Aggregation(format!(
                    "aggregation `@{name}` cannot be read in an expression; print it with printa()"
                )),
                e.span,
            )),
            ast::ExprKind::Index { base, keys } => self.index(base, keys, e.span),
            ast::ExprKind::Member {
                base,
                name,
                arrow,
                name_span,
            } => self.member(base, name, *arrow, *name_span, e.span),
            ast::ExprKind::Call {
                name,
                name_span,
                args,
            } => self.call(name, *name_span, args, e.span),
            ast::ExprKind::Unary { op, operand } => self.unary(*op, operand),
            ast::ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, e.span),
            ast::ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => self.ternary(cond, then, otherwise),
            ast::ExprKind::Cast { to, operand } => {
                let inner = self.expr(operand)?;
                if !inner.ty.is_int() {
                    return Err(type_error(
                        operand.span,
                        "cannot cast a string to an integer type",
                    ));
                }
                Ok(Expr {
                    kind: ExprKind::Cast {
                        bytes: to.bytes,
                        signed: to.signed,
                        operand: Box::new(inner),
                    },
                    ty: if to.signed { Type::Int } else { Type::Uint },
                })
            }
        }
    }

    /// Notes that the clause uses `self->` variable `i`, and returns `i`.
    pub(crate) fn used_self(&self, i: usize) -> usize {
        self.uses_self.set(true);
        i
    }

    /// An integer-typed expression; `what` names it in the error.
    pub(crate) fn int_expr(&self, e: &ast::Expr, what: &str) -> Result<Expr, LangError> {
        let x = self.expr(e)?;
        if x.ty.is_int() {
            Ok(x)
        } else {
            Err(type_error(
                e.span,
                format!("{what} must be an integer, found a string"),
            ))
        }
    }

    fn ident(&self, name: &str, span: Span) -> Result<Expr, LangError> {
        if let Some(linux) = self.linux_builtin(name, span) {
            return linux;
        }
        if let Some((b, ty)) = builtin(name) {
            return Ok(Expr {
                kind: ExprKind::Builtin(b),
                ty,
            });
        }
        if let Some(n) = register_number(name) {
            return Ok(int_expr(n as u64, Type::Int));
        }
        match self.decls.global(name) {
            Some(GlobalRef::Scalar(i)) => Ok(Expr {
                kind: ExprKind::Global(i),
                ty: self.decls.globals[i].ty,
            }),
            Some(GlobalRef::Array(_)) => Err(type_error(
                span,
                format!("associative array `{name}` must be indexed, as in `{name}[key]`"),
            )),
            None if name == "regs" => Err(type_error(
                span,
                "`regs` must be indexed by a register, as in `regs[R_RAX]`",
            )),
            None => Err(LangError::new(
                ErrorKind::UnknownVariable(name.to_string()),
                span,
            )),
        }
    }

    /// Lowers keys of an array or aggregation.
    pub(crate) fn keys(&self, keys: &[ast::Expr]) -> Result<Vec<Expr>, LangError> {
        keys.iter().map(|k| self.expr(k)).collect()
    }

    /// Checks that `keys` fit an array or aggregation declared with `types`.
    pub(crate) fn check_keys(
        what: &str,
        types: &[Type],
        keys: &[Expr],
        ast_keys: &[ast::Expr],
        span: Span,
    ) -> Result<(), LangError> {
        if types.len() != keys.len() {
            return Err(type_error(
                span,
                format!(
                    "{what} has {} key{} elsewhere but {} here",
                    types.len(),
                    if types.len() == 1 { "" } else { "s" },
                    keys.len()
                ),
            ));
        }
        for (i, ((t, k), a)) in types.iter().zip(keys).zip(ast_keys).enumerate() {
            if t.is_int() != k.ty.is_int() {
                return Err(type_error(
                    a.span,
                    format!(
                        "key #{} of {what} is {} elsewhere but {} here",
                        i + 1,
                        t.describe(),
                        k.ty.describe()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn index(&self, base: &ast::Expr, keys: &[ast::Expr], span: Span) -> Result<Expr, LangError> {
        match &base.kind {
            ast::ExprKind::Ident(name) if name == "args" && self.decls.global(name).is_none() => {
                if keys.len() != 1 {
                    return Err(type_error(span, "`args[]` takes exactly one index"));
                }
                self.typed_arg(&keys[0], span)
            }
            _ if super::members::is_member(base) => self.member_index(base, keys, span),
            ast::ExprKind::Ident(name) if name == "regs" => {
                if keys.len() != 1 {
                    return Err(type_error(span, "`regs[]` takes exactly one register index"));
                }
                let idx = self.int_expr(&keys[0], "a register index")?;
                Ok(Expr {
                    kind: ExprKind::Reg(Box::new(idx)),
                    ty: Type::Uint,
                })
            }
            ast::ExprKind::Ident(name) => match self.decls.global(name) {
                Some(GlobalRef::Array(i)) => {
                    let lowered = self.keys(keys)?;
                    let decl = &self.decls.arrays[i];
                    Self::check_keys(
                        &format!("array `{name}`"),
                        &decl.key_types,
                        &lowered,
                        keys,
                        span,
                    )?;
                    Ok(Expr {
                        kind: ExprKind::ArrayGet {
                            array: i,
                            keys: lowered,
                        },
                        ty: decl.value_type,
                    })
                }
                Some(GlobalRef::Scalar(_)) => Err(type_error(
                    base.span,
                    format!("`{name}` is a scalar variable, not an associative array"),
                )),
                None if builtin(name).is_some() => Err(type_error(
                    base.span,
                    format!("built-in variable `{name}` cannot be indexed"),
                )),
                None => Err(LangError::new(
                    ErrorKind::UnknownVariable(name.clone()),
                    base.span,
                )),
            },
            ast::ExprKind::Agg(name) => Err(LangError::new(
                ErrorKind::Aggregation(format!(
                    "aggregation `@{name}` cannot be read in an expression; print it with printa()"
                )),
                span,
            )),
            ast::ExprKind::SelfVar(_) | ast::ExprKind::This(_) => Err(LangError::new(
                ErrorKind::Unsupported(
                    "`self->` and `this->` associative arrays are not supported; use a global array"
                        .into(),
                ),
                span,
            )),
            _ => Err(type_error(
                span,
                "only associative arrays and `regs` can be indexed",
            )),
        }
    }

    fn unary(&self, op: UnOp, operand: &ast::Expr) -> Result<Expr, LangError> {
        let x = self.expr(operand)?;
        if op == UnOp::Deref {
            return self.deref_value(x, operand.span);
        }
        let sym = match op {
            UnOp::Deref => "*",
            UnOp::Neg => "-",
            UnOp::Plus => "+",
            UnOp::Not => "!",
            UnOp::BitNot => "~",
        };
        if !x.ty.is_int() {
            return Err(type_error(
                operand.span,
                format!("operator `{sym}` needs an integer operand, found a string"),
            ));
        }
        let (op, ty) = match op {
            UnOp::Plus | UnOp::Deref => return Ok(x),
            UnOp::Neg => (UnaryOp::Neg, x.ty),
            UnOp::BitNot => (UnaryOp::BitNot, x.ty),
            UnOp::Not => (UnaryOp::Not, Type::Int),
        };
        Ok(Expr {
            kind: ExprKind::Unary {
                op,
                operand: Box::new(x),
            },
            ty,
        })
    }

    fn binary(
        &self,
        op: BinOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        span: Span,
    ) -> Result<Expr, LangError> {
        let l = self.expr(lhs)?;
        let r = self.expr(rhs)?;
        let Some(bop) = binary_op(op) else {
            for (e, a) in [(&l, lhs), (&r, rhs)] {
                if !e.ty.is_int() {
                    return Err(type_error(
                        a.span,
                        format!(
                            "operator `{}` needs integer operands, found a string",
                            op.text()
                        ),
                    ));
                }
            }
            let op = match op {
                BinOp::And => LogicalOp::And,
                BinOp::Or => LogicalOp::Or,
                _ => LogicalOp::Xor,
            };
            return Ok(Expr {
                kind: ExprKind::Logical {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r),
                },
                ty: Type::Int,
            });
        };
        if is_comparison(bop) {
            match (l.ty.is_int(), r.ty.is_int()) {
                (false, false) => {
                    return Ok(Expr {
                        kind: ExprKind::StrCmp {
                            op: bop,
                            lhs: Box::new(l),
                            rhs: Box::new(r),
                        },
                        ty: Type::Int,
                    })
                }
                (true, true) => {
                    let signed = l.ty == Type::Int && r.ty == Type::Int;
                    return Ok(Expr {
                        kind: ExprKind::Binary {
                            op: bop,
                            signed,
                            lhs: Box::new(l),
                            rhs: Box::new(r),
                        },
                        ty: Type::Int,
                    });
                }
                _ => {
                    return Err(type_error(
                        span,
                        format!(
                            "operator `{}` cannot compare {} with {}",
                            op.text(),
                            l.ty.describe(),
                            r.ty.describe()
                        ),
                    ))
                }
            }
        }
        if !l.ty.is_int() || !r.ty.is_int() {
            return Err(type_error(
                span,
                format!(
                    "operator `{}` cannot be applied to {} and {}",
                    op.text(),
                    l.ty.describe(),
                    r.ty.describe()
                ),
            ));
        }
        let ty = if matches!(bop, BinaryOp::Shl | BinaryOp::Shr) {
            Type::arith(l.ty, Type::Int)
        } else {
            Type::arith(l.ty, r.ty)
        };
        if matches!(bop, BinaryOp::Div | BinaryOp::Mod) && const_value(&r) == Some(0) {
            return Err(type_error(rhs.span, "division by zero"));
        }
        Ok(Expr {
            kind: ExprKind::Binary {
                op: bop,
                signed: ty == Type::Int,
                lhs: Box::new(l),
                rhs: Box::new(r),
            },
            ty,
        })
    }

    fn ternary(
        &self,
        cond: &ast::Expr,
        then: &ast::Expr,
        otherwise: &ast::Expr,
    ) -> Result<Expr, LangError> {
        let c = self.int_expr(cond, "the condition of `?:`")?;
        let t = self.expr(then)?;
        let o = self.expr(otherwise)?;
        let ty = match (t.ty.is_int(), o.ty.is_int()) {
            (true, true) => Type::arith(t.ty, o.ty),
            (false, false) => Type::Str,
            _ => {
                return Err(type_error(
                    then.span.to(otherwise.span),
                    format!(
                        "the branches of `?:` must have the same type, found {} and {}",
                        t.ty.describe(),
                        o.ty.describe()
                    ),
                ))
            }
        };
        Ok(Expr {
            kind: ExprKind::Cond {
                cond: Box::new(c),
                then: Box::new(t),
                otherwise: Box::new(o),
            },
            ty,
        })
    }
}
