//! Checking and lowering action statements: `printf`, `trace`, `printa`, `stack`, `exit`,
//! `clear`, `trunc`, with their format and argument checks.

use super::calls::{args_word, arity, AGG_FUNCS};
use super::expr::const_value;
use super::stmt::{DEFAULT_STACK_FRAMES, MAX_STACK_FRAMES};
use super::Checker;
use crate::lang::ast::{self, BinOp};
use crate::lang::diag::{syntax, type_error, ErrorKind, LangError};
use crate::lang::format::Format;
use crate::lang::ir::{Action, Type};
use crate::lang::source::Span;

fn agg_error(span: Span, msg: impl Into<String>) -> LangError {
    LangError::new(ErrorKind::Aggregation(msg.into()), span)
}

fn format_error(span: Span, msg: impl Into<String>) -> LangError {
    LangError::new(ErrorKind::Format(msg.into()), span)
}

impl Checker<'_> {
    /// The aggregation named by an argument that must be `@name`.
    fn agg_arg(&self, action: &str, arg: &ast::Expr) -> Result<usize, LangError> {
        match &arg.kind {
            ast::ExprKind::Agg(name) => self.decls.agg(name).ok_or_else(|| {
                LangError::new(ErrorKind::UnknownAggregation(format!("@{name}")), arg.span)
            }),
            _ => Err(type_error(
                arg.span,
                format!("the argument of {action}() must be an aggregation, as in `{action}(@a)`"),
            )),
        }
    }

    fn format_arg(&self, action: &str, arg: &ast::Expr) -> Result<Format, LangError> {
        match &arg.kind {
            ast::ExprKind::Str(text) => Format::parse(text).map_err(|e| format_error(arg.span, e)),
            _ => Err(format_error(
                arg.span,
                format!("the format of {action}() must be a string literal"),
            )),
        }
    }

    /// An expression statement: one of the actions.
    pub(crate) fn action(&mut self, e: &ast::Expr) -> Result<Action, LangError> {
        let ast::ExprKind::Call {
            name,
            name_span,
            args,
        } = &e.kind
        else {
            if let ast::ExprKind::Binary { op: BinOp::Eq, .. } = e.kind {
                return Err(syntax(
                    e.span,
                    "this comparison has no effect; did you mean `=`?",
                ));
            }
            return Err(syntax(
                e.span,
                "this statement has no effect; use trace(expr) to record a value",
            ));
        };
        let span = e.span;
        let n = args.len();
        match name.as_str() {
            "printf" => {
                if n == 0 {
                    return Err(arity(name, "at least 1 argument", 0, span));
                }
                let format = self.format_arg(name, &args[0])?;
                let mut values = Vec::with_capacity(n - 1);
                for a in &args[1..] {
                    values.push(self.expr(a)?);
                }
                let convs: Vec<_> = format.conversions().collect();
                if let Some(c) = convs.iter().find(|c| c.aggregate) {
                    return Err(format_error(
                        args[0].span,
                        format!("conversion `{}` is only valid in printa()", c.spec),
                    ));
                }
                if convs.len() != values.len() {
                    return Err(format_error(
                        span,
                        format!(
                            "the format {} has {} conversion{} but {} {} given",
                            format,
                            convs.len(),
                            if convs.len() == 1 { "" } else { "s" },
                            args_word(values.len()),
                            if values.len() == 1 { "was" } else { "were" }
                        ),
                    ));
                }
                for (i, (c, v)) in convs.iter().zip(&values).enumerate() {
                    if c.kind.takes_string() != (v.ty == Type::Str) {
                        return Err(format_error(
                            args[i + 1].span,
                            format!(
                                "conversion `{}` needs {}, but argument #{} is {}",
                                c.spec,
                                if c.kind.takes_string() { "a string" } else { "an integer" },
                                i + 2,
                                v.ty.describe()
                            ),
                        ));
                    }
                }
                Ok(Action::Printf {
                    format,
                    args: values,
                })
            }
            "trace" => {
                if n != 1 {
                    return Err(arity(name, args_word(1), n, span));
                }
                Ok(Action::Trace(self.expr(&args[0])?))
            }
            "printa" => {
                if !(1..=2).contains(&n) {
                    return Err(arity(name, "1 or 2 arguments", n, span));
                }
                let agg = self.agg_arg(name, &args[n - 1])?;
                let format = if n == 2 {
                    let f = self.format_arg(name, &args[0])?;
                    self.check_printa_format(&f, agg, args[0].span)?;
                    Some(f)
                } else {
                    None
                };
                Ok(Action::Printa { format, agg })
            }
            "stack" => {
                let frames = match n {
                    0 => DEFAULT_STACK_FRAMES,
                    1 => {
                        let e = self.int_expr(&args[0], "the frame count of stack()")?;
                        match const_value(&e) {
                            Some(v) if (1..=MAX_STACK_FRAMES).contains(&v) => v as usize,
                            Some(_) => {
                                return Err(type_error(
                                    args[0].span,
                                    format!("stack() frame count must be between 1 and {MAX_STACK_FRAMES}"),
                                ))
                            }
                            None => {
                                return Err(type_error(
                                    args[0].span,
                                    "stack() frame count must be a constant",
                                ))
                            }
                        }
                    }
                    _ => return Err(arity(name, "0 or 1 arguments", n, span)),
                };
                Ok(Action::Stack { frames })
            }
            "exit" => {
                if n != 1 {
                    return Err(arity(name, args_word(1), n, span));
                }
                Ok(Action::Exit(self.int_expr(&args[0], "the exit status")?))
            }
            "clear" => {
                if n != 1 {
                    return Err(arity(name, args_word(1), n, span));
                }
                Ok(Action::Clear(self.agg_arg(name, &args[0])?))
            }
            "trunc" => {
                if !(1..=2).contains(&n) {
                    return Err(arity(name, "1 or 2 arguments", n, span));
                }
                let agg = self.agg_arg(name, &args[0])?;
                let keep = if n == 2 {
                    Some(self.int_expr(&args[1], "the count of trunc()")?)
                } else {
                    None
                };
                Ok(Action::Trunc { agg, keep })
            }
            _ if AGG_FUNCS.contains(&name.as_str()) => Err(agg_error(
                *name_span,
                format!(
                    "`{name}()` is an aggregating function: it can only be assigned to an aggregation, as in `@a = {name}(...)`"
                ),
            )),
            _ => {
                // Type-check the call to report unknown functions and bad arguments.
                self.expr(e)?;
                Err(syntax(
                    span,
                    format!("the value of `{name}()` is unused; use trace({name}(...)) to record it"),
                ))
            }
        }
    }

    /// Checks a `printa` format against the aggregation's keys: plain conversions take the
    /// keys in order, `%@` conversions take the value.
    fn check_printa_format(&self, f: &Format, agg: usize, span: Span) -> Result<(), LangError> {
        let decl = &self.decls.aggs[agg];
        let mut key = 0;
        for c in f.conversions() {
            if c.aggregate {
                if c.kind.takes_string() {
                    return Err(format_error(
                        span,
                        format!(
                            "conversion `{}` cannot print an aggregation's value",
                            c.spec
                        ),
                    ));
                }
                continue;
            }
            let Some(ty) = decl.key_types.get(key) else {
                return Err(format_error(
                    span,
                    format!(
                        "the format has more conversions than `{}` has keys ({})",
                        decl.display_name(),
                        decl.key_types.len()
                    ),
                ));
            };
            if c.kind.takes_string() != (*ty == Type::Str) {
                return Err(format_error(
                    span,
                    format!(
                        "conversion `{}` needs {}, but key #{} of `{}` is {}",
                        c.spec,
                        if c.kind.takes_string() {
                            "a string"
                        } else {
                            "an integer"
                        },
                        key + 1,
                        decl.display_name(),
                        ty.describe()
                    ),
                ));
            }
            key += 1;
        }
        Ok(())
    }
}
