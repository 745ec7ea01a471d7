//! The syntax tree the parser builds: clauses, statements and expressions as written, with
//! spans, before names are resolved and types checked (that is [`super::check`]'s job).

use super::source::Span;

/// A parsed source: its clauses and its `#pragma D option` lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct File {
    pub(crate) clauses: Vec<Clause>,
    pub(crate) pragmas: Vec<(String, Option<String>, Span)>,
}

/// `desc[, desc...] [/predicate/] [{ statements }]`.
#[derive(Debug, Clone)]
pub(crate) struct Clause {
    pub(crate) descs: Vec<(String, Span)>,
    pub(crate) predicate: Option<Expr>,
    /// `None` for a clause without a body (allowed at the end of a source, as `dtrace -n`
    /// allows): DTrace's default action.
    pub(crate) body: Option<Vec<Stmt>>,
    pub(crate) span: Span,
}

/// Assignment operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssignOp {
    Set,
    /// `op=`: the binary operator applied to the old value.
    Compound(BinOp),
}

/// A statement.
#[derive(Debug, Clone)]
pub(crate) enum Stmt {
    /// An expression used as a statement: an action call such as `printf(...)`.
    Expr(Expr),
    /// `target op value`.
    Assign {
        target: Expr,
        op: AssignOp,
        value: Expr,
        span: Span,
    },
    /// `target++`, `++target`, `target--`, `--target`.
    IncDec {
        target: Expr,
        increment: bool,
        span: Span,
    },
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    /// `*p`: the object a kernel pointer points to.
    Deref,
    Neg,
    Plus,
    Not,
    BitNot,
}

/// Binary operators (the logical ones included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    Mod,
    Add,
    Sub,
    Shl,
    Shr,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    BitAnd,
    BitXor,
    BitOr,
    And,
    Xor,
    Or,
}

impl BinOp {
    /// The operator as written.
    pub(crate) fn text(self) -> &'static str {
        match self {
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::BitAnd => "&",
            BinOp::BitXor => "^",
            BinOp::BitOr => "|",
            BinOp::And => "&&",
            BinOp::Xor => "^^",
            BinOp::Or => "||",
        }
    }
}

/// An integer type named in a cast: its width in bytes and signedness (pointers are unsigned
/// 8-byte integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CastType {
    pub(crate) bytes: u8,
    pub(crate) signed: bool,
}

/// An expression with its span and the height of its tree (bounded by the parser, so that
/// every recursive pass over it is bounded too).
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub(crate) kind: ExprKind,
    pub(crate) span: Span,
    pub(crate) height: u16,
}

/// Expression forms.
#[derive(Debug, Clone)]
pub(crate) enum ExprKind {
    /// Integer literal and whether it had a `u` suffix.
    Int(u64, bool),
    Str(String),
    Ident(String),
    /// `this->name`.
    This(String),
    /// `self->name`.
    SelfVar(String),
    /// `@name` (`@` alone: name "").
    Agg(String),
    /// `base[keys]`.
    Index {
        base: Box<Expr>,
        keys: Vec<Expr>,
    },
    /// `base->name` (`arrow`) or `base.name`, other than `self->` and `this->`.
    Member {
        base: Box<Expr>,
        name: String,
        arrow: bool,
        name_span: Span,
    },
    /// `name(args)`.
    Call {
        name: String,
        name_span: Span,
        args: Vec<Expr>,
    },
    Unary {
        op: UnOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Ternary {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    Cast {
        to: CastType,
        operand: Box<Expr>,
    },
}
