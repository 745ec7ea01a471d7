//! The `printf` engine: renders a parsed [`Format`] with values, following C's `printf` for
//! the conversions D has (`%d %i %u %x %X %o %c %s %p %a`, flags `-+ 0#`, width, precision,
//! `h`/`hh`), and `%a` as `symbol+0xoffset` through a symbolizer.

use super::value::Value;
use crate::lang::format::{ConvKind, Conversion, Length, Piece};
use crate::lang::Format;
use crate::lang::Type;

/// The value a `printa` format's `%@` conversions print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggArg {
    /// A scalar aggregation's value.
    Scalar(i64),
    /// A histogram, already rendered.
    Text(String),
}

/// Renders `format`. Plain conversions take `args` in order (a missing argument prints as 0
/// or ""); `%@` conversions print `agg`. `symbolize` resolves `%a` addresses.
pub fn format(
    format: &Format,
    args: &[Value],
    agg: Option<&AggArg>,
    symbolize: &dyn Fn(u64) -> Option<String>,
) -> String {
    let mut out = String::new();
    let mut next = args.iter();
    for piece in &format.pieces {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Conversion(c) if c.aggregate => match agg {
                Some(AggArg::Text(t)) => pad(&mut out, c, "", t),
                Some(AggArg::Scalar(n)) => convert(&mut out, c, &Value::Int(*n), symbolize),
                None => convert(&mut out, c, &Value::Int(0), symbolize),
            },
            Piece::Conversion(c) => {
                let zero = Value::Int(0);
                let empty = Value::zero(Type::Str);
                let v = next
                    .next()
                    .unwrap_or(if c.kind.takes_string() { &empty } else { &zero });
                convert(&mut out, c, v, symbolize);
            }
        }
    }
    out
}

/// Applies an `h`/`hh` length modifier.
fn truncate(bits: u64, length: Length, signed: bool) -> u64 {
    match (length, signed) {
        (Length::Full, _) => bits,
        (Length::Short, true) => i64::from(bits as u16 as i16) as u64,
        (Length::Short, false) => u64::from(bits as u16),
        (Length::Char, true) => i64::from(bits as u8 as i8) as u64,
        (Length::Char, false) => u64::from(bits as u8),
    }
}

fn convert(out: &mut String, c: &Conversion, v: &Value, symbolize: &dyn Fn(u64) -> Option<String>) {
    if let Value::Str(s) = v {
        // The first `precision` characters.
        let end = c
            .precision
            .and_then(|p| s.char_indices().nth(p))
            .map_or(s.len(), |(i, _)| i);
        return pad(out, c, "", &s[..end]);
    }
    let bits = v.bits();
    match c.kind {
        ConvKind::Str => pad(out, c, "", &v.to_string()),
        ConvKind::Char => {
            let ch = char::from(bits as u8);
            pad(out, c, "", &ch.to_string());
        }
        ConvKind::Symbol => {
            let text = symbolize(bits).unwrap_or_else(|| format!("{bits:#x}"));
            pad(out, c, "", &text);
        }
        ConvKind::Pointer => number(out, c, "", "0x", format!("{bits:x}")),
        ConvKind::Signed => {
            let n = truncate(bits, c.length, true) as i64;
            let sign = if n < 0 {
                "-"
            } else if c.flags.plus {
                "+"
            } else if c.flags.space {
                " "
            } else {
                ""
            };
            number(out, c, sign, "", n.unsigned_abs().to_string());
        }
        ConvKind::Unsigned => {
            let n = truncate(bits, c.length, false);
            number(out, c, "", "", n.to_string());
        }
        ConvKind::Hex | ConvKind::HexUpper => {
            let n = truncate(bits, c.length, false);
            let upper = c.kind == ConvKind::HexUpper;
            let digits = if upper {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            let prefix = match (c.flags.alt && n != 0, upper) {
                (false, _) => "",
                (true, false) => "0x",
                (true, true) => "0X",
            };
            number(out, c, "", prefix, digits);
        }
        ConvKind::Octal => {
            let n = truncate(bits, c.length, false);
            let mut digits = format!("{n:o}");
            if c.flags.alt && !digits.starts_with('0') {
                digits.insert(0, '0');
            }
            number(out, c, "", "", digits);
        }
    }
}

/// An integer: sign, prefix and digits, with precision (minimum digits) and zero padding.
fn number(out: &mut String, c: &Conversion, sign: &str, prefix: &str, digits: String) {
    let digits = match c.precision {
        // C: a zero value with precision 0 prints no digits.
        Some(0) if digits == "0" => String::new(),
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    };
    let lead = format!("{sign}{prefix}");
    let width = c.width.unwrap_or(0);
    let len = lead.len() + digits.len();
    if c.flags.zero && !c.flags.left && c.precision.is_none() && width > len {
        out.push_str(&lead);
        out.push_str(&"0".repeat(width - len));
        out.push_str(&digits);
        return;
    }
    pad(out, c, &lead, &digits);
}

/// `lead` and `body` padded with spaces to the conversion's width (left or right).
fn pad(out: &mut String, c: &Conversion, lead: &str, body: &str) {
    let len = lead.chars().count() + body.chars().count();
    let fill = c.width.unwrap_or(0).saturating_sub(len);
    if !c.flags.left {
        out.extend(std::iter::repeat_n(' ', fill));
    }
    out.push_str(lead);
    out.push_str(body);
    if c.flags.left {
        out.extend(std::iter::repeat_n(' ', fill));
    }
}

#[cfg(test)]
#[path = "tests/printf.rs"]
mod tests;
