//! Integer operators with D's semantics: 64-bit, wrapping, signedness chosen by the checker;
//! division by zero is a fault, never a panic. Shared by the evaluator and by the checker's
//! constant folding, so both compute the same results.

use super::fault::Fault;
use crate::lang::ir::BinaryOp;

/// `a op b` on 64-bit values, `signed` choosing signed or unsigned division, remainder,
/// right shift and comparison.
pub fn binary(op: BinaryOp, signed: bool, a: u64, b: u64) -> Result<u64, Fault> {
    let (sa, sb) = (a as i64, b as i64);
    Ok(match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Div | BinaryOp::Mod if b == 0 => return Err(Fault::DivideByZero),
        BinaryOp::Div if signed => sa.wrapping_div(sb) as u64,
        BinaryOp::Div => a / b,
        BinaryOp::Mod if signed => sa.wrapping_rem(sb) as u64,
        BinaryOp::Mod => a % b,
        BinaryOp::Shl => a.wrapping_shl((b & 63) as u32),
        BinaryOp::Shr if signed => sa.wrapping_shr((b & 63) as u32) as u64,
        BinaryOp::Shr => a.wrapping_shr((b & 63) as u32),
        BinaryOp::BitAnd => a & b,
        BinaryOp::BitOr => a | b,
        BinaryOp::BitXor => a ^ b,
        BinaryOp::Eq => u64::from(a == b),
        BinaryOp::Ne => u64::from(a != b),
        BinaryOp::Lt if signed => u64::from(sa < sb),
        BinaryOp::Lt => u64::from(a < b),
        BinaryOp::Le if signed => u64::from(sa <= sb),
        BinaryOp::Le => u64::from(a <= b),
        BinaryOp::Gt if signed => u64::from(sa > sb),
        BinaryOp::Gt => u64::from(a > b),
        BinaryOp::Ge if signed => u64::from(sa >= sb),
        BinaryOp::Ge => u64::from(a >= b),
    })
}

/// `v` converted to an integer type `bytes` wide: truncated, then sign- or zero-extended.
pub fn cast(v: u64, bytes: u8, signed: bool) -> u64 {
    let bits = u32::from(bytes.clamp(1, 8)) * 8;
    if bits == 64 {
        return v;
    }
    let shift = 64 - bits;
    if signed {
        (((v << shift) as i64) >> shift) as u64
    } else {
        (v << shift) >> shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_and_signedness() {
        assert_eq!(binary(BinaryOp::Add, true, u64::MAX, 2), Ok(1));
        assert_eq!(binary(BinaryOp::Mul, true, 1 << 63, 2), Ok(0));
        assert_eq!(
            binary(BinaryOp::Div, true, (-7i64) as u64, 2),
            Ok((-3i64) as u64)
        );
        assert_eq!(
            binary(BinaryOp::Div, false, (-7i64) as u64, 2),
            Ok(u64::MAX / 2 - 3)
        );
        assert_eq!(
            binary(BinaryOp::Mod, true, (-7i64) as u64, 2),
            Ok((-1i64) as u64)
        );
        assert_eq!(
            binary(BinaryOp::Div, true, i64::MIN as u64, (-1i64) as u64),
            Ok(i64::MIN as u64)
        );
        assert_eq!(
            binary(BinaryOp::Mod, true, i64::MIN as u64, (-1i64) as u64),
            Ok(0)
        );
        assert_eq!(binary(BinaryOp::Div, true, 1, 0), Err(Fault::DivideByZero));
        assert_eq!(binary(BinaryOp::Mod, false, 1, 0), Err(Fault::DivideByZero));
        assert_eq!(
            binary(BinaryOp::Shr, true, (-8i64) as u64, 1),
            Ok((-4i64) as u64)
        );
        assert_eq!(
            binary(BinaryOp::Shr, false, (-8i64) as u64, 1),
            Ok(u64::MAX / 2 - 3)
        );
        assert_eq!(binary(BinaryOp::Shl, true, 1, 65), Ok(2));
        assert_eq!(binary(BinaryOp::Lt, true, (-1i64) as u64, 0), Ok(1));
        assert_eq!(binary(BinaryOp::Lt, false, (-1i64) as u64, 0), Ok(0));
        assert_eq!(binary(BinaryOp::Ge, true, 3, 3), Ok(1));
        assert_eq!(binary(BinaryOp::BitXor, true, 6, 3), Ok(5));
    }

    #[test]
    fn casts() {
        assert_eq!(cast(0x1ff, 1, false), 0xff);
        assert_eq!(cast(0x1ff, 1, true), u64::MAX);
        assert_eq!(cast(0x1_8000_0000, 4, true), 0xffff_ffff_8000_0000);
        assert_eq!(cast(0x1_8000_0000, 4, false), 0x8000_0000);
        assert_eq!(cast(0x12345, 2, false), 0x2345);
        assert_eq!(cast(u64::MAX, 8, false), u64::MAX);
    }
}
