//! Small helpers shared by the benchmarks in `benches/`.

/// The median of `v` (the upper of the two middle values for an even count). Panics if `v`
/// is empty or holds values that do not compare (NaN).
pub fn median<T: Copy + PartialOrd>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

/// The environment variable `name` as a number, or `default` when it is unset or not one.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
