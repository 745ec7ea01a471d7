//! Declarations: the program's variables, associative arrays and aggregations, with their
//! types, and the name tables that resolve uses to indices.

use std::collections::HashMap;

use crate::lang::ir::{AggDecl, ArrayDecl, Type, VarDecl};

/// What a global name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GlobalRef {
    Scalar(usize),
    Array(usize),
}

/// Every declaration made so far.
#[derive(Debug, Default)]
pub(crate) struct Decls {
    pub(crate) globals: Vec<VarDecl>,
    pub(crate) arrays: Vec<ArrayDecl>,
    pub(crate) self_vars: Vec<VarDecl>,
    pub(crate) this_vars: Vec<VarDecl>,
    pub(crate) aggs: Vec<AggDecl>,
    global_names: HashMap<String, GlobalRef>,
    self_names: HashMap<String, usize>,
    this_names: HashMap<String, usize>,
    agg_names: HashMap<String, usize>,
}

impl Decls {
    /// How many declarations there are (to detect progress while declaring).
    pub(crate) fn count(&self) -> usize {
        self.global_names.len()
            + self.self_names.len()
            + self.this_names.len()
            + self.agg_names.len()
    }

    pub(crate) fn global(&self, name: &str) -> Option<GlobalRef> {
        self.global_names.get(name).copied()
    }

    pub(crate) fn self_var(&self, name: &str) -> Option<usize> {
        self.self_names.get(name).copied()
    }

    pub(crate) fn this_var(&self, name: &str) -> Option<usize> {
        self.this_names.get(name).copied()
    }

    pub(crate) fn agg(&self, name: &str) -> Option<usize> {
        self.agg_names.get(name).copied()
    }

    pub(crate) fn declare_scalar(&mut self, name: &str, ty: Type) {
        if self.global_names.contains_key(name) {
            return;
        }
        self.global_names
            .insert(name.to_string(), GlobalRef::Scalar(self.globals.len()));
        self.globals.push(VarDecl {
            name: name.to_string(),
            ty,
        });
    }

    pub(crate) fn declare_array(&mut self, name: &str, key_types: Vec<Type>, value_type: Type) {
        if self.global_names.contains_key(name) {
            return;
        }
        self.global_names
            .insert(name.to_string(), GlobalRef::Array(self.arrays.len()));
        self.arrays.push(ArrayDecl {
            name: name.to_string(),
            key_types,
            value_type,
        });
    }

    pub(crate) fn declare_self(&mut self, name: &str, ty: Type) {
        if self.self_names.contains_key(name) {
            return;
        }
        self.self_names
            .insert(name.to_string(), self.self_vars.len());
        self.self_vars.push(VarDecl {
            name: name.to_string(),
            ty,
        });
    }

    pub(crate) fn declare_this(&mut self, name: &str, ty: Type) {
        if self.this_names.contains_key(name) {
            return;
        }
        self.this_names
            .insert(name.to_string(), self.this_vars.len());
        self.this_vars.push(VarDecl {
            name: name.to_string(),
            ty,
        });
    }

    pub(crate) fn declare_agg(&mut self, decl: AggDecl) {
        if self.agg_names.contains_key(&decl.name) {
            return;
        }
        self.agg_names.insert(decl.name.clone(), self.aggs.len());
        self.aggs.push(decl);
    }
}
