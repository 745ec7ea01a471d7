//! Programs checked against the real Debian kernel's BTF (`scripts/fetch-linux-guest.sh`;
//! skipped loudly where it is missing) and run against a fake vCPU: member offsets, typed
//! arguments, the Linux built-ins and task-keyed `self->`. Struct layouts that the
//! expectations rely on are the kernel's own source, quoted where used.

use std::sync::{Arc, OnceLock};

use crate::btf::Btf;
use crate::lang::check::members::find_member;
use crate::lang::{compile_for, Kernel, Program, Source, Target};
use crate::probes::Probe;
use crate::runtime::testing::FakeContext;
use crate::runtime::{Fault, Limits, ProbeInfo, RecordKind, Runtime, Value};
use crate::symbols::kallsyms::Kallsyms;

/// The kernel's BTF and kallsyms, read once; `None` (with a loud line) if not fetched.
fn vmlinux() -> Option<&'static (Btf, Kallsyms)> {
    static K: OnceLock<Option<(Btf, Kallsyms)>> = OnceLock::new();
    K.get_or_init(|| {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/linux-guest/vmlinux");
        let Ok(image) = std::fs::read(&path) else {
            eprintln!(
                "SKIPPED: tracer kernel tests need {} (run scripts/fetch-linux-guest.sh)",
                path.display()
            );
            return None;
        };
        Some((
            Btf::from_elf(&image).expect("BTF"),
            Kallsyms::from_elf(&image).expect("kallsyms"),
        ))
    })
    .as_ref()
}

fn kernel(k: &(Btf, Kallsyms)) -> Kernel {
    Kernel::new(k.0.clone(), |name| {
        k.1.by_name(name).first().map(|s| s.address)
    })
}

fn fbt(function: &str, name: &str) -> Probe {
    Probe {
        provider: "fbt".into(),
        module: "kernel".into(),
        function: function.into(),
        name: name.into(),
    }
}

fn compile(kernel: &Kernel, text: &str) -> Result<Program, String> {
    let probes = [
        fbt("memblock_add_range", "entry"),
        fbt("memblock_add_range", "return"),
        fbt("wake_up_process", "entry"),
    ];
    compile_for(
        &[Source::new("", text)],
        Target {
            kernel: Ok(kernel),
            probes: &probes,
        },
    )
    .map_err(|d| d.to_string())
}

/// Fires `function`'s entry once with `ctx` and returns the records' kinds.
fn fire(runtime: &Runtime, function: &str, ctx: &FakeContext) -> Vec<RecordKind> {
    fire_probe(runtime, function, "entry", ctx)
}

/// Fires `fbt::function:name` once with `ctx` and returns the records' kinds.
fn fire_probe(runtime: &Runtime, function: &str, name: &str, ctx: &FakeContext) -> Vec<RecordKind> {
    let probe = Arc::new(ProbeInfo::new(7, "fbt", "kernel", function, name));
    let clauses = runtime
        .program()
        .clauses_matching("fbt", "kernel", function, name);
    let mut vcpu = runtime.new_vcpu();
    runtime.fire(&mut vcpu, &probe, &clauses, ctx);
    vcpu.take_records().into_iter().map(|r| r.kind).collect()
}

#[test]
fn members_are_found_through_anonymous_members() {
    let Some(k) = vmlinux() else { return };
    let btf = &k.0;
    let task = btf.struct_by_name("task_struct").unwrap();
    let comm = find_member(btf, task, "comm").unwrap();
    let layout = btf.struct_layout("task_struct").unwrap();
    let listed = layout.members.iter().find(|m| m.name == "comm").unwrap();
    assert_eq!(comm.bit_offset, u64::from(listed.bit_offset));
    // arch/x86/include/asm/current.h (6.12): `struct pcpu_hot { union { struct {
    // struct task_struct *current_task; ...}; u8 pad[64]; }; };`: inside two anonymous
    // members, at offset 0.
    let hot = btf.struct_by_name("pcpu_hot").unwrap();
    assert!(btf
        .struct_layout("pcpu_hot")
        .unwrap()
        .members
        .iter()
        .all(|m| m.name.is_empty()));
    assert_eq!(find_member(btf, hot, "current_task").unwrap().bit_offset, 0);
    let kernel = kernel(k);
    let current = kernel.current.as_ref().unwrap();
    assert_eq!(current.percpu_offset, k.1.by_name("pcpu_hot")[0].address);
    assert!(
        current.percpu_offset < 1 << 32,
        "a per-CPU offset, not an address"
    );
    assert_eq!(current.task_struct, task);
}

