//! The consumer: merges the vCPUs' records, folds their partial aggregates, carries out the
//! aggregation actions (`printa`, `clear`, `trunc`) and renders everything as DTrace's text
//! or as JSON lines.
//!
//! The VMM's consumer thread drains each vCPU's [`VcpuState`](super::VcpuState)
//! (records, partial aggregates, drop counts), and for each round: [`Consumer::fold`]s
//! every vCPU's aggregates first, then [`Consumer::consume`]s the records merged by
//! [`merge_records`], and reports drops. At the end it calls [`Consumer::finish`], which
//! prints every aggregation not printed by `printa`. Nothing here does I/O: text goes into
//! an [`Output`] the caller writes out.
//!
//! Text output follows `dtrace`: unless quiet, a `CPU     ID                    FUNCTION:NAME`
//! heading, then for each clause that recorded anything a line starting with the CPU, probe
//! ID and `function:name`, followed by its data; quiet mode prints only the data.

use std::fmt::Write;
use std::sync::Arc;

use super::agg::AggSet;
use super::agg_print::{print_entries, print_entries_with};
use super::json::{write_aggregation, write_record};
use super::record::{Record, RecordKind};
use super::state::Drops;
use super::value::Value;
use crate::lang::Program;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// DTrace's text layout.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Consumer options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerOptions {
    /// `-q`: only the program's own output (no per-firing lines).
    pub quiet: bool,
    /// Text or JSON.
    pub format: OutputFormat,
}

/// Text produced by the consumer, for the caller to write: `stdout` for the trace's output,
/// `stderr` for errors and drop reports (in JSON mode everything goes to `stdout`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The trace's output.
    pub stdout: String,
    /// Diagnostics.
    pub stderr: String,
}

/// Merges per-vCPU record batches into one stream ordered by timestamp. Each vCPU's
/// records stay in their order and the records of one clause firing stay together.
pub fn merge_records(buffers: Vec<Vec<Record>>) -> Vec<Record> {
    let mut all: Vec<Record> = buffers.into_iter().flatten().collect();
    all.sort_by_key(|r| r.timestamp_ns);
    all
}

/// The state of a trace's output: folded aggregations, which were printed, the exit
/// status.
pub struct Consumer {
    program: Arc<Program>,
    options: ConsumerOptions,
    aggs: AggSet,
    printed: Vec<bool>,
    heading_done: bool,
    stack_warned: bool,
    exit: Option<i32>,
    symbolizer: Box<dyn Fn(u64) -> Option<String> + Send>,
    /// The (cpu, firing) whose line is open (its `CPU ID FUNCTION:NAME` prefix printed).
    open: Option<(u32, u64)>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("options", &self.options)
            .field("aggs", &self.aggs)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer for `program`.
    pub fn new(program: Arc<Program>, options: ConsumerOptions) -> Self {
        let n = program.aggregations.len();
        Self {
            aggs: AggSet::new(&program),
            printed: vec![false; n],
            program,
            options,
            heading_done: false,
            stack_warned: false,
            exit: None,
            symbolizer: Box::new(|_| None),
            open: None,
        }
    }

    /// Sets how `%a` in `printa` formats resolves addresses.
    pub fn with_symbolizer(mut self, f: impl Fn(u64) -> Option<String> + Send + 'static) -> Self {
        self.symbolizer = Box::new(f);
        self
    }

    /// The folded aggregations.
    pub fn aggregations(&self) -> &AggSet {
        &self.aggs
    }

    /// The status of the first `exit()` consumed, if any.
    pub fn exit_status(&self) -> Option<i32> {
        self.exit
    }

    /// Folds a vCPU's partial aggregates in.
    pub fn fold(&mut self, partial: AggSet) {
        self.aggs.fold(partial);
    }

    /// Renders `records` (in order) into `out`, carrying out aggregation actions.
    pub fn consume(&mut self, records: &[Record], out: &mut Output) {
        for record in records {
            self.record(record, out);
        }
        self.close_line(out);
    }

    /// Reports a vCPU's drops.
    pub fn report_drops(&mut self, cpu: u32, drops: Drops, out: &mut Output) {
        for (n, what) in [
            (drops.records, "drop"),
            (drops.aggregations, "aggregation drop"),
        ] {
            if n == 0 {
                continue;
            }
            match self.options.format {
                OutputFormat::Text => {
                    let _ = writeln!(
                        out.stderr,
                        "hvtrace: {n} {what}{} on CPU {cpu}",
                        if n == 1 { "" } else { "s" }
                    );
                }
                OutputFormat::Json => {
                    let kind = if what == "drop" {
                        "records"
                    } else {
                        "aggregations"
                    };
                    let _ = writeln!(
                        out.stdout,
                        "{{\"count\":{n},\"cpu\":{cpu},\"kind\":\"{kind}\",\"type\":\"drops\"}}"
                    );
                }
            }
        }
    }

    /// Reports associative-array stores dropped for lack of room.
    pub fn report_dynamic_drops(&mut self, n: u64, out: &mut Output) {
        if n == 0 {
            return;
        }
        match self.options.format {
            OutputFormat::Text => {
                let _ = writeln!(
                    out.stderr,
                    "hvtrace: {n} dynamic variable drop{}",
                    if n == 1 { "" } else { "s" }
                );
            }
            OutputFormat::Json => {
                let _ = writeln!(
                    out.stdout,
                    "{{\"count\":{n},\"kind\":\"dynamic\",\"type\":\"drops\"}}"
                );
            }
        }
    }

