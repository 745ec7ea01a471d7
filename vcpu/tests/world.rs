//! Stop-the-world and sync against real KVM: torture with concurrent initiators (vCPU threads
//! included), halted vCPUs, and the epoch barrier.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

mod common;

use common::kvm_or_skip;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vcpu::{ExitHandler, FatalReport, GuestWait, HltAction, RunState, VcpuHandle, World};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const BOUND: Duration = Duration::from_secs(2);
const MEM: usize = 0x10000;
/// Per-vCPU progress counters live at COUNTERS + 4 * cpu.
const COUNTERS: u64 = 0x8000;

/// How vCPU threads behave when they handle an exit.
#[derive(Default)]
struct Handler {
    world: OnceLock<World>,
    outs: Vec<AtomicU64>,
    /// vCPUs whose exits initiate a stop-the-world every `stop_every` exits.
    initiators: Vec<usize>,
    stop_every: u64,
    stops_from_vcpus: AtomicU64,
    /// Make `io_out` take this long (for sync tests).
    slow_out: Option<Duration>,
    user_space_apic: bool,
    failed: AtomicBool,
}

impl ExitHandler for Handler {
    fn io_in(&self, _: usize, _: u16, data: &mut [u8]) -> Result<(), String> {
        data.fill(0);
        Ok(())
    }
    fn io_out(&self, cpu: usize, _: u16, _: &[u8]) -> Result<(), String> {
        let n = self.outs[cpu].fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(d) = self.slow_out {
            std::thread::sleep(d);
        }
        if self.initiators.contains(&cpu) && n.is_multiple_of(self.stop_every) {
            if let Some(world) = self.world.get() {
                match world.stop(BOUND) {
                    Ok(guard) => {
                        self.stops_from_vcpus.fetch_add(1, Ordering::SeqCst);
                        drop(guard);
                    }
                    Err(e) => {
                        eprintln!("stop from vcpu {cpu} failed: {e}");
                        self.failed.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
        Ok(())
    }
    fn mmio_read(&self, _: usize, _: u64, _: &mut [u8]) -> Result<(), String> {
        Err("no mmio".into())
    }
    fn mmio_write(&self, _: usize, _: u64, _: &[u8]) -> Result<(), String> {
        Err("no mmio".into())
    }
    fn fatal(&self, report: FatalReport) {
        eprintln!("fatal: {report:?}");
        self.failed.store(true, Ordering::SeqCst);
    }
    fn user_space_apic(&self) -> bool {
        self.user_space_apic
    }
    fn hlt(&self, _: usize, _: &mut kvm_bindings::kvm_regs) -> Result<HltAction, String> {
        Ok(HltAction::Park)
    }
    fn wakeup_pending(&self, _: usize, _: GuestWait) -> bool {
        false
    }
}

/// Real-mode code for one vCPU at `0x1000 + 0x100 * cpu`.
fn code_for(kind: Kind, cpu: usize) -> Vec<u8> {
    let counter = (COUNTERS + 4 * cpu as u64) as u16;
    let [lo, hi] = counter.to_le_bytes();
    match kind {
        // 1: incl (counter); out %al,$0x10; jmp 1b
        Kind::Exits => vec![0x66, 0xff, 0x06, lo, hi, 0xe6, 0x10, 0xeb, 0xf7],
        // 1: incl (counter); jmp 1b   (never exits by itself)
        Kind::Busy => vec![0x66, 0xff, 0x06, lo, hi, 0xeb, 0xf9],
        // 1: incl (counter); hlt; jmp 1b
        Kind::Halt => vec![0x66, 0xff, 0x06, lo, hi, 0xf4, 0xeb, 0xf8],
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Exits,
    Busy,
    Halt,
}

struct Machine {
    _vm: VmFd,
    mem: GuestMemoryMmap,
    vcpus: Vec<VcpuHandle>,
    handler: Arc<Handler>,
    world: World,
}

impl Machine {
    fn counter(&self, cpu: usize) -> u32 {
        self.mem
            .read_obj(GuestAddress(COUNTERS + 4 * cpu as u64))
            .unwrap()
    }

    /// Waits (bounded) until every listed vCPU's counter moves past `before`.
    fn assert_progress(&self, cpus: &[usize], what: &str) {
        let before: Vec<u32> = cpus.iter().map(|&c| self.counter(c)).collect();
        let start = Instant::now();
        for (&cpu, &b) in cpus.iter().zip(&before) {
            while self.counter(cpu) == b {
                assert!(
                    start.elapsed() < BOUND,
                    "{what}: vcpu {cpu} made no progress (state {:?})",
                    self.vcpus[cpu].state()
                );
                std::thread::yield_now();
            }
        }
    }
}

fn machine(kvm: &Kvm, kinds: &[Kind], handler: Handler) -> Machine {
    let vm = kvm.create_vm().unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let host = mem.get_host_address(GuestAddress(0)).unwrap();
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM as u64,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: `mem` lives in the returned Machine, declared after the vCPUs and VM fd it
    // backs, and is dropped last.
    unsafe { vm.set_user_memory_region(region).unwrap() };
    let handler = Arc::new(Handler {
        outs: (0..kinds.len()).map(|_| AtomicU64::new(0)).collect(),
        ..handler
    });
    let mut fds: Vec<VcpuFd> = Vec::new();
    for (cpu, kind) in kinds.iter().enumerate() {
        let code_at = 0x1000 + 0x100 * cpu as u64;
        mem.write_slice(&code_for(*kind, cpu), GuestAddress(code_at))
            .unwrap();
        let fd = vm.create_vcpu(cpu as u64).unwrap();
        let mut sregs = fd.get_sregs().unwrap();
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        fd.set_sregs(&sregs).unwrap();
        fd.set_regs(&kvm_bindings::kvm_regs {
            rip: code_at,
            rflags: 2,
            ..Default::default()
        })
        .unwrap();
        fds.push(fd);
    }
    let vcpus: Vec<VcpuHandle> = fds
        .into_iter()
        .enumerate()
        .map(|(cpu, fd)| VcpuHandle::spawn(cpu, fd, handler.clone(), true).unwrap())
        .collect();
    let world = World::new(&vcpus);
    let _ = handler.world.set(world.clone());
    for v in &vcpus {
        v.resume();
    }
    Machine {
        _vm: vm,
        mem,
        vcpus,
        handler,
        world,
    }
}

#[test]
fn ten_thousand_stops_with_concurrent_initiators_lose_no_resume() {
    let Some(kvm) = kvm_or_skip("ten_thousand_stops_with_concurrent_initiators") else {
        return;
    };
    let kinds = [
        Kind::Exits,
        Kind::Exits,
        Kind::Busy,
        Kind::Exits,
        Kind::Busy,
        Kind::Exits,
        Kind::Busy,
        Kind::Busy,
    ];
    let rounds: u64 = std::env::var("HVTRACE_SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let m = machine(
        &kvm,
        &kinds,
        Handler {
            initiators: vec![0, 1],
            stop_every: 200,
            ..Handler::default()
        },
    );
    let all: Vec<usize> = (0..kinds.len()).collect();
    m.assert_progress(&all, "before the torture");
    let started = Instant::now();
    let per_thread = rounds / 2;
    std::thread::scope(|s| {
        for t in 0..2 {
            let m = &m;
            s.spawn(move || {
                for round in 0..per_thread {
                    let guard = m
                        .world
                        .stop(BOUND)
                        .unwrap_or_else(|e| panic!("initiator {t} round {round}: {e}"));
                    for v in &m.vcpus {
                        let (state, _) = v.state();
                        // Initiator vCPUs may still be inside their own exit handling (not
                        // in guest code): they park as soon as they return to their loop.
                        let initiator = m.handler.initiators.contains(&v.cpu());
                        assert!(
                            state == RunState::Paused || initiator,
                            "initiator {t} round {round}: vcpu {} is {state} while stopped",
                            v.cpu()
                        );
                    }
                    if round % 1000 == 0 {
                        // Nothing runs while stopped.
                        let c = m.counter(2);
                        std::thread::sleep(Duration::from_micros(200));
                        assert_eq!(c, m.counter(2), "a busy vCPU ran during a stop");
                    }
                    drop(guard);
                }
            });
        }
    });
    let elapsed = started.elapsed();
    assert!(!m.handler.failed.load(Ordering::SeqCst), "a vCPU failed");
    assert!(
        m.handler.stops_from_vcpus.load(Ordering::SeqCst) > 0,
        "no stop was initiated from a vCPU thread"
    );
    m.assert_progress(&all, "after the last resume");
    eprintln!(
        "{rounds} stops from 2 controller threads plus {} from vCPU threads in {elapsed:?}",
        m.handler.stops_from_vcpus.load(Ordering::SeqCst)
    );
    for v in m.vcpus {
        v.join(BOUND).unwrap();
    }
}

#[test]
fn nested_stops_resume_only_when_the_outermost_guard_drops() {
    let Some(kvm) = kvm_or_skip("nested_stops_resume_only_when_the_outermost_guard_drops") else {
        return;
    };
    let m = machine(&kvm, &[Kind::Busy, Kind::Exits], Handler::default());
    m.assert_progress(&[0, 1], "start");
    let outer = m.world.stop(BOUND).unwrap();
    let inner = m.world.stop(BOUND).unwrap();
    drop(inner);
    let c = m.counter(0);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(c, m.counter(0), "resumed while the outer stop is held");
    drop(outer);
    m.assert_progress(&[0, 1], "after the outer guard");
}

#[test]
fn halted_and_unstarted_vcpus_count_as_stopped() {
    let Some(kvm) = kvm_or_skip("halted_and_unstarted_vcpus_count_as_stopped") else {
        return;
    };
    // vCPU 0 halts (parked in user space, never woken); 1-3 wait for a SIPI that never comes.
    let m = machine(
        &kvm,
        &[Kind::Halt, Kind::Busy, Kind::Busy, Kind::Busy],
        Handler {
            user_space_apic: true,
            ..Handler::default()
        },
    );
    let start = Instant::now();
    while m.vcpus.iter().any(|v| v.state().0 != RunState::Halted) {
        assert!(start.elapsed() < BOUND, "vCPUs did not park");
        std::thread::yield_now();
    }
    for _ in 0..100 {
        let guard = m.world.stop(BOUND).unwrap();
        assert!(m.vcpus.iter().all(|v| v.state().0 == RunState::Paused));
        drop(guard);
    }
    let start = Instant::now();
    while m.vcpus.iter().any(|v| v.state().0 != RunState::Halted) {
        assert!(
            start.elapsed() < BOUND,
            "vCPUs did not return to their halt"
        );
        std::thread::yield_now();
    }
    assert_eq!(m.counter(0), 1, "the halted vCPU ran past its hlt");
}

#[test]
fn sync_waits_for_exit_handling_in_flight_and_only_for_it() {
    let Some(kvm) = kvm_or_skip("sync_waits_for_exit_handling_in_flight") else {
        return;
    };
    let slow = Duration::from_millis(30);
    let m = machine(
        &kvm,
        &[Kind::Exits, Kind::Busy],
        Handler {
            slow_out: Some(slow),
            ..Handler::default()
        },
    );
    // vCPU 0 spends nearly all its time inside a 30 ms exit handler.
    let start = Instant::now();
    while m.handler.outs[0].load(Ordering::SeqCst) < 2 {
        assert!(start.elapsed() < BOUND, "no exits");
        std::thread::yield_now();
    }
    let mut waited = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        m.world.sync(BOUND).unwrap();
        waited = waited.max(t.elapsed());
    }
    assert!(
        waited >= Duration::from_millis(5),
        "sync never waited for a handler in flight"
    );
    // A bound shorter than the handler fails and names the vCPU.
    let mut saw_error = false;
    for _ in 0..20 {
        // Land inside the 30 ms handler rather than in the short gap after the last sync.
        std::thread::sleep(Duration::from_millis(3));
        if let Err(e) = m.world.sync(Duration::from_micros(100)) {
            assert!(e.to_string().contains("vCPU 0"), "{e}");
            saw_error = true;
            break;
        }
    }
    assert!(saw_error, "a too-short bound never failed");
    // With the handler quick again there is nothing to wait for: vCPU 1 never exits.
    let guard = m.world.stop(BOUND).unwrap();
    let t = Instant::now();
    m.world.sync(BOUND).unwrap();
    assert!(t.elapsed() < Duration::from_millis(5));
    drop(guard);
}
