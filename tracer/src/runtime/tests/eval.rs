//! Expression evaluation.

use super::{run, value, Harness};
use crate::runtime::{OutputFormat, ProbeInfo, RecordKind};

#[test]
fn operators_follow_c_precedence_and_wrap() {
    for (expr, want) in [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 - 4 - 3", "3"),
        ("1 << 2 + 1", "8"),
        ("7 & 3 | 8", "11"),
        ("2 < 3 == 1", "1"),
        ("1 || 0 && 0", "1"),
        ("1 ^^ 1", "0"),
        ("0 ^^ 1", "1"),
        ("0 ? 2 : 1 ? 4 : 5", "4"),
        ("-arg1", "-2"),
        ("~arg1", "-3"),
        ("!arg1", "0"),
        ("!!arg1", "1"),
        ("arg1 - 3", "-1"),
        ("0x7fffffffffffffff + arg1 - 1", "-9223372036854775808"),
        ("timestamp - 1001", "18446744073709551615"),
        ("-7 / arg1", "-3"),
        ("-7 % arg1", "-1"),
        ("(timestamp - 1007) / arg1", "9223372036854775804"),
        ("-8 >> 1", "-4"),
        ("(timestamp - 1008) >> 1", "9223372036854775804"),
        ("1 << 65", "2"),
        ("arg1 * 0x8000000000000000", "0"),
        ("(uint8_t)(arg1 + 255)", "1"),
        ("(int8_t)(arg1 + 253)", "-1"),
        ("(uint16_t)-1", "65535"),
        ("(int)0x180000000", "-2147483648"),
        ("timestamp > -1", "0"),
        ("arg1 > -1", "1"),
    ] {
        assert_eq!(value(expr), want, "{expr}");
    }
}

#[test]
fn logical_operators_short_circuit() {
    // arg3 - 4 == 0: the division would fault if evaluated.
    assert_eq!(value("0 && 1 / (arg3 - 4)"), "0");
    assert_eq!(value("1 || 1 / (arg3 - 4)"), "1");
    assert_eq!(value("1 ? 7 : 1 / (arg3 - 4)"), "7");
}

#[test]
fn strings_compare_bytewise() {
    for (expr, want) in [
        ("\"abc\" == \"abc\"", "1"),
        ("\"abc\" != \"abc\"", "0"),
        ("\"abc\" < \"abd\"", "1"),
        ("\"b\" > \"abc\"", "1"),
        ("\"ab\" <= \"ab\"", "1"),
        ("\"\" >= \"a\"", "0"),
        ("probename == \"BEGIN\"", "1"),
        ("probeprov", "dtrace"),
        ("strlen(probename)", "5"),
        ("strjoin(\"a\", probename)", "aBEGIN"),
        ("lltostr(-42)", "-42"),
        ("1 ? \"yes\" : \"no\"", "yes"),
    ] {
        assert_eq!(value(expr), want, "{expr}");
    }
}

#[test]
fn builtins_read_the_probe_context() {
    let mut h = Harness::new(
        "fbt:kmod:xcall_send:entry { printf(\"%d %d %d %s %s %s %s %d %d %d %d %d %d %a %d %d\", cpu, id, timestamp, probeprov, probemod, probefunc, probename, arg0, arg1, arg2, arg3, arg4, arg5, caller, walltimestamp, regs[R_RCX]); }",
    );
    h.ctx.regs.insert(1, 77);
    h.fire_on(1, &ProbeInfo::new(42, "fbt", "kmod", "xcall_send", "entry"));
    let out = h.output(true, OutputFormat::Text);
    assert_eq!(
        out.stdout,
        "1 42 1000 fbt kmod xcall_send entry 4096 2 3 4 5 6 xcall_send+0x10 1700000000000000000 77\n"
    );
}

