//! A small seeded generator (SplitMix64): every random choice of a record derives from the
//! run's seed and the question id, so the same inputs and seed give the same dataset.

use docraft_core::content_hash;

pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one decision stream, keyed by the seed and any labels.
    pub(crate) fn keyed(seed: u64, labels: &[&str]) -> Self {
        let h = content_hash(format!("{seed}\u{1f}{}", labels.join("\u{1f}")).as_bytes());
        let mut state = 0u64;
        for b in h.bytes().take(16) {
            state = state.rotate_left(5) ^ u64::from(b);
        }
        Self(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// A seed for the generator's sampler, derived like [`Rng::keyed`].
pub(crate) fn derived_seed(seed: u64, labels: &[&str]) -> u64 {
    Rng::keyed(seed, labels).next_u64()
}
