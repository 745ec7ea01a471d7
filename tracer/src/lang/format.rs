//! `printf` and `printa` format strings, parsed once at compile time into literal pieces and
//! conversions; the runtime's `printf` engine ([`crate::runtime::printf`]) renders them.
//!
//! A conversion is `%[flags][width][.precision][length]conversion`: flags `-`, `+`, space,
//! `0`, `#` (and `@`, which in `printa` marks the conversion that takes the aggregation's
//! value), a width and precision up to [`MAX_WIDTH`], length modifiers `hh`, `h`, `l`, `ll`,
//! `L`, `j`, `z`, `t` (`hh`/`h` truncate to 8/16 bits, the others are 64-bit like every D
//! integer), and conversions `d i u x X o c s p a`; `%%` is a percent sign.

use std::fmt;

/// The widest field (and highest precision) a format may ask for.
pub const MAX_WIDTH: usize = 1024;

/// A parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The format as written (after escape processing).
    pub text: String,
    /// Its pieces in order.
    pub pieces: Vec<Piece>,
}

/// A piece of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text printed as is.
    Literal(String),
    /// A conversion that formats one value.
    Conversion(Conversion),
}

/// One `%` conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// Flags.
    pub flags: Flags,
    /// Minimum field width.
    pub width: Option<usize>,
    /// Precision: minimum digits for integers, maximum characters for strings.
    pub precision: Option<usize>,
    /// Length modifier.
    pub length: Length,
    /// The conversion character.
    pub kind: ConvKind,
    /// `%@...`: takes the aggregation's value in `printa`.
    pub aggregate: bool,
    /// The conversion as written, for messages (`%-8d`).
    pub spec: String,
}

/// Conversion flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// `-`: left-justify.
    pub left: bool,
    /// `+`: always print a sign for signed conversions.
    pub plus: bool,
    /// ` `: a space where a `+` would go.
    pub space: bool,
    /// `0`: pad numbers with zeros.
    pub zero: bool,
    /// `#`: alternate form (`0x` for hex, a leading `0` for octal).
    pub alt: bool,
}

/// Length modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Length {
    /// None, or one of `l`, `ll`, `L`, `j`, `z`, `t`: 64 bits.
    #[default]
    Full,
    /// `h`: 16 bits.
    Short,
    /// `hh`: 8 bits.
    Char,
}

/// Conversion characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// `%d`, `%i`.
    Signed,
    /// `%u`.
    Unsigned,
    /// `%x`.
    Hex,
    /// `%X`.
    HexUpper,
    /// `%o`.
    Octal,
    /// `%c`: the low byte as a character.
    Char,
    /// `%s`: a string.
    Str,
    /// `%p`: a pointer, `0x` and hex digits.
    Pointer,
    /// `%a`: an address as `symbol+0xoffset`.
    Symbol,
}

impl ConvKind {
    /// Whether the conversion takes a string (all others take integers).
    pub fn takes_string(self) -> bool {
        self == ConvKind::Str
    }
}

impl Format {
    /// Parses a format string; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Format, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            if c != '%' {
                literal.push(c);
                continue;
            }
            if chars.get(i) == Some(&'%') {
                literal.push('%');
                i += 1;
                continue;
            }
            let conv = parse_conversion(&chars, &mut i)
                .map_err(|e| format!("{e} in format \"{}\"", text.escape_default()))?;
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Conversion(conv));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Format {
            text: text.to_string(),
            pieces,
        })
    }

    /// The conversions, in order.
    pub fn conversions(&self) -> impl Iterator<Item = &Conversion> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Conversion(c) => Some(c),
            Piece::Literal(_) => None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.text.escape_default())
    }
}

fn parse_number(chars: &[char], i: &mut usize, what: &str) -> Result<Option<usize>, String> {
    let start = *i;
    let mut n: usize = 0;
    while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
        n = n.saturating_mul(10).saturating_add(d as usize);
        *i += 1;
    }
    if *i == start {
        return Ok(None);
    }
    if n > MAX_WIDTH {
        return Err(format!("{what} {n} is larger than {MAX_WIDTH}"));
    }
    Ok(Some(n))
}

