//! A set of the 256 interrupt vectors, laid out as the eight 32-bit words of the IRR, ISR and
//! TMR registers (SDM Vol. 3A §11.8.4, Figure 11-20).

use std::fmt;

/// A 256-bit set of interrupt vectors. Word `i` holds vectors `32 * i ..= 32 * i + 31`, bit `n`
/// of the word being vector `32 * i + n`, exactly as the IRR/ISR/TMR registers read.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VectorSet([u32; 8]);

impl VectorSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self([0; 8])
    }

    fn slot(vector: u8) -> (usize, u32) {
        (usize::from(vector >> 5), 1u32 << (vector & 31))
    }

    /// Whether `vector` is in the set.
    pub fn contains(&self, vector: u8) -> bool {
        let (word, bit) = Self::slot(vector);
        self.0.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Adds `vector`; returns whether it was absent.
    pub fn insert(&mut self, vector: u8) -> bool {
        let (word, bit) = Self::slot(vector);
        match self.0.get_mut(word) {
            Some(w) => {
                let was = *w & bit != 0;
                *w |= bit;
                !was
            }
            None => false,
        }
    }

    /// Removes `vector`; returns whether it was present.
    pub fn remove(&mut self, vector: u8) -> bool {
        let (word, bit) = Self::slot(vector);
        match self.0.get_mut(word) {
            Some(w) => {
                let was = *w & bit != 0;
                *w &= !bit;
                was
            }
            None => false,
        }
    }

    /// Sets or clears `vector`.
    pub fn set(&mut self, vector: u8, present: bool) {
        if present {
            self.insert(vector);
        } else {
            self.remove(vector);
        }
    }

    /// The highest vector in the set.
    pub fn highest(&self) -> Option<u8> {
        self.0.iter().enumerate().rev().find_map(|(i, &w)| {
            if w == 0 {
                None
            } else {
                // i < 8 and the bit index < 32, so the result fits in a u8.
                u8::try_from(i * 32 + (31 - w.leading_zeros() as usize)).ok()
            }
        })
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Removes every vector.
    pub fn clear(&mut self) {
        self.0 = [0; 8];
    }

    /// Register word `index` (0..8) as the guest reads it; 0 for any other index.
    pub fn word(&self, index: usize) -> u32 {
        self.0.get(index).copied().unwrap_or(0)
    }

    /// Whether every vector of `self` is also in `other`.
    pub fn is_subset(&self, other: &VectorSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }

    /// The intersection of both sets.
    pub fn intersection(&self, other: &VectorSet) -> VectorSet {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= b;
        }
        out
    }

    /// The vectors in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(move |&v| self.contains(v))
    }
}

impl fmt::Debug for VectorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_highest() {
        let mut s = VectorSet::new();
        assert_eq!(s.highest(), None);
        assert!(s.is_empty());
        assert!(s.insert(0x31));
        assert!(!s.insert(0x31));
        assert!(s.insert(0xFF));
        assert!(s.insert(0));
        assert_eq!(s.highest(), Some(0xFF));
        assert!(s.remove(0xFF));
        assert!(!s.remove(0xFF));
        assert_eq!(s.highest(), Some(0x31));
        assert_eq!(s.word(1), 1 << 17);
        assert_eq!(s.word(0), 1);
        assert_eq!(s.word(8), 0);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 0x31]);
        s.set(0x31, false);
        s.set(0, false);
        assert!(s.is_empty());
    }

    #[test]
    fn subset_and_intersection() {
        let mut a = VectorSet::new();
        let mut b = VectorSet::new();
        a.insert(40);
        b.insert(40);
        b.insert(200);
        assert!(a.is_subset(&b));
        assert!(!b.is_subset(&a));
        assert_eq!(b.intersection(&a), a);
        assert_eq!(format!("{a:?}"), "{40}");
    }
}