    /// The end of the trace: prints every aggregation that `printa` has not printed, as
    /// DTrace does on exit (text: a blank line, then each non-empty aggregation in program
    /// order; JSON: one aggregation object each).
    pub fn finish(&mut self, out: &mut Output) {
        self.close_line(out);
        if self.options.format == OutputFormat::Text {
            out.stdout.push('\n');
        }
        for (i, decl) in self.program.aggregations.iter().enumerate() {
            if self.printed.get(i).copied().unwrap_or(false)
                || self.aggs.table(i).is_none_or(|t| t.is_empty())
            {
                continue;
            }
            match self.options.format {
                OutputFormat::Text => {
                    let entries = self.aggs.sorted(i, decl.func);
                    print_entries(decl, &entries, &mut out.stdout);
                }
                OutputFormat::Json => {
                    write_aggregation(&mut out.stdout, decl, &self.aggs, i);
                    out.stdout.push('\n');
                }
            }
        }
    }

    fn close_line(&mut self, out: &mut Output) {
        if self.open.take().is_some() && !self.options.quiet {
            out.stdout.push('\n');
        }
    }

    /// Starts the `CPU ID FUNCTION:NAME` line of a clause firing if it is not started yet.
    fn open_line(&mut self, record: &Record, out: &mut Output) {
        let key = (record.cpu, record.firing);
        if self.open == Some(key) {
            return;
        }
        self.close_line(out);
        self.open = Some(key);
        if self.options.quiet {
            return;
        }
        if !self.heading_done {
            self.heading_done = true;
            let _ = writeln!(
                out.stdout,
                "{:>3} {:>6} {:>32}",
                "CPU", "ID", "FUNCTION:NAME"
            );
        }
        let name = format!("{}:{}", record.probe.function, record.probe.name);
        let _ = write!(
            out.stdout,
            "{:>3} {:>6} {name:>32} ",
            record.cpu, record.probe.id
        );
    }

    fn aggregation_action(&mut self, record: &Record) {
        match &record.kind {
            RecordKind::Clear(agg) => self.aggs.clear(*agg),
            RecordKind::Trunc { agg, keep } => {
                if let Some(decl) = self.program.aggregations.get(*agg) {
                    self.aggs.trunc(*agg, decl.func, *keep);
                }
            }
            RecordKind::Printa { agg, .. } => {
                if let Some(p) = self.printed.get_mut(*agg) {
                    *p = true;
                }
            }
            RecordKind::Exit(status) => {
                self.exit.get_or_insert(*status);
            }
            _ => {}
        }
    }

    fn record(&mut self, record: &Record, out: &mut Output) {
        if self.options.format == OutputFormat::Json {
            if record.kind != RecordKind::Fired || !self.options.quiet {
                let decls = &self.program.aggregations;
                write_record(&mut out.stdout, record, decls, &self.aggs);
            }
            self.aggregation_action(record);
            return;
        }
        if let RecordKind::Error { .. } = record.kind {
            if let Some(msg) = record.error_message() {
                let _ = writeln!(out.stderr, "hvtrace: {msg}");
            }
            return;
        }
        self.open_line(record, out);
        let quiet = self.options.quiet;
        match &record.kind {
            RecordKind::Fired
            | RecordKind::Exit(_)
            | RecordKind::Clear(_)
            | RecordKind::Trunc { .. } => {}
            RecordKind::Error { .. } => {}
            RecordKind::Printf(text) => out.stdout.push_str(text),
            RecordKind::Trace(v) => {
                let _ = match (v, quiet) {
                    (v, true) => write!(out.stdout, "{v}"),
                    (Value::Str(s), false) => write!(out.stdout, "  {s:<33}"),
                    (v, false) => write!(out.stdout, " {:>16}", v.to_string()),
                };
            }
            RecordKind::Stack(frames) => {
                out.stdout.push('\n');
                for f in frames {
                    let text = f
                        .symbol
                        .clone()
                        .unwrap_or_else(|| format!("{:#x}", f.address));
                    let _ = writeln!(out.stdout, "{:14}{text}", "");
                }
            }
            RecordKind::StackUnavailable => {
                if !self.stack_warned {
                    self.stack_warned = true;
                    out.stderr.push_str(
                        "hvtrace: stack(): no unwinder for this image (it has no frame pointers)\n",
                    );
                }
            }
            RecordKind::Printa { agg, format } => {
                if let Some(decl) = self.program.aggregations.get(*agg) {
                    let entries = self.aggs.sorted(*agg, decl.func);
                    match format {
                        None => {
                            out.stdout.push('\n');
                            print_entries(decl, &entries, &mut out.stdout);
                        }
                        Some(f) => print_entries_with(
                            decl,
                            &entries,
                            f,
                            &*self.symbolizer,
                            &mut out.stdout,
                        ),
                    }
                }
            }
        }
        self.aggregation_action(record);
    }
}

#[cfg(test)]
#[path = "tests/consumer.rs"]
mod tests;
