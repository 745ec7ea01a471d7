//! Page-walk tests on synthetic page tables: 4- and 5-level, large pages, not-present and
//! reserved entries, garbage and cyclic tables, page-crossing reads and C strings.

use super::*;
use proptest::prelude::*;

/// Guest-physical memory of `size` bytes with a bump allocator for page tables.
struct Phys {
    mem: Vec<u8>,
    next_table: u64,
    reads: std::cell::Cell<usize>,
}

const MEM: usize = 8 << 20;
const P: u64 = PRESENT;
const RW: u64 = WRITABLE;

impl Phys {
    fn new() -> Self {
        Self {
            mem: vec![0; MEM],
            next_table: 0x10_0000,
            reads: std::cell::Cell::new(0),
        }
    }

    fn alloc_table(&mut self) -> u64 {
        let t = self.next_table;
        self.next_table += 0x1000;
        t
    }

    fn put(&mut self, gpa: u64, value: u64) {
        let o = gpa as usize;
        self.mem[o..o + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn get(&self, gpa: u64) -> u64 {
        let o = gpa as usize;
        u64::from_le_bytes(self.mem[o..o + 8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, gpa: u64, data: &[u8]) {
        let o = gpa as usize;
        self.mem[o..o + data.len()].copy_from_slice(data);
    }

    /// Maps `gva` to a page at `gpa` of `size`, creating tables under `root` as needed.
    fn map(&mut self, root: u64, la57: bool, gva: u64, gpa: u64, size: PageSize, flags: u64) {
        let shifts: &[u32] = if la57 {
            &[48, 39, 30, 21, 12]
        } else {
            &[39, 30, 21, 12]
        };
        let leaf_shift = match size {
            PageSize::Size4K => 12,
            PageSize::Size2M => 21,
            PageSize::Size1G => 30,
        };
        let mut table = root;
        for &shift in shifts {
            let slot = table + ((gva >> shift) & 0x1ff) * 8;
            if shift == leaf_shift {
                let ps = if shift == 12 { 0 } else { PS };
                self.put(slot, gpa | flags | ps);
                return;
            }
            let entry = self.get(slot);
            table = if entry & P != 0 {
                entry & ADDR_MASK
            } else {
                let t = self.alloc_table();
                self.put(slot, t | P | RW | USER);
                t
            };
        }
    }
}

impl PhysMemory for Phys {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        self.reads.set(self.reads.get() + 1);
        let o = usize::try_from(gpa).ok()?;
        let bytes = self.mem.get(o..o.checked_add(8)?)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

const KTEXT: u64 = 0xffff_ffff_8100_0000;

#[test]
fn four_level_4k_page() {
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    m.map(cr3, false, KTEXT, 0x20_0000, PageSize::Size4K, P | RW);
    let t = translate(
        &m,
        cr3 | 0x5, /* PCID bits ignored */
        false,
        KTEXT + 0x123,
    )
    .expect("maps");
    assert_eq!(t.gpa, 0x20_0123);
    assert_eq!(t.page_size, PageSize::Size4K);
    assert!(t.writable && !t.user && t.executable);
    m.reads.set(0);
    let _ = translate(&m, cr3, false, KTEXT);
    assert_eq!(m.reads.get(), 4, "one read per level");
}

#[test]
fn five_level_and_canonical_checks() {
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    let high57 = 0xff00_0000_0000_0000u64; // canonical only with LA57
    m.map(cr3, true, high57, 0x30_0000, PageSize::Size4K, P | NX);
    let t = translate(&m, cr3, true, high57 + 8).expect("maps");
    assert_eq!(t.gpa, 0x30_0008);
    assert!(!t.executable && !t.writable);
    m.reads.set(0);
    let _ = translate(&m, cr3, true, high57);
    assert_eq!(m.reads.get(), 5, "one read per level");
    assert_eq!(
        translate(&m, cr3, false, high57),
        Err(WalkError::NonCanonical {
            gva: high57,
            la57: false
        })
    );
    assert!(is_canonical(KTEXT, false) && is_canonical(KTEXT, true));
    assert!(is_canonical(0x7fff_ffff_ffff, false));
    assert!(!is_canonical(0x8000_0000_0000, false));
    assert!(is_canonical(0x8000_0000_0000, true));
    assert!(!is_canonical(0x0100_0000_0000_0000, true));
}

#[test]
fn large_pages() {
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    m.map(
        cr3,
        false,
        0x4000_0000,
        0x40_0000,
        PageSize::Size2M,
        P | RW | USER,
    );
    m.map(cr3, false, 0x8000_0000, 0x4000_0000, PageSize::Size1G, P);
    let t = translate(&m, cr3, false, 0x4000_0000 + 0x1f_fff0).expect("2M");
    assert_eq!(
        (t.gpa, t.page_size),
        (0x40_0000 + 0x1f_fff0, PageSize::Size2M)
    );
    assert!(t.user && t.writable);
    let t = translate(&m, cr3, false, 0x8000_0000 + 0x1234_5678).expect("1G");
    assert_eq!(
        (t.gpa, t.page_size),
        (0x4000_0000 + 0x1234_5678, PageSize::Size1G)
    );
    // PAT (bit 12) is allowed in a large-page entry; other low address bits are reserved.
    let pdpt = m.get(cr3) & ADDR_MASK;
    m.put(pdpt + 2 * 8, 0x4000_0000 | P | PS | (1 << 12));
    assert!(translate(&m, cr3, false, 0x8000_0000).is_ok());
    m.put(pdpt + 2 * 8, 0x4000_0000 | P | PS | (1 << 13));
    assert!(matches!(
        translate(&m, cr3, false, 0x8000_0000),
        Err(WalkError::ReservedBits {
            level: Level::Pdpt,
            ..
        })
    ));
}

#[test]
fn not_present_names_the_level() {
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    assert!(matches!(
        translate(&m, cr3, false, KTEXT),
        Err(WalkError::NotPresent {
            level: Level::Pml4,
            ..
        })
    ));
    m.map(cr3, false, KTEXT, 0x20_0000, PageSize::Size4K, P);
    let err = translate(&m, cr3, false, KTEXT + 0x1000).unwrap_err();
    assert!(
        matches!(
            err,
            WalkError::NotPresent {
                level: Level::Pt,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("PT level"), "{err}");
    let err = translate(&m, cr3, false, KTEXT + 0x20_0000).unwrap_err();
    assert!(
        matches!(
            err,
            WalkError::NotPresent {
                level: Level::Pd,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn garbage_tables_fail_cleanly() {
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    // PS in a PML4E is reserved.
    m.put(cr3, P | PS);
    assert!(matches!(
        translate(&m, cr3, false, 0),
        Err(WalkError::ReservedBits {
            level: Level::Pml4,
            ..
        })
    ));
    // A PML4E pointing far outside memory.
    m.put(cr3, 0x000f_ffff_ffff_f000 | P);
    assert!(matches!(
        translate(&m, cr3, false, 0),
        Err(WalkError::Unreadable {
            level: Level::Pdpt,
            ..
        })
    ));
    // CR3 outside memory.
    assert!(matches!(
        translate(&m, 0x000f_0000_0000_0000, false, 0),
        Err(WalkError::Unreadable {
            level: Level::Pml4,
            ..
        })
    ));
}

#[test]
fn self_referencing_tables_terminate() {
    // Every entry of one table points back at the table itself (a cycle at every level).
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    for i in 0..512 {
        m.put(cr3 + i * 8, cr3 | P | RW);
    }
    for la57 in [false, true] {
        m.reads.set(0);
        let t = translate(&m, cr3, la57, 0x1234_5678).expect("recursive mapping translates");
        assert_eq!(t.gpa, cr3 | 0x678, "the last level maps the table itself");
        assert_eq!(m.reads.get(), if la57 { 5 } else { 4 });
    }
}

#[test]
fn read_virtual_crosses_pages() {
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    // Two virtually adjacent pages mapped to physically distant frames.
    m.map(cr3, false, KTEXT, 0x50_0000, PageSize::Size4K, P);
    m.map(cr3, false, KTEXT + 0x1000, 0x20_0000, PageSize::Size4K, P);
    m.write(0x50_0ffc, b"abcd");
    m.write(0x20_0000, b"efgh");
    let mut buf = [0u8; 8];
    read_virtual(&m, cr3, false, KTEXT + 0xffc, &mut buf).expect("reads");
    assert_eq!(&buf, b"abcdefgh");
    // Into an unmapped page: says how far it got.
    let err = read_virtual(&m, cr3, false, KTEXT + 0x1ffc, &mut buf).unwrap_err();
    assert!(matches!(err, ReadError::Walk { done: 4, .. }), "{err:?}");
    // A frame outside guest memory.
    m.map(
        cr3,
        false,
        KTEXT + 0x2000,
        0x1_0000_0000,
        PageSize::Size4K,
        P,
    );
    let err = read_virtual(&m, cr3, false, KTEXT + 0x2000, &mut buf).unwrap_err();
    assert!(
        matches!(err, ReadError::Physical { done: 0, .. }),
        "{err:?}"
    );
    let err = read_virtual(&m, cr3, false, u64::MAX - 2, &mut buf).unwrap_err();
    assert!(matches!(err, ReadError::Wraps { .. }));
    assert!(read_virtual(&m, cr3, false, KTEXT, &mut []).is_ok());
}

#[test]
fn default_physical_read_handles_unaligned_ranges() {
    let mut m = Phys::new();
    m.write(0x1003, b"hello, world");
    let mut buf = [0u8; 12];
    assert!(m.read(0x1003, &mut buf));
    assert_eq!(&buf, b"hello, world");
    assert!(!m.read(MEM as u64 - 4, &mut buf));
    assert!(!m.read(u64::MAX - 3, &mut buf));
}

#[test]
fn cstrings() {
    let mut m = Phys::new();
    let cr3 = m.alloc_table();
    m.map(cr3, false, KTEXT, 0x50_0000, PageSize::Size4K, P);
    m.map(cr3, false, KTEXT + 0x1000, 0x20_0000, PageSize::Size4K, P);
    // A string that straddles two pages.
    m.write(0x50_0ffa, b"stradd");
    m.write(0x20_0000, b"les\0junk");
    let s = read_cstring(&m, cr3, false, KTEXT + 0xffa, 256).expect("reads");
    assert_eq!(
        (s.bytes.as_slice(), s.terminated),
        (&b"straddles"[..], true)
    );
    // Capped.
    let s = read_cstring(&m, cr3, false, KTEXT + 0xffa, 4).expect("reads");
    assert_eq!((s.bytes.as_slice(), s.terminated), (&b"stra"[..], false));
    // Ending right before an unmapped page is fine.
    m.write(0x20_0ffe, b"z\0");
    let s = read_cstring(&m, cr3, false, KTEXT + 0x1ffe, 256).expect("reads");
    assert_eq!((s.bytes.as_slice(), s.terminated), (&b"z"[..], true));
    // Running into an unmapped page is an error saying how far it got.
    m.write(0x20_0ffe, b"zz");
    let err = read_cstring(&m, cr3, false, KTEXT + 0x1ffe, 256).unwrap_err();
    assert!(matches!(err, ReadError::Walk { done: 2, .. }), "{err:?}");
    // Empty and zero-capped strings.
    m.write(0x50_0000, b"\0");
    let s = read_cstring(&m, cr3, false, KTEXT, 10).expect("reads");
    assert_eq!((s.bytes.len(), s.terminated), (0, true));
    let s = read_cstring(&m, cr3, false, KTEXT, 0).expect("reads");
    assert_eq!((s.bytes.len(), s.terminated), (0, false));
}

/// Procedurally random physical memory: every word below `limit` is a hash of its address,
/// mostly shaped like a present entry pointing back below `limit` (so walks go deep).
struct Garbage {
    seed: u64,
    limit: u64,
    reads: std::cell::Cell<usize>,
}

impl PhysMemory for Garbage {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        self.reads.set(self.reads.get() + 1);
        if gpa >= self.limit {
            return None;
        }
        // splitmix64
        let mut z = (self.seed ^ gpa).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Some(if z & 0xf00 != 0 {
            ((z >> 12) % self.limit) & ADDR_MASK | (z & 0xfff) | P
        } else {
            z
        })
    }
}

proptest! {
    /// Random memory contents as page tables: the walk never panics and reads at most one
    /// entry per level; reads and strings over it never panic.
    #[test]
    fn random_tables_never_panic(
        seed in any::<u64>(),
        limit in 0x1000u64..0x10_0000,
        cr3 in any::<u64>(),
        gva in any::<u64>(),
        la57 in any::<bool>(),
        len in 0usize..9000,
    ) {
        let m = Garbage { seed, limit, reads: std::cell::Cell::new(0) };
        let cr3 = cr3 % limit;
        let _ = translate(&m, cr3, la57, gva);
        prop_assert!(m.reads.get() <= 5);
        let mut buf = vec![0u8; len];
        let _ = read_virtual(&m, cr3, la57, gva, &mut buf);
        let _ = read_cstring(&m, cr3, la57, gva, len);
    }
}
