//! `kallsyms_seqs_of_names` (6.2+): the symbol numbers in name order, so that a name is found
//! by binary search. Each entry is 3 bytes, big-endian. It lies after the relative base since
//! 6.4, between the markers and the token table in 6.2 and 6.3 (8-byte aligned), and not at
//! all in 6.1. A candidate is accepted when it is a permutation of the symbol numbers that
//! sorts the names as the kernel compares them (bytewise, without the type character).

use super::region::{align_up, Region};

/// The name-sorted index and where it lies.
#[derive(Debug, Clone)]
pub(super) struct SeqsOfNames {
    /// Offset of the table.
    pub table: usize,
    /// Symbol numbers in name order.
    pub seqs: Vec<u32>,
}

/// The first candidate offset that holds a valid index for `names`.
pub(super) fn find(
    region: &Region<'_>,
    candidates: &[usize],
    names: &[(u8, String)],
) -> Option<SeqsOfNames> {
    candidates.iter().find_map(|&at| {
        let table = align_up(at, 8)?;
        let seqs = read(region, table, names)?;
        Some(SeqsOfNames { table, seqs })
    })
}

fn read(region: &Region<'_>, table: usize, names: &[(u8, String)]) -> Option<Vec<u32>> {
    let n = names.len();
    let raw = region.get(table, n.checked_mul(3)?)?;
    let mut seen = vec![false; n];
    let mut seqs = Vec::with_capacity(n);
    for c in raw.chunks_exact(3) {
        let seq = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        let slot = seen.get_mut(seq as usize)?;
        if *slot {
            return None;
        }
        *slot = true;
        seqs.push(seq);
    }
    let in_order = seqs
        .windows(2)
        .all(|w| names[w[0] as usize].1.as_bytes() <= names[w[1] as usize].1.as_bytes());
    in_order.then_some(seqs)
}
