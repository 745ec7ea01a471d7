//! End-to-end: function-boundary probes placed from outside count a guest's calls exactly,
//! across vCPUs, and leave its text as it was.

use std::time::Duration;

use tests::{kvm_or_skip, library_vm_with_probes, xcall_lab_calls};
use tracer::symbols::{ElfSymbols, SymbolSource};
use vm_memory::{Bytes, GuestAddress};
use vmm::host_traps::{trap_strategy, TrapStrategy};
use vmm::probes::ProbeError;
use vmm::{IrqChipMode, Outcome, VmmError};

const BOUND: Duration = Duration::from_secs(120);

#[test]
fn entry_and_return_counts_match_the_guests_own_counts_across_vcpus() {
    if !kvm_or_skip("entry_and_return_counts_match_the_guests_own_counts_across_vcpus") {
        return;
    }
    // Under the in-kernel APIC a `hlt` does not exit: the probes trap by the strategy the host
    // offers there (hardware breakpoints on this host, int3 where KVM delivers it).
    let cases = [
        (IrqChipMode::Emulated, 2usize),
        (IrqChipMode::Emulated, 4),
        (IrqChipMode::Kvm, 2),
    ];
    for (irqchip, cpus) in cases {
        if irqchip != IrqChipMode::Emulated && trap_strategy(irqchip).is_err() {
            eprintln!("no trap strategy under --irqchip {irqchip} on this host: case left out");
            continue;
        }
        let (vm, serial) = library_vm_with_probes(
            "xcall-lab",
            cpus,
            irqchip,
            "variant=eoi-early,eoi-late,caller-irqs-on calls=20",
            BOUND,
            &[
                "fbt::xcall:entry",
                "fbt::xcall:return",
                "fbt::xcall_func_count:entry",
            ],
        )
        .expect("arm probes");
        let probes = vm.probes().expect("probes armed");
        let memory = vm.memory();
        let outcome = vm.run().expect("run");
        let text = serial.text();
        assert!(
            matches!(outcome, Outcome::GuestExit(0)),
            "{outcome:?}\n{text}"
        );
        let calls = xcall_lab_calls(&text);
        assert_eq!(calls, 60, "{text}");
        let count = |name: &str| {
            probes
                .probes()
                .into_iter()
                .find(|p| p.probe.to_string() == name)
                .unwrap_or_else(|| panic!("{name} not armed"))
        };
        let entry = count("fbt:kernel:xcall:entry");
        assert_eq!(entry.hits(), calls, "{irqchip} {cpus} cpus: xcall entries");
        assert_eq!(
            count("fbt:kernel:xcall:return").hits(),
            calls,
            "{irqchip} {cpus} cpus: xcall returns"
        );
        // Every call runs the function once on every other CPU.
        assert_eq!(
            count("fbt:kernel:xcall_func_count:entry").hits(),
            calls * (cpus as u64 - 1),
            "{irqchip} {cpus} cpus: function runs"
        );
        // caller-irqs-on rotates the caller: hits come from every vCPU.
        assert!(
            entry.hits_per_cpu().iter().all(|&h| h > 0),
            "{irqchip} {cpus} cpus: per-cpu {:?}",
            entry.hits_per_cpu()
        );
        // The traps are gone and the text is byte for byte the image's.
        let image = guest::find("xcall-lab").unwrap().image;
        let symbols = ElfSymbols::parse(image).unwrap();
        for f in symbols.functions() {
            let want = symbols.function_bytes(image, f).unwrap();
            let mut got = vec![0u8; want.len()];
            memory
                .read_slice(&mut got, GuestAddress(f.address))
                .unwrap();
            assert_eq!(
                got, want,
                "{irqchip} {cpus} cpus: text of {} after the run",
                f.name
            );
        }
    }
}

#[test]
fn probes_are_refused_clearly_where_they_cannot_work() {
    if !kvm_or_skip("probes_are_refused_clearly_where_they_cannot_work") {
        return;
    }
    let err = |irqchip, probes: &[&str]| {
        library_vm_with_probes("xcall-lab", 2, irqchip, "", BOUND, probes)
            .err()
            .expect("refused")
    };
    // Hardware breakpoints hold four sites: more are refused, naming the way out.
    if trap_strategy(IrqChipMode::Kvm).is_ok_and(|c| c.strategy == TrapStrategy::HwBreakpoints) {
        let e = err(IrqChipMode::Kvm, &["fbt:::entry"]);
        assert!(
            matches!(e, VmmError::Probes(ProbeError::TooManySites { max: 4, .. })),
            "{e}"
        );
        assert!(e.to_string().contains("--irqchip emulated"), "{e}");
    }
    let e = err(IrqChipMode::Emulated, &["fbt::nosuch:entry"]);
    assert!(
        e.to_string()
            .contains("no probe matches 'fbt::nosuch:entry'"),
        "{e}"
    );
    let e = err(IrqChipMode::Emulated, &["dtrace:::BEGIN"]);
    assert!(e.to_string().contains("not a function-boundary"), "{e}");
}
