//! Golden tests of aggregation printing against DTrace's layout (`dt_print_quantize`,
//! `dt_print_lquantize`, `dt_print_datum`), whole outputs as the end of a trace prints them.

use crate::runtime::tests::Harness;
use crate::runtime::{OutputFormat, ProbeInfo};

fn end_output(src: &str) -> String {
    let mut h = Harness::new(src);
    h.fire(&ProbeInfo::begin());
    h.output(true, OutputFormat::Text).stdout
}

const HEADER: &str = "           value  ------------- Distribution ------------- count    \n";

#[test]
fn quantize_histogram() {
    let got = end_output(
        "BEGIN { @ = quantize(1); @ = quantize(2); @ = quantize(3); @ = quantize(100); }",
    );
    let want = [
        "\n",
        "\n",
        HEADER,
        "               0 |                                         0        \n",
        "               1 |@@@@@@@@@@                               1        \n",
        "               2 |@@@@@@@@@@@@@@@@@@@@                     2        \n",
        "               4 |                                         0        \n",
        "               8 |                                         0        \n",
        "              16 |                                         0        \n",
        "              32 |                                         0        \n",
        "              64 |@@@@@@@@@@                               1        \n",
        "             128 |                                         0        \n",
        "\n",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn quantize_negative_values() {
    let got = end_output("BEGIN { @ = quantize(-1); @ = quantize(-3); @ = quantize(0); }");
    let want = [
        "\n",
        "\n",
        HEADER,
        "              -4 |                                         0        \n",
        "              -2 |@@@@@@@@@@@@@                            1        \n",
        "              -1 |@@@@@@@@@@@@@                            1        \n",
        "               0 |@@@@@@@@@@@@@                            1        \n",
        "               1 |                                         0        \n",
        "\n",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn cleared_quantize_prints_the_buckets_around_zero() {
    let got = end_output("BEGIN { @ = quantize(5); clear(@); }");
    let want = [
        "\n",
        "\n",
        HEADER,
        "              -1 |                                         0        \n",
        "               0 |                                         0        \n",
        "               1 |                                         0        \n",
        "\n",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn lquantize_histogram_with_underflow_and_overflow() {
    let got = end_output(
        "BEGIN { @ = lquantize(-5, 0, 10, 2); @ = lquantize(1, 0, 10, 2); @ = lquantize(3, 0, 10, 2); @ = lquantize(3, 0, 10, 2); @ = lquantize(9, 0, 10, 2); @ = lquantize(10, 0, 10, 2); @ = lquantize(50, 0, 10, 2); }",
    );
    let want = [
        "\n",
        "\n",
        HEADER,
        "             < 0 |@@@@@@                                   1        \n",
        "               0 |@@@@@@                                   1        \n",
        "               2 |@@@@@@@@@@@                              2        \n",
        "               4 |                                         0        \n",
        "               6 |                                         0        \n",
        "               8 |@@@@@@                                   1        \n",
        "           >= 10 |@@@@@@@@@@@                              2        \n",
        "\n",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn keyed_counts_sorted_by_value() {
    let got = end_output(
        "BEGIN { @[\"xcall_send\"] = count(); @[\"xcall_send\"] = count(); @[\"ipi_recv\"] = count(); @[\"xcall_send\"] = count(); }",
    );
    let want = [
        "\n",
        "  ipi_recv                                                          1\n",
        "  xcall_send                                                        3\n",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn integer_keys_and_scalar_functions() {
    let got = end_output(
        "BEGIN { @s[1, -5] = sum(10); @s[1, -5] = sum(-3); @m = min(4); @m = min(-2); @x = max(4); @a = avg(3); @a = avg(4); @c = count(); }",
    );
    let want = [
        "\n",
        "                1               -5                7\n",
        "               -2\n",
        "                4\n",
        "                3\n",
        "                1\n",
    ]
    .concat();
    assert_eq!(got, want);
}

/// A key longer than the 50 columns of the key field.
const LONG: &str = "axxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

#[test]
fn string_and_integer_keys_sorted_by_value_then_key() {
    // "zz" built by strjoin is the same key as the literal "zz"; "a" sorts before the
    // 60-character string it starts; the long string is printed whole.
    let got = end_output(&format!(
        r#"BEGIN {{ @["zz", -5] = sum(1); @["zz", 3] = sum(1); @["a", 3] = sum(1);
        @[strjoin("z", "z"), -5] = sum(1); @["{LONG}", 0] = sum(1); }}"#
    ));
    let want = [
        "\n",
        "  a                                                                 3                1\n",
        "  axxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx                0                1\n",
        "  zz                                                                3                1\n",
        "  zz                                                               -5                2\n",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn keyed_quantize_prints_the_key_then_the_histogram() {
    let got = end_output("BEGIN { @[\"bash\"] = quantize(1); }");
    let want = [
        "\n",
        "  bash                                              \n",
        HEADER,
        "               0 |                                         0        \n",
        "               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 1        \n",
        "               2 |                                         0        \n",
        "\n",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn printa_default_and_formatted() {
    let mut h = Harness::new(
        "BEGIN { @c[\"a\", 2] = count(); @c[\"b\", 1] = count(); @c[\"b\", 1] = count(); @q = quantize(1); }\n\
         END { printa(@c); printa(\"%s-%d: %@d\\n\", @c); printa(\"[%@d]\", @q); }",
    );
    h.fire(&ProbeInfo::begin());
    h.fire(&ProbeInfo::end());
    let got = h.output(true, OutputFormat::Text).stdout;
    let want = [
        "\n",
        "  a                                                                 2                1\n",
        "  b                                                                 1                2\n",
        "a-2: 1\n",
        "b-1: 2\n",
        "[",
        "\n",
        HEADER,
        "               0 |                                         0        \n",
        "               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 1        \n",
        "               2 |                                         0        \n",
        "]",
        // The end of the trace: every aggregation was printed by printa.
        "\n",
    ]
    .concat();
    assert_eq!(got, want);
}
