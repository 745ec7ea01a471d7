//! A lift end to end on plain guest memory (no vCPUs): a guard hit lifts every trap and arms
//! the return breakpoint; the guest rewrites a probed instruction; the return re-arms every
//! site over the new bytes, or drops one that no longer starts an instruction.

use tracer::symbols::KERNEL_MODULE;
use tracer::traps::TrapKind;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::host_traps::TrapStrategy;

/// The patcher: `endbr64; nop5; ret` at 0x1000, its guard on the NOP.
const PATCHER: u64 = 0x1000;
/// A probed function, same code, at 0x2000: its entry site on the NOP at 0x2004.
const PROBED: u64 = 0x2000;
const CODE: [u8; 10] = [0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3];
/// The patcher's return address, on the stack at `STACK`.
const RET: u64 = 0x3000;
const STACK: u64 = 0x8000;

fn function(name: &str, address: u64) -> Function {
    Function {
        name: name.into(),
        address,
        size: CODE.len() as u64,
        module: KERNEL_MODULE.into(),
    }
}

fn byte(ram: &GuestMemoryMmap, at: u64) -> u8 {
    ram.read_obj::<u8>(GuestAddress(at)).expect("in RAM")
}

/// A probe set with the guard and one probe site armed on `ram`.
fn armed(ram: &GuestMemoryMmap) -> ProbeSet {
    for at in [PATCHER, PROBED] {
        ram.write_slice(&CODE, GuestAddress(at)).expect("code");
    }
    ram.write_obj(RET, GuestAddress(STACK)).expect("stack");
    let set = ProbeSet::new(1, TrapStrategy::Hlt);
    {
        let mut armed = set.lock();
        let mut text = set.view(ram, None);
        for (site, name, f) in [
            (PATCHER + 4, "text_poke_early", PATCHER),
            (PROBED + 4, "probed", PROBED),
        ] {
            armed
                .traps
                .arm(site, TrapKind::Hlt, &mut text)
                .expect("arm");
            armed.origins.insert(
                site,
                SiteOrigin {
                    function: function(name, f),
                    is_return: false,
                },
            );
        }
        armed.guards.insert(PATCHER + 4, "text_poke_early");
    }
    set
}

/// Enters the patcher: the guard's `hlt` exit.
fn enter(set: &ProbeSet, ram: &GuestMemoryMmap) -> Regs {
    let mut regs = Regs {
        rsp: STACK,
        ..Regs::default()
    };
    let hit = set.on_hlt(
        0,
        &mut Regs {
            rip: PATCHER + 5,
            ..regs
        },
        ram,
    );
    assert_eq!(hit, Ok(Hit::Lifted));
    regs.rip = PATCHER + 4;
    regs
}

/// Is the trap at `site` in guest text now?
fn patched(set: &ProbeSet, site: u64) -> bool {
    set.lock().traps.get(site).is_some_and(|t| t.is_patched())
}

/// The lift breakpoint hits at `at`.
fn breakpoint(set: &ProbeSet, ram: &GuestMemoryMmap, at: u64) -> Result<Hit, String> {
    set.on_trap(
        0,
        TrapKind::HwBreakpoint(LIFT_DR as u8),
        at,
        &mut Regs::default(),
        ram,
    )
}

#[test]
fn a_lift_hides_every_trap_and_the_return_rearms_over_the_new_bytes() {
    let ram = crate::layout::create_guest_memory(16 << 20).expect("RAM");
    let set = armed(&ram);
    assert_eq!(
        (byte(&ram, PATCHER + 4), byte(&ram, PROBED + 4)),
        (0xf4, 0xf4)
    );
    enter(&set, &ram);
    assert_eq!(
        (byte(&ram, PATCHER + 4), byte(&ram, PROBED + 4)),
        (0x0f, 0x0f),
        "the patcher reads the kernel's own bytes"
    );
    assert_eq!(set.debug[0].get().hw_breakpoints[LIFT_DR], Some(RET));
    // The patcher turns the probed NOP into `call rel32`.
    ram.write_slice(&[0xe8, 1, 0, 0, 0], GuestAddress(PROBED + 4))
        .expect("guest write");
    let hit = breakpoint(&set, &ram, RET);
    assert_eq!(hit, Ok(Hit::Lifted));
    assert_eq!(set.debug[0].get().hw_breakpoints[LIFT_DR], None);
    assert_eq!(
        (byte(&ram, PATCHER + 4), byte(&ram, PROBED + 4)),
        (0xf4, 0xf4)
    );
    assert_eq!(
        set.lock().traps.get(PROBED + 4).map(|t| t.original.clone()),
        Some(vec![0xe8]),
        "the new instruction is what a hit emulates"
    );
    let stats = set.lift_stats();
    assert_eq!((stats.count, stats.dropped), (1, 0));
}

#[test]
fn a_site_that_is_no_longer_an_instruction_is_dropped() {
    let ram = crate::layout::create_guest_memory(16 << 20).expect("RAM");
    let set = armed(&ram);
    enter(&set, &ram);
    // `nop; nop; nop; lea rax, [rax + 0]`: a 7-byte instruction now covers the site.
    ram.write_slice(
        &[0x90, 0x90, 0x90, 0x48, 0x8d, 0x80, 0, 0, 0, 0],
        GuestAddress(PROBED),
    )
    .expect("guest write");
    let hit = breakpoint(&set, &ram, RET);
    assert_eq!(hit, Ok(Hit::Lifted));
    assert_eq!(byte(&ram, PATCHER + 4), 0xf4, "the guard is back");
    assert_eq!(
        byte(&ram, PROBED + 4),
        0x8d,
        "the dropped site is left as the guest wrote it"
    );
    assert_eq!(set.lift_stats().dropped, 1);
    assert!(!patched(&set, PROBED + 4));
    // A second lift that changes nothing keeps the verdict (from the unchanged bytes).
    enter(&set, &ram);
    assert_eq!(breakpoint(&set, &ram, RET), Ok(Hit::Lifted));
    assert_eq!(set.lift_stats().dropped, 2);
    assert_eq!(byte(&ram, PATCHER + 4), 0xf4);
    assert_eq!(byte(&ram, PROBED + 4), 0x8d);
    // The kernel puts the NOP back: the site comes back with it.
    enter(&set, &ram);
    ram.write_slice(&CODE, GuestAddress(PROBED))
        .expect("guest write");
    assert_eq!(breakpoint(&set, &ram, RET), Ok(Hit::Lifted));
    assert_eq!(byte(&ram, PROBED + 4), 0xf4);
    assert_eq!(set.lift_stats().dropped, 2);
    assert!(patched(&set, PROBED + 4));
}

#[test]
fn a_breakpoint_elsewhere_is_not_a_return() {
    let ram = crate::layout::create_guest_memory(16 << 20).expect("RAM");
    let set = armed(&ram);
    enter(&set, &ram);
    let hit = breakpoint(&set, &ram, RET + 1);
    assert_eq!(hit, Ok(Hit::NotOurs));
    assert_eq!(byte(&ram, PROBED + 4), 0x0f, "still lifted");
}
