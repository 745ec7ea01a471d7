//! [`TrapTable`]: every trap site in the guest, shared by reference count, with the shadow of
//! the original bytes so that guest text can be read (and written) as if no trap were there.
//!
//! Several probes and several clients may want the same site (an entry probe of one client
//! and of another, or an entry probe and a return probe that land on one `ret`): the site is
//! patched by its first user and restored by its last. The VMM calls this with every vCPU
//! stopped (stop-the-world), so it needs no locking of its own.

use std::collections::BTreeMap;

use super::strategy::{GuestText, TextError, Trap, TrapError, TrapKind, Unpatched};

/// One site: the trap and how many users hold it.
#[derive(Debug, Clone)]
struct Site {
    trap: Trap,
    refs: u32,
}

/// What [`TrapTable::arm`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// The site was new: the trap was patched into the guest.
    Patched,
    /// The site was already trapped: its reference count went up (now `refs`).
    Shared {
        /// References after this one.
        refs: u32,
    },
}

/// What [`TrapTable::disarm`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disarmed {
    /// Other users remain (`refs` after this release): the trap stays.
    StillShared {
        /// References left.
        refs: u32,
    },
    /// The last user left: the trap is gone, with this outcome for the guest bytes.
    Removed(Unpatched),
}

/// Every trap site, by address.
#[derive(Debug, Clone, Default)]
pub struct TrapTable {
    sites: BTreeMap<u64, Site>,
}

