//! Checking: name resolution, declaration by assignment, types, aggregations, formats.

use super::{err, ok};
use crate::lang::check::expr::const_value;
use crate::lang::ir::{Action, AggFunc, Builtin, ExprKind, Type};

/// The type of the value assigned by the first statement of `BEGIN { v = EXPR; }`.
fn type_of(expr: &str) -> Type {
    let p = ok(&format!("BEGIN {{ v = {expr}; }}"));
    match &p.clauses[0].actions[0] {
        Action::Store { value, .. } => value.ty,
        other => panic!("{other:?}"),
    }
}

#[test]
fn builtins_have_their_types() {
    for (name, ty) in [
        ("cpu", Type::Int),
        ("id", Type::Uint),
        ("timestamp", Type::Uint),
        ("walltimestamp", Type::Uint),
        ("probeprov", Type::Str),
        ("probemod", Type::Str),
        ("probefunc", Type::Str),
        ("probename", Type::Str),
        ("arg0", Type::Int),
        ("arg5", Type::Int),
        ("caller", Type::Uint),
        ("regs[R_RAX]", Type::Uint),
        ("regs[4]", Type::Uint),
        ("R_RSP", Type::Int),
    ] {
        assert_eq!(type_of(name), ty, "{name}");
    }
    let p = ok("BEGIN { v = arg3; }");
    let Action::Store { value, .. } = &p.clauses[0].actions[0] else {
        panic!()
    };
    assert_eq!(value.kind, ExprKind::Builtin(Builtin::Arg(3)));
}

#[test]
fn integer_types_follow_c_conversions() {
    assert_eq!(type_of("1"), Type::Int);
    assert_eq!(type_of("1u"), Type::Uint);
    assert_eq!(type_of("0xffffffffffffffff"), Type::Uint);
    assert_eq!(type_of("1 + timestamp"), Type::Uint);
    assert_eq!(type_of("timestamp << 1"), Type::Uint);
    assert_eq!(type_of("1 << timestamp"), Type::Int);
    assert_eq!(type_of("timestamp > 1"), Type::Int);
    assert_eq!(type_of("!timestamp"), Type::Int);
    assert_eq!(type_of("-timestamp"), Type::Uint);
    assert_eq!(type_of("\"a\" < \"b\""), Type::Int);
    assert_eq!(type_of("1 ? \"a\" : \"b\""), Type::Str);
    assert_eq!(type_of("1 ? 1 : timestamp"), Type::Uint);
    assert_eq!(type_of("strlen(probefunc)"), Type::Uint);
    assert_eq!(type_of("stringof(arg0)"), Type::Str);
    assert_eq!(type_of("stringof(probefunc)"), Type::Str);
    assert_eq!(type_of("copyinstr(arg0)"), Type::Str);
    assert_eq!(type_of("strjoin(probefunc, \"x\")"), Type::Str);
    assert_eq!(type_of("lltostr(cpu)"), Type::Str);
    assert_eq!(type_of("(uint32_t)-1"), Type::Uint);
}

#[test]
fn string_comparison_compiles_to_strcmp() {
    let p = ok("fbt:::entry /probefunc == \"foo\" && probename != \"x\"/ {}");
    let Some(pred) = &p.clauses[0].predicate else {
        panic!()
    };
    let ExprKind::Logical { lhs, rhs, .. } = &pred.kind else {
        panic!("{pred:?}")
    };
    assert!(matches!(lhs.kind, ExprKind::StrCmp { .. }));
    assert!(matches!(rhs.kind, ExprKind::StrCmp { .. }));
}

