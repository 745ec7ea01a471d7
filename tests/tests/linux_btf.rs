//! The BTF reader against the real Debian kernel that `scripts/fetch-linux-guest.sh` fetches
//! (skipped loudly where it has not been fetched). Expectations are the kernel's own
//! declarations (`fs/open.c`, `init/main.c`, `mm/memblock.c`, `include/linux/fcntl.h`'s
//! `struct open_how` from the uapi headers) and its ELF sections, not the reader's output.

use std::sync::OnceLock;
use std::time::Instant;

use object::{Object, ObjectSection};
use tests::linux::linux_guest_or_skip;
use tracer::btf::Btf;
use tracer::symbols::kallsyms::Kallsyms;

fn kernel(test: &str) -> Option<&'static (Vec<u8>, Btf)> {
    static KERNEL: OnceLock<(Vec<u8>, Btf)> = OnceLock::new();
    let path = linux_guest_or_skip(test, "vmlinux")?;
    Some(KERNEL.get_or_init(|| {
        let image = std::fs::read(&path).expect("read vmlinux");
        let start = Instant::now();
        let btf = Btf::from_elf(&image).expect("BTF of the Debian kernel");
        eprintln!(
            "btf: {} types parsed in {:.1} ms",
            btf.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
        (image, btf)
    }))
}

#[test]
fn prototypes_of_functions_the_tracer_probes() {
    let Some((_, btf)) = kernel("prototypes_of_functions_the_tracer_probes") else {
        return;
    };
    for (name, want) in [
        (
            "do_sys_openat2",
            // DWARF (and so BTF) names the base type `long int`.
            "long int do_sys_openat2(int dfd, const char *filename, struct open_how *how)",
        ),
        ("start_kernel", "void start_kernel(void)"),
        (
            "memblock_add",
            "int memblock_add(phys_addr_t base, phys_addr_t size)",
        ),
    ] {
        let p = btf
            .function(name)
            .unwrap_or_else(|| panic!("{name}: no BTF FUNC"));
        assert_eq!(btf.render_prototype(&p), want);
    }
}

#[test]
fn struct_layouts_and_sizes() {
    let Some((_, btf)) = kernel("struct_layouts_and_sizes") else {
        return;
    };
    // include/uapi/linux/openat2.h: three __u64, in this order.
    let how = btf.struct_layout("open_how").expect("struct open_how");
    assert_eq!(how.size, 24);
    let m: Vec<(&str, u32, &str)> = how
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.bit_offset, m.type_name.as_str()))
        .collect();
    assert_eq!(
        m,
        [
            ("flags", 0, "__u64"),
            ("mode", 64, "__u64"),
            ("resolve", 128, "__u64")
        ]
    );
    // include/linux/types.h: struct list_head { struct list_head *next, *prev; }.
    let lh = btf.struct_layout("list_head").expect("struct list_head");
    assert_eq!(lh.size, 16);
    assert_eq!(lh.members[1].type_name, "struct list_head *");
    assert_eq!(lh.members[1].bit_offset, 64);
    let task = btf.struct_layout("task_struct").expect("task_struct");
    let comm = task
        .members
        .iter()
        .find(|m| m.name == "comm")
        .expect("comm");
    assert_eq!(comm.type_name, "char[16]", "TASK_COMM_LEN");
    assert_eq!(btf.size_of(task.id), Some(u64::from(task.size)));
}

#[test]
fn functions_in_btf_are_kernel_text_symbols() {
    let Some((image, btf)) = kernel("functions_in_btf_are_kernel_text_symbols") else {
        return;
    };
    // pahole emits BTF for functions it found in DWARF and in the symbol table: nearly all
    // of them must be text symbols in kallsyms, within the ELF's executable sections.
    let k = Kallsyms::from_elf(image).expect("kallsyms");
    let file = object::File::parse(image.as_slice()).unwrap();
    let exec: Vec<(u64, u64)> = file
        .sections()
        .filter(|s| s.kind() == object::SectionKind::Text)
        .map(|s| (s.address(), s.address() + s.size()))
        .collect();
    let (mut total, mut found) = (0, 0);
    for name in btf.function_names() {
        total += 1;
        let text = k.by_name(name).into_iter().any(|s| {
            matches!(s.kind, 't' | 'T' | 'W' | 'w')
                && exec
                    .iter()
                    .any(|&(lo, hi)| s.address >= lo && s.address < hi)
        });
        found += usize::from(text);
    }
    assert!(total > 30_000, "{total} BTF functions");
    assert!(
        found * 100 >= total * 99,
        "{found} of {total} BTF functions are text symbols"
    );
}
