//! Program text and positions in it: [`Source`] (one `-n` argument or `-s` file), [`Span`]
//! (a byte range in one source) and the line/column arithmetic that error messages need.

/// One piece of program text: the argument of a `-n` option or the contents of a `-s` file.
///
/// Several sources combine into one program ([`crate::lang::compile`]); each keeps its own
/// name so that an error names the file (or `-n` argument) it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// What error messages call this source: a file name, or something like `-n #1`.
    pub name: String,
    /// The program text.
    pub text: String,
}

impl Source {
    /// A source with the given name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The 1-based line and 1-based column (counted in characters) of byte `offset`.
    ///
    /// Offsets past the end, or inside a multi-byte character, are clamped to the nearest
    /// character boundary at or before them.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset);
        let before = &self.text[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// The text of 1-based line `line`, without its line terminator (empty past the end).
    pub fn line_text(&self, line: usize) -> &str {
        let text = self
            .text
            .split('\n')
            .nth(line.saturating_sub(1))
            .unwrap_or("");
        text.strip_suffix('\r').unwrap_or(text)
    }
}

/// The largest character boundary of `s` at or before `offset`.
pub(crate) fn floor_char_boundary(s: &str, offset: usize) -> usize {
    let mut offset = offset.min(s.len());
    while !s.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// A byte range `start..end` in source number `source` of a program.
///
/// Every probe description, clause, expression and diagnostic carries one, so that the VMM
/// can report later problems (for example "matched no probes") with a caret under the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Index of the source in the list given to [`crate::lang::compile`].
    pub source: usize,
    /// First byte.
    pub start: usize,
    /// One past the last byte (equal to `start` for an empty span, such as end of input).
    pub end: usize,
}

impl Span {
    /// The span `start..end` in source `source`.
    pub fn new(source: usize, start: usize, end: usize) -> Self {
        Self { source, start, end }
    }

    /// The smallest span covering `self` and `other` (which must be in the same source).
    pub fn to(self, other: Span) -> Span {
        Span {
            source: self.source,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let s = Source::new("t", "ab\ncdé f\n\nx");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(7), (2, 4)); // after the two-byte 'é'
        assert_eq!(s.line_col(6), (2, 3)); // inside 'é': clamped back to its start
        assert_eq!(s.line_col(10), (3, 1));
        assert_eq!(s.line_col(11), (4, 1));
        assert_eq!(s.line_col(999), (4, 2));
        assert_eq!(s.line_text(2), "cdé f");
        assert_eq!(s.line_text(3), "");
        assert_eq!(s.line_text(9), "");
    }

    #[test]
    fn crlf_lines_lose_their_carriage_return() {
        let s = Source::new("t", "a\r\nb");
        assert_eq!(s.line_text(1), "a");
        assert_eq!(s.line_col(3), (2, 1));
    }

    #[test]
    fn span_union() {
        let a = Span::new(1, 4, 6);
        let b = Span::new(1, 2, 5);
        assert_eq!(a.to(b), Span::new(1, 2, 6));
    }
}
