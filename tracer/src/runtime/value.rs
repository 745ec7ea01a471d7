//! Runtime values: 64-bit integers (signed or unsigned) and strings.
//!
//! Strings are shared (`Arc<str>`): `probefunc` and the other probe names are the probe's own
//! strings, so a value (or aggregation key) holding one costs no allocation, and two such
//! values compare equal by pointer before comparing bytes.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::lang::Type;

/// A D value as the runtime holds it, in variables, aggregation keys and records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A signed 64-bit integer.
    Int(i64),
    /// An unsigned 64-bit integer.
    Uint(u64),
    /// A string (shared: cloning one does not copy it).
    Str(Arc<str>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<Arc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// The zero value of `ty`: 0, or the empty string (what an unset variable reads as).
    pub fn zero(ty: Type) -> Value {
        Value::from_bits(ty, 0)
    }

    /// The integer of type `ty` with bits `bits` (the empty string for [`Type::Str`]).
    pub fn from_bits(ty: Type, bits: u64) -> Value {
        match ty {
            Type::Int => Value::Int(bits as i64),
            Type::Uint | Type::Ptr(_) => Value::Uint(bits),
            Type::Str => Value::Str(Arc::default()),
        }
    }

    /// The bits of an integer (0 for a string).
    pub fn bits(&self) -> u64 {
        match self {
            Value::Int(v) => *v as u64,
            Value::Uint(v) => *v,
            Value::Str(_) => 0,
        }
    }

    /// The value re-typed as `ty` (integers keep their bits; a kind mismatch, which the
    /// checker rules out, gives the zero of `ty`).
    pub fn coerce(self, ty: Type) -> Value {
        match (self, ty) {
            (Value::Str(s), Type::Str) => Value::Str(s),
            (v, ty) => Value::from_bits(ty, v.bits()),
        }
    }

    /// Whether the value is 0 or the empty string (assigning such a value to an associative
    /// array element deletes the element, as in DTrace).
    pub fn is_zero(&self) -> bool {
        match self {
            Value::Str(s) => s.is_empty(),
            v => v.bits() == 0,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A total order for sorting keys: integers numerically (signed and unsigned compared by
    /// value), strings byte-wise after every integer.
    pub fn compare(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Str(_), _) => Ordering::Greater,
            (_, Value::Str(_)) => Ordering::Less,
            (a, b) => a.as_i128().cmp(&b.as_i128()),
        }
    }

    fn as_i128(&self) -> i128 {
        match self {
            Value::Int(v) => i128::from(*v),
            Value::Uint(v) => i128::from(*v),
            Value::Str(_) => 0,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Uint(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

/// Compares two key tuples element by element.
pub fn compare_keys(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = x.compare(y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_types() {
        assert_eq!(Value::from_bits(Type::Int, u64::MAX), Value::Int(-1));
        assert_eq!(Value::from_bits(Type::Uint, 5), Value::Uint(5));
        assert_eq!(Value::zero(Type::Str), Value::str(""));
        assert_eq!(Value::Int(-1).bits(), u64::MAX);
        assert_eq!(Value::Int(-1).coerce(Type::Uint), Value::Uint(u64::MAX));
        assert_eq!(Value::str("a").coerce(Type::Str), Value::str("a"));
        assert!(Value::str("").is_zero());
        assert!(!Value::Int(3).is_zero());
        assert_eq!(Value::Int(-3).to_string(), "-3");
    }

    #[test]
    fn ordering() {
        assert_eq!(Value::Int(-1).compare(&Value::Uint(0)), Ordering::Less);
        assert_eq!(
            Value::Uint(u64::MAX).compare(&Value::Int(1)),
            Ordering::Greater
        );
        assert_eq!(Value::Int(5).compare(&Value::str("a")), Ordering::Less);
        assert_eq!(
            Value::str("b").compare(&Value::str("ab")),
            Ordering::Greater
        );
        assert_eq!(
            compare_keys(
                &[Value::Int(1), Value::Int(2)],
                &[Value::Int(1), Value::Int(3)]
            ),
            Ordering::Less
        );
    }
}
