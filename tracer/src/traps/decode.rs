//! Where traps may go in a function: instruction boundaries and return sites.
//!
//! [`decode_function`] decodes a function linearly from its first byte to the end of its size
//! (64-bit mode, iced-x86). Linear decoding is exact for code without embedded data, which is
//! what compilers and the built-in guests emit; a function that contains data, or 16/32-bit
//! code (the built-in guests' real-mode AP trampoline), either fails to decode with a clear
//! error or decodes to boundaries that the CPU never uses, so such functions should not be
//! probed. Decode the *original* bytes: from the image, or from guest memory through
//! [`TrapTable::shadow_read`](super::TrapTable::shadow_read) so that traps already placed do
//! not show.
//!
//! Return sites are every `ret` / `ret imm16` and every `jmp` (direct, rel8 or rel32) to a
//! return thunk (see [`SymbolSource::return_thunks`](crate::symbols::SymbolSource::return_thunks)),
//! as well as conditional jumps to a return thunk (Linux emits `jcc __x86_return_thunk`): a
//! probe there must fire only when the branch is taken, see [`ReturnSite::fires`]. Tail calls
//! (`jmp other_function`) and far returns are not return sites.

use std::fmt;

use iced_x86::{Code, ConditionCode, Decoder, DecoderError, DecoderOptions, FlowControl};

use crate::symbols::Function;

/// The longest x86 instruction, in bytes.
pub const MAX_INSN_LEN: usize = 15;

/// How a function returns at a [`ReturnSite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnKind {
    /// `ret` (C3).
    Ret,
    /// `ret imm16` (C2 iw): returns and releases `imm16` bytes of arguments.
    RetImm(u16),
    /// An unconditional `jmp` to a return thunk.
    ThunkJump,
    /// A conditional jump to a return thunk: returns only when `condition` holds.
    ConditionalThunkJump(ConditionCode),
}

/// An instruction where the function returns; a return probe traps here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnSite {
    /// Guest-virtual address of the returning instruction.
    pub address: u64,
    /// Which kind of return it is.
    pub kind: ReturnKind,
}

impl ReturnSite {
    /// Does executing this instruction with `rflags` return from the function? Always true
    /// except for a conditional thunk jump whose condition is false.
    pub fn fires(&self, rflags: u64) -> bool {
        match self.kind {
            ReturnKind::ConditionalThunkJump(cc) => condition_holds(cc, rflags),
            _ => true,
        }
    }
}

/// Evaluates an x86 condition code against RFLAGS (`ConditionCode::None` holds always).
pub fn condition_holds(cc: ConditionCode, rflags: u64) -> bool {
    let flag = |bit: u32| rflags & (1 << bit) != 0;
    let (cf, pf, zf, sf, of) = (flag(0), flag(2), flag(6), flag(7), flag(11));
    match cc {
        ConditionCode::None => true,
        ConditionCode::o => of,
        ConditionCode::no => !of,
        ConditionCode::b => cf,
        ConditionCode::ae => !cf,
        ConditionCode::e => zf,
        ConditionCode::ne => !zf,
        ConditionCode::be => cf || zf,
        ConditionCode::a => !cf && !zf,
        ConditionCode::s => sf,
        ConditionCode::ns => !sf,
        ConditionCode::p => pf,
        ConditionCode::np => !pf,
        ConditionCode::l => sf != of,
        ConditionCode::ge => sf == of,
        ConditionCode::le => zf || sf != of,
        ConditionCode::g => !zf && sf == of,
    }
}

/// Why a function could not be decoded to its end.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes were supplied than the function's size.
    #[error("{function}: only {have} of its {size} bytes are available to decode")]
    Truncated {
        /// The function's name.
        function: String,
        /// Bytes supplied.
        have: usize,
        /// The function's size.
        size: u64,
    },
    /// The function's range runs past the top of the address space (a bogus symbol).
    #[error(
        "{function}: its range ({address:#x}, size {size:#x}) wraps past the top of the \
         address space"
    )]
    WrapsAround {
        /// The function's name.
        function: String,
        /// Its start.
        address: u64,
        /// Its size.
        size: u64,
    },
    /// The bytes at `offset` are not a valid 64-bit instruction; decoding stopped there.
    #[error(
        "{function}+{offset:#x}: cannot decode the instruction there (bytes {}); \
         decoding stopped, so no trap can be placed at or after it",
        HexBytes(bytes)
    )]
    Undecodable {
        /// The function's name.
        function: String,
        /// Offset of the undecodable bytes from the function's start.
        offset: u64,
        /// Up to 15 bytes from `offset`.
        bytes: Vec<u8>,
    },
    /// The last instruction starts inside the function but would end past its size.
    #[error(
        "{function}+{offset:#x}: the instruction there runs past the function's end \
         (size {size:#x}); its size or its code is not what the symbol table says"
    )]
    PastEnd {
        /// The function's name.
        function: String,
        /// Offset of the overlong instruction.
        offset: u64,
        /// The function's size.
        size: u64,
    },
}

/// Why a trap may not go at an address.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    /// The address is inside the function but not the start of an instruction.
    #[error(
        "{function}+{offset:#x} is not an instruction boundary (nearest boundaries: {}, {}); \
         traps go only where an instruction starts",
        Nearest(function, *before),
        Nearest(function, *after)
    )]
    NotABoundary {
        /// The function's name.
        function: String,
        /// The refused offset.
        offset: u64,
        /// Offset of the closest instruction start below, if any.
        before: Option<u64>,
        /// Offset of the closest instruction start above, if any.
        after: Option<u64>,
    },
    /// The address is not inside the function at all.
    #[error("{address:#x} is outside {function} ({start:#x}, size {size:#x})")]
    OutsideFunction {
        /// The function's name.
        function: String,
        /// The refused address.
        address: u64,
        /// The function's start.
        start: u64,
        /// The function's size.
        size: u64,
    },
}

