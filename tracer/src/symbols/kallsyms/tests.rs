//! Tests against synthetic tables written the way `scripts/kallsyms` writes them, in each
//! supported layout, so the decoder is tested without a 60 MB kernel; and a property test
//! that arbitrary bytes never make it panic. (The real kernel is tested in
//! `tests/tests/linux_image.rs`.)

use proptest::prelude::*;

use super::*;

/// Which `scripts/kallsyms` output order to write.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    /// 6.1: offsets, relative base, num_syms, names, markers, token table, index.
    V61,
    /// 6.2-6.3: as 6.1 with seqs_of_names between the markers and the token table.
    V62,
    /// 6.4+: num_syms, names, markers, token table, index, offsets, relative base, seqs.
    V64,
}

/// How addresses are written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Addr {
    Relative,
    AbsolutePercpu,
    Absolute,
}

const BASE: u64 = 0xffff_ffff_8100_0000;
/// Where the synthetic `.rodata` is.
const RODATA: u64 = 0xffff_ffff_8200_0000;

struct Builder {
    out: Vec<u8>,
}

impl Builder {
    fn align(&mut self) {
        while !self.out.len().is_multiple_of(8) {
            self.out.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Tokens: every byte stands for itself, and a few free codes hold substrings.
fn token_table() -> Vec<Vec<u8>> {
    let mut t: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    t[0x00] = b"fn_".to_vec(); // byte 0 never occurs in names
    t[0x01] = b"kernel_".to_vec();
    t[0x02] = b"_start".to_vec();
    t[0x03] = b"Tdo_".to_vec();
    t[0x04] = Vec::new(); // an empty token, as scripts/kallsyms writes for unused codes
    t[0x05] = b"sys".to_vec();
    t
}

fn compress(tokens: &[Vec<u8>], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let (code, len) = (0..=5u8)
            .filter(|&c| {
                !tokens[c as usize].is_empty() && text[at..].starts_with(&tokens[c as usize])
            })
            .map(|c| (c, tokens[c as usize].len()))
            .max_by_key(|&(_, l)| l)
            .unwrap_or((text[at], 1));
        out.push(code);
        at += len;
    }
    out
}

/// Writes a `.rodata` image holding `syms` (sorted by address) in `order` and `addr` mode,
/// after `junk` bytes. Returns the image and the offset of `kallsyms_num_syms`.
fn build(syms: &[(char, &str, u64)], order: Order, addr: Addr, junk: &[u8]) -> Vec<u8> {
    let tokens = token_table();
    let mut b = Builder { out: junk.to_vec() };
    b.align();
    let n = syms.len();
    let addresses = |b: &mut Builder| {
        b.align();
        match addr {
            Addr::Absolute => {
                for s in syms {
                    b.out.extend_from_slice(&s.2.to_le_bytes());
                }
            }
            Addr::Relative => {
                for s in syms {
                    b.u32((s.2 - BASE) as u32);
                }
                b.align();
                b.out.extend_from_slice(&BASE.to_le_bytes());
            }
            Addr::AbsolutePercpu => {
                for s in syms {
                    let off = if s.2 < 0x10_0000 {
                        s.2 as i32
                    } else {
                        (BASE as i64 - s.2 as i64 - 1) as i32
                    };
                    b.u32(off as u32);
                }
                b.align();
                b.out.extend_from_slice(&BASE.to_le_bytes());
            }
        }
    };
    let mut by_name: Vec<usize> = (0..n).collect();
    by_name.sort_by(|&x, &y| syms[x].1.cmp(syms[y].1));
    let seqs = |b: &mut Builder| {
        b.align();
        for &i in &by_name {
            b.out.extend_from_slice(&(i as u32).to_be_bytes()[1..]);
        }
    };
    if order != Order::V64 && addr != Addr::Absolute {
        addresses(&mut b);
    } else if order != Order::V64 {
        // kallsyms_addresses ends right before num_syms.
        addresses(&mut b);
    }
    b.align();
    b.u32(n as u32);
    b.align();
    let names = b.out.len();
    let mut markers = Vec::new();
    for (i, s) in syms.iter().enumerate() {
        if i % 256 == 0 {
            markers.push((b.out.len() - names) as u32);
        }
        let mut text = vec![s.0 as u8];
        text.extend_from_slice(s.1.as_bytes());
        let codes = compress(&tokens, &text);
        if codes.len() > 0x7f {
            b.out.push(0x80 | (codes.len() & 0x7f) as u8);
            b.out.push((codes.len() >> 7) as u8);
        } else {
            b.out.push(codes.len() as u8);
        }
        b.out.extend_from_slice(&codes);
    }
    b.align();
    for m in markers {
        b.u32(m);
    }
    if order == Order::V62 {
        seqs(&mut b);
    }
    b.align();
    let mut index = Vec::new();
    let table = b.out.len();
    for t in &tokens {
        index.push((b.out.len() - table) as u16);
        b.out.extend_from_slice(t);
        b.out.push(0);
    }
    b.align();
    for i in index {
        b.out.extend_from_slice(&i.to_le_bytes());
    }
    if order == Order::V64 {
        addresses(&mut b);
        seqs(&mut b);
    }
    b.out.extend_from_slice(&[0xaa; 13]);
    b.out
}

fn sample() -> Vec<(char, String, u64)> {
    let mut syms = vec![
        ('D', "fixed_percpu_data".to_string(), 0),
        ('D', "cpu_number".to_string(), 0x40),
        ('T', "startup_64".to_string(), BASE),
        ('t', "__pfx_do_sys_open".to_string(), BASE + 0x10),
        ('T', "do_sys_open".to_string(), BASE + 0x20),
        ('t', "helper".to_string(), BASE + 0x40),
        ('t', "helper".to_string(), BASE + 0x60),
        ('T', format!("long_{}", "x".repeat(200)), BASE + 0x80),
    ];
    for i in 0..600u64 {
        syms.push(('t', format!("kernel_fn_{i:04}"), BASE + 0x100 + 0x10 * i));
    }
    syms.push(('T', "_etext".to_string(), BASE + 0x100 + 0x10 * 600));
    syms.push(('R', "sys_call_table".to_string(), RODATA + 0x10));
    syms
}

fn decode(order: Order, addr: Addr, junk: &[u8]) -> Kallsyms {
    let owned = sample();
    let mut syms: Vec<(char, &str, u64)> = owned
        .iter()
        .map(|(k, n, a)| (*k, n.as_str(), *a))
        .filter(|s| addr != Addr::Relative || s.2 >= BASE)
        .collect();
    if addr == Addr::Absolute {
        syms.retain(|s| s.2 >= BASE);
    }
    let image = build(&syms, order, addr, junk);
    let k =
        Kallsyms::from_region(&image, RODATA).unwrap_or_else(|e| panic!("{order:?} {addr:?}: {e}"));
    let got: Vec<(char, &str, u64)> = k
        .symbols()
        .iter()
        .map(|s| (s.kind, s.name.as_str(), s.address))
        .collect();
    assert_eq!(got, syms, "{order:?} {addr:?}");
    k
}

/// Junk before the tables, including a false digits pattern and plausible-looking counts.
fn junk() -> Vec<u8> {
    let mut j = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00abc\x00".to_vec();
    j.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0, 3, b'T', b'a', b'b']);
    j.extend_from_slice(&[0; 40]);
    j
}

