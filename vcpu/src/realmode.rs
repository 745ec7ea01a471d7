//! Architectural reset and SIPI start-up state of an x86 vCPU (Intel SDM Vol. 3, 9.1.1 and
//! 8.4.3), for application processors started by a user-space local APIC.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

/// CR0 after reset: CD | NW | ET.
const CR0_RESET: u64 = 0x6000_0010;

fn real_mode_segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: u64::from(selector) << 4,
        limit: 0xffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Sets `sregs`/`regs` to the state after a SIPI with `vector`: real mode, CS = vector << 8,
/// IP = 0, everything else as after INIT.
pub fn sipi_state(sregs: &mut kvm_sregs, regs: &mut kvm_regs, vector: u8) {
    let cs = u16::from(vector) << 8;
    sregs.cs = real_mode_segment(cs, true);
    for seg in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        *seg = real_mode_segment(0, false);
    }
    sregs.tr = kvm_segment {
        limit: 0xffff,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    sregs.ldt = kvm_segment {
        limit: 0xffff,
        type_: 0x2,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = 0;
    sregs.gdt.limit = 0xffff;
    sregs.idt.base = 0;
    sregs.idt.limit = 0xffff;
    sregs.cr0 = CR0_RESET;
    sregs.cr2 = 0;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    *regs = kvm_regs {
        rip: 0,
        rflags: 0x2,
        ..Default::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipi_vector_sets_cs() {
        let mut sregs = kvm_sregs::default();
        let mut regs = kvm_regs {
            rax: 5,
            ..Default::default()
        };
        sipi_state(&mut sregs, &mut regs, 0x08);
        assert_eq!(sregs.cs.selector, 0x0800);
        assert_eq!(sregs.cs.base, 0x8000);
        assert_eq!(regs.rip, 0);
        assert_eq!(regs.rax, 0);
        assert_eq!(sregs.cr0 & 1, 0, "real mode");
    }
}
