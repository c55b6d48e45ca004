//! A growable set of small integers (message sequence numbers), one bit each: every
//! receiver remembers which messages of each sender it got, for the loss and duplicate
//! counts, in an eighth of a byte per message.

#[derive(Clone, Debug, Default)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Adds `n`; false when it was already there.
    pub fn insert(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let fresh = self.words[word] & mask == 0;
        self.words[word] |= mask;
        fresh
    }

    #[cfg(test)]
    pub fn contains(&self, n: u64) -> bool {
        self.words
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1u64 << (n % 64)) != 0)
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// How many members of `self` are not in `other`.
    pub fn count_without(&self, other: &BitSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_counts_and_differences() {
        let mut a = BitSet::default();
        assert!(a.insert(3));
        assert!(!a.insert(3));
        assert!(a.insert(64));
        assert!(a.insert(1000));
        assert_eq!(a.len(), 3);
        assert!(a.contains(64) && !a.contains(65) && !a.contains(1_000_000));
        let mut b = BitSet::default();
        b.insert(64);
        b.insert(5);
        assert_eq!(a.count_without(&b), 2);
        assert_eq!(b.count_without(&a), 1);
        assert_eq!(a.count_without(&BitSet::default()), 3);
    }
}
