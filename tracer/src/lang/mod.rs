//! The D language subset: parsing, checking and compiling programs into the typed IR that
//! [`crate::runtime`] evaluates.
//!
//! Entry point: [`compile`], which takes one or more [`Source`]s (each `-n` argument and each
//! `-s` file) and returns a [`Program`] or the first error as a [`Diagnostic`] naming the
//! source, line and column, rendered with the source line and a caret:
//!
//! ```
//! use tracer::lang::{compile, Source};
//!
//! let program = compile(&[Source::new("-n", "fbt::xcall_*:entry { @[probefunc, cpu] = count(); }")])
//!     .expect("compiles");
//! assert_eq!(program.clauses_matching("fbt", "kernel", "xcall_send", "entry"), vec![0]);
//!
//! let err = compile(&[Source::new("", "BEGIN { x = \"a\" + 1; }")]).unwrap_err();
//! assert_eq!((err.line, err.column), (1, 13));
//! ```
//!
//! # Why a hand-written parser
//!
//! The parser is hand-written recursive descent, with Pratt (precedence-climbing) parsing
//! for expressions, rather than a parser generator or combinator library:
//!
//! - **D's grammar is context-sensitive in two places** that a generated parser handles
//!   awkwardly: probe descriptions (`fbt::xcall_*:entry`, `tick-1s`) are lexed as whole words
//!   at the top level, and a `/` closes a predicate or divides depending on what follows it.
//!   DTrace's own yacc grammar needs lexer states and look-ahead hacks for both; here they are
//!   two small lexer functions.
//! - **Error messages are the product.** Every error names what was expected and what was
//!   found, at a precise span, in words a DTrace user recognises; a hand-written parser
//!   controls each message directly.
//! - **No panics and bounded resources on any input**, which the proptest and fuzz target
//!   check: nesting depth is capped ([`MAX_DEPTH`]), so neither the parser nor any later
//!   recursive pass can overflow the stack.
//! - **No dependency.** The grammar is small (about 600 lines with the lexer), builds fast
//!   and has no generated code to keep in sync.
//!
//! # The language
//!
//! - Clauses `desc[, desc...] [/predicate/] { statements }`; `//` and `/* */` comments;
//!   `#pragma D option name[=value]` lines (recorded in [`Program::options`]).
//! - Probe descriptions `provider:module:function:name` with globs ([`ProbeDesc`]).
//! - Statements, separated by `;`: `printf(fmt, ...)`, `trace(e)`, `printa(@a)`,
//!   `printa(fmt, @a)`, `stack()`, `stack(n)`, `exit(n)`, `clear(@a)`, `trunc(@a[, n])`,
//!   assignments `=`, `+=`, `-=`, `*=`, `/=`, `%=`, `&=`, `|=`, `^=`, `<<=`, `>>=`, and
//!   `++`/`--`.
//! - Expressions: C operators with C precedence, `^^`, `?:`, integer casts
//!   (`(uint32_t)x`, `(char *)p`), integer, character and string literals with C escapes,
//!   string comparison, and the functions `strlen(s)`, `stringof(addr)` / `copyinstr(addr)`
//!   (a NUL-terminated string read from guest virtual memory), `strjoin(a, b)`, `lltostr(n)`.
//! - Variables: globals `x`, associative arrays `x[k1, k2]`, `self->x` (per vCPU; per task on
//!   a Linux kernel), per-firing `this->x`. A variable is declared by being assigned anywhere in the program; reading a
//!   variable not yet set gives 0 or "".
//! - Aggregations `@name[keys] = count() | sum(e) | min(e) | max(e) | avg(e) | quantize(e) |
//!   lquantize(e, lo, hi[, step])`, and the anonymous `@`.
//! - Built-in variables: `cpu`, `id`, `timestamp`, `walltimestamp`, `probeprov`,
//!   `probemod`, `probefunc`, `probename`, `arg0`..`arg5`, `caller`, and `regs[N]` with the
//!   register constants of [`registers`] (`regs[R_RAX]`).
//! - Compiled against a Linux kernel ([`compile_for`] with a [`Kernel`]): `args[N]` typed from
//!   the probed function's BTF prototype, `p->member`, `s.member`, `a[i]` and `*p` on kernel types
//!   (read from guest memory; `char` arrays read as strings), `curthread`, `execname`, `pid`
//!   and `tid`. Errors in them (a missing member, no prototype) are compile errors.
//!
//! Integers are 64-bit, signed unless a literal is too large or has a `u` suffix, or an
//! operand is unsigned (`timestamp`, `caller`, `regs[]`); arithmetic wraps; division by zero
//! is a runtime error.

mod ast;
mod check;
pub mod diag;
mod expr;
pub mod format;
pub mod ir;
pub mod kernel;
mod lexer;
mod parser;
pub mod probedesc;
pub mod registers;
pub mod source;

#[cfg(test)]
mod tests;

pub use diag::{Diagnostic, ErrorKind};
pub use expr::MAX_DEPTH;
pub use format::Format;
pub use ir::{AggDecl, AggFunc, Clause, Program, Type};
pub use kernel::{CurrentTask, Kernel, Target};
pub use probedesc::{glob_match, timer_period, ProbeDesc, TimerKind};
pub use source::{Source, Span};

/// Compiles one or more sources into one program. Clauses keep their order: all of the first
/// source's, then the second's, and so on; variables and aggregations are shared between
/// sources, as when DTrace concatenates several `-n` and `-s` programs.
pub fn compile(sources: &[Source]) -> Result<Program, Diagnostic> {
    compile_for(sources, Target::none())
}

/// Compiles `sources` against `target`: the image's probes and, for a Linux kernel, its BTF
/// and current-task location, which type `args[N]`, `->member`, `curthread`, `execname`,
/// `pid` and `tid`, and key `self->` variables by task. Type errors in member accesses are
/// compile errors here.
pub fn compile_for(sources: &[Source], target: Target<'_>) -> Result<Program, Diagnostic> {
    let mut files = Vec::with_capacity(sources.len());
    for (i, source) in sources.iter().enumerate() {
        let file =
            parser::parse_file(&source.text, i).map_err(|e| Diagnostic::from_error(e, sources))?;
        files.push(file);
    }
    check::check(files, sources.to_vec(), target).map_err(|e| Diagnostic::from_error(e, sources))
}

/// Compiles a single unnamed source (a convenience for tests and one-liners).
pub fn compile_str(text: &str) -> Result<Program, Diagnostic> {
    compile(&[Source::new("", text)])
}
