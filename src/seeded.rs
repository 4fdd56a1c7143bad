//! Seeded, reproducible randomness: splitmix64, the one mixing function behind message
//! sizes, fault timelines, random node choices, the proxy's per-connection seeds and the
//! tests' generated sequences. The same seed always gives the same values, so a scenario's
//! `seed` replays its run.

/// The golden-ratio increment splitmix64 steps its state by.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64: one well-mixed 64-bit value per input.
#[inline]
pub fn splitmix(input: u64) -> u64 {
    let mut z = input.wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A splitmix64 generator: a sequence of values from one seed.
#[derive(Debug, Clone)]
pub struct SplitMix {
    state: u64,
}

impl SplitMix {
    /// The generator whose sequence `seed` names.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next value of the sequence.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let value = splitmix(self.state);
        self.state = self.state.wrapping_add(GAMMA);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_splitmix64_stepped_by_its_gamma() {
        // The reference sequence of splitmix64 from seed 0 (Steele, Lea and Flood).
        let mut generator = SplitMix::new(0);
        assert_eq!(generator.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(generator.next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(generator.next(), 0x06C4_5D18_8009_454F);
        assert_eq!(splitmix(0), 0xE220_A839_7B1D_CDAF);
        let again: Vec<u64> = {
            let mut g = SplitMix::new(42);
            (0..5).map(|_| g.next()).collect()
        };
        let mut g = SplitMix::new(42);
        assert_eq!(again, (0..5).map(|_| g.next()).collect::<Vec<_>>());
    }
}
