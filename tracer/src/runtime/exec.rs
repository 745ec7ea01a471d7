//! Running clauses: the [`Runtime`] that evaluates a probe firing's clauses, executes their
//! actions, and turns faults into ERROR records (and ERROR-probe clauses).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::agg::AggSet;
use super::context::{MemoryError, ProbeContext, ProbeInfo};
use super::eval::{lock, Env};
use super::fault::Fault;
use super::ops;
use super::printf;
use super::record::{Record, RecordKind, StackFrame};
use super::state::{GlobalStore, Limits, VcpuState};
use super::value::Value;
use crate::lang::ir::{Action, Clause, Place, Program};

/// What one [`Runtime::fire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FireSummary {
    /// Clauses whose predicate held (or that had none).
    pub clauses_run: usize,
    /// Records appended to the vCPU's buffer.
    pub records: usize,
    /// Records dropped because the buffer was full.
    pub dropped: usize,
    /// Clauses stopped by a fault.
    pub errors: usize,
    /// The status of an `exit()` that ran, if any: the VMM should stop tracing.
    pub exit: Option<i32>,
}

/// A compiled program ready to run: the program, its global variables, and its limits.
/// Shared (`Sync`) by every vCPU thread; each thread also has its own [`VcpuState`].
#[derive(Debug)]
pub struct Runtime {
    program: Arc<Program>,
    globals: Mutex<GlobalStore>,
    limits: Limits,
    error_probe: Arc<ProbeInfo>,
    error_clauses: Vec<usize>,
    /// `self->` variables per task ([`Program::self_key`]), for a Linux kernel.
    tasks: Mutex<HashMap<u64, Vec<Value>>>,
}

/// The context an ERROR clause sees: the faulting firing's, with DTrace's ERROR arguments.
struct ErrorContext<'a> {
    inner: &'a dyn ProbeContext,
    args: [u64; 6],
}

impl ProbeContext for ErrorContext<'_> {
    fn cpu(&self) -> u32 {
        self.inner.cpu()
    }
    fn timestamp_ns(&self) -> u64 {
        self.inner.timestamp_ns()
    }
    fn walltimestamp_ns(&self) -> u64 {
        self.inner.walltimestamp_ns()
    }
    fn arg(&self, n: usize) -> u64 {
        self.args.get(n).copied().unwrap_or(0)
    }
    fn reg(&self, n: usize) -> Option<u64> {
        self.inner.reg(n)
    }
    fn caller(&self) -> u64 {
        self.inner.caller()
    }
    fn read_memory(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read_memory(gva, buf)
    }
    fn symbolize(&self, addr: u64) -> Option<String> {
        self.inner.symbolize(addr)
    }
    fn stack(&self, max: usize) -> Option<Vec<u64>> {
        self.inner.stack(max)
    }
    fn gs_base(&self) -> Option<u64> {
        self.inner.gs_base()
    }
}

/// Where in a clause a fault happened: `None` for the predicate, else the 1-based action.
type FaultAt = (Option<usize>, Fault);

