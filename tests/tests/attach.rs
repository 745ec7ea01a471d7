//! Attaching to a running VM: `hvtrace run --control SOCKET` with clients coming and going
//! (`exit()`, Ctrl-C's stop request, a closed connection, SIGKILL), checked against the
//! guest's own results and against guest memory read from outside.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{guest_symbol, guest_text_range, hvtrace_path, kvm_or_skip, library_vm_with_control};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm::control::{Attachment, Ended};
use vmm::trace::TraceSpec;
use vmm::Outcome;

const BOUND: Duration = Duration::from_secs(240);
/// `hlt`, the trap byte on this host.
const TRAP: u8 = 0xF4;

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hvtrace-{}-{tag}.sock", std::process::id()))
}

fn spec(program: &str) -> TraceSpec {
    TraceSpec {
        sources: vec![("-n".into(), program.into())],
        quiet: true,
        json: false,
        output: None,
    }
}

fn read(memory: &GuestMemoryMmap, (start, end): (u64, u64)) -> Vec<u8> {
    let mut bytes = vec![0u8; (end - start) as usize];
    memory
        .read_slice(&mut bytes, GuestAddress(start))
        .expect("guest text readable");
    bytes
}

fn byte_at(memory: &GuestMemoryMmap, addr: u64) -> u8 {
    memory.read_obj(GuestAddress(addr)).expect("readable")
}

/// Polls `cond` every 200 µs for at most `bound`; the time it took, or `None`.
fn wait_for(bound: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

/// Output that asks for a stop (what Ctrl-C sends) once the program has printed `first hit`.
struct StopOnFirstHit<F: Fn()> {
    text: Vec<u8>,
    stop: Option<F>,
}

impl<F: Fn()> std::io::Write for StopOnFirstHit<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        if String::from_utf8_lossy(&self.text).contains("first hit") {
            if let Some(stop) = self.stop.take() {
                stop();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs one attached session to its end in this thread: the program calls `exit(7)` itself
/// after 20 calls (`ends_itself`), or a stop request (what Ctrl-C sends) ends it once the
/// probes have fired. Either way the probes fired while attached, however loaded the host.
fn session(socket: &std::path::Path, ends_itself: bool) -> (Ended, String) {
    let counts = "fbt::bench_target:entry, fbt::bench_target:return { @[probename] = count(); }";
    let program = if ends_itself {
        format!("{counts} fbt::bench_target:return {{ n++; }} fbt::bench_target:return /n == 20/ {{ exit(7); }}")
    } else {
        format!(
            "{counts} fbt::bench_target:return /!seen/ {{ seen = 1; printf(\"first hit\\n\"); }}"
        )
    };
    let attachment = Attachment::connect(socket, &spec(&program)).expect("connect");
    let mut out = StopOnFirstHit {
        text: Vec::new(),
        stop: (!ends_itself).then(|| attachment.stopper().expect("stopper")),
    };
    let ended = attachment
        .run(&mut out, &mut Vec::new(), &mut |_| {})
        .unwrap_or_else(|e| panic!("session: {e}"));
    (ended, String::from_utf8_lossy(&out.text).into_owned())
}

#[test]
fn a_hundred_attach_detach_cycles_leave_the_guest_and_its_text_intact() {
    if !kvm_or_skip("a_hundred_attach_detach_cycles_leave_the_guest_and_its_text_intact") {
        return;
    }
    let socket = socket_path("cycles");
    let n = 1_500_000;
    let (vm, serial) =
        library_vm_with_control("spin", 2, &format!("mode=calls n={n}"), BOUND, &socket)
            .expect("build VM");
    let memory = vm.memory();
    let text_range = guest_text_range("spin");
    let text_before = read(&memory, text_range);
    let runner = std::thread::spawn(move || vm.run().expect("run"));
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&socket).expect("the control socket exists");
        assert!(
            meta.file_type().is_socket(),
            "{} is not a socket",
            socket.display()
        );
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "control socket mode"
        );
        let name = socket
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let staging: Vec<_> = std::fs::read_dir(socket.parent().expect("parent"))
            .expect("read the socket's directory")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!(".{name}."))
            })
            .collect();
        assert!(staging.is_empty(), "staging left behind: {staging:?}");
    }

    for cycle in 0..100 {
        let how = cycle % 3;
        if how == 2 {
            // Attach, wait until the trap is in, then close the connection.
            let program = "fbt::bench_target:entry { @ = count(); }";
            let attachment = Attachment::connect(&socket, &spec(program))
                .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            let (entry, _) = guest_symbol("spin", "bench_target");
            assert!(
                wait_for(Duration::from_secs(10), || byte_at(&memory, entry) == TRAP).is_some(),
                "cycle {cycle}: the entry trap never appeared"
            );
            drop(attachment);
            continue;
        }
        let (ended, out) = session(&socket, how == 0);
        match how {
            0 => {
                assert_eq!(ended.reason, "exit", "cycle {cycle}: {out}");
                assert_eq!(ended.status, Some(7), "cycle {cycle}");
            }
            _ => assert_eq!(ended.reason, "stopped", "cycle {cycle}: {out}"),
        }
        assert!(
            out.contains("entry"),
            "cycle {cycle}: no entry count in the output:\n{out}"
        );
    }
    // Every client is gone: the guest text is its own again, while the guest still runs.
    let detached = wait_for(Duration::from_secs(5), || {
        read(&memory, text_range) == text_before
    });
    assert!(
        detached.is_some(),
        "guest text still differs from before the first attach after every client left"
    );

    let outcome = runner.join().expect("VM thread");
    let text = serial.text();
    assert!(
        matches!(outcome, Outcome::GuestExit(0)),
        "{outcome:?}\n{text}"
    );
    assert!(
        text.contains(&format!("spin: calls done n={n} ")),
        "the guest did not finish its {n} calls (raise n if the cycles outlasted it):\n{text}"
    );
    assert_eq!(read(&memory, text_range), text_before, "text after the run");
    assert!(!socket.exists(), "the control socket was not removed");
}

