//! The probe catalogue: every probe an image offers, as `hvtrace list` shows it (DTrace's
//! `dtrace -l`), and matching of `provider:module:function:name` descriptions against it.
//!
//! Providers:
//! - `dtrace:::BEGIN`, `END`, `ERROR`;
//! - `fbt:MODULE:FUNCTION:entry` for every function whose code decodes as 64-bit code, and
//!   `:return` for those of them with at least one return site. As in DTrace's fbt, a function
//!   that cannot be instrumented (e.g. a 16-bit trampoline) has no probes;
//! - `apic:::EVENT` for the emulated APIC's state changes;
//! - `vmexit:::KIND` per exit kind;
//! - `sync:::stop` / `sync:::resume` for stop-the-world;
//! - `profile:::tick-N` and `profile:::profile-N` exist for any rate `N` with a unit; the
//!   catalogue lists one of each as an example, as `dtrace -l` does.

use crate::symbols::{glob_match, ElfSymbols, SymbolSource};
use crate::traps::decode_function;

/// One probe: `provider:module:function:name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    /// Provider, e.g. `fbt`.
    pub provider: String,
    /// Module, e.g. `kernel` (empty for providers without modules).
    pub module: String,
    /// Function (empty for providers without functions).
    pub function: String,
    /// Probe name, e.g. `entry`.
    pub name: String,
}

impl Probe {
    fn new(provider: &str, module: &str, function: &str, name: &str) -> Self {
        Probe {
            provider: provider.into(),
            module: module.into(),
            function: function.into(),
            name: name.into(),
        }
    }

    /// Whether `pattern` (`provider:module:function:name` with globs; fewer fields bind to the
    /// right as in DTrace, so `BEGIN` is `:::BEGIN` and `foo:entry` is `::foo:entry`; an empty
    /// field matches anything) names this probe.
    pub fn matches(&self, pattern: &str) -> bool {
        let mut fields: Vec<&str> = pattern.split(':').collect();
        if fields.len() > 4 {
            return false;
        }
        while fields.len() < 4 {
            fields.insert(0, "");
        }
        let field = |p: &str, v: &str| p.is_empty() || glob_match(p, v);
        field(fields[0], &self.provider)
            && field(fields[1], &self.module)
            && field(fields[2], &self.function)
            && field(fields[3], &self.name)
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.provider, self.module, self.function, self.name
        )
    }
}

/// The events of the `apic` provider.
pub const APIC_EVENTS: [&str; 7] = ["accept", "inject", "eoi", "ipi", "timer", "init", "sipi"];
/// The exit kinds of the `vmexit` provider: `io` (arg0 port, arg1 1 for `out`, arg2 value,
/// arg3 size), `mmio` (arg0 address, arg1 1 for a write, arg2 value, arg3 size), `msr` (arg0
/// index, arg1 1 for `wrmsr`, arg2 value), `hlt` (the guest's own `hlt`, not a probe trap),
/// `ioapic_eoi` (arg0 vector; split irqchip), `set_tpr` (the guest lowered CR8), `irq_window`
/// (interrupts can be injected again), `shutdown` (triple fault) and `internal_error` (KVM
/// could not emulate an instruction); the last two end the run.
pub const VMEXIT_KINDS: [&str; 9] = [
    "io",
    "mmio",
    "msr",
    "hlt",
    "ioapic_eoi",
    "set_tpr",
    "irq_window",
    "shutdown",
    "internal_error",
];

/// Every probe of an ELF image with symbols, in `dtrace -l` order (providers, then address
/// order for `fbt`).
pub fn catalogue(image: &[u8], symbols: &ElfSymbols) -> Vec<Probe> {
    let mut probes = vec![
        Probe::new("dtrace", "", "", "BEGIN"),
        Probe::new("dtrace", "", "", "END"),
        Probe::new("dtrace", "", "", "ERROR"),
    ];
    let thunks = symbols.return_thunks();
    for f in symbols.functions() {
        let Some(bytes) = symbols.function_bytes(image, f) else {
            continue;
        };
        let Ok(decoded) = decode_function(f, bytes, &thunks) else {
            continue;
        };
        probes.push(Probe::new("fbt", &f.module, &f.name, "entry"));
        if !decoded.return_sites().is_empty() {
            probes.push(Probe::new("fbt", &f.module, &f.name, "return"));
        }
    }
    probes.extend(APIC_EVENTS.iter().map(|e| Probe::new("apic", "", "", e)));
    probes.extend(VMEXIT_KINDS.iter().map(|e| Probe::new("vmexit", "", "", e)));
    probes.push(Probe::new("sync", "", "", "stop"));
    probes.push(Probe::new("sync", "", "", "resume"));
    probes.push(Probe::new("profile", "", "", "tick-1s"));
    probes.push(Probe::new("profile", "", "", "profile-997hz"));
    probes
}

/// Probes with their IDs (1-based positions in the full catalogue) in `dtrace -l`'s layout: a
/// header, then `ID PROVIDER MODULE FUNCTION NAME`.
pub fn listing<'a>(probes: impl IntoIterator<Item = (usize, &'a Probe)>) -> String {
    listing_with(probes, |_| None)
}

/// [`listing`] with a detail line under each probe for which `detail` gives one (`hvtrace
/// list -v`: the function's prototype, like `bpftrace -lv`), indented under the function.
pub fn listing_with<'a>(
    probes: impl IntoIterator<Item = (usize, &'a Probe)>,
    detail: impl Fn(&Probe) -> Option<String>,
) -> String {
    let mut out = format!(
        "{:>5} {:>10} {:>15} {:>32} {}\n",
        "ID", "PROVIDER", "MODULE", "FUNCTION", "NAME"
    );
    for (id, p) in probes {
        out.push_str(&format!(
            "{:>5} {:>10} {:>15} {:>32} {}\n",
            id, p.provider, p.module, p.function, p.name
        ));
        if let Some(d) = detail(p) {
            out.push_str(&format!("{:>6}{d}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_descriptions_bind_to_the_right() {
        let p = Probe::new("fbt", "kernel", "xcall_handler", "entry");
        assert!(p.matches("fbt::xcall_*:entry"));
        assert!(p.matches("xcall_handler:entry"));
        assert!(p.matches("fbt:::"));
        assert!(p.matches("entry"));
        assert!(!p.matches("return"));
        assert!(!p.matches("fbt:kernel:xcall:entry"));
        assert!(!p.matches("a:b:c:d:e"));
        assert!(Probe::new("dtrace", "", "", "BEGIN").matches("BEGIN"));
    }

    #[test]
    fn xcall_lab_has_entry_and_return_probes() {
        let g = guest::find("xcall-lab").unwrap();
        let symbols = ElfSymbols::parse(g.image).unwrap();
        let probes = catalogue(g.image, &symbols);
        let has = |pat: &str| probes.iter().any(|p| p.matches(pat));
        assert!(has("fbt:kernel:xcall:entry"));
        assert!(has("fbt:kernel:xcall:return"));
        assert!(has("dtrace:::BEGIN"));
        assert!(has("apic:::eoi"));
        assert!(has("sync:::stop"));
        let text = listing(
            (1..)
                .zip(&probes)
                .filter(|(_, p)| p.matches("fbt::xcall:*")),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].trim_start().starts_with("ID"));
        assert!(lines[1].ends_with("xcall entry"), "{text}");
        let entries = probes.iter().filter(|p| p.matches("fbt:::entry")).count();
        assert!(entries > symbols.functions().len() / 2, "{entries}");
        // The 16-bit trampoline is not 64-bit code: no probes.
        assert!(!has("fbt::trampoline_start:"));
    }
}
