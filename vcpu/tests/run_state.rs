//! The run-state machine and kick against real KVM, with tiny real-mode guests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{kvm_or_skip, vm_with, CODE};
use vcpu::{ExitHandler, ExitKind, Fatal, FatalReport, RunState, VcpuHandle};

const BOUND: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Counter {
    outs: AtomicU64,
    fatal: Mutex<Option<FatalReport>>,
}

impl ExitHandler for Counter {
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
}

/// `1: out %al,$0x10; inc %al; jmp 1b`
const OUT_LOOP: [u8; 6] = [0xe6, 0x10, 0xfe, 0xc0, 0xeb, 0xfa];
/// `1: jmp 1b` (never exits by itself)
const TIGHT_LOOP: [u8; 2] = [0xeb, 0xfe];

#[test]
fn starts_paused_then_runs_pauses_and_resumes_without_losing_a_kick() {
    let Some(kvm) = kvm_or_skip("starts_paused_then_runs_pauses_and_resumes") else {
        return;
    };
    let (_vm, _mem, fd) = vm_with(&kvm, &OUT_LOOP);
    let counter = Arc::new(Counter::default());
    let handle = VcpuHandle::spawn(0, fd, counter.clone(), true).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(handle.state().0, RunState::Paused);
    assert_eq!(counter.outs.load(Ordering::SeqCst), 0, "ran before resume");

    for round in 0..100 {
        handle.resume();
        let before = counter.outs.load(Ordering::SeqCst);
        let mut spins = 0;
        while counter.outs.load(Ordering::SeqCst) == before {
            std::thread::sleep(Duration::from_micros(100));
            spins += 1;
            assert!(spins < 20_000, "round {round}: guest made no progress");
        }
        let snap = handle
            .pause(BOUND)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // The pending `out` was completed before parking, so RIP is on an instruction start.
        assert!(
            [CODE, CODE + 2, CODE + 4].contains(&snap.rip),
            "round {round}: rip {:#x}",
            snap.rip
        );
        assert_eq!(
            snap.last_exit,
            ExitKind::Io {
                port: 0x10,
                write: true
            }
        );
        let paused_count = counter.outs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            counter.outs.load(Ordering::SeqCst),
            paused_count,
            "ran while paused"
        );
    }
    handle.join(BOUND).unwrap();
    assert!(counter.fatal.lock().unwrap().is_none());
}

#[test]
fn a_guest_that_never_exits_is_kicked_out() {
    let Some(kvm) = kvm_or_skip("a_guest_that_never_exits_is_kicked_out") else {
        return;
    };
    let (_vm, _mem, fd) = vm_with(&kvm, &TIGHT_LOOP);
    let counter = Arc::new(Counter::default());
    let handle = VcpuHandle::spawn(0, fd, counter.clone(), true).unwrap();
    for _ in 0..20 {
        handle.resume();
        std::thread::sleep(Duration::from_millis(5));
        let snap = handle.pause(BOUND).unwrap();
        assert_eq!(snap.rip, CODE);
        assert_eq!(handle.state().0, RunState::Paused);
    }
    handle.join(BOUND).unwrap();
}

#[test]
fn a_fatal_exit_is_reported_with_rip_and_ends_the_thread() {
    let Some(kvm) = kvm_or_skip("a_fatal_exit_is_reported_with_rip_and_ends_the_thread") else {
        return;
    };
    // nop; hlt -- with no irqchip, KVM_EXIT_HLT, which this layer does not expect.
    let (_vm, _mem, fd) = vm_with(&kvm, &[0x90, 0xf4]);
    let counter = Arc::new(Counter::default());
    let handle = VcpuHandle::spawn(0, fd, counter.clone(), false).unwrap();
    handle.resume();
    let mut waited = 0;
    while handle.state().0 != RunState::Exited {
        std::thread::sleep(Duration::from_millis(1));
        waited += 1;
        assert!(waited < 5_000, "vCPU did not end on hlt");
    }
    let report = counter.fatal.lock().unwrap().clone().expect("fatal report");
    assert!(
        matches!(report.fatal, Fatal::Unexpected { .. }),
        "{report:?}"
    );
    assert_eq!(report.rip, CODE + 2);
    assert_eq!(report.bitness, 16);
    assert_eq!(handle.state().1.last_exit, ExitKind::Hlt);
    handle.join(BOUND).unwrap();
}
