//! Trap exits against real KVM, with tiny real-mode guests: hardware breakpoints configured
//! through `ExitHandler::guest_debug` reach `ExitHandler::debug`, step-over (disable,
//! single-step, re-arm) composes with the configured breakpoints, an unhandled breakpoint is
//! fatal, and `World::sync` waits for a vCPU that is inside its trap handler.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{kvm_or_skip, vm_with, CODE};
use kvm_ioctls::Kvm;
use vcpu::{
    DebugConfig, DebugEvent, ExitHandler, Fatal, FatalReport, GuestDebug, HltAction, VcpuHandle,
    World,
};

const BOUND: Duration = Duration::from_secs(2);
/// `1: nop; out %al,$0x10; jmp 1b`: the breakpoint goes on the `nop`.
const NOP_OUT_LOOP: [u8; 5] = [0x90, 0xe6, 0x10, 0xeb, 0xfb];
/// `1: hlt; jmp 1b`
const HLT_LOOP: [u8; 3] = [0xf4, 0xeb, 0xfd];

/// What the breakpoint handler does with a hit on the `nop`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnHit {
    /// Emulate the `nop` (RIP + 1) and resume: one exit per hit.
    Emulate,
    /// Take DR0 out, single-step the `nop` on the CPU, put DR0 back in `step_done`.
    StepOver,
    /// Use the trait's default `debug` (the exit is unexpected).
    Default,
}

struct Handler {
    on_hit: OnHit,
    debug: GuestDebug,
    outs: AtomicU64,
    hits: AtomicU64,
    steps: AtomicU64,
    events: Mutex<Vec<DebugEvent>>,
    fatal: Mutex<Option<FatalReport>>,
    /// For the `hlt` handler: set on entry, and the first call sleeps this long.
    in_hlt: AtomicBool,
    slow_hlt: Duration,
}

impl Handler {
    fn new(on_hit: OnHit) -> Arc<Self> {
        let debug = GuestDebug::new();
        debug.set(breakpoint_on_nop());
        Arc::new(Handler {
            on_hit,
            debug,
            outs: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            events: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
            in_hlt: AtomicBool::new(false),
            slow_hlt: Duration::ZERO,
        })
    }
}

impl Handler {
    fn assert_no_fatal(&self) {
        let fatal = self.fatal.lock().unwrap();
        assert!(fatal.is_none(), "{fatal:?}");
    }
}

fn breakpoint_on_nop() -> DebugConfig {
    DebugConfig {
        sw_breakpoints: false,
        hw_breakpoints: [Some(CODE), None, None, None],
    }
}

impl ExitHandler for Handler {
    fn io_in(&self, _: usize, _: u16, data: &mut [u8]) -> Result<(), String> {
        data.fill(0);
        Ok(())
    }
    fn io_out(&self, _: usize, _: u16, _: &[u8]) -> Result<(), String> {
        self.outs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn mmio_read(&self, _: usize, _: u64, _: &mut [u8]) -> Result<(), String> {
        Err("no mmio here".into())
    }
    fn mmio_write(&self, _: usize, _: u64, _: &[u8]) -> Result<(), String> {
        Err("no mmio here".into())
    }
    fn fatal(&self, report: FatalReport) {
        *self.fatal.lock().unwrap() = Some(report);
    }
    fn guest_debug(&self, _: usize) -> Option<&GuestDebug> {
        Some(&self.debug)
    }
    fn debug(
        &self,
        _: usize,
        regs: &mut kvm_bindings::kvm_regs,
        event: DebugEvent,
    ) -> Result<HltAction, String> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let mut events = self.events.lock().unwrap();
        if events.len() < 8 {
            events.push(event);
        }
        if regs.rip != CODE {
            return Err(format!("breakpoint exit with rip {:#x}", regs.rip));
        }
        match self.on_hit {
            OnHit::Emulate => {
                regs.rip += 1;
                Ok(HltAction::Resume)
            }
            OnHit::StepOver => {
                self.debug.update(|c| c.hw_breakpoints[0] = None);
                Ok(HltAction::SingleStep)
            }
            OnHit::Default => Ok(HltAction::Unexpected),
        }
    }
    fn step_done(&self, _: usize) -> Result<(), String> {
        self.steps.fetch_add(1, Ordering::SeqCst);
        self.debug.set(breakpoint_on_nop());
        Ok(())
    }
    fn hlt(&self, _: usize, _: &mut kvm_bindings::kvm_regs) -> Result<HltAction, String> {
        if !self.in_hlt.swap(true, Ordering::SeqCst) {
            std::thread::sleep(self.slow_hlt);
        }
        Ok(HltAction::Resume)
    }
}

