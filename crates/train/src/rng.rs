//! A small seeded generator, so every random choice (initialization, shuffling, dropout) is reproducible.

/// SplitMix64: fast, seedable, good enough for shuffles, dropout masks and initialization.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one purpose: `seed` mixed with every key, so streams do not overlap.
    #[must_use]
    pub fn keyed(seed: u64, keys: &[u64]) -> Self {
        let mut s = Self(seed);
        let mut state = s.next_u64();
        for k in keys {
            state = Self(state ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
        }
        Self(state)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` values uniform in [-bound, bound), for weight initialization.
    pub fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n).map(|_| ((self.next_f64() * 2.0 - 1.0) * bound) as f32).collect()
    }

    /// A uniform index below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
