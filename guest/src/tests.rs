//! Checks of the embedded images, parsing the ELF headers by hand.

use super::{all, find, multiboot_kernels, DEFAULT_GUEST};

/// Functions every guest links from `common.S`.
const COMMON: &[&str] = &[
    "_start",
    "guest_main",
    "serial_init",
    "serial_putc",
    "serial_puts",
    "print_dec",
    "serial_lock",
    "serial_unlock",
    "exit_guest",
    "halt_forever",
];

/// Functions particular to each guest.
fn own_functions(name: &str) -> &'static [&'static str] {
    match name {
        "hello" => &["say_hello"],
        "smp" => &[
            "start_aps",
            "start_aps_listed",
            "start_ap",
            "prepare_trampoline",
            "cpu_listed",
            "print_cpu_online",
            "print_cpu_line",
            "print_summary",
            "mp_find",
            "mp_scan",
            "mp_checksum",
            "mp_parse",
            "lapic_id",
            "lapic_enable",
            "apic_send_ipi",
            "delay",
            "wait_for_online",
            "trampoline_start",
            "ap_protected_mode",
            "ap_long_mode_entry",
            "ap_main",
        ],
        "fault" => &["do_fault"],
        "spin-scale" => &["spin_bench", "bench_target", "many_fn_0", "many_fn_9999"],
        "breakpoint" => &[
            "bp_install",
            "bp_site",
            "bp_handler",
            "set_gate",
            "mxcsr_check",
            "gp_site",
            "gp_handler",
        ],
        "pci" => &["pci_address"],
        "spin" => &[
            "spin_run",
            "spin_bench",
            "bench_target",
            "spin_forever",
            "halt_forever_irqs_on",
            "count_forever",
            "lapic_id_if_needed",
            "parse_cmdline",
            "word_equals",
            "match_word",
            "parse_uint",
            "print_mode",
            "start_aps",
            "start_aps_listed",
            "start_ap",
            "prepare_trampoline",
            "bsp_listed",
            "ap_main",
            "mp_find",
            "mp_parse",
            "lapic_id",
            "lapic_enable",
            "apic_send_ipi",
            "wait_for_online",
            "trampoline_start",
            "ap_long_mode_entry",
        ],
        "apic-conformance" => &[
            "run_checks",
            "check_selected",
            "parse_cmdline",
            "print_hex",
            "check_return",
            "check_fail_cmp",
            "check_fail_values",
            "check_end_line",
            "idt_init",
            "exception_stubs",
            "exception_common",
            "nmi_entry",
            "irq_stubs",
            "irq_common",
            "irq_dispatch",
            "lapic_read",
            "lapic_write",
            "lapic_eoi",
            "ipi_send",
            "ipi_self",
            "ioapic_read",
            "ioapic_write",
            "ioapic_eoi",
            "irq_line",
            "start_all_aps",
            "start_aps_listed",
            "start_ap",
            "prepare_trampoline",
            "pic_mask",
            "ap_main",
            "ap_idle",
            "ap_command",
            "trampoline_start",
            "ap_long_mode_entry",
            "mp_parse",
            "apic_send_ipi",
            "cleanup_check",
            "check_interrupt_return",
            "check_early_eoi",
            "early_eoi_hook",
            "check_nested_interrupts",
            "check_icr_shorthands",
            "check_lowest_priority",
            "check_timer_oneshot",
            "check_timer_tsc_deadline",
            "check_ioapic_level",
            "ioapic_level_hook",
            "check_directed_eoi",
            "check_esr_illegal_vector",
            "check_x2apic_switch",
            "conformance_exit",
        ],
        "ipi-bench" => &[
            "parse_cmdline",
            "match_word",
            "parse_uint",
            "print_header",
            "print_fail",
            "pic_mask",
            "idt_init",
            "idt_init_gates",
            "set_gate",
            "start_bench_ap",
            "start_ap",
            "prepare_trampoline",
            "ap_main",
            "ap_serve",
            "watchdog_start",
            "watchdog_stop",
            "bench_ipi_roundtrip",
            "bench_irq_latency",
            "ioapic_write",
            "report",
            "print_stats",
            "print_scaled",
            "print_median_p99",
            "median_p99",
            "ticks_to_ns",
            "sort_samples",
            "ping_interrupt",
            "pong_interrupt",
            "irq_interrupt",
            "watchdog_interrupt",
            "spurious_interrupt",
            "unexpected_interrupt",
            "exception_stubs",
            "exception_entry",
            "unexpected_event",
            "print_unexpected_event",
            "exit_quietly",
            "lapic_id",
            "lapic_enable",
            "apic_send_ipi",
            "delay",
            "wait_for_online",
            "trampoline_start",
            "ap_long_mode_entry",
        ],
        "xcall-lab" => &[
            "xcall_lab_main",
            "xcall_lab_exit",
            "parse_cmdline",
            "parse_variants",
            "word_equals",
            "match_word",
            "parse_uint",
            "pic_mask",
            "idt_init",
            "idt_init_gates",
            "set_gate",
            "exception_stubs",
            "unexpected_event",
            "print_unexpected_event",
            "map_cpus",
            "start_aps",
            "start_aps_listed",
            "start_ap",
            "ap_main",
            "ap_idle",
            "ap_park",
            "park_aps",
            "post_cmd",
            "wait_until_set",
            "wait_cmd_taken",
            "xcall",
            "xcall_send",
            "apic_wait_icr",
            "xcall_wait",
            "deadman_expired",
            "xcall_serve",
            "xcall_ack",
            "xcall_func_count",
            "xcall_func_recurse",
            "xcall_and_record",
            "xcall_handler",
            "timer_handler",
            "kick_handler",
            "lapic_eoi",
            "variant_single",
            "variant_rotate",
            "variant_mutual",
            "variant_timer",
            "cmd_mutual_side",
            "drain_all",
            "judge_variant",
            "report_variant",
            "compute_stats",
            "median_p99",
            "ticks_to_ns",
            "sort_samples",
            "print_median_p99",
            "print_summary",
            "mp_parse",
            "apic_send_ipi",
            "trampoline_start",
            "ap_long_mode_entry",
        ],
        other => panic!("no expected symbols for guest {other}"),
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// A symbol from `.symtab`.
#[derive(Debug)]
struct Symbol {
    name: String,
    value: u64,
    size: u64,
    is_func: bool,
}

/// A `PT_LOAD` segment: physical address, file size, memory size.
#[derive(Debug)]
struct Load {
    paddr: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

/// Reads the header fields the tests need; asserts on the identification bytes.
fn check_header(image: &[u8]) -> u64 {
    assert!(image.len() > 64);
    assert_eq!(&image[..4], b"\x7fELF", "ELF magic");
    assert_eq!(image[4], 2, "ELFCLASS64");
    assert_eq!(image[5], 1, "little-endian");
    assert_eq!(u16_at(image, 16), 2, "ET_EXEC");
    assert_eq!(u16_at(image, 18), 62, "EM_X86_64");
    u64_at(image, 24)
}

fn loads(image: &[u8]) -> Vec<Load> {
    let phoff = u64_at(image, 32) as usize;
    let phentsize = u16_at(image, 54) as usize;
    let phnum = u16_at(image, 56) as usize;
    (0..phnum)
        .map(|i| &image[phoff + i * phentsize..][..phentsize])
        .filter(|ph| u32_at(ph, 0) == 1)
        .map(|ph| Load {
            vaddr: u64_at(ph, 16),
            paddr: u64_at(ph, 24),
            filesz: u64_at(ph, 32),
            memsz: u64_at(ph, 40),
        })
        .collect()
}

fn symbols(image: &[u8]) -> Vec<Symbol> {
    let shoff = u64_at(image, 40) as usize;
    let shentsize = u16_at(image, 58) as usize;
    let shnum = u16_at(image, 60) as usize;
    let section = |i: usize| &image[shoff + i * shentsize..][..shentsize];
    let symtab = (0..shnum)
        .map(section)
        .find(|sh| u32_at(sh, 4) == 2)
        .expect("a SHT_SYMTAB section");
    let strtab = section(u32_at(symtab, 40) as usize);
    let strings = &image[u64_at(strtab, 24) as usize..][..u64_at(strtab, 32) as usize];
    let entries = &image[u64_at(symtab, 24) as usize..][..u64_at(symtab, 32) as usize];
    entries
        .chunks_exact(24)
        .map(|sym| {
            let name_at = u32_at(sym, 0) as usize;
            let len = strings[name_at..].iter().position(|&c| c == 0).unwrap();
            Symbol {
                name: String::from_utf8(strings[name_at..name_at + len].to_vec()).unwrap(),
                value: u64_at(sym, 8),
                size: u64_at(sym, 16),
                is_func: sym[4] & 0xf == 2,
            }
        })
        .collect()
}

#[test]
fn images_are_elf64_x86_64_executables() {
    for g in all() {
        let entry = check_header(g.image);
        let start = symbols(g.image).into_iter().find(|s| s.name == "_start");
        assert_eq!(
            entry,
            start.expect("_start").value,
            "{}: entry is _start",
            g.name
        );
        assert!(
            loads(g.image)
                .iter()
                .any(|l| entry >= l.paddr && entry < l.paddr + l.memsz),
            "{}: entry point inside a segment",
            g.name
        );
    }
}

#[test]
fn segments_stay_in_guest_memory() {
    for g in all() {
        let segments = loads(g.image);
        assert!(!segments.is_empty(), "{}", g.name);
        for l in &segments {
            let end = l.paddr + l.memsz;
            assert!(l.memsz >= l.filesz && l.memsz > 0, "{}: {l:?}", g.name);
            // Everything is stored from 1 MiB (one contiguous run for the multiboot a.out
            // kludge); only the AP trampoline runs elsewhere, in low memory, copied there by
            // the guest (aps.S).
            assert!(
                l.paddr >= 0x10_0000 && end <= 16 << 20,
                "{}: segment {l:?} outside guest memory",
                g.name
            );
            let runs_low = l.vaddr >= 0x8000 && l.vaddr + l.memsz <= 0x9f000;
            assert!(
                l.paddr == l.vaddr || runs_low,
                "{}: {l:?} neither identity mapped nor the trampoline",
                g.name
            );
        }
        let uses_low = segments.iter().any(|l| l.vaddr < 0x10_0000);
        let starts_aps = symbols(g.image)
            .iter()
            .any(|s| s.name == "trampoline_start");
        assert_eq!(
            uses_low, starts_aps,
            "{}: only the guests that start APs use low memory (the trampoline)",
            g.name
        );
    }
}

#[test]
fn symbol_tables_name_every_function() {
    for g in all() {
        let syms = symbols(g.image);
        assert!(syms.len() > 1, "{}: symbol table is empty", g.name);
        for want in COMMON.iter().chain(own_functions(g.name)) {
            let sym = syms.iter().find(|s| s.name == *want);
            let sym = sym.unwrap_or_else(|| panic!("{}: no symbol {want}", g.name));
            assert!(sym.is_func, "{}: {want} is not STT_FUNC", g.name);
            assert!(sym.size > 0, "{}: {want} has no size", g.name);
        }
    }
}

#[test]
fn smp_trampoline_sits_at_sipi_vector_8() {
    for name in ["smp", "spin", "apic-conformance", "ipi-bench", "xcall-lab"] {
        let g = find(name).expect(name);
        let syms = symbols(g.image);
        let tramp = syms.iter().find(|s| s.name == "trampoline_start").unwrap();
        assert_eq!(tramp.value, 0x8000, "{name}");
        assert!(
            loads(g.image)
                .iter()
                .any(|l| l.vaddr == 0x8000 && l.paddr >= 0x10_0000),
            "{name}: runs at 0x8000, stored in the image"
        );
    }
}

#[test]
fn names_are_unique_and_find_works() {
    let guests = all();
    assert_eq!(
        guests.iter().map(|g| g.name).collect::<Vec<_>>(),
        [
            "hello",
            "smp",
            "fault",
            "breakpoint",
            "pci",
            "spin",
            "spin-scale",
            "apic-conformance",
            "ipi-bench",
            "xcall-lab"
        ]
    );
    for (i, g) in guests.iter().enumerate() {
        assert!(
            guests[..i].iter().all(|o| o.name != g.name),
            "duplicate {}",
            g.name
        );
        assert!(std::ptr::eq(find(g.name).unwrap(), g));
        assert!(!g.description.is_empty() && !g.description.contains('\n'));
    }
    assert!(find("nope").is_none());
    assert!(find(DEFAULT_GUEST).is_some());
}

#[test]
fn spin_counters_is_a_u64_per_cpu() {
    let g = find("spin").expect("spin");
    let syms = symbols(g.image);
    let counters = syms.iter().find(|s| s.name == "spin_counters");
    let counters = counters.expect("spin_counters");
    assert!(!counters.is_func, "{counters:?}");
    assert_eq!(counters.size, 256 * 8, "{counters:?}");
    assert_eq!(counters.value % 8, 0, "{counters:?}");
}

/// The first valid multiboot header in the first 8 KiB: (file offset, flags).
fn multiboot_header(image: &[u8]) -> Option<(usize, u32)> {
    (0..image.len().min(8192) - 12).step_by(4).find_map(|off| {
        let (magic, flags, sum) = (
            u32_at(image, off),
            u32_at(image, off + 4),
            u32_at(image, off + 8),
        );
        (magic == 0x1bad_b002 && magic.wrapping_add(flags).wrapping_add(sum) == 0)
            .then_some((off, flags))
    })
}

#[test]
fn multiboot_kernels_carry_their_headers() {
    let elf = find("mb-elf32").expect("mb-elf32").image;
    assert_eq!(&elf[..5], b"\x7fELF\x01", "ELF32");
    assert_eq!(u16_at(elf, 18), 3, "EM_386");
    let (_, flags) = multiboot_header(elf).expect("a multiboot header");
    assert_eq!(flags & 0x1_0000, 0, "no a.out kludge");
    let aout = find("mb-aout").expect("mb-aout").image;
    assert_ne!(&aout[..4], b"\x7fELF", "a flat binary");
    let (off, flags) = multiboot_header(aout).expect("a multiboot header");
    assert_eq!(
        (off, flags & 0x1_0000),
        (0, 0x1_0000),
        "a.out kludge at the start"
    );
    let (header_addr, load_addr, load_end) = (u32_at(aout, 12), u32_at(aout, 16), u32_at(aout, 20));
    assert_eq!((header_addr, load_addr), (0x10_0000, 0x10_0000));
    assert_eq!(
        load_end - load_addr,
        aout.len() as u32,
        "the file is text and data"
    );
    assert!(multiboot_kernels()
        .iter()
        .all(|g| !all().iter().any(|n| n.name == g.name)));
}
