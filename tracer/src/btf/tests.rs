//! Tests against a small BTF blob written here, record by record as `btf.h` lays it out, and
//! a property test that arbitrary bytes never make the reader panic. (The real kernel's BTF
//! is tested in `tests/tests/linux_btf.rs`.)

use proptest::prelude::*;

use super::*;

/// Writes BTF: strings are interned, types appended with their trailing records.
#[derive(Default)]
struct Blob {
    types: Vec<u8>,
    strings: Vec<u8>,
    count: u32,
}

impl Blob {
    fn new() -> Self {
        Self {
            strings: vec![0],
            ..Self::default()
        }
    }
    fn s(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }
    fn ty(
        &mut self,
        name: &str,
        kind: u32,
        vlen: u32,
        flag: bool,
        size_or_type: u32,
        extra: &[u32],
    ) -> u32 {
        let n = self.s(name);
        let info = vlen | kind << 24 | u32::from(flag) << 31;
        for w in [n, info, size_or_type].iter().chain(extra) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        self.count += 1;
        self.count
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// `long do_sys_openat2(int dfd, const char *filename, struct open_how *how)` and friends.
fn sample() -> Vec<u8> {
    let mut b = Blob::new();
    let int = b.ty("int", 1, 0, false, 4, &[1 << 24 | 32]); // 1
    let long = b.ty("long", 1, 0, false, 8, &[1 << 24 | 64]); // 2
    let char_ = b.ty("char", 1, 0, false, 1, &[2 << 24 | 8]); // 3
    let cchar = b.ty("", 10, 0, false, char_, &[]); // 4 const char
    let pcchar = b.ty("", 2, 0, false, cchar, &[]); // 5 const char *
    let u64_ = b.ty("u64", 8, 0, false, long, &[]); // 6 typedef
    let (flags, mode, resolve) = (b.s("flags"), b.s("mode"), b.s("resolve"));
    let how = b.ty(
        "open_how",
        4,
        3,
        false,
        24,
        &[flags, u64_, 0, mode, u64_, 64, resolve, u64_, 128],
    ); // 7
    let phow = b.ty("", 2, 0, false, how, &[]); // 8
    let (dfd, filename, howname) = (b.s("dfd"), b.s("filename"), b.s("how"));
    let proto = b.ty(
        "",
        13,
        3,
        false,
        long,
        &[dfd, int, filename, pcchar, howname, phow],
    ); // 9
    b.ty("do_sys_openat2", 12, 1, false, proto, &[]); // 10
    let arr = b.ty("", 3, 0, false, char_, &[char_, int, 16]); // 11 char[16]
    let (comm, bits, pid) = (b.s("comm"), b.s("bits"), b.s("pid"));
    b.ty(
        "task",
        4,
        3,
        true,
        24,
        &[comm, arr, 0, bits, int, 3 << 24 | 128, pid, int, 160],
    ); // 12
    let void_proto = b.ty("", 13, 0, false, 0, &[]); // 13 void (void)
    b.ty("start_kernel", 12, 1, false, void_proto, &[]); // 14
    let fmt = b.s("fmt");
    let printk_proto = b.ty("", 13, 2, false, int, &[fmt, pcchar, 0, 0]); // 15 variadic
    b.ty("_printk", 12, 1, false, printk_proto, &[]); // 16
    let pfn = b.ty("", 2, 0, false, printk_proto, &[]); // 17 int (*)(const char *, ...)
    let cpchar = b.ty("", 10, 0, false, pcchar, &[]); // 18 const char *const
    let (a, b_) = (b.s("A"), b.s("B"));
    b.ty("state", 6, 2, true, 4, &[a, (-1i32) as u32, b_, 2]); // 19 signed enum
    b.ty("f", 16, 0, false, 8, &[]); // 20 float
    b.ty("fwd_s", 7, 0, false, 0, &[]); // 21
    b.ty("v", 14, 0, false, int, &[1]); // 22 var
    b.ty(".data", 15, 1, false, 4, &[22, 0, 4]); // 23 datasec
    b.ty("tag", 17, 0, false, 12, &[u32::MAX]); // 24 decl tag
    b.ty("user", 18, 0, false, char_, &[]); // 25 type tag
    let (lo, hi) = (b.s("BIG"), 0);
    b.ty("e64", 19, 1, false, 8, &[lo, 5, hi]); // 26
    let _ = (pfn, cpchar);
    b.bytes()
}

#[test]
fn parses_every_kind_and_renders_prototypes() {
    let btf = Btf::parse(&sample()).unwrap();
    assert_eq!(btf.len(), 26);
    let p = btf.function("do_sys_openat2").unwrap();
    assert_eq!(
        btf.render_prototype(&p),
        "long do_sys_openat2(int dfd, const char *filename, struct open_how *how)"
    );
    let names: Vec<&str> = p.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["dfd", "filename", "how"]);
    assert_eq!(btf.type_name(p.params[1].ty), "const char *");
    let sk = btf.function("start_kernel").unwrap();
    assert_eq!(btf.render_prototype(&sk), "void start_kernel(void)");
    let pk = btf.function("_printk").unwrap();
    assert_eq!(
        btf.render_prototype(&pk),
        "int _printk(const char *fmt, ...)"
    );
    assert_eq!(btf.type_name(17), "int (*)(const char *fmt, ...)");
    assert_eq!(btf.declaration(17, "cb"), "int (*cb)(const char *fmt, ...)");
    assert_eq!(btf.declaration(18, "p"), "const char *const p");
    assert_eq!(btf.declaration(11, "comm"), "char comm[16]");
    assert_eq!(btf.type_name(6), "u64");
    assert!(btf.function("nope").is_none());
}

#[test]
fn struct_layouts_and_sizes() {
    let btf = Btf::parse(&sample()).unwrap();
    let how = btf.struct_layout("open_how").unwrap();
    assert_eq!(how.size, 24);
    let m: Vec<(&str, u32, &str)> = how
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.bit_offset, m.type_name.as_str()))
        .collect();
    assert_eq!(
        m,
        [
            ("flags", 0, "u64"),
            ("mode", 64, "u64"),
            ("resolve", 128, "u64")
        ]
    );
    let task = btf.struct_layout("task").unwrap();
    assert_eq!(
        (task.members[1].bit_offset, task.members[1].bitfield_size),
        (128, 3)
    );
    assert_eq!(task.members[0].type_name, "char[16]");
    assert_eq!(btf.size_of(11), Some(16));
    assert_eq!(btf.size_of(5), Some(8));
    assert_eq!(btf.size_of(6), Some(8), "through the typedef");
    assert_eq!(btf.size_of(0), None);
    assert_eq!(btf.size_of(21), None, "forward declaration");
    assert_eq!(btf.size_of(22), Some(4), "a variable's type");
    let Kind::Enum { values, signed, .. } = &btf.get(19).unwrap().kind else {
        panic!("enum")
    };
    assert!(*signed);
    assert_eq!(values[0].value, -1);
    let Kind::Enum { values, .. } = &btf.get(26).unwrap().kind else {
        panic!("enum64")
    };
    assert_eq!(values[0].value, 5);
    assert!(matches!(
        btf.get(24).unwrap().kind,
        Kind::DeclTag {
            target: 12,
            component: -1
        }
    ));
    assert!(matches!(
        btf.get(25).unwrap().kind,
        Kind::TypeTag { target: 3 }
    ));
    assert!(btf.struct_layout("fwd_s").is_none());
}

