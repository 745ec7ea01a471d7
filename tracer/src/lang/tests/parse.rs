//! Parsing: clause structure, probe descriptions, statements and expression syntax.

use super::{err, ok};
use crate::lang::ir::{Action, ExprKind};
use crate::lang::ErrorKind;

#[test]
fn clauses_descriptions_predicates_and_comments() {
    let p = ok("/* header */\n\
         BEGIN { x = 1; } // trailing\n\
         fbt::xcall_*:entry, fbt::ipi_*:return\n\
         /x == 1/\n\
         {\n  trace(1);\n}\n\
         END{}\n\
         tick-1s /x/{ }\n\
         profile-997hz { }\n\
         apic:::eoi, vmexit:::io, ERROR, fbt:kern:f[0-9]?:entry {}");
    assert_eq!(p.clauses.len(), 6);
    let c = &p.clauses[1];
    assert_eq!(c.descs.len(), 2);
    assert_eq!(c.descs[0].to_string(), "fbt::xcall_*:entry");
    assert!(c.predicate.is_some());
    assert!(c.matches("fbt", "k", "ipi_send", "return"));
    assert!(!c.matches("fbt", "k", "ipi_send", "entry"));
    assert!(p.clauses[2].default_action);
    assert_eq!(p.clauses[3].descs[0].name, "tick-1s");
    assert_eq!(p.clauses[5].descs.len(), 4);
    assert_eq!(p.clauses_matching("dtrace", "", "", "BEGIN"), vec![0]);
    assert_eq!(p.clauses_matching("apic", "", "", "eoi"), vec![5]);
    assert_eq!(p.clauses_matching("fbt", "kern", "f7x", "entry"), vec![5]);
    assert_eq!(
        p.clauses_matching("fbt", "kern", "xcall_a", "entry"),
        vec![1]
    );
}

#[test]
fn a_clause_without_body_is_allowed_at_the_end() {
    let p = ok("fbt::foo:entry");
    assert!(p.clauses[0].default_action);
    assert!(p.clauses[0].actions.is_empty());
    let p = ok("BEGIN /1/");
    assert!(p.clauses[0].predicate.is_some());
}

#[test]
fn predicate_slash_is_division_unless_it_ends_the_predicate() {
    let p = ok("BEGIN /arg0 / 2 > 1/ { }");
    let Some(pred) = &p.clauses[0].predicate else {
        panic!("no predicate")
    };
    assert!(matches!(pred.kind, ExprKind::Binary { .. }));
    ok("BEGIN /arg0/{}");
    ok("BEGIN /arg0/ /* comment */ {}");
}

#[test]
fn pragmas_and_shebang() {
    let p =
        ok("#!/usr/sbin/dtrace -s\n#pragma D option quiet\n#pragma D option bufsize=4m\nBEGIN {}");
    assert_eq!(p.option("quiet"), Some(None));
    assert_eq!(p.option("bufsize"), Some(Some("4m")));
    assert_eq!(p.option("flowindent"), None);
}

#[test]
fn every_statement_form() {
    let p = ok(r#"
        BEGIN {
            x = 1; x += 2; x -= 1; x *= 3; x /= 2; x %= 5; x &= 7; x |= 8; x ^= 1;
            x <<= 2; x >>= 1; x++; x--; ++x; --x;
            a["k", 1] = 2; a["k", 1]++;
            self->s = 1; this->t = "s";
            @c = count(); @s[x] = sum(x); @mn = min(x); @mx = max(x); @av = avg(x);
            @q = quantize(x); @l = lquantize(x, 0, 100, 10); @l2 = lquantize(x, -5, 5);
            @[probefunc, cpu] = count();
            printf("%d %s\n", x, this->t); printf("plain\n");
            trace(x); trace("s");
            printa(@c); printa("%@d\n", @c); printa("%s %d %@d\n", @);
            stack(); stack(5);
            clear(@s); trunc(@s); trunc(@s, 3);
            ;;
            exit(0)
        }"#);
    let actions = &p.clauses[0].actions;
    assert_eq!(actions.len(), 41);
    assert!(matches!(actions[40], Action::Exit(_)));
    assert_eq!(p.aggregations.len(), 9);
    assert_eq!(p.aggregations[8].name, "");
    assert_eq!(p.arrays[0].key_types.len(), 2);
}

#[test]
fn literals_and_escapes() {
    let p = ok(r#"BEGIN { s = "tab\there\n\x41\101\\\""; c = 'A'; h = 0x10; o = 010; u = 5u; }"#);
    let Action::Store { value, .. } = &p.clauses[0].actions[0] else {
        panic!()
    };
    assert_eq!(value.kind, ExprKind::Str("tab\there\nAA\\\"".into()));
    let values: Vec<&ExprKind> = p.clauses[0].actions[1..]
        .iter()
        .filter_map(|a| match a {
            Action::Store { value, .. } => Some(&value.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        values,
        vec![
            &ExprKind::Int(65),
            &ExprKind::Int(16),
            &ExprKind::Int(8),
            &ExprKind::Int(5)
        ]
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("BEGIN {{ x = {}1{}; }}", "(".repeat(5000), ")".repeat(5000));
    let e = err(&deep);
    assert!(matches!(e.kind, ErrorKind::Limit(_)), "{e}");
    let long = format!("BEGIN {{ x = 1{}; }}", " + 1".repeat(5000));
    assert!(matches!(err(&long).kind, ErrorKind::Limit(_)));
    let unary = format!("BEGIN {{ x = {}1; }}", "- ".repeat(5000));
    assert!(matches!(err(&unary).kind, ErrorKind::Limit(_)));
    let ternary = format!("BEGIN {{ x = {}1; }}", "1 ? 1 : ".repeat(5000));
    assert!(matches!(err(&ternary).kind, ErrorKind::Limit(_)));
    // Ninety levels are fine.
    ok(&format!(
        "BEGIN {{ x = {}1{}; }}",
        "(".repeat(90),
        ")".repeat(90)
    ));
    ok(&format!("BEGIN {{ x = 1{}; }}", " + 1".repeat(90)));
}

#[test]
fn casts_to_integer_and_pointer_types() {
    let p = ok("BEGIN { a = (uint8_t)arg0; b = (int)arg0; c = (char *)arg0; d = (unsigned long long)arg0; e = (short)1; f = (int64_t)1; }");
    let casts: Vec<(u8, bool)> = p.clauses[0]
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Store { value, .. } => match &value.kind {
                ExprKind::Cast { bytes, signed, .. } => Some((*bytes, *signed)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        casts,
        vec![
            (1, false),
            (4, true),
            (8, false),
            (8, false),
            (2, true),
            (8, true)
        ]
    );
}