impl Runtime {
    /// A runtime for `program` with `limits`. The ERROR probe is `dtrace:::ERROR` with ID 3
    /// unless [`Runtime::with_error_probe`] says otherwise.
    pub fn new(program: Arc<Program>, limits: Limits) -> Self {
        let error_probe = Arc::new(ProbeInfo::error());
        let error_clauses = program.clauses_matching(
            &error_probe.provider,
            &error_probe.module,
            &error_probe.function,
            &error_probe.name,
        );
        Self {
            globals: Mutex::new(GlobalStore::new(&program)),
            program,
            limits,
            error_probe,
            error_clauses,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the identity of the ERROR probe (its ID in the VMM's probe list).
    pub fn with_error_probe(mut self, probe: ProbeInfo) -> Self {
        self.error_clauses = self.program.clauses_matching(
            &probe.provider,
            &probe.module,
            &probe.function,
            &probe.name,
        );
        self.error_probe = Arc::new(probe);
        self
    }

    /// The program.
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Fresh state for one vCPU.
    pub fn new_vcpu(&self) -> VcpuState {
        VcpuState::new(&self.program, &self.limits)
    }

    /// Returns and resets the count of associative-array stores dropped for lack of room.
    pub fn take_dynamic_drops(&self) -> u64 {
        std::mem::take(&mut lock(&self.globals).dynamic_drops)
    }

    /// The current value of global scalar `name`, if the program has one (for tests and
    /// for the VMM's diagnostics).
    pub fn global(&self, name: &str) -> Option<Value> {
        let i = self.program.globals.iter().position(|g| g.name == name)?;
        lock(&self.globals).scalars.get(i).cloned()
    }

    /// Evaluates the clauses `clauses` (indices into the program, normally
    /// [`Program::clauses_matching`] for this probe, in order) for one firing of `probe` on
    /// the vCPU whose state is `vcpu`. `this->` variables are shared by the clauses of the
    /// firing. A fault stops its clause, discards that clause's records, appends an
    /// [`RecordKind::Error`] record and runs the program's ERROR clauses.
    pub fn fire(
        &self,
        vcpu: &mut VcpuState,
        probe: &Arc<ProbeInfo>,
        clauses: &[usize],
        ctx: &dyn ProbeContext,
    ) -> FireSummary {
        let mut summary = FireSummary::default();
        self.fire_inner(vcpu, probe, clauses, ctx, false, &mut summary);
        summary
    }

    fn fire_inner(
        &self,
        vcpu: &mut VcpuState,
        probe: &Arc<ProbeInfo>,
        clauses: &[usize],
        ctx: &dyn ProbeContext,
        in_error: bool,
        summary: &mut FireSummary,
    ) {
        let timestamp = ctx.timestamp_ns();
        let cpu = ctx.cpu();
        let mut this: Vec<Value> = self
            .program
            .this_vars
            .iter()
            .map(|v| Value::zero(v.ty))
            .collect();
        for &index in clauses {
            let Some(clause) = self.program.clauses.get(index) else {
                continue;
            };
            vcpu.firing = vcpu.firing.wrapping_add(1);
            let epid = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let mut kinds = Vec::new();
            let task = match clause.uses_self {
                true => self.task_vars(ctx, probe, timestamp),
                false => Ok(None),
            };
            let result = match task {
                Err(f) => Err((None, f)),
                Ok(mut task) => {
                    let self_vars = match &mut task {
                        Some((_, vars)) => vars,
                        None => &mut vcpu.self_vars,
                    };
                    let mut env = Env {
                        program: &self.program,
                        ctx,
                        probe,
                        globals: &self.globals,
                        self_vars,
                        this: &mut this,
                        limits: &self.limits,
                        timestamp,
                    };
                    let result = run_clause(
                        &mut env,
                        clause,
                        &mut kinds,
                        AggOut {
                            aggs: &mut vcpu.aggs,
                            drops: &mut vcpu.agg_drops,
                            key: &mut vcpu.agg_key,
                        },
                        &mut summary.exit,
                    );
                    if let Some((key, vars)) = task {
                        self.put_task_vars(key, vars);
                    }
                    result
                }
            };
            let fault = match result {
                Ok(false) => continue,
                Ok(true) => {
                    summary.clauses_run += 1;
                    None
                }
                Err(at) => {
                    summary.clauses_run += usize::from(at.0.is_some());
                    summary.errors += 1;
                    kinds.clear();
                    kinds.push(RecordKind::Error {
                        action: at.0,
                        fault: at.1,
                    });
                    Some(at)
                }
            };
            let mut batch: Vec<Record> = kinds
                .into_iter()
                .map(|kind| Record {
                    cpu,
                    timestamp_ns: timestamp,
                    probe: Arc::clone(probe),
                    epid,
                    firing: vcpu.firing,
                    kind,
                })
                .collect();
            let n = batch.len();
            if vcpu.buffer.commit(&mut batch) {
                summary.records += n;
            } else {
                summary.dropped += n;
            }
            if let (Some((action, fault)), false) = (fault, in_error) {
                if !self.error_clauses.is_empty() {
                    let ectx = ErrorContext {
                        inner: ctx,
                        args: [
                            0,
                            u64::from(epid),
                            action.map_or(0, |a| a as u64),
                            0,
                            fault.code(),
                            fault.value(),
                        ],
                    };
                    let error_probe = Arc::clone(&self.error_probe);
                    self.fire_inner(
                        vcpu,
                        &error_probe,
                        &self.error_clauses,
                        &ectx,
                        true,
                        summary,
                    );
                }
            }
        }
    }
}

impl Runtime {
    /// The `self->` variables of the current task when they are keyed by task
    /// (`Ok(Some((task, vars)))`, taken out of the table until [`Runtime::put_task_vars`]),
    /// `Ok(None)` when they are the vCPU's, or why the task is unknown.
    fn task_vars(
        &self,
        ctx: &dyn ProbeContext,
        probe: &ProbeInfo,
        timestamp: u64,
    ) -> Result<Option<(u64, Vec<Value>)>, Fault> {
        let Some(key) = &self.program.self_key else {
            return Ok(None);
        };
        if self.program.self_vars.is_empty() {
            return Ok(None);
        }
        let env = Env {
            program: &self.program,
            ctx,
            probe,
            globals: &self.globals,
            self_vars: &mut Vec::new(),
            this: &mut Vec::new(),
            limits: &self.limits,
            timestamp,
        };
        let task = env.eval(key)?.bits();
        let vars = lock(&self.tasks).remove(&task).unwrap_or_else(|| {
            self.program
                .self_vars
                .iter()
                .map(|v| Value::zero(v.ty))
                .collect()
        });
        Ok(Some((task, vars)))
    }

    /// Puts a task's `self->` variables back: dropped when all are zero (as DTrace frees
    /// them), counted as a dynamic drop past [`Limits::dynamic_entries`] tasks.
    fn put_task_vars(&self, task: u64, vars: Vec<Value>) {
        if vars.iter().all(Value::is_zero) {
            return;
        }
        let mut tasks = lock(&self.tasks);
        if tasks.len() >= self.limits.dynamic_entries {
            drop(tasks);
            lock(&self.globals).dynamic_drops += 1;
            return;
        }
        tasks.insert(task, vars);
    }
}

/// Where a clause's aggregating actions go: the vCPU's partial aggregates, its count of
/// updates dropped for lack of room, and the reused key vector.
struct AggOut<'a> {
    aggs: &'a mut AggSet,
    drops: &'a mut u64,
    key: &'a mut Vec<Value>,
}

/// Runs one clause: `Ok(false)` if its predicate was false, `Ok(true)` if it ran, or where
/// it faulted. Records go to `out`; aggregations to `aggs`.
fn run_clause(
    env: &mut Env<'_>,
    clause: &Clause,
    out: &mut Vec<RecordKind>,
    mut aggs: AggOut<'_>,
    exit: &mut Option<i32>,
) -> Result<bool, FaultAt> {
    if let Some(p) = &clause.predicate {
        if env.eval(p).map_err(|f| (None, f))?.bits() == 0 {
            return Ok(false);
        }
    }
    if clause.default_action {
        out.push(RecordKind::Fired);
    }
    for (i, action) in clause.actions.iter().enumerate() {
        execute(env, action, out, &mut aggs, exit).map_err(|f| (Some(i + 1), f))?;
    }
    Ok(true)
}

fn execute(
    env: &mut Env<'_>,
    action: &Action,
    out: &mut Vec<RecordKind>,
    aggs: &mut AggOut<'_>,
    exit: &mut Option<i32>,
) -> Result<(), Fault> {
    match action {
        Action::Printf { format, args } => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(env.eval(a)?);
            }
            let ctx = env.ctx;
            out.push(RecordKind::Printf(printf::format(
                format,
                &values,
                None,
                &|addr| ctx.symbolize(addr),
            )));
        }
        Action::Trace(e) => out.push(RecordKind::Trace(env.eval(e)?)),
        Action::Printa { format, agg } => out.push(RecordKind::Printa {
            agg: *agg,
            format: format.clone(),
        }),
        Action::Stack { frames } => out.push(match env.ctx.stack(*frames) {
            Some(addrs) => RecordKind::Stack(
                addrs
                    .into_iter()
                    .take(*frames)
                    .map(|address| StackFrame {
                        address,
                        symbol: env.ctx.symbolize(address),
                    })
                    .collect(),
            ),
            None => RecordKind::StackUnavailable,
        }),
        Action::Exit(e) => {
            let status = env.eval(e)?.bits() as i32;
            *exit = Some(status);
            out.push(RecordKind::Exit(status));
        }
        Action::Clear(agg) => out.push(RecordKind::Clear(*agg)),
        Action::Trunc { agg, keep } => {
            let keep = match keep {
                Some(e) => Some(env.eval(e)?.bits() as i64),
                None => None,
            };
            out.push(RecordKind::Trunc { agg: *agg, keep });
        }
        Action::Store { place, op, value } => store(env, place, *op, value)?,
        Action::Aggregate { agg, keys, value } => {
            let Some(decl) = env.program.aggregations.get(*agg) else {
                return Ok(());
            };
            env.keys_into(keys, Some(&decl.key_types), aggs.key)?;
            let v = match value {
                Some(e) => env.eval(e)?.bits() as i64,
                None => 0,
            };
            let budget = env.limits.agg_bytes_per_cpu;
            if !aggs.aggs.add_from(*agg, decl.func, aggs.key, v, budget) {
                *aggs.drops += 1;
            }
        }
    }
    Ok(())
}

