//! The checker: resolves names, infers and checks types, and compiles the syntax tree into
//! the typed IR ([`super::ir`]).
//!
//! Variables are declared by assignment, as in D. Because a program's clauses may use a
//! variable before (in the text) the clause that assigns it -- a `return` clause reading
//! `self->ts` set in a later `entry` clause -- declaration runs first, over every
//! assignment of the whole program, repeated until no new variable can be typed (a variable
//! whose value depends on another is typed once that one is). The checking pass then lowers
//! every clause in order and reports the first error.

mod actions;
mod calls;
mod decls;
pub(crate) mod expr;
mod linux;
pub(crate) mod members;
mod stmt;

use super::ast;
use super::diag::{ErrorKind, LangError};
use super::ir::{Clause, Program, ProgramOption};
use super::kernel::Target;
use super::probedesc::ProbeDesc;
use super::source::Source;

pub(crate) use decls::Decls;

/// The checker's state: the declarations found so far, what the program is compiled
/// against, and the probe descriptions of the clause being checked (for `args[N]`).
pub(crate) struct Checker<'a> {
    pub(crate) decls: Decls,
    pub(crate) target: Target<'a>,
    pub(crate) clause_descs: Vec<ProbeDesc>,
    /// Set when the clause being checked uses a `self->` variable.
    pub(crate) uses_self: std::cell::Cell<bool>,
}

/// Checks the parsed `files` (file `i` parsed from `sources[i]`) against `target` and builds
/// the program.
pub(crate) fn check(
    files: Vec<ast::File>,
    sources: Vec<Source>,
    target: Target<'_>,
) -> Result<Program, LangError> {
    let mut checker = Checker {
        decls: Decls::default(),
        target,
        clause_descs: Vec::new(),
        uses_self: std::cell::Cell::new(false),
    };
    let clauses: Vec<&ast::Clause> = files.iter().flat_map(|f| f.clauses.iter()).collect();
    checker.declare_all(&clauses);
    let mut out = Vec::with_capacity(clauses.len());
    for clause in &clauses {
        out.push(checker.clause(clause)?);
    }
    // On a Linux kernel `self->` variables belong to the current task, as in DTrace.
    let self_key = match (target.kernel, clauses.first()) {
        (Ok(_), Some(first)) if !checker.decls.self_vars.is_empty() => {
            Some(checker.curthread("self->", first.span)?)
        }
        _ => None,
    };
    let options = files
        .iter()
        .flat_map(|f| f.pragmas.iter())
        .map(|(name, value, span)| ProgramOption {
            name: name.clone(),
            value: value.clone(),
            span: *span,
        })
        .collect();
    let decls = checker.decls;
    Ok(Program {
        clauses: out,
        aggregations: decls.aggs,
        globals: decls.globals,
        arrays: decls.arrays,
        self_vars: decls.self_vars,
        this_vars: decls.this_vars,
        self_key,
        options,
        sources,
    })
}

impl Checker<'_> {
    /// Declares every variable and aggregation the program assigns (see the module docs).
    fn declare_all(&mut self, clauses: &[&ast::Clause]) {
        loop {
            let before = self.decls.count();
            for clause in clauses {
                // A clause whose descriptions do not parse is reported by the checking pass.
                self.clause_descs = parse_descs(clause).unwrap_or_default();
                for stmt in clause.body.iter().flatten() {
                    self.declare(stmt);
                }
            }
            if self.decls.count() == before {
                return;
            }
        }
    }

    fn clause(&mut self, clause: &ast::Clause) -> Result<Clause, LangError> {
        let descs = parse_descs(clause)?;
        self.clause_descs = descs.clone();
        self.uses_self.set(false);
        let predicate = match &clause.predicate {
            Some(p) => {
                let e = self.expr(p)?;
                if !e.ty.is_int() {
                    return Err(super::diag::type_error(
                        p.span,
                        "the predicate must be an integer (compare strings with `==` or `!=`), found a string",
                    ));
                }
                Some(e)
            }
            None => None,
        };
        let mut actions = Vec::new();
        if let Some(body) = &clause.body {
            for stmt in body {
                actions.push(self.stmt(stmt)?);
            }
        }
        Ok(Clause {
            descs,
            predicate,
            default_action: clause.body.as_ref().is_none_or(Vec::is_empty),
            actions,
            span: clause.span,
            uses_self: self.uses_self.get(),
        })
    }
}

/// A clause's probe descriptions, parsed.
fn parse_descs(clause: &ast::Clause) -> Result<Vec<ProbeDesc>, LangError> {
    let mut descs = Vec::with_capacity(clause.descs.len());
    for (text, span) in &clause.descs {
        let mut desc = ProbeDesc::parse(text)
            .map_err(|e| LangError::new(ErrorKind::ProbeDescription(e), *span))?;
        desc.span = *span;
        descs.push(desc);
    }
    Ok(descs)
}
