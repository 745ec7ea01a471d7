//! Unit tests for function decoding, trap-site checks and return-site finding.

use super::*;
use crate::symbols::KERNEL_MODULE;

fn func(name: &str, address: u64, size: usize) -> Function {
    Function {
        name: name.into(),
        address,
        size: size as u64,
        module: KERNEL_MODULE.into(),
    }
}

/// push rbp; mov rbp,rsp; sub rsp,0x10; nop5; leave; ret
const FRAME: &[u8] = &[
    0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc9, 0xc3,
];

#[test]
fn boundaries_of_a_frame_function() {
    let f = func("frame", 0x1000, FRAME.len());
    let d = decode_function(&f, FRAME, &[]).expect("decodes");
    let starts: Vec<u64> = d.boundaries().collect();
    assert_eq!(starts, [0x1000, 0x1001, 0x1004, 0x1008, 0x100d, 0x100e]);
    assert_eq!(d.instruction_count(), 6);
    assert!(d.is_boundary(0x1000));
    assert!(!d.is_boundary(0x1002));
    assert!(!d.is_boundary(0xfff));
    assert_eq!(d.instruction_len(0x1008), Some(5));
    assert_eq!(d.instruction_len(0x100e), Some(1));
    assert_eq!(d.instruction_len(0x1009), None);
    assert_eq!(
        d.return_sites(),
        [ReturnSite {
            address: 0x100e,
            kind: ReturnKind::Ret
        }]
    );
    assert_eq!((d.name(), d.start(), d.size()), ("frame", 0x1000, 15));
}

#[test]
fn non_boundary_is_refused_with_nearest_boundaries() {
    let f = func("frame", 0x1000, FRAME.len());
    let d = decode_function(&f, FRAME, &[]).expect("decodes");
    assert_eq!(d.check_trap_site(0x1004), Ok(()));
    let err = d.check_trap_site(0x1006).unwrap_err();
    assert_eq!(
        err,
        PlacementError::NotABoundary {
            function: "frame".into(),
            offset: 6,
            before: Some(4),
            after: Some(8),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("frame+0x6 is not an instruction boundary"),
        "{msg}"
    );
    assert!(msg.contains("frame+0x4, frame+0x8"), "{msg}");
    assert!(matches!(
        d.check_trap_site(0x100f),
        Err(PlacementError::OutsideFunction { .. })
    ));
    assert!(matches!(
        d.check_trap_site(0xfff),
        Err(PlacementError::OutsideFunction { .. })
    ));
}

#[test]
fn ret_imm_and_thunk_jumps_are_return_sites() {
    // 0x2000: ret 8 ; jmp rel32 -> thunk ; jne rel32 -> thunk ; jmp rel8 -> thunk2 ;
    //         jmp rel32 -> not a thunk ; ret
    let thunk: u64 = 0x3000;
    let mut code = vec![0xc2, 0x08, 0x00];
    let at = 0x2000 + code.len() as u64;
    code.push(0xe9);
    code.extend_from_slice(&((thunk.wrapping_sub(at + 5)) as u32).to_le_bytes());
    let at = 0x2000 + code.len() as u64;
    code.extend_from_slice(&[0x0f, 0x85]);
    code.extend_from_slice(&((thunk.wrapping_sub(at + 6)) as u32).to_le_bytes());
    let at = 0x2000 + code.len() as u64;
    let thunk2 = at + 2 + 0x10;
    code.extend_from_slice(&[0xeb, 0x10]);
    let at = 0x2000 + code.len() as u64;
    code.push(0xe9);
    code.extend_from_slice(&((0x5000u64.wrapping_sub(at + 5)) as u32).to_le_bytes());
    code.push(0xc3);
    let f = func("rets", 0x2000, code.len());
    let d = decode_function(&f, &code, &[thunk, thunk2]).expect("decodes");
    let kinds: Vec<(u64, ReturnKind)> = d
        .return_sites()
        .iter()
        .map(|r| (r.address, r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (0x2000, ReturnKind::RetImm(8)),
            (0x2003, ReturnKind::ThunkJump),
            (0x2008, ReturnKind::ConditionalThunkJump(ConditionCode::ne)),
            (0x200e, ReturnKind::ThunkJump),
            (0x2015, ReturnKind::Ret),
        ]
    );
    let jne = d.return_sites()[2];
    assert!(jne.fires(0), "ZF clear: jne taken");
    assert!(!jne.fires(1 << 6), "ZF set: jne not taken");
    assert!(d.return_sites()[0].fires(1 << 6));
}

#[test]
fn undecodable_bytes_stop_decoding() {
    // nop; then 0x06 (push es: invalid in 64-bit mode)
    let code = [0x90, 0x06, 0x90];
    let err = decode_function(&func("bad", 0x10, 3), &code, &[]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::Undecodable {
            function: "bad".into(),
            offset: 1,
            bytes: vec![0x06, 0x90],
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("bad+0x1") && msg.contains("06 90"), "{msg}");
}

#[test]
fn instruction_past_the_end_and_short_buffers() {
    // nop; mov eax, imm32 cut short by the size
    let code = [0x90, 0xb8, 1, 2, 3, 4];
    let err = decode_function(&func("cut", 0, 4), &code, &[]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PastEnd {
            function: "cut".into(),
            offset: 1,
            size: 4
        }
    );
    let err = decode_function(&func("short", 0, 10), &code, &[]).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Truncated {
            have: 6,
            size: 10,
            ..
        }
    ));
    let err = decode_function(&func("wraps", u64::MAX - 1, 4), &code, &[]).unwrap_err();
    assert!(matches!(err, DecodeError::WrapsAround { .. }), "{err:?}");
    // Extra bytes after the size are ignored.
    let d = decode_function(&func("one", 0, 1), &code, &[]).expect("decodes");
    assert_eq!(d.instruction_count(), 1);
}

