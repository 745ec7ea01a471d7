//! Symbol sources: which functions a guest image has, where they are and how long they are.
//!
//! Probes name guest functions (`fbt:MODULE:FUNCTION:entry`), `%a` prints an address as
//! `function+offset`, and trap placement needs each function's extent. All of that goes through
//! the [`SymbolSource`] trait so that images without an ELF symbol table (a Linux kernel read
//! through kallsyms, with BTF for types) can be added later behind the same interface.
//!
//! [`SymbolTable`] is the shared in-memory index every source can reuse (sorted by address,
//! O(log n) lookups); [`ElfSymbols`] builds one from an ELF image's `.symtab`, or from the
//! kernel's own [`kallsyms`] table where the image has none.

mod elf;
mod glob;
pub mod kallsyms;

pub use elf::{ElfSymbols, SymbolError, KERNEL_MODULE, MARKERS};
pub use glob::{glob_match, is_glob};

/// One function of the guest: a named, sized range of guest-virtual addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The symbol name, e.g. `xcall_handler`.
    pub name: String,
    /// Guest-virtual address of the first instruction.
    pub address: u64,
    /// Size in bytes (never zero: sources drop zero-sized symbols).
    pub size: u64,
    /// The module the function belongs to, DTrace's `probemod` (see [`KERNEL_MODULE`]).
    pub module: String,
}

impl Function {
    /// One past the last byte of the function (saturating at `u64::MAX`).
    pub fn end(&self) -> u64 {
        self.address.saturating_add(self.size)
    }

    /// Does the function's range contain `addr`?
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.address && addr < self.end()
    }
}

/// Where functions come from: an ELF symbol table today, kallsyms/BTF later.
pub trait SymbolSource {
    /// Every function, sorted by address (then name); aliases at one address all appear.
    fn functions(&self) -> &[Function];

    /// The function containing `addr` and the offset of `addr` into it. Where functions
    /// overlap, the one starting closest below `addr` wins (then the first by name).
    fn lookup(&self, addr: u64) -> Option<(&Function, u64)> {
        self.functions()
            .iter()
            .filter(|f| f.contains(addr))
            .max_by(|a, b| a.address.cmp(&b.address).then(b.name.cmp(&a.name)))
            .map(|f| (f, addr - f.address))
    }

    /// Every function whose name matches the glob `pattern` ([`glob_match`]), in address order.
    fn by_glob(&self, pattern: &str) -> Vec<&Function> {
        self.functions()
            .iter()
            .filter(|f| glob_match(pattern, &f.name))
            .collect()
    }

    /// The first function (in address order) named exactly `name`.
    fn by_name(&self, name: &str) -> Option<&Function> {
        self.functions().iter().find(|f| f.name == name)
    }

    /// Addresses of the return thunks (`__x86_return_thunk`, or any function whose name
    /// contains `return_thunk`): a `jmp` to one of them is a function return. Sorted.
    fn return_thunks(&self) -> Vec<u64> {
        let mut thunks: Vec<u64> = self
            .functions()
            .iter()
            .filter(|f| f.name == "__x86_return_thunk" || f.name.contains("return_thunk"))
            .map(|f| f.address)
            .collect();
        thunks.sort_unstable();
        thunks.dedup();
        thunks
    }
}

/// A sorted, indexed set of functions: the storage behind every [`SymbolSource`].
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    /// Sorted by (address, name).
    functions: Vec<Function>,
    /// The largest function size, bounding how far below an address `lookup` searches.
    max_size: u64,
    /// Index of the first (lowest-address) function of each name.
    names: std::collections::HashMap<String, usize>,
}

impl SymbolTable {
    /// Builds the index. Zero-sized functions are dropped; exact duplicates (same name,
    /// address, size and module) are kept once.
    pub fn new(mut functions: Vec<Function>) -> Self {
        functions.retain(|f| f.size != 0);
        functions.sort_by(|a, b| {
            (a.address, &a.name, a.size, &a.module).cmp(&(b.address, &b.name, b.size, &b.module))
        });
        functions.dedup();
        let max_size = functions.iter().map(|f| f.size).max().unwrap_or(0);
        let mut names = std::collections::HashMap::with_capacity(functions.len());
        for (i, f) in functions.iter().enumerate() {
            names.entry(f.name.clone()).or_insert(i);
        }
        Self {
            functions,
            max_size,
            names,
        }
    }

