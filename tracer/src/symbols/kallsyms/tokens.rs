//! Finding `kallsyms_token_table` and `kallsyms_token_index`.
//!
//! The token table is 256 NUL-terminated strings; symbol names are stored as sequences of
//! token numbers. `scripts/kallsyms` starts from the identity table (every byte that occurs in
//! a name stands for itself) and gives the unused codes to frequent substrings, so the digits,
//! which every kernel's names use, keep their own codes: tokens 0x30..=0x39 are `"0"`..`"9"`,
//! ten consecutive one-character strings. Each occurrence of that pattern is a candidate. The
//! index (256 u16 offsets into the table) follows the table at 2-, 4- or 8-byte alignment, and
//! its entry 0x30 says where the table starts; a candidate is accepted only when all 256
//! offsets agree with the strings.

use super::region::{align_up, Region};

/// The pattern that tokens 0x30..=0x39 make.
const DIGITS: &[u8] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";

/// A verified token table: where it and its index lie, and the 256 tokens.
#[derive(Debug, Clone)]
pub(super) struct TokenTable {
    /// Offset of `kallsyms_token_table` in the region.
    pub table: usize,
    /// Offset of `kallsyms_token_index`.
    pub index: usize,
    /// The 256 tokens.
    pub tokens: Vec<Vec<u8>>,
    /// Per code: can this token start a name (a type letter, then printable characters)?
    pub starts_name: [bool; 256],
    /// Per code: is this token non-empty and printable (no spaces)?
    pub printable: [bool; 256],
}

impl TokenTable {
    /// One past the index (512 bytes after its start).
    pub fn index_end(&self) -> usize {
        self.index + 512
    }

    /// Appends the expansion of `code` to `out`.
    pub fn expand_into(&self, code: u8, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tokens[usize::from(code)]);
    }
}

/// Every verified token table in `region`, in address order.
pub(super) fn find(region: &Region<'_>) -> Vec<TokenTable> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(hit) = find_bytes(&region.bytes[from..], DIGITS) {
        let digits = from + hit;
        from = digits + 1;
        if let Some(t) = verify(region, digits) {
            if found.last().is_none_or(|l: &TokenTable| l.table != t.table) {
                found.push(t);
            }
        }
    }
    found
}

/// The table whose token 0x30 starts at `digits`, if its index confirms it.
fn verify(region: &Region<'_>, digits: usize) -> Option<TokenTable> {
    // Walk forward from token 0x30 to the end of token 255: unambiguous, even with empty
    // tokens.
    let mut end = digits;
    for _ in 0x30..256 {
        end = nul_after(region, end)? + 1;
    }
    for align in [2, 4, 8] {
        let index = align_up(end, align)?;
        if region.u16(index)? != 0 {
            continue;
        }
        let to_digits = usize::from(region.u16(index + 2 * 0x30)?);
        let Some(table) = digits.checked_sub(to_digits) else {
            continue;
        };
        if let Some(tokens) = read_tokens(region, table, index, end) {
            let mut starts_name = [false; 256];
            let mut printable = [false; 256];
            for (i, t) in tokens.iter().enumerate() {
                printable[i] = !t.is_empty() && t.iter().all(u8::is_ascii_graphic);
                starts_name[i] = t.split_first().is_some_and(|(k, rest)| {
                    type_letter(*k) && rest.iter().all(u8::is_ascii_graphic)
                });
            }
            return Some(TokenTable {
                table,
                index,
                tokens,
                starts_name,
                printable,
            });
        }
    }
    None
}

/// The 256 strings at `table`, if each starts where the index at `index` says and the last
/// ends at `end`.
fn read_tokens(
    region: &Region<'_>,
    table: usize,
    index: usize,
    end: usize,
) -> Option<Vec<Vec<u8>>> {
    let mut tokens = Vec::with_capacity(256);
    let mut at = table;
    for i in 0..256 {
        if table + usize::from(region.u16(index + 2 * i)?) != at {
            return None;
        }
        let nul = nul_after(region, at)?;
        tokens.push(region.get(at, nul - at)?.to_vec());
        at = nul + 1;
    }
    (at == end).then_some(tokens)
}

/// A symbol type character (`nm`'s letters, or `?`).
pub(super) fn type_letter(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'?'
}

/// Offset of the first NUL at or after `off`.
fn nul_after(region: &Region<'_>, off: usize) -> Option<usize> {
    let rest = region.bytes.get(off..)?;
    Some(off + rest.iter().position(|&b| b == 0)?)
}

/// First occurrence of `needle` in `hay`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
