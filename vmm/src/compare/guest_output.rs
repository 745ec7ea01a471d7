//! What a guest says about itself on its serial console: conformance checks (`PASS name`,
//! `FAIL name: detail`, `SKIP name: detail`, as the `apic-conformance` guest prints them) and
//! numbers (`label key=value`, as `ipi-bench` and `xcall-lab` print them).

use std::collections::BTreeMap;

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// The behaviour the SDM specifies.
    Pass,
    /// Something else.
    Fail,
    /// Not applicable here (e.g. a feature not offered).
    Skip,
}

impl Verdict {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// One check the guest reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Its name.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// What the guest said about it (after the name), empty for a pass.
    pub detail: String,
}

/// The checks in `text`, in order.
pub fn checks(text: &str) -> Vec<Check> {
    text.lines()
        .filter_map(|line| {
            let (word, rest) = line.trim_end().split_once(' ')?;
            let verdict = match word {
                "PASS" => Verdict::Pass,
                "FAIL" => Verdict::Fail,
                "SKIP" => Verdict::Skip,
                _ => return None,
            };
            let (name, detail) = rest.split_once(": ").unwrap_or((rest, ""));
            (!name.is_empty() && !name.contains(' ')).then(|| Check {
                name: name.to_string(),
                verdict,
                detail: detail.to_string(),
            })
        })
        .collect()
}

/// The numbers in `text`: for a line `prog: label words key=value ...`, `label words key` =
/// value for each numeric value (the first word, ending in `:`, is the program's name).
pub fn metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if !checks(line).is_empty() {
            continue; // a check's detail is prose, not a measurement
        }
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| w.ends_with(':')) {
            words.next();
        }
        let mut label: Vec<&str> = Vec::new();
        for w in words {
            match w.split_once('=').filter(|(key, _)| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }) {
                Some((key, value)) => {
                    if let Ok(v) = value.parse::<f64>() {
                        let mut name = label.join(" ");
                        if !name.is_empty() {
                            name.push(' ');
                        }
                        name.push_str(key);
                        out.insert(name, v);
                    }
                }
                None => label.push(w.trim_end_matches(':')),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_numbers() {
        let text = "PASS version\nFAIL ppr_rule: ISR bit: expected 0x1, got 0x0\n\
                    SKIP directed_eoi: bit 24 clear\napic-conformance: 1 passed\n\
                    ipi-bench: ipi_roundtrip_ns median=112977 p99=158785 n=200\n";
        let c = checks(text);
        assert_eq!(c.len(), 3);
        assert_eq!(c[1].name, "ppr_rule");
        assert_eq!(c[1].verdict, Verdict::Fail);
        assert_eq!(c[1].detail, "ISR bit: expected 0x1, got 0x0");
        let m = metrics(text);
        assert_eq!(m["ipi_roundtrip_ns median"], 112977.0);
        assert_eq!(m["ipi_roundtrip_ns n"], 200.0);
        assert!(!m.keys().any(|k| k.contains("PASS")));
        let m = metrics("FAIL nested: handler with IF=1 gets 0x91\nx: (a=1) b=2\n");
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m["(a=1) b"], 2.0);
    }
}
