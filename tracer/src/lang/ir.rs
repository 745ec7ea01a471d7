//! The compiled program: the compact, typed form the runtime evaluates.
//!
//! Names are resolved to indices (globals, associative arrays, `self->` and `this->`
//! variables, aggregations), every expression carries its type, operators carry their
//! signedness, formats are parsed and constant arguments folded. Nothing in here can fail to
//! evaluate for a reason the checker could have seen.

use super::diag::{Diagnostic, ErrorKind};
use super::format::Format;
use super::probedesc::ProbeDesc;
use super::source::{Source, Span};

/// The type of a D value: D's integers are 64 bits wide, signed or unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// A signed 64-bit integer (`int64_t`).
    Int,
    /// An unsigned 64-bit integer (`uint64_t`).
    Uint,
    /// A string.
    Str,
    /// A pointer into guest memory to the kernel's BTF type with this ID (an unsigned
    /// 64-bit integer that `->` can follow).
    Ptr(u32),
}

impl Type {
    /// Whether this is one of the integer types (pointers included).
    pub fn is_int(self) -> bool {
        self != Type::Str
    }

    /// How messages name the type ("an integer", "a string", "a pointer").
    pub fn describe(self) -> &'static str {
        match self {
            Type::Int | Type::Uint => "an integer",
            Type::Str => "a string",
            Type::Ptr(_) => "a pointer",
        }
    }

    /// The type of `a op b` for arithmetic: unsigned if either is (C's usual conversions for
    /// two 64-bit operands; a pointer counts as unsigned and the result is a plain integer).
    pub fn arith(a: Type, b: Type) -> Type {
        let unsigned = |t| matches!(t, Type::Uint | Type::Ptr(_));
        if unsigned(a) || unsigned(b) {
            Type::Uint
        } else {
            Type::Int
        }
    }
}

/// A whole compiled program.
#[derive(Debug, Clone)]
pub struct Program {
    /// The clauses, in program order (several sources concatenated in the order given).
    pub clauses: Vec<Clause>,
    /// Aggregations, indexed by the `agg` fields of actions and records.
    pub aggregations: Vec<AggDecl>,
    /// Global scalar variables.
    pub globals: Vec<VarDecl>,
    /// Global associative arrays.
    pub arrays: Vec<ArrayDecl>,
    /// `self->` (per-vCPU) variables.
    pub self_vars: Vec<VarDecl>,
    /// `this->` (per-firing) variables.
    pub this_vars: Vec<VarDecl>,
    /// What `self->` variables are keyed by besides the vCPU: `None` keeps one set per vCPU
    /// (the built-in guests); for a Linux kernel, the current task (`curthread`), so a
    /// task's `self->` variables follow it from vCPU to vCPU.
    pub self_key: Option<Expr>,
    /// `#pragma D option` settings, in order.
    pub options: Vec<ProgramOption>,
    /// The program text, for diagnostics about spans found later.
    pub sources: Vec<Source>,
}

impl Program {
    /// Indices of the clauses with a probe description matching the probe
    /// `provider:module:function:name`, in program order: the clauses to evaluate, in this
    /// order, each time that probe fires.
    pub fn clauses_matching(
        &self,
        provider: &str,
        module: &str,
        function: &str,
        name: &str,
    ) -> Vec<usize> {
        self.clauses
            .iter()
            .enumerate()
            .filter(|(_, c)| c.matches(provider, module, function, name))
            .map(|(i, _)| i)
            .collect()
    }

    /// A diagnostic about `span` (for errors found after compilation, such as a probe
    /// description that matches no probe), rendered against this program's text.
    pub fn diagnostic(&self, kind: ErrorKind, span: Span) -> Diagnostic {
        Diagnostic::new(kind, span, &self.sources)
    }

    /// The value of option `name` if a `#pragma D option` set it: `Some(None)` for a flag
    /// (`quiet`), `Some(Some(v))` for `name=v`. The last setting wins.
    pub fn option(&self, name: &str) -> Option<Option<&str>> {
        self.options
            .iter()
            .rev()
            .find(|o| o.name == name)
            .map(|o| o.value.as_deref())
    }
}

/// A `#pragma D option name[=value]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOption {
    /// Option name (`quiet`, `bufsize`, ...).
    pub name: String,
    /// Its value, if given.
    pub value: Option<String>,
    /// Where the line is.
    pub span: Span,
}

/// A scalar variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDecl {
    /// Its name (without `self->`/`this->`).
    pub name: String,
    /// Its type.
    pub ty: Type,
}

/// A global associative array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayDecl {
    /// Its name.
    pub name: String,
    /// Types of its keys.
    pub key_types: Vec<Type>,
    /// Type of its values.
    pub value_type: Type,
}

