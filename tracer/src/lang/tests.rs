//! Tests of the language: parsing and checking of every construct, the corpus of bad
//! programs, and the no-panic property tests.

mod check;
mod corpus;
mod kernel;
mod parse;
mod prop;

use super::{compile, compile_str, Diagnostic, Program};

/// Compiles `src`, panicking with the rendered error if it does not compile.
pub(super) fn ok(src: &str) -> Program {
    match compile_str(src) {
        Ok(p) => p,
        Err(e) => panic!("{src:?} should compile:\n{e}"),
    }
}

/// Compiles `src`, which must fail, and returns the error.
pub(super) fn err(src: &str) -> Diagnostic {
    match compile_str(src) {
        Ok(_) => panic!("{src:?} should not compile"),
        Err(e) => e,
    }
}

#[test]
fn several_sources_combine_and_errors_name_their_source() {
    use super::Source;
    let p = compile(&[
        Source::new("-n #1", "BEGIN { x = 1; }"),
        Source::new("trace.d", "END { printf(\"%d\", x); }"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.clauses.len(), 2);
    assert_eq!(p.globals.len(), 1);
    let e = compile(&[
        Source::new("-n #1", "BEGIN { x = 1; }"),
        Source::new("trace.d", "BEGIN {}\n\nEND { y = z; }"),
    ])
    .unwrap_err();
    assert_eq!(e.message(), "unknown variable `z` at trace.d:3:11");
    assert_eq!(
        e.to_string(),
        "error: unknown variable `z` at trace.d:3:11\n  3 | END { y = z; }\n    |           ^"
    );
}
