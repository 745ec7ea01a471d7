//! Checking and lowering assignments and aggregations, and the declaring pre-pass over
//! assignments. Actions are in [`super::actions`].

use super::calls::{args_word, arity, builtin, ACTIONS, AGG_FUNCS};
use super::decls::GlobalRef;
use super::expr::{const_value, lower_binop};
use super::Checker;
use crate::lang::ast::{self, AssignOp};
use crate::lang::diag::{type_error, ErrorKind, LangError};
use crate::lang::ir::{Action, AggDecl, AggFunc, BinaryOp, Expr, Place, Type};
use crate::lang::registers::register_number;
use crate::lang::source::Span;

/// The most linear buckets an `lquantize()` may have.
pub const MAX_LQUANTIZE_LEVELS: i64 = 4096;

/// The most frames `stack(n)` may ask for.
pub const MAX_STACK_FRAMES: i64 = 128;

/// The default number of frames `stack()` records (DTrace's default).
pub const DEFAULT_STACK_FRAMES: usize = 20;

fn agg_error(span: Span, msg: impl Into<String>) -> LangError {
    LangError::new(ErrorKind::Aggregation(msg.into()), span)
}

/// The (name, keys) of an aggregation target `@a` or `@a[keys]`.
fn agg_target(target: &ast::Expr) -> Option<(&str, &[ast::Expr])> {
    match &target.kind {
        ast::ExprKind::Agg(name) => Some((name, &[])),
        ast::ExprKind::Index { base, keys } => match &base.kind {
            ast::ExprKind::Agg(name) => Some((name, keys)),
            _ => None,
        },
        _ => None,
    }
}

