//! One bounded QEMU process: its serial output (stdout) collected with the time of its first
//! byte, its stderr kept for messages, and a SIGKILL when it outlives its bound (a hung QEMU
//! ignores SIGTERM: its vCPU threads never return to the main loop).

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::QemuError;

/// How often the process is polled for its end.
const POLL: Duration = Duration::from_millis(5);

/// How a bounded process ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status; `None` when it was killed at the bound.
    pub status: Option<ExitStatus>,
    /// Time from spawning to its end (or the kill).
    pub wall: Duration,
    /// Time from spawning to the first byte on stdout (the guest's serial port), if any came.
    pub first_byte: Option<Duration>,
    /// Everything it wrote on stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) for at most `bound`.
pub fn run_bounded(mut cmd: Command, bound: Duration) -> Result<Finished, QemuError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuError::Spawn { program, source })?;
    let stdout = read_stdout(&mut child, start);
    let stderr = child.stderr.take().map(|mut e| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
    });
    let status = loop {
        if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
            break Some(status);
        }
        if start.elapsed() >= bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL);
    };
    let wall = start.elapsed();
    let (first_byte, stdout) = stdout.recv().unwrap_or_default();
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    Ok(Finished {
        status,
        wall,
        first_byte,
        stdout,
        stderr,
    })
}

/// Reads the child's stdout on a thread until EOF; the result (time of the first byte after
/// `start`, all bytes) arrives on the returned channel.
fn read_stdout(child: &mut Child, start: Instant) -> mpsc::Receiver<(Option<Duration>, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    let Some(mut out) = child.stdout.take() else {
        let _ = tx.send((None, Vec::new()));
        return rx;
    };
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut first = None;
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first.get_or_insert_with(|| start.elapsed());
                    all.extend_from_slice(&buf[..n]);
                }
            }
        }
        let _ = tx.send((first, all));
    });
    rx
}
