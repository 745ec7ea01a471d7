//! The printf engine against C's printf behaviour.

use super::*;

fn fmt(f: &str, args: &[Value]) -> String {
    let format = Format::parse(f).unwrap_or_else(|e| panic!("{e}"));
    super::format(&format, args, None, &|a| {
        (0x1000..0x1100)
            .contains(&a)
            .then(|| format!("func+{:#x}", a - 0x1000))
    })
}

fn int(v: i64) -> Value {
    Value::Int(v)
}

#[test]
fn integers() {
    for (f, v, want) in [
        ("%d", 42, "42"),
        ("%d", -42, "-42"),
        ("%i", 7, "7"),
        ("%5d", 42, "   42"),
        ("%-5d|", 42, "42   |"),
        ("%05d", -42, "-0042"),
        ("%+d", 42, "+42"),
        ("% d", 42, " 42"),
        ("%.4d", 42, "0042"),
        ("%8.4d", -42, "   -0042"),
        ("%.0d", 0, ""),
        ("%u", -1, "18446744073709551615"),
        ("%x", 255, "ff"),
        ("%X", 255, "FF"),
        ("%#x", 255, "0xff"),
        ("%#X", 255, "0XFF"),
        ("%#x", 0, "0"),
        ("%08x", 255, "000000ff"),
        ("%#010x", 255, "0x000000ff"),
        ("%o", 8, "10"),
        ("%#o", 8, "010"),
        ("%#o", 0, "0"),
        ("%hhd", 255, "-1"),
        ("%hhu", 257, "1"),
        ("%hd", 65535, "-1"),
        ("%hx", 0x12345, "2345"),
        ("%lld", 1 << 40, "1099511627776"),
        ("%p", 0x1234, "0x1234"),
        ("%c", 65, "A"),
        ("%3c|", 66, "  B|"),
        ("%a", 0x1010, "func+0x10"),
        ("%a", 0x9000, "0x9000"),
        ("%-12a|", 0x1000, "func+0x0    |"),
    ] {
        assert_eq!(fmt(f, &[int(v)]), want, "{f} {v}");
    }
    assert_eq!(fmt("%d", &[Value::Uint(u64::MAX)]), "-1");
    assert_eq!(fmt("%u", &[Value::Uint(u64::MAX)]), "18446744073709551615");
}

#[test]
fn strings_and_literals() {
    let s = Value::Str("hello".into());
    assert_eq!(fmt("%s", std::slice::from_ref(&s)), "hello");
    assert_eq!(fmt("%8s|", std::slice::from_ref(&s)), "   hello|");
    assert_eq!(fmt("%-8s|", std::slice::from_ref(&s)), "hello   |");
    assert_eq!(fmt("%.3s|", std::slice::from_ref(&s)), "hel|");
    assert_eq!(fmt("%6.2s|", &[s]), "    he|");
    assert_eq!(fmt("100%% [%s]\n", &[Value::Str("é".into())]), "100% [é]\n");
    assert_eq!(fmt("no conversions", &[]), "no conversions");
    // Missing arguments print as zero (the checker prevents this for programs).
    assert_eq!(fmt("%d %s|", &[]), "0 |");
}

#[test]
fn aggregation_values() {
    let f = Format::parse("%s %@d %@x|%@s").unwrap_or_else(|e| panic!("{e}"));
    let keys = [Value::Str("k".into())];
    assert_eq!(
        format(&f, &keys, Some(&AggArg::Scalar(255)), &|_| None),
        "k 255 ff|255"
    );
    assert_eq!(
        format(&f, &keys, Some(&AggArg::Text("H".into())), &|_| None),
        "k H H|H"
    );
}
