//! The parser for programs, clauses and statements. Expressions are in [`super::expr`].
//!
//! A program is a sequence of clauses `desc[, desc...] [/predicate/] { statements }`, with
//! `#pragma D option name[=value]` lines allowed between them and a `#!` line allowed at the
//! very start. Statements are separated by `;` (the last one before `}` needs none).

use super::ast::{AssignOp, BinOp, Clause, Expr, File, Stmt};
use super::diag::{syntax, LangError};
use super::lexer::{Lexer, Tok, Token};
use super::source::Span;

/// The recursive-descent parser over one source.
pub(crate) struct Parser<'a> {
    pub(crate) lex: Lexer<'a>,
    peeked: Option<Token>,
    /// Current expression recursion depth (bounded, see [`super::expr`]).
    pub(crate) depth: usize,
}

/// Parses source number `source` whose text is `text`.
pub(crate) fn parse_file(text: &str, source: usize) -> Result<File, LangError> {
    Parser::new(text, source).file()
}

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str, source: usize) -> Self {
        Self {
            lex: Lexer::new(text, source),
            peeked: None,
            depth: 0,
        }
    }

    /// The next token, without consuming it.
    pub(crate) fn peek(&mut self) -> Result<&Token, LangError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next_token()?);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(syntax(Span::default(), "internal parser error")),
        }
    }

    /// Consumes and returns the next token.
    pub(crate) fn next(&mut self) -> Result<Token, LangError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next_token(),
        }
    }

    /// Consumes the next token if it is `tok`.
    pub(crate) fn eat(&mut self, tok: &Tok) -> Result<Option<Token>, LangError> {
        if &self.peek()?.tok == tok {
            self.next().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Consumes the next token, which must be `tok`; `what` describes it for the error.
    pub(crate) fn expect(&mut self, tok: &Tok, what: &str) -> Result<Token, LangError> {
        let t = self.next()?;
        if &t.tok == tok {
            Ok(t)
        } else {
            Err(syntax(
                t.span,
                format!("expected {what}, found {}", t.tok.describe()),
            ))
        }
    }

    fn file(&mut self) -> Result<File, LangError> {
        let mut file = File::default();
        if self.lex.peek_byte() == Some(b'#') && self.lex_rest_starts_with("#!") {
            self.lex.rest_of_line();
        }
        loop {
            self.lex.skip_trivia()?;
            match self.lex.peek_byte() {
                None => return Ok(file),
                Some(b'#') => self.pragma(&mut file)?,
                Some(_) => file.clauses.push(self.clause()?),
            }
        }
    }

    fn lex_rest_starts_with(&self, prefix: &str) -> bool {
        self.lex.remaining().starts_with(prefix)
    }

    /// `#pragma D option name[=value]`; any other `#` line is an error.
    fn pragma(&mut self, file: &mut File) -> Result<(), LangError> {
        let (line, span) = self.lex.rest_of_line();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["#pragma", "D", "option", setting] => {
                let (name, value) = match setting.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (setting.to_string(), None),
                };
                if name.is_empty() {
                    return Err(syntax(span, "empty option name in `#pragma D option`"));
                }
                file.pragmas.push((name, value, span));
                Ok(())
            }
            ["#pragma", ..] => Err(syntax(
                span,
                "only `#pragma D option name[=value]` is supported",
            )),
            _ => Err(syntax(
                span,
                "preprocessor directives are not supported (only `#pragma D option`)",
            )),
        }
    }

    fn desc(&mut self) -> Result<(String, Span), LangError> {
        let (text, span) = self.lex.probe_desc();
        if text.is_empty() {
            let here = self.lex.pos();
            return Err(syntax(
                self.lex.span(here, here + 1),
                format!(
                    "expected a probe description, found {}",
                    self.lex.describe_here()
                ),
            ));
        }
        Ok((text.to_string(), span))
    }

    fn clause(&mut self) -> Result<Clause, LangError> {
        let first = self.desc()?;
        let mut span = first.1;
        let mut descs = vec![first];
        loop {
            self.lex.skip_trivia()?;
            if self.lex.peek_byte() != Some(b',') {
                break;
            }
            self.lex.bump();
            self.lex.skip_trivia()?;
            let d = self.desc()?;
            span = span.to(d.1);
            descs.push(d);
        }
        let predicate = if self.lex.peek_byte() == Some(b'/') {
            self.lex.bump();
            let e = self.expr()?;
            self.expect(&Tok::SlashEnd, "`/` to end the predicate")?;
            Some(e)
        } else {
            None
        };
        if predicate.is_none() && !matches!(self.lex.peek_byte(), None | Some(b'{')) {
            let here = self.lex.pos();
            return Err(syntax(
                self.lex.span(here, here + 1),
                format!(
                    "expected `{{`, `/` or `,` after probe description, found {}",
                    self.lex.describe_here()
                ),
            ));
        }
        let t = self.next()?;
        let body = match t.tok {
            Tok::LBrace => Some(self.body(t.span)?),
            Tok::Eof => None,
            other => {
                return Err(syntax(
                    t.span,
                    format!(
                        "expected `{{` after the predicate, found {}",
                        other.describe()
                    ),
                ))
            }
        };
        Ok(Clause {
            descs,
            predicate,
            body,
            span,
        })
    }

    fn body(&mut self, open: Span) -> Result<Vec<Stmt>, LangError> {
        let mut stmts = Vec::new();
        loop {
            let t = self.peek()?;
            match t.tok {
                Tok::RBrace => {
                    self.next()?;
                    return Ok(stmts);
                }
                Tok::Semi => {
                    self.next()?;
                    continue;
                }
                Tok::Eof => {
                    return Err(syntax(
                        open,
                        "unclosed `{`: expected `}` before the end of input",
                    ))
                }
                _ => {}
            }
            stmts.push(self.statement()?);
            let t = self.peek()?;
            match t.tok {
                Tok::Semi => {
                    self.next()?;
                }
                Tok::RBrace => {}
                _ => {
                    return Err(syntax(
                        t.span,
                        format!(
                            "expected `;` or `}}` after the statement, found {}",
                            t.tok.describe()
                        ),
                    ))
                }
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt, LangError> {
        let t = self.peek()?.clone();
        if matches!(t.tok, Tok::Inc | Tok::Dec) {
            self.next()?;
            let target = self.expr()?;
            let span = t.span.to(target.span);
            return Ok(Stmt::IncDec {
                target,
                increment: t.tok == Tok::Inc,
                span,
            });
        }
        let target = self.expr()?;
        let t = self.peek()?.clone();
        let op = match &t.tok {
            Tok::Assign => AssignOp::Set,
            Tok::OpAssign(op) => AssignOp::Compound(compound_op(op)),
            Tok::Inc | Tok::Dec => {
                self.next()?;
                let span = target.span.to(t.span);
                return Ok(Stmt::IncDec {
                    target,
                    increment: t.tok == Tok::Inc,
                    span,
                });
            }
            _ => return Ok(Stmt::Expr(target)),
        };
        self.next()?;
        let value: Expr = self.expr()?;
        let span = target.span.to(value.span);
        Ok(Stmt::Assign {
            target,
            op,
            value,
            span,
        })
    }
}

/// The binary operator of a compound assignment token.
fn compound_op(op: &Tok) -> BinOp {
    match op {
        Tok::Plus => BinOp::Add,
        Tok::Minus => BinOp::Sub,
        Tok::Star => BinOp::Mul,
        Tok::Slash => BinOp::Div,
        Tok::Percent => BinOp::Mod,
        Tok::Amp => BinOp::BitAnd,
        Tok::Pipe => BinOp::BitOr,
        Tok::Shl => BinOp::Shl,
        Tok::Shr => BinOp::Shr,
        _ => BinOp::BitXor,
    }
}