#[test]
fn variables_are_declared_by_assignment_anywhere_in_the_program() {
    // The return clause reads self->ts before (in the text) the entry clause sets it.
    let p = ok(
        "fbt::f:return /self->ts/ { @t = quantize(timestamp - self->ts); }\n\
         fbt::f:entry { self->ts = timestamp; }",
    );
    assert_eq!(p.self_vars.len(), 1);
    assert_eq!(p.self_vars[0].ty, Type::Uint);
    // The first assignment in the text declares the type, as in D.
    let p = ok("fbt::f:return { self->ts = 0; } fbt::f:entry { self->ts = timestamp; }");
    assert_eq!(p.self_vars[0].ty, Type::Int);
    // Chains of declarations resolve whatever their order.
    let p = ok("BEGIN { c = b + 1; b = a; a = \"s\" == \"t\"; }");
    assert_eq!(p.globals.len(), 3);
    // Arrays, this-> and keys.
    let p = ok("BEGIN { this->k = \"x\"; a[this->k, 1] = timestamp; v = a[\"y\", 2]; }");
    assert_eq!(p.arrays[0].key_types, vec![Type::Str, Type::Int]);
    assert_eq!(p.arrays[0].value_type, Type::Uint);
    assert_eq!(p.this_vars[0].ty, Type::Str);
}

#[test]
fn aggregations_record_function_and_keys() {
    let p = ok("END { printa(@t); } BEGIN { @t[probefunc, cpu] = lquantize(arg0, -10, 10, 2); @[1] = avg(2); }");
    assert_eq!(
        p.aggregations[0].func,
        AggFunc::Lquantize {
            lo: -10,
            hi: 10,
            step: 2
        }
    );
    assert_eq!(p.aggregations[0].key_types, vec![Type::Str, Type::Int]);
    assert_eq!(p.aggregations[0].display_name(), "@t");
    assert_eq!(p.aggregations[1].display_name(), "@");
    assert_eq!(p.aggregations[1].func, AggFunc::Avg);
    // Constant expressions are folded for lquantize's parameters.
    let p = ok("BEGIN { @ = lquantize(1, -(1 << 4), 4 * 4, 1 + 1); }");
    assert_eq!(
        p.aggregations[0].func,
        AggFunc::Lquantize {
            lo: -16,
            hi: 16,
            step: 2
        }
    );
    // min and max are aggregating functions.
    ok("BEGIN { @a = min(1); @b = max(arg1); }");
}

#[test]
fn constant_folding() {
    for (expr, want) in [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("1 << 2 + 1", 8),
        ("7 & 3 | 8", 11),
        ("1 | 2 ^ 3 & 4", 3),
        ("2 < 3 == 1", 1),
        ("-7 / 2", -3),
        ("-7 % 2", -1),
        ("~0", -1),
        ("!5", 0),
        ("1 ? 2 : 3", 2),
        ("0 ? 2 : 1 ? 4 : 5", 4),
        ("(uint8_t)257", 1),
        ("(int8_t)255", -1),
        ("0x7fffffffffffffff + 1", i64::MIN),
    ] {
        let p = ok(&format!("BEGIN {{ v = {expr}; }}"));
        let Action::Store { value, .. } = &p.clauses[0].actions[0] else {
            panic!()
        };
        assert_eq!(const_value(value), Some(want), "{expr}");
    }
}

#[test]
fn printf_arguments_match_conversions() {
    ok("BEGIN { printf(\"%d %i %u %x %X %o %c %p %a %s %%\\n\", 1, 2, 3, 4, 5, 6, 65, 7, caller, \"s\"); }");
    ok("BEGIN { printf(\"%-10s|%+5d|% d|%05d|%#x|%.3s|%hhd|%lld\\n\", probefunc, 1, 2, 3, 4, \"abcdef\", 300, 5); }");
    let e = err("BEGIN { printf(\"%d\\n\", \"s\"); }");
    assert_eq!(
        e.kind.to_string(),
        "conversion `%d` needs an integer, but argument #2 is a string"
    );
}

#[test]
fn registers_by_name_or_number() {
    ok("BEGIN { a = regs[R_RAX]; b = regs[R_R15]; c = regs[R_RIP] + regs[R_PC]; d = regs[arg0]; }");
}
