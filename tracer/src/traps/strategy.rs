//! Trap kinds and the patch of one trap site: what is written into guest text, what it
//! displaced, and how an exit maps back to the site.
//!
//! The VMM chooses a [`TrapKind`] by probing the host (DESIGN.md): `int3` where KVM delivers
//! `KVM_EXIT_DEBUG` for it (`KVM_GUESTDBG_USE_SW_BP`), `hlt` where the APIC is emulated in
//! user space (so `HLT` exits to the VMM), or a hardware execution breakpoint (DR0-DR3, no
//! text patch at all). This module is pure: guest text is reached through [`GuestText`],
//! and the VMM does the ioctls.

use std::fmt;

/// How a trap stops the guest at a probe site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// `int3` (0xCC) with `KVM_GUESTDBG_USE_SW_BP`: the hit is `KVM_EXIT_DEBUG` with
    /// exception 3, and KVM reports the address *of the int3 itself* (VMX and SVM both
    /// intercept #BP before delivery: `debug.arch.pc` and RIP are the trap address).
    Int3,
    /// `hlt` (0xF4) with the user-space APIC: the hit is `KVM_EXIT_HLT`, reported with RIP
    /// *after* the `hlt`, i.e. trap address + 1 (measured, HOST.md).
    Hlt,
    /// A hardware execution breakpoint in debug register DR`n` (n = 0..=3): no bytes are
    /// patched; the hit is `KVM_EXIT_DEBUG` (a fault: RIP is the breakpoint address).
    HwBreakpoint(u8),
}

impl TrapKind {
    /// The bytes written over the start of the instruction at the site (empty for a
    /// hardware breakpoint).
    pub fn patch_bytes(self) -> &'static [u8] {
        match self {
            TrapKind::Int3 => &[0xCC],
            TrapKind::Hlt => &[0xF4],
            TrapKind::HwBreakpoint(_) => &[],
        }
    }

    /// How far past the trap address the RIP of the exit lies (see each variant).
    pub fn exit_rip_offset(self) -> u64 {
        match self {
            TrapKind::Hlt => 1,
            TrapKind::Int3 | TrapKind::HwBreakpoint(_) => 0,
        }
    }

    /// Maps the RIP reported by a trap exit of this kind back to the trap address.
    pub fn trap_address(self, exit_rip: u64) -> u64 {
        exit_rip.wrapping_sub(self.exit_rip_offset())
    }

    /// Is this a hardware breakpoint with a valid debug-register index (0..=3)? Software
    /// kinds are always valid.
    pub fn is_valid(self) -> bool {
        match self {
            TrapKind::HwBreakpoint(dr) => dr < 4,
            _ => true,
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::Int3 => f.write_str("int3"),
            TrapKind::Hlt => f.write_str("hlt"),
            TrapKind::HwBreakpoint(dr) => write!(f, "hw-breakpoint(dr{dr})"),
        }
    }
}

/// A guest-text access failed (the address is not mapped, or not writable by the VMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest text at {addr:#x} ({len} bytes) is not accessible")]
pub struct TextError {
    /// First address of the failed access.
    pub addr: u64,
    /// Its length.
    pub len: usize,
}

/// Guest kernel text as the VMM reaches it (guest-virtual addresses, translated and mapped
/// by the implementation). Each call must be all-or-nothing.
pub trait GuestText {
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), TextError>;
    /// Writes `data` at `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), TextError>;
}

