//! The D language on the unmodified Debian kernel: one PVH boot (1 vCPU, 256 MiB, the default
//! command line) traced with Linux's built-ins and BTF-typed arguments, checked against facts
//! read from the vmlinux file itself:
//! - at `fbt::start_kernel:entry`, `curthread` is kallsyms' `init_task`, `pid` and `tid` are 0,
//!   and `execname` is the `comm` stored in `init_task` in the file's data;
//! - `stringof(args[0])` at `fbt::_printk:entry` gives format strings that lie verbatim in the
//!   file (the "Command line: %s" one among them);
//! - `args[0]->name` at `fbt::memblock_add_range:entry` is "memory" when `args[0]` is
//!   `&memblock.memory` (kallsyms' `memblock` plus the member's offset) and "reserved" for
//!   `&memblock.reserved`;
//! - a `self->` variable set at `start_kernel` is read back by the same task later;
//! - a client attached through the control socket (`hvtrace trace --attach`) compiles its
//!   program against the same kernel and sees the same `execname`, `pid` and `args[0]->name`.
//!
//! The trace ends with `exit(0)` at `init_mem_mapping` (about 25-40 s here). Compile errors
//! against the kernel's BTF are checked offline in `linux_dlang_errors.rs`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use object::{Object, ObjectSegment};
use tests::linux::vmlinux_on_kvm_or_skip;
use tests::{hvtrace_path, run_hvtrace, temp_file};
use tracer::btf::Btf;
use tracer::symbols::kallsyms::Kallsyms;

/// hvtrace's own bound on the run; the test's is a minute more.
const TIMEOUT_S: u64 = 180;

const PROGRAM: &str = r#"
fbt::start_kernel:entry {
    printf("start %x %d %d %s", (uint64_t)curthread, pid, tid, execname);
    self->mark = 42;
}
fbt::_printk:entry { printf("fmt %s", stringof(args[0])); }
fbt::memblock_add_range:entry {
    printf("range %x %s %d", (uint64_t)args[0], stringof(args[0]->name), self->mark);
}
fbt::init_mem_mapping:entry { exit(0); }
"#;

/// The attached client's program; it ends with the VM.
const ATTACHED: &str = r#"
fbt::memblock_add_range:entry { printf("attached %s %d %s\n", execname, pid, stringof(args[0]->name)); }
"#;

