//! Aggregation keys and tables: a key is its values (equal strings in different allocations
//! are one key, however many values and however long the strings), and a table behaves as
//! a map from the key's values, checked against `std`'s `HashMap<Vec<Value>, _>`.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::runtime::value::compare_keys;

/// A string value in its own allocation.
fn fresh(s: &str) -> Value {
    Value::str(String::from(s))
}

fn long() -> String {
    "a long function name, longer than the fifty columns of the key field: ".repeat(4)
}

/// Mixed keys: strings (short, long, empty), negative and unsigned integers, 0 to 4 values
/// (more than the two held inline).
fn sample_keys() -> Vec<Vec<Value>> {
    vec![
        vec![],
        vec![fresh("func_1"), Value::Int(-5)],
        vec![fresh("func_1"), Value::Int(5)],
        vec![Value::Uint(u64::MAX), fresh("")],
        vec![fresh(&long()), Value::Int(i64::MIN)],
        vec![Value::Int(1), Value::Int(2), fresh("x"), Value::Uint(3)],
        vec![Value::Int(1), Value::Int(2), fresh("x")],
    ]
}

#[test]
fn keys_are_their_values() {
    for values in sample_keys() {
        let key = AggKey::new(values.clone());
        assert_eq!(&*key, values.as_slice());
        // The same values, strings copied into new allocations.
        let again = AggKey::new(values.iter().map(|v| match v {
            Value::Str(s) => fresh(s),
            v => v.clone(),
        }));
        assert_eq!(key, again, "{values:?}");
        assert_eq!(hash_values(&key), hash_values(&again));
    }
    let keys: Vec<AggKey> = sample_keys().into_iter().map(AggKey::new).collect();
    for (i, a) in keys.iter().enumerate() {
        for (j, b) in keys.iter().enumerate() {
            assert_eq!(a == b, i == j, "{a:?} {b:?}");
        }
    }
}

#[test]
fn keys_sort_as_their_values() {
    // Integers by value whatever their signedness, strings byte-wise after every integer.
    let want = vec![
        vec![Value::Int(i64::MIN)],
        vec![Value::Int(-1)],
        vec![Value::Uint(0)],
        vec![Value::Int(5)],
        vec![Value::Uint(u64::MAX)],
        vec![fresh("")],
        vec![fresh("a")],
        vec![fresh(&long())],
        vec![fresh("b")],
        vec![fresh("b"), Value::Int(-2)],
        vec![fresh("b"), Value::Int(7)],
    ];
    let mut keys: Vec<AggKey> = want.iter().rev().cloned().map(AggKey::new).collect();
    keys.sort_by(|a, b| compare_keys(a, b));
    let got: Vec<Vec<Value>> = keys.iter().map(|k| k.to_vec()).collect();
    assert_eq!(got, want);
}

/// Adds `values` = `n` to `table` the way a vCPU does: look up, else insert.
fn add(table: &mut AggTable, values: &[Value], n: u64) {
    let hash = hash_values(values);
    match table.get_mut(hash, values) {
        Some(v) => v.merge(&AggValue::Count(n)),
        None => assert!(table.insert_new(hash, &mut values.to_vec(), AggValue::Count(n))),
    }
}

#[test]
fn remove_keeps_the_other_entries() {
    let keys = sample_keys();
    let mut table = AggTable::default();
    for (n, k) in keys.iter().enumerate() {
        add(&mut table, k, n as u64 + 1);
    }
    for (i, k) in keys.iter().enumerate() {
        let removed = table.remove(&AggKey::new(k.clone()));
        assert_eq!(removed, Some(AggValue::Count(i as u64 + 1)));
        assert_eq!(table.get(k), None);
        assert_eq!(table.len(), keys.len() - i - 1);
        for (n, other) in keys.iter().enumerate().skip(i + 1) {
            assert_eq!(table.get(other), Some(&AggValue::Count(n as u64 + 1)));
        }
    }
    assert!(table.is_empty());
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Add(usize, u64),
    Fold(Vec<(usize, u64)>),
    Remove(usize),
    Clear,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let key = 0..sample_keys().len() + 3;
    let op = prop_oneof![
        6 => (key.clone(), 1..5u64).prop_map(|(k, n)| Op::Add(k, n)),
        3 => proptest::collection::vec((key.clone(), 1..5u64), 0..12).prop_map(Op::Fold),
        2 => key.prop_map(Op::Remove),
        1 => Just(Op::Clear),
    ];
    proptest::collection::vec(op, 0..60)
}

/// Key `i`: a sample key, or one integer key past them (each built in fresh allocations).
fn key(i: usize) -> Vec<Value> {
    sample_keys()
        .into_iter()
        .nth(i)
        .unwrap_or_else(|| vec![Value::Int(i as i64)])
}

proptest! {
    /// Adding, folding, removing and clearing give the entries a `HashMap` keyed by the
    /// values gives, and entries stay in the order they were added.
    #[test]
    fn table_matches_a_hash_map(ops in ops()) {
        let mut table = AggTable::default();
        let mut model: HashMap<Vec<Value>, u64> = HashMap::new();
        let mut order: Vec<Vec<Value>> = Vec::new();
        for op in ops {
            match op {
                Op::Add(k, n) => {
                    add(&mut table, &key(k), n);
                    *model.entry(key(k)).or_insert_with(|| { order.push(key(k)); 0 }) += n;
                }
                Op::Fold(entries) => {
                    let mut partial = AggTable::default();
                    for &(k, n) in &entries {
                        add(&mut partial, &key(k), n);
                    }
                    for (k, v) in partial {
                        let values = k.to_vec();
                        let added = matches!(table.fold_entry(k, v.clone()), Folded::Added(..));
                        let had = model.contains_key(&values);
                        prop_assert_eq!(added, !had);
                        if !had {
                            order.push(values.clone());
                        }
                        *model.entry(values).or_insert(0) += v.scalar().unwrap_or(0) as u64;
                    }
                }
                Op::Remove(k) => {
                    let removed = table.remove(&AggKey::new(key(k)));
                    prop_assert_eq!(removed, model.remove(&key(k)).map(AggValue::Count));
                    if let Some(at) = order.iter().position(|o| *o == key(k)) {
                        // The last entry takes the removed one's place.
                        order.swap_remove(at);
                    }
                }
                Op::Clear => {
                    table.clear();
                    model.clear();
                    order.clear();
                }
            }
            prop_assert_eq!(table.len(), model.len());
            for (k, n) in &model {
                prop_assert_eq!(table.get(k), Some(&AggValue::Count(*n)));
            }
            let keys: Vec<Vec<Value>> = table.iter().map(|(k, _)| k.to_vec()).collect();
            prop_assert_eq!(&keys, &order);
        }
        let copy = table.clone();
        prop_assert_eq!(&copy, &table);
    }
}