#[test]
fn every_layout_and_address_mode_decodes() {
    for order in [Order::V61, Order::V62, Order::V64] {
        for addr in [Addr::Relative, Addr::AbsolutePercpu, Addr::Absolute] {
            for j in [Vec::new(), junk()] {
                let k = decode(order, addr, &j);
                let mode = match addr {
                    Addr::Relative => AddressMode::Relative,
                    Addr::AbsolutePercpu => AddressMode::RelativeAbsolutePercpu,
                    Addr::Absolute => AddressMode::Absolute,
                };
                assert_eq!(k.layout().mode, mode, "{order:?} {addr:?}");
                assert_eq!(
                    k.layout().seqs_of_names.is_some(),
                    order != Order::V61,
                    "{order:?} {addr:?}: seqs_of_names"
                );
                assert_eq!(k.layout().marker_width, 4);
            }
        }
    }
}

#[test]
fn layout_addresses_are_where_the_builder_put_them() {
    let owned = sample();
    let syms: Vec<(char, &str, u64)> = owned.iter().map(|(k, n, a)| (*k, n.as_str(), *a)).collect();
    let image = build(&syms, Order::V64, Addr::AbsolutePercpu, &[]);
    let k = Kallsyms::from_region(&image, RODATA).unwrap();
    let l = k.layout();
    assert_eq!(l.num_syms_at, RODATA, "num_syms first in 6.4+");
    assert_eq!(l.names, RODATA + 8);
    assert_eq!(l.relative_base, BASE);
    assert!(l.token_table < l.token_index && l.token_index < l.offsets);
    assert_eq!(
        l.relative_base_at,
        Some(l.offsets + (4 * syms.len() as u64).next_multiple_of(8))
    );
}

