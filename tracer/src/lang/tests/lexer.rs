//! Lexer tests.

use super::*;

fn toks(text: &str) -> Vec<Tok> {
    let mut lx = Lexer::new(text, 0);
    let mut out = Vec::new();
    loop {
        match lx.next_token() {
            Ok(t) if t.tok == Tok::Eof => return out,
            Ok(t) => out.push(t.tok),
            Err(e) => panic!("lex error {e:?} in {text:?}"),
        }
    }
}

fn lex_err(text: &str) -> String {
    let mut lx = Lexer::new(text, 0);
    loop {
        match lx.next_token() {
            Ok(t) if t.tok == Tok::Eof => panic!("no error in {text:?}"),
            Ok(_) => {}
            Err(e) => return e.kind.to_string(),
        }
    }
}

#[test]
fn operators_longest_match() {
    use Tok::*;
    assert_eq!(
        toks("a <<= b >>= c << >> <= >= == != && || ^^ ++ -- -> += -= *= %= &= |= ^= ="),
        vec![
            Ident("a".into()),
            OpAssign(Box::new(Shl)),
            Ident("b".into()),
            OpAssign(Box::new(Shr)),
            Ident("c".into()),
            Shl,
            Shr,
            Le,
            Ge,
            EqEq,
            Ne,
            AndAnd,
            OrOr,
            XorXor,
            Inc,
            Dec,
            Arrow,
            OpAssign(Box::new(Plus)),
            OpAssign(Box::new(Minus)),
            OpAssign(Box::new(Star)),
            OpAssign(Box::new(Percent)),
            OpAssign(Box::new(Amp)),
            OpAssign(Box::new(Pipe)),
            OpAssign(Box::new(Caret)),
            Assign,
        ]
    );
}

#[test]
fn integers_in_every_radix_with_suffixes() {
    assert_eq!(
        toks("0 10 0x1F 017 10u 5UL 7ll 0xffffffffffffffff"),
        vec![
            Tok::Int(0, false),
            Tok::Int(10, false),
            Tok::Int(31, false),
            Tok::Int(15, false),
            Tok::Int(10, true),
            Tok::Int(5, true),
            Tok::Int(7, false),
            Tok::Int(u64::MAX, false),
        ]
    );
    assert!(lex_err("0x").contains("without digits"));
    assert!(lex_err("09").contains("invalid integer literal `09`"));
    assert!(lex_err("18446744073709551616").contains("does not fit"));
    assert!(lex_err("12abc").contains("invalid integer literal"));
    assert!(lex_err("1uu").contains("invalid integer suffix"));
}

#[test]
fn strings_and_escapes() {
    assert_eq!(
        toks(r#""a\tb\n\\\"\x41\101\0" 'c' '\n'"#),
        vec![
            Tok::Str("a\tb\n\\\"AA\0".into()),
            Tok::Int(99, false),
            Tok::Int(10, false)
        ]
    );
    assert!(lex_err("\"abc").contains("unterminated string"));
    assert!(lex_err("\"a\nb\"").contains("unterminated string"));
    assert!(lex_err(r#""\q""#).contains("invalid escape `\\q`"));
    assert!(lex_err(r#""\x""#).contains("without hex digits"));
    assert!(lex_err("''").contains("empty character"));
    assert!(lex_err("'ab'").contains("more than one"));
}

#[test]
fn comments_are_skipped() {
    assert_eq!(
        toks("a /* x\n y */ b // c\n d"),
        vec![
            Tok::Ident("a".into()),
            Tok::Ident("b".into()),
            Tok::Ident("d".into())
        ]
    );
    assert!(lex_err("a /* never closed").contains("unterminated comment"));
}

#[test]
fn slash_before_brace_semicolon_or_end_closes_a_predicate() {
    assert_eq!(
        toks("a / b"),
        vec![Tok::Ident("a".into()), Tok::Slash, Tok::Ident("b".into())]
    );
    assert_eq!(toks("a/ {")[1], Tok::SlashEnd);
    assert_eq!(toks("a/ /* c */ {")[1], Tok::SlashEnd);
    assert_eq!(toks("a/")[1], Tok::SlashEnd);
    assert_eq!(toks("a/;")[1], Tok::SlashEnd);
}

#[test]
fn aggregation_names() {
    assert_eq!(
        toks("@ @a @foo_1"),
        vec![
            Tok::Agg(String::new()),
            Tok::Agg("a".into()),
            Tok::Agg("foo_1".into())
        ]
    );
    assert!(lex_err("@1").contains("invalid aggregation name"));
}

#[test]
fn unexpected_characters_are_errors() {
    assert!(lex_err("a $ b").contains("unexpected character `$`"));
    assert!(lex_err("é").contains("unexpected character"));
    assert!(lex_err("#").contains("unexpected character `#`"));
}

#[test]
fn probe_descriptions_read_whole() {
    let mut lx = Lexer::new("fbt::xcall_*:entry,tick-1s/x/{", 0);
    assert_eq!(lx.probe_desc().0, "fbt::xcall_*:entry");
    assert_eq!(lx.peek_byte(), Some(b','));
    lx.bump();
    assert_eq!(lx.probe_desc().0, "tick-1s");
    assert_eq!(lx.peek_byte(), Some(b'/'));
}
