//! Finding and decoding `kallsyms_num_syms`, `kallsyms_names` and `kallsyms_markers`.
//!
//! Every layout since 6.1 writes `kallsyms_num_syms` (a u32) right before `kallsyms_names`
//! (at the next 8-byte boundary) and `kallsyms_markers` (one u32 per 256 symbols, the offset
//! of symbol 256·k in the names) right after them. Each name is a length, then that many
//! token codes; the length takes one byte, or two when the first has its top bit set (big
//! symbols, 6.1+: `(b0 & 0x7f) | b1 << 7`). The first decoded character is the symbol's type
//! (`T`, `t`, `D`, ...).
//!
//! Search: every 4-byte-aligned u32 that could be a symbol count is a candidate; the first
//! few names after it must decode to a type letter and printable characters (cheap, rejects
//! almost everything), then all `num_syms` lengths must chain up to a markers array that
//! agrees with every 256th offset, and the token table must follow the markers at the next
//! 8-byte boundary (6.1, 6.4+) or after `kallsyms_seqs_of_names` (3 bytes per symbol, 6.2
//! and 6.3). Markers are u32 since 6.1; 8-byte markers (older 64-bit kernels) are accepted
//! too.

use super::region::{align_up, Region};
use super::tokens::TokenTable;

/// More symbols than any kernel has: bounds the search and the allocation.
pub(super) const MAX_SYMBOLS: u32 = 1 << 23;

/// How many names the cheap filter decodes.
const PROBE_NAMES: usize = 8;

/// The verified names and markers tables.
#[derive(Debug, Clone)]
pub(super) struct NamesTable {
    /// Offset of `kallsyms_num_syms`.
    pub num_syms_at: usize,
    /// The symbol count.
    pub num_syms: usize,
    /// Offset of `kallsyms_names`.
    pub names: usize,
    /// Offset of each symbol's entry (its length byte) in the region.
    pub entries: Vec<usize>,
    /// Offset of `kallsyms_markers`.
    pub markers: usize,
    /// Bytes per marker (4, or 8 on old 64-bit kernels).
    pub marker_width: usize,
}

impl NamesTable {
    /// One past the markers.
    pub fn markers_end(&self) -> usize {
        self.markers + self.num_syms.div_ceil(256) * self.marker_width
    }
}

/// The first names table in `region` that `tokens` decodes. Every layout puts the names
/// before the token table, so the search stops there.
pub(super) fn find(region: &Region<'_>, tokens: &TokenTable) -> Option<NamesTable> {
    let mut off = 0;
    while off + 4 <= tokens.table.min(region.len()) {
        let at = off;
        off += 4;
        let Some(n) = region.u32(at) else { break };
        if n == 0 || n > MAX_SYMBOLS {
            continue;
        }
        let Some(names) = align_up(at + 4, 8) else {
            break;
        };
        if !plausible_start(region, tokens, names, n as usize) {
            continue;
        }
        if let Some(t) = verify(region, at, n as usize, names, tokens.table) {
            return Some(t);
        }
    }
    None
}

/// Do the first names at `names` decode to a type letter and printable characters? (Table
/// look-ups per code, no decoding: this runs for every candidate.)
fn plausible_start(region: &Region<'_>, tokens: &TokenTable, names: usize, n: usize) -> bool {
    let mut at = names;
    for _ in 0..n.min(PROBE_NAMES) {
        let Some((codes, next)) = entry(region, at) else {
            return false;
        };
        let Some((first, rest)) = codes.split_first() else {
            return false;
        };
        let first = usize::from(*first);
        // A one-code name must bring at least one character after its type letter.
        let named = rest.is_empty() && tokens.tokens[first].len() < 2;
        if !tokens.starts_name[first]
            || named
            || !rest.iter().all(|&c| tokens.printable[usize::from(c)])
        {
            return false;
        }
        at = next;
    }
    true
}

/// The token codes of the entry at `at` and the offset of the next entry.
pub(super) fn entry<'a>(region: &Region<'a>, at: usize) -> Option<(&'a [u8], usize)> {
    let b0 = region.u8(at)?;
    let (len, header) = if b0 & 0x80 != 0 {
        let b1 = region.u8(at + 1)?;
        (usize::from(b0 & 0x7f) | usize::from(b1) << 7, 2)
    } else {
        (usize::from(b0), 1)
    };
    if len == 0 {
        return None;
    }
    let codes = region.get(at + header, len)?;
    Some((codes, at + header + len))
}

/// The full table, if all `n` entries chain from `names` up to markers that agree, and the
/// token table at `token_table` follows them.
fn verify(
    region: &Region<'_>,
    num_syms_at: usize,
    n: usize,
    names: usize,
    token_table: usize,
) -> Option<NamesTable> {
    // First only chain the lengths (no allocation: most candidates fail here), then check
    // that the token table follows, then record every entry.
    let mut at = names;
    for _ in 0..n {
        at = entry(region, at)?.1;
    }
    for (align, width) in [(8, 4), (4, 4), (8, 8)] {
        let markers = align_up(at, align)?;
        let end = align_up(markers + n.div_ceil(256) * width, 8)?;
        let then_tokens = end == token_table || align_up(end + 3 * n, 8)? == token_table;
        if !then_tokens {
            continue;
        }
        let mut entries = Vec::with_capacity(n);
        let mut e = names;
        for _ in 0..n {
            entries.push(e);
            e = entry(region, e)?.1;
        }
        let agree = (0..n.div_ceil(256)).all(|k| {
            let want = (entries[k * 256] - names) as u64;
            let got = match width {
                4 => region.u32(markers + 4 * k).map(u64::from),
                _ => region.u64(markers + 8 * k),
            };
            got == Some(want)
        });
        if agree {
            return Some(NamesTable {
                num_syms_at,
                num_syms: n,
                names,
                entries,
                markers,
                marker_width: width,
            });
        }
    }
    None
}

/// Decodes every name: (type character, name).
pub(super) fn decode(
    region: &Region<'_>,
    tokens: &TokenTable,
    table: &NamesTable,
) -> Vec<(u8, String)> {
    let mut out = Vec::with_capacity(table.entries.len());
    let mut buf = Vec::new();
    for &at in &table.entries {
        buf.clear();
        if let Some((codes, _)) = entry(region, at) {
            for &c in codes {
                tokens.expand_into(c, &mut buf);
            }
        }
        let (kind, name) = buf.split_first().map_or((b'?', &[][..]), |(k, n)| (*k, n));
        out.push((kind, String::from_utf8_lossy(name).into_owned()));
    }
    out
}
