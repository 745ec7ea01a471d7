//! End-to-end: `hvtrace list` shows an image's probes like `dtrace -l`.

use std::time::Duration;

use tests::{run_hvtrace, temp_file};

const BOUND: Duration = Duration::from_secs(60);

#[test]
fn lists_entry_and_return_probes_of_a_built_in_guest() {
    let out = run_hvtrace(&["list", "--guest", "xcall-lab", "fbt::xcall:*"], BOUND);
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(lines[0]
        .split_whitespace()
        .eq(["ID", "PROVIDER", "MODULE", "FUNCTION", "NAME"]));
    assert!(lines[1]
        .split_whitespace()
        .skip(1)
        .eq(["fbt", "kernel", "xcall", "entry"]));
    assert!(lines[2]
        .split_whitespace()
        .skip(1)
        .eq(["fbt", "kernel", "xcall", "return"]));
    // IDs are positions in the whole catalogue, not in the filtered list.
    let all = run_hvtrace(&["list", "--guest", "xcall-lab"], BOUND);
    let id = lines[1].split_whitespace().next().unwrap();
    assert!(
        all.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains(" xcall entry")),
        "{all:?}"
    );
    for provider in ["dtrace", "apic", "vmexit", "sync", "profile"] {
        assert!(
            all.stdout.contains(&format!(" {provider} ")),
            "{provider}: {all:?}"
        );
    }
}

#[test]
fn an_image_without_symbols_or_a_non_elf_file_is_refused_clearly() {
    let hello = guest::find("hello").unwrap().image;
    let path = temp_file("hello-stripped.elf", hello);
    let status = std::process::Command::new("strip")
        .arg("--strip-all")
        .arg(&path)
        .status()
        .expect("run strip (binutils)");
    assert!(status.success());
    let out = run_hvtrace(&["list", "--kernel", path.to_str().unwrap()], BOUND);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("this image has no symbol table"),
        "{out:?}"
    );

    let text = temp_file("not-elf.txt", b"plain text\n");
    let out = run_hvtrace(&["list", "--kernel", text.to_str().unwrap()], BOUND);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(out.stderr.contains("cannot list the probes of"), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");

    let out = run_hvtrace(&["list", "--guest", "hello", "nosuch:::"], BOUND);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("no probe of built-in guest 'hello' matches 'nosuch:::'"),
        "{out:?}"
    );
}

#[test]
fn lists_a_distribution_kernel_with_kallsyms_and_btf_prototypes() {
    let test = "lists_a_distribution_kernel_with_kallsyms_and_btf_prototypes";
    let Some(vmlinux) = tests::linux::linux_guest_or_skip(test, "vmlinux") else {
        return;
    };
    let out = run_hvtrace(
        &[
            "list",
            "--kernel",
            vmlinux.to_str().unwrap(),
            "fbt::*openat*:entry",
            "-v",
        ],
        BOUND,
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.split_whitespace()
                .skip(1)
                .eq(["fbt", "kernel", "do_sys_openat2", "entry"])
        })
        .unwrap_or_else(|| panic!("no do_sys_openat2 entry probe: {out:?}"));
    assert_eq!(
        lines[at + 1].trim(),
        "long int do_sys_openat2(int dfd, const char *filename, struct open_how *how)"
    );
    assert!(
        !out.stdout.contains("__pfx_"),
        "padding symbols are not probes"
    );
}