#[test]
fn a_killed_client_loses_its_probes_within_100_ms_and_others_keep_theirs() {
    if !kvm_or_skip("a_killed_client_loses_its_probes_within_100_ms_and_others_keep_theirs") {
        return;
    }
    let socket = socket_path("kill");
    let (vm, serial) = library_vm_with_control("spin", 1, "mode=calls n=1500000", BOUND, &socket)
        .expect("build VM");
    let memory = vm.memory();
    let (entry, size) = guest_symbol("spin", "bench_target");
    let original = read(&memory, (entry, entry + size));
    let ret = entry
        + original
            .iter()
            .position(|&b| b == 0xC3)
            .expect("bench_target has a ret") as u64;
    let runner = std::thread::spawn(move || vm.run().expect("run"));

    // Client B (in this process) holds the entry probe for the whole test.
    let b = Attachment::connect(
        &socket,
        &spec("fbt::bench_target:entry { @calls = count(); }"),
    )
    .expect("connect B");
    let stop_b = b.stopper().expect("stopper");
    let b_thread = std::thread::spawn(move || {
        let mut out = Vec::new();
        let ended = b.run(&mut out, &mut Vec::new(), &mut |_| {});
        (ended, String::from_utf8_lossy(&out).into_owned())
    });
    assert!(
        wait_for(Duration::from_secs(10), || byte_at(&memory, entry) == TRAP).is_some(),
        "client B's entry trap never appeared"
    );

    // Client A (the hvtrace binary) holds the return probe, and is killed.
    let mut a = Command::new(hvtrace_path())
        .args(["trace", "--attach"])
        .arg(&socket)
        .args(["-q", "-n", "fbt::bench_target:return { @r = count(); }"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn client A");
    let armed = wait_for(Duration::from_secs(20), || byte_at(&memory, ret) == TRAP);
    assert!(armed.is_some(), "client A's return trap never appeared");
    let killed = Instant::now();
    a.kill().expect("SIGKILL client A");
    let restored = wait_for(Duration::from_secs(2), || byte_at(&memory, ret) == 0xC3);
    let _ = a.wait();
    let took = restored.map(|_| killed.elapsed());
    eprintln!("client A's probe removed {took:?} after SIGKILL");
    assert!(
        took.is_some_and(|t| t <= Duration::from_millis(100)),
        "after SIGKILL the return trap was still there after {:?}",
        took.unwrap_or(Duration::from_secs(2))
    );
    assert_eq!(
        byte_at(&memory, entry),
        TRAP,
        "client B's entry trap went too"
    );

    stop_b();
    let (ended, out) = b_thread.join().expect("B thread");
    let ended = ended.expect("B ended cleanly");
    assert_eq!(ended.reason, "stopped");
    let calls: u64 = out
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count in B's output:\n{out}"));
    assert!(calls > 0, "B counted nothing:\n{out}");
    assert_eq!(read(&memory, (entry, entry + size)), original);

    let outcome = runner.join().expect("VM thread");
    let text = serial.text();
    assert!(
        matches!(outcome, Outcome::GuestExit(0)),
        "{outcome:?}\n{text}"
    );
}

/// Sends SIGINT to a child process.
fn interrupt(child: &std::process::Child) {
    // SAFETY: kill(2) on a child we spawned and have not reaped; no memory is involved.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill(SIGINT)");
}

#[test]
fn ctrl_c_detaches_a_client_and_ends_a_run_with_their_aggregations() {
    if !kvm_or_skip("ctrl_c_detaches_a_client_and_ends_a_run_with_their_aggregations") {
        return;
    }
    let socket = socket_path("ctrlc");
    let hvtrace = hvtrace_path();
    let mut run = Command::new(&hvtrace)
        .args([
            "run",
            "--guest",
            "spin",
            "--cmdline",
            "mode=calls n=3000000",
        ])
        .args(["--timeout", "120", "--control"])
        .arg(&socket)
        .args(["-q", "-n", "fbt::bench_target:entry { @run = count(); }"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    assert!(
        wait_for(Duration::from_secs(20), || socket.exists()).is_some(),
        "the control socket never appeared"
    );
    let client = Command::new(&hvtrace)
        .args(["trace", "--attach"])
        .arg(&socket)
        .args(["-n", "fbt::bench_target:return { @client = count(); }"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    // Let it attach and count a while, then Ctrl-C it.
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&client);
    let out = client.wait_with_output().expect("client output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(0) {
        let _ = run.kill();
        let vm = run.wait_with_output().expect("run output");
        panic!(
            "the client failed ({:?}):\n{stdout}\n{stderr}\nthe run ({:?}):\n{}\n{}",
            out.status,
            vm.status,
            String::from_utf8_lossy(&vm.stdout),
            String::from_utf8_lossy(&vm.stderr)
        );
    }
    assert!(stderr.contains("fbt probes armed"), "{stderr}");
    let counted: u64 = stdout
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no aggregation after Ctrl-C:\n{stdout}\n{stderr}"));
    assert!(counted > 0, "{stdout}");

    // Ctrl-C of the run: END, the run's aggregation, status 130, the socket gone.
    interrupt(&run);
    let out = run.wait_with_output().expect("run output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    let last: u64 = stdout
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no aggregation after Ctrl-C:\n{stdout}\n{stderr}"));
    assert!(last > 0, "{stdout}");
    assert!(!socket.exists(), "the control socket was left behind");
}