#[test]
fn guest_strings() {
    let mut h = Harness::new(
        "BEGIN { printf(\"[%s][%s][%d]\\n\", stringof(arg0), copyinstr(arg0 + 1), strlen(stringof(arg0))); }",
    );
    h.fire(&ProbeInfo::begin());
    assert_eq!(
        h.output(true, OutputFormat::Text).stdout,
        "[hello][ello][5]\n\n"
    );
    // A string running up to an unmapped page, NUL-terminated before it: fine.
    let mut h = Harness::new("BEGIN { trace(stringof(arg0)); }");
    h.ctx.args[0] = 0x5ffc;
    h.ctx.write(0x5ffc, b"abc\0");
    h.fire(&ProbeInfo::begin());
    assert_eq!(h.output(true, OutputFormat::Text).stdout, "abc\n");
    // Crossing into the next mapped page.
    let mut h = Harness::new("BEGIN { trace(stringof(arg0)); }");
    h.ctx.args[0] = 0x6ffe;
    h.ctx.write(0x6ffe, b"wxyz\0");
    h.fire(&ProbeInfo::begin());
    assert_eq!(h.output(true, OutputFormat::Text).stdout, "wxyz\n");
    // No NUL within strsize: truncated.
    let mut h = Harness::with_limits(
        "BEGIN { trace(stringof(arg0)); trace(strlen(strjoin(stringof(arg0), stringof(arg0)))); }",
        crate::runtime::Limits {
            strsize: 8,
            ..Default::default()
        },
    );
    h.ctx.write(0x1000, b"0123456789abcdef");
    h.fire(&ProbeInfo::begin());
    assert_eq!(h.output(true, OutputFormat::Text).stdout, "012345678\n");
}

#[test]
fn unset_variables_read_as_zero() {
    assert_eq!(
        run("BEGIN { trace(a[1]); trace(self->s); trace(this->t); trace(g); } END { a[1] = 1; self->s = \"x\"; this->t = 2; g = 3; }"),
        "000"
    );
}

#[test]
fn variables_scopes() {
    // Globals are shared by every vCPU; self-> is per vCPU; this-> is per firing, shared by
    // the clauses of one firing.
    let mut h = Harness::new(
        "fbt:::entry { g++; self->n++; this->t++; }\n\
         fbt:::entry { printf(\"%d %d %d\\n\", g, self->n, this->t); }",
    );
    let p = ProbeInfo::new(5, "fbt", "", "f", "entry");
    for (t, cpu) in [(1, 0), (2, 1), (3, 0)] {
        h.ctx.timestamp = t;
        h.fire_on(cpu, &p);
    }
    let records = h.records();
    let texts: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.kind {
            RecordKind::Printf(t) => Some(format!("cpu{} {t}", r.cpu)),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["cpu0 1 1 1\n", "cpu1 2 1 1\n", "cpu0 3 2 1\n"]);
}

#[test]
fn associative_arrays() {
    assert_eq!(
        run("BEGIN { a[\"x\", 1] = 5; a[\"x\", 2] = 6; a[\"x\", 1] += 10; b[timestamp] = 1; printf(\"%d %d %d %d\", a[\"x\", 1], a[\"x\", 2], a[\"y\", 1], b[1000]); }"),
        "15 6 0 1"
    );
    // Keys of either signedness name the same entry.
    assert_eq!(run("BEGIN { a[1] = 7; trace(a[1u]); }"), "7");
}

#[test]
fn compound_assignments() {
    assert_eq!(
        run("BEGIN { x = 10; x += 5; x -= 3; x *= 2; x /= 5; x %= 3; x <<= 4; x >>= 1; x |= 1; x &= 0xd; x ^= 0xff; x++; x--; --x; ++x; trace(x); }"),
        "246"
    );
}

#[test]
fn func_and_sym_name_the_function_of_an_address() {
    // The context's one symbol is xcall_send at 0x2000..0x2100.
    let mut h = Harness::new(
        "BEGIN { printf(\"%s %s %s %s\", func(0x2000), func(0x2010), sym(caller), func(0x9999)); }",
    );
    h.fire(&ProbeInfo::begin());
    assert_eq!(
        h.output(true, OutputFormat::Text).stdout,
        "xcall_send xcall_send xcall_send 0x9999\n"
    );
    assert!(crate::lang::compile_str("BEGIN { trace(func(\"x\")); }").is_err());
}
