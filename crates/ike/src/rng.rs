//! Randomness, injected: the library never reaches for a global generator, so a test or a
//! simulation that seeds [`TestRandom`] replays exactly.

/// A source of random bytes for nonces, SPIs, IVs, DH private values and cookie secrets.
pub trait Random {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);

    /// A random `u32`.
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_be_bytes(b)
    }

    /// A random `u64`.
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_be_bytes(b)
    }
}

/// The operating system's generator (`getrandom(2)` through ring).
pub struct SystemRandom(ring::rand::SystemRandom);

impl SystemRandom {
    /// A handle on the system generator.
    pub fn new() -> Self {
        SystemRandom(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Random for SystemRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        use ring::rand::SecureRandom;
        // getrandom(2) does not fail once the kernel's pool is initialised (Linux ≥ 3.17); a
        // box that cannot draw random numbers must not negotiate keys, so this stops it.
        if self.0.fill(dest).is_err() {
            std::process::abort();
        }
    }
}

/// A deterministic generator (SplitMix64) for tests and simulations. Not for keys.
#[derive(Clone, Debug)]
pub struct TestRandom(u64);

impl TestRandom {
    /// A generator whose output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        TestRandom(seed)
    }

    fn step(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Random for TestRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.step().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_random_is_reproducible_and_varies() {
        let (mut a, mut b) = (TestRandom::new(7), TestRandom::new(7));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_ne!(a.next_u64(), TestRandom::new(8).next_u64());
    }

    #[test]
    fn system_random_fills() {
        let mut r = SystemRandom::new();
        let mut x = [0u8; 32];
        r.fill(&mut x);
        assert_ne!(x, [0u8; 32]);
    }
}
