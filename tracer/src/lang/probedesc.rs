//! Probe descriptions: `provider:module:function:name`, each field a shell-style glob, and
//! the rates in `tick-N` / `profile-N` probe names.
//!
//! As in DTrace, a description with fewer than four fields fills them from the right: `BEGIN`
//! is name `BEGIN`, `foo:entry` is function `foo` and name `entry`, `m:f:n` adds the module.
//! An empty field matches anything (`fbt::xcall_*:entry` matches every module).
//!
//! Glob syntax: `*` (any run of characters, the empty one included), `?` (one character),
//! `[abc]`, `[a-z]`, `[!a-z]` or `[^a-z]` (one character in / not in the set), `\x` (`x`
//! literally). Matching is [`crate::symbols::glob_match`], the crate's one glob matcher, so
//! descriptions and symbol lookups agree.

use std::fmt;

use super::source::Span;
pub use crate::symbols::glob_match;

/// A probe description from a clause, or from a `hvtrace list PATTERN` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeDesc {
    /// Provider glob (`fbt`, `apic`, `vmexit`, `dtrace`, `tick`, `profile`, ...); empty: any.
    pub provider: String,
    /// Module glob; empty: any.
    pub module: String,
    /// Function glob; empty: any.
    pub function: String,
    /// Name glob (`entry`, `return`, `BEGIN`, `tick-1s`); empty: any.
    pub name: String,
    /// Where the description is in the program (default for parsed patterns).
    pub span: Span,
}

impl ProbeDesc {
    /// Parses `text` (one to four `:`-separated fields). Errors say what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty probe description".into());
        }
        let fields: Vec<&str> = text.split(':').collect();
        if fields.len() > 4 {
            return Err(format!(
                "probe description `{text}` has {} fields; at most four (provider:module:function:name)",
                fields.len()
            ));
        }
        for field in &fields {
            check_glob(field).map_err(|e| format!("in probe description `{text}`: {e}"))?;
        }
        let mut all = vec![""; 4 - fields.len()];
        all.extend(fields);
        Ok(Self {
            provider: all[0].to_string(),
            module: all[1].to_string(),
            function: all[2].to_string(),
            name: all[3].to_string(),
            span: Span::default(),
        })
    }

    /// Does the probe `provider:module:function:name` match this description?
    pub fn matches(&self, provider: &str, module: &str, function: &str, name: &str) -> bool {
        field_matches(&self.provider, provider)
            && field_matches(&self.module, module)
            && field_matches(&self.function, function)
            && field_matches(&self.name, name)
    }

    /// Whether any field contains glob characters (or is empty, matching anything): such a
    /// description may match many probes.
    pub fn is_pattern(&self) -> bool {
        [&self.provider, &self.module, &self.function, &self.name]
            .iter()
            .any(|f| f.is_empty() || f.contains(['*', '?', '[', '\\']))
    }

    /// For a `tick-N[unit]` or `profile-N[unit]` name: the provider kind and the period in
    /// nanoseconds. `None` for other names; `Some(Err)` for a malformed rate.
    pub fn timer(&self) -> Option<Result<(TimerKind, u64), String>> {
        let (kind, rate) = if let Some(rate) = self.name.strip_prefix("tick-") {
            (TimerKind::Tick, rate)
        } else if let Some(rate) = self.name.strip_prefix("profile-") {
            (TimerKind::Profile, rate)
        } else {
            return None;
        };
        Some(timer_period(rate).map(|ns| (kind, ns)))
    }
}

impl fmt::Display for ProbeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.provider, self.module, self.function, self.name
        )
    }
}

/// The two timer-driven providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// `tick-N`: fires on one CPU.
    Tick,
    /// `profile-N`: samples every vCPU.
    Profile,
}

/// The period in nanoseconds of a rate such as `1s`, `10ms`, `997hz` or `997` (a bare number
/// is a frequency in hertz, as in DTrace). Units: `ns`/`nsec`, `us`/`usec`, `ms`/`msec`,
/// `s`/`sec`, `m`/`min`, `h`/`hour`, `d`/`day`, `hz`.
pub fn timer_period(rate: &str) -> Result<u64, String> {
    let digits = rate.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = rate.split_at(digits);
    let n: u64 = number.parse().map_err(|_| {
        format!("invalid rate `{rate}`: expected a number and a unit, as in `1s` or `997hz`")
    })?;
    if n == 0 {
        return Err(format!("invalid rate `{rate}`: must not be zero"));
    }
    const NS: u64 = 1;
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    let per = match unit {
        "ns" | "nsec" => NS,
        "us" | "usec" => US,
        "ms" | "msec" => MS,
        "s" | "sec" => S,
        "m" | "min" => 60 * S,
        "h" | "hour" => 3600 * S,
        "d" | "day" => 86400 * S,
        "" | "hz" => {
            return Ok((S / n).max(1));
        }
        _ => {
            return Err(format!(
                "invalid rate unit `{unit}` in `{rate}` (ns, us, ms, s, m, h, d or hz)"
            ))
        }
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("rate `{rate}` is too long a period"))
}

