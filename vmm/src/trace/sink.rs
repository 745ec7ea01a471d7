//! Where a trace's output goes: the terminal or `-o FILE` for `run`, the client's socket for
//! an attached session.

use std::io::Write;
use std::sync::Mutex;

use super::{TraceError, TraceSpec};

/// Receives a trace's text (records, aggregations) and its warnings (drops, errors).
pub trait TraceSink: Send + Sync {
    /// The program's output.
    fn stdout(&self, text: &str);
    /// Warnings and errors about the trace.
    fn stderr(&self, text: &str);
}

/// Output to a writer (the stdout [`crate::console`], between the guest's lines, or `-o FILE`),
/// warnings to the process's stderr.
pub struct LocalSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl LocalSink {
    /// The sink `spec` asks for: its `-o` file (created), or stdout.
    pub fn for_spec(spec: &TraceSpec) -> Result<LocalSink, TraceError> {
        let out: Box<dyn Write + Send> = match &spec.output {
            Some(path) => {
                Box::new(
                    std::fs::File::create(path).map_err(|source| TraceError::Output {
                        path: path.display().to_string(),
                        source,
                    })?,
                )
            }
            None => Box::new(crate::console::stdout().trace()),
        };
        Ok(LocalSink {
            out: Mutex::new(out),
        })
    }
}

impl TraceSink for LocalSink {
    fn stdout(&self, text: &str) {
        let mut w = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(text.as_bytes());
        let _ = w.flush();
    }

    fn stderr(&self, text: &str) {
        eprint!("{text}");
    }
}

impl<T: TraceSink + ?Sized> TraceSink for std::sync::Arc<T> {
    fn stdout(&self, text: &str) {
        (**self).stdout(text);
    }

    fn stderr(&self, text: &str) {
        (**self).stderr(text);
    }
}