/// Runs until `handler` saw `outs` port writes (or a fatal exit), then pauses and joins.
fn run_until_outs(kvm: &Kvm, handler: &Arc<Handler>, outs: u64) {
    let (_vm, _mem, fd) = vm_with(kvm, &NOP_OUT_LOOP);
    let handle = VcpuHandle::spawn(0, fd, handler.clone(), true).unwrap();
    handle.resume();
    let start = Instant::now();
    while handler.outs.load(Ordering::SeqCst) < outs && handler.fatal.lock().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no progress: {} outs, {} hits",
            handler.outs.load(Ordering::SeqCst),
            handler.hits.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = handle.pause(BOUND);
    handle.join(BOUND).unwrap();
}

#[test]
fn hardware_breakpoint_hits_reach_the_handler_and_resume() {
    let Some(kvm) = kvm_or_skip("hardware_breakpoint_hits_reach_the_handler_and_resume") else {
        return;
    };
    let handler = Handler::new(OnHit::Emulate);
    run_until_outs(&kvm, &handler, 50);
    handler.assert_no_fatal();
    let (hits, outs) = (
        handler.hits.load(Ordering::SeqCst),
        handler.outs.load(Ordering::SeqCst),
    );
    assert!(hits.abs_diff(outs) <= 1, "{hits} hits, {outs} outs");
    let first = handler.events.lock().unwrap()[0];
    assert_eq!((first.exception, first.pc), (1, CODE), "{first}");
    assert_eq!(first.hw_breakpoint(), Some(0), "{first}");
}

#[test]
fn step_over_a_hardware_breakpoint_restores_it_after_the_step() {
    let Some(kvm) = kvm_or_skip("step_over_a_hardware_breakpoint_restores_it_after_the_step")
    else {
        return;
    };
    let handler = Handler::new(OnHit::StepOver);
    run_until_outs(&kvm, &handler, 30);
    handler.assert_no_fatal();
    let (hits, steps, outs) = (
        handler.hits.load(Ordering::SeqCst),
        handler.steps.load(Ordering::SeqCst),
        handler.outs.load(Ordering::SeqCst),
    );
    // Every hit is followed by one step, and the breakpoint fires again on the next round:
    // with single-step left on or the breakpoint left off, the counts would drift apart.
    assert!(hits.abs_diff(steps) <= 1, "{hits} hits, {steps} steps");
    assert!(hits.abs_diff(outs) <= 1, "{hits} hits, {outs} outs");
}

#[test]
fn an_unhandled_breakpoint_ends_the_vcpu_with_a_report() {
    let Some(kvm) = kvm_or_skip("an_unhandled_breakpoint_ends_the_vcpu_with_a_report") else {
        return;
    };
    let handler = Handler::new(OnHit::Default);
    run_until_outs(&kvm, &handler, 1);
    let report = handler
        .fatal
        .lock()
        .unwrap()
        .clone()
        .expect("a fatal report");
    match report.fatal {
        Fatal::Unexpected { exit } => assert!(exit.contains("KVM_EXIT_DEBUG"), "{exit}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(handler.outs.load(Ordering::SeqCst), 0);
}

#[test]
fn sync_waits_for_a_vcpu_inside_its_hlt_handler() {
    let Some(kvm) = kvm_or_skip("sync_waits_for_a_vcpu_inside_its_hlt_handler") else {
        return;
    };
    let (_vm, _mem, fd) = vm_with(&kvm, &HLT_LOOP);
    let mut handler = Handler::new(OnHit::Emulate);
    Arc::get_mut(&mut handler).unwrap().slow_hlt = Duration::from_millis(300);
    handler.debug.set(DebugConfig::default());
    let handle = VcpuHandle::spawn(0, fd, handler.clone(), true).unwrap();
    let world = World::new(std::slice::from_ref(&handle));
    handle.resume();
    let start = Instant::now();
    while !handler.in_hlt.load(Ordering::SeqCst) {
        assert!(start.elapsed() < BOUND, "the guest never halted");
        std::thread::sleep(Duration::from_micros(200));
    }
    let entered = Instant::now();
    world.sync(BOUND).unwrap();
    let waited = entered.elapsed();
    assert!(
        waited >= Duration::from_millis(150),
        "sync returned after {waited:?}, while the hlt handler still ran"
    );
    handle.join(BOUND).unwrap();
    handler.assert_no_fatal();
}
