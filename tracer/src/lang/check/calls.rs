//! Built-in names: variables, functions with a value (`strlen`, `stringof`, ...), actions and
//! aggregating functions, and the checking of function calls in expressions.

use super::Checker;
use crate::lang::ast;
use crate::lang::diag::{type_error, ErrorKind, LangError};
use crate::lang::ir::{Builtin, Expr, ExprKind, Type};
use crate::lang::source::Span;

/// Built-in variables and their types.
pub(crate) fn builtin(name: &str) -> Option<(Builtin, Type)> {
    Some(match name {
        "cpu" => (Builtin::Cpu, Type::Int),
        "id" => (Builtin::Id, Type::Uint),
        "timestamp" => (Builtin::Timestamp, Type::Uint),
        "walltimestamp" => (Builtin::Walltimestamp, Type::Uint),
        "probeprov" => (Builtin::Probeprov, Type::Str),
        "probemod" => (Builtin::Probemod, Type::Str),
        "probefunc" => (Builtin::Probefunc, Type::Str),
        "probename" => (Builtin::Probename, Type::Str),
        "caller" => (Builtin::Caller, Type::Uint),
        "arg0" => (Builtin::Arg(0), Type::Int),
        "arg1" => (Builtin::Arg(1), Type::Int),
        "arg2" => (Builtin::Arg(2), Type::Int),
        "arg3" => (Builtin::Arg(3), Type::Int),
        "arg4" => (Builtin::Arg(4), Type::Int),
        "arg5" => (Builtin::Arg(5), Type::Int),
        _ => return None,
    })
}

/// Names that are actions (statements), not functions with a value.
pub(crate) const ACTIONS: &[&str] = &[
    "printf", "trace", "printa", "stack", "exit", "clear", "trunc",
];

/// Aggregating functions.
pub(crate) const AGG_FUNCS: &[&str] =
    &["count", "sum", "min", "max", "avg", "quantize", "lquantize"];

/// `n argument(s)` in words.
pub(crate) fn args_word(n: usize) -> String {
    if n == 1 {
        "1 argument".to_string()
    } else {
        format!("{n} arguments")
    }
}

pub(crate) fn arity(
    name: &str,
    expected: impl Into<String>,
    found: usize,
    span: Span,
) -> LangError {
    LangError::new(
        ErrorKind::Arity {
            name: name.to_string(),
            expected: expected.into(),
            found,
        },
        span,
    )
}

impl Checker<'_> {
    pub(crate) fn call(
        &self,
        name: &str,
        name_span: Span,
        args: &[ast::Expr],
        span: Span,
    ) -> Result<Expr, LangError> {
        let want = |n: usize| -> Result<(), LangError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(arity(name, args_word(n), args.len(), span))
            }
        };
        let string_arg = |i: usize, what: &str| -> Result<Expr, LangError> {
            let e = self.expr(&args[i])?;
            if e.ty == Type::Str {
                Ok(e)
            } else {
                Err(type_error(
                    args[i].span,
                    format!("{what} must be a string, found an integer"),
                ))
            }
        };
        match name {
            "strlen" => {
                want(1)?;
                let s = string_arg(0, "the argument of strlen()")?;
                Ok(Expr {
                    kind: ExprKind::Strlen(Box::new(s)),
                    ty: Type::Uint,
                })
            }
            "stringof" | "copyinstr" => {
                want(1)?;
                let x = self.expr(&args[0])?;
                if x.ty == Type::Str {
                    if name == "copyinstr" {
                        return Err(type_error(
                            args[0].span,
                            "the argument of copyinstr() must be an address (an integer), found a string",
                        ));
                    }
                    return Ok(x);
                }
                Ok(Expr {
                    kind: ExprKind::ReadString(Box::new(x)),
                    ty: Type::Str,
                })
            }
            "strjoin" => {
                want(2)?;
                let a = string_arg(0, "the first argument of strjoin()")?;
                let b = string_arg(1, "the second argument of strjoin()")?;
                Ok(Expr {
                    kind: ExprKind::Strjoin(Box::new(a), Box::new(b)),
                    ty: Type::Str,
                })
            }
            "lltostr" => {
                want(1)?;
                let x = self.int_expr(&args[0], "the argument of lltostr()")?;
                Ok(Expr {
                    kind: ExprKind::Lltostr(Box::new(x)),
                    ty: Type::Str,
                })
            }
            "func" | "sym" => {
                want(1)?;
                let what = if name == "func" {
                    "the argument of func()"
                } else {
                    "the argument of sym()"
                };
                let x = self.int_expr(&args[0], what)?;
                Ok(Expr {
                    kind: ExprKind::Func(Box::new(x)),
                    ty: Type::Str,
                })
            }
            _ if AGG_FUNCS.contains(&name) => Err(LangError::new(
                ErrorKind::Aggregation(format!(
                    "`{name}()` is an aggregating function: it can only be assigned to an aggregation, as in `@a = {name}(...)`"
                )),
                name_span,
            )),
            _ if ACTIONS.contains(&name) => Err(LangError::new(
                ErrorKind::Type(format!(
                    "`{name}()` is an action: it can only be used as a statement, not in an expression"
                )),
                name_span,
            )),
            _ => Err(LangError::new(
                ErrorKind::UnknownFunction(name.to_string()),
                name_span,
            )),
        }
    }
}
