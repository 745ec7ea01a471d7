//! Drives 1-4 local APICs and the IOAPIC with the operation sequence decoded from the input
//! (the same interpreter as the proptest suite, `apic::testing`): nothing may panic and the
//! architectural invariants must hold after every operation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = apic::testing::run_bytes(data) {
        panic!("{violation}");
    }
});
