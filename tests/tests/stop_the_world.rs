//! End-to-end: stop-the-world through KVM on running built-in guests, from threads outside the
//! VM, while the guest is busy cross-calling itself and while it is deadlocked with interrupts
//! disabled (the case where an in-guest cross call can only time out).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tests::{guest_symbol, kvm_or_skip, library_vm, wait_for_serial, MemorySerial};
use vm_memory::{Bytes, GuestAddress};
use vmm::{IrqChipMode, Outcome, Vm};

const BOUND: Duration = Duration::from_secs(2);

fn vm(guest_name: &str, cpus: usize, irqchip: IrqChipMode, cmdline: &str) -> (Vm, MemorySerial) {
    library_vm(guest_name, cpus, irqchip, cmdline, Duration::from_secs(120))
}

/// Runs xcall-lab while two threads stop and resume the world continuously; the guest must
/// still finish every variant as expected.
fn xcall_lab_survives_continuous_stops(irqchip: IrqChipMode) {
    let (vm, serial) = vm("xcall-lab", 4, irqchip, "variant=all calls=20");
    let world = vm.world();
    let done = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    let outcome = std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    let guard = world
                        .stop(BOUND)
                        .unwrap_or_else(|e| panic!("{irqchip}: stop failed: {e}"));
                    rounds.fetch_add(1, Ordering::SeqCst);
                    drop(guard);
                    // Let the guest run between stops (its deadman counts TSC time).
                    std::thread::sleep(Duration::from_micros(500));
                }
            });
        }
        let outcome = vm.run().expect("run");
        done.store(true, Ordering::SeqCst);
        outcome
    });
    let text = serial.text();
    assert!(
        matches!(outcome, Outcome::GuestExit(0)),
        "{irqchip}: {outcome:?}\n{text}"
    );
    assert!(
        text.contains("every variant as expected"),
        "{irqchip}: {text}"
    );
    let rounds = rounds.load(Ordering::SeqCst);
    assert!(
        rounds >= 100,
        "{irqchip}: only {rounds} stops during the run"
    );
    eprintln!("{irqchip}: {rounds} stop/resume rounds while xcall-lab ran");
}

#[test]
fn xcall_lab_completes_under_continuous_stop_the_world_emulated() {
    if !kvm_or_skip("xcall_lab_completes_under_continuous_stop_the_world_emulated") {
        return;
    }
    xcall_lab_survives_continuous_stops(IrqChipMode::Emulated);
}

#[test]
fn xcall_lab_completes_under_continuous_stop_the_world_kvm() {
    if !kvm_or_skip("xcall_lab_completes_under_continuous_stop_the_world_kvm") {
        return;
    }
    xcall_lab_survives_continuous_stops(IrqChipMode::Kvm);
}