impl TrapTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a reference on a trap of `kind` at `addr`, patching it into `text` if the site
    /// is new. A site holds one kind; a hardware breakpoint's register must be free.
    pub fn arm(
        &mut self,
        addr: u64,
        kind: TrapKind,
        text: &mut dyn GuestText,
    ) -> Result<Armed, TrapError> {
        if let Some(site) = self.sites.get_mut(&addr) {
            if site.trap.kind != kind {
                return Err(TrapError::KindConflict {
                    addr,
                    existing: site.trap.kind,
                    requested: kind,
                });
            }
            site.refs = site.refs.saturating_add(1);
            return Ok(Armed::Shared { refs: site.refs });
        }
        if let TrapKind::HwBreakpoint(dr) = kind {
            if dr >= 4 {
                return Err(TrapError::BadDebugRegister(dr));
            }
            if let Some(user) = self.debug_register_user(dr) {
                return Err(TrapError::DebugRegisterBusy { dr, addr: user });
            }
        }
        let mut trap = Trap::new(addr, kind);
        trap.patch(text)?;
        self.sites.insert(addr, Site { trap, refs: 1 });
        Ok(Armed::Patched)
    }

    /// Drops a reference on the trap at `addr`; the last one restores the original bytes
    /// and removes the site.
    pub fn disarm(&mut self, addr: u64, text: &mut dyn GuestText) -> Result<Disarmed, TrapError> {
        let site = self.sites.get_mut(&addr).ok_or(TrapError::NoTrap(addr))?;
        if site.refs > 1 {
            site.refs -= 1;
            return Ok(Disarmed::StillShared { refs: site.refs });
        }
        let outcome = site.trap.unpatch(text)?;
        self.sites.remove(&addr);
        Ok(Disarmed::Removed(outcome))
    }

    /// Removes every trap regardless of references (VMM shutdown, or giving the guest its
    /// text back). Returns the addresses that could not be restored (text errors); those stay
    /// in the table.
    pub fn disarm_all(&mut self, text: &mut dyn GuestText) -> Vec<(u64, TrapError)> {
        let mut failed = Vec::new();
        let addrs: Vec<u64> = self.sites.keys().copied().collect();
        for addr in addrs {
            if let Some(site) = self.sites.get_mut(&addr) {
                match site.trap.unpatch(text) {
                    Ok(_) => {
                        self.sites.remove(&addr);
                    }
                    Err(e) => failed.push((addr, e)),
                }
            }
        }
        failed
    }

    /// Takes every trap out of guest text (original bytes back) but keeps the sites and their
    /// references, so that [`TrapTable::repatch`] can put them back: the guest patches its own
    /// text in between. Returns the sites whose text could not be restored.
    pub fn lift_all(&mut self, text: &mut dyn GuestText) -> Vec<(u64, TrapError)> {
        let mut failed = Vec::new();
        for site in self.sites.values_mut() {
            if let Err(e) = site.trap.unpatch(text) {
                failed.push((site.trap.addr, e));
            }
        }
        failed
    }

    /// Patches the (lifted) trap at `addr` again, taking the bytes now in guest text as its
    /// new original bytes. A no-op for a site that is patched already.
    pub fn repatch(&mut self, addr: u64, text: &mut dyn GuestText) -> Result<(), TrapError> {
        let site = self.sites.get_mut(&addr).ok_or(TrapError::NoTrap(addr))?;
        site.trap.patch(text)
    }

    /// Addresses of every site, ascending.
    pub fn addresses(&self) -> Vec<u64> {
        self.sites.keys().copied().collect()
    }

    /// The trap at `addr`, if any.
    pub fn get(&self, addr: u64) -> Option<&Trap> {
        self.sites.get(&addr).map(|s| &s.trap)
    }

    /// The trap a trap exit of `kind` at `exit_rip` reports, if it is one of ours (see
    /// [`TrapKind::trap_address`]).
    pub fn hit(&self, kind: TrapKind, exit_rip: u64) -> Option<&Trap> {
        self.get(kind.trap_address(exit_rip))
            .filter(|t| std::mem::discriminant(&t.kind) == std::mem::discriminant(&kind))
    }

    /// References held on the site at `addr` (0 if none).
    pub fn refs(&self, addr: u64) -> u32 {
        self.sites.get(&addr).map_or(0, |s| s.refs)
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// No sites at all?
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Every trap, in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Trap> + '_ {
        self.sites.values().map(|s| &s.trap)
    }

    /// The site using debug register `dr`, if any.
    pub fn debug_register_user(&self, dr: u8) -> Option<u64> {
        self.iter()
            .find(|t| t.kind == TrapKind::HwBreakpoint(dr))
            .map(|t| t.addr)
    }

    /// The lowest free debug register (DR0-DR3), if any.
    pub fn free_debug_register(&self) -> Option<u8> {
        (0..4).find(|&dr| self.debug_register_user(dr).is_none())
    }

    /// Patched traps whose patch overlaps `[addr, addr + len)`.
    fn overlapping(&self, addr: u64, len: usize) -> impl Iterator<Item = &Trap> + '_ {
        let end = addr.saturating_add(len as u64);
        // Patches are at most a few bytes: start the scan a little below `addr`.
        let from = addr.saturating_sub(16);
        self.sites
            .range(from..end)
            .map(|(_, s)| &s.trap)
            .filter(move |t| {
                let r = t.patched_range();
                t.is_patched() && r.start < end && addr < r.end
            })
    }

    /// Replaces, in `buf` (guest text read at `addr`), the bytes of every patched trap by the
    /// original bytes: the text as it would be with no trap.
    pub fn overlay_shadow(&self, addr: u64, buf: &mut [u8]) {
        for trap in self.overlapping(addr, buf.len()) {
            for (i, &b) in trap.original.iter().enumerate() {
                let at = trap.addr.wrapping_add(i as u64);
                if let Some(off) = at.checked_sub(addr) {
                    if let Some(slot) = usize::try_from(off).ok().and_then(|o| buf.get_mut(o)) {
                        *slot = b;
                    }
                }
            }
        }
    }

    /// Reads guest text at `addr` as if no trap were there (what the guest must see when it
    /// reads its own text, and what decoding must use).
    pub fn shadow_read(
        &self,
        text: &dyn GuestText,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), TextError> {
        text.read(addr, buf)?;
        self.overlay_shadow(addr, buf);
        Ok(())
    }

    /// Performs a guest write to its own text (seen by the VMM, e.g. through a read-only
    /// mapping of probed pages) while keeping the traps: bytes that fall under a patched
    /// trap go into its shadow instead of guest memory, all others are written. After this,
    /// [`TrapTable::shadow_read`] returns exactly what the guest wrote.
    ///
    /// The new bytes may no longer start an instruction at a trap site; the VMM decides
    /// whether to keep such a probe (re-decoding) or to remove it.
    pub fn shadow_write(
        &mut self,
        text: &mut dyn GuestText,
        addr: u64,
        data: &[u8],
    ) -> Result<(), TextError> {
        let end = addr.saturating_add(data.len() as u64);
        // Write the runs of `data` between patched ranges, then update the shadows.
        let mut ranges: Vec<std::ops::Range<u64>> = self
            .overlapping(addr, data.len())
            .map(|t| t.patched_range())
            .collect();
        ranges.sort_by_key(|r| r.start);
        let mut cursor = addr;
        for r in ranges.iter().chain(std::iter::once(&(end..end))) {
            let run_end = r.start.clamp(cursor, end);
            if run_end > cursor {
                let from = (cursor - addr) as usize;
                let to = (run_end - addr) as usize;
                text.write(cursor, &data[from..to])?;
            }
            cursor = cursor.max(r.end.min(end));
        }
        let from = addr.saturating_sub(16);
        for site in self.sites.range_mut(from..end).map(|(_, s)| s) {
            if !site.trap.is_patched() {
                continue;
            }
            let start = site.trap.addr;
            for (i, slot) in site.trap.original.iter_mut().enumerate() {
                let at = start.wrapping_add(i as u64);
                if at >= addr && at < end {
                    *slot = data[(at - addr) as usize];
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
