//! Unit tests for trap patching, sharing, shadow reads and shadow writes.

use super::*;

/// Guest text: `bytes` at guest address `base`; anything else is inaccessible.
#[derive(Debug, Clone)]
struct FakeText {
    base: u64,
    bytes: Vec<u8>,
    writes: usize,
}

impl FakeText {
    fn new(base: u64, bytes: &[u8]) -> Self {
        Self {
            base,
            bytes: bytes.to_vec(),
            writes: 0,
        }
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, TextError> {
        let err = TextError { addr, len };
        let off = addr.checked_sub(self.base).ok_or(err)? as usize;
        let end = off.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() {
            return Err(err);
        }
        Ok(off..end)
    }
}

impl GuestText for FakeText {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TextError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TextError> {
        let r = self.range(addr, data.len())?;
        self.bytes[r].copy_from_slice(data);
        self.writes += 1;
        Ok(())
    }
}

const BASE: u64 = 0x10_0000;
/// push rbp; mov rbp,rsp; nop5; pop rbp; ret
const CODE: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x5d, 0xc3,
];

#[test]
fn patch_and_unpatch_one_site() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    assert_eq!(
        table.arm(BASE, TrapKind::Hlt, &mut text),
        Ok(Armed::Patched)
    );
    assert_eq!(text.bytes[0], 0xF4);
    let trap = table.get(BASE).expect("trap");
    assert_eq!(trap.original, [0x55]);
    assert!(trap.is_patched());
    assert_eq!(table.len(), 1);
    assert_eq!(
        table.disarm(BASE, &mut text),
        Ok(Disarmed::Removed(Unpatched::Restored))
    );
    assert_eq!(text.bytes, CODE);
    assert!(table.is_empty());
    assert_eq!(table.disarm(BASE, &mut text), Err(TrapError::NoTrap(BASE)));
}

#[test]
fn lifted_traps_come_back_over_what_the_guest_wrote_meanwhile() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    table.arm(BASE, TrapKind::Hlt, &mut text).expect("arm");
    table.arm(BASE + 4, TrapKind::Hlt, &mut text).expect("arm");
    table
        .arm(BASE + 4, TrapKind::Hlt, &mut text)
        .expect("shared");
    assert!(table.lift_all(&mut text).is_empty());
    assert_eq!(text.bytes, CODE, "no trap byte is left while lifted");
    assert_eq!(table.len(), 2, "the sites stay known");
    // The guest rewrites the 5-byte NOP into a call while the traps are lifted.
    text.write(BASE + 4, &[0xe8, 1, 2, 3, 4])
        .expect("guest write");
    for addr in table.addresses() {
        table.repatch(addr, &mut text).expect("repatch");
    }
    assert_eq!((text.bytes[0], text.bytes[4]), (0xF4, 0xF4));
    assert_eq!(table.get(BASE + 4).expect("trap").original, [0xe8]);
    let mut view = [0u8; 5];
    table.shadow_read(&text, BASE + 4, &mut view).expect("read");
    assert_eq!(
        view,
        [0xe8, 1, 2, 3, 4],
        "the shadow holds the guest's new bytes"
    );
    assert_eq!(table.refs(BASE + 4), 2);
    assert_eq!(
        table.repatch(BASE + 1, &mut text),
        Err(TrapError::NoTrap(BASE + 1))
    );
}

#[test]
fn shared_sites_are_reference_counted() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    assert_eq!(
        table.arm(BASE + 9, TrapKind::Int3, &mut text),
        Ok(Armed::Patched)
    );
    assert_eq!(
        table.arm(BASE + 9, TrapKind::Int3, &mut text),
        Ok(Armed::Shared { refs: 2 })
    );
    assert_eq!(text.writes, 1, "a shared site is patched once");
    assert_eq!(
        table.arm(BASE + 9, TrapKind::Hlt, &mut text),
        Err(TrapError::KindConflict {
            addr: BASE + 9,
            existing: TrapKind::Int3,
            requested: TrapKind::Hlt
        })
    );
    assert_eq!(table.refs(BASE + 9), 2);
    assert_eq!(
        table.disarm(BASE + 9, &mut text),
        Ok(Disarmed::StillShared { refs: 1 })
    );
    assert_eq!(text.bytes[9], 0xCC, "still armed for the other user");
    assert_eq!(
        table.disarm(BASE + 9, &mut text),
        Ok(Disarmed::Removed(Unpatched::Restored))
    );
    assert_eq!(text.bytes, CODE);
}