/// Formats bytes as space-separated hex.
struct HexBytes<'a>(&'a [u8]);

impl fmt::Display for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Formats an optional boundary as `function+0xoff` or `none`.
struct Nearest<'a>(&'a str, Option<u64>);

impl fmt::Display for Nearest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(off) => write!(f, "{}+{off:#x}", self.0),
            None => f.write_str("none"),
        }
    }
}

/// A function decoded to its end: its instruction boundaries and return sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFunction {
    name: String,
    start: u64,
    size: u64,
    /// Offsets of every instruction start, ascending; the first is 0.
    starts: Vec<u64>,
    return_sites: Vec<ReturnSite>,
}

/// Decodes `function` from `bytes` (its code, at least `function.size` bytes; extra bytes
/// are ignored). `return_thunks` are the addresses a jump to which is a return.
pub fn decode_function(
    function: &Function,
    bytes: &[u8],
    return_thunks: &[u64],
) -> Result<DecodedFunction, DecodeError> {
    if function.address.checked_add(function.size).is_none() {
        return Err(DecodeError::WrapsAround {
            function: function.name.clone(),
            address: function.address,
            size: function.size,
        });
    }
    let size = usize::try_from(function.size)
        .ok()
        .filter(|&s| s <= bytes.len())
        .ok_or_else(|| DecodeError::Truncated {
            function: function.name.clone(),
            have: bytes.len(),
            size: function.size,
        })?;
    let code = &bytes[..size];
    let mut decoder = Decoder::with_ip(64, code, function.address, DecoderOptions::NONE);
    let mut starts = Vec::new();
    let mut return_sites = Vec::new();
    while decoder.can_decode() {
        let offset = decoder.position();
        let insn = decoder.decode();
        if insn.is_invalid() {
            let offset = offset as u64;
            return Err(if decoder.last_error() == DecoderError::NoMoreBytes {
                DecodeError::PastEnd {
                    function: function.name.clone(),
                    offset,
                    size: function.size,
                }
            } else {
                let from = offset as usize;
                DecodeError::Undecodable {
                    function: function.name.clone(),
                    offset,
                    bytes: code[from..code.len().min(from + MAX_INSN_LEN)].to_vec(),
                }
            });
        }
        starts.push(offset as u64);
        let kind = match insn.code() {
            Code::Retnq => Some(ReturnKind::Ret),
            Code::Retnq_imm16 => Some(ReturnKind::RetImm(insn.immediate16())),
            _ if is_thunk_target(&insn, return_thunks) => match insn.flow_control() {
                FlowControl::UnconditionalBranch => Some(ReturnKind::ThunkJump),
                FlowControl::ConditionalBranch if insn.is_jcc_short_or_near() => {
                    Some(ReturnKind::ConditionalThunkJump(insn.condition_code()))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(kind) = kind {
            return_sites.push(ReturnSite {
                address: insn.ip(),
                kind,
            });
        }
    }
    Ok(DecodedFunction {
        name: function.name.clone(),
        start: function.address,
        size: function.size,
        starts,
        return_sites,
    })
}

/// Is `insn` a direct near jump (conditional or not) to one of `thunks`?
fn is_thunk_target(insn: &iced_x86::Instruction, thunks: &[u64]) -> bool {
    (insn.is_jmp_short_or_near() || insn.is_jcc_short_or_near())
        && thunks.contains(&insn.near_branch_target())
}

impl DecodedFunction {
    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The function's start address (its entry trap site).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The function's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Addresses of every instruction start, ascending.
    pub fn boundaries(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.starts.iter().map(|&o| self.start + o)
    }

    /// Number of instructions.
    pub fn instruction_count(&self) -> usize {
        self.starts.len()
    }

    /// The return sites, in address order.
    pub fn return_sites(&self) -> &[ReturnSite] {
        &self.return_sites
    }

    /// Does an instruction start at `addr`?
    pub fn is_boundary(&self, addr: u64) -> bool {
        addr.checked_sub(self.start)
            .is_some_and(|off| self.starts.binary_search(&off).is_ok())
    }

    /// The length of the instruction starting at `addr`, if one does.
    pub fn instruction_len(&self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.start)?;
        let i = self.starts.binary_search(&off).ok()?;
        let next = self.starts.get(i + 1).copied().unwrap_or(self.size);
        Some(next - off)
    }

    /// Accepts `addr` as a trap site, or says why not (naming the function, the offset and the
    /// nearest boundaries on either side).
    pub fn check_trap_site(&self, addr: u64) -> Result<(), PlacementError> {
        let off = addr
            .checked_sub(self.start)
            .filter(|&off| off < self.size)
            .ok_or_else(|| PlacementError::OutsideFunction {
                function: self.name.clone(),
                address: addr,
                start: self.start,
                size: self.size,
            })?;
        match self.starts.binary_search(&off) {
            Ok(_) => Ok(()),
            Err(i) => Err(PlacementError::NotABoundary {
                function: self.name.clone(),
                offset: off,
                before: i.checked_sub(1).and_then(|j| self.starts.get(j)).copied(),
                after: self.starts.get(i).copied(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