fn parse_conversion(chars: &[char], i: &mut usize) -> Result<Conversion, String> {
    let start = *i - 1;
    let mut flags = Flags::default();
    let mut aggregate = false;
    while let Some(&c) = chars.get(*i) {
        match c {
            '-' => flags.left = true,
            '+' => flags.plus = true,
            ' ' => flags.space = true,
            '0' => flags.zero = true,
            '#' => flags.alt = true,
            '@' => aggregate = true,
            _ => break,
        }
        *i += 1;
    }
    if chars.get(*i) == Some(&'*') {
        return Err("`*` widths are not supported".into());
    }
    let width = parse_number(chars, i, "width")?;
    let precision = if chars.get(*i) == Some(&'.') {
        *i += 1;
        if chars.get(*i) == Some(&'*') {
            return Err("`*` precisions are not supported".into());
        }
        Some(parse_number(chars, i, "precision")?.unwrap_or(0))
    } else {
        None
    };
    let mut length = Length::Full;
    loop {
        match chars.get(*i) {
            Some('h') => {
                length = if length == Length::Short {
                    Length::Char
                } else {
                    Length::Short
                }
            }
            Some('l' | 'L' | 'j' | 'z' | 't') => length = Length::Full,
            _ => break,
        }
        *i += 1;
    }
    let Some(&c) = chars.get(*i) else {
        let spec: String = chars[start..].iter().collect();
        return Err(format!("incomplete conversion `{spec}` at the end"));
    };
    *i += 1;
    let spec: String = chars[start..*i].iter().collect();
    let kind = match c {
        'd' | 'i' => ConvKind::Signed,
        'u' => ConvKind::Unsigned,
        'x' => ConvKind::Hex,
        'X' => ConvKind::HexUpper,
        'o' => ConvKind::Octal,
        'c' => ConvKind::Char,
        's' => ConvKind::Str,
        'p' => ConvKind::Pointer,
        'a' => ConvKind::Symbol,
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            return Err(format!(
                "floating-point conversion `{spec}` is not supported (D has no floating point)"
            ))
        }
        _ => return Err(format!("invalid conversion `{spec}`")),
    };
    Ok(Conversion {
        flags,
        width,
        precision,
        length,
        kind,
        aggregate,
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convs(text: &str) -> Vec<Conversion> {
        Format::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .conversions()
            .cloned()
            .collect()
    }

    #[test]
    fn literal_and_conversions() {
        let f = Format::parse("a %d b %% %s\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.pieces.len(), 5);
        assert_eq!(f.pieces[0], Piece::Literal("a ".into()));
        assert_eq!(f.pieces[2], Piece::Literal(" b % ".into()));
        assert_eq!(f.pieces[4], Piece::Literal("\n".into()));
    }

    #[test]
    fn flags_width_precision_length() {
        let c = &convs("%-+ 0#12.5llx")[0];
        assert!(c.flags.left && c.flags.plus && c.flags.space && c.flags.zero && c.flags.alt);
        assert_eq!((c.width, c.precision), (Some(12), Some(5)));
        assert_eq!((c.length, c.kind), (Length::Full, ConvKind::Hex));
        assert_eq!(c.spec, "%-+ 0#12.5llx");
        let c = &convs("%hhu %hd %.s %@d %@-8u")[..];
        assert_eq!(c[0].length, Length::Char);
        assert_eq!(c[1].length, Length::Short);
        assert_eq!(c[2].precision, Some(0));
        assert!(c[3].aggregate && c[4].aggregate && c[4].flags.left);
        for (s, k) in [
            ("%i", ConvKind::Signed),
            ("%X", ConvKind::HexUpper),
            ("%o", ConvKind::Octal),
            ("%c", ConvKind::Char),
            ("%p", ConvKind::Pointer),
            ("%a", ConvKind::Symbol),
        ] {
            assert_eq!(convs(s)[0].kind, k);
        }
    }

    #[test]
    fn errors() {
        let e = |t: &str| Format::parse(t).unwrap_err();
        assert!(e("%q").contains("invalid conversion `%q`"));
        assert!(e("abc %").contains("incomplete conversion"));
        assert!(e("%5").contains("incomplete conversion `%5`"));
        assert!(e("%f").contains("floating-point"));
        assert!(e("%*d").contains("`*` widths"));
        assert!(e("%.*d").contains("`*` precisions"));
        assert!(e("%99999d").contains("larger than 1024"));
        assert!(e("%.2000s").contains("precision 2000"));
    }
}