#[test]
fn shadow_read_hides_traps() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    for off in [0, 4, 9, 10] {
        table
            .arm(BASE + off, TrapKind::Hlt, &mut text)
            .expect("arm");
    }
    assert_ne!(text.bytes, CODE);
    let mut buf = [0u8; 11];
    table.shadow_read(&text, BASE, &mut buf).expect("read");
    assert_eq!(buf, CODE);
    // Partial windows, starting inside and ending inside.
    for start in 0..CODE.len() {
        for end in start..=CODE.len() {
            let mut buf = vec![0u8; end - start];
            table
                .shadow_read(&text, BASE + start as u64, &mut buf)
                .expect("read");
            assert_eq!(buf, &CODE[start..end], "window {start}..{end}");
        }
    }
    assert!(table.shadow_read(&text, BASE + 8, &mut [0u8; 8]).is_err());
}

#[test]
fn trap_exit_maps_back_to_the_site() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    table.arm(BASE + 4, TrapKind::Hlt, &mut text).expect("arm");
    assert_eq!(
        table.hit(TrapKind::Hlt, BASE + 5).map(|t| t.addr),
        Some(BASE + 4)
    );
    assert!(table.hit(TrapKind::Hlt, BASE + 4).is_none());
    assert!(
        table.hit(TrapKind::Int3, BASE + 4).is_none(),
        "kind must match"
    );
    assert_eq!(TrapKind::Int3.trap_address(0x1000), 0x1000);
    assert_eq!(TrapKind::Hlt.trap_address(0x1001), 0x1000);
    assert_eq!(TrapKind::HwBreakpoint(2).trap_address(0x1000), 0x1000);
    assert_eq!(
        TrapKind::Hlt.trap_address(0),
        u64::MAX,
        "wraps, never panics"
    );
    assert_eq!(TrapKind::Int3.patch_bytes(), [0xCC]);
    assert_eq!(TrapKind::Hlt.patch_bytes(), [0xF4]);
    assert!(TrapKind::HwBreakpoint(0).patch_bytes().is_empty());
    assert_eq!(TrapKind::HwBreakpoint(3).to_string(), "hw-breakpoint(dr3)");
}

#[test]
fn hardware_breakpoints_patch_nothing_and_use_registers() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    assert_eq!(table.free_debug_register(), Some(0));
    for dr in 0..4u8 {
        let kind = TrapKind::HwBreakpoint(dr);
        table
            .arm(BASE + u64::from(dr), kind, &mut text)
            .expect("arm");
    }
    assert_eq!(text.bytes, CODE);
    assert_eq!(text.writes, 0);
    assert_eq!(table.free_debug_register(), None);
    assert_eq!(
        table.arm(BASE + 9, TrapKind::HwBreakpoint(1), &mut text),
        Err(TrapError::DebugRegisterBusy {
            dr: 1,
            addr: BASE + 1
        })
    );
    assert_eq!(
        table.arm(BASE + 9, TrapKind::HwBreakpoint(4), &mut text),
        Err(TrapError::BadDebugRegister(4))
    );
    assert!(!TrapKind::HwBreakpoint(4).is_valid());
    assert_eq!(
        table.disarm(BASE + 1, &mut text),
        Ok(Disarmed::Removed(Unpatched::NothingToRestore))
    );
    assert_eq!(table.free_debug_register(), Some(1));
}

#[test]
fn refuses_existing_trap_bytes_and_inaccessible_text() {
    let mut text = FakeText::new(BASE, &[0xF4, 0x90]);
    let mut table = TrapTable::new();
    assert_eq!(
        table.arm(BASE, TrapKind::Hlt, &mut text),
        Err(TrapError::AlreadyTrapByte {
            addr: BASE,
            kind: TrapKind::Hlt
        })
    );
    assert!(matches!(
        table.arm(BASE + 2, TrapKind::Hlt, &mut text),
        Err(TrapError::Text(_))
    ));
    assert!(table.is_empty(), "failed arms leave nothing behind");
}

#[test]
fn guest_overwrite_is_not_undone() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    table.arm(BASE, TrapKind::Int3, &mut text).expect("arm");
    text.bytes[0] = 0xE9; // the guest patched its text without the tracer seeing it
    assert_eq!(
        table.disarm(BASE, &mut text),
        Ok(Disarmed::Removed(Unpatched::GuestOverwrote))
    );
    assert_eq!(text.bytes[0], 0xE9);
}

