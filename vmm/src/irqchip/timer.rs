//! The host timer thread of the emulated irqchip: fires APIC timers at their deadlines and
//! polls vCPUs whose pending interrupt waits for the guest to enable interrupts (the
//! interrupt-window exit alone is not reliable on every host).

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::emulated::EmulatedIrqchip;

/// How often a vCPU with a blocked pending interrupt is kicked to look again.
pub const WINDOW_POLL: Duration = Duration::from_micros(500);
/// Longest sleep when nothing is due (the thread also wakes on every re-arm).
const IDLE_SLEEP: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    stop: bool,
    rearm: bool,
    polls: Vec<(usize, Instant)>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle on the timer thread.
pub struct TimerThread {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl TimerThread {
    /// Starts the thread for `chip` (held weakly, so the chip can be dropped).
    pub fn spawn(chip: Arc<EmulatedIrqchip>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let weak = Arc::downgrade(&chip);
        drop(chip);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("apic-timer".into())
            .spawn(move || run(weak, thread_shared))?;
        Ok(TimerThread {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The next deadline may have moved: recompute.
    pub fn rearm(&self) {
        self.shared.lock().rearm = true;
        self.shared.changed.notify_all();
    }

    /// Kick `cpu` again soon unless its pending interrupt was taken by then.
    pub fn poll_soon(&self, cpu: usize) {
        let mut s = self.shared.lock();
        if !s.polls.iter().any(|(c, _)| *c == cpu) {
            s.polls.push((cpu, Instant::now() + WINDOW_POLL));
            drop(s);
            self.shared.changed.notify_all();
        }
    }

    /// Stops the thread and joins it.
    pub fn stop(&self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn run(chip: Weak<EmulatedIrqchip>, shared: Arc<Shared>) {
    loop {
        let Some(chip) = chip.upgrade() else { return };
        let next = chip.tick();
        let now = Instant::now();
        let due: Vec<usize> = {
            let mut s = shared.lock();
            if s.stop {
                return;
            }
            let (due, later): (Vec<_>, Vec<_>) = s.polls.drain(..).partition(|(_, t)| *t <= now);
            s.polls = later;
            due.into_iter().map(|(cpu, _)| cpu).collect()
        };
        for cpu in due {
            if chip.interrupt_waiting(cpu) {
                chip.kick(cpu);
            }
        }
        let mut sleep = next.map_or(IDLE_SLEEP, |d| chip.clock().until(d).min(IDLE_SLEEP));
        drop(chip);
        let mut s = shared.lock();
        if let Some(first_poll) = s.polls.iter().map(|(_, t)| *t).min() {
            sleep = sleep.min(first_poll.saturating_duration_since(Instant::now()));
        }
        if !s.rearm && !s.stop && !sleep.is_zero() {
            s = shared
                .changed
                .wait_timeout(s, sleep)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s.rearm = false;
    }
}