/// An aggregation: `@name[keys] = func(...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggDecl {
    /// Its name without the `@` (empty for the anonymous `@`).
    pub name: String,
    /// Its aggregating function.
    pub func: AggFunc,
    /// Types of its keys (empty for an unkeyed aggregation).
    pub key_types: Vec<Type>,
}

impl AggDecl {
    /// `@name`, or `@` for the anonymous aggregation.
    pub fn display_name(&self) -> String {
        format!("@{}", self.name)
    }
}

/// Aggregating functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// `count()`.
    Count,
    /// `sum(x)`.
    Sum,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `avg(x)`.
    Avg,
    /// `quantize(x)`: power-of-two buckets.
    Quantize,
    /// `lquantize(x, lo, hi, step)`: linear buckets.
    Lquantize {
        /// Lower bound.
        lo: i64,
        /// Upper bound.
        hi: i64,
        /// Bucket width.
        step: i64,
    },
}

impl AggFunc {
    /// The function's name (`count`, `lquantize`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
            AggFunc::Quantize => "quantize",
            AggFunc::Lquantize { .. } => "lquantize",
        }
    }
}

/// A clause: where it fires, when, and what it does.
#[derive(Debug, Clone)]
pub struct Clause {
    /// Its probe descriptions (the clause fires for a probe matching any of them).
    pub descs: Vec<ProbeDesc>,
    /// Its predicate, if any: the clause runs only if it is non-zero.
    pub predicate: Option<Expr>,
    /// Its actions in order.
    pub actions: Vec<Action>,
    /// True for a clause without statements: DTrace's default action, which records only
    /// that the probe fired.
    pub default_action: bool,
    /// The clause's probe descriptions in the source.
    pub span: Span,
    /// Whether it reads or writes `self->` variables (only such clauses look up the current
    /// task when they are keyed by task).
    pub uses_self: bool,
}

impl Clause {
    /// Whether any of the clause's descriptions matches the probe.
    pub fn matches(&self, provider: &str, module: &str, function: &str, name: &str) -> bool {
        self.descs
            .iter()
            .any(|d| d.matches(provider, module, function, name))
    }
}

/// A typed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    /// What it computes.
    pub kind: ExprKind,
    /// Its type.
    pub ty: Type,
}

/// Built-in variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `cpu`: the vCPU number.
    Cpu,
    /// `id`: the probe's ID.
    Id,
    /// `timestamp`: nanoseconds since the VM booted.
    Timestamp,
    /// `walltimestamp`: nanoseconds since the Unix epoch.
    Walltimestamp,
    /// `probeprov`.
    Probeprov,
    /// `probemod`.
    Probemod,
    /// `probefunc`.
    Probefunc,
    /// `probename`.
    Probename,
    /// `arg0` .. `arg5`.
    Arg(u8),
    /// `caller`: the return address of the probed function.
    Caller,
    /// The vCPU's per-CPU base (its GS base in kernel mode): what `curthread` is read
    /// through on Linux.
    PerCpuBase,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-x` (wrapping).
    Neg,
    /// `~x`.
    BitNot,
    /// `!x`: 1 if x is zero, else 0.
    Not,
}

/// Binary integer operators (comparisons yield 0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+` (wrapping).
    Add,
    /// `-` (wrapping).
    Sub,
    /// `*` (wrapping).
    Mul,
    /// `/` (a zero divisor is a runtime error).
    Div,
    /// `%` (a zero divisor is a runtime error).
    Mod,
    /// `<<` (count taken modulo 64).
    Shl,
    /// `>>` (arithmetic for signed operands; count taken modulo 64).
    Shr,
    /// `&`.
    BitAnd,
    /// `|`.
    BitOr,
    /// `^`.
    BitXor,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// Logical operators (short-circuiting `&&` and `||`; `^^` evaluates both sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicalOp {
    /// `&&`.
    And,
    /// `||`.
    Or,
    /// `^^`.
    Xor,
}

