//! The corpus of bad programs: each must fail with exactly this message at this line and
//! column, and render with its source line and a caret.

use super::err;

/// (program, message, line, column)
const CORPUS: &[(&str, &str, u32, u32)] = &[
    // Syntax.
    ("BEGIN { x = 1 }\n}", "expected a probe description, found `}`", 2, 1),
    ("BEGIN { x = ; }", "expected an expression, found `;`", 1, 13),
    ("BEGIN { x = 1 y = 2; }", "expected `;` or `}` after the statement, found `y`", 1, 15),
    ("BEGIN {\n  x = 1;\n", "unclosed `{`: expected `}` before the end of input", 1, 7),
    ("BEGIN { printf(\"%d\\n\", 1 }", "expected `,` or `)`, found `}`", 1, 26),
    ("BEGIN { s = \"abc; }", "unterminated string literal", 1, 13),
    ("BEGIN { /* never closed }", "unterminated comment: `/*` without `*/`", 1, 9),
    ("BEGIN { s = \"\\q\"; }", "invalid escape `\\q`", 1, 14),
    ("BEGIN { x = 09; }", "invalid integer literal `09`", 1, 13),
    ("BEGIN { x = 99999999999999999999; }", "integer literal `99999999999999999999` does not fit in 64 bits", 1, 13),
    ("BEGIN { x = 1 $ 2; }", "unexpected character `$`", 1, 15),
    ("BEGIN /x == 1 { }", "expected `/` to end the predicate, found `{`", 1, 15),
    ("BEGIN ( x )", "expected `{`, `/` or `,` after probe description, found `(`", 1, 7),
    ("BEGIN, { }", "expected a probe description, found `{`", 1, 8),
    ("#include <stdio.h>\nBEGIN {}", "preprocessor directives are not supported (only `#pragma D option`)", 1, 1),
    ("BEGIN { x = y->z; }", "unknown variable `y`", 1, 13),
    ("BEGIN { x = arg0->z; }", "`->z` needs a pointer to a struct or union, found an integer", 1, 13),
    ("BEGIN { x = arg0.z; }", "`.z` needs a struct or union, found an integer", 1, 13),
    ("BEGIN { x = arg0->; }", "expected a member name after `->`, found `;`", 1, 19),
    ("BEGIN { x = execname; }", "`execname` needs a Linux kernel with BTF, and this image has none: no kernel image was given to compile against", 1, 13),
    ("BEGIN { x = args[0]; }", "args[] needs a Linux kernel with BTF, and this image has none: no kernel image was given to compile against", 1, 13),
    ("BEGIN { x = *arg0; }", "`*` needs a pointer typed by the kernel's BTF (args[N], a member, curthread), found an integer: use stringof(addr) to read a string", 1, 14),
    ("BEGIN { x = 1 ? 2; }", "expected `:` in the conditional expression, found `;`", 1, 18),
    ("BEGIN { x = a[]; }", "empty key list `[]`", 1, 14),
    // Probe descriptions.
    ("a:b:c:d:e { }", "probe description `a:b:c:d:e` has 5 fields; at most four (provider:module:function:name)", 1, 1),
    ("fbt::foo[:entry { }", "in probe description `fbt::foo[:entry`: unterminated `[` in `foo[`", 1, 1),
    // Names.
    ("fbt::foo:entry { @x = sum(fo); }", "unknown variable `fo`", 1, 27),
    ("BEGIN {}\nfbt::foo:entry { @x = count(fo); }", "unknown variable `fo`", 2, 29),
    ("BEGIN {}\nfbt::foo:entry\n{\n    trace(self->nope);\n}", "unknown variable `self->nope`", 4, 11),
    ("BEGIN { trace(this->t); }", "unknown variable `this->t`", 1, 15),
    ("BEGIN { x = frob(1); }", "unknown function `frob()`", 1, 13),
    ("END { printa(@nope); }", "unknown aggregation `@nope`", 1, 14),
    ("BEGIN { cpu = 1; }", "cannot assign to built-in variable `cpu`", 1, 9),
    ("BEGIN { regs[R_RAX] = 1; }", "cannot assign to `regs[]`: registers are read-only", 1, 9),
    ("BEGIN { x = regs; }", "`regs` must be indexed by a register, as in `regs[R_RAX]`", 1, 13),
    ("BEGIN { a[1] = 1; b = a; }", "associative array `a` must be indexed, as in `a[key]`", 1, 23),
    ("BEGIN { x = 1; y = x[1]; }", "`x` is a scalar variable, not an associative array", 1, 20),
    // Types.
    ("BEGIN { x = \"a\" + 1; }", "operator `+` cannot be applied to a string and an integer", 1, 13),
    ("BEGIN { x = -\"a\"; }", "operator `-` needs an integer operand, found a string", 1, 14),
    ("BEGIN /probefunc == 1/ { }", "operator `==` cannot compare a string with an integer", 1, 8),
    ("BEGIN /probefunc/ { }", "the predicate must be an integer (compare strings with `==` or `!=`), found a string", 1, 8),
    ("BEGIN { x = 1; x = \"s\"; }", "cannot assign a string to `x`, which holds an integer", 1, 20),
    ("BEGIN { self->s = \"s\"; self->s++; }", "`self->s` holds a string and cannot be incremented", 1, 24),
    ("BEGIN { a[1] = 1; a[\"k\"] = 2; }", "key #1 of array `a` is an integer elsewhere but a string here", 1, 21),
    ("BEGIN { a[1] = 1; a[1, 2] = 2; }", "array `a` has 1 key elsewhere but 2 here", 1, 19),
    ("BEGIN { x = 1 ? \"a\" : 2; }", "the branches of `?:` must have the same type, found a string and an integer", 1, 17),
    ("BEGIN { x = strlen(1); }", "the argument of strlen() must be a string, found an integer", 1, 20),
    ("BEGIN { x = strlen(\"a\", \"b\"); }", "`strlen()` takes 1 argument, 2 given", 1, 13),
    ("BEGIN { exit(\"now\"); }", "the exit status must be an integer, found a string", 1, 14),
    ("BEGIN { x = 1 / 0; }", "division by zero", 1, 17),
    ("BEGIN { x = (void)1; }", "cannot cast to `void`", 1, 13),
    // Aggregations.
    ("BEGIN { x = count(); }", "`count()` is an aggregating function: it can only be assigned to an aggregation, as in `@a = count(...)`", 1, 13),
    ("BEGIN { x = min(1, 2); }", "`min()` is an aggregating function: it can only be assigned to an aggregation, as in `@a = min(...)`", 1, 13),
    ("BEGIN { @a = 1; }", "an aggregation can only be assigned an aggregating function: count, sum, min, max, avg, quantize or lquantize", 1, 14),
    ("BEGIN { @a += count(); }", "aggregations can only be assigned with `=`, as in `@a = count()`", 1, 9),
    ("BEGIN { @a = count(1); }", "`count()` takes no arguments, 1 given", 1, 14),
    ("BEGIN { @a = sum(); }", "`sum()` takes 1 argument, 0 given", 1, 14),
    ("BEGIN { @a = sum(\"s\"); }", "the argument of sum() must be an integer, found a string", 1, 18),
    ("BEGIN { @a = count(); @a = sum(1); }", "`@a` is used with count() elsewhere, so it cannot use sum() here", 1, 28),
    ("BEGIN { @a[1] = count(); @a[\"s\"] = count(); }", "key #1 of aggregation `@a` is an integer elsewhere but a string here", 1, 29),
    ("BEGIN { @a = lquantize(arg0, 10, 0, 1); }", "lquantize() lower bound must be less than upper bound", 1, 30),
    ("BEGIN { @a = lquantize(arg0, 0, 10, 0); }", "lquantize() step must be greater than zero", 1, 30),
    ("BEGIN { @a = lquantize(arg0, 0, arg1, 1); }", "the upper bound of lquantize() must be a constant", 1, 33),
    ("BEGIN { @a = lquantize(arg0, 0, 100000, 1); }", "lquantize() has 100000 levels; at most 4096", 1, 30),
    ("BEGIN { x = @a; }", "aggregation `@a` cannot be read in an expression; print it with printa()", 1, 13),
    ("BEGIN { @a = count(); clear(a); }", "the argument of clear() must be an aggregation, as in `clear(@a)`", 1, 29),
    ("BEGIN { x = 1; clear(x); }", "the argument of clear() must be an aggregation, as in `clear(@a)`", 1, 22),
    // Actions and formats.
    ("BEGIN { printf(\"%d %d\\n\", 1); }", "the format \"%d %d\\n\" has 2 conversions but 1 argument was given", 1, 9),
    ("BEGIN { printf(\"%s\\n\", 1); }", "conversion `%s` needs a string, but argument #2 is an integer", 1, 24),
    ("BEGIN { printf(\"%q\\n\", 1); }", "invalid conversion `%q` in format \"%q\\n\"", 1, 16),
    ("BEGIN { printf(\"%f\", 1); }", "floating-point conversion `%f` is not supported (D has no floating point) in format \"%f\"", 1, 16),
    ("BEGIN { printf(fmt, 1); }", "the format of printf() must be a string literal", 1, 16),
    ("BEGIN { printf(\"%@d\", 1); }", "conversion `%@d` is only valid in printa()", 1, 16),
    ("BEGIN { printf(); }", "`printf()` takes at least 1 argument, 0 given", 1, 9),
    ("BEGIN { @a[1] = count(); printa(\"%s %@d\\n\", @a); }", "conversion `%s` needs a string, but key #1 of `@a` is an integer", 1, 33),
    ("BEGIN { @a = count(); printa(\"%d %@d\\n\", @a); }", "the format has more conversions than `@a` has keys (0)", 1, 30),
    ("BEGIN { trace(); }", "`trace()` takes 1 argument, 0 given", 1, 9),
    ("BEGIN { stack(arg0); }", "stack() frame count must be a constant", 1, 15),
    ("BEGIN { stack(0); }", "stack() frame count must be between 1 and 128", 1, 15),
    ("BEGIN { x = printf(\"a\"); }", "`printf()` is an action: it can only be used as a statement, not in an expression", 1, 13),
    ("BEGIN { arg0 + 1; }", "this statement has no effect; use trace(expr) to record a value", 1, 9),
    ("BEGIN { x = 1; x == 2; }", "this comparison has no effect; did you mean `=`?", 1, 16),
    ("BEGIN { strlen(\"a\"); }", "the value of `strlen()` is unused; use trace(strlen(...)) to record it", 1, 9),
    ("BEGIN { sum(1); }", "`sum()` is an aggregating function: it can only be assigned to an aggregation, as in `@a = sum(...)`", 1, 9),
    ("BEGIN { self->a[1] = 2; }", "`self->` and `this->` associative arrays are not supported; use a global array", 1, 9),
    ("BEGIN { x = ++y; }", "`++` is a statement, not part of an expression", 1, 13),
];

#[test]
fn every_bad_program_fails_with_its_message_and_position() {
    assert!(CORPUS.len() >= 30);
    let mut failures = Vec::new();
    for (src, message, line, col) in CORPUS {
        let e = err(src);
        let got = (e.kind.to_string(), e.line, e.column);
        if got != (message.to_string(), *line, *col) {
            failures.push(format!(
                "{src:?}\n   want {message:?} at {line}:{col}\n   got  {:?} at {}:{}",
                got.0, got.1, got.2
            ));
            continue;
        }
        // The rendered form has the message, the source line and a caret under the column.
        let rendered = e.to_string();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines[0], format!("error: {message} at {line}:{col}"));
        let source_line = src.lines().nth(*line as usize - 1).unwrap_or("");
        assert_eq!(lines[1], format!("  {line} | {source_line}"));
        let caret_at = lines[2].find('^').unwrap_or(0);
        let bar_at = lines[2].find('|').unwrap_or(0);
        assert_eq!(caret_at - bar_at - 2, *col as usize - 1, "{rendered}");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
