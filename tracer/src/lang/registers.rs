//! Register names for `regs[...]`.
//!
//! `regs[N]` reads register number `N` of the vCPU that hit the probe, through
//! [`crate::runtime::ProbeContext::reg`]. The numbers follow the x86-64 instruction encoding
//! for the sixteen general registers (`R_RAX` = 0, `R_RCX` = 1, ... `R_R15` = 15), then
//! `R_RIP` = 16, `R_RFLAGS` = 17, `R_CR0` = 18, `R_CR2` = 19, `R_CR3` = 20, `R_CR4` = 21 and
//! `R_EFER` = 22. The names are integer constants in D programs, so `regs[R_RSP]` and
//! `regs[4]` are the same. DTrace's portable aliases `R_PC`, `R_SP` and `R_FP` name RIP, RSP
//! and RBP.

/// Register constants as `(name, number)`.
pub const REGISTERS: &[(&str, usize)] = &[
    ("R_RAX", 0),
    ("R_RCX", 1),
    ("R_RDX", 2),
    ("R_RBX", 3),
    ("R_RSP", 4),
    ("R_RBP", 5),
    ("R_RSI", 6),
    ("R_RDI", 7),
    ("R_R8", 8),
    ("R_R9", 9),
    ("R_R10", 10),
    ("R_R11", 11),
    ("R_R12", 12),
    ("R_R13", 13),
    ("R_R14", 14),
    ("R_R15", 15),
    ("R_RIP", 16),
    ("R_RFLAGS", 17),
    ("R_CR0", 18),
    ("R_CR2", 19),
    ("R_CR3", 20),
    ("R_CR4", 21),
    ("R_EFER", 22),
    ("R_PC", 16),
    ("R_SP", 4),
    ("R_FP", 5),
];

/// The number of register `name` (`R_RAX`, ...), if it is one.
pub fn register_number(name: &str) -> Option<usize> {
    REGISTERS.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

/// The canonical name of register number `n` (`R_RAX`), if it is one.
pub fn register_name(n: usize) -> Option<&'static str> {
    REGISTERS
        .iter()
        .find(|(_, v)| *v == n)
        .map(|&(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for n in 0..=22 {
            let name = register_name(n).unwrap_or_else(|| panic!("no name for {n}"));
            assert_eq!(register_number(name), Some(n));
        }
        assert_eq!(register_number("R_PC"), Some(16));
        assert_eq!(register_number("R_XYZ"), None);
        assert_eq!(register_name(23), None);
    }
}