#[test]
fn typed_arguments_follow_pointers_in_guest_memory() {
    let Some(k) = vmlinux() else { return };
    let kernel = kernel(k);
    let program = compile(
        &kernel,
        "fbt::memblock_add_range:entry { trace(stringof(args[0]->name)); trace(args[3]); trace(args[0]->cnt); }",
    )
    .unwrap();
    let runtime = Runtime::new(Arc::new(program), Limits::default());
    // include/linux/memblock.h: struct memblock_type { unsigned long cnt; unsigned long max;
    // phys_addr_t total_size; struct memblock_region *regions; char *name; }: name at 32.
    let mut ctx = FakeContext {
        args: [0x5000, 0, 0, u64::MAX, 0, 0],
        ..FakeContext::default()
    };
    ctx.write(0x5000, &7u64.to_le_bytes());
    ctx.write(0x5000 + 32, &0x6000u64.to_le_bytes());
    ctx.write(0x6000, b"memory\0");
    assert_eq!(
        fire(&runtime, "memblock_add_range", &ctx),
        vec![
            RecordKind::Trace(Value::Str("memory".into())),
            // `int nid`: the low 32 bits, sign-extended.
            RecordKind::Trace(Value::Int(-1)),
            RecordKind::Trace(Value::Uint(7)),
        ]
    );
}

#[test]
fn return_probes_type_the_return_value() {
    let Some(k) = vmlinux() else { return };
    let kernel = kernel(k);
    let program = compile(
        &kernel,
        "fbt::memblock_add_range:return { trace(args[0]); trace(args[1]); }",
    )
    .unwrap();
    let runtime = Runtime::new(Arc::new(program), Limits::default());
    // At a return probe the context gives arg0 = the return offset, arg1 = rax; `int`
    // keeps rax's low 32 bits, sign-extended.
    let ctx = FakeContext {
        args: [0x42, 0xdead_0000_ffff_fff4, 0, 0, 0, 0],
        ..FakeContext::default()
    };
    assert_eq!(
        fire_probe(&runtime, "memblock_add_range", "return", &ctx),
        vec![
            RecordKind::Trace(Value::Uint(0x42)),
            RecordKind::Trace(Value::Int(-12)),
        ]
    );
}

#[test]
fn curthread_execname_pid_and_task_keyed_self() {
    let Some(k) = vmlinux() else { return };
    let kernel = kernel(k);
    let btf = &k.0;
    let task = btf.struct_by_name("task_struct").unwrap();
    let off = |m: &str| find_member(btf, task, m).unwrap().bit_offset / 8;
    let program = compile(
        &kernel,
        "fbt::wake_up_process:entry { self->n += 1; printf(\"%s %d %d %d\", execname, pid, tid, self->n); }",
    )
    .unwrap();
    assert!(
        program.self_key.is_some(),
        "self-> is keyed by task on Linux"
    );
    let runtime = Runtime::new(Arc::new(program), Limits::default());
    let gs = 0xffff_8880_0100_0000u64;
    let slot = gs + kernel.current.as_ref().unwrap().percpu_offset;
    let mut ctx = FakeContext {
        gs_base: Some(gs),
        ..FakeContext::default()
    };
    for (t, tgid, pid, comm) in [
        (0x10_0000u64, 10u32, 11u32, &b"a-very-long-command-name"[..]),
        (0x20_0000, 20, 21, b"b\0"),
    ] {
        ctx.write(t + off("tgid"), &tgid.to_le_bytes());
        ctx.write(t + off("pid"), &pid.to_le_bytes());
        ctx.write(t + off("comm"), comm);
    }
    let mut out = Vec::new();
    for t in [0x10_0000u64, 0x10_0000, 0x20_0000, 0x10_0000] {
        ctx.write(slot, &t.to_le_bytes());
        out.extend(fire(&runtime, "wake_up_process", &ctx));
    }
    let text = |s: &str| RecordKind::Printf(s.into());
    assert_eq!(
        out,
        vec![
            // comm is char[16]: at most 16 bytes are read.
            text("a-very-long-comm 10 11 1"),
            text("a-very-long-comm 10 11 2"),
            text("b 20 21 1"),
            text("a-very-long-comm 10 11 3"),
        ]
    );
    ctx.gs_base = Some(0x7f00_0000_0000);
    let out = fire(&runtime, "wake_up_process", &ctx);
    assert!(
        matches!(
            out[..],
            [RecordKind::Error {
                fault: Fault::NoPerCpuBase(Some(0x7f00_0000_0000)),
                ..
            }]
        ),
        "a user GS base is reported: {out:?}"
    );
}

