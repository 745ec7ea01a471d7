//! Expression evaluation at a probe firing.

use std::sync::{Mutex, MutexGuard};

use super::context::{ProbeContext, ProbeInfo};
use super::fault::Fault;
use super::ops;
use super::state::{GlobalStore, Limits};
use super::value::Value;
use crate::lang::ir::{Builtin, Expr, ExprKind, LogicalOp, Program, Type, UnaryOp};

/// Locks the globals (or other runtime-wide state); a poisoned lock (a panic elsewhere)
/// still yields the data.
pub(crate) fn lock<T>(globals: &Mutex<T>) -> MutexGuard<'_, T> {
    globals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything an expression can read during one firing.
pub(crate) struct Env<'a> {
    pub(crate) program: &'a Program,
    pub(crate) ctx: &'a dyn ProbeContext,
    pub(crate) probe: &'a ProbeInfo,
    pub(crate) globals: &'a Mutex<GlobalStore>,
    pub(crate) self_vars: &'a mut Vec<Value>,
    pub(crate) this: &'a mut Vec<Value>,
    pub(crate) limits: &'a Limits,
    pub(crate) timestamp: u64,
}

/// Reads the NUL-terminated string at `addr`, at most `max` bytes, page by page (a string
/// ending before an unmapped page reads fine).
pub(crate) fn read_string(ctx: &dyn ProbeContext, addr: u64, max: usize) -> Result<String, Fault> {
    let mut bytes = Vec::new();
    let mut at = addr;
    while bytes.len() < max {
        let to_page_end = 4096 - (at % 4096) as usize;
        let n = to_page_end.min(max - bytes.len());
        let mut chunk = vec![0u8; n];
        ctx.read_memory(at, &mut chunk)
            .map_err(|e| Fault::BadAddress(e.address))?;
        if let Some(nul) = chunk.iter().position(|&b| b == 0) {
            bytes.extend_from_slice(&chunk[..nul]);
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(&chunk);
        at = at.wrapping_add(n as u64);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The per-CPU base of the vCPU: its kernel-mode GS base (the VMM gives
/// `MSR_KERNEL_GS_BASE` where GS held a user base), which must be a kernel (upper-half)
/// address; anything else (no vCPU, early boot before the per-CPU set-up) is a fault.
pub(crate) fn percpu_base(ctx: &dyn ProbeContext) -> Result<u64, Fault> {
    match ctx.gs_base() {
        Some(gs) if gs >> 63 == 1 => Ok(gs),
        other => Err(Fault::NoPerCpuBase(other)),
    }
}

/// Reads a little-endian integer of `bytes` bytes at `addr` (sign-extended if `signed`), or
/// the bitfield `(shift, width)` within those bytes.
pub(crate) fn load(
    ctx: &dyn ProbeContext,
    addr: u64,
    bytes: u8,
    signed: bool,
    bits: Option<(u8, u8)>,
) -> Result<u64, Fault> {
    let mut buf = [0u8; 8];
    let n = usize::from(bytes.clamp(1, 8));
    ctx.read_memory(addr, &mut buf[..n])
        .map_err(|e| Fault::BadAddress(e.address))?;
    let raw = u64::from_le_bytes(buf);
    let (value, width) = match bits {
        Some((shift, width)) => (raw >> shift, u32::from(width).clamp(1, 64)),
        None => (raw, n as u32 * 8),
    };
    if width == 64 {
        return Ok(value);
    }
    let value = value & ((1u64 << width) - 1);
    Ok(if signed && value >> (width - 1) == 1 {
        value | !((1u64 << width) - 1)
    } else {
        value
    })
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate_str(mut s: String, max: usize) -> String {
    if s.len() > max {
        let cut = crate::lang::source::floor_char_boundary(&s, max);
        s.truncate(cut);
    }
    s
}

impl Env<'_> {
    /// Evaluates `e`.
    pub(crate) fn eval(&self, e: &Expr) -> Result<Value, Fault> {
        Ok(match &e.kind {
            ExprKind::Int(v) => Value::from_bits(e.ty, *v),
            ExprKind::Str(s) => Value::str(s.as_str()),
            // `args[N]` reuses `argN` with its own (unsigned or pointer) type.
            ExprKind::Builtin(b) => self.builtin(*b)?.coerce(e.ty),
            ExprKind::Reg(idx) => {
                let n = self.eval(idx)?.bits();
                let reg = usize::try_from(n).ok().and_then(|i| self.ctx.reg(i));
                Value::Uint(reg.ok_or(Fault::BadRegister(n))?)
            }
            ExprKind::Global(i) => lock(self.globals)
                .scalars
                .get(*i)
                .cloned()
                .unwrap_or(Value::zero(e.ty)),
            ExprKind::SelfVar(i) => self.self_vars.get(*i).cloned().unwrap_or(Value::zero(e.ty)),
            ExprKind::This(i) => self.this.get(*i).cloned().unwrap_or(Value::zero(e.ty)),
            ExprKind::ArrayGet { array, keys } => {
                let keys = self.keys(
                    keys,
                    self.program.arrays.get(*array).map(|a| &a.key_types[..]),
                )?;
                lock(self.globals)
                    .arrays
                    .get(*array)
                    .and_then(|t| t.get(&keys))
                    .cloned()
                    .unwrap_or(Value::zero(e.ty))
            }
            ExprKind::Unary { op, operand } => {
                let v = self.eval(operand)?.bits();
                let r = match op {
                    UnaryOp::Neg => v.wrapping_neg(),
                    UnaryOp::BitNot => !v,
                    UnaryOp::Not => u64::from(v == 0),
                };
                Value::from_bits(e.ty, r)
            }
            ExprKind::Binary {
                op,
                signed,
                lhs,
                rhs,
            } => {
                let a = self.eval(lhs)?.bits();
                let b = self.eval(rhs)?.bits();
                Value::from_bits(e.ty, ops::binary(*op, *signed, a, b)?)
            }
            ExprKind::StrCmp { op, lhs, rhs } => {
                let a = self.eval(lhs)?;
                let b = self.eval(rhs)?;
                let ord = a.compare(&b);
                let r = match op {
                    crate::lang::ir::BinaryOp::Eq => ord.is_eq(),
                    crate::lang::ir::BinaryOp::Ne => ord.is_ne(),
                    crate::lang::ir::BinaryOp::Lt => ord.is_lt(),
                    crate::lang::ir::BinaryOp::Le => ord.is_le(),
                    crate::lang::ir::BinaryOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                };
                Value::Int(i64::from(r))
            }
            ExprKind::Logical { op, lhs, rhs } => {
                let a = self.eval(lhs)?.bits() != 0;
                let r = match op {
                    LogicalOp::And => a && self.eval(rhs)?.bits() != 0,
                    LogicalOp::Or => a || self.eval(rhs)?.bits() != 0,
                    LogicalOp::Xor => a != (self.eval(rhs)?.bits() != 0),
                };
                Value::Int(i64::from(r))
            }
            ExprKind::Cond {
                cond,
                then,
                otherwise,
            } => {
                let branch = if self.eval(cond)?.bits() != 0 {
                    then
                } else {
                    otherwise
                };
                self.eval(branch)?.coerce(e.ty)
            }
            ExprKind::Cast {
                bytes,
                signed,
                operand,
            } => Value::from_bits(e.ty, ops::cast(self.eval(operand)?.bits(), *bytes, *signed)),
            ExprKind::Strlen(s) => {
                let v = self.eval(s)?;
                Value::Uint(v.as_str().map_or(0, str::len) as u64)
            }
            ExprKind::ReadString(addr) => {
                let a = self.eval(addr)?.bits();
                Value::str(read_string(self.ctx, a, self.limits.strsize)?)
            }
            ExprKind::ReadChars { addr, len } => {
                let a = self.eval(addr)?.bits();
                let max = self.limits.strsize.min(*len as usize);
                Value::str(read_string(self.ctx, a, max)?)
            }
            ExprKind::Load {
                addr,
                bytes,
                signed,
                bits,
            } => {
                let a = self.eval(addr)?.bits();
                Value::from_bits(e.ty, load(self.ctx, a, *bytes, *signed, *bits)?)
            }
            ExprKind::Strjoin(a, b) => {
                let mut s = self.eval(a)?.to_string();
                s.push_str(&self.eval(b)?.to_string());
                Value::str(truncate_str(s, self.limits.strsize))
            }
            ExprKind::Lltostr(x) => {
                let v = self.eval(x)?;
                Value::str(v.to_string())
            }
            ExprKind::Func(addr) => {
                let a = self.eval(addr)?.bits();
                Value::str(match self.ctx.symbolize(a) {
                    Some(sym) => match sym.split_once('+') {
                        Some((name, _)) => name.to_string(),
                        None => sym,
                    },
                    None => format!("{a:#x}"),
                })
            }
        })
    }

    /// Evaluates key expressions and gives them the declared key types (so that `a[1]` and
    /// `a[1u]` name the same entry).
    pub(crate) fn keys(&self, keys: &[Expr], types: Option<&[Type]>) -> Result<Vec<Value>, Fault> {
        let mut out = Vec::with_capacity(keys.len());
        self.keys_into(keys, types, &mut out)?;
        Ok(out)
    }

    /// [`Env::keys`] into `out` (cleared first), reusing its allocation.
    pub(crate) fn keys_into(
        &self,
        keys: &[Expr],
        types: Option<&[Type]>,
        out: &mut Vec<Value>,
    ) -> Result<(), Fault> {
        out.clear();
        out.reserve(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let v = self.eval(k)?;
            out.push(match types.and_then(|t| t.get(i)) {
                Some(ty) => v.coerce(*ty),
                None => v,
            });
        }
        Ok(())
    }

    fn builtin(&self, b: Builtin) -> Result<Value, Fault> {
        Ok(match b {
            Builtin::Cpu => Value::Int(i64::from(self.ctx.cpu())),
            Builtin::Id => Value::Uint(u64::from(self.probe.id)),
            Builtin::Timestamp => Value::Uint(self.timestamp),
            Builtin::Walltimestamp => Value::Uint(self.ctx.walltimestamp_ns()),
            Builtin::Probeprov => Value::Str(self.probe.provider.clone()),
            Builtin::Probemod => Value::Str(self.probe.module.clone()),
            Builtin::Probefunc => Value::Str(self.probe.function.clone()),
            Builtin::Probename => Value::Str(self.probe.name.clone()),
            Builtin::Arg(n) => Value::Int(self.ctx.arg(usize::from(n)) as i64),
            Builtin::Caller => Value::Uint(self.ctx.caller()),
            Builtin::PerCpuBase => Value::Uint(percpu_base(self.ctx)?),
        })
    }
}
