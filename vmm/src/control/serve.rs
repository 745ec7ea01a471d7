//! One attached client, on its own thread: read its request, compile and arm its program, run
//! it until `exit()`, a stop request, the client's disappearance or the VM's end, then detach
//! (probes removed, guest text restored) and send the END output and the end message.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lines::{LineReader, Polled};
use super::protocol::{self, EndReason, MAX_REQUEST};
use super::{ControlContext, POLL};
use crate::probes::HitHook;
use crate::trace::{plan, TraceSink, TraceTarget, Tracing};

/// How long a client has to send its request after connecting.
const REQUEST_BOUND: Duration = Duration::from_secs(10);
/// How long a write to a client may block (a client that stops reading is dropped).
const WRITE_BOUND: Duration = Duration::from_secs(2);

/// Trace output sent to the client as `{"stdout": ...}` / `{"stderr": ...}` lines.
struct SocketSink {
    stream: Mutex<UnixStream>,
}

impl SocketSink {
    fn send(&self, line: &str) {
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        // A client that went away is noticed by the reader; nothing to do here.
        let _ = s.write_all(line.as_bytes());
        let _ = s.write_all(b"\n");
    }
}

impl TraceSink for SocketSink {
    fn stdout(&self, text: &str) {
        self.send(&protocol::output("stdout", text));
    }

    fn stderr(&self, text: &str) {
        self.send(&protocol::output("stderr", text));
    }
}

/// Serves one client until it detaches or the VM ends.
pub(super) fn serve_client(stream: UnixStream, ctx: &ControlContext, vm_ended: &AtomicBool) {
    let setup = stream
        .set_read_timeout(Some(POLL))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_BOUND)))
        .and_then(|()| stream.try_clone());
    let (reader, writer) = match setup {
        Ok(reader) => (reader, stream),
        Err(e) => {
            eprintln!("hvtrace: control client: {e}");
            return;
        }
    };
    let sink = Arc::new(SocketSink {
        stream: Mutex::new(writer),
    });
    let mut lines = LineReader::new(reader, MAX_REQUEST);
    let request = match read_request(&mut lines, vm_ended) {
        Some(line) => line,
        None => return,
    };
    match attach(&request, ctx, &sink) {
        Ok(session) => session.run(&mut lines, ctx, vm_ended, &sink),
        Err(why) => sink.send(&protocol::error(&why)),
    }
}

/// The first line, within [`REQUEST_BOUND`].
fn read_request(lines: &mut LineReader<UnixStream>, vm_ended: &AtomicBool) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < REQUEST_BOUND && !vm_ended.load(Ordering::SeqCst) {
        match lines.poll() {
            Polled::Line(line) => return Some(line),
            Polled::Nothing => {}
            Polled::Closed => return None,
        }
    }
    None
}

/// How long an attaching client waits for a bzImage kernel's KASLR slide.
const SLIDE_BOUND: Duration = Duration::from_secs(5);

/// An attached client's running program.
struct Session {
    id: crate::probes::SessionId,
    tracing: Arc<Tracing>,
    exited: Arc<AtomicBool>,
}

/// Compiles and arms the client's program; on failure, why (nothing stays armed).
fn attach(request: &str, ctx: &ControlContext, sink: &Arc<SocketSink>) -> Result<Session, String> {
    let spec = protocol::parse_request(request)?;
    let plan = plan(&spec, &ctx.catalogue, &ctx.target.kernel).map_err(|e| e.to_string())?;
    if let (false, Err(none)) = (plan.fbt.is_empty(), &ctx.trap_choice) {
        return Err(none.to_string());
    }
    let fbt = plan.fbt.clone();
    let descriptions = plan.descriptions();
    let explicit = crate::probes::named_exactly(descriptions.iter().map(String::as_str));
    // A bzImage's kernel: the slide now (asking vCPU 0), and symbols at their run addresses.
    let target = match &ctx.kernel_place {
        None => ctx.target.clone(),
        Some(place) => {
            let kicker = ctx
                .sessions
                .vcpus()
                .and_then(|v| v.kickers.first().cloned())
                .ok_or("the VM has no vCPUs to ask for the kernel's KASLR slide")?;
            let found = place.wait(&kicker, SLIDE_BOUND)?;
            sink.stderr(&format!("hvtrace: {}\n", found.describe()));
            TraceTarget {
                symbols: found.symbols.clone(),
                ..ctx.target.clone()
            }
        }
    };
    let tracing = Tracing::new(
        &spec,
        plan,
        &ctx.catalogue,
        &target,
        Box::new(Arc::clone(sink)),
    );
    if let (false, Ok(choice)) = (fbt.is_empty(), &ctx.trap_choice) {
        tracing.announce(&choice.announcement());
    }
    let id = ctx.probes.new_session();
    if !fbt.is_empty() {
        let hook: Arc<dyn HitHook> = tracing.clone();
        ctx.probes
            .arm(
                id,
                &ctx.image,
                &target.symbols,
                &target.memory,
                &fbt,
                &explicit,
                Some(hook),
            )
            .map_err(|e| e.to_string())?;
    }
    let wanted: std::collections::HashSet<&tracer::probes::Probe> = fbt.iter().collect();
    let sites: usize = ctx
        .probes
        .probes()
        .iter()
        .filter(|p| wanted.contains(&p.probe))
        .map(|p| p.sites.len())
        .sum();
    sink.send(&protocol::attached(fbt.len(), sites));
    ctx.sessions.add(id, Arc::clone(&tracing));
    let exited = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&exited);
    tracing.start(
        Box::new(move || flag.store(true, Ordering::SeqCst)),
        ctx.sessions.vcpus(),
    );
    Ok(Session {
        id,
        tracing,
        exited,
    })
}

impl Session {
    /// Runs until the session ends, then detaches.
    fn run(
        self,
        lines: &mut LineReader<UnixStream>,
        ctx: &ControlContext,
        vm_ended: &AtomicBool,
        sink: &SocketSink,
    ) {
        let reason = loop {
            if self.exited.load(Ordering::SeqCst) {
                break Some(EndReason::Exit);
            }
            if vm_ended.load(Ordering::SeqCst) {
                break Some(EndReason::VmEnded);
            }
            match lines.poll() {
                Polled::Line(line) if protocol::is_stop(&line) => break Some(EndReason::Stopped),
                Polled::Line(_) | Polled::Nothing => {}
                Polled::Closed => break None,
            }
        };
        // Detach first (no more firings, guest text restored), then print END's output.
        ctx.sessions.remove(self.id);
        if let Err(e) = ctx.probes.disarm(self.id, &ctx.target.memory) {
            eprintln!("hvtrace: detaching a control client: {e}");
        }
        let status = self.tracing.finish();
        if let Some(reason) = reason {
            sink.send(&protocol::end(reason, status));
        }
    }
}