fn field_matches(pattern: &str, text: &str) -> bool {
    pattern.is_empty() || glob_match(pattern, text)
}

/// Checks that every `[` in a glob has its `]`.
fn check_glob(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '[' => match class_end(&chars, i) {
                Some(end) => i = end,
                None => return Err(format!("unterminated `[` in `{pattern}`")),
            },
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index just past the `]` closing the class that opens at `open`.
fn class_end(p: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(p.get(i), Some('!' | '^')) {
        i += 1;
    }
    // A `]` right after the opening (and negation) is a member, not the end.
    if p.get(i) == Some(&']') {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            ']' => return Some(i + 1),
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(s: &str) -> ProbeDesc {
        ProbeDesc::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn fewer_fields_fill_from_the_right() {
        let d = desc("BEGIN");
        assert_eq!((d.provider.as_str(), d.name.as_str()), ("", "BEGIN"));
        let d = desc("foo:entry");
        assert_eq!((d.function.as_str(), d.name.as_str()), ("foo", "entry"));
        let d = desc("m:f:n");
        assert_eq!(
            (d.module.as_str(), d.function.as_str(), d.name.as_str()),
            ("m", "f", "n")
        );
        let d = desc("fbt::xcall_*:entry");
        assert_eq!(d.to_string(), "fbt::xcall_*:entry");
        let d = desc("apic:::eoi");
        assert!(d.matches("apic", "", "", "eoi"));
        assert!(!d.matches("apic", "", "", "accept"));
    }

    #[test]
    fn matching_uses_globs_in_every_field() {
        let d = desc("fbt::xcall_*:entry");
        assert!(d.matches("fbt", "kernel", "xcall_send", "entry"));
        assert!(d.matches("fbt", "", "xcall_", "entry"));
        assert!(!d.matches("fbt", "kernel", "xcall_send", "return"));
        assert!(!d.matches("fbt", "kernel", "ipi_send", "entry"));
        assert!(desc("BEGIN").matches("dtrace", "", "", "BEGIN"));
        assert!(desc("f*:*:x?[0-9]:n").matches("fbt", "m", "xa7", "n"));
        assert!(desc("vmexit:::io").matches("vmexit", "", "", "io"));
    }

    #[test]
    fn bad_descriptions() {
        assert!(ProbeDesc::parse("a:b:c:d:e")
            .unwrap_err()
            .contains("has 5 fields"));
        assert!(ProbeDesc::parse("fbt::foo[:entry")
            .unwrap_err()
            .contains("unterminated `[`"));
        assert!(ProbeDesc::parse("").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("?", "é"));
        assert!(!glob_match("?", ""));
        assert!(glob_match("[abc]x", "bx"));
        assert!(!glob_match("[!abc]x", "bx"));
        assert!(glob_match("[^abc]x", "dx"));
        assert!(glob_match("[a-c]", "b"));
        assert!(!glob_match("[a-c]", "d"));
        assert!(glob_match("[]]", "]"));
        assert!(glob_match("[a-]", "-"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "x"));
        assert!(glob_match("[", "["));
        assert!(glob_match("a[", "a["));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
        assert!(glob_match("**a**", "bab"));
        // Backtracking stays linear-ish: a pathological pattern finishes quickly.
        let text = "a".repeat(200);
        assert!(!glob_match(&format!("{}b", "*a".repeat(50)), &text));
    }

    #[test]
    fn is_pattern() {
        assert!(!desc("fbt:k:f:entry").is_pattern());
        assert!(desc("fbt::f:entry").is_pattern());
        assert!(desc("fbt:k:f*:entry").is_pattern());
    }

    #[test]
    fn timer_rates() {
        assert_eq!(timer_period("1s"), Ok(1_000_000_000));
        assert_eq!(timer_period("10ms"), Ok(10_000_000));
        assert_eq!(timer_period("5us"), Ok(5_000));
        assert_eq!(timer_period("7nsec"), Ok(7));
        assert_eq!(timer_period("997hz"), Ok(1_003_009));
        assert_eq!(timer_period("1000"), Ok(1_000_000));
        assert_eq!(timer_period("2min"), Ok(120_000_000_000));
        assert!(timer_period("0s").is_err());
        assert!(timer_period("s").is_err());
        assert!(timer_period("1parsec").is_err());
        assert!(timer_period("99999999999999999999d").is_err());
        assert!(timer_period("999999999999d").is_err());
        let d = desc("tick-1s");
        assert_eq!(d.timer(), Some(Ok((TimerKind::Tick, 1_000_000_000))));
        let d = desc("profile-997hz");
        assert_eq!(d.timer(), Some(Ok((TimerKind::Profile, 1_003_009))));
        assert_eq!(desc("BEGIN").timer(), None);
        assert!(matches!(desc("tick-x").timer(), Some(Err(_))));
    }
}
