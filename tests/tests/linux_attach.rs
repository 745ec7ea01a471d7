//! Attaching to a running Debian kernel booted by PVH (`scripts/fetch-linux-guest.sh`): the
//! client's session finds the kernel's KASLR slide from the running vCPU (the IDT and its
//! gate, the page tables; `MSR_LSTAR` is not set yet at this stage) before arming, and
//! cross-checks the kallsyms decoded from guest memory at that slide against the image's.
//! The PVH entry does not randomise, so the slide must be 0 (an independent fact: the kernel
//! runs at its link addresses), and the probe armed through it must fire. About a minute on a
//! software KVM (HOST.md).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::linux::linux_guest_or_skip;
use tests::{hvtrace_path, kvm_or_skip};

#[test]
fn an_attaching_client_finds_slide_zero_and_its_probe_fires() {
    let test = "an_attaching_client_finds_slide_zero_and_its_probe_fires";
    if !kvm_or_skip(test) {
        return;
    }
    let Some(vmlinux) = linux_guest_or_skip(test, "vmlinux") else {
        return;
    };
    let socket = std::env::temp_dir().join(format!("hvtrace-linux-attach-{}", std::process::id()));
    let mut run = Command::new(hvtrace_path())
        .args(["run", "--kernel"])
        .arg(&vmlinux)
        .args(["--timeout", "200", "--control"])
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hvtrace run");
    let console = Arc::new(Mutex::new(String::new()));
    let reader = {
        let console = Arc::clone(&console);
        let out = run.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut c = console.lock().unwrap();
                c.push_str(&line);
                c.push('\n');
            }
        })
    };
    // The banner is printed by start_kernel, after x86_64_start_kernel loaded idt_table:
    // the slide is knowable (MSR_LSTAR comes later, in trap_init, after setup_arch).
    let start = Instant::now();
    while !console.lock().unwrap().contains("Linux version") {
        if start.elapsed() > Duration::from_secs(150) || run.try_wait().unwrap().is_some() {
            let _ = run.kill();
            panic!(
                "no kernel banner after {:?}:\n{}",
                start.elapsed(),
                console.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let client = Command::new(hvtrace_path())
        .args(["trace", "--attach"])
        .arg(&socket)
        .args([
            "-q",
            "-n",
            "fbt::vprintk_emit:entry { printf(\"vprintk_emit\\n\"); exit(0); }",
        ])
        .output()
        .expect("run the client");
    let _ = run.kill();
    let _ = run.wait();
    let _ = reader.join();
    let _ = std::fs::remove_file(&socket);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr),
    );
    let all = format!(
        "client {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        client.status
    );
    assert!(stderr.contains("KASLR slide 0x0 "), "{all}");
    assert!(
        stderr.contains("guest memory's kallsyms") && stderr.contains("equal the image's"),
        "{all}"
    );
    assert!(
        stdout.contains("vprintk_emit"),
        "the probe never fired: {all}"
    );
    assert_eq!(client.status.code(), Some(0), "{all}");
}
