//! Inbound CHILD_SA SPIs: chosen by the data plane's allocator (which encodes the owning
//! worker and slot), or at random here.

use std::collections::HashSet;

use crate::rng::Random;

/// Allocates inbound ESP SPIs, unique among all live ones; never 0..=255 (RFC 4303 §2.1).
pub trait SpiAllocator {
    /// A fresh SPI for a CHILD_SA with the peer of index `peer` in the endpoint's peer list
    /// (`None` only before the peer is known), or `None` when none is left. The data plane
    /// uses `peer` to place the SA on the worker of the peer's tunnel.
    fn allocate(&mut self, peer: Option<usize>, rng: &mut dyn Random) -> Option<u32>;
    /// `spi` is no longer in use (its SA is retired or was never installed).
    fn release(&mut self, spi: u32);
}

/// Random SPIs, unique among those handed out and not yet released.
#[derive(Debug, Default)]
pub struct RandomSpis {
    live: HashSet<u32>,
}

impl RandomSpis {
    /// SPIs currently handed out.
    pub fn live(&self) -> usize {
        self.live.len()
    }
}

impl SpiAllocator for RandomSpis {
    fn allocate(&mut self, _peer: Option<usize>, rng: &mut dyn Random) -> Option<u32> {
        // A bounded number of draws: with far fewer live SPIs than 2^32 the first succeeds.
        (0..64)
            .map(|_| rng.next_u32())
            .find(|s| *s > 255 && self.live.insert(*s))
    }

    fn release(&mut self, spi: u32) {
        self.live.remove(&spi);
    }
}
