//! The tree learners' random numbers: SplitMix64, seeded per model and per tree, so a
//! model is the same on every machine and thread count and does not change when a
//! dependency's generator does.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The generator of stream `stream` (a tree, a boosting round) of a model seeded `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self {
            state: seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F),
        };
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `count` distinct items of `items` drawn at random, in `items`' order.
    pub fn sample(&mut self, items: &[usize], count: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        let count = count.min(items.len());
        for at in 0..count {
            let pick = at + self.below(items.len() - at);
            order.swap(at, pick);
        }
        let mut chosen = order[..count].to_vec();
        chosen.sort_unstable();
        chosen.into_iter().map(|at| items[at]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_repeat_and_differ() {
        let draw = |seed, stream| {
            let mut rng = Rng::new(seed, stream);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 1), draw(7, 1));
        assert_ne!(draw(7, 1), draw(7, 2));
        assert_ne!(draw(7, 1), draw(8, 1));
    }

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut rng = Rng::new(1, 0);
        let items: Vec<usize> = (10..30).collect();
        for _ in 0..100 {
            let chosen = rng.sample(&items, 5);
            assert_eq!(chosen.len(), 5);
            assert!(chosen.windows(2).all(|w| w[0] < w[1]));
            assert!(chosen.iter().all(|c| items.contains(c)));
            assert!(rng.below(3) < 3);
            assert!((0.0..1.0).contains(&rng.unit()));
        }
    }
}