/// Errors while arming or disarming traps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrapError {
    /// Reading or writing guest text failed.
    #[error(transparent)]
    Text(#[from] TextError),
    /// The site already holds a trap of another kind.
    #[error("{addr:#x} already holds a {existing} trap; cannot add a {requested} trap there")]
    KindConflict {
        /// The site.
        addr: u64,
        /// Kind of the trap already there.
        existing: TrapKind,
        /// Kind requested.
        requested: TrapKind,
    },
    /// The guest text already contains the trap byte here (a trap placed by someone else,
    /// or the guest's own); patching would make the original bytes unrecoverable.
    #[error(
        "{addr:#x} already contains the {kind} trap byte (the guest's own instruction or a \
         leftover trap); a trap there could not be told apart from it, so it is refused"
    )]
    AlreadyTrapByte {
        /// The site.
        addr: u64,
        /// The kind whose byte is already there.
        kind: TrapKind,
    },
    /// A hardware breakpoint named a debug register outside DR0-DR3.
    #[error("debug register DR{0} does not exist (DR0-DR3 only)")]
    BadDebugRegister(u8),
    /// The debug register is already used by another site.
    #[error("debug register DR{dr} is already used by the trap at {addr:#x}")]
    DebugRegisterBusy {
        /// The register.
        dr: u8,
        /// The site using it.
        addr: u64,
    },
    /// No trap at this address.
    #[error("no trap at {0:#x}")]
    NoTrap(u64),
}

/// What [`Trap::unpatch`] found at the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpatched {
    /// The trap bytes were there and the original bytes are back.
    Restored,
    /// The guest had overwritten the trap bytes behind the tracer's back; its bytes were left
    /// alone (restoring would undo the guest's write).
    GuestOverwrote,
    /// Nothing was patched (hardware breakpoint, or not patched).
    NothingToRestore,
}

/// One trap site: its kind, and the original bytes its patch displaced (the shadow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    /// Guest-virtual address of the trapped instruction.
    pub addr: u64,
    /// How it traps.
    pub kind: TrapKind,
    /// The guest bytes under the patch (as long as [`TrapKind::patch_bytes`]); empty until
    /// patched and for hardware breakpoints.
    pub original: Vec<u8>,
    /// Are the trap bytes in guest text now?
    patched: bool,
}

impl Trap {
    /// A trap not yet patched into the guest.
    pub fn new(addr: u64, kind: TrapKind) -> Self {
        Self {
            addr,
            kind,
            original: Vec::new(),
            patched: false,
        }
    }

    /// Are the trap bytes in guest text now?
    pub fn is_patched(&self) -> bool {
        self.patched
    }

    /// Saves the original bytes and writes the trap bytes (a no-op for a hardware breakpoint
    /// beyond validating its register, and when already patched).
    pub fn patch(&mut self, text: &mut dyn GuestText) -> Result<(), TrapError> {
        if let TrapKind::HwBreakpoint(dr) = self.kind {
            return if dr < 4 {
                Ok(())
            } else {
                Err(TrapError::BadDebugRegister(dr))
            };
        }
        if self.patched {
            return Ok(());
        }
        let patch = self.kind.patch_bytes();
        let mut original = vec![0; patch.len()];
        text.read(self.addr, &mut original)?;
        if original == patch {
            return Err(TrapError::AlreadyTrapByte {
                addr: self.addr,
                kind: self.kind,
            });
        }
        text.write(self.addr, patch)?;
        self.original = original;
        self.patched = true;
        Ok(())
    }

    /// Puts the original bytes back, unless the guest has overwritten the trap bytes in the
    /// meantime (then its bytes stay). The shadow is kept either way.
    pub fn unpatch(&mut self, text: &mut dyn GuestText) -> Result<Unpatched, TrapError> {
        if !self.patched {
            return Ok(Unpatched::NothingToRestore);
        }
        let patch = self.kind.patch_bytes();
        let mut now = vec![0; patch.len()];
        text.read(self.addr, &mut now)?;
        let outcome = if now == patch {
            text.write(self.addr, &self.original)?;
            Unpatched::Restored
        } else {
            Unpatched::GuestOverwrote
        };
        self.patched = false;
        Ok(outcome)
    }

    /// The guest range `[addr, addr + len)` the patch covers (empty for hardware breakpoints).
    pub fn patched_range(&self) -> std::ops::Range<u64> {
        self.addr
            ..self
                .addr
                .saturating_add(self.kind.patch_bytes().len() as u64)
    }
}
