//! Test support: a fake [`ProbeContext`] and the parse-check-run entry point shared by the
//! proptest suite and the cargo-fuzz target (`tracer/fuzz`). Built for tests and with the
//! `testing` feature.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    merge_records, Consumer, ConsumerOptions, Limits, MemoryError, OutputFormat, ProbeContext,
    ProbeInfo, Runtime,
};
use crate::lang::{compile, Source};

/// A scripted vCPU: fixed arguments and registers, a sparse guest memory, a symbol table.
#[derive(Debug, Clone, Default)]
pub struct FakeContext {
    /// `cpu`.
    pub cpu: u32,
    /// `timestamp`.
    pub timestamp: u64,
    /// `walltimestamp`.
    pub walltimestamp: u64,
    /// `arg0`..`arg5`.
    pub args: [u64; 6],
    /// Registers by number.
    pub regs: HashMap<usize, u64>,
    /// `caller`.
    pub caller: u64,
    /// Readable guest memory: page-aligned 4 KiB pages by address.
    pub pages: HashMap<u64, Vec<u8>>,
    /// Symbols as (start, size, name).
    pub symbols: Vec<(u64, u64, String)>,
    /// What `stack()` returns.
    pub stack: Option<Vec<u64>>,
    /// The GS base (`curthread`'s per-CPU base), if the probe has one.
    pub gs_base: Option<u64>,
}

impl FakeContext {
    /// Maps `bytes` at guest address `addr` (allocating the pages it touches).
    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let a = addr.wrapping_add(i as u64);
            let page = self
                .pages
                .entry(a & !0xfff)
                .or_insert_with(|| vec![0; 4096]);
            page[(a & 0xfff) as usize] = *b;
        }
    }
}

impl ProbeContext for FakeContext {
    fn cpu(&self) -> u32 {
        self.cpu
    }
    fn timestamp_ns(&self) -> u64 {
        self.timestamp
    }
    fn walltimestamp_ns(&self) -> u64 {
        self.walltimestamp
    }
    fn arg(&self, n: usize) -> u64 {
        self.args.get(n).copied().unwrap_or(0)
    }
    fn reg(&self, n: usize) -> Option<u64> {
        self.regs.get(&n).copied()
    }
    fn caller(&self) -> u64 {
        self.caller
    }
    fn read_memory(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gva.wrapping_add(i as u64);
            let page = self
                .pages
                .get(&(a & !0xfff))
                .ok_or(MemoryError { address: a })?;
            *b = page[(a & 0xfff) as usize];
        }
        Ok(())
    }
    fn symbolize(&self, addr: u64) -> Option<String> {
        self.symbols
            .iter()
            .find(|(start, size, _)| addr >= *start && addr - start < *size)
            .map(|(start, _, name)| {
                if addr == *start {
                    name.clone()
                } else {
                    format!("{name}+{:#x}", addr - start)
                }
            })
    }
    fn stack(&self, max: usize) -> Option<Vec<u64>> {
        self.stack.clone().map(|mut s| {
            s.truncate(max);
            s
        })
    }
    fn gs_base(&self) -> Option<u64> {
        self.gs_base
    }
}

/// Parses, checks and (if it compiles) runs `text` against a few fake probe firings on two
/// vCPUs, then consumes everything in text and JSON form. Any panic is a bug; the
/// compile result is returned so callers can check diagnostics.
pub fn exercise(text: &str) -> Result<(), crate::lang::Diagnostic> {
    let program = Arc::new(compile(&[Source::new("fuzz", text)])?);
    let limits = Limits {
        records_per_cpu: 256,
        dynamic_entries: 64,
        agg_bytes_per_cpu: 16 << 10,
        strsize: 64,
    };
    let runtime = Runtime::new(Arc::clone(&program), limits);
    let probes = [
        ProbeInfo::begin(),
        ProbeInfo::new(10, "fbt", "kernel", "xcall_send", "entry"),
        ProbeInfo::new(11, "fbt", "kernel", "xcall_send", "return"),
        ProbeInfo::new(12, "tick", "", "", "tick-1s"),
        ProbeInfo::end(),
    ];
    let mut ctx = FakeContext {
        args: [0x1000, 7, u64::MAX, 0, 3, 1 << 40],
        caller: 0x2000,
        symbols: vec![(0x2000, 0x100, "xcall_send".into())],
        stack: Some(vec![0x2010, 0x2020]),
        ..FakeContext::default()
    };
    ctx.regs.insert(0, 42);
    ctx.write(0x1000, b"hello\0");
    let mut vcpus = [runtime.new_vcpu(), runtime.new_vcpu()];
    for round in 0..3u64 {
        for probe in &probes {
            let clauses = program.clauses_matching(
                &probe.provider,
                &probe.module,
                &probe.function,
                &probe.name,
            );
            let probe = Arc::new(probe.clone());
            for (cpu, vcpu) in vcpus.iter_mut().enumerate() {
                ctx.cpu = cpu as u32;
                ctx.timestamp = round * 1000 + cpu as u64;
                ctx.args[1] = round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                runtime.fire(vcpu, &probe, &clauses, &ctx);
            }
        }
    }
    for format in [OutputFormat::Text, OutputFormat::Json] {
        for quiet in [false, true] {
            let mut consumer =
                Consumer::new(Arc::clone(&program), ConsumerOptions { quiet, format });
            let mut out = super::Output::default();
            let mut snapshot = vcpus.clone();
            let mut buffers = Vec::new();
            for (cpu, v) in snapshot.iter_mut().enumerate() {
                consumer.fold(v.take_aggregations());
                buffers.push(v.take_records());
                consumer.report_drops(cpu as u32, v.take_drops(), &mut out);
            }
            consumer.consume(&merge_records(buffers), &mut out);
            consumer.report_dynamic_drops(runtime.take_dynamic_drops(), &mut out);
            consumer.finish(&mut out);
        }
    }
    Ok(())
}

/// [`exercise`] on arbitrary bytes (the fuzz target's entry point): invalid UTF-8 is
/// decoded lossily, and a compile error is rendered (which must not panic either).
pub fn exercise_bytes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(d) = exercise(&text) {
        let _ = d.to_string();
    }
}
