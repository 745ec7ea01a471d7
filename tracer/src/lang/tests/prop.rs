//! Property tests: whatever the input, parsing, checking, running and printing never panic.
//! They share their entry point, `runtime::testing::exercise`, with the cargo-fuzz target.

use proptest::prelude::*;

use crate::runtime::testing::{exercise, exercise_bytes};

/// Valid programs that exercise most of the language; mutations of them reach deep into
/// the checker and runtime.
pub(crate) const SEEDS: &[&str] = &[
    "fbt::xcall_*:entry { @[probefunc, cpu] = count(); }",
    "BEGIN { x = 1; a[\"k\", 2] = x + 1; self->t = timestamp; this->s = \"v\"; }\n\
     fbt:::entry /x > 0 && probefunc != \"y\"/ { @q = quantize(arg1); @l[cpu] = lquantize(arg1, 0, 100, 10); }\n\
     fbt:::return /self->t/ { @lat = avg(timestamp - self->t); printf(\"%s %d %x %a\\n\", probefunc, arg1, arg0, caller); }",
    "tick-1s { printa(\"%s %@d\\n\", @c); clear(@c); trunc(@c, 2); } BEGIN { @c[\"a\"] = count(); @m = min(arg1); @M = max(arg1); @s = sum(arg2); }",
    "BEGIN { trace(stringof(arg0)); trace(copyinstr(arg0)); trace(strlen(stringof(arg0))); stack(); exit(0); }",
    "BEGIN { x = arg1 / (arg1 - arg1); } ERROR { printf(\"err %d %d\\n\", arg4, arg5); }",
    "BEGIN { printf(\"%-10s|%+5d|% d|%05d|%#x|%.3s|%hhd|%c|%p|%o|%X|%u\\n\", probefunc, 1, 2, 3, 4, \"abcdef\", 300, 65, 7, 8, 255, -1); }",
    "END { trace(regs[R_RAX]); trace(regs[99]); trace(strjoin(lltostr(cpu), \"x\")); trace((uint8_t)arg2 ^^ 1 ? -1 : ~0); }",
    "fbt::xcall_send:entry { self->n++; @n[self->n % 3] = sum(self->n << 2 >> 1); printa(@n); trunc(@n); }",
];

/// Tokens to splice into programs.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    ",",
    "/",
    "*",
    "+",
    "-",
    "%",
    "@",
    "@a",
    "?",
    ":",
    "==",
    "!=",
    "&&",
    "||",
    "^^",
    "<<",
    ">>",
    "=",
    "+=",
    "++",
    "--",
    "->",
    "self",
    "this",
    "x",
    "arg0",
    "\"s\"",
    "\"%d\"",
    "0",
    "1",
    "0xffffffffffffffff",
    "-1",
    "count()",
    "sum(",
    "printf(",
    "printa(",
    "trace(",
    "stack()",
    "exit(",
    "lquantize(",
    "quantize(",
    "BEGIN",
    "END",
    "fbt:::",
    "/*",
    "*/",
    "//",
    "\n",
    "#pragma D option quiet\n",
    "'a'",
    "\\",
    "regs[",
    "stringof(",
    "(int)",
];

fn mutate(seed: &str, edits: &[(u8, usize, usize)]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for &(op, pos, tok) in edits {
        let at = if chars.is_empty() {
            0
        } else {
            pos % (chars.len() + 1)
        };
        match op % 3 {
            0 => {
                let end = (at + 1 + tok % 8).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            1 => {
                let t: Vec<char> = TOKENS[tok % TOKENS.len()].chars().collect();
                chars.splice(at..at, t);
            }
            _ => {
                let end = (at + 1 + tok % 16).min(chars.len());
                let copy: Vec<char> = chars[at.min(end)..end].to_vec();
                chars.splice(at..at, copy);
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn seeds_compile_and_run() {
    for seed in SEEDS {
        if let Err(e) = exercise(seed) {
            panic!("seed does not compile:\n{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,200}") {
        let _ = exercise(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        exercise_bytes(&bytes);
    }

    #[test]
    fn token_soup_never_panics(toks in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let s: Vec<&str> = toks.iter().map(|&i| TOKENS[i]).collect();
        let _ = exercise(&s.join(" "));
        let _ = exercise(&format!("BEGIN {{ {} }}", s.join(" ")));
    }

    #[test]
    fn mutated_programs_never_panic(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let text = mutate(SEEDS[seed], &edits);
        if let Err(e) = exercise(&text) {
            // Errors render, and point inside the text.
            let rendered = e.to_string();
            prop_assert!(rendered.starts_with("error: "));
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }
}
