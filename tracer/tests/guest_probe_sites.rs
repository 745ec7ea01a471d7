//! Trap placement on the real built-in guests: every 64-bit function of every guest decodes
//! from its start to exactly the end of its symbol size, return sites are found where the
//! hand-written assembly returns, traps on every boundary read back through the shadow, and
//! entry instructions emulate.
//!
//! The AP trampoline (`trampoline_start`, 16-bit real mode, and `ap_protected_mode`, 32-bit;
//! section `.trampoline`, linked below 1 MiB) is not 64-bit code: 64-bit decoding fails on it
//! or finds boundaries the CPU never uses, so it is checked to be exactly those two functions
//! and left out. (Boundaries and `ret` sites of the rest were also checked once against
//! `objdump -d`: identical.)

use tracer::symbols::{ElfSymbols, Function, SymbolSource};
use tracer::traps::{
    decode_function, emulate, DecodeError, DecodedFunction, Emulation, GuestMemory, GuestText,
    MemoryFault, PlacementError, Regs, ReturnKind, TextError, TrapKind, TrapTable,
};

/// Functions linked below 1 MiB: the real/protected-mode AP trampoline.
const TRAMPOLINE: [&str; 2] = ["trampoline_start", "ap_protected_mode"];
const ONE_MIB: u64 = 0x10_0000;

struct Image {
    name: &'static str,
    image: &'static [u8],
    syms: ElfSymbols,
}

fn images() -> Vec<Image> {
    guest::all()
        .iter()
        .map(|g| Image {
            name: g.name,
            image: g.image,
            syms: ElfSymbols::parse(g.image).unwrap_or_else(|e| panic!("{}: {e}", g.name)),
        })
        .collect()
}

fn decode(img: &Image, f: &Function) -> Result<DecodedFunction, DecodeError> {
    let bytes = img
        .syms
        .function_bytes(img.image, f)
        .unwrap_or_else(|| panic!("{}: no bytes for {}", img.name, f.name));
    decode_function(f, bytes, &img.syms.return_thunks())
}

/// The 64-bit functions of an image.
fn long_mode(img: &Image) -> impl Iterator<Item = &Function> + '_ {
    img.syms.functions().iter().filter(|f| f.address >= ONE_MIB)
}

#[test]
fn every_guest_function_decodes_to_its_end() {
    let mut functions = 0;
    let mut instructions = 0;
    for img in images() {
        for f in img.syms.functions().iter().filter(|f| f.address < ONE_MIB) {
            assert!(
                TRAMPOLINE.contains(&f.name.as_str()),
                "{}: {} below 1 MiB",
                img.name,
                f.name
            );
        }
        for f in long_mode(&img) {
            let d = decode(&img, f).unwrap_or_else(|e| panic!("{}: {e}", img.name));
            let starts: Vec<u64> = d.boundaries().collect();
            assert_eq!(starts.first(), Some(&f.address), "{}: {}", img.name, f.name);
            let total: u64 = starts
                .iter()
                .map(|&a| d.instruction_len(a).expect("boundary"))
                .sum();
            assert_eq!(
                total, f.size,
                "{}: {} lengths add up to its size",
                img.name, f.name
            );
            functions += 1;
            instructions += d.instruction_count();
        }
    }
    assert!(functions > 200, "only {functions} functions");
    println!("{functions} guest functions, {instructions} instructions decoded");
}

#[test]
fn the_trampoline_is_not_64_bit_code() {
    let img = images().into_iter().find(|i| i.name == "smp").expect("smp");
    let f = img
        .syms
        .by_name("trampoline_start")
        .expect("trampoline_start");
    assert!(matches!(
        decode(&img, f),
        Err(DecodeError::Undecodable { .. })
    ));
}

#[test]
fn return_sites_are_the_rets() {
    let mut sites = 0;
    for img in images() {
        for f in long_mode(&img) {
            let d = decode(&img, f).expect("decodes");
            let bytes = img.syms.function_bytes(img.image, f).expect("bytes");
            for r in d.return_sites() {
                let at = (r.address - f.address) as usize;
                match r.kind {
                    ReturnKind::Ret => assert_eq!(bytes[at], 0xc3),
                    ReturnKind::RetImm(_) => assert_eq!(bytes[at], 0xc2),
                    other => panic!(
                        "{}: {}: no thunks in the guests, got {other:?}",
                        img.name, f.name
                    ),
                }
                sites += 1;
            }
            // Every c3 byte that starts an instruction is a return site.
            for b in d.boundaries() {
                let at = (b - f.address) as usize;
                if bytes[at] == 0xc3 {
                    assert!(d.return_sites().iter().any(|r| r.address == b));
                }
            }
        }
    }
    assert!(sites > 150, "only {sites} return sites");
}

