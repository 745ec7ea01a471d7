//! Compile errors: what went wrong ([`ErrorKind`]), where ([`Diagnostic`]: source name, line,
//! column) and how it is shown (the source line with a caret under the offending text).
//!
//! A program with any error does not run: [`crate::lang::compile`] returns the first error it
//! finds. The rendered form is the [`Diagnostic`]'s `Display`:
//!
//! ```text
//! error: unknown variable `fo` at 2:29
//!   2 | fbt::foo:entry { @x = sum(fo); }
//!     |                           ^^
//! ```

use super::source::{Source, Span};

/// What kind of error a program has. The `Display` form is the one-line message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The text is not a D program: an unexpected token, an unterminated string or comment,
    /// a bad literal. The message says what was expected and what was found.
    #[error("{0}")]
    Syntax(String),
    /// A name that is neither a built-in variable nor a variable assigned somewhere in the
    /// program.
    #[error("unknown variable `{0}`")]
    UnknownVariable(String),
    /// A call of a function that does not exist.
    #[error("unknown function `{0}()`")]
    UnknownFunction(String),
    /// An aggregation used (by `printa`, `clear`, `trunc`) but never assigned.
    #[error("unknown aggregation `{0}`")]
    UnknownAggregation(String),
    /// A call with the wrong number of arguments.
    #[error("`{name}()` takes {expected}, {found} given")]
    Arity {
        /// The function or action.
        name: String,
        /// What it takes, in words ("1 argument", "2 to 4 arguments").
        expected: String,
        /// How many were given.
        found: usize,
    },
    /// Operands or arguments of the wrong type, or a variable used with two types.
    #[error("{0}")]
    Type(String),
    /// A misuse of an aggregation or an aggregating function.
    #[error("{0}")]
    Aggregation(String),
    /// A `printf`/`printa` format that is malformed or does not match its arguments.
    #[error("{0}")]
    Format(String),
    /// A malformed probe description.
    #[error("{0}")]
    ProbeDescription(String),
    /// Something this D subset does not implement (pointer dereference, casts to structs, ...).
    #[error("{0}")]
    Unsupported(String),
    /// A use of the kernel's types or built-ins (`args[N]`, `curthread`, `execname`, ...)
    /// that the image cannot support: no BTF, no prototype for the probed function, no
    /// current-task symbol.
    #[error("{0}")]
    Kernel(String),
    /// A program past one of the compiler's size limits (nesting depth, width of a field).
    #[error("{0}")]
    Limit(String),
}

/// An error and the span it is about, before it is tied to the source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LangError {
    pub(crate) kind: ErrorKind,
    pub(crate) span: Span,
}

impl LangError {
    pub(crate) fn new(kind: ErrorKind, span: Span) -> Self {
        Self { kind, span }
    }
}

/// Shorthand constructors used throughout the parser and checker.
pub(crate) fn syntax(span: Span, msg: impl Into<String>) -> LangError {
    LangError::new(ErrorKind::Syntax(msg.into()), span)
}

pub(crate) fn type_error(span: Span, msg: impl Into<String>) -> LangError {
    LangError::new(ErrorKind::Type(msg.into()), span)
}

/// A compile error with its position: the value [`crate::lang::compile`] returns on failure.
///
/// `Display` renders the message, the source line and a caret under the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct Diagnostic {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The name of the source the error is in (empty for an unnamed source).
    pub source_name: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// How many characters the caret underlines (at least 1).
    pub width: u32,
    /// The text of the line, for the rendered form.
    pub source_line: String,
}

impl Diagnostic {
    /// Ties `kind` at `span` to the text in `sources` (spans naming a missing source get
    /// line 1, column 1 and an empty line).
    pub fn new(kind: ErrorKind, span: Span, sources: &[Source]) -> Self {
        let Some(source) = sources.get(span.source) else {
            return Self {
                kind,
                source_name: String::new(),
                line: 1,
                column: 1,
                width: 1,
                source_line: String::new(),
            };
        };
        let (line, column) = source.line_col(span.start);
        let (end_line, end_column) = source.line_col(span.end);
        let source_line = source.line_text(line).to_string();
        let line_chars = source_line.chars().count();
        let width = if end_line == line && end_column > column {
            end_column - column
        } else if end_line > line {
            // A span running past the end of its first line: underline the rest of that line.
            (line_chars + 1).saturating_sub(column).max(1)
        } else {
            1
        };
        let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            kind,
            source_name: source.name.clone(),
            line: small(line),
            column: small(column),
            width: small(width),
            source_line,
        }
    }

    pub(crate) fn from_error(err: LangError, sources: &[Source]) -> Self {
        Self::new(err.kind, err.span, sources)
    }

    /// The one-line form: `unknown variable `fo` at trace.d:2:29`.
    pub fn message(&self) -> String {
        if self.source_name.is_empty() {
            format!("{} at {}:{}", self.kind, self.line, self.column)
        } else {
            format!(
                "{} at {}:{}:{}",
                self.kind, self.source_name, self.line, self.column
            )
        }
    }

    /// The full form: `error: MESSAGE`, the source line, and a caret line.
    pub fn render(&self) -> String {
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        let mut pad = String::new();
        let before = usize::try_from(self.column.saturating_sub(1)).unwrap_or(0);
        for c in self.source_line.chars().take(before) {
            pad.push(if c == '\t' { '\t' } else { ' ' });
        }
        format!(
            "error: {}\n  {number} | {}\n  {gutter} | {pad}{}",
            self.message(),
            self.source_line,
            "^".repeat(usize::try_from(self.width.max(1)).unwrap_or(1))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_and_caret() {
        let sources = [Source::new(
            "",
            "BEGIN { x = 1; }\nfbt::foo:entry { @x = sum(fo); }",
        )];
        let start = sources[0].text.find("fo)").unwrap_or(0);
        let d = Diagnostic::new(
            ErrorKind::UnknownVariable("fo".into()),
            Span::new(0, start, start + 2),
            &sources,
        );
        assert_eq!((d.line, d.column, d.width), (2, 27, 2));
        assert_eq!(
            d.to_string(),
            "error: unknown variable `fo` at 2:27\n  2 | fbt::foo:entry { @x = sum(fo); }\n    |                           ^^"
        );
    }

    #[test]
    fn names_the_source_and_keeps_tabs() {
        let sources = [Source::new("a.d", "\tx")];
        let d = Diagnostic::new(
            ErrorKind::Syntax("boom".into()),
            Span::new(0, 1, 2),
            &sources,
        );
        assert_eq!(d.message(), "boom at a.d:1:2");
        assert!(d.render().ends_with("| \t^"), "{}", d.render());
    }

    #[test]
    fn multi_line_span_underlines_rest_of_first_line() {
        let sources = [Source::new("", "abc\ndef")];
        let d = Diagnostic::new(ErrorKind::Syntax("x".into()), Span::new(0, 1, 6), &sources);
        assert_eq!((d.column, d.width), (2, 2));
    }

    #[test]
    fn missing_source_does_not_panic() {
        let d = Diagnostic::new(ErrorKind::Syntax("x".into()), Span::new(7, 1, 6), &[]);
        assert_eq!(d.line, 1);
        assert!(!d.render().is_empty());
    }
}