#[test]
fn by_name_finds_every_alias() {
    let k = decode(Order::V64, Addr::AbsolutePercpu, &[]);
    let helpers = k.by_name("helper");
    assert_eq!(helpers.len(), 2);
    assert_eq!(k.by_name("do_sys_open")[0].address, BASE + 0x20);
    assert!(k.by_name("do_sys").is_empty());
    assert_eq!(k.by_name("kernel_fn_0599").len(), 1);
    // 6.1 has no kernel index: the decoder builds one.
    let k = decode(Order::V61, Addr::Relative, &[]);
    assert_eq!(k.by_name("helper").len(), 2);
    assert_eq!(k.by_name("zzz").len(), 0);
}

#[test]
fn functions_end_at_the_next_symbol_and_skip_padding() {
    let k = decode(Order::V64, Addr::AbsolutePercpu, &[]);
    let end = BASE + 0x100 + 0x10 * 600;
    let text = BASE..end;
    let f = k.functions(std::slice::from_ref(&text), KERNEL);
    let get = |name: &str| {
        f.iter()
            .find(|f| f.name == name)
            .map(|f| (f.address, f.size))
    };
    assert_eq!(
        get("startup_64"),
        Some((BASE, 0x10)),
        "ends at __pfx_do_sys_open"
    );
    assert_eq!(get("do_sys_open"), Some((BASE + 0x20, 0x20)));
    assert_eq!(get("__pfx_do_sys_open"), None, "padding is not a function");
    assert_eq!(get("kernel_fn_0599"), Some((end - 0x10, 0x10)));
    assert_eq!(get("_etext"), None, "at the end of the range: nothing left");
    assert_eq!(get("sys_call_table"), None, "not text");
    assert_eq!(get("cpu_number"), None, "per-CPU data");
    assert!(f.iter().all(|f| f.module == KERNEL));
}

const KERNEL: &str = crate::symbols::KERNEL_MODULE;

#[test]
fn missing_tables_are_typed_errors() {
    assert_eq!(
        Kallsyms::from_region(b"nothing here", RODATA).unwrap_err(),
        KallsymsError::NoTokenTable
    );
    let owned = sample();
    let syms: Vec<(char, &str, u64)> = owned.iter().map(|(k, n, a)| (*k, n.as_str(), *a)).collect();
    let image = build(&syms, Order::V64, Addr::AbsolutePercpu, &[]);
    let k = Kallsyms::from_region(&image, RODATA).unwrap();
    let names = (k.layout().names - RODATA) as usize;
    // Break the markers: the names no longer fit any layout.
    let markers = (k.layout().markers - RODATA) as usize;
    let mut broken = image.clone();
    broken[markers + 4] ^= 0xff;
    assert!(matches!(
        Kallsyms::from_region(&broken, RODATA).unwrap_err(),
        KallsymsError::UnknownNamesLayout { .. }
    ));
    // Unsort the addresses.
    let offsets = (k.layout().offsets - RODATA) as usize;
    let mut broken = image.clone();
    broken[offsets + 4 * 5..offsets + 4 * 6].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    assert_eq!(
        Kallsyms::from_region(&broken, RODATA).unwrap_err(),
        KallsymsError::UnknownAddressLayout {
            names: RODATA + names as u64,
            num_syms: syms.len()
        }
    );
    assert_eq!(
        Kallsyms::from_elf(b"MZ").unwrap_err(),
        KallsymsError::NotElf
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Arbitrary bytes never panic.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Kallsyms::from_region(&bytes, RODATA);
        let _ = Kallsyms::from_elf(&bytes);
    }

    /// A valid table with bytes flipped anywhere never panics, and whatever decodes still
    /// has one address per name.
    #[test]
    fn corrupted_tables_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        order in prop_oneof![Just(Order::V61), Just(Order::V62), Just(Order::V64)],
    ) {
        let owned = sample();
        let syms: Vec<(char, &str, u64)> = owned.iter().map(|(k, n, a)| (*k, n.as_str(), *a)).collect();
        let mut image = build(&syms, order, Addr::AbsolutePercpu, &[]);
        for (at, v) in flips {
            let i = at.index(image.len());
            image[i] ^= v;
        }
        let len = cut.index(image.len() + 1);
        if let Ok(k) = Kallsyms::from_region(&image[..len], RODATA) {
            prop_assert!(!k.symbols().is_empty());
            let _ = k.by_name("helper");
            let text = BASE..BASE + 0x10000;
            let _ = k.functions(std::slice::from_ref(&text), KERNEL);
        }
    }
}
