//! The expression parser: Pratt (precedence-climbing) parsing of C expressions with C's
//! precedence, from loosest to tightest:
//!
//! `?:` (right-associative), `||`, `^^`, `&&`, `|`, `^`, `&`, `==` `!=`, `<` `<=` `>` `>=`,
//! `<<` `>>`, `+` `-`, `*` `/` `%`, unary `-` `+` `!` `~` and casts, then postfix `[keys]`,
//! calls and `self->x` / `this->x`.
//!
//! Every expression tree is at most [`MAX_DEPTH`] levels high, and parsing recursion is
//! bounded the same way, so that the checker and the evaluator, which recurse over the tree,
//! can never overflow the stack whatever the input.

use super::ast::{BinOp, CastType, Expr, ExprKind, UnOp};
use super::diag::{syntax, ErrorKind, LangError};
use super::lexer::Tok;
use super::parser::Parser;
use super::source::Span;

/// The deepest expression nesting accepted.
pub const MAX_DEPTH: usize = 100;

/// Binding power of unary operators' operands (tighter than every binary operator).
const UNARY_BP: u8 = 25;

/// Left and right binding powers of a binary operator token.
fn infix(tok: &Tok) -> Option<(u8, u8, BinOp)> {
    let (l, op) = match tok {
        Tok::OrOr => (3, BinOp::Or),
        Tok::XorXor => (5, BinOp::Xor),
        Tok::AndAnd => (7, BinOp::And),
        Tok::Pipe => (9, BinOp::BitOr),
        Tok::Caret => (11, BinOp::BitXor),
        Tok::Amp => (13, BinOp::BitAnd),
        Tok::EqEq => (15, BinOp::Eq),
        Tok::Ne => (15, BinOp::Ne),
        Tok::Lt => (17, BinOp::Lt),
        Tok::Le => (17, BinOp::Le),
        Tok::Gt => (17, BinOp::Gt),
        Tok::Ge => (17, BinOp::Ge),
        Tok::Shl => (19, BinOp::Shl),
        Tok::Shr => (19, BinOp::Shr),
        Tok::Plus => (21, BinOp::Add),
        Tok::Minus => (21, BinOp::Sub),
        Tok::Star => (23, BinOp::Mul),
        Tok::Slash => (23, BinOp::Div),
        Tok::Percent => (23, BinOp::Mod),
        _ => return None,
    };
    Some((l, l + 1, op))
}

/// The height of a node over `children`, failing if the tree would be too high.
fn height(span: Span, children: &[&Expr]) -> Result<u16, LangError> {
    let height = 1 + children.iter().map(|c| c.height).max().unwrap_or(0);
    if usize::from(height) > MAX_DEPTH {
        return Err(too_deep(span));
    }
    Ok(height)
}

fn too_deep(span: Span) -> LangError {
    LangError::new(
        ErrorKind::Limit(format!(
            "expression nested too deeply (more than {MAX_DEPTH} levels)"
        )),
        span,
    )
}

/// The integer type a cast names, from its words and whether it is a pointer.
fn cast_type(words: &[String], pointer: bool, span: Span) -> Result<CastType, LangError> {
    if pointer {
        return Ok(CastType {
            bytes: 8,
            signed: false,
        });
    }
    let word = |w: &str| words.iter().any(|x| x == w);
    let longs = words.iter().filter(|w| *w == "long").count();
    let fixed = |bytes, signed| Ok(CastType { bytes, signed });
    for w in words {
        match w.as_str() {
            "int8_t" => return fixed(1, true),
            "int16_t" => return fixed(2, true),
            "int32_t" => return fixed(4, true),
            "int64_t" | "intptr_t" | "ssize_t" => return fixed(8, true),
            "uint8_t" | "uchar_t" => return fixed(1, false),
            "uint16_t" | "ushort_t" => return fixed(2, false),
            "uint32_t" | "uint_t" => return fixed(4, false),
            "uint64_t" | "uintptr_t" | "size_t" | "ulong_t" => return fixed(8, false),
            _ => {}
        }
    }
    if word("void") {
        return Err(LangError::new(
            ErrorKind::Type("cannot cast to `void`".into()),
            span,
        ));
    }
    let signed = !word("unsigned");
    let bytes = if word("char") {
        1
    } else if word("short") {
        2
    } else if longs > 0 {
        8
    } else {
        4
    };
    Ok(CastType { bytes, signed })
}