impl Checker<'_> {
    /// Declares what `stmt` assigns, if its types can be inferred with the declarations
    /// known so far. Errors are ignored here; the checking pass reports them.
    pub(crate) fn declare(&mut self, stmt: &ast::Stmt) {
        let (target, value) = match stmt {
            ast::Stmt::Assign {
                target, op, value, ..
            } => (
                target,
                match op {
                    AssignOp::Set => self.expr(value).ok().map(|e| e.ty),
                    AssignOp::Compound(_) => Some(Type::Int),
                },
            ),
            ast::Stmt::IncDec { target, .. } => (target, Some(Type::Int)),
            ast::Stmt::Expr(_) => return,
        };
        if let (Some((name, keys)), ast::Stmt::Assign { value, .. }) = (agg_target(target), stmt) {
            if self.decls.agg(name).is_none() {
                if let (Ok(keys), Ok((func, _))) = (self.keys(keys), self.agg_call(value)) {
                    self.decls.declare_agg(AggDecl {
                        name: name.to_string(),
                        func,
                        key_types: keys.iter().map(|k| k.ty).collect(),
                    });
                }
            }
            return;
        }
        let Some(ty) = value else { return };
        match &target.kind {
            ast::ExprKind::Ident(name)
                if builtin(name).is_none() && register_number(name).is_none() =>
            {
                self.decls.declare_scalar(name, ty);
            }
            ast::ExprKind::SelfVar(name) => self.decls.declare_self(name, ty),
            ast::ExprKind::This(name) => self.decls.declare_this(name, ty),
            ast::ExprKind::Index { base, keys } => {
                if let ast::ExprKind::Ident(name) = &base.kind {
                    if builtin(name).is_some() || name == "regs" {
                        return;
                    }
                    if let Ok(keys) = self.keys(keys) {
                        let types = keys.iter().map(|k| k.ty).collect();
                        self.decls.declare_array(name, types, ty);
                    }
                }
            }
            _ => {}
        }
    }

    /// Checks and lowers a statement.
    pub(crate) fn stmt(&mut self, stmt: &ast::Stmt) -> Result<Action, LangError> {
        match stmt {
            ast::Stmt::Expr(e) => self.action(e),
            ast::Stmt::Assign {
                target,
                op,
                value,
                span,
            } => {
                if let Some((name, keys)) = agg_target(target) {
                    if *op != AssignOp::Set {
                        return Err(agg_error(
                            *span,
                            "aggregations can only be assigned with `=`, as in `@a = count()`",
                        ));
                    }
                    return self.aggregate(name, keys, value, target.span);
                }
                let place = match self.place(target) {
                    Ok(p) => p,
                    Err(e) => {
                        // An undeclared target usually means its value did not type: say why.
                        self.expr(value)?;
                        return Err(e);
                    }
                };
                let v = self.expr(value)?;
                let place_ty = place.1;
                match op {
                    AssignOp::Set => {
                        if place_ty.is_int() != v.ty.is_int() {
                            return Err(type_error(
                                value.span,
                                format!(
                                    "cannot assign {} to `{}`, which holds {}",
                                    v.ty.describe(),
                                    place.2,
                                    place_ty.describe()
                                ),
                            ));
                        }
                        Ok(Action::Store {
                            place: place.0,
                            op: None,
                            value: v,
                        })
                    }
                    AssignOp::Compound(bop) => {
                        if !place_ty.is_int() || !v.ty.is_int() {
                            return Err(type_error(
                                *span,
                                format!(
                                    "`{}=` needs integers, found {} and {}",
                                    bop.text(),
                                    place_ty.describe(),
                                    v.ty.describe()
                                ),
                            ));
                        }
                        let ir_op = lower_binop(*bop).unwrap_or(BinaryOp::Add);
                        if matches!(ir_op, BinaryOp::Div | BinaryOp::Mod)
                            && const_value(&v) == Some(0)
                        {
                            return Err(type_error(value.span, "division by zero"));
                        }
                        let ty = if matches!(ir_op, BinaryOp::Shl | BinaryOp::Shr) {
                            place_ty
                        } else {
                            Type::arith(place_ty, v.ty)
                        };
                        Ok(Action::Store {
                            place: place.0,
                            op: Some((ir_op, ty == Type::Int)),
                            value: v,
                        })
                    }
                }
            }
            ast::Stmt::IncDec {
                target,
                increment,
                span,
            } => {
                if agg_target(target).is_some() {
                    return Err(agg_error(
                        *span,
                        "aggregations can only be assigned with `=`, as in `@a = count()`",
                    ));
                }
                let place = self.place(target)?;
                if !place.1.is_int() {
                    return Err(type_error(
                        *span,
                        format!("`{}` holds a string and cannot be incremented", place.2),
                    ));
                }
                let op = if *increment {
                    BinaryOp::Add
                } else {
                    BinaryOp::Sub
                };
                Ok(Action::Store {
                    place: place.0,
                    op: Some((op, place.1 == Type::Int)),
                    value: Expr {
                        kind: crate::lang::ir::ExprKind::Int(1),
                        ty: Type::Int,
                    },
                })
            }
        }
    }

    /// The place an assignment stores to, its type and how to name it.
    fn place(&self, target: &ast::Expr) -> Result<(Place, Type, String), LangError> {
        let cannot = |what: String| type_error(target.span, format!("cannot assign to {what}"));
        match &target.kind {
            ast::ExprKind::Ident(name) => {
                if builtin(name).is_some() {
                    return Err(cannot(format!("built-in variable `{name}`")));
                }
                if register_number(name).is_some() {
                    return Err(cannot(format!("register constant `{name}`")));
                }
                match self.decls.global(name) {
                    Some(GlobalRef::Scalar(i)) => {
                        Ok((Place::Global(i), self.decls.globals[i].ty, name.clone()))
                    }
                    Some(GlobalRef::Array(_)) => Err(type_error(
                        target.span,
                        format!("associative array `{name}` must be indexed, as in `{name}[key]`"),
                    )),
                    None => Err(LangError::new(
                        ErrorKind::UnknownVariable(name.clone()),
                        target.span,
                    )),
                }
            }
            ast::ExprKind::SelfVar(name) => match self.decls.self_var(name) {
                Some(i) => Ok((
                    Place::SelfVar(self.used_self(i)),
                    self.decls.self_vars[i].ty,
                    format!("self->{name}"),
                )),
                None => Err(LangError::new(
                    ErrorKind::UnknownVariable(format!("self->{name}")),
                    target.span,
                )),
            },
            ast::ExprKind::This(name) => match self.decls.this_var(name) {
                Some(i) => Ok((
                    Place::This(i),
                    self.decls.this_vars[i].ty,
                    format!("this->{name}"),
                )),
                None => Err(LangError::new(
                    ErrorKind::UnknownVariable(format!("this->{name}")),
                    target.span,
                )),
            },
            ast::ExprKind::Index { base, keys } => match &base.kind {
                ast::ExprKind::Ident(name) if name == "regs" => {
                    Err(cannot("`regs[]`: registers are read-only".into()))
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
                            target.span,
                        )?;
                        Ok((
                            Place::Array {
                                array: i,
                                keys: lowered,
                            },
                            decl.value_type,
                            format!("{name}[]"),
                        ))
                    }
                    Some(GlobalRef::Scalar(_)) => Err(type_error(
                        base.span,
                        format!("`{name}` is a scalar variable, not an associative array"),
                    )),
                    None if builtin(name).is_some() => {
                        Err(cannot(format!("built-in variable `{name}`")))
                    }
                    None => {
                        // Its keys or value did not type: report why.
                        self.keys(keys)?;
                        Err(LangError::new(
                            ErrorKind::UnknownVariable(name.clone()),
                            base.span,
                        ))
                    }
                },
                _ => self.expr(target).and(Err(cannot("this expression".into()))),
            },
            _ => Err(cannot("this expression".into())),
        }
    }

    /// The aggregating function called by `value` and its argument (lowered).
    fn agg_call(&self, value: &ast::Expr) -> Result<(AggFunc, Option<Expr>), LangError> {
        let ast::ExprKind::Call {
            name,
            name_span,
            args,
        } = &value.kind
        else {
            return Err(agg_error(
                value.span,
                "an aggregation can only be assigned an aggregating function: count, sum, min, max, avg, quantize or lquantize",
            ));
        };
        if !AGG_FUNCS.contains(&name.as_str()) {
            if ACTIONS.contains(&name.as_str()) || self.expr(value).is_ok() {
                return Err(agg_error(
                    *name_span,
                    format!("`{name}()` is not an aggregating function: use count, sum, min, max, avg, quantize or lquantize"),
                ));
            }
            // An unknown function: let the expression checker name the problem.
            self.expr(value)?;
        }
        let value_arg = |what: &str| -> Result<Expr, LangError> {
            self.int_expr(&args[0], &format!("the argument of {what}()"))
        };
        let constant = |i: usize, what: &str| -> Result<i64, LangError> {
            let e = self.int_expr(&args[i], what)?;
            const_value(&e).ok_or_else(|| {
                agg_error(
                    args[i].span,
                    format!("{what} of lquantize() must be a constant"),
                )
            })
        };
        // Unknown names in the arguments are the likelier mistake: report them first.
        for a in args {
            self.expr(a)?;
        }
        let func = match name.as_str() {
            "count" => {
                if !args.is_empty() {
                    return Err(arity(name, "no arguments", args.len(), value.span));
                }
                return Ok((AggFunc::Count, None));
            }
            "sum" => AggFunc::Sum,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "avg" => AggFunc::Avg,
            "quantize" => AggFunc::Quantize,
            _ => {
                if !(3..=4).contains(&args.len()) {
                    return Err(arity(name, "3 or 4 arguments", args.len(), value.span));
                }
                let v = value_arg(name)?;
                let lo = constant(1, "the lower bound")?;
                let hi = constant(2, "the upper bound")?;
                let step = if args.len() == 4 {
                    constant(3, "the step")?
                } else {
                    1
                };
                let span = args[1].span.to(args[args.len() - 1].span);
                let bound = i64::from(i32::MIN)..=i64::from(i32::MAX);
                if !bound.contains(&lo) || !bound.contains(&hi) {
                    return Err(agg_error(span, "lquantize() bounds must fit in 32 bits"));
                }
                if step <= 0 {
                    return Err(agg_error(
                        span,
                        "lquantize() step must be greater than zero",
                    ));
                }
                if lo >= hi {
                    return Err(agg_error(
                        span,
                        "lquantize() lower bound must be less than upper bound",
                    ));
                }
                let levels = (hi - lo) / step;
                if levels < 1 {
                    return Err(agg_error(
                        span,
                        "lquantize() step must not be larger than the range",
                    ));
                }
                if levels > MAX_LQUANTIZE_LEVELS {
                    return Err(agg_error(
                        span,
                        format!("lquantize() has {levels} levels; at most {MAX_LQUANTIZE_LEVELS}"),
                    ));
                }
                return Ok((AggFunc::Lquantize { lo, hi, step }, Some(v)));
            }
        };
        if args.len() != 1 {
            return Err(arity(name, args_word(1), args.len(), value.span));
        }
        Ok((func, Some(value_arg(name)?)))
    }

    fn aggregate(
        &mut self,
        name: &str,
        keys: &[ast::Expr],
        value: &ast::Expr,
        target_span: Span,
    ) -> Result<Action, LangError> {
        let lowered = self.keys(keys)?;
        let (func, arg) = self.agg_call(value)?;
        let Some(id) = self.decls.agg(name) else {
            return Err(agg_error(
                target_span,
                format!("cannot declare aggregation `@{name}`"),
            ));
        };
        let decl = &self.decls.aggs[id];
        if decl.func != func {
            return Err(agg_error(
                value.span,
                format!(
                    "`@{name}` is used with {}() elsewhere, so it cannot use {}() here{}",
                    decl.func.name(),
                    func.name(),
                    if decl.func.name() == func.name() {
                        " with different parameters"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Self::check_keys(
            &format!("aggregation `@{name}`"),
            &decl.key_types,
            &lowered,
            keys,
            target_span,
        )?;
        Ok(Action::Aggregate {
            agg: id,
            keys: lowered,
            value: arg,
        })
    }
}