#[test]
fn shadow_write_keeps_traps_and_shadow_true() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    table.arm(BASE + 4, TrapKind::Hlt, &mut text).expect("arm");
    table.arm(BASE + 6, TrapKind::Hlt, &mut text).expect("arm");
    // The guest turns its 5-byte NOP into a call (as ftrace does).
    let call = [0xE8, 0x11, 0x22, 0x33, 0x44];
    table
        .shadow_write(&mut text, BASE + 4, &call)
        .expect("write");
    assert_eq!(text.bytes[4], 0xF4, "trap stays in guest memory");
    assert_eq!(text.bytes[6], 0xF4, "trap stays in guest memory");
    assert_eq!(&text.bytes[5..6], &[0x11]);
    assert_eq!(&text.bytes[7..9], &[0x33, 0x44]);
    let mut buf = [0u8; 5];
    table.shadow_read(&text, BASE + 4, &mut buf).expect("read");
    assert_eq!(buf, call, "the guest reads back what it wrote");
    assert_eq!(
        table.get(BASE + 4).map(|t| t.original.clone()),
        Some(vec![0xE8])
    );
    let failed = table.disarm_all(&mut text);
    assert!(failed.is_empty());
    assert_eq!(
        &text.bytes[4..9],
        &call,
        "disarming leaves the guest's bytes"
    );
    assert_eq!(&text.bytes[..4], &CODE[..4]);
    assert!(table.is_empty());
}

#[test]
fn shadow_write_around_and_outside_traps() {
    let mut text = FakeText::new(BASE, CODE);
    let mut table = TrapTable::new();
    table.arm(BASE + 9, TrapKind::Int3, &mut text).expect("arm");
    table
        .shadow_write(&mut text, BASE, &[1, 2, 3])
        .expect("write");
    assert_eq!(&text.bytes[..3], &[1, 2, 3]);
    table
        .shadow_write(&mut text, BASE + 8, &[7, 8, 9])
        .expect("write");
    assert_eq!(&text.bytes[8..11], &[7, 0xCC, 9]);
    assert_eq!(
        table.get(BASE + 9).map(|t| t.original.clone()),
        Some(vec![8])
    );
    table
        .shadow_write(&mut text, BASE + 9, &[5])
        .expect("write");
    assert_eq!(text.bytes[9], 0xCC);
    assert_eq!(
        table.get(BASE + 9).map(|t| t.original.clone()),
        Some(vec![5])
    );
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Arm(u64, bool),
    Disarm(u64),
    GuestWrite(u64, Vec<u8>),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0u64..16, any::<bool>()).prop_map(|(a, hlt)| Op::Arm(a, hlt)),
        (0u64..16).prop_map(Op::Disarm),
        (0u64..16, proptest::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(a, d)| Op::GuestWrite(a, d)),
    ]
}

proptest::proptest! {
    /// Against a model (the text the guest believes it has): after any sequence of arms,
    /// disarms and guest writes through the table, shadow reads return the model, every
    /// armed site holds its trap byte, and disarming everything leaves exactly the model.
    #[test]
    fn shadow_matches_the_guests_view(ops in proptest::collection::vec(op(), 0..40)) {
        let initial: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(37).wrapping_add(1)).collect();
        let mut model = initial.clone();
        let mut text = FakeText::new(BASE, &initial);
        let mut table = TrapTable::new();
        for op in ops {
            match op {
                Op::Arm(a, hlt) => {
                    let kind = if hlt { TrapKind::Hlt } else { TrapKind::Int3 };
                    let _ = table.arm(BASE + a, kind, &mut text);
                }
                Op::Disarm(a) => {
                    let _ = table.disarm(BASE + a, &mut text);
                }
                Op::GuestWrite(a, data) => {
                    let end = (a as usize + data.len()).min(16);
                    let data = &data[..end - a as usize];
                    table.shadow_write(&mut text, BASE + a, data).expect("in range");
                    model[a as usize..end].copy_from_slice(data);
                }
            }
            let mut view = vec![0u8; 16];
            table.shadow_read(&text, BASE, &mut view).expect("read");
            proptest::prop_assert_eq!(&view, &model);
            for trap in table.iter() {
                let at = (trap.addr - BASE) as usize;
                proptest::prop_assert_eq!(text.bytes[at], trap.kind.patch_bytes()[0]);
            }
        }
        proptest::prop_assert!(table.disarm_all(&mut text).is_empty());
        proptest::prop_assert_eq!(&text.bytes, &model);
    }
}