#[test]
fn bad_blobs_are_typed_errors() {
    assert_eq!(Btf::parse(&[]).unwrap_err(), BtfError::Truncated("data"));
    assert_eq!(
        Btf::parse(&[0x12, 0x34, 1, 0]).unwrap_err(),
        BtfError::BadMagic(0x3412)
    );
    assert_eq!(
        Btf::parse(&[0xeb, 0x9f, 1, 0]).unwrap_err(),
        BtfError::BigEndian
    );
    let mut v2 = sample();
    v2[2] = 2;
    assert_eq!(Btf::parse(&v2).unwrap_err(), BtfError::Version(2));
    let mut unknown = sample();
    unknown[24 + 7] = 20; // kind byte of type 1
    assert_eq!(
        Btf::parse(&unknown).unwrap_err(),
        BtfError::UnknownKind { id: 1, kind: 20 }
    );
    let full = sample();
    assert!(matches!(
        Btf::parse(&full[..full.len() - 1]),
        Err(BtfError::Truncated(_))
    ));
    assert_eq!(Btf::from_elf(b"MZ").unwrap_err(), BtfError::NotElf);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Arbitrary bytes, and a valid blob with bytes changed, never panic; whatever parses
    /// renders.
    #[test]
    fn garbage_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let _ = Btf::parse(&bytes);
        let mut blob = sample();
        for (at, v) in flips {
            let i = at.index(blob.len());
            blob[i] ^= v;
        }
        if let Ok(btf) = Btf::parse(&blob) {
            for (id, _) in btf.types() {
                let _ = btf.type_name(id);
                let _ = btf.size_of(id);
                let _ = btf.layout_of(id);
            }
            for name in ["do_sys_openat2", "_printk"] {
                if let Some(p) = btf.function(name) {
                    let _ = btf.render_prototype(&p);
                }
            }
        }
    }
}