#[test]
fn known_functions_of_xcall_lab_and_smp() {
    let all = images();
    let xcall_lab = all
        .iter()
        .find(|i| i.name == "xcall-lab")
        .expect("xcall-lab");
    let xcall = xcall_lab.syms.by_name("xcall").expect("xcall");
    let d = decode(xcall_lab, xcall).expect("decodes");
    assert_eq!(
        d.return_sites().last().map(|r| r.address),
        Some(xcall.end() - 1),
        "xcall ends in a ret"
    );
    // An interrupt handler returns with iretq: no function-return site.
    let handler = xcall_lab
        .syms
        .by_name("xcall_handler")
        .expect("xcall_handler");
    assert!(decode(xcall_lab, handler)
        .expect("decodes")
        .return_sites()
        .is_empty());
    let matched: Vec<&str> = xcall_lab
        .syms
        .by_glob("xcall_*")
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(
        matched.contains(&"xcall_handler") && !matched.contains(&"xcall"),
        "{matched:?}"
    );
    assert!(matched.iter().all(|n| n.starts_with("xcall_")));

    let smp = all.iter().find(|i| i.name == "smp").expect("smp");
    for name in ["start_aps", "ap_main", "serial_putc"] {
        assert!(smp.syms.by_name(name).is_some(), "smp: {name}");
    }
    let several = smp
        .syms
        .functions()
        .iter()
        .filter(|f| f.address >= ONE_MIB)
        .filter(|f| decode(smp, f).expect("decodes").return_sites().len() >= 2)
        .count();
    assert!(
        several > 0,
        "some smp function returns in more than one place"
    );
}

#[test]
fn non_boundaries_in_a_real_function_are_refused() {
    let all = images();
    let img = all.iter().find(|i| i.name == "smp").expect("smp");
    let f = img.syms.by_name("start_aps").expect("start_aps");
    let d = decode(img, f).expect("decodes");
    let mut refused = 0;
    for addr in f.address..f.end() {
        match d.check_trap_site(addr) {
            Ok(()) => assert!(d.is_boundary(addr)),
            Err(PlacementError::NotABoundary {
                function,
                offset,
                before,
                after,
            }) => {
                assert_eq!(function, "start_aps");
                assert_eq!(offset, addr - f.address);
                let before = before.expect("the first byte is a boundary");
                assert!(before < offset && d.is_boundary(f.address + before));
                if let Some(after) = after {
                    assert!(after > offset && d.is_boundary(f.address + after));
                }
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused as usize, f.size as usize - d.instruction_count());
}

/// Guest text backed by a copy of an image's function bytes.
struct Text {
    base: u64,
    bytes: Vec<u8>,
}

impl GuestText for Text {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TextError> {
        let err = TextError {
            addr,
            len: buf.len(),
        };
        let off = addr.checked_sub(self.base).ok_or(err)? as usize;
        let src = self.bytes.get(off..off + buf.len()).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TextError> {
        let err = TextError {
            addr,
            len: data.len(),
        };
        let off = addr.checked_sub(self.base).ok_or(err)? as usize;
        self.bytes
            .get_mut(off..off + data.len())
            .ok_or(err)?
            .copy_from_slice(data);
        Ok(())
    }
}

#[test]
fn traps_on_every_boundary_read_back_through_the_shadow() {
    for img in images() {
        for f in long_mode(&img) {
            let original = img.syms.function_bytes(img.image, f).expect("bytes");
            let d = decode(&img, f).expect("decodes");
            let mut text = Text {
                base: f.address,
                bytes: original.to_vec(),
            };
            let mut table = TrapTable::new();
            let mut armed = 0;
            for b in d.boundaries() {
                // The guests' own hlt instructions cannot take a hlt trap (refused).
                if table.arm(b, TrapKind::Hlt, &mut text).is_ok() {
                    armed += 1;
                }
            }
            assert!(armed > 0);
            let mut shadow = vec![0u8; original.len()];
            table
                .shadow_read(&text, f.address, &mut shadow)
                .expect("read");
            assert_eq!(shadow, original, "{}: {}", img.name, f.name);
            let again = decode_function(f, &shadow, &[]).expect("decodes from the shadow");
            assert_eq!(again, d);
            assert!(table.disarm_all(&mut text).is_empty());
            assert_eq!(text.bytes, original, "{}: {} restored", img.name, f.name);
        }
    }
}

/// A stack that accepts every access (for entry-instruction emulation).
struct AnyStack;

impl GuestMemory for AnyStack {
    fn read_u64(&mut self, _gva: u64) -> Result<u64, MemoryFault> {
        Ok(0x10_0000)
    }
    fn write_u64(&mut self, _gva: u64, _value: u64) -> Result<(), MemoryFault> {
        Ok(())
    }
}

#[test]
fn entry_and_return_instructions_of_the_guests_emulate() {
    let regs = Regs {
        rsp: 0x20_0000,
        rflags: 0x2,
        ..Regs::default()
    };
    let (mut entries, mut emulated) = (0, 0);
    let mut stepped = std::collections::BTreeMap::<String, usize>::new();
    for img in images() {
        for f in long_mode(&img) {
            let bytes = img.syms.function_bytes(img.image, f).expect("bytes");
            let d = decode(&img, f).expect("decodes");
            entries += 1;
            match emulate(bytes, f.address, &regs, &mut AnyStack) {
                Emulation::Emulated(out) => {
                    emulated += 1;
                    assert!(
                        out.rip == f.address + d.instruction_len(f.address).unwrap_or(0)
                            || bytes[0] == 0xe8
                            || bytes[0] == 0xe9
                            || bytes[0] == 0xeb
                    );
                }
                Emulation::NeedsSingleStep(why) => {
                    *stepped.entry(format!("{why:?}")).or_default() += 1;
                }
            }
            for r in d.return_sites() {
                let at = (r.address - f.address) as usize;
                assert!(
                    matches!(
                        emulate(&bytes[at..], r.address, &regs, &mut AnyStack),
                        Emulation::Emulated(_)
                    ),
                    "{}: {} return at +{at:#x}",
                    img.name,
                    f.name
                );
            }
        }
    }
    println!("entry instructions emulated: {emulated} of {entries}; single-stepped: {stepped:?}");
    assert!(emulated * 2 > entries, "most guest entries should emulate");
}
