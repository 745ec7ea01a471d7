//! The lexer: turns program text into tokens, skipping whitespace and `/* */` and `//`
//! comments.
//!
//! D needs two lexer states, as in DTrace's own lexer. At the top level of a program the text
//! up to the next `,`, `/` or `{` is a *probe description* (`fbt::xcall_*:entry`,
//! `tick-1s`), read whole by [`Lexer::probe_desc`]. Inside predicates and clause bodies the
//! text is C-like tokens ([`Lexer::next_token`]). A `/` is division, except that one followed
//! (after whitespace and comments) by `{`, `;`, `/` or the end of input closes a predicate
//! and lexes as [`Tok::SlashEnd`]: the same look-ahead rule DTrace's lexer uses.

use super::diag::{syntax, LangError};
use super::source::Span;

/// A token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Ident(String),
    /// An integer literal and whether it had a `u`/`U` suffix.
    Int(u64, bool),
    Str(String),
    /// `@name`, or `@` alone (the anonymous aggregation, name "").
    Agg(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Colon,
    Question,
    Plus,
    Minus,
    Star,
    Slash,
    /// A `/` that ends a predicate (see the module documentation).
    SlashEnd,
    Percent,
    Shl,
    Shr,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
    Amp,
    Caret,
    Pipe,
    AndAnd,
    OrOr,
    XorXor,
    Bang,
    Tilde,
    Assign,
    /// A compound assignment: the operator token before the `=`, e.g. `Plus` for `+=`.
    OpAssign(Box<Tok>),
    Inc,
    Dec,
    Arrow,
    Dot,
    Eof,
}

impl Tok {
    /// How the token appears in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(v, _) => format!("`{v}`"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Agg(s) => format!("`@{s}`"),
            Tok::Eof => "end of input".to_string(),
            Tok::OpAssign(op) => format!("`{}=`", op.text()),
            other => format!("`{}`", other.text()),
        }
    }

    /// The source spelling of punctuation tokens.
    pub(crate) fn text(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Semi => ";",
            Tok::Colon => ":",
            Tok::Question => "?",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash | Tok::SlashEnd => "/",
            Tok::Percent => "%",
            Tok::Shl => "<<",
            Tok::Shr => ">>",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::Amp => "&",
            Tok::Caret => "^",
            Tok::Pipe => "|",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::XorXor => "^^",
            Tok::Bang => "!",
            Tok::Tilde => "~",
            Tok::Assign => "=",
            Tok::Inc => "++",
            Tok::Dec => "--",
            Tok::Arrow => "->",
            Tok::Dot => ".",
            Tok::Ident(_) | Tok::Int(..) | Tok::Str(_) | Tok::Agg(_) | Tok::OpAssign(_) => "",
            Tok::Eof => "",
        }
    }
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Span,
}

