//! A growing Bloom filter over the keys an offline rebuild has written.
//!
//! An offline rebuild starts from an empty tree, so a key it has never written is certainly absent
//! and staging need not ask sled. That matters: in sled 0.34 every read waits on a process-wide
//! lock while a batch is being applied, and the rebuild commits one page while staging the next.
//! A false positive only costs the sled read that would have happened anyway; there are no false
//! negatives, so answers never change.

use std::hash::{BuildHasher, Hasher};

/// Probes per key; with ~10 bits per key this gives about 1% false positives per layer.
const PROBES: u64 = 7;
const BITS_PER_KEY: usize = 10;
const FIRST_CAPACITY: usize = 1 << 16;

pub(crate) struct KeyFilter {
    /// Full layers stay as they are; keys go into the last one, and a new layer of twice the
    /// capacity is added when it is full.
    layers: Vec<Layer>,
    hasher: std::hash::RandomState,
}

struct Layer {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn new(capacity: usize) -> Layer {
        Layer {
            bits: vec![0; (capacity * BITS_PER_KEY).div_ceil(64)],
            capacity,
            len: 0,
        }
    }

    /// The `i`th bit probed for `hash`. Double hashing: the two halves of one 64-bit hash make
    /// the probe sequence.
    fn probe(&self, hash: u64, i: u64) -> usize {
        let total = (self.bits.len() * 64) as u64;
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (h1.wrapping_add(i.wrapping_mul(h2)) % total) as usize
    }

    fn insert(&mut self, hash: u64) {
        for i in 0..PROBES {
            let bit = self.probe(hash, i);
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
        self.len += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        (0..PROBES).all(|i| {
            let bit = self.probe(hash, i);
            self.bits[bit / 64] & (1 << (bit % 64)) != 0
        })
    }
}

impl KeyFilter {
    pub(crate) fn new() -> KeyFilter {
        KeyFilter {
            layers: vec![Layer::new(FIRST_CAPACITY)],
            hasher: std::hash::RandomState::new(),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        hasher.finish()
    }

    pub(crate) fn insert(&mut self, key: &[u8]) {
        let hash = self.hash(key);
        if self.may_contain_hash(hash) {
            return;
        }
        let last = self.layers.last().expect("there is always a layer");
        if last.len >= last.capacity {
            let capacity = last.capacity * 2;
            self.layers.push(Layer::new(capacity));
        }
        self.layers
            .last_mut()
            .expect("there is always a layer")
            .insert(hash);
    }

    /// False only if `key` was certainly never inserted.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(self.hash(key))
    }

    fn may_contain_hash(&self, hash: u64) -> bool {
        self.layers.iter().any(|layer| layer.may_contain(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inserted_key_is_found_and_most_others_are_not() {
        let mut filter = KeyFilter::new();
        // Enough keys to need several layers.
        let n = FIRST_CAPACITY * 5;
        for i in 0..n {
            filter.insert(format!("user/{i:026}").as_bytes());
        }
        assert!(filter.layers.len() > 2);
        assert!((0..n).all(|i| filter.may_contain(format!("user/{i:026}").as_bytes())));
        let false_positives = (0..100_000)
            .filter(|i| filter.may_contain(format!("absent/{i}").as_bytes()))
            .count();
        assert!(
            false_positives < 5_000,
            "{false_positives} false positives in 100000"
        );
    }
}
