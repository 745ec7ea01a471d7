//! The terminal that the guest's serial output and `run`'s trace output share: neither is
//! written into the middle of the other's line.
//!
//! The UART hands over one byte at a time, so a trace record printed while the guest is
//! half-way through a line would be glued to it (`summary: 7 ok, 2CPU ID FUNCTION:NAME`).
//! Here the guest's bytes are held until their line ends, and trace output goes out at once,
//! between the guest's lines. A line the guest leaves unfinished (a prompt) is shown once the
//! guest has sent nothing for [`HOLD_IDLE`], once it is [`HOLD_MAX`] old, or when the VM
//! stops ([`Console::settle`]); output from the other side then starts on a new line.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the guest may send nothing before its unfinished line is shown.
pub const HOLD_IDLE: Duration = Duration::from_millis(100);
/// The longest an unfinished guest line is held while the guest keeps adding to it.
pub const HOLD_MAX: Duration = Duration::from_secs(1);

/// When a held line is shown.
#[derive(Clone, Copy, Debug)]
pub struct Hold {
    /// After the guest sent nothing for this long.
    pub idle: Duration,
    /// After the line is this old.
    pub max: Duration,
}

impl Hold {
    /// The defaults, [`HOLD_IDLE`] and [`HOLD_MAX`].
    pub const DEFAULT: Hold = Hold {
        idle: HOLD_IDLE,
        max: HOLD_MAX,
    };

    /// Whether a line first held at `first` and last added to at `last` is due.
    fn due(&self, first: Instant, last: Instant) -> bool {
        last.elapsed() >= self.idle || first.elapsed() >= self.max
    }
}

/// Who wrote the bytes the terminal's cursor now follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Guest,
    Trace,
}

/// The terminal's state, behind one lock.
struct State {
    out: Box<dyn Write + Send>,
    /// The guest's bytes not yet written (an unfinished line).
    held: Vec<u8>,
    /// When the first and the last of `held` arrived.
    held_at: Option<(Instant, Instant)>,
    /// The side that left the cursor in the middle of a line, if any.
    mid_line: Option<Side>,
    /// The console is dropped: the flusher ends.
    closed: bool,
}

impl State {
    /// Writes `bytes` for `side`, first ending a line the other side left unfinished.
    fn emit(&mut self, side: Side, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.mid_line.is_some_and(|s| s != side) {
            self.out.write_all(b"\n")?;
        }
        self.out.write_all(bytes)?;
        self.out.flush()?;
        self.mid_line = (bytes.last() != Some(&b'\n')).then_some(side);
        Ok(())
    }

    /// Writes every held guest byte now.
    fn show_held(&mut self) -> io::Result<()> {
        let held = std::mem::take(&mut self.held);
        self.held_at = None;
        self.emit(Side::Guest, &held)
    }
}

/// The shared part: the state and the flusher's wake-up.
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A terminal shared by a guest's UART ([`Console::guest`]) and a trace ([`Console::trace`]).
pub struct Console {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Console {
    /// A console writing to `out`, holding unfinished guest lines as `hold` says.
    pub fn new(out: Box<dyn Write + Send>, hold: Hold) -> Console {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                out,
                held: Vec::new(),
                held_at: None,
                mid_line: None,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let flusher = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || flush_stale(weak, hold))
            .ok();
        Console { shared, flusher }
    }

    /// The writer for the guest's serial output (bytes held until their line ends).
    pub fn guest(&self) -> GuestWriter {
        GuestWriter(Arc::clone(&self.shared))
    }

    /// The writer for trace output (written at once, between the guest's lines).
    pub fn trace(&self) -> TraceWriter {
        TraceWriter(Arc::clone(&self.shared))
    }

    /// Shows an unfinished guest line now (the VM stopped: nothing will finish it).
    pub fn settle(&self) {
        let _ = self.shared.lock().show_held();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            let _ = state.show_held();
            state.closed = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

/// The flusher thread: shows a held guest line once `hold` says it is due; ends with the
/// console.
fn flush_stale(shared: Weak<Shared>, hold: Hold) {
    let tick = (hold.idle.min(hold.max) / 2).max(Duration::from_millis(1));
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let state = shared.lock();
        if state.closed {
            return;
        }
        let (mut state, _) = shared
            .wake
            .wait_timeout(state, tick)
            .unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return;
        }
        if state
            .held_at
            .is_some_and(|(first, last)| hold.due(first, last))
        {
            let _ = state.show_held();
        }
    }
}