/// Attaches `hvtrace trace` to `socket` once it appears and returns its exit status and
/// standard output, or why not; bounded by `bound`.
fn attach(socket: PathBuf, bound: Duration) -> Result<(Option<i32>, String), String> {
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > bound {
            return Err(format!("{} never appeared", socket.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = Command::new(hvtrace_path())
        .args(["trace", "-q", "--attach"])
        .arg(&socket)
        .args(["-n", ATTACHED])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    while client.try_wait().map_err(|e| e.to_string())?.is_none() {
        if start.elapsed() > bound {
            let _ = client.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = client.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.code() != Some(0) {
        return Err(format!(
            "the client ended with {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// The bytes at virtual address `addr` in the file, through its `PT_LOAD` segments.
fn file_bytes(image: &[u8], addr: u64, len: u64) -> Vec<u8> {
    let elf = object::File::parse(image).expect("vmlinux is ELF");
    for seg in elf.segments() {
        let (start, size) = (seg.address(), seg.size());
        if addr >= start && addr + len <= start + size {
            let data = seg.data().expect("segment data");
            let off = (addr - start) as usize;
            return data[off..off + len as usize].to_vec();
        }
    }
    panic!("{addr:#x} is in no PT_LOAD segment with file data");
}

/// Byte offset of `member` in `struct name`, from the kernel's BTF.
fn offset_of(btf: &Btf, name: &str, member: &str) -> u64 {
    let layout = btf.struct_layout(name).expect("struct in BTF");
    let m = layout
        .members
        .iter()
        .find(|m| m.name == member)
        .unwrap_or_else(|| panic!("struct {name} has {member}"));
    u64::from(m.bit_offset / 8)
}

#[test]
fn linux_builtins_and_btf_typed_arguments_on_the_debian_kernel() {
    let test = "linux_dlang::linux_builtins_and_btf_typed_arguments_on_the_debian_kernel";
    let Some(vmlinux) = vmlinux_on_kvm_or_skip(test) else {
        return;
    };
    let image = std::fs::read(&vmlinux).expect("read vmlinux");
    let kallsyms = Kallsyms::from_elf(&image).expect("kallsyms");
    let sym = |name: &str| kallsyms.by_name(name)[0].address;
    let btf = Btf::from_elf(&image).expect("BTF");
    let init_task = sym("init_task");
    // `init_task.comm` as linked into the file: INIT_TASK_COMM, written by the compiler into
    // init_task's initialised data (init/init_task.c). The offset of `comm` comes from BTF
    // (the struct's layout depends on the configuration); the bytes from the ELF's segment.
    let comm_bytes = file_bytes(
        &image,
        init_task + offset_of(&btf, "task_struct", "comm"),
        16,
    );
    let comm: String = comm_bytes
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    assert!(!comm.is_empty(), "init_task.comm in the file is empty");
    let memblock = sym("memblock");
    let memory = memblock + offset_of(&btf, "memblock", "memory");
    let reserved = memblock + offset_of(&btf, "memblock", "reserved");

    let trace_file = temp_file("linux-dlang.json", b"");
    let timeout = TIMEOUT_S.to_string();
    let socket = std::env::temp_dir().join(format!("hvtrace-dlang-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let client = {
        let socket = socket.clone();
        std::thread::spawn(move || attach(socket, Duration::from_secs(TIMEOUT_S + 30)))
    };
    let run = run_hvtrace(
        &[
            "run",
            "--kernel",
            vmlinux.to_str().expect("UTF-8 path"),
            "--cpus",
            "1",
            "--mem",
            "256M",
            "--timeout",
            &timeout,
            "--control",
            socket.to_str().expect("UTF-8 path"),
            "-q",
            "--format",
            "json",
            "-o",
            trace_file.to_str().expect("UTF-8 path"),
            "-n",
            PROGRAM,
        ],
        Duration::from_secs(TIMEOUT_S + 60),
    );
    let trace = std::fs::read_to_string(&trace_file).unwrap_or_default();
    let texts: Vec<String> = trace
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "printf")
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect();
    let how_far = format!(
        "the run took {:.1} s, exit status {:?}; records: {}; hvtrace said:\n{}",
        run.elapsed.as_secs_f64(),
        run.status,
        texts.len(),
        run.stderr
    );
    assert_eq!(run.status, Some(0), "exit(0) was not the ending; {how_far}");

    let starts: Vec<&String> = texts.iter().filter(|t| t.starts_with("start ")).collect();
    assert_eq!(starts.len(), 1, "start_kernel fired {starts:?}; {how_far}");
    assert_eq!(
        *starts[0],
        format!("start {init_task:x} 0 0 {comm}"),
        "curthread, pid, tid, execname at start_kernel (init_task at {init_task:#x})"
    );

    let formats: Vec<&str> = texts
        .iter()
        .filter_map(|t| t.strip_prefix("fmt "))
        .collect();
    assert!(formats.len() >= 5, "few printk formats: {formats:?}");
    for f in &formats {
        let mut needle = f.as_bytes().to_vec();
        needle.push(0);
        assert!(
            image.windows(needle.len()).any(|w| w == needle),
            "printk format {f:?} is not a NUL-terminated string of the vmlinux"
        );
    }
    assert!(
        formats.contains(&"\u{1}6Command line: %s\n"),
        "no \"Command line: %s\" format among {formats:?}"
    );

    let ranges: Vec<(u64, String, String)> = texts
        .iter()
        .filter_map(|t| {
            let mut w = t.strip_prefix("range ")?.split(' ');
            let addr = u64::from_str_radix(w.next()?, 16).ok()?;
            Some((addr, w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect();
    assert!(
        ranges.iter().any(|(a, n, _)| *a == memory && n == "memory"),
        "no memblock_add_range(&memblock.memory = {memory:#x}) named \"memory\": {ranges:?}"
    );
    for (addr, name, mark) in &ranges {
        let want = match *addr {
            a if a == memory => "memory",
            a if a == reserved => "reserved",
            _ => continue,
        };
        assert_eq!(name, want, "args[0]->name of {addr:#x}");
        assert_eq!(mark, "42", "self->mark of init_task, set at start_kernel");
    }

    let (status, attached) = client
        .join()
        .expect("client thread")
        .unwrap_or_else(|e| panic!("attaching failed: {e}; {how_far}"));
    assert_eq!(status, Some(0));
    let seen: Vec<&str> = attached
        .lines()
        .filter_map(|l| l.strip_prefix("attached "))
        .collect();
    let expected: Vec<String> = ranges
        .iter()
        .map(|(_, name, _)| format!("{comm} 0 {name}"))
        .collect();
    assert_eq!(
        seen, expected,
        "the attached client's memblock_add_range records differ from the run's"
    );
}
