//! Finding and decoding the symbol addresses: `kallsyms_offsets` with
//! `kallsyms_relative_base`, or `kallsyms_addresses`.
//!
//! Where they lie depends on the kernel (`scripts/kallsyms`):
//! - 6.4 and newer: right after `kallsyms_token_index`: offsets (one i32 per symbol), then
//!   the relative base (u64), then `kallsyms_seqs_of_names`;
//! - 6.1 to 6.3: before `kallsyms_num_syms`: offsets, relative base, then the count.
//!
//! Each table starts on an 8-byte boundary. With `CONFIG_KALLSYMS_BASE_RELATIVE=n` (6.1 and
//! older only) there is a u64 `kallsyms_addresses` array instead, in the same places.
//!
//! Decoding an offset (`kernel/kallsyms.c`, `kallsyms_sym_address`): without absolute
//! per-CPU symbols, `base + (u32)offset`; with `CONFIG_KALLSYMS_ABSOLUTE_PERCPU` (x86-64 SMP
//! until 6.14), an offset ≥ 0 is an absolute address (the per-CPU symbols, which start at 0)
//! and a negative one means `base - 1 - offset`. Real kernels always have negative offsets in
//! that mode (their text lies above the base) and none in the other (an image is far smaller
//! than 2 GiB), which tells the two apart.
//!
//! A candidate is accepted when its addresses are sorted, as `scripts/kallsyms` sorts them.

use super::names::NamesTable;
use super::region::{align_up, Region};
use super::tokens::TokenTable;

/// How offsets become addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// `kallsyms_addresses`: absolute u64 addresses (`CONFIG_KALLSYMS_BASE_RELATIVE=n`).
    Absolute,
    /// `relative_base + (u32)offset`.
    Relative,
    /// Offsets ≥ 0 are absolute (per-CPU symbols), negative ones `relative_base - 1 - offset`
    /// (`CONFIG_KALLSYMS_ABSOLUTE_PERCPU`).
    RelativeAbsolutePercpu,
}

/// The decoded addresses and where their tables lie.
#[derive(Debug, Clone)]
pub(super) struct Addresses {
    /// One address per symbol, in table order.
    pub addresses: Vec<u64>,
    /// Offset of `kallsyms_offsets` (or `kallsyms_addresses`).
    pub table: usize,
    /// Offset of `kallsyms_relative_base` (none for [`AddressMode::Absolute`]).
    pub relative_base_at: Option<usize>,
    /// `kallsyms_relative_base` (0 for [`AddressMode::Absolute`]).
    pub relative_base: u64,
    /// How the offsets were decoded.
    pub mode: AddressMode,
    /// One past the last of these tables.
    pub end: usize,
}

/// The addresses of `names.num_syms` symbols, from whichever layout fits.
pub(super) fn find(
    region: &Region<'_>,
    tokens: &TokenTable,
    names: &NamesTable,
) -> Option<Addresses> {
    let n = names.num_syms;
    let after_index = align_up(tokens.index_end(), 8)?;
    // 6.4+: after the token index.
    if let Some(a) = relative_at(region, after_index, n) {
        return Some(a);
    }
    // 6.1-6.3: the relative base is the 8 bytes before num_syms; the offsets before that.
    if let Some(base_at) = names.num_syms_at.checked_sub(8) {
        if let Some(table) = base_at.checked_sub(align_up(4 * n, 8)?) {
            if let Some(a) = relative_at(region, table, n) {
                return Some(a);
            }
        }
    }
    // Absolute addresses, in either place.
    if let Some(a) = absolute_at(region, after_index, n) {
        return Some(a);
    }
    names
        .num_syms_at
        .checked_sub(8 * n)
        .and_then(|table| absolute_at(region, table, n))
}

/// Offsets at `table` followed by the relative base, if they decode to [`plausible`]
/// addresses.
fn relative_at(region: &Region<'_>, table: usize, n: usize) -> Option<Addresses> {
    let raw = region.get(table, 4 * n)?;
    let base_at = align_up(table + 4 * n, 8)?;
    let base = region.u64(base_at)?;
    if base == 0 {
        return None;
    }
    let offsets: Vec<i32> = raw
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let percpu = offsets.iter().any(|&o| o < 0);
    let addresses: Vec<u64> = offsets
        .iter()
        .map(|&o| decode_offset(o, base, percpu))
        .collect();
    if !plausible(&addresses) {
        return None;
    }
    Some(Addresses {
        addresses,
        table,
        relative_base_at: Some(base_at),
        relative_base: base,
        mode: if percpu {
            AddressMode::RelativeAbsolutePercpu
        } else {
            AddressMode::Relative
        },
        end: base_at + 8,
    })
}

/// The address an offset stands for (`kallsyms_sym_address`).
pub(super) fn decode_offset(offset: i32, base: u64, absolute_percpu: bool) -> u64 {
    if !absolute_percpu {
        base.wrapping_add(u64::from(offset as u32))
    } else if offset >= 0 {
        offset as u64
    } else {
        base.wrapping_sub(1).wrapping_sub(i64::from(offset) as u64)
    }
}

/// Absolute u64 addresses at `table`, if [`plausible`].
fn absolute_at(region: &Region<'_>, table: usize, n: usize) -> Option<Addresses> {
    if !table.is_multiple_of(8) {
        return None;
    }
    let raw = region.get(table, 8 * n)?;
    let addresses: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    if !plausible(&addresses) {
        return None;
    }
    Some(Addresses {
        addresses,
        table,
        relative_base_at: None,
        relative_base: 0,
        mode: AddressMode::Absolute,
        end: table + 8 * n,
    })
}

/// Sorted, and (for more than one symbol) not all at one address: zero-filled memory is
/// "sorted" too.
fn plausible(addresses: &[u64]) -> bool {
    addresses.windows(2).all(|w| w[0] <= w[1])
        && (addresses.len() < 2 || addresses.first() != addresses.last())
}