    /// The lowest-address function named `name` (a hash lookup: probe resolution on a kernel
    /// with 150,000 functions stays linear).
    pub fn by_name(&self, name: &str) -> Option<&Function> {
        self.names.get(name).and_then(|&i| self.functions.get(i))
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// Has the table no functions at all?
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

impl SymbolSource for SymbolTable {
    fn functions(&self) -> &[Function] {
        &self.functions
    }

    fn lookup(&self, addr: u64) -> Option<(&Function, u64)> {
        // Functions starting at or below `addr`; walk down from the closest, but no further
        // than the largest function could reach.
        let upto = self.functions.partition_point(|f| f.address <= addr);
        let mut best: Option<&Function> = None;
        for f in self.functions[..upto].iter().rev() {
            if addr - f.address >= self.max_size {
                break;
            }
            if f.contains(addr) {
                match best {
                    // Same start: the earlier (by name) one wins, and we walk backwards.
                    Some(b) if b.address != f.address => break,
                    _ => best = Some(f),
                }
            }
        }
        best.map(|f| (f, addr - f.address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, address: u64, size: u64) -> Function {
        Function {
            name: name.into(),
            address,
            size,
            module: KERNEL_MODULE.into(),
        }
    }

    fn table() -> SymbolTable {
        SymbolTable::new(vec![
            f("c", 0x300, 0x10),
            f("a", 0x100, 0x20),
            f("b", 0x120, 0x8),
            f("zero", 0x200, 0),
            f("outer", 0x1000, 0x100),
            f("inner", 0x1010, 0x10),
            f("alias2", 0x2000, 4),
            f("alias1", 0x2000, 4),
        ])
    }

    #[test]
    fn sorted_and_zero_sized_dropped() {
        let t = table();
        let names: Vec<&str> = t.functions().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "c", "outer", "inner", "alias1", "alias2"],
            "sorted by address, zero-sized gone"
        );
        assert_eq!(t.len(), 7);
    }

    #[test]
    fn lookup_finds_containing_function_and_offset() {
        let t = table();
        assert_eq!(
            t.lookup(0x100).map(|(f, o)| (f.name.as_str(), o)),
            Some(("a", 0))
        );
        assert_eq!(
            t.lookup(0x11f).map(|(f, o)| (f.name.as_str(), o)),
            Some(("a", 0x1f))
        );
        assert_eq!(
            t.lookup(0x120).map(|(f, o)| (f.name.as_str(), o)),
            Some(("b", 0))
        );
        assert!(t.lookup(0x128).is_none());
        assert!(t.lookup(0xff).is_none());
        assert!(t.lookup(0x200).is_none(), "zero-sized symbols never match");
        assert!(t.lookup(u64::MAX).is_none());
        assert_eq!(
            t.lookup(0x1015).map(|(f, o)| (f.name.as_str(), o)),
            Some(("inner", 5))
        );
        assert_eq!(
            t.lookup(0x1020).map(|(f, o)| (f.name.as_str(), o)),
            Some(("outer", 0x20)),
            "past the nested function, the outer one"
        );
        assert_eq!(
            t.lookup(0x2001).map(|(f, o)| (f.name.as_str(), o)),
            Some(("alias1", 1))
        );
    }

    #[test]
    fn default_lookup_agrees_with_indexed_lookup() {
        struct Plain(Vec<Function>);
        impl SymbolSource for Plain {
            fn functions(&self) -> &[Function] {
                &self.0
            }
        }
        let t = table();
        let plain = Plain(t.functions().to_vec());
        for addr in (0..0x2100).step_by(3) {
            assert_eq!(
                t.lookup(addr).map(|(f, o)| (&f.name, o)),
                plain.lookup(addr).map(|(f, o)| (&f.name, o)),
                "at {addr:#x}"
            );
        }
    }

    #[test]
    fn glob_name_and_thunks() {
        let t = SymbolTable::new(vec![
            f("xcall", 0x10, 4),
            f("xcall_handler", 0x20, 4),
            f("__x86_return_thunk", 0x30, 2),
            f("my_return_thunk_2", 0x40, 2),
        ]);
        let names: Vec<&str> = t
            .by_glob("xcall*")
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["xcall", "xcall_handler"]);
        assert_eq!(t.by_name("xcall_handler").map(|f| f.address), Some(0x20));
        assert!(t.by_name("xcall_").is_none());
        assert_eq!(t.return_thunks(), [0x30, 0x40]);
    }
}
