//! One small seeded generator for every random choice of the pipeline (SplitMix64).
//!
//! Every stage that draws (RAFT's distractors and order, the trainer's initialization,
//! shuffles, dropout masks and sampling) derives its stream from the run's seed and a key
//! naming the decision, so the same inputs and seed give the same output whatever the thread
//! count or the order in which records are processed.
//!
//! ```
//! use docraft_core::rng::SplitMix64;
//!
//! // One stream per question: the same seed and label give the same choices.
//! let mut a = SplitMix64::labelled(7, &["context", "q-001"]);
//! let mut b = SplitMix64::labelled(7, &["context", "q-001"]);
//! assert_eq!(a.below(10), b.below(10));
//!
//! let mut order = vec![1, 2, 3, 4, 5];
//! SplitMix64::keyed(7, &[0x5EED, 1]).shuffle(&mut order);
//! assert_eq!(order.len(), 5);
//! ```
//!
//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
//! 2014) is fast and statistically good enough for shuffles, sampling and initialization; it
//! is not a cryptographic generator.

use std::ops::Range;

use sha2::{Digest, Sha256};

/// The golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: a seedable 64-bit generator whose whole state is one `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one purpose: `seed` mixed with every numeric key in turn, so streams
    /// for different keys (a layer, an epoch, a tensor) do not overlap.
    #[must_use]
    pub fn keyed(seed: u64, keys: &[u64]) -> Self {
        let mut state = Self(seed).next_u64();
        for k in keys {
            state = Self(state ^ k.wrapping_mul(GAMMA)).next_u64();
        }
        Self(state)
    }

    /// A generator for one decision named by text labels (a stage, a record id, an attempt):
    /// the labels are hashed (SHA-256, each length-prefixed so `["ab", "c"]` and
    /// `["a", "bc"]` differ) into one key for [`Self::keyed`].
    #[must_use]
    pub fn labelled(seed: u64, labels: &[&str]) -> Self {
        Self::keyed(seed, &[label_key(labels)])
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    #[allow(clippy::cast_precision_loss)]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p` (`p <= 0`: never; `p >= 1`: always).
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// `n` values uniform in `[-bound, bound)`, for weight initialization.
    #[allow(clippy::cast_possible_truncation)]
    pub fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n).map(|_| ((self.next_f64() * 2.0 - 1.0) * bound) as f32).collect()
    }

    /// A uniform index below `n` (multiply-shift, so no modulo bias worth the name); `0`
    /// when `n` is `0`.
    #[allow(clippy::cast_possible_truncation)]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform value in `range`; `range.start` when the range is empty.
    pub fn range(&mut self, range: Range<usize>) -> usize {
        range.start + self.below(range.end.saturating_sub(range.start))
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// One of `items`, uniformly; `None` when there are none.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.below(items.len()))
    }
}

/// A seed for another generator (a model's sampler), derived like [`SplitMix64::labelled`]:
/// the first value of that stream.
#[must_use]
pub fn derived_seed(seed: u64, labels: &[&str]) -> u64 {
    SplitMix64::labelled(seed, labels).next_u64()
}

/// The first 64 bits of the SHA-256 of the length-prefixed labels.
fn label_key(labels: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for l in labels {
        h.update((l.len() as u64).to_le_bytes());
        h.update(l.as_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_first_value() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let mut r = SplitMix64::new(42);
        let b: Vec<u64> = (0..8).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        // The published SplitMix64 sequence for seed 0 starts with this value.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_ne!(SplitMix64::new(1).next_u64(), SplitMix64::new(2).next_u64());
    }

    #[test]
    fn keyed_streams_differ_by_key_and_label() {
        let first = |mut r: SplitMix64| r.next_u64();
        assert_eq!(first(SplitMix64::keyed(1, &[3, 4])), first(SplitMix64::keyed(1, &[3, 4])));
        assert_ne!(first(SplitMix64::keyed(1, &[3, 4])), first(SplitMix64::keyed(1, &[4, 3])));
        assert_ne!(first(SplitMix64::keyed(1, &[3])), first(SplitMix64::keyed(2, &[3])));
        assert_eq!(first(SplitMix64::labelled(9, &["cot", "q1"])), first(SplitMix64::labelled(9, &["cot", "q1"])));
        assert_ne!(first(SplitMix64::labelled(9, &["cot", "q1"])), first(SplitMix64::labelled(9, &["cot", "q2"])));
        assert_ne!(first(SplitMix64::labelled(9, &["ab", "c"])), first(SplitMix64::labelled(9, &["a", "bc"])));
        assert_ne!(first(SplitMix64::labelled(9, &["x"])), first(SplitMix64::labelled(10, &["x"])));
        assert_eq!(derived_seed(5, &["a"]), first(SplitMix64::labelled(5, &["a"])));
    }

    #[test]
    fn draws_stay_in_bounds_and_spread_evenly() {
        let mut r = SplitMix64::new(123);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            let i = r.below(10);
            counts[i] += 1;
        }
        // Each bucket expects 10 000; 5 standard deviations is about 475.
        assert!(counts.iter().all(|&c| (9_500..=10_500).contains(&c)), "{counts:?}");
        let mut sum = 0.0;
        for _ in 0..100_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        assert!((sum / 100_000.0 - 0.5).abs() < 0.01, "mean {}", sum / 100_000.0);
        let hits = (0..100_000).filter(|_| r.chance(0.25)).count();
        assert!((24_000..=26_000).contains(&hits), "{hits}");
        assert!(!r.chance(0.0));
        let w = r.uniform(10_000, 0.5);
        assert!(w.iter().all(|v| (-0.5..0.5).contains(v)));
        assert!(w.iter().any(|v| *v < -0.4) && w.iter().any(|v| *v > 0.4));
        assert!((0..1000).map(|_| r.range(5..8)).all(|v| (5..8).contains(&v)));
        assert_eq!(r.range(4..4), 4);
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn shuffle_is_a_permutation_and_choose_picks_members() {
        let mut r = SplitMix64::keyed(7, &[1]);
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>(), "50 items left in order is (almost) impossible");
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let mut again: Vec<u32> = (0..50).collect();
        SplitMix64::keyed(7, &[1]).shuffle(&mut again);
        assert_eq!(v, again, "same key, same order");
        assert_eq!(r.choose::<u8>(&[]), None);
        let items = ["a", "b", "c"];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            seen.insert(*r.choose(&items).unwrap_or(&"none"));
        }
        assert_eq!(seen.len(), 3);
    }
}