fn store(
    env: &mut Env<'_>,
    place: &Place,
    op: Option<(crate::lang::ir::BinaryOp, bool)>,
    value: &crate::lang::ir::Expr,
) -> Result<(), Fault> {
    let Some(ty) = place.ty(env.program) else {
        return Ok(());
    };
    // Keys are evaluated once, before the value, for compound assignments too.
    let keys = match place {
        Place::Array { array, keys } => Some(env.keys(
            keys,
            env.program.arrays.get(*array).map(|a| &a.key_types[..]),
        )?),
        _ => None,
    };
    let rhs = env.eval(value)?;
    let new = match op {
        None => rhs.coerce(ty),
        Some((op, signed)) => {
            let old = match (place, &keys) {
                (Place::Global(i), _) => lock(env.globals).scalars.get(*i).cloned(),
                (Place::SelfVar(i), _) => env.self_vars.get(*i).cloned(),
                (Place::This(i), _) => env.this.get(*i).cloned(),
                (Place::Array { array, .. }, Some(k)) => lock(env.globals)
                    .arrays
                    .get(*array)
                    .and_then(|t| t.get(k))
                    .cloned(),
                (Place::Array { .. }, None) => None,
            }
            .unwrap_or(Value::zero(ty));
            Value::from_bits(ty, ops::binary(op, signed, old.bits(), rhs.bits())?)
        }
    };
    match place {
        Place::Global(i) => {
            if let Some(slot) = lock(env.globals).scalars.get_mut(*i) {
                *slot = new;
            }
        }
        Place::SelfVar(i) => {
            if let Some(slot) = env.self_vars.get_mut(*i) {
                *slot = new;
            }
        }
        Place::This(i) => {
            if let Some(slot) = env.this.get_mut(*i) {
                *slot = new;
            }
        }
        Place::Array { array, .. } => {
            let cap = env.limits.dynamic_entries;
            lock(env.globals).array_store(*array, keys.unwrap_or_default(), new, cap);
        }
    }
    Ok(())
}