/// Words that start a type name in a cast.
pub(crate) fn is_type_word(w: &str) -> bool {
    matches!(
        w,
        "char"
            | "short"
            | "int"
            | "long"
            | "signed"
            | "unsigned"
            | "void"
            | "int8_t"
            | "int16_t"
            | "int32_t"
            | "int64_t"
            | "uint8_t"
            | "uint16_t"
            | "uint32_t"
            | "uint64_t"
            | "intptr_t"
            | "uintptr_t"
            | "size_t"
            | "ssize_t"
            | "uchar_t"
            | "ushort_t"
            | "uint_t"
            | "ulong_t"
    )
}

impl Parser<'_> {
    /// Parses an expression.
    pub(crate) fn expr(&mut self) -> Result<Expr, LangError> {
        self.expr_bp(0)
    }

    fn expr_bp(&mut self, min_bp: u8) -> Result<Expr, LangError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let span = self.peek()?.span;
            return Err(too_deep(span));
        }
        let result = self.expr_bp_inner(min_bp);
        self.depth -= 1;
        result
    }

    fn expr_bp_inner(&mut self, min_bp: u8) -> Result<Expr, LangError> {
        let mut lhs = self.prefix()?;
        loop {
            let t = self.peek()?.clone();
            if t.tok == Tok::Question {
                if 2 < min_bp {
                    break;
                }
                self.next()?;
                let then = self.expr_bp(0)?;
                self.expect(&Tok::Colon, "`:` in the conditional expression")?;
                let otherwise = self.expr_bp(1)?;
                let span = lhs.span.to(otherwise.span);
                let height = height(span, &[&lhs, &then, &otherwise])?;
                lhs = Expr {
                    kind: ExprKind::Ternary {
                        cond: Box::new(lhs),
                        then: Box::new(then),
                        otherwise: Box::new(otherwise),
                    },
                    span,
                    height,
                };
                continue;
            }
            let Some((l_bp, r_bp, op)) = infix(&t.tok) else {
                break;
            };
            if l_bp < min_bp {
                break;
            }
            self.next()?;
            let rhs = self.expr_bp(r_bp)?;
            let span = lhs.span.to(rhs.span);
            let height = height(span, &[&lhs, &rhs])?;
            lhs = Expr {
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
                height,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self, op: UnOp, start: Span) -> Result<Expr, LangError> {
        let operand = self.expr_bp(UNARY_BP)?;
        let span = start.to(operand.span);
        let height = height(span, &[&operand])?;
        Ok(Expr {
            kind: ExprKind::Unary {
                op,
                operand: Box::new(operand),
            },
            span,
            height,
        })
    }

    fn prefix(&mut self) -> Result<Expr, LangError> {
        let t = self.next()?;
        let leaf = |kind| Expr {
            kind,
            span: t.span,
            height: 1,
        };
        let primary = match t.tok.clone() {
            Tok::Int(v, unsigned) => leaf(ExprKind::Int(v, unsigned)),
            Tok::Str(s) => leaf(ExprKind::Str(s)),
            Tok::Agg(name) => leaf(ExprKind::Agg(name)),
            Tok::Ident(name) => self.identifier(name, t.span)?,
            Tok::LParen => self.paren(t.span)?,
            Tok::Minus => return self.unary(UnOp::Neg, t.span),
            Tok::Plus => return self.unary(UnOp::Plus, t.span),
            Tok::Bang => return self.unary(UnOp::Not, t.span),
            Tok::Tilde => return self.unary(UnOp::BitNot, t.span),
            Tok::Star => return self.unary(UnOp::Deref, t.span),
            Tok::Amp => {
                return Err(LangError::new(
                    ErrorKind::Unsupported("taking an address (`&`) is not supported".into()),
                    t.span,
                ))
            }
            Tok::Inc | Tok::Dec => {
                return Err(syntax(
                    t.span,
                    format!(
                        "`{}` is a statement, not part of an expression",
                        t.tok.text()
                    ),
                ))
            }
            other => {
                return Err(syntax(
                    t.span,
                    format!("expected an expression, found {}", other.describe()),
                ))
            }
        };
        self.postfix(primary)
    }

    /// `[keys]`, `->member` and `.member` after a primary expression (`self->`/`this->` are
    /// variables, see [`Parser::identifier`]).
    fn postfix(&mut self, mut e: Expr) -> Result<Expr, LangError> {
        loop {
            let t = self.peek()?.clone();
            match t.tok {
                Tok::LBracket => {
                    self.next()?;
                    let (keys, close) = self.list(&Tok::RBracket, "`]`")?;
                    if keys.is_empty() {
                        return Err(syntax(t.span.to(close), "empty key list `[]`"));
                    }
                    let span = e.span.to(close);
                    let mut children: Vec<&Expr> = keys.iter().collect();
                    children.push(&e);
                    let height = height(span, &children)?;
                    e = Expr {
                        kind: ExprKind::Index {
                            base: Box::new(e),
                            keys,
                        },
                        span,
                        height,
                    };
                }
                Tok::Arrow | Tok::Dot => {
                    self.next()?;
                    let name = self.next()?;
                    let Tok::Ident(member) = name.tok else {
                        return Err(syntax(
                            name.span,
                            format!(
                                "expected a member name after `{}`, found {}",
                                t.tok.text(),
                                name.tok.describe()
                            ),
                        ));
                    };
                    let span = e.span.to(name.span);
                    let height = height(span, &[&e])?;
                    e = Expr {
                        kind: ExprKind::Member {
                            base: Box::new(e),
                            name: member,
                            arrow: t.tok == Tok::Arrow,
                            name_span: name.span,
                        },
                        span,
                        height,
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    /// Comma-separated expressions up to `close` (already past the opening bracket).
    fn list(&mut self, close: &Tok, what: &str) -> Result<(Vec<Expr>, Span), LangError> {
        let mut items = Vec::new();
        if let Some(t) = self.eat(close)? {
            return Ok((items, t.span));
        }
        loop {
            items.push(self.expr()?);
            let t = self.next()?;
            if &t.tok == close {
                return Ok((items, t.span));
            }
            if t.tok != Tok::Comma {
                return Err(syntax(
                    t.span,
                    format!("expected `,` or {what}, found {}", t.tok.describe()),
                ));
            }
        }
    }

    fn identifier(&mut self, name: String, span: Span) -> Result<Expr, LangError> {
        if (name == "self" || name == "this") && self.peek()?.tok == Tok::Arrow {
            self.next()?;
            let t = self.next()?;
            let Tok::Ident(member) = t.tok else {
                return Err(syntax(
                    t.span,
                    format!(
                        "expected a variable name after `{name}->`, found {}",
                        t.tok.describe()
                    ),
                ));
            };
            let kind = if name == "self" {
                ExprKind::SelfVar(member)
            } else {
                ExprKind::This(member)
            };
            return Ok(Expr {
                kind,
                span: span.to(t.span),
                height: 1,
            });
        }
        if name == "sizeof" || name == "offsetof" || name == "stringof_t" {
            return Err(LangError::new(
                ErrorKind::Unsupported(format!("`{name}` is not supported")),
                span,
            ));
        }
        if self.peek()?.tok == Tok::LParen {
            self.next()?;
            let (args, close) = self.list(&Tok::RParen, "`)`")?;
            let call_span = span.to(close);
            let children: Vec<&Expr> = args.iter().collect();
            let height = height(call_span, &children)?;
            return Ok(Expr {
                kind: ExprKind::Call {
                    name,
                    name_span: span,
                    args,
                },
                span: call_span,
                height,
            });
        }
        Ok(Expr {
            kind: ExprKind::Ident(name),
            span,
            height: 1,
        })
    }

    /// After `(`: a cast `(type) operand` or a parenthesised expression.
    fn paren(&mut self, open: Span) -> Result<Expr, LangError> {
        let starts_type = matches!(&self.peek()?.tok, Tok::Ident(w) if is_type_word(w));
        if !starts_type {
            let e = self.expr()?;
            self.expect(&Tok::RParen, "`)`")?;
            return Ok(e);
        }
        let mut words = Vec::new();
        while let Tok::Ident(w) = &self.peek()?.tok {
            if !is_type_word(w) {
                break;
            }
            words.push(w.clone());
            self.next()?;
        }
        let mut pointer = false;
        while self.eat(&Tok::Star)?.is_some() {
            pointer = true;
        }
        let close = self.expect(&Tok::RParen, "`)` to end the cast")?;
        let to = cast_type(&words, pointer, open.to(close.span))?;
        let operand = self.expr_bp(UNARY_BP)?;
        let span = open.to(operand.span);
        let height = height(span, &[&operand])?;
        Ok(Expr {
            kind: ExprKind::Cast {
                to,
                operand: Box::new(operand),
            },
            span,
            height,
        })
    }
}
