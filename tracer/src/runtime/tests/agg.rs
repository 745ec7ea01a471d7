//! Aggregation values: buckets, folding (associative and commutative), clear, trunc, order.

use proptest::prelude::*;

use super::*;

#[test]
fn quantize_buckets_match_dtrace() {
    for (v, bucket_value) in [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 2),
        (4, 4),
        (100, 64),
        (i64::MAX, 1 << 62),
        (-1, -1),
        (-2, -2),
        (-3, -2),
        (-4, -4),
        (-100, -64),
        (i64::MIN, -(1 << 62)),
    ] {
        assert_eq!(
            quantize_bucket_value(quantize_bucket(v)),
            bucket_value,
            "{v}"
        );
    }
    assert_eq!(quantize_bucket(0), QUANTIZE_ZERO);
    assert_eq!(quantize_bucket(i64::MAX), QUANTIZE_BUCKETS - 1);
    assert_eq!(quantize_bucket(i64::MIN), 0);
}

#[test]
fn lquantize_buckets() {
    let levels = lquantize_levels(0, 10, 2);
    assert_eq!(levels, 5);
    for (v, b) in [
        (-1, 0),
        (0, 1),
        (1, 1),
        (2, 2),
        (9, 5),
        (10, 6),
        (i64::MAX, 6),
        (i64::MIN, 0),
    ] {
        assert_eq!(lquantize_bucket(v, 0, 2, levels), b, "{v}");
    }
    assert_eq!(lquantize_levels(0, 10, 0), 0);
    assert_eq!(lquantize_levels(10, 0, 1), 0);
}

#[test]
fn add_and_scalar() {
    let mut v = AggValue::new(AggFunc::Avg);
    assert_eq!(v.scalar(), Some(0));
    for x in [1, 2, 6] {
        v.add(AggFunc::Avg, x);
    }
    assert_eq!(v.scalar(), Some(3));
    let mut m = AggValue::new(AggFunc::Min);
    m.add(AggFunc::Min, 5);
    m.add(AggFunc::Min, -5);
    assert_eq!(m.scalar(), Some(-5));
    m.clear();
    assert_eq!(m, AggValue::Min(None));
    let mut s = AggValue::new(AggFunc::Sum);
    s.add(AggFunc::Sum, i64::MAX);
    s.add(AggFunc::Sum, 1);
    assert_eq!(s.scalar(), Some(i64::MIN));
}

fn set_of(func: AggFunc, entries: &[(i64, i64)]) -> AggSet {
    let mut s = AggSet::with_len(1);
    for &(k, v) in entries {
        s.add(0, func, vec![Value::Int(k)], v, usize::MAX);
    }
    s
}

#[test]
fn sorted_by_value_then_key_and_trunc() {
    let s = set_of(AggFunc::Sum, &[(1, 30), (2, 10), (3, 20), (4, 10)]);
    let order: Vec<i64> = s
        .sorted(0, AggFunc::Sum)
        .iter()
        .map(|(k, _)| k[0].bits() as i64)
        .collect();
    assert_eq!(order, vec![2, 4, 3, 1]);
    let mut top = s.clone();
    top.trunc(0, AggFunc::Sum, Some(2));
    let keys: Vec<i64> = top
        .sorted(0, AggFunc::Sum)
        .iter()
        .map(|(k, _)| k[0].bits() as i64)
        .collect();
    assert_eq!(keys, vec![3, 1]);
    let mut bottom = s.clone();
    bottom.trunc(0, AggFunc::Sum, Some(-1));
    assert_eq!(bottom.len(), 1);
    assert!(bottom
        .table(0)
        .is_some_and(|t| t.get(&[Value::Int(2)]).is_some()));
    let mut all = s.clone();
    all.trunc(0, AggFunc::Sum, Some(100));
    assert_eq!(all.len(), 4);
    all.trunc(0, AggFunc::Sum, None);
    assert!(all.is_empty());
    let mut cleared = s;
    cleared.clear(0);
    assert_eq!(cleared.len(), 4);
    assert!(cleared
        .sorted(0, AggFunc::Sum)
        .iter()
        .all(|(_, v)| v.scalar() == Some(0)));
}

#[test]
fn the_memory_budget_limits_new_keys_only() {
    let one = entry_bytes(&[Value::Int(1)], &AggValue::Count(0));
    let mut s = AggSet::with_len(1);
    assert!(s.add(0, AggFunc::Count, vec![Value::Int(1)], 0, one));
    assert!(!s.add(0, AggFunc::Count, vec![Value::Int(2)], 0, one));
    assert!(s.add(0, AggFunc::Count, vec![Value::Int(1)], 0, one));
    assert!(!s.add(5, AggFunc::Count, vec![], 0, usize::MAX));
    assert_eq!(s.bytes(), one);
    // Histograms and strings cost more.
    let q = entry_bytes(
        &[Value::Str("abcdef".into())],
        &AggValue::new(AggFunc::Quantize),
    );
    assert_eq!(q, 64 + 32 + 6 + 127 * 8);
    let taken = s.take();
    assert_eq!((taken.len(), taken.bytes()), (1, one));
    assert!(s.is_empty());
    assert_eq!(s.bytes(), 0);
}

#[test]
fn bytes_follow_fold_and_trunc() {
    let mut a = set_of(AggFunc::Sum, &[(1, 1), (2, 2)]);
    let per = a.bytes() / 2;
    a.fold(set_of(AggFunc::Sum, &[(2, 5), (3, 1)]));
    assert_eq!(a.bytes(), 3 * per);
    a.trunc(0, AggFunc::Sum, Some(1));
    assert_eq!(a.bytes(), per);
    a.trunc(0, AggFunc::Sum, None);
    assert_eq!(a.bytes(), 0);
}

fn funcs() -> impl Strategy<Value = AggFunc> {
    prop_oneof![
        Just(AggFunc::Count),
        Just(AggFunc::Sum),
        Just(AggFunc::Min),
        Just(AggFunc::Max),
        Just(AggFunc::Avg),
        Just(AggFunc::Quantize),
        Just(AggFunc::Lquantize {
            lo: -50,
            hi: 50,
            step: 7
        }),
    ]
}

fn partial(func: AggFunc, vals: &[(u8, i64)]) -> AggSet {
    let mut s = AggSet::with_len(1);
    for &(k, v) in vals {
        s.add(0, func, vec![Value::Int(i64::from(k % 4))], v, usize::MAX);
    }
    s
}

proptest! {
    /// Folding is associative and commutative, and folding partials equals aggregating
    /// everything in one place.
    #[test]
    fn folding_is_associative_and_commutative(
        func in funcs(),
        a in proptest::collection::vec((any::<u8>(), any::<i64>()), 0..20),
        b in proptest::collection::vec((any::<u8>(), any::<i64>()), 0..20),
        c in proptest::collection::vec((any::<u8>(), any::<i64>()), 0..20),
    ) {
        let (pa, pb, pc) = (partial(func, &a), partial(func, &b), partial(func, &c));
        let mut left = pa.clone();
        left.fold(pb.clone());
        left.fold(pc.clone());
        let mut bc = pb.clone();
        bc.fold(pc.clone());
        let mut right = pa.clone();
        right.fold(bc);
        prop_assert_eq!(&left, &right);
        let mut swapped = pc;
        swapped.fold(pa);
        swapped.fold(pb);
        prop_assert_eq!(&left, &swapped);
        let all: Vec<(u8, i64)> = a.iter().chain(&b).chain(&c).copied().collect();
        prop_assert_eq!(&left, &partial(func, &all));
    }
}
