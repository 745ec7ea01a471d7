//! The BTF reader against the real Debian kernel that `scripts/fetch-linux-guest.sh` fetches
//! (skipped loudly where it has not been fetched). Expectations are the kernel's own
//! declarations (`fs/open.c`, `init/main.c`, `mm/memblock.c`, `include/linux/fcntl.h`'s
//! `struct open_how` from the uapi headers) and its ELF sections, not the reader's output.

use std::sync::OnceLock;
use std::time::Instant;

use object::{Object, ObjectSection};
use tests::linux::linux_guest_or_skip;
use tracer::btf::{Btf, Kind};
use tracer::lang::Kernel;
use tracer::symbols::kallsyms::{ImageKallsyms, Kallsyms};
use tracer::symbols::{ElfSymbols, SymbolSource};

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

#[test]
fn one_kallsyms_decode_gives_the_functions_and_btf_s_per_cpu_current_task() {
    let Some((image, btf)) =
        kernel("one_kallsyms_decode_gives_the_functions_and_btf_s_per_cpu_current_task")
    else {
        return;
    };
    // What a traced run does: one decode for the functions and the current task.
    let kallsyms = ImageKallsyms::new(image);
    let symbols = ElfSymbols::load_with(&kallsyms).expect("functions");
    assert!(
        kallsyms.is_decoded(),
        "the Debian vmlinux has no .symtab: its functions come from kallsyms"
    );
    let kernel = Kernel::from_image_with(&kallsyms).expect("BTF");
    let current = kernel.current.expect("the current task is found");

    // Independently: pahole lists each per-CPU variable in BTF's DATASEC `.data..percpu` at
    // its offset in that section, and the ELF links the section at 0 (x86-64 per-CPU symbols
    // are offsets from the per-CPU base). `current_task` is the first member of `struct
    // pcpu_hot` (arch/x86/include/asm/current.h, 6.12), so the per-CPU offset of the current
    // task pointer is `pcpu_hot`'s offset in the section.
    let file = object::File::parse(image.as_slice()).unwrap();
    let section = file
        .section_by_name(".data..percpu")
        .expect(".data..percpu");
    assert_eq!(section.address(), 0, "per-CPU data is linked at 0");
    let vars = btf
        .types()
        .find_map(|(_, t)| match &t.kind {
            Kind::Datasec { vars, .. } if t.name == ".data..percpu" => Some(vars),
            _ => None,
        })
        .expect("BTF has the DATASEC .data..percpu");
    let hot = vars
        .iter()
        .find(|v| btf.get(v.ty).is_some_and(|t| t.name == "pcpu_hot"))
        .expect("BTF lists the per-CPU variable pcpu_hot");
    assert_eq!(current.percpu_offset, u64::from(hot.offset));
    assert_eq!(Some(current.task_struct), btf.struct_by_name("task_struct"));

    // The functions are those of a decode of their own.
    let alone = ElfSymbols::load(image).expect("functions");
    assert_eq!(symbols.functions(), alone.functions());
    assert!(symbols.functions().len() > 50_000);
}
