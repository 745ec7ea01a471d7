//! The client side of the control socket (`hvtrace trace --attach SOCKET`): send a program,
//! print what the VMM sends back, ask for a stop on Ctrl-C, and report how the session ended.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::lines::{LineReader, Polled};
use super::protocol::{self, Message};
use crate::trace::TraceSpec;

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No VM serves that socket.
    #[error("cannot connect to the control socket {path}: {source} (is `hvtrace run --control {path}` running?)", path = .path.display())]
    Connect {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The VMM refused the program.
    #[error("{0}")]
    Refused(String),
    /// The connection broke or carried something unexpected.
    #[error("control socket: {0}")]
    Protocol(String),
}

/// How an attached session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Why (`exit`, `stopped`, `vm-ended`).
    pub reason: String,
    /// `exit()`'s status, if the program called it.
    pub status: Option<i32>,
}

/// A connection to a VM's control socket.
pub struct Attachment {
    stream: UnixStream,
}

impl Attachment {
    /// Connects to `path` and sends `spec`.
    pub fn connect(path: &Path, spec: &TraceSpec) -> Result<Attachment, AttachError> {
        let mut stream = UnixStream::connect(path).map_err(|source| AttachError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let mut line = protocol::request(spec);
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .map_err(|e| AttachError::Protocol(format!("cannot send the program: {e}")))?;
        Ok(Attachment { stream })
    }

    /// A function that asks the VMM to end the session (fire END, print the aggregations):
    /// what Ctrl-C does. Safe to call from another thread, more than once.
    pub fn stopper(&self) -> Result<impl Fn() + Send + 'static, AttachError> {
        let stream = self
            .stream
            .try_clone()
            .map_err(|e| AttachError::Protocol(e.to_string()))?;
        Ok(move || {
            let mut line = protocol::stop();
            line.push('\n');
            let _ = (&stream).write_all(line.as_bytes());
        })
    }

    /// Prints the session's output (`out`) and warnings (`err`) until it ends. `attached` is
    /// called once the probes are armed, with their number.
    pub fn run(
        self,
        out: &mut dyn Write,
        err: &mut dyn Write,
        attached: &mut dyn FnMut(u64),
    ) -> Result<Ended, AttachError> {
        let mut lines = LineReader::new(&self.stream, usize::MAX / 2);
        loop {
            let line = match lines.poll() {
                Polled::Line(line) => line,
                Polled::Nothing => continue,
                Polled::Closed => {
                    return Err(AttachError::Protocol(
                        "the VMM closed the connection before the session ended".into(),
                    ))
                }
            };
            match protocol::parse_message(&line).map_err(AttachError::Protocol)? {
                Message::Attached { probes } => attached(probes),
                Message::Error(why) => return Err(AttachError::Refused(why)),
                Message::Stdout(text) => {
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
                Message::Stderr(text) => {
                    let _ = err.write_all(text.as_bytes());
                }
                Message::End { reason, status } => return Ok(Ended { reason, status }),
            }
        }
    }
}
