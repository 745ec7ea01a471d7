//! Feeds arbitrary bytes to the D compiler as a program and, when it compiles, runs it
//! against fake probe firings and prints the results in text and JSON (the same entry point
//! as the proptest suite, `tracer::runtime::testing::exercise_bytes`): nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tracer::runtime::testing::exercise_bytes(data);
});