/// Characters that may appear in a probe description (DTrace's set).
pub(crate) fn is_desc_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'_' | b'-'
                | b'.'
                | b':'
                | b'*'
                | b'?'
                | b'['
                | b']'
                | b'!'
                | b'\\'
                | b'$'
                | b'`'
                | b'^'
        )
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The lexer over one source's text.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    source: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `text`, which is source number `source`.
    pub(crate) fn new(text: &'a str, source: usize) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            source,
        }
    }

    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.source, start, end)
    }

    /// The byte at the current position, if any (after [`Lexer::skip_trivia`], the start of
    /// the next token).
    pub(crate) fn peek_byte(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The text from the current position on.
    pub(crate) fn remaining(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Consumes one byte (the caller has checked it is ASCII).
    pub(crate) fn bump(&mut self) {
        if self.pos < self.bytes.len() {
            self.pos += 1;
        }
    }

    /// Skips whitespace and comments.
    pub(crate) fn skip_trivia(&mut self) -> Result<(), LangError> {
        self.pos = self.trivia_end(self.pos)?;
        Ok(())
    }

    /// Where the whitespace and comments starting at `pos` end.
    fn trivia_end(&self, mut pos: usize) -> Result<usize, LangError> {
        loop {
            match self.bytes.get(pos) {
                Some(c) if c.is_ascii_whitespace() => pos += 1,
                Some(b'/') if self.bytes.get(pos + 1) == Some(&b'*') => {
                    match self.text[pos + 2..].find("*/") {
                        Some(i) => pos = pos + 2 + i + 2,
                        None => {
                            return Err(syntax(
                                self.span(pos, pos + 2),
                                "unterminated comment: `/*` without `*/`",
                            ))
                        }
                    }
                }
                Some(b'/') if self.bytes.get(pos + 1) == Some(&b'/') => {
                    pos = self.text[pos..]
                        .find('\n')
                        .map_or(self.bytes.len(), |i| pos + i);
                }
                _ => return Ok(pos),
            }
        }
    }

    /// Reads the rest of the current line (for `#pragma` and `#!` lines), consuming it.
    pub(crate) fn rest_of_line(&mut self) -> (&'a str, Span) {
        let start = self.pos;
        let end = self.text[start..]
            .find('\n')
            .map_or(self.bytes.len(), |i| start + i);
        self.pos = end;
        (&self.text[start..end], self.span(start, end))
    }

    /// Reads a probe description at the current position (which the caller has positioned
    /// after trivia). Returns an empty string if none starts here.
    pub(crate) fn probe_desc(&mut self) -> (&'a str, Span) {
        let start = self.pos;
        while self.pos < self.bytes.len() && is_desc_char(self.bytes[self.pos]) {
            self.pos += 1;
        }
        (&self.text[start..self.pos], self.span(start, self.pos))
    }

    /// Describes the text at the current position for "expected X, found Y" messages.
    pub(crate) fn describe_here(&self) -> String {
        match self.text[self.pos..].chars().next() {
            None => "end of input".to_string(),
            Some(c) => format!("`{c}`"),
        }
    }

    /// The next C-like token.
    pub(crate) fn next_token(&mut self) -> Result<Token, LangError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.peek_byte() else {
            return Ok(Token {
                tok: Tok::Eof,
                span: self.span(start, start),
            });
        };
        let tok = if is_ident_start(c) {
            while self.pos < self.bytes.len() && is_ident_char(self.bytes[self.pos]) {
                self.pos += 1;
            }
            Tok::Ident(self.text[start..self.pos].to_string())
        } else if c.is_ascii_digit() {
            self.number()?
        } else if c == b'"' {
            Tok::Str(self.string()?)
        } else if c == b'\'' {
            self.char_literal()?
        } else if c == b'@' {
            self.pos += 1;
            let name_start = self.pos;
            while self.pos < self.bytes.len() && is_ident_char(self.bytes[self.pos]) {
                self.pos += 1;
            }
            let name = &self.text[name_start..self.pos];
            if name.starts_with(|ch: char| ch.is_ascii_digit()) {
                return Err(syntax(
                    self.span(start, self.pos),
                    format!("invalid aggregation name `@{name}`"),
                ));
            }
            Tok::Agg(name.to_string())
        } else {
            self.punct(start)?
        };
        Ok(Token {
            tok,
            span: self.span(start, self.pos),
        })
    }

    fn punct(&mut self, start: usize) -> Result<Tok, LangError> {
        let rest = &self.bytes[start..];
        let two = |a: u8, b: u8| rest.len() >= 2 && rest[0] == a && rest[1] == b;
        let three = |a: u8, b: u8, c: u8| rest.len() >= 3 && rest[..3] == [a, b, c];
        let (tok, len) = if three(b'<', b'<', b'=') {
            (Tok::OpAssign(Box::new(Tok::Shl)), 3)
        } else if three(b'>', b'>', b'=') {
            (Tok::OpAssign(Box::new(Tok::Shr)), 3)
        } else if two(b'<', b'<') {
            (Tok::Shl, 2)
        } else if two(b'>', b'>') {
            (Tok::Shr, 2)
        } else if two(b'<', b'=') {
            (Tok::Le, 2)
        } else if two(b'>', b'=') {
            (Tok::Ge, 2)
        } else if two(b'=', b'=') {
            (Tok::EqEq, 2)
        } else if two(b'!', b'=') {
            (Tok::Ne, 2)
        } else if two(b'&', b'&') {
            (Tok::AndAnd, 2)
        } else if two(b'|', b'|') {
            (Tok::OrOr, 2)
        } else if two(b'^', b'^') {
            (Tok::XorXor, 2)
        } else if two(b'+', b'+') {
            (Tok::Inc, 2)
        } else if two(b'-', b'-') {
            (Tok::Dec, 2)
        } else if two(b'-', b'>') {
            (Tok::Arrow, 2)
        } else if rest.len() >= 2 && rest[1] == b'=' && b"+-*/%&|^".contains(&rest[0]) {
            let op = match rest[0] {
                b'+' => Tok::Plus,
                b'-' => Tok::Minus,
                b'*' => Tok::Star,
                b'/' => Tok::Slash,
                b'%' => Tok::Percent,
                b'&' => Tok::Amp,
                b'|' => Tok::Pipe,
                _ => Tok::Caret,
            };
            (Tok::OpAssign(Box::new(op)), 2)
        } else {
            let tok = match rest[0] {
                b'(' => Tok::LParen,
                b')' => Tok::RParen,
                b'{' => Tok::LBrace,
                b'}' => Tok::RBrace,
                b'[' => Tok::LBracket,
                b']' => Tok::RBracket,
                b',' => Tok::Comma,
                b';' => Tok::Semi,
                b':' => Tok::Colon,
                b'?' => Tok::Question,
                b'+' => Tok::Plus,
                b'-' => Tok::Minus,
                b'*' => Tok::Star,
                b'/' => self.slash_kind(start + 1)?,
                b'%' => Tok::Percent,
                b'<' => Tok::Lt,
                b'>' => Tok::Gt,
                b'&' => Tok::Amp,
                b'^' => Tok::Caret,
                b'|' => Tok::Pipe,
                b'!' => Tok::Bang,
                b'~' => Tok::Tilde,
                b'=' => Tok::Assign,
                b'.' => Tok::Dot,
                _ => {
                    let ch = self.text[start..].chars().next().unwrap_or('?');
                    return Err(syntax(
                        self.span(start, start + ch.len_utf8()),
                        format!("unexpected character `{}`", ch.escape_default()),
                    ));
                }
            };
            (tok, 1)
        };
        self.pos = start + len;
        Ok(tok)
    }

    /// Division or end of predicate, by what follows the `/` at `after - 1`.
    fn slash_kind(&self, after: usize) -> Result<Tok, LangError> {
        let next = self.trivia_end(after)?;
        Ok(match self.bytes.get(next) {
            None | Some(b'{') | Some(b';') | Some(b'/') => Tok::SlashEnd,
            Some(_) => Tok::Slash,
        })
    }

    fn number(&mut self) -> Result<Tok, LangError> {
        let start = self.pos;
        let (radix, digits_start) =
            if self.text[start..].starts_with("0x") || self.text[start..].starts_with("0X") {
                (16, start + 2)
            } else if self.bytes[start] == b'0' {
                (8, start)
            } else {
                (10, start)
            };
        let mut end = digits_start;
        while end < self.bytes.len() && self.bytes[end].is_ascii_alphanumeric() {
            end += 1;
        }
        // Split off the integer suffix (u, l, ul, ull, lu, llu in any case).
        let word = &self.text[digits_start..end];
        let digits_len = word.trim_end_matches(['u', 'U', 'l', 'L']).len();
        let (digits, suffix) = word.split_at(digits_len);
        let span = self.span(start, end);
        self.pos = end;
        if digits.is_empty() && radix == 16 {
            return Err(syntax(span, "invalid integer literal: `0x` without digits"));
        }
        if suffix.matches(['u', 'U']).count() > 1 || suffix.matches(['l', 'L']).count() > 2 {
            return Err(syntax(span, format!("invalid integer suffix `{suffix}`")));
        }
        let value = if digits.is_empty() {
            Some(0)
        } else {
            u64::from_str_radix(digits, radix).ok()
        };
        match value {
            Some(v) => Ok(Tok::Int(v, suffix.contains(['u', 'U']))),
            None => {
                let bad_digit = digits.chars().any(|c| !c.is_digit(radix));
                Err(syntax(
                    span,
                    if bad_digit {
                        format!("invalid integer literal `{}`", &self.text[start..end])
                    } else {
                        format!(
                            "integer literal `{}` does not fit in 64 bits",
                            &self.text[start..end]
                        )
                    },
                ))
            }
        }
    }

    /// Reads one (possibly escaped) character of a string or character literal whose
    /// opening quote is at `open`, or `None` at the closing `quote`.
    fn literal_char(&mut self, open: usize, quote: u8) -> Result<Option<char>, LangError> {
        let unterminated = |lx: &Self| {
            let what = if quote == b'"' { "string" } else { "character" };
            syntax(
                lx.span(open, open + 1),
                format!("unterminated {what} literal"),
            )
        };
        let Some(c) = self.text[self.pos..].chars().next() else {
            return Err(unterminated(self));
        };
        if c == '\n' {
            return Err(unterminated(self));
        }
        if c as u32 == u32::from(quote) {
            self.pos += 1;
            return Ok(None);
        }
        if c != '\\' {
            self.pos += c.len_utf8();
            return Ok(Some(c));
        }
        let esc_start = self.pos;
        self.pos += 1;
        let Some(e) = self.text[self.pos..].chars().next() else {
            return Err(unterminated(self));
        };
        self.pos += e.len_utf8();
        let value = match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek_byte() {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                char::from_u32(v & 0xff).unwrap_or('\0')
            }
            'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match self.peek_byte().and_then(|d| char::from(d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            self.pos += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    return Err(syntax(
                        self.span(esc_start, self.pos),
                        "invalid escape `\\x` without hex digits",
                    ));
                }
                char::from_u32(v).unwrap_or('\0')
            }
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            '\\' => '\\',
            '"' => '"',
            '\'' => '\'',
            '?' => '?',
            other => {
                return Err(syntax(
                    self.span(esc_start, self.pos),
                    format!("invalid escape `\\{}`", other.escape_default()),
                ))
            }
        };
        Ok(Some(value))
    }

    fn string(&mut self) -> Result<String, LangError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        while let Some(c) = self.literal_char(open, b'"')? {
            out.push(c);
        }
        Ok(out)
    }

    fn char_literal(&mut self) -> Result<Tok, LangError> {
        let open = self.pos;
        self.pos += 1;
        let Some(c) = self.literal_char(open, b'\'')? else {
            return Err(syntax(self.span(open, self.pos), "empty character literal"));
        };
        if self.literal_char(open, b'\'')?.is_some() {
            return Err(syntax(
                self.span(open, self.pos),
                "character literal with more than one character",
            ));
        }
        Ok(Tok::Int(u64::from(u32::from(c)), false))
    }
}

#[cfg(test)]
#[path = "tests/lexer.rs"]
mod tests;
