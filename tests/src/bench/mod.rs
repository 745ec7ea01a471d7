//! The benchmark suite (`cargo bench -p tests --bench hvtrace`): every row is a measurement, a
//! baseline measured in the same run, their ratio and the goal. Groups live in their own
//! modules; `report.rs` prints the table, writes `target/bench/results.json`, regenerates the
//! tables in `docs/BENCHMARKS.md` and draws SVG plots of the latency distributions.

pub mod apic;
pub mod boot;
pub mod consumer;
pub mod exits;
pub mod memory;
pub mod report;
pub mod spin;
pub mod stw;

use std::time::Duration;

/// How long the suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// A handful of iterations: checks the suite works (the test runs this), numbers are noise.
    Tiny,
    /// The default: under 10 minutes on a 2-core machine.
    Default,
    /// More repetitions for steadier numbers.
    Long,
}

impl Size {
    /// `tiny`, `default` or `long`.
    pub fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny",
            Size::Default => "default",
            Size::Long => "long",
        }
    }

    /// `tiny`, `default` and `long` values of a setting.
    pub fn pick<T>(self, tiny: T, default: T, long: T) -> T {
        match self {
            Size::Tiny => tiny,
            Size::Default => default,
            Size::Long => long,
        }
    }
}

/// A goal a row is judged against.
#[derive(Clone, Debug, PartialEq)]
pub enum Goal {
    /// The ratio must be at most this.
    MaxRatio(f64),
    /// The value must be at least this.
    MinValue(f64),
    /// The value must be at most this.
    MaxValue(f64),
    /// Reported, no goal.
    Report,
}

impl Goal {
    /// Whether `row` meets it (`None`: no goal, or nothing measured).
    pub fn met(&self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match *self {
            Goal::MaxRatio(max) => ratio.map(|r| r <= max),
            Goal::MinValue(min) => Some(value >= min),
            Goal::MaxValue(max) => Some(value <= max),
            Goal::Report => None,
        }
    }

    /// How the goal reads in a table.
    pub fn text(&self, unit: &str) -> String {
        match *self {
            Goal::MaxRatio(max) => format!("<= {max}x"),
            Goal::MinValue(min) => format!(">= {} {unit}", fmt_value(min)),
            Goal::MaxValue(max) => format!("<= {} {unit}", fmt_value(max)),
            Goal::Report => "reported".into(),
        }
    }
}

/// The note of a row whose difference of two timed runs came out <= 0.
pub const BELOW_NOISE: &str =
    "below the noise: a difference of two timed runs came out <= 0 (the machine was busy), rerun";

/// One measured row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The group (`exits`, `probes`, `stop-the-world`, ...).
    pub group: &'static str,
    /// What it measures.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// The unit of the value (`µs`, `ms`, `MiB`, `M records/s`, ...).
    pub unit: &'static str,
    /// The baseline measured in the same run: its name and value (same unit).
    pub baseline: Option<(String, f64)>,
    /// The goal.
    pub goal: Goal,
    /// Anything the reader should know (p99, exits per hit, why a peer is missing).
    pub note: String,
    /// The samples behind the value, for plots (latencies, in the row's unit).
    pub samples: Vec<f64>,
}

impl Row {
    /// A row without baseline, goal, note or samples.
    pub fn new(
        group: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Row {
            group,
            name: name.into(),
            value,
            unit,
            baseline: None,
            goal: Goal::Report,
            note: String::new(),
            samples: Vec::new(),
        }
    }

    /// With a baseline.
    pub fn against(mut self, name: impl Into<String>, value: f64) -> Self {
        self.baseline = Some((name.into(), value));
        self
    }

    /// With a goal.
    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = goal;
        self
    }

    /// With a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// With samples.
    pub fn samples(mut self, samples: Vec<f64>) -> Self {
        self.samples = samples;
        self
    }

    /// For a row whose value or baseline is the difference of two timed runs: where one came
    /// out <= 0 (a busy machine stretched the shorter run), the row says so in its note
    /// ([`BELOW_NOISE`]) and judges no goal on it.
    pub fn checked_difference(mut self) -> Self {
        let baseline_bad = self.baseline.as_ref().is_some_and(|(_, b)| *b <= 0.0);
        if self.value <= 0.0 || baseline_bad {
            self.goal = Goal::Report;
            self.note = match self.note.is_empty() {
                true => BELOW_NOISE.into(),
                false => format!("{}; {BELOW_NOISE}", self.note),
            };
        }
        self
    }

    /// value / baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|(_, b)| *b > 0.0)
            .map(|(_, b)| self.value / b)
    }

    /// Whether the goal is met.
    pub fn met(&self) -> Option<bool> {
        self.goal.met(self.value, self.ratio())
    }
}

/// A number with sensible precision.
pub fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The median of `v` (the upper of the two middle values for an even count). Panics if `v`
/// is empty or holds values that do not compare (NaN).
pub fn median<T: Copy + PartialOrd>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

/// The `p`-quantile (0..=1) of `v`. Panics if `v` is empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

/// The environment variable `name` as a number, or `default` when it is unset or not one.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Microseconds in a duration.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What kind of KVM this host has.
pub fn host_kind() -> String {
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return "software KVM (kvm_pvm, nested)".to_string();
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = |flag: &str| {
        cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|w| w == flag))
    };
    if has("vmx") {
        "hardware KVM (Intel VT-x)".into()
    } else if has("svm") {
        "hardware KVM (AMD-V)".into()
    } else {
        "KVM of unknown kind (no vmx/svm flag)".into()
    }
}

/// The machine: CPU model and count.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} x {model}")
}

/// Groups in the order they run.
pub const GROUPS: [&str; 6] = [
    "exits",
    "stop-the-world",
    "apic",
    "whole run",
    "memory",
    "consumer",
];

/// Runs the groups named in `only` (all when empty) at `size`, telling `progress` as each
/// group starts.
pub fn run_all(size: Size, only: &[String], progress: &mut dyn FnMut(&str)) -> Vec<Row> {
    let wanted = |g: &str| only.is_empty() || only.iter().any(|o| o == g);
    let mut rows = Vec::new();
    for group in GROUPS.into_iter().filter(|g| wanted(g)) {
        progress(group);
        rows.extend(match group {
            // The exit group also yields the probe and probe-scaling rows.
            "exits" => exits::rows(size),
            "stop-the-world" => stw::rows(size),
            "apic" => apic::rows(size),
            "whole run" => boot::rows(size),
            "memory" => memory::rows(size),
            _ => consumer::rows(size),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_at_or_below_zero_judges_nothing_and_says_why() {
        let fine = Row::new("probes", "hit", 5.0, "µs")
            .against("bare", 8.0)
            .goal(Goal::MaxRatio(1.2))
            .note("1.000 exits per hit")
            .checked_difference();
        assert_eq!(fine.goal, Goal::MaxRatio(1.2));
        assert_eq!(fine.note, "1.000 exits per hit");
        let negative = Row::new("exits", "bare", -4.7, "µs").checked_difference();
        assert_eq!(negative.note, BELOW_NOISE);
        let bad_baseline = Row::new("probes", "hit", 5.0, "µs")
            .against("bare", -4.7)
            .goal(Goal::MaxRatio(1.2))
            .note("1.000 exits per hit")
            .checked_difference();
        assert_eq!(bad_baseline.goal, Goal::Report);
        assert_eq!(bad_baseline.met(), None);
        assert!(bad_baseline
            .note
            .starts_with("1.000 exits per hit; below the noise"));
    }
}
