//! Programs compiled against the Debian kernel's BTF and probes without booting it (the same
//! `compile_for` that `hvtrace run` and an attaching client use): the docs' examples compile,
//! and type errors are compile errors naming the member, type or function. Also: the Linux
//! built-ins are a compile error on a built-in guest, through the real `hvtrace` binary.

use std::sync::OnceLock;
use std::time::Duration;

use tests::linux::linux_guest_or_skip;
use tests::{kvm_or_skip, run_hvtrace};
use tracer::lang::{compile_for, Kernel, Source, Target};
use tracer::probes::{catalogue, Probe};
use tracer::symbols::ElfSymbols;

/// The kernel's types and probes, read once.
fn kernel(test: &str) -> Option<&'static (Kernel, Vec<Probe>)> {
    static KERNEL: OnceLock<Option<(Kernel, Vec<Probe>)>> = OnceLock::new();
    let path = linux_guest_or_skip(test, "vmlinux")?;
    KERNEL
        .get_or_init(|| {
            let image = std::fs::read(path).expect("read vmlinux");
            let kernel = Kernel::from_image(&image).expect("vmlinux has BTF");
            let symbols = ElfSymbols::load(&image).expect("kallsyms");
            Some((kernel, catalogue(&image, &symbols)))
        })
        .as_ref()
}

/// Compiles `text` against the kernel: `Ok(())` or the rendered error.
fn compile(k: &(Kernel, Vec<Probe>), text: &str) -> Result<(), String> {
    let target = Target {
        kernel: Ok(&k.0),
        probes: &k.1,
    };
    compile_for(&[Source::new("-n", text)], target)
        .map(|_| ())
        .map_err(|d| d.render())
}

#[test]
fn documented_examples_compile_against_the_kernel() {
    let Some(k) = kernel("linux_dlang_errors::documented_examples_compile_against_the_kernel")
    else {
        return;
    };
    for text in [
        // docs/LINUX.md, the VT-x example.
        r#"fbt::do_sys_openat2:entry { printf("%s %s\n", execname, stringof(args[1])); }"#,
        // README's tour.
        r#"fbt::memblock_add_range:entry { printf("%s %d\n", stringof(args[0]->name), args[0]->cnt); }"#,
        r#"fbt::do_sys_openat2:entry { self->how = args[2]; @[execname, pid, tid] = count(); }
           fbt::do_sys_openat2:entry /self->how/ { trace(self->how->flags); self->how = 0; }"#,
        // Return probes: the offset and the typed return value, as in DTrace.
        r#"fbt::do_sys_openat2:return /args[1] < 0/ { @[args[0], args[1]] = count(); }"#,
        // Nested `->`, `.` on embedded structs, array members, bitfields.
        r#"fbt::wake_up_process:entry { trace(args[0]->mm->mmap_base); trace(args[0]->se.load.weight);
           trace(args[0]->comm[0]); trace(curthread->pid); trace(args[0]->sched_reset_on_fork); }"#,
    ] {
        compile(k, text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    }
}

#[test]
fn type_errors_name_the_member_type_or_function() {
    let Some(k) = kernel("linux_dlang_errors::type_errors_name_the_member_type_or_function") else {
        return;
    };
    for (text, want) in [
        (
            "fbt::memblock_add_range:entry { trace(args[0]->nmae); }",
            "struct memblock_type has no member 'nmae'",
        ),
        (
            "fbt::memblock_add_range:entry { trace(args[1]->name); }",
            "`->name` needs a pointer to a struct or union, found an integer",
        ),
        (
            "fbt::wake_up_process:entry { trace(args[0]->se); }",
            "`se` is `struct sched_entity`: reach one of its members with `.`",
        ),
        (
            "fbt::wake_up_process:entry { trace(args[0]->pid.x); }",
            "`pid_t` is not a struct or union, so it has no member `x`",
        ),
        // An assembly function: no C prototype, so no BTF one.
        (
            "fbt::pvh_start_xen:entry { trace(args[0]); }",
            "function `pvh_start_xen` has no prototype in the kernel's BTF, so args[] is not available; use arg0",
        ),
        (
            "fbt::memblock_add_range:entry { trace(args[5]); }",
            "has 5 parameters, so there is no args[5]",
        ),
        (
            "fbt::memblock_add_range:return { trace(args[2]); }",
            "at fbt return probes only args[0] (the return offset) and args[1] (the return value) exist",
        ),
        (
            "fbt::memblock_insert_region:return { trace(args[1]); }",
            "`memblock_insert_region` returns void, so its return probe has no args[1]",
        ),
        (
            "fbt::memblock_add_range:entry, fbt::memblock_add_range:return { trace(args[0]); }",
            "args[0] is `struct memblock_type *` in `memblock_add_range` but `the return offset` in `memblock_add_range`",
        ),
        (
            "fbt::memblock_add_range:entry, fbt::wake_up_process:entry { trace(args[0]); }",
            // (in the catalogue's order)
            "`struct task_struct *` in `wake_up_process` but `struct memblock_type *` in `memblock_add_range`; use arg0",
        ),
    ] {
        let err = compile(k, text).expect_err(text);
        assert!(err.contains(want), "{text}: got\n{err}\nwanted {want:?}");
    }
}

#[test]
fn linux_builtins_are_an_error_on_a_builtin_guest() {
    let test = "linux_dlang_errors::linux_builtins_are_an_error_on_a_builtin_guest";
    if !kvm_or_skip(test) {
        return;
    }
    for (program, name) in [
        ("BEGIN { trace(execname); exit(0); }", "`execname`"),
        ("BEGIN { trace(curthread->pid); exit(0); }", "`curthread`"),
        ("fbt::xcall_send:entry { trace(args[0]); }", "args[]"),
    ] {
        let run = run_hvtrace(
            &["run", "--guest", "smp", "--timeout", "20", "-n", program],
            Duration::from_secs(60),
        );
        assert_ne!(run.status, Some(0), "{program} ran:\n{}", run.stderr);
        let want = format!("{name} needs a Linux kernel with BTF, and this image has none");
        assert!(
            run.stderr.contains(&want) && run.stderr.contains(".BTF"),
            "{program}: {}",
            run.stderr
        );
    }
}
