//! The control socket (`hvtrace run --control SOCKET`): tracing clients
//! (`hvtrace trace --attach SOCKET -n PROG`) attach to the running VM, each with its own D
//! program, output and probes, and detach by `exit()`, Ctrl-C, or simply going away (SIGKILL
//! included): the connection's end is the detach, so a dead client's probes are removed and
//! the guest text restored at once, other clients' probes untouched.
//!
//! The socket is created with mode 0600 (bound in a private directory, then moved), refuses to
//! replace a path that is not a stale socket, and is removed when the VM ends.

mod attach;
mod lines;
mod protocol;
mod serve;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracer::probes::Probe;

use crate::host_traps::{NoTrapStrategy, TrapChoice};
use crate::probes::ProbeSet;
use crate::trace::{Sessions, TraceTarget};

pub use attach::{AttachError, Attachment, Ended};
pub use protocol::{EndReason, Message};

/// How often the accept loop and client threads look at their stop flags.
const POLL: Duration = Duration::from_millis(10);

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another process is serving that socket.
    #[error("control socket {0} is in use by a running hvtrace")]
    InUse(PathBuf),
    /// The path exists and is not a socket (never replaced).
    #[error("control socket path {0} exists and is not a socket; remove it or pick another path")]
    NotASocket(PathBuf),
    /// Creating the socket failed.
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What attached sessions need from the VM.
pub struct ControlContext {
    /// The guest image (function bytes for decoding probe sites).
    pub image: Vec<u8>,
    /// Its probe catalogue.
    pub catalogue: Vec<Probe>,
    /// The VM the sessions trace.
    pub target: TraceTarget,
    /// The VM's probes (shared with `run`'s own program).
    pub probes: Arc<ProbeSet>,
    /// The running sessions (for providers fired outside traps).
    pub sessions: Arc<Sessions>,
    /// How fbt probes trap on this host with this irqchip (or why they cannot).
    pub trap_choice: Result<TrapChoice, NoTrapStrategy>,
    /// A bzImage kernel's place: sessions wait (bounded) for its KASLR slide and use the
    /// slid symbols.
    pub kernel_place: Option<Arc<crate::kaslr::place::KernelPlace>>,
}

/// A bound control socket, not yet serving (removed again if dropped unserved, e.g. when the
/// VM fails to start).
pub struct ControlSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ControlSocket {
    /// Creates the socket at `path` (mode 0600). A stale socket left by a dead hvtrace is
    /// replaced; a live one or any other file is an error.
    pub fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ControlError::NotASocket(path.to_path_buf()));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        let bind_error = |source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        };
        // Bound and listening under a temporary name, then renamed into place: a client that
        // sees the path can connect (between bind and listen it would be refused). The
        // temporary name lives in a fresh directory of mode 0700 beside the path, so no other
        // user can reach the socket before its mode is 0600 (the process's umask is not
        // touched: it is shared by every thread).
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let staging_dir = path.with_file_name(format!(
            ".{}.{}.tmp",
            file_name.unwrap_or_else(|| "hvtrace-control".into()),
            std::process::id()
        ));
        let staging = staging_dir.join("socket");
        let _ = std::fs::remove_file(&staging);
        let _ = std::fs::remove_dir(&staging_dir);
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&staging_dir)
            .map_err(bind_error)?;
        let placed = UnixListener::bind(&staging).and_then(|listener| {
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
                .and_then(|()| listener.set_nonblocking(true))
                .and_then(|()| std::fs::rename(&staging, path))
                .map(|()| listener)
        });
        let _ = std::fs::remove_file(&staging);
        let _ = std::fs::remove_dir(&staging_dir);
        let listener = placed.map_err(bind_error)?;
        Ok(ControlSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
        })
    }

    /// Starts accepting clients.
    pub fn serve(mut self, ctx: Arc<ControlContext>) -> ControlServer {
        let vm_ended = Arc::new(AtomicBool::new(false));
        let clients: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let vm_ended = Arc::clone(&vm_ended);
            let clients = Arc::clone(&clients);
            let listener = self.listener.take();
            std::thread::Builder::new()
                .name("control-accept".into())
                .spawn(move || {
                    if let Some(listener) = listener {
                        accept_loop(&listener, &ctx, &vm_ended, &clients);
                    }
                })
                .ok()
        };
        ControlServer {
            path: self.path.clone(),
            vm_ended,
            accept,
            clients,
        }
    }
}

/// A control socket serving clients.
pub struct ControlServer {
    path: PathBuf,
    vm_ended: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    clients: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl ControlServer {
    /// The VM ended: every attached session fires END, sends its aggregations and its end
    /// message, and detaches; the socket is removed.
    pub fn shutdown(mut self) {
        self.vm_ended.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let clients = std::mem::take(&mut *self.clients.lock().unwrap_or_else(|p| p.into_inner()));
        for c in clients {
            let _ = c.join();
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.vm_ended.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: &UnixListener,
    ctx: &Arc<ControlContext>,
    vm_ended: &Arc<AtomicBool>,
    clients: &Mutex<Vec<JoinHandle<()>>>,
) {
    while !vm_ended.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let ctx = Arc::clone(ctx);
                let vm_ended = Arc::clone(vm_ended);
                let spawned = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve::serve_client(stream, &ctx, &vm_ended));
                match spawned {
                    Ok(handle) => {
                        let mut list = clients.lock().unwrap_or_else(|p| p.into_inner());
                        list.retain(|h| !h.is_finished());
                        list.push(handle);
                    }
                    Err(e) => eprintln!("hvtrace: cannot start a control client thread: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                eprintln!("hvtrace: control socket accept failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}
