//! loom model of the run-state / stop-the-world protocol: the real `Shared` state machine and
//! `World::stop`, with vCPU threads reduced to their checkpoint/park loop (no KVM).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p vcpu --lib --release loom_model`.

use std::sync::Arc;
use std::time::Duration;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use crate::state::{Request, RunState, Shared, Snapshot};
use crate::world::{set_current_vcpu, World};

/// Trips around the loop per vCPU thread.
const ROUNDS: usize = 1;

/// Bound large enough that it never expires while loom explores (loom ignores wait timeouts).
const BOUND: Duration = Duration::from_secs(3600);

/// A vCPU thread reduced to the protocol: `rounds` trips around its loop, optionally stopping
/// the world from "inside an exit", then it finishes.
fn vcpu_thread(
    shared: Arc<Shared>,
    in_guest: Arc<AtomicBool>,
    world: World,
    rounds: usize,
    initiates: bool,
) {
    set_current_vcpu(&shared);
    for round in 0..rounds {
        match shared.checkpoint() {
            Request::Run => {
                // "KVM_RUN": guest code runs until an exit (or a kick) ...
                in_guest.store(true, Ordering::SeqCst);
                thread::yield_now();
                in_guest.store(false, Ordering::SeqCst);
                // ... and the exit is handled; maybe it stops the world.
                if initiates && round == 0 {
                    let guard = world.stop(BOUND).expect("stop from a vCPU thread");
                    drop(guard);
                }
            }
            Request::Pause => shared.park(Snapshot::default()),
            Request::Exit => break,
        }
    }
    shared.set_state(RunState::Exited);
}

fn initiator(world: &World, shared: &[Arc<Shared>], in_guest: &[Arc<AtomicBool>]) {
    let guard = world.stop(BOUND).expect("stop");
    for (s, g) in shared.iter().zip(in_guest) {
        assert!(
            !g.load(Ordering::SeqCst),
            "vCPU {} runs guest code while the world is stopped",
            s.cpu
        );
        assert!(
            s.lock().pauses > 0,
            "vCPU {} has no pause request while stopped",
            s.cpu
        );
    }
    drop(guard);
}

/// Explores every interleaving of `initiators` external initiator threads and two vCPU threads
/// (the first `vcpu_initiators` of them also stopping the world from an exit), with at most `preemptions` preemptions per
/// execution (loom's bound that keeps the larger models tractable).
fn model(initiators: usize, vcpu_initiators: usize, preemptions: usize) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(move || {
        let shared: Vec<Arc<Shared>> = (0..2).map(|cpu| Arc::new(Shared::new(cpu))).collect();
        let world = World::from_shared(shared.clone());
        // Release the initial pause (VcpuHandle::resume).
        for s in &shared {
            s.remove_pause();
        }
        let in_guest: Vec<Arc<AtomicBool>> =
            (0..2).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let vcpus: Vec<_> = shared
            .iter()
            .zip(&in_guest)
            .enumerate()
            .map(|(cpu, (s, g))| {
                let (s, g, w) = (Arc::clone(s), Arc::clone(g), world.clone());
                thread::spawn(move || vcpu_thread(s, g, w, ROUNDS, cpu < vcpu_initiators))
            })
            .collect();
        let others: Vec<_> = (0..initiators)
            .map(|_| {
                let (w, s, g) = (world.clone(), shared.clone(), in_guest.clone());
                thread::spawn(move || initiator(&w, &s, &g))
            })
            .collect();
        for t in others.into_iter().chain(vcpus) {
            t.join().expect("thread");
        }
        // No lost resume: every pause request was withdrawn.
        for s in &shared {
            let ctl = s.lock();
            assert_eq!(ctl.pauses, 0, "vCPU {} left paused", s.cpu);
            assert_eq!(ctl.state, RunState::Exited);
        }
    });
}

#[test]
fn loom_model_two_initiators_two_vcpus() {
    model(2, 0, 1);
}

#[test]
fn loom_model_initiator_and_vcpu_initiator() {
    model(1, 1, 3);
}

#[test]
fn loom_model_three_initiators_including_a_vcpu() {
    model(2, 1, 1);
}

#[test]
fn loom_model_two_vcpus_stopping_each_other() {
    model(0, 2, 3);
}

#[test]
fn loom_model_two_vcpus_and_an_initiator() {
    model(1, 2, 1);
}
