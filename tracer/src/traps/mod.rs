//! Trap placement and handling: where traps may go ([`decode`]), what a trap is and how it is
//! patched and shared ([`strategy`], [`table`]), and how the instruction a trap displaced is
//! executed without leaving the VMM ([`mod@emulate`]). [`sites`] says where an fbt probe
//! traps (after `endbr64`, on the ftrace site), [`patch_sites`] where a Linux kernel rewrites
//! its own text so that no trap may go there.
//!
//! The flow for one probe hit, as the VMM drives it: the exit RIP maps back to the site
//! ([`TrapKind::trap_address`], [`TrapTable::hit`]); the probe's clauses run; the original
//! instruction is read from the shadow ([`TrapTable::shadow_read`]) and emulated
//! ([`emulate()`]), or, on [`Emulation::NeedsSingleStep`], the VMM stops the world, restores
//! the bytes, single-steps, re-arms and resumes.

pub mod decode;
pub mod emulate;
pub mod patch_sites;
pub mod sites;
pub mod strategy;
pub mod table;

pub use decode::{
    condition_holds, decode_function, DecodeError, DecodedFunction, PlacementError, ReturnKind,
    ReturnSite, MAX_INSN_LEN,
};
pub use emulate::{decode_one, emulate, Emulation, GuestMemory, MemoryFault, Regs, StepReason};
pub use patch_sites::{KernelPatchSites, PatchKind, PatchSite, PatchSitesError};
pub use sites::{check_sites, entry_site, fbt_sites, SiteConflict, ENDBR64};
pub use strategy::{GuestText, TextError, Trap, TrapError, TrapKind, Unpatched};
pub use table::{Armed, Disarmed, TrapTable};
