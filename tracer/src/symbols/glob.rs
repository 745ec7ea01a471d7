//! Shell-style glob matching for probe-description fields, as DTrace matches them.
//!
//! Supported syntax: `*` (any run of characters, empty included), `?` (exactly one character),
//! `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` (one character from / not from a set) and `\x` (the
//! character `x` literally). A `[` without a closing `]` matches itself. Matching is on
//! `char`s, runs in O(pattern x name) time at worst (no exponential backtracking) and never
//! panics. An empty pattern matches only the empty name: callers that give an empty
//! probe-description field DTrace's "match anything" meaning pass `"*"` instead.

/// Does `name` match the glob `pattern`? See the module documentation for the syntax.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let pat: Vec<char> = pattern.chars().collect();
    let txt: Vec<char> = name.chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the most recent `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        if p < pat.len() {
            if pat[p] == '*' {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            if let Some(next) = match_one(&pat, p, txt[t]) {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == '*')
}

/// Is `pattern` a glob (does it contain `*`, `?`, `[` or `\`)? A plain name can be looked up
/// directly instead of matched against every symbol.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// Matches one pattern element starting at `pat[p]` (not `*`) against `c`; returns the index
/// of the next pattern element when it matches.
fn match_one(pat: &[char], p: usize, c: char) -> Option<usize> {
    match pat[p] {
        '?' => Some(p + 1),
        '\\' if p + 1 < pat.len() => (pat[p + 1] == c).then_some(p + 2),
        '[' => match match_class(pat, p, c) {
            Some((matched, next)) => matched.then_some(next),
            // No closing bracket: `[` is an ordinary character.
            None => (c == '[').then_some(p + 1),
        },
        lit => (lit == c).then_some(p + 1),
    }
}

/// Matches the bracket expression at `pat[p] == '['` against `c`. Returns whether `c` is in
/// the class and the index after the closing `]`, or `None` when the class is unterminated.
fn match_class(pat: &[char], p: usize, c: char) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negated = matches!(pat.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let lo = *pat.get(i)?;
        if lo == ']' && !first {
            return Some((found != negated, i + 1));
        }
        first = false;
        let (lo, after_lo) = if lo == '\\' {
            (*pat.get(i + 1)?, i + 2)
        } else {
            (lo, i + 1)
        };
        if pat.get(after_lo) == Some(&'-') && pat.get(after_lo + 1).is_some_and(|&h| h != ']') {
            let (hi, after_hi) = if pat[after_lo + 1] == '\\' {
                (*pat.get(after_lo + 2)?, after_lo + 3)
            } else {
                (pat[after_lo + 1], after_lo + 2)
            };
            found |= lo <= c && c <= hi;
            i = after_hi;
        } else {
            found |= lo == c;
            i = after_lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_wildcards() {
        assert!(glob_match("xcall", "xcall"));
        assert!(!glob_match("xcall", "xcall_handler"));
        assert!(glob_match("xcall*", "xcall_handler"));
        assert!(glob_match("xcall_*", "xcall_handler"));
        assert!(!glob_match("xcall_*", "xcall"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
        assert!(glob_match("*return_thunk*", "__x86_return_thunk"));
        assert!(glob_match("s?rial_*", "serial_putc"));
        assert!(!glob_match("s?rial", "srial"));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYYbd"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(glob_match("ap_[a-m]ain", "ap_main"));
        assert!(!glob_match("ap_[!a-m]ain", "ap_main"));
        assert!(glob_match("ap_[^a-l]ain", "ap_main"));
        assert!(glob_match("x[]]y", "x]y"));
        assert!(glob_match("x[a-]y", "x-y"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("a[b", "a[b"));
        assert!(glob_match("a\\", "a\\"), "a trailing backslash is literal");
    }

    #[test]
    fn no_exponential_backtracking() {
        let name = "a".repeat(200);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob_match(&pattern, &name));
    }

    #[test]
    fn is_glob_detects_metacharacters() {
        assert!(is_glob("a*"));
        assert!(is_glob("a?"));
        assert!(is_glob("[ab]"));
        assert!(!is_glob("serial_putc"));
    }
}