/// The guest's side of a [`Console`]: a UART's transmitter output.
#[derive(Clone)]
pub struct GuestWriter(Arc<Shared>);

impl Write for GuestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.0.lock();
        state.held.extend_from_slice(buf);
        if let Some(end) = state.held.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = state.held.drain(..=end).collect();
            state.held_at = None;
            state.emit(Side::Guest, &lines)?;
        }
        if !state.held.is_empty() {
            let now = Instant::now();
            let first = state.held_at.map_or(now, |(first, _)| first);
            state.held_at = Some((first, now));
        }
        Ok(buf.len())
    }

    /// Held bytes stay held: the UART flushes after every byte.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The trace's side of a [`Console`].
#[derive(Clone)]
pub struct TraceWriter(Arc<Shared>);

impl Write for TraceWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().emit(Side::Trace, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().out.flush()
    }
}

/// The console on the process's standard output, once something uses it.
static STDOUT: OnceLock<Console> = OnceLock::new();

/// The console on the process's standard output (one per process, since stdout is).
pub fn stdout() -> &'static Console {
    STDOUT.get_or_init(|| Console::new(Box::new(io::stdout()), Hold::DEFAULT))
}

/// [`Console::settle`] on the standard-output console, if there is one.
pub fn settle_stdout() {
    if let Some(console) = STDOUT.get() {
        console.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing is shown before the test says so.
    const LONG: Hold = Hold {
        idle: Duration::from_secs(60),
        max: Duration::from_secs(60),
    };
    /// A line is shown once the guest is quiet for 20 ms.
    const SHORT_IDLE: Hold = Hold {
        idle: Duration::from_millis(20),
        max: Duration::from_secs(60),
    };

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Calls `step` until something was written (10 s at most).
    fn until_shown(out: &Captured, mut step: impl FnMut()) {
        let start = Instant::now();
        while out.text().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the held line was never shown"
            );
            step();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn bytewise(w: &mut impl Write, text: &str) {
        for b in text.bytes() {
            w.write_all(&[b]).unwrap();
            w.flush().unwrap();
        }
    }

    #[test]
    fn trace_output_goes_between_the_guests_lines() {
        let out = Captured::default();
        let console = Console::new(Box::new(out.clone()), LONG);
        let (mut guest, mut trace) = (console.guest(), console.trace());
        bytewise(&mut guest, "first line\nsummary: 7 ok, 2");
        trace.write_all(b"CPU ID FUNCTION:NAME\n").unwrap();
        bytewise(&mut guest, " hang\n");
        assert_eq!(
            out.text(),
            "first line\nCPU ID FUNCTION:NAME\nsummary: 7 ok, 2 hang\n"
        );
    }

    #[test]
    fn an_unfinished_line_is_shown_after_the_hold_and_the_trace_starts_a_new_line() {
        let out = Captured::default();
        let console = Console::new(Box::new(out.clone()), SHORT_IDLE);
        let (mut guest, mut trace) = (console.guest(), console.trace());
        bytewise(&mut guest, "login: ");
        until_shown(&out, || {});
        assert_eq!(out.text(), "login: ");
        trace.write_all(b"hit\n").unwrap();
        bytewise(&mut guest, "root\n");
        assert_eq!(out.text(), "login: \nhit\nroot\n");
    }

    #[test]
    fn a_line_the_guest_keeps_adding_to_is_shown_at_its_maximum_age() {
        let out = Captured::default();
        let hold = Hold {
            idle: Duration::from_secs(60),
            max: Duration::from_millis(30),
        };
        let console = Console::new(Box::new(out.clone()), hold);
        let mut guest = console.guest();
        until_shown(&out, || bytewise(&mut guest, "."));
        assert!(out.text().chars().all(|c| c == '.'), "{}", out.text());
    }

    #[test]
    fn settle_and_drop_show_what_is_held() {
        let out = Captured::default();
        let console = Console::new(Box::new(out.clone()), LONG);
        let (mut guest, mut trace) = (console.guest(), console.trace());
        bytewise(&mut guest, "no newline");
        console.settle();
        assert_eq!(out.text(), "no newline");
        trace.write_all(b"END output").unwrap();
        bytewise(&mut guest, "tail");
        drop(console);
        assert_eq!(out.text(), "no newline\nEND output\ntail");
    }
}