/// Expression forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    /// An integer constant (its bits; the type says how to read them).
    Int(u64),
    /// A string constant.
    Str(String),
    /// A built-in variable.
    Builtin(Builtin),
    /// `regs[index]`.
    Reg(Box<Expr>),
    /// A global scalar, by index into [`Program::globals`].
    Global(usize),
    /// A `self->` variable, by index into [`Program::self_vars`].
    SelfVar(usize),
    /// A `this->` variable, by index into [`Program::this_vars`].
    This(usize),
    /// `array[keys]`, by index into [`Program::arrays`]; a missing entry reads as 0 or "".
    ArrayGet {
        /// The array.
        array: usize,
        /// Key expressions.
        keys: Vec<Expr>,
    },
    /// A unary operation on an integer.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// A binary operation on integers.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Whether operands are compared/divided/shifted as signed values.
        signed: bool,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// A comparison of two strings (byte-wise, as `strcmp`).
    StrCmp {
        /// The comparison (`Eq`, `Ne`, `Lt`, `Le`, `Gt` or `Ge`).
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `&&`, `||`, `^^`.
    Logical {
        /// The operator.
        op: LogicalOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `cond ? then : otherwise`.
    Cond {
        /// The condition.
        cond: Box<Expr>,
        /// Value if non-zero.
        then: Box<Expr>,
        /// Value if zero.
        otherwise: Box<Expr>,
    },
    /// A cast to an integer type of `bytes` bytes (1, 2, 4 or 8).
    Cast {
        /// Width of the target type.
        bytes: u8,
        /// Whether the target type is signed (sign-extends after truncation).
        signed: bool,
        /// The operand.
        operand: Box<Expr>,
    },
    /// `strlen(s)`.
    Strlen(Box<Expr>),
    /// `stringof(addr)` / `copyinstr(addr)`: the NUL-terminated string at a guest virtual
    /// address.
    ReadString(Box<Expr>),
    /// A `char` array in guest memory as a string: at most `len` bytes (and `strsize`), up to
    /// the first NUL.
    ReadChars {
        /// Its address.
        addr: Box<Expr>,
        /// The array's length.
        len: u32,
    },
    /// An integer of `bytes` bytes (1, 2, 4 or 8, little-endian) read from guest memory, or a
    /// bitfield within them.
    Load {
        /// Its address.
        addr: Box<Expr>,
        /// How many bytes to read.
        bytes: u8,
        /// Whether it sign-extends.
        signed: bool,
        /// A bitfield: (its first bit within the bytes read, its width in bits).
        bits: Option<(u8, u8)>,
    },
    /// `strjoin(a, b)`.
    Strjoin(Box<Expr>, Box<Expr>),
    /// `lltostr(x)`: an integer in decimal.
    Lltostr(Box<Expr>),
    /// `func(addr)` / `sym(addr)`: the name of the guest function containing a code address
    /// (the address in hex when no symbol covers it), as in DTrace.
    Func(Box<Expr>),
}

/// Something a statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `printf(format, args...)`.
    Printf {
        /// The format.
        format: Format,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `trace(value)`.
    Trace(Expr),
    /// `printa(@agg)` or `printa(format, @agg)`.
    Printa {
        /// The format, if given.
        format: Option<Format>,
        /// The aggregation.
        agg: usize,
    },
    /// `stack()` / `stack(frames)`.
    Stack {
        /// The most frames to record.
        frames: usize,
    },
    /// `exit(status)`.
    Exit(Expr),
    /// `clear(@agg)`: zero its values, keep its keys.
    Clear(usize),
    /// `trunc(@agg)` (remove every entry) or `trunc(@agg, n)` (keep the n largest; the |n|
    /// smallest for negative n).
    Trunc {
        /// The aggregation.
        agg: usize,
        /// How many to keep.
        keep: Option<Expr>,
    },
    /// An assignment (`=`, or `op=`, `++` and `--` with `op`).
    Store {
        /// Where to.
        place: Place,
        /// For compound assignments, the operator applied to the old value and `value`.
        op: Option<(BinaryOp, bool)>,
        /// The value (the right-hand side).
        value: Expr,
    },
    /// `@agg[keys] = func(value)`.
    Aggregate {
        /// The aggregation.
        agg: usize,
        /// Key expressions.
        keys: Vec<Expr>,
        /// The aggregated value (`None` for `count()`).
        value: Option<Expr>,
    },
}

/// A place an assignment stores to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A global scalar.
    Global(usize),
    /// A `self->` variable.
    SelfVar(usize),
    /// A `this->` variable.
    This(usize),
    /// An associative array element.
    Array {
        /// The array.
        array: usize,
        /// Key expressions.
        keys: Vec<Expr>,
    },
}

impl Place {
    /// The type of the value stored there.
    pub fn ty(&self, program: &Program) -> Option<Type> {
        match self {
            Place::Global(i) => program.globals.get(*i).map(|v| v.ty),
            Place::SelfVar(i) => program.self_vars.get(*i).map(|v| v.ty),
            Place::This(i) => program.this_vars.get(*i).map(|v| v.ty),
            Place::Array { array, .. } => program.arrays.get(*array).map(|a| a.value_type),
        }
    }
}