/// While two vCPUs are deadlocked cross-calling each other with interrupts disabled, the VMM
/// still stops and resumes every vCPU; the guest's own deadman later reports the hang.
fn stops_a_deadlocked_guest(irqchip: IrqChipMode) {
    let (vm, serial) = vm("xcall-lab", 4, irqchip, "variant=mutual deadman_ms=2000");
    let world = vm.world();
    let outcome = std::thread::scope(|s| {
        let runner = s.spawn(|| vm.run().expect("run"));
        // Wait for the guest to start the variant (its banner line), then stop it repeatedly
        // while the deadlock lasts.
        let start = Instant::now();
        while !serial.text().contains("xcall-lab: cpus=") {
            assert!(start.elapsed() < Duration::from_secs(30), "no banner");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut worst = Duration::ZERO;
        let hang = Instant::now();
        let mut rounds = 0;
        // For a second of the two-second deadlock, and at least 20 stops however slow a busy
        // host makes each (every one is bounded by BOUND; how fast they are is the benchmark's).
        while hang.elapsed() < Duration::from_millis(1000) || rounds < 20 {
            let t = Instant::now();
            let guard = world
                .stop(BOUND)
                .unwrap_or_else(|e| panic!("{irqchip}: stop during the deadlock failed: {e}"));
            worst = worst.max(t.elapsed());
            rounds += 1;
            drop(guard);
            std::thread::sleep(Duration::from_micros(200));
        }
        eprintln!("{irqchip}: {rounds} stops of a deadlocked guest, slowest {worst:?}");
        runner.join().expect("runner thread")
    });
    let text = serial.text();
    assert!(
        matches!(outcome, Outcome::GuestExit(0)),
        "{irqchip}: {outcome:?}\n{text}"
    );
    assert!(
        text.contains("mutual: HANG detected by deadman"),
        "{irqchip}: {text}"
    );
}

#[test]
fn a_guest_deadlocked_with_interrupts_disabled_is_still_stopped_emulated() {
    if !kvm_or_skip("a_guest_deadlocked_with_interrupts_disabled_is_still_stopped_emulated") {
        return;
    }
    stops_a_deadlocked_guest(IrqChipMode::Emulated);
}

#[test]
fn a_guest_deadlocked_with_interrupts_disabled_is_still_stopped_kvm() {
    if !kvm_or_skip("a_guest_deadlocked_with_interrupts_disabled_is_still_stopped_kvm") {
        return;
    }
    stops_a_deadlocked_guest(IrqChipMode::Kvm);
}

/// Rounds of the torture per (irqchip, guest state).
const TORTURE_ROUNDS: u64 = 2_500;

/// Two initiator threads stop and resume 8 vCPUs `TORTURE_ROUNDS` times in all while the
/// guest spins (counting, interrupts disabled) or sits halted; for the counting guest every
/// vCPU's counter must move again after resumes.
fn torture(irqchip: IrqChipMode, mode: &str) {
    let cpus = 8;
    let (vm, serial) = vm("spin", cpus, irqchip, &format!("cpus=all mode={mode}"));
    let world = vm.world();
    let end = vm.end_handle();
    let memory = vm.memory();
    let counters = guest_symbol("spin", "spin_counters").0;
    let counter = |cpu: u64| -> u64 {
        memory
            .read_obj(GuestAddress(counters + 8 * cpu))
            .expect("read counter")
    };
    let assert_progress = |what: &str| {
        if mode != "count" {
            return;
        }
        let before: Vec<u64> = (0..cpus as u64).map(counter).collect();
        let t = Instant::now();
        for (cpu, b) in before.iter().enumerate() {
            while counter(cpu as u64) == *b {
                assert!(
                    t.elapsed() < BOUND,
                    "{irqchip} {mode}: vcpu {cpu} stuck {what}"
                );
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    };
    let rounds = AtomicU64::new(0);
    let started = Instant::now();
    let outcome = std::thread::scope(|s| {
        let runner = s.spawn(|| vm.run().expect("run"));
        wait_for_serial(&serial, "spin: mode=", Duration::from_secs(30));
        assert_progress("before the torture");
        std::thread::scope(|inner| {
            for t in 0..2 {
                let (world, rounds, assert_progress) = (&world, &rounds, &assert_progress);
                inner.spawn(move || {
                    for round in 0..TORTURE_ROUNDS / 2 {
                        let guard = world.stop(BOUND).unwrap_or_else(|e| {
                            panic!("{irqchip} {mode}: initiator {t} round {round}: {e}")
                        });
                        rounds.fetch_add(1, Ordering::SeqCst);
                        drop(guard);
                        if t == 0 && round % 250 == 0 {
                            assert_progress("after a resume");
                        }
                    }
                });
            }
        });
        assert_progress("after the last resume");
        end.end();
        runner.join().expect("runner")
    });
    assert!(
        matches!(outcome, Outcome::Stopped),
        "{irqchip} {mode}: {outcome:?}"
    );
    eprintln!(
        "{irqchip} {mode}: {} rounds with {cpus} vCPUs in {:?}",
        rounds.load(Ordering::SeqCst),
        started.elapsed()
    );
}

#[test]
fn torture_8_vcpus_counting_and_halted_emulated() {
    if !kvm_or_skip("torture_8_vcpus_counting_and_halted_emulated") {
        return;
    }
    torture(IrqChipMode::Emulated, "count");
    torture(IrqChipMode::Emulated, "halt");
}

#[test]
fn torture_8_vcpus_counting_and_halted_kvm() {
    if !kvm_or_skip("torture_8_vcpus_counting_and_halted_kvm") {
        return;
    }
    torture(IrqChipMode::Kvm, "count");
    torture(IrqChipMode::Kvm, "halt");
}