#[test]
fn only_clauses_using_self_look_up_the_task() {
    let Some(k) = vmlinux() else { return };
    let kernel = kernel(k);
    let program = compile(
        &kernel,
        "fbt::wake_up_process:entry { self->n = 1; } fbt::memblock_add_range:entry { trace(2); }",
    )
    .unwrap();
    assert_eq!(
        program
            .clauses
            .iter()
            .map(|c| c.uses_self)
            .collect::<Vec<_>>(),
        [true, false]
    );
    let runtime = Runtime::new(Arc::new(program), Limits::default());
    // No vCPU registers: the task is unknown, which only the clause using self-> notices.
    let ctx = FakeContext::default();
    assert_eq!(
        fire(&runtime, "memblock_add_range", &ctx),
        vec![RecordKind::Trace(Value::Int(2))]
    );
    assert!(matches!(
        fire(&runtime, "wake_up_process", &ctx)[..],
        [RecordKind::Error {
            fault: Fault::NoPerCpuBase(None),
            ..
        }]
    ));
}

#[test]
fn bitfields_and_embedded_structs() {
    let Some(k) = vmlinux() else { return };
    let kernel = kernel(k);
    let btf = &k.0;
    let task = btf.struct_by_name("task_struct").unwrap();
    let bit = find_member(btf, task, "sched_reset_on_fork").unwrap();
    assert_eq!(bit.bitfield_size, 1, "a 1-bit field");
    let se = find_member(btf, task, "se").unwrap();
    let load = find_member(btf, se.ty, "load").unwrap();
    let weight = find_member(btf, load.ty, "weight").unwrap();
    let program = compile(
        &kernel,
        "fbt::wake_up_process:entry { trace(args[0]->sched_reset_on_fork); trace(args[0]->se.load.weight); trace(args[0]->comm[1]); trace((*args[0]).se.load.weight); trace(*args[0]->set_child_tid); }",
    )
    .unwrap();
    let runtime = Runtime::new(Arc::new(program), Limits::default());
    let t = 0x40_0000u64;
    let mut ctx = FakeContext {
        args: [t, 0, 0, 0, 0, 0],
        ..FakeContext::default()
    };
    // Every bit around the field set but the field itself, then only the field.
    let byte = t + bit.bit_offset / 8;
    ctx.write(byte, &[!(1u8 << (bit.bit_offset % 8)), 0xff]);
    ctx.write(
        t + (se.bit_offset + load.bit_offset + weight.bit_offset) / 8,
        &1024u64.to_le_bytes(),
    );
    ctx.write(
        t + find_member(btf, task, "comm").unwrap().bit_offset / 8,
        b"sh\0",
    );
    // `int __user *set_child_tid;`
    let tid_ptr = find_member(btf, task, "set_child_tid").unwrap().bit_offset / 8;
    ctx.write(t + tid_ptr, &0x7000u64.to_le_bytes());
    ctx.write(0x7000, &(-5i32).to_le_bytes());
    let got = fire(&runtime, "wake_up_process", &ctx);
    assert_eq!(got[0], RecordKind::Trace(Value::Uint(0)));
    assert_eq!(got[1], RecordKind::Trace(Value::Uint(1024)));
    // The kernel builds with -funsigned-char (6.2 and newer): BTF's `char` is unsigned.
    assert_eq!(got[2], RecordKind::Trace(Value::Uint(u64::from(b'h'))));
    assert_eq!(got[3], RecordKind::Trace(Value::Uint(1024)), "(*p).member");
    assert_eq!(
        got[4],
        RecordKind::Trace(Value::Int(-5)),
        "*p of an `int *`"
    );
    ctx.write(byte, &[1u8 << (bit.bit_offset % 8), 0]);
    assert_eq!(
        fire(&runtime, "wake_up_process", &ctx)[0],
        RecordKind::Trace(Value::Uint(1))
    );
}

#[test]
fn errors_name_the_member_and_type() {
    let Some(k) = vmlinux() else { return };
    let kernel = kernel(k);
    let err = compile(
        &kernel,
        "fbt::memblock_add_range:entry { trace(args[0]->nmae); }",
    )
    .unwrap_err();
    assert!(
        err.contains("struct memblock_type has no member 'nmae'"),
        "{err}"
    );
    let err = compile(&kernel, "BEGIN { trace(args[0]); }").unwrap_err();
    assert!(
        err.contains("only available in clauses of fbt probes"),
        "{err}"
    );
    let none = compile_for(&[Source::new("", "BEGIN { trace(pid); }")], Target::none())
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("`pid` needs a Linux kernel with BTF"),
        "{none}"
    );
}