#[test]
fn condition_codes() {
    let cf = 1;
    let zf = 1 << 6;
    let sf = 1 << 7;
    let of = 1 << 11;
    let pf = 1 << 2;
    assert!(condition_holds(ConditionCode::b, cf));
    assert!(condition_holds(ConditionCode::be, zf));
    assert!(condition_holds(ConditionCode::a, 0));
    assert!(!condition_holds(ConditionCode::a, cf));
    assert!(condition_holds(ConditionCode::l, sf));
    assert!(!condition_holds(ConditionCode::l, sf | of));
    assert!(condition_holds(ConditionCode::ge, sf | of));
    assert!(condition_holds(ConditionCode::le, zf));
    assert!(condition_holds(ConditionCode::g, 0));
    assert!(condition_holds(ConditionCode::p, pf));
    assert!(condition_holds(ConditionCode::np, 0));
    assert!(condition_holds(ConditionCode::o, of));
    assert!(condition_holds(ConditionCode::ns, 0));
    assert!(condition_holds(ConditionCode::None, 0));
}

proptest::proptest! {
    /// Random bytes as a function: decoding returns a result or an error, never panics, and
    /// what it accepts is consistent (boundaries tile the function exactly).
    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        size in 0usize..80,
        address in proptest::prelude::any::<u64>(),
        thunk in proptest::prelude::any::<u64>(),
    ) {
        let f = func("random", address, size);
        if let Ok(d) = decode_function(&f, &bytes, &[thunk]) {
            let total: u64 = d
                .boundaries()
                .map(|a| d.instruction_len(a).unwrap_or(0))
                .sum();
            proptest::prop_assert_eq!(total, size as u64);
            for off in 0..size as u64 {
                let addr = address.wrapping_add(off);
                proptest::prop_assert_eq!(d.check_trap_site(addr).is_ok(), d.is_boundary(addr));
            }
        }
    }
}
