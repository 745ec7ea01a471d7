//! Every D program tracing the VM right now (the one of `run -n`, and one per attached client),
//! so that providers fired outside the trap path (`vmexit`, ...) reach each of them.

use std::sync::{Arc, RwLock};

use super::Tracing;
use crate::probes::SessionId;

/// The running trace sessions.
#[derive(Default)]
pub struct Sessions {
    list: RwLock<Vec<(SessionId, Arc<Tracing>)>>,
}

impl Sessions {
    /// Adds a running session.
    pub fn add(&self, id: SessionId, tracing: Arc<Tracing>) {
        self.list
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, tracing));
    }

    /// Removes a session (its providers stop firing); returns it.
    pub fn remove(&self, id: SessionId) -> Option<Arc<Tracing>> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        let at = list.iter().position(|(s, _)| *s == id)?;
        Some(list.remove(at).1)
    }

    /// Every running session.
    pub fn all(&self) -> Vec<(SessionId, Arc<Tracing>)> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A `kind` exit of `cpu`: fires `vmexit:::kind` in every session that uses it.
    pub fn vmexit(&self, cpu: usize, kind: &str, args: [u64; 4]) {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        for (_, t) in list.iter() {
            t.vmexit(cpu, kind, args);
        }
    }
}
